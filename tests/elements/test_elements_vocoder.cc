// Element-level tests of the mel vocoders (vocosdec, hiftdec, the
// chatterboxvocoder switch bin), all through GStreamer: GstHarness for exact
// buffer/event control, parsed pipelines for negotiation and bus messages.
#define BOOST_TEST_MODULE elements_vocoder
#include <boost/test/unit_test.hpp>

#include "tests/elements/gst_test_util.h"
#include "tests/tensor_compare.h"

#include <glib/gstdio.h>

#include <cmath>
#include <fstream>
#include <iostream>
#include <limits>
#include <map>

using namespace chatterbox;
using namespace chatterbox::test;

BOOST_TEST_GLOBAL_FIXTURE(GstGlobal);

namespace {

// The caps contract (docs/caps.md), written out literally so the test also
// checks that the elements speak the documented layout.
const char* kS3GenCaps =
    "audio/x-mel-spectrogram, format=(string)F32LE, layout=(string)frame-major, log=(string)ln, rate=(int)24000, "
    "n-mels=(int)80, hop-length=(int)480, n-fft=(int)1920, win-length=(int)1920, f-min=(double)0, "
    "f-max=(double)8000, padding=(string)same, power=(int)1, mel-scale=(string)slaney, norm=(string)slaney, "
    "log-floor=(double)1e-05, mag-eps=(double)1e-09";
const char* kVocosCaps =
    "audio/x-mel-spectrogram, format=(string)F32LE, layout=(string)frame-major, log=(string)ln, rate=(int)24000, "
    "n-mels=(int)100, hop-length=(int)256, n-fft=(int)1024, win-length=(int)1024, f-min=(double)0, "
    "f-max=(double)12000, padding=(string)center, power=(int)1, mel-scale=(string)htk, norm=(string)none, "
    "log-floor=(double)1e-07, mag-eps=(double)0";

struct Model {
  const char* file;  // fixture
  const char* caps;
  int hop;
  bool center;
};
const Model kS3Gen{"vocos/tiny_s3gen_same.safetensors", kS3GenCaps, 480, false};
const Model kCenter{"vocos/tiny_center.safetensors", kVocosCaps, 256, true};
const char* kHift = "hift/hift_tiny.safetensors";

GstElement* vocosdec(const Model& m, int lookahead = -1) {
  GstElement* e = make_element("vocosdec");
  g_object_set(e, "model", fixture(m.file).c_str(), "lookahead", lookahead, nullptr);
  return e;
}
GstElement* hiftdec(bool deterministic = true, bool trim_fade = true) {
  GstElement* e = make_element("hiftdec");
  g_object_set(e, "model", fixture(kHift).c_str(), "deterministic", deterministic, "trim-fade", trim_fade, nullptr);
  return e;
}

struct Run {
  Collected out;
  BusLog log;
  std::vector<GstFlowReturn> flows;
};

// Pushes `frames` [T, n_mels] into `element` as buffers of `sizes` bytes (the
// rest in one buffer; empty: whole), the first stamped `pts0`, then EOS.
Run vocode(GstElement* element, const char* caps, const at::Tensor& frames, const std::vector<size_t>& sizes = {},
           GstClockTime pts0 = 0) {
  Harness hr(element);
  hr.set_caps(gst_caps_from_string(caps));
  Run r;
  const auto* p = reinterpret_cast<const uint8_t*>(frames.data_ptr<float>());
  const size_t total = frames.numel() * sizeof(float);
  size_t pos = 0;
  // Like a real upstream, stop at the first flow error (no EOS after it).
  bool failed = false;
  for (size_t s : sizes) {
    if (pos >= total) break;
    s = std::min(s, total - pos);
    r.flows.push_back(hr.push(p + pos, s, pos == 0 ? pts0 : GST_CLOCK_TIME_NONE));
    pos += s;
    hr.pull_into(r.out);
    if ((failed = r.flows.back() != GST_FLOW_OK)) break;
  }
  if (!failed && pos < total) {
    r.flows.push_back(hr.push(p + pos, total - pos, pos == 0 ? pts0 : GST_CLOCK_TIME_NONE));
    failed = r.flows.back() != GST_FLOW_OK;
  }
  if (!failed) hr.eos();
  hr.pull_into(r.out);
  r.log = hr.messages();
  return r;
}

std::vector<size_t> uniform_split(size_t bytes, size_t piece) {
  return std::vector<size_t>((bytes + piece - 1) / piece, piece);
}

int64_t expected_samples(const Model& m, int64_t frames) { return m.center ? (frames - 1) * m.hop : frames * m.hop; }

void check_timing(const Collected& c, GstClockTime first_pts, const std::string& what) {
  BOOST_TEST_CONTEXT(what) {
    BOOST_TEST_REQUIRE(!c.bufs.empty());
    BOOST_TEST(c.bufs.front().pts == first_pts);
    BOOST_TEST(c.bufs.front().discont);
    for (size_t i = 1; i < c.bufs.size(); ++i) BOOST_TEST(!c.bufs[i].discont, "buffer " << i << " has DISCONT");
    BOOST_TEST(pts_gaps(c) == "");
    // The last buffer ends at first + samples / rate (within rounding).
    const BufInfo& last = c.bufs.back();
    const GstClockTime end = first_pts + gst_util_uint64_scale_int(c.values.size(), GST_SECOND, 24000);
    BOOST_TEST(std::llabs(static_cast<long long>(last.pts + last.duration) - static_cast<long long>(end)) <= 1);
  }
}

std::string temp_dir() {
  GError* err = nullptr;
  gchar* d = g_dir_make_tmp("chatterbox-elements-XXXXXX", &err);
  if (!d) throw std::runtime_error(err->message);
  std::string s = d;
  g_free(d);
  return s;
}

}  // namespace

