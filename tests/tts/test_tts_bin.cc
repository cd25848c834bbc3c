// chatterboxtts end to end on the tiny fixtures: text in, audio out through
// t3 ! s3genmel ! chatterboxvocoder. Random weights: this checks the
// plumbing (token count -> sample count, timestamps, both vocoders), not
// intelligibility.
#define BOOST_TEST_MODULE tts_bin
#include <boost/test/unit_test.hpp>

#include "gst-plugins/core/checkpoint.h"
#include "tests/fixtures.h"

#include <ATen/ATen.h>
#include <gst/check/gstharness.h>
#include <gst/gst.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <string>
#include <vector>
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

namespace {
// A Chatterbox-Turbo-style directory from the tiny fixtures: the GPT-2 T3,
// its tokenizer, a mean-flow S3Gen (flow_tiny + the mean-flow fixture's time
// mixer and config) and a voice (the Turbo fixture's t3.* + conds_tiny's
// gen.*), under the real file names.
struct TurboDir {
  std::string dir;
  std::vector<std::string> made;
  TurboDir() {
    char tmpl[] = "/tmp/chatterbox-turbo-XXXXXX";
    dir = mkdtemp(tmpl);
    link("t3_turbo/t3_turbo_tiny.safetensors", "t3_turbo_v1.safetensors");
    link("t3_turbo/gpt2_bpe_tiny/tokenizer.json", "tokenizer.json");
    using chatterbox::Checkpoint;
    Checkpoint flow = Checkpoint::open(fixture("s3gen/flow_tiny.safetensors"));
    Checkpoint mf = Checkpoint::open(std::string(std::getenv("CHATTERBOX_SOURCE_ROOT")) +
                                     "/tests/s3gen/flow_tiny_meanflow.safetensors");
    std::map<std::string, at::Tensor> w;
    for (const auto& k : flow.keys())
      if (k.rfind("test.", 0) != 0) w["flow." + k] = flow.get_raw(k);
    w["flow.decoder.estimator.time_embed_mixer.weight"] = mf.get("decoder.estimator.time_embed_mixer.weight");
    write("s3gen_meanflow.safetensors", w, {{"config", mf.metadata("config")}});
    Checkpoint t3 = Checkpoint::open(fixture("t3_turbo/t3_turbo_tiny.safetensors"));
    Checkpoint conds = Checkpoint::open(fixture("t3/conds_tiny.safetensors"));
    std::map<std::string, at::Tensor> v{{"t3.speaker_emb", t3.get("test.cond.speaker_emb")},
                                        {"t3.cond_prompt_speech_tokens", t3.get_raw("test.cond.cond_prompt_speech_tokens")}};
    for (const auto& k : conds.keys())
      if (k.rfind("gen.", 0) == 0) v[k] = conds.get_raw(k);
    write("conds.pt", v, {});  // conds files are read by content
  }
  void link(const std::string& from, const std::string& to) {
    BOOST_REQUIRE(symlink(fixture(from).c_str(), (dir + "/" + to).c_str()) == 0);
    made.push_back(to);
  }
  void write(const std::string& name, const std::map<std::string, at::Tensor>& t,
             const std::map<std::string, std::string>& meta) {
    chatterbox::write_safetensors(dir + "/" + name, t, meta);
    made.push_back(name);
  }
  void remove(const std::string& name) {
    std::remove((dir + "/" + name).c_str());
    made.erase(std::find(made.begin(), made.end(), name));
  }
  ~TurboDir() {
    for (const auto& f : made) std::remove((dir + "/" + f).c_str());
    rmdir(dir.c_str());
  }
};

// The error chatterboxtts posts when it cannot go to READY ("" if it can).
std::string ready_error(const std::string& props) {
  GError* err = nullptr;
  GstElement* tts = gst_parse_launch(("chatterboxtts " + props).c_str(), &err);
  BOOST_REQUIRE(tts && !err);
  GstBus* bus = gst_bus_new();
  gst_element_set_bus(tts, bus);
  const bool failed = gst_element_set_state(tts, GST_STATE_READY) == GST_STATE_CHANGE_FAILURE;
  std::string msg;
  while (GstMessage* m = gst_bus_pop_filtered(bus, GST_MESSAGE_ERROR)) {
    GError* e = nullptr;
    gst_message_parse_error(m, &e, nullptr);
    if (msg.empty()) msg = e->message;
    g_error_free(e);
    gst_message_unref(m);
  }
  gst_element_set_state(tts, GST_STATE_NULL);
  gst_object_unref(tts);
  gst_object_unref(bus);
  BOOST_TEST(failed == !msg.empty());
  return msg;
}
}  // namespace

// Greedy Turbo T3 on its fixture's voice and text: the reference's 21 tokens,
// plus the 3 silence tokens mean-flow S3Gen appends (ChatterboxTurboTTS): 48
// mel frames.
BOOST_AUTO_TEST_CASE(turbo_directory_speaks_through_mean_flow) {
  TurboDir m;
  const std::string props = "model-dir=" + m.dir + " greedy=true vocoder=hift hift-model=" +
                            fixture("hift/hift_tiny.safetensors");
  BOOST_TEST(ready_error(props).empty());
  long n = run(props, "oh, the little robot counted every stone [chuckle] by the river\u2026");
  BOOST_TEST(n == (21 + 3) * 2 * 480);
}

