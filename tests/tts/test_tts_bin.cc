// chatterboxtts end to end on the tiny fixtures: text in, audio out through
// t3 ! s3genmel ! chatterboxvocoder. Random weights: this checks the
// plumbing (token count -> sample count, timestamps, both vocoders), not
// intelligibility.
#define BOOST_TEST_MODULE tts_bin
#include <boost/test/unit_test.hpp>

#include "tests/fixtures.h"

#include <gst/check/gstharness.h>
#include <gst/gst.h>

#include <cstdio>
#include <string>
#include <unistd.h>

using chatterbox::test::fixture;

namespace {

struct GstInit {
  GstInit() { gst_init(nullptr, nullptr); }
};
BOOST_GLOBAL_FIXTURE(GstInit);

// A Chatterbox-style model directory made of the tiny fixtures.
struct ModelDir {
  std::string dir;
  ModelDir() {
    char tmpl[] = "/tmp/chatterbox-tts-XXXXXX";
    dir = mkdtemp(tmpl);
    link("t3/t3_tiny.safetensors", "t3_cfg.safetensors");
    link("t3/tokenizer_tiny.json", "tokenizer.json");
    link("t3/conds_tiny.pt", "conds.pt");
    link("s3gen/flow_tiny.safetensors", "s3gen.safetensors");  // flow only: HiFT given separately
  }
  void link(const std::string& from, const std::string& to) {
    BOOST_REQUIRE(symlink(fixture(from).c_str(), (dir + "/" + to).c_str()) == 0);
  }
  ~ModelDir() {
    for (const char* f : {"t3_cfg.safetensors", "tokenizer.json", "conds.pt", "s3gen.safetensors"})
      std::remove((dir + "/" + f).c_str());
    rmdir(dir.c_str());
  }
};

// Runs `text` through the bin; returns the number of samples and checks that
// buffers tile time.
long run(const std::string& props, const std::string& text) {
  GstHarness* h = gst_harness_new_parse(("chatterboxtts " + props).c_str());
  gst_harness_set_src_caps_str(h, "text/x-raw,format=utf8");
  GstBuffer* in = gst_buffer_new_allocate(nullptr, text.size(), nullptr);
  gst_buffer_fill(in, 0, text.data(), text.size());
  BOOST_REQUIRE(gst_harness_push(h, in) == GST_FLOW_OK);
  BOOST_REQUIRE(gst_harness_push_event(h, gst_event_new_eos()));
  long samples = 0;
  GstClockTime expect_pts = 0;
  GstBuffer* b;
  while ((b = gst_harness_try_pull(h)) != nullptr) {
    BOOST_TEST(GST_BUFFER_PTS(b) == expect_pts);
    expect_pts = GST_BUFFER_PTS(b) + GST_BUFFER_DURATION(b);
    samples += static_cast<long>(gst_buffer_get_size(b) / 4);
    gst_buffer_unref(b);
  }
  gst_harness_teardown(h);
  return samples;
}

}  // namespace

// The fixture's greedy decode gives 20 tokens of which 15 are valid S3 ids
// (the stop token and 4 ids >= 6561 are dropped): 30 mel frames, 14400 samples.
const long kExpectedSamples = 15 * 2 * 480;

BOOST_AUTO_TEST_CASE(text_to_speech_with_hift) {
  ModelDir m;
  long n = run("model-dir=" + m.dir + " greedy=true vocoder=hift hift-model=" + fixture("hift/hift_tiny.safetensors"),
               "the little robot counted stones by the river");
  BOOST_TEST(n == kExpectedSamples);
}

BOOST_AUTO_TEST_CASE(text_to_speech_with_vocos) {
  ModelDir m;
  long n = run("model-dir=" + m.dir + " greedy=true vocoder=vocos vocos-model=" +
                   fixture("vocos/tiny_s3gen_same.safetensors"),
               "the little robot counted stones by the river");
  BOOST_TEST(n == kExpectedSamples);
}

BOOST_AUTO_TEST_CASE(environment_selects_the_vocoder) {
  g_setenv("CHATTERBOX_USE_VOCOS", "0", TRUE);
  GstElement* tts = gst_element_factory_make("chatterboxtts", nullptr);
  g_unsetenv("CHATTERBOX_USE_VOCOS");
  BOOST_REQUIRE(tts);
  gint kind = -1;
  g_object_get(tts, "vocoder", &kind, nullptr);
  BOOST_TEST(kind == 1);  // hift
  gst_object_unref(tts);
}