// 1. Whole-utterance parity through the element.
BOOST_AUTO_TEST_CASE(vocosdec_whole_utterance_matches_reference) {
  for (const Model* m : {&kS3Gen, &kCenter}) {
    BOOST_TEST_CONTEXT(m->file) {
      at::Tensor mel = frame_major(fixture_tensor(m->file, "test.input_mel"));
      at::Tensor expected = fixture_tensor(m->file, "test.output_audio")[0];
      Run r = vocode(vocosdec(*m), m->caps, mel);
      BOOST_TEST(r.log.all() == "");
      BOOST_TEST(static_cast<int64_t>(r.out.values.size()) == expected_samples(*m, mel.size(0)));
      BOOST_TEST_REQUIRE(static_cast<int64_t>(r.out.values.size()) == expected.numel());
      const double mad = max_abs_diff(r.out.tensor(), expected), rl2 = rel_l2(r.out.tensor(), expected);
      std::cout << "[vocosdec whole] " << m->file << ": max abs " << mad << ", rel-L2 " << rl2 << "\n";
      BOOST_TEST(mad <= 9e-6);
      BOOST_TEST(rl2 <= 2e-5);
      check_timing(r.out, 0, "whole");
    }
  }
}

// 2. Any split of the input bytes gives the whole-utterance output.
BOOST_AUTO_TEST_CASE(vocosdec_chunked_equals_whole) {
  const GstClockTime pts0 = GST_SECOND / 2;
  for (const Model* m : {&kS3Gen, &kCenter}) {
    at::Tensor mel = frame_major(fixture_tensor(m->file, "test.input_mel"));
    const size_t fb = mel.size(1) * sizeof(float), total = mel.numel() * sizeof(float);
    Run whole = vocode(vocosdec(*m), m->caps, mel, {}, pts0);
    BOOST_TEST_REQUIRE(whole.out.values.size() == static_cast<size_t>(expected_samples(*m, mel.size(0))));
    std::vector<std::pair<std::string, std::vector<size_t>>> splits = {
        {"1 frame", uniform_split(total, fb)},
        {"7 frames", uniform_split(total, 7 * fb)},
        {"frame and a half", uniform_split(total, fb + fb / 2)},
    };
    for (uint32_t seed : {1u, 2u, 3u}) splits.push_back({"random seed " + std::to_string(seed), random_split(total, fb, seed)});
    for (auto& [name, sizes] : splits) {
      BOOST_TEST_CONTEXT(m->file << ", " << name) {
        Run r = vocode(vocosdec(*m), m->caps, mel, sizes, pts0);
        BOOST_TEST(r.log.all() == "");
        for (GstFlowReturn f : r.flows) BOOST_TEST(f == GST_FLOW_OK);
        BOOST_TEST_REQUIRE(r.out.values.size() == whole.out.values.size());
        const double rl2 = rel_l2(r.out.tensor(), whole.out.tensor());
        const double mad = max_abs_diff(r.out.tensor(), whole.out.tensor());
        std::cout << "[vocosdec chunked] " << m->file << " " << name << ": " << r.out.bufs.size()
                  << " output buffers, rel-L2 " << rl2 << ", max abs " << mad << "\n";
        BOOST_TEST(rl2 <= 1e-5);
        check_timing(r.out, pts0, name);
      }
    }
  }
}