BOOST_AUTO_TEST_CASE(mixed_or_incomplete_directories_are_refused_with_the_list) {
  TurboDir m;
  // Turbo's T3 beside the standard flow, no tokenizer, no voice.
  m.remove("s3gen_meanflow.safetensors");
  m.remove("tokenizer.json");
  m.remove("conds.pt");
  m.link("s3gen/flow_tiny.safetensors", "s3gen.safetensors");
  std::string e = ready_error("model-dir=" + m.dir);
  BOOST_TEST(e.find("Chatterbox-Turbo") != std::string::npos, e);
  BOOST_TEST(e.find("s3gen_meanflow.safetensors (s3gen.safetensors is standard") != std::string::npos, e);
  BOOST_TEST(e.find("tokenizer.json (or vocab.json + merges.txt)") != std::string::npos, e);
  BOOST_TEST(e.find("conds.pt") != std::string::npos, e);
  // What properties supply is not missing.
  e = ready_error("model-dir=" + m.dir + " voice=" + fixture("t3/conds_tiny.safetensors"));
  BOOST_TEST(e.find("conds.pt") == std::string::npos, e);
  BOOST_TEST(e.find("tokenizer.json") != std::string::npos, e);
  // Two T3 checkpoints: which model is meant is unclear.
  m.link("t3/t3_tiny.safetensors", "t3_cfg.safetensors");
  e = ready_error("model-dir=" + m.dir);
  BOOST_TEST(e.find("mixes T3 models") != std::string::npos, e);
}

// streaming=auto picks s3genmel's window mode when the text source is live
// (the harness's source answers the latency query live unless told not to),
// whole utterances otherwise; on / off force it.
BOOST_AUTO_TEST_CASE(streaming_follows_a_live_source) {
  ModelDir m;
  auto s3gen_mode = [&](const std::string& props, bool live) {
    GstHarness* h = gst_harness_new_parse(("chatterboxtts model-dir=" + m.dir + " greedy=true vocoder=vocos vocos-model=" +
                                           fixture("vocos/tiny_s3gen_same.safetensors") + " " + props)
                                              .c_str());
    gst_harness_set_live(h, live);
    gst_harness_set_src_caps_str(h, "text/x-raw,format=utf8");
    const std::string text = "the little robot counted stones by the river";
    GstBuffer* in = gst_buffer_new_allocate(nullptr, text.size(), nullptr);
    gst_buffer_fill(in, 0, text.data(), text.size());
    BOOST_REQUIRE(gst_harness_push(h, in) == GST_FLOW_OK);
    BOOST_REQUIRE(gst_harness_push_event(h, gst_event_new_eos()));
    long samples = 0;
    GstBuffer* b;
    while ((b = gst_harness_try_pull(h)) != nullptr) {
      samples += static_cast<long>(gst_buffer_get_size(b) / 4);
      gst_buffer_unref(b);
    }
    GstElement* s3gen = gst_bin_get_by_name(GST_BIN(h->element), "s3genmel");
    BOOST_REQUIRE(s3gen);
    guint chunk = 0;
    gint left = 0;
    g_object_get(s3gen, "chunk-tokens", &chunk, "left-context", &left, nullptr);
    gst_object_unref(s3gen);
    gst_harness_teardown(h);
    BOOST_TEST(samples == kExpectedSamples);  // every frame comes out either way
    return std::make_pair(chunk, left);
  };
  BOOST_TEST(s3gen_mode("", true).first == 25u);
  BOOST_TEST(s3gen_mode("", true).second == 50);
  BOOST_TEST(s3gen_mode("", false).first == 0u);
  BOOST_TEST(s3gen_mode("streaming=on chunk-tokens=5 left-context=20", false).first == 5u);
  BOOST_TEST(s3gen_mode("streaming=off", true).first == 0u);
}

// A multilingual directory is told by its T3 file (V3 or V2) and lists what
// it lacks; language reaches t3, whose errors name the valid codes.
BOOST_AUTO_TEST_CASE(multilingual_directory_and_language) {
  char tmpl[] = "/tmp/chatterbox-tts-mtl-XXXXXX";
  const std::string dir = mkdtemp(tmpl);
  BOOST_REQUIRE(symlink(fixture("t3/t3_tiny.safetensors").c_str(), (dir + "/t3_mtl23ls_v2.safetensors").c_str()) == 0);
  std::string e = ready_error("model-dir=" + dir);
  BOOST_TEST(e.find("Chatterbox Multilingual") != std::string::npos, e);
  BOOST_TEST(e.find("t3_mtl23ls_v2.safetensors") != std::string::npos, e);
  BOOST_TEST(e.find("grapheme_mtl_merged_expanded_v1.json") != std::string::npos, e);
  BOOST_TEST(e.find("s3gen.safetensors") != std::string::npos, e);
  BOOST_TEST(e.find("conds.pt") != std::string::npos, e);
  std::remove((dir + "/t3_mtl23ls_v2.safetensors").c_str());
  rmdir(dir.c_str());

  ModelDir m;
  e = ready_error("model-dir=" + m.dir + " language=xx");
  BOOST_TEST(e.find("Unknown language 'xx'") != std::string::npos, e);
  BOOST_TEST(e.find("ar, da, de") != std::string::npos, e);
  e = ready_error("model-dir=" + m.dir + " language=fr");
  BOOST_TEST(e.find("needs a Chatterbox Multilingual T3") != std::string::npos, e);
  GstElement* tts = gst_element_factory_make("chatterboxtts", nullptr);
  g_object_set(tts, "language", "ja", nullptr);
  GstElement* t3 = gst_bin_get_by_name(GST_BIN(tts), "t3");
  gchar* lang = nullptr;
  g_object_get(t3, "language", &lang, nullptr);
  BOOST_TEST(std::string(lang ? lang : "") == "ja");
  g_free(lang);
  gst_object_unref(t3);
  gst_object_unref(tts);
}