// 3. A capsfilter with only some fields is completed from the model.
BOOST_AUTO_TEST_CASE(vocosdec_partial_caps_negotiate) {
  at::Tensor mel = frame_major(fixture_tensor(kS3Gen.file, "test.input_mel"));
  at::Tensor expected = fixture_tensor(kS3Gen.file, "test.output_audio")[0];
  const std::string dir = temp_dir();
  const std::string path = dir + "/mel.f32";
  {
    std::ofstream f(path, std::ios::binary);
    f.write(reinterpret_cast<const char*>(mel.data_ptr<float>()), mel.numel() * sizeof(float));
  }
  const std::string model = fixture(kS3Gen.file);
  const std::string tail =
      " ! audio/x-mel-spectrogram,n-mels=80,rate=24000,hop-length=480 ! vocosdec model=" + model + " ! appsink name=out";
  // filesrc: BYTES segment, blocks that cut frames anywhere.
  PipelineResult a = run_pipeline("filesrc blocksize=1000 location=" + path + tail);
  // appsrc without caps: the capsfilter's partial caps are all upstream says.
  PipelineResult b = run_pipeline("appsrc name=in format=time" + tail, [&](GstElement* p) {
    feed_appsrc(p, "in", mel.data_ptr<float>(), mel.numel() * sizeof(float), random_split(mel.numel() * 4, 320, 7), 0);
  });
  g_unlink(path.c_str());
  g_rmdir(dir.c_str());
  for (PipelineResult* r : {&a, &b}) {
    BOOST_TEST(r->log.eos);
    BOOST_TEST(r->log.all() == "");
    BOOST_TEST_REQUIRE(r->out.values.size() == static_cast<size_t>(expected.numel()));
    BOOST_TEST(max_abs_diff(r->out.tensor(), expected) <= 9e-6);
    BOOST_TEST(rel_l2(r->out.tensor(), expected) <= 2e-5);
    BOOST_TEST_REQUIRE(r->out.caps != nullptr);
    gchar* cs = gst_caps_to_string(r->out.caps);
    BOOST_TEST(contains(cs, "rate=(int)24000"));
    BOOST_TEST(contains(cs, "F32LE"));
    g_free(cs);
    check_timing(r->out, 0, "pipeline");
  }
}

// 4. A model that cannot take the offered layout refuses it, naming the field.
BOOST_AUTO_TEST_CASE(vocosdec_refuses_other_layout_naming_the_field) {
  const std::string model = fixture(kCenter.file);
  at::Tensor mel = frame_major(fixture_tensor(kS3Gen.file, "test.input_mel"));
  // Fixed S3Gen caps on appsrc (caps event path) and partial caps on a
  // capsfilter (caps query path).
  for (const std::string& head : {std::string("appsrc name=in format=time caps=\"") + kS3GenCaps + "\"",
                                  std::string("appsrc name=in format=time ! audio/x-mel-spectrogram,n-mels=80")}) {
    BOOST_TEST_CONTEXT(head) {
      PipelineResult r = run_pipeline(head + " ! vocosdec model=" + model + " ! appsink name=out", [&](GstElement* p) {
        feed_appsrc(p, "in", mel.data_ptr<float>(), mel.numel() * sizeof(float));
      });
      BOOST_TEST(!r.log.eos);
      BOOST_TEST(!r.log.errors.empty());
      const std::string all = r.log.all();
      BOOST_TEST(contains(all, "n-mels=100"), all);
      BOOST_TEST(contains(all, "80"), all);
      BOOST_TEST(r.out.values.empty());
    }
  }
  // Harness: the caps event itself is refused (the element posts an ERROR;
  // the sticky event is kept on the harness pad, so data then fails with
  // not-negotiated).
  Harness hr(vocosdec(kCenter));
  gst_harness_push_event(hr.h, gst_event_new_caps(gst_caps_from_string(kS3GenCaps)));
  BOOST_TEST(hr.push(mel.data_ptr<float>(), 80 * 4 * 10, 0) == GST_FLOW_NOT_NEGOTIATED);
  BOOST_TEST(hr.pull_all().values.empty());
  BusLog log = hr.messages();
  BOOST_TEST_REQUIRE(!log.errors.empty(), log.all());
  BOOST_TEST(contains(log.errors[0], "n-mels=100"), log.all());
  BOOST_TEST(contains(log.errors[0], "upstream offers 80"), log.all());
}

// 5a. NaN in the input: ERROR, and no NaN ever leaves the element.
BOOST_AUTO_TEST_CASE(vocosdec_nan_input_is_an_error) {
  at::Tensor mel = frame_major(fixture_tensor(kS3Gen.file, "test.input_mel"));
  at::Tensor bad = mel.clone();
  bad[60][17] = std::numeric_limits<float>::quiet_NaN();
  const size_t fb = 80 * 4;
  Run r = vocode(vocosdec(kS3Gen), kS3GenCaps, bad, uniform_split(bad.numel() * 4, 20 * fb));
  BOOST_TEST_REQUIRE(!r.log.errors.empty());
  BOOST_TEST(contains(r.log.errors[0], "NaN"), r.log.all());
  bool saw_error_flow = false;
  for (GstFlowReturn f : r.flows) saw_error_flow |= f == GST_FLOW_ERROR;
  BOOST_TEST(saw_error_flow);
  for (float v : r.out.values) BOOST_TEST_REQUIRE(std::isfinite(v));
  // Only what frames before the bad buffer could finalise came out.
  BOOST_TEST(r.out.values.size() <= static_cast<size_t>(60 * 480));
}

// 5b. A model file that does not exist: NULL->READY fails, the error names it.
BOOST_AUTO_TEST_CASE(vocosdec_missing_model_fails_ready) {
  const std::string path = "/nonexistent/dir/no_such_vocos.safetensors";
  GstElement* pipe = gst_pipeline_new(nullptr);
  GstElement* e = make_element("vocosdec");
  g_object_set(e, "model", path.c_str(), nullptr);
  gst_bin_add(GST_BIN(pipe), e);
  BOOST_TEST(gst_element_set_state(pipe, GST_STATE_READY) == GST_STATE_CHANGE_FAILURE);
  GstBus* bus = gst_element_get_bus(pipe);
  BusLog log;
  log.pop_all(bus);
  gst_object_unref(bus);
  gst_element_set_state(pipe, GST_STATE_NULL);
  gst_object_unref(pipe);
  BOOST_TEST_REQUIRE(!log.errors.empty());
  BOOST_TEST(contains(log.errors[0], path), log.all());
}

// 5c. A checkpoint with a tensor of the wrong rank: the error names the tensor.
BOOST_AUTO_TEST_CASE(vocosdec_wrong_rank_tensor_named) {
  Checkpoint ck = Checkpoint::open(fixture(kS3Gen.file));
  std::map<std::string, at::Tensor> tensors;
  for (const auto& [k, v] : ck.store().tensors)
    if (k.rfind("test", 0) != 0) tensors[k] = v;
  BOOST_TEST_REQUIRE(tensors.count("backbone.embed.weight") == 1u);
  tensors["backbone.embed.weight"] = tensors["backbone.embed.weight"].reshape({64, -1});  // [64, 80, 7] -> [64, 560]
  const std::string dir = temp_dir();
  const std::string path = dir + "/wrong_rank.safetensors";
  write_safetensors(path, tensors, ck.store().metadata);
  GstElement* pipe = gst_pipeline_new(nullptr);
  GstElement* e = make_element("vocosdec");
  g_object_set(e, "model", path.c_str(), nullptr);
  gst_bin_add(GST_BIN(pipe), e);
  BOOST_TEST(gst_element_set_state(pipe, GST_STATE_READY) == GST_STATE_CHANGE_FAILURE);
  GstBus* bus = gst_element_get_bus(pipe);
  BusLog log;
  log.pop_all(bus);
  gst_object_unref(bus);
  gst_element_set_state(pipe, GST_STATE_NULL);
  gst_object_unref(pipe);
  g_unlink(path.c_str());
  g_rmdir(dir.c_str());
  BOOST_TEST_REQUIRE(!log.errors.empty());
  BOOST_TEST(contains(log.errors[0], "backbone.embed.weight"), log.all());
}

// 5d. EOS with a partial frame pending: WARNING, the whole frames still vocoded.
BOOST_AUTO_TEST_CASE(vocosdec_trailing_partial_frame_warns) {
  at::Tensor mel = frame_major(fixture_tensor(kS3Gen.file, "test.input_mel"));
  at::Tensor expected = fixture_tensor(kS3Gen.file, "test.output_audio")[0];
  // The utterance plus 25 floats of a frame that never completes.
  at::Tensor padded = at::cat({mel.reshape({-1}), at::zeros({25})});
  Run r = vocode(vocosdec(kS3Gen), kS3GenCaps, padded, uniform_split(padded.numel() * 4, 1000));
  BOOST_TEST(r.log.errors.empty(), r.log.all());
  BOOST_TEST_REQUIRE(r.log.warnings.size() == 1u, r.log.all());
  BOOST_TEST(contains(r.log.warnings[0], "100 trailing bytes"), r.log.all());
  BOOST_TEST_REQUIRE(r.out.values.size() == static_cast<size_t>(expected.numel()));
  BOOST_TEST(max_abs_diff(r.out.tensor(), expected) <= 9e-6);
}

// 5e. Caps change mid-stream to a layout the model cannot take: ERROR.
BOOST_AUTO_TEST_CASE(vocosdec_incompatible_caps_change_mid_stream) {
  at::Tensor mel = frame_major(fixture_tensor(kS3Gen.file, "test.input_mel"));
  Harness hr(vocosdec(kS3Gen));
  hr.set_caps(gst_caps_from_string(kS3GenCaps));
  BOOST_TEST(hr.push(mel.data_ptr<float>(), 40 * 80 * 4, 0) == GST_FLOW_OK);
  std::string other = kS3GenCaps;
  other.replace(other.find("hop-length=(int)480"), 19, "hop-length=(int)240");
  gst_harness_push_event(hr.h, gst_event_new_caps(gst_caps_from_string(other.c_str())));
  BOOST_TEST(hr.push(mel.data_ptr<float>() + 40 * 80, 10 * 80 * 4) == GST_FLOW_NOT_NEGOTIATED);
  BusLog log = hr.messages();
  BOOST_TEST_REQUIRE(!log.errors.empty(), log.all());
  BOOST_TEST(contains(log.errors[0], "hop-length=480"), log.all());
  BOOST_TEST(contains(log.errors[0], "240"), log.all());
}

// 6. Latency = upstream + lookahead * hop / rate.
BOOST_AUTO_TEST_CASE(vocosdec_latency_query) {
  const GstClockTime upstream = 30 * GST_MSECOND;
  // tiny_s3gen_same: 3 ConvNeXt layers -> receptive field R = 3*(1+3) = 12
  // frames; the iSTFT tail after trimming is 1920 - 720 = 1200 samples ->
  // ceil(1200/480) = 3 frames; exact lookahead = R - 1 + 3 = 14 frames.
  struct Case {
    int lookahead;
    int64_t frames;
  };
  for (Case c : {Case{-1, 14}, Case{0, 0}, Case{5, 5}}) {
    BOOST_TEST_CONTEXT("lookahead " << c.lookahead) {
      Harness hr(vocosdec(kS3Gen, c.lookahead));
      gst_harness_set_upstream_latency(hr.h, upstream);
      hr.set_caps(gst_caps_from_string(kS3GenCaps));
      const GstClockTime got = gst_harness_query_latency(hr.h);
      BOOST_TEST(got == upstream + gst_util_uint64_scale_int(c.frames * 480, GST_SECOND, 24000));
    }
  }
  // The property is live: changing it while playing changes the answer.
  Harness hr(vocosdec(kS3Gen));
  gst_harness_set_upstream_latency(hr.h, upstream);
  g_object_set(hr.element, "lookahead", 2, nullptr);
  BOOST_TEST(gst_harness_query_latency(hr.h) == upstream + 40 * GST_MSECOND);
}

// 7a. Flush: state is reset; the next utterance comes out as if alone.
BOOST_AUTO_TEST_CASE(vocosdec_flush_resets_state) {
  for (const Model* m : {&kS3Gen, &kCenter}) {
    BOOST_TEST_CONTEXT(m->file) {
      at::Tensor mel = frame_major(fixture_tensor(m->file, "test.input_mel"));
      at::Tensor expected = fixture_tensor(m->file, "test.output_audio")[0];
      const size_t fb = mel.size(1) * 4, total = mel.numel() * 4;
      Harness hr(vocosdec(*m));
      hr.set_caps(gst_caps_from_string(m->caps));
      const auto* p = reinterpret_cast<const uint8_t*>(mel.data_ptr<float>());
      // Half an utterance (ending mid-frame), then flush.
      const size_t half = (mel.size(0) / 2) * fb + fb / 3;
      BOOST_TEST(hr.push(p, half, 0) == GST_FLOW_OK);
      hr.pull_all();
      BOOST_TEST(gst_harness_push_event(hr.h, gst_event_new_flush_start()));
      BOOST_TEST(gst_harness_push_event(hr.h, gst_event_new_flush_stop(TRUE)));
      GstSegment seg;
      gst_segment_init(&seg, GST_FORMAT_TIME);
      BOOST_TEST(gst_harness_push_event(hr.h, gst_event_new_segment(&seg)));
      Collected after;
      size_t pos = 0;
      for (size_t s : random_split(total, fb, 11)) {
        BOOST_TEST(hr.push(p + pos, s, pos == 0 ? 0 : GST_CLOCK_TIME_NONE) == GST_FLOW_OK);
        pos += s;
      }
      hr.eos();
      hr.pull_into(after);
      BOOST_TEST(hr.messages().all() == "");
      BOOST_TEST_REQUIRE(after.values.size() == static_cast<size_t>(expected.numel()));
      BOOST_TEST(max_abs_diff(after.tensor(), expected) <= 9e-6);
      BOOST_TEST(rel_l2(after.tensor(), expected) <= 2e-5);
      check_timing(after, 0, "after flush");
    }
  }
}

// 7b. DISCONT mid-stream ends the current utterance and starts a new one.
BOOST_AUTO_TEST_CASE(vocosdec_discont_starts_new_utterance) {
  at::Tensor mel = frame_major(fixture_tensor(kS3Gen.file, "test.input_mel"));
  at::Tensor expected_b = fixture_tensor(kS3Gen.file, "test.output_audio")[0];
  const int64_t ta = 50;
  at::Tensor a = mel.slice(0, 0, ta).contiguous();
  Run alone = vocode(vocosdec(kS3Gen), kS3GenCaps, a);
  BOOST_TEST_REQUIRE(alone.out.values.size() == static_cast<size_t>(ta * 480));

  Harness hr(vocosdec(kS3Gen));
  hr.set_caps(gst_caps_from_string(kS3GenCaps));
  const size_t fb = 80 * 4;
  const auto* pa = reinterpret_cast<const uint8_t*>(a.data_ptr<float>());
  BOOST_TEST(hr.push(pa, 20 * fb, 0) == GST_FLOW_OK);
  BOOST_TEST(hr.push(pa + 20 * fb, 30 * fb) == GST_FLOW_OK);
  const GstClockTime pts_b = 5 * GST_SECOND;
  const auto* pb = reinterpret_cast<const uint8_t*>(mel.data_ptr<float>());
  BOOST_TEST(hr.push(pb, 33 * fb + 8, pts_b, /*discont=*/true) == GST_FLOW_OK);
  BOOST_TEST(hr.push(pb + 33 * fb + 8, mel.numel() * 4 - 33 * fb - 8) == GST_FLOW_OK);
  hr.eos();
  Collected c = hr.pull_all();
  BOOST_TEST(hr.messages().all() == "");
  BOOST_TEST_REQUIRE(c.values.size() == static_cast<size_t>(ta * 480 + expected_b.numel()));
  at::Tensor all = c.tensor();
  at::Tensor got_a = all.slice(0, 0, ta * 480), got_b = all.slice(0, ta * 480);
  BOOST_TEST(rel_l2(got_a, alone.out.tensor()) <= 1e-5);
  BOOST_TEST(max_abs_diff(got_b, expected_b) <= 9e-6);
  // Split the buffers at the utterance boundary: A's end, then B from pts_b.
  size_t n = 0, first_b = 0;
  for (size_t i = 0; i < c.bufs.size(); ++i) {
    if (n == static_cast<size_t>(ta * 480)) {
      first_b = i;
      break;
    }
    n += c.bufs[i].bytes / 4;
  }
  BOOST_TEST_REQUIRE(first_b > 0u);
  BOOST_TEST(c.bufs[0].discont);
  BOOST_TEST(c.bufs[0].pts == 0u);
  BOOST_TEST(c.bufs[first_b].discont);
  BOOST_TEST(c.bufs[first_b].pts == pts_b);
  const BufInfo& last_a = c.bufs[first_b - 1];
  BOOST_TEST(last_a.pts + last_a.duration == static_cast<GstClockTime>(ta * 480) * GST_SECOND / 24000);
}

// 8. hiftdec: reference parity and exact streaming.
BOOST_AUTO_TEST_CASE(hiftdec_matches_reference_and_streams_exactly) {
  at::Tensor mel = frame_major(fixture_tensor(kHift, "test.input_mel"));
  at::Tensor faded = fixture_tensor(kHift, "test.output_audio_trim_faded")[0];
  at::Tensor plain = fixture_tensor(kHift, "test.output_audio")[0];
  Run whole = vocode(hiftdec(true, true), kS3GenCaps, mel);
  BOOST_TEST(whole.log.all() == "");
  BOOST_TEST_REQUIRE(whole.out.values.size() == static_cast<size_t>(faded.numel()));
  const double mad_faded = max_abs_diff(whole.out.tensor(), faded);
  Run nofade = vocode(hiftdec(true, false), kS3GenCaps, mel);
  BOOST_TEST_REQUIRE(nofade.out.values.size() == static_cast<size_t>(plain.numel()));
  const double mad_plain = max_abs_diff(nofade.out.tensor(), plain);
  std::cout << "[hiftdec whole] trim-fade: max abs " << mad_faded << "; no fade: " << mad_plain << "\n";
  BOOST_TEST(mad_faded <= 1.5e-3);
  BOOST_TEST(mad_plain <= 1.5e-3);
  // The fade really is applied: the first 480 samples are silent.
  BOOST_TEST(whole.out.tensor().slice(0, 0, 480).abs().max().item<double>() == 0.0);
  BOOST_TEST(nofade.out.tensor().slice(0, 0, 480).abs().max().item<double>() > 1e-3);
  check_timing(whole.out, 0, "hift whole");

  const size_t fb = 80 * 4, total = mel.numel() * 4;
  std::vector<std::pair<std::string, std::vector<size_t>>> splits = {
      {"1 frame", uniform_split(total, fb)}, {"7 frames", uniform_split(total, 7 * fb)},
      {"random", random_split(total, fb, 5)}};
  for (auto& [name, sizes] : splits) {
    BOOST_TEST_CONTEXT(name) {
      Run r = vocode(hiftdec(true, true), kS3GenCaps, mel, sizes, GST_SECOND);
      BOOST_TEST(r.log.all() == "");
      BOOST_TEST_REQUIRE(r.out.values.size() == whole.out.values.size());
      const double mad = max_abs_diff(r.out.tensor(), whole.out.tensor());
      std::cout << "[hiftdec chunked] " << name << ": max abs " << mad << ", rel-L2 "
                << rel_l2(r.out.tensor(), whole.out.tensor()) << "\n";
      BOOST_TEST(mad <= 2e-5);
      check_timing(r.out, GST_SECOND, name);
    }
  }
}

// 9. chatterboxvocoder picks its child from CHATTERBOX_USE_VOCOS or 'vocoder'.
namespace {
std::string child_factory(GstElement* bin) {
  std::string name;
  GstIterator* it = gst_bin_iterate_elements(GST_BIN(bin));
  GValue v = G_VALUE_INIT;
  int n = 0;
  while (gst_iterator_next(it, &v) == GST_ITERATOR_OK) {
    GstElement* e = GST_ELEMENT(g_value_get_object(&v));
    name = GST_OBJECT_NAME(gst_element_get_factory(e));
    ++n;
    g_value_reset(&v);
  }
  g_value_unset(&v);
  gst_iterator_free(it);
  return n == 1 ? name : "children: " + std::to_string(n);
}
GstElement* make_bin_with_env(const char* value) {
  if (value)
    g_setenv("CHATTERBOX_USE_VOCOS", value, TRUE);
  else
    g_unsetenv("CHATTERBOX_USE_VOCOS");
  GstElement* bin = make_element("chatterboxvocoder");
  g_unsetenv("CHATTERBOX_USE_VOCOS");
  return bin;
}
}  // namespace

BOOST_AUTO_TEST_CASE(chatterboxvocoder_switch) {
  struct Case {
    const char* env;
    const char* child;
  };
  for (Case c : {Case{"0", "hiftdec"}, Case{"false", "hiftdec"}, Case{"1", "vocosdec"}, Case{"true", "vocosdec"},
                 Case{nullptr, "vocosdec"}}) {
    BOOST_TEST_CONTEXT("CHATTERBOX_USE_VOCOS=" << (c.env ? c.env : "(unset)")) {
      GstElement* bin = GST_ELEMENT(gst_object_ref_sink(make_bin_with_env(c.env)));
      BOOST_TEST(child_factory(bin) == c.child);
      gst_object_unref(bin);
    }
  }
  // The property switches in NULL, both ways.
  GstElement* bin = GST_ELEMENT(gst_object_ref_sink(make_bin_with_env(nullptr)));
  gst_util_set_object_arg(G_OBJECT(bin), "vocoder", "hift");
  BOOST_TEST(child_factory(bin) == "hiftdec");
  gst_util_set_object_arg(G_OBJECT(bin), "vocoder", "vocos");
  BOOST_TEST(child_factory(bin) == "vocosdec");
  gst_object_unref(bin);
}

BOOST_AUTO_TEST_CASE(chatterboxvocoder_output_equals_direct_element) {
  at::Tensor mel = frame_major(fixture_tensor(kS3Gen.file, "test.input_mel"));
  const size_t total = mel.numel() * 4;
  // Vocos inside.
  GstElement* bin = make_bin_with_env("1");
  g_object_set(bin, "vocos-model", fixture(kS3Gen.file).c_str(), nullptr);
  Run via_bin = vocode(bin, kS3GenCaps, mel, random_split(total, 320, 9));
  Run direct = vocode(vocosdec(kS3Gen), kS3GenCaps, mel, random_split(total, 320, 9));
  BOOST_TEST(via_bin.log.all() == "");
  BOOST_TEST_REQUIRE(via_bin.out.values.size() == direct.out.values.size());
  BOOST_TEST_REQUIRE(!direct.out.values.empty());
  BOOST_TEST(max_abs_diff(via_bin.out.tensor(), direct.out.tensor()) <= 1e-6);
  // HiFT inside (the bin's hiftdec keeps its defaults: seeded random source,
  // seed 0), against a hiftdec with the same settings.
  at::Tensor hmel = frame_major(fixture_tensor(kHift, "test.input_mel"));
  GstElement* hbin = make_bin_with_env("0");
  g_object_set(hbin, "hift-model", fixture(kHift).c_str(), nullptr);
  Run hvia = vocode(hbin, kS3GenCaps, hmel);
  Run hdirect = vocode(hiftdec(false, true), kS3GenCaps, hmel);
  BOOST_TEST(hvia.log.all() == "");
  BOOST_TEST_REQUIRE(hvia.out.values.size() == static_cast<size_t>(hmel.size(0) * 480));
  BOOST_TEST_REQUIRE(hvia.out.values.size() == hdirect.out.values.size());
  BOOST_TEST(max_abs_diff(hvia.out.tensor(), hdirect.out.tensor()) <= 1e-6);
}

// utterance-end with trim-frames (s3genmel, from t3's trim-tokens for
// multilingual models): the last trim-frames * hop samples of the utterance
// are not pushed; the rest is the untrimmed output. With a lookahead smaller
// than the trim, the samples already out stay and a warning says so.
BOOST_AUTO_TEST_CASE(hiftdec_utterance_end_trim_frames) {
  at::Tensor mel = frame_major(fixture_tensor(kHift, "test.input_mel"));
  const size_t total = mel.numel() * 4;
  auto run = [&](int trim, gint lookahead) {
    GstElement* e = hiftdec(true, true);
    if (lookahead >= 0) g_object_set(e, "lookahead", lookahead, nullptr);
    Harness hr(e);
    hr.set_caps(gst_caps_from_string(kS3GenCaps));
    Run r;
    for (size_t pos = 0; pos < total; pos += 10 * 80 * 4) {
      r.flows.push_back(hr.push(reinterpret_cast<const uint8_t*>(mel.data_ptr<float>()) + pos,
                                std::min<size_t>(10 * 80 * 4, total - pos), pos == 0 ? 0 : GST_CLOCK_TIME_NONE));
      hr.pull_into(r.out);
    }
    GstStructure* s = gst_structure_new("chatterbox/utterance-end", "trim-tokens", G_TYPE_UINT, 1u, nullptr);
    if (trim >= 0) gst_structure_set(s, "trim-frames", G_TYPE_UINT, static_cast<guint>(trim), nullptr);
    BOOST_REQUIRE(gst_harness_push_event(hr.h, gst_event_new_custom(GST_EVENT_CUSTOM_DOWNSTREAM, s)));
    hr.eos();
    hr.pull_into(r.out);
    r.log = hr.messages();
    return r;
  };
  const Run full = run(-1, -1);
  const size_t n = full.out.values.size();
  BOOST_REQUIRE_EQUAL(n, static_cast<size_t>(mel.size(0) * 480));
  const Run two = run(2, -1);
  BOOST_TEST(two.log.all() == "");
  BOOST_REQUIRE_EQUAL(two.out.values.size(), n - 960);
  BOOST_TEST(max_abs_diff(two.out.tensor(), full.out.tensor().slice(0, 0, n - 960)) == 0.0);
  check_timing(two.out, 0, "trimmed");
  // lookahead 1 frame: at most 480 samples are still held at the end.
  const Run low = run(2, 1);
  BOOST_TEST(low.out.values.size() < n);
  BOOST_TEST(low.out.values.size() > n - 960);
  BOOST_TEST(contains(low.log.all(), "already pushed"), low.log.all());
}

// 9. chunk-frames: off a live pipeline the element gathers 50 frames per
// model call (fewer, bigger buffers; the same audio); on a live one it
// vocodes each buffer as it comes; a set value is gathered either way and
// counted in the latency.
BOOST_AUTO_TEST_CASE(vocosdec_chunk_frames_follow_liveness) {
  at::Tensor mel = frame_major(fixture_tensor(kS3Gen.file, "test.input_mel"));
  at::Tensor expected = fixture_tensor(kS3Gen.file, "test.output_audio")[0];
  const int64_t T = mel.size(0);
  const size_t fb = 80 * 4;
  auto run = [&](bool live, int chunk) {
    const std::string desc = std::string("appsrc name=in format=time is-live=") + (live ? "true" : "false") +
                             " caps=\"" + kS3GenCaps + "\" ! vocosdec name=v chunk-frames=" + std::to_string(chunk) +
                             " model=" + fixture(kS3Gen.file) + " ! appsink name=out";
    return run_pipeline(desc, [&](GstElement* p) {
      feed_appsrc(p, "in", mel.data_ptr<float>(), mel.numel() * 4, uniform_split(mel.numel() * 4, fb), 0);
    });
  };
  struct Case {
    bool live;
    int chunk;
    size_t max_buffers, min_buffers;
  };
  // Exact lookahead 14 frames: live 1-frame buffers give about one output
  // buffer per frame after the first 14; gathering 50 gives ceil(T / 50)
  // model calls plus the end of the utterance.
  const size_t gathered = static_cast<size_t>((T + 49) / 50) + 1;
  for (Case c : {Case{false, -1, gathered, 2}, Case{true, -1, static_cast<size_t>(T), static_cast<size_t>(T - 15)},
                 Case{true, 50, gathered, 2}, Case{false, 1, static_cast<size_t>(T), static_cast<size_t>(T - 15)}}) {
    BOOST_TEST_CONTEXT("live " << c.live << ", chunk-frames " << c.chunk) {
      PipelineResult r = run(c.live, c.chunk);
      BOOST_TEST(r.log.eos);
      BOOST_TEST(r.log.all() == "");
      BOOST_TEST_REQUIRE(r.out.values.size() == static_cast<size_t>(expected.numel()));
      BOOST_TEST(rel_l2(r.out.tensor(), expected) <= 2e-5);
      BOOST_TEST(r.out.bufs.size() <= c.max_buffers);
      BOOST_TEST(r.out.bufs.size() >= c.min_buffers);
      check_timing(r.out, 0, "chunked");
    }
  }
  // The latency answer counts a set chunk's wait: (lookahead + chunk - 1) frames.
  Harness hr(vocosdec(kS3Gen));
  g_object_set(hr.element, "chunk-frames", 7, nullptr);
  gst_harness_set_upstream_latency(hr.h, 0);
  hr.set_caps(gst_caps_from_string(kS3GenCaps));
  BOOST_TEST(gst_harness_query_latency(hr.h) == gst_util_uint64_scale_int((14 + 6) * 480, GST_SECOND, 24000));
}
