// perthmark / perthdetect through GStreamer, against upstream's run
// (tests/perth/README.md), and chatterboxtts with a Perth model in its
// model directory.
#define BOOST_TEST_MODULE perth_elements
#include <boost/test/unit_test.hpp>

#include "gst-plugins/core/checkpoint.h"
#include "tests/elements/gst_test_util.h"
#include "tests/fixtures.h"
#include "tests/tensor_compare.h"

#include <ATen/ATen.h>
#include <gst/check/gstharness.h>
#include <gst/gst.h>

#include <cstdio>
#include <iostream>
#include <string>
#include <unistd.h>
#include <vector>

using namespace chatterbox;
using namespace chatterbox::test;

namespace {

struct GstInit {
  GstInit() { gst_init(nullptr, nullptr); }
};
BOOST_GLOBAL_FIXTURE(GstInit);

const std::string kDir = PERTH_TEST_DIR;
const std::string kWeights = kDir + "/perth_net_000800.pth.tar";
constexpr double kTolConf = 2e-6, kTolSignal = 4e-6;  // README: 10x float32 vs float64

const TensorStore& fx() {
  static TensorStore s = read_safetensors(kDir + "/perth_tiny.safetensors");
  return s;
}
at::Tensor T(const std::string& k) { return fx().tensors.at("test." + k).contiguous(); }
double D(const std::string& k) { return T(k).item<double>(); }

GstCaps* audio_caps(int rate) {
  return gst_caps_new_simple("audio/x-raw", "format", G_TYPE_STRING, "F32LE", "layout", G_TYPE_STRING, "interleaved",
                             "channels", G_TYPE_INT, 1, "rate", G_TYPE_INT, rate, nullptr);
}

// Pushes `wave` in buffers of `chunk` samples with running PTS.
void push_wave(Harness& h, const at::Tensor& wave, int64_t chunk, int rate, GstClockTime t0, bool discont_first) {
  const float* x = wave.data_ptr<float>();
  const int64_t n = wave.size(0);
  for (int64_t i = 0; i < n; i += chunk) {
    const int64_t k = std::min(chunk, n - i);
    const GstClockTime pts = t0 + gst_util_uint64_scale_int(i, GST_SECOND, rate);
    BOOST_REQUIRE(h.push(x + i, k * sizeof(float), pts, discont_first && i == 0) == GST_FLOW_OK);
  }
}

struct Detection {
  double confidence;
  bool watermarked, silent;
  guint64 utterance;
};
std::vector<Detection> detections(GstBus* bus) {
  std::vector<Detection> out;
  while (GstMessage* m = gst_bus_pop_filtered(bus, GST_MESSAGE_ELEMENT)) {
    const GstStructure* s = gst_message_get_structure(m);
    if (s && gst_structure_has_name(s, "perth-watermark")) {
      Detection d{};
      gboolean w = FALSE, sil = FALSE;
      gst_structure_get_double(s, "confidence", &d.confidence);
      gst_structure_get_boolean(s, "watermarked", &w);
      gst_structure_get_boolean(s, "silent", &sil);
      gst_structure_get_uint64(s, "utterance", &d.utterance);
      d.watermarked = w;
      d.silent = sil;
      out.push_back(d);
    }
    gst_message_unref(m);
  }
  return out;
}

GstElement* mark(const char* mode) {
  GstElement* e = make_element("perthmark");
  g_object_set(e, "model", kWeights.c_str(), nullptr);
  gst_util_set_object_arg(G_OBJECT(e), "mode", mode);
  return e;
}

}  // namespace

BOOST_AUTO_TEST_CASE(perthmark_utterance_is_upstream) {
  Harness h(mark("utterance"));
  h.set_caps(audio_caps(24000));
  const at::Tensor wave = T("wave_24k");
  push_wave(h, wave, 960, 24000, 0, true);
  BOOST_TEST(h.pull_all().values.empty());  // held until the utterance ends
  BOOST_REQUIRE(h.eos());
  Collected c = h.pull_all();
  BOOST_TEST(static_cast<int64_t>(c.values.size()) == wave.size(0));  // never drops samples
  const int64_t nref = T("marked_24k").size(0);
  const at::Tensor o = c.tensor();
  const double d = max_abs_diff(o.slice(0, 0, nref), T("marked_24k"));
  std::cout << "perthmark utterance: max abs from upstream " << d << " over " << nref << " samples\n";
  BOOST_TEST(d <= kTolSignal);
  BOOST_TEST(max_abs_diff(o.slice(0, nref), wave.slice(0, nref)) == 0.0);  // the input's tail
  BOOST_TEST(pts_gaps(c).empty(), pts_gaps(c));
  BOOST_TEST(c.bufs.front().pts == 0u);
  BOOST_TEST(c.bufs.front().discont);
  // reports the utterance it held as its latency
  guint64 lat = 0;
  g_object_get(h.element, "latency", &lat, nullptr);
  BOOST_TEST(lat == gst_util_uint64_scale_int(wave.size(0), GST_SECOND, 24000));
}

BOOST_AUTO_TEST_CASE(perthmark_discont_splits_utterances) {
  Harness h(mark("utterance"));
  h.set_caps(audio_caps(24000));
  const at::Tensor wave = T("wave_24k");
  const at::Tensor a = wave.slice(0, 0, 40000).contiguous(), b = wave.slice(0, 40000).contiguous();
  push_wave(h, a, 4000, 24000, 0, true);
  push_wave(h, b, 4000, 24000, 5 * GST_SECOND, true);  // DISCONT: a new utterance
  Collected first = h.pull_all();
  BOOST_TEST(static_cast<int64_t>(first.values.size()) == a.size(0));
  BOOST_REQUIRE(h.eos());
  Collected second = h.pull_all();
  BOOST_TEST(static_cast<int64_t>(second.values.size()) == b.size(0));
  BOOST_TEST(second.bufs.front().pts == 5 * GST_SECOND);
  BOOST_TEST(second.bufs.front().discont);
  // each half marked on its own (its own mask maximum), not as one utterance
  const at::Tensor whole = T("marked_24k").slice(0, 0, 40000);
  BOOST_TEST(max_abs_diff(first.tensor().slice(0, 0, 39000), whole.slice(0, 0, 39000)) > 1e-6);
}

BOOST_AUTO_TEST_CASE(perthmark_stream_deviation_and_latency) {
  Harness h(mark("stream"));
  h.set_caps(audio_caps(24000));
  const at::Tensor wave = T("wave_24k");
  push_wave(h, wave, 480, 24000, 0, true);
  Collected c = h.pull_all();
  const size_t before_eos = c.values.size();
  BOOST_TEST(before_eos > 0u);  // streams
  guint64 lat = 0;
  g_object_get(h.element, "latency", &lat, nullptr);
  BOOST_REQUIRE(h.eos());
  h.pull_into(c);
  BOOST_TEST(static_cast<int64_t>(c.values.size()) == wave.size(0));
  BOOST_TEST(pts_gaps(c).empty(), pts_gaps(c));
  const int64_t nref = T("marked_24k").size(0);
  const double d = max_abs_diff(c.tensor().slice(0, 0, nref), T("marked_24k"));
  const double held = static_cast<double>(wave.size(0) - static_cast<int64_t>(before_eos)) / 24000.0;
  std::cout << "perthmark stream: max abs from exact " << d << ", latency " << lat / 1e9 << " s, held at EOS "
            << held << " s\n";
  BOOST_TEST(lat > 200 * GST_MSECOND);
  BOOST_TEST(lat < 600 * GST_MSECOND);
  BOOST_TEST(held < 0.6);
  // this clip's loudest frame comes early enough that the running mask is the exact one
  BOOST_TEST(d <= kTolSignal);
}

BOOST_AUTO_TEST_CASE(perthdetect_separates_marked_from_unmarked) {
  GstElement* e = make_element("perthdetect");
  g_object_set(e, "model", kWeights.c_str(), nullptr);
  Harness h(e);
  h.set_caps(audio_caps(24000));
  double c0 = 0;
  g_object_get(h.element, "confidence", &c0, nullptr);
  BOOST_TEST(c0 == -1.0);
  push_wave(h, T("marked_24k"), 2400, 24000, 0, true);
  push_wave(h, T("wave_24k"), 2400, 24000, 4 * GST_SECOND, true);
  // passes audio through unchanged
  Collected c = h.pull_all();
  BOOST_TEST(static_cast<int64_t>(c.values.size()) == T("marked_24k").size(0) + T("wave_24k").size(0));
  BOOST_TEST(max_abs_diff(c.tensor().slice(0, 0, T("marked_24k").size(0)), T("marked_24k")) == 0.0);
  std::vector<Detection> d = detections(h.bus);
  BOOST_REQUIRE(d.size() == 1u);  // the first utterance, at the DISCONT
  BOOST_REQUIRE(h.eos());
  std::vector<Detection> d2 = detections(h.bus);
  BOOST_REQUIRE(d2.size() == 1u);  // the second, at EOS
  std::cout << "perthdetect: marked " << d[0].confidence << " (ref " << D("conf_marked") << "), unmarked "
            << d2[0].confidence << " (ref " << D("conf_unmarked") << ")\n";
  BOOST_TEST(std::abs(d[0].confidence - D("conf_marked")) <= kTolConf);
  BOOST_TEST(d[0].watermarked);
  BOOST_TEST(d[0].utterance == 0u);
  BOOST_TEST(std::abs(d2[0].confidence - D("conf_unmarked")) <= kTolConf);
  BOOST_TEST(!d2[0].watermarked);
  BOOST_TEST(d2[0].utterance == 1u);
  double conf = 0;
  gboolean wm = TRUE;
  g_object_get(h.element, "confidence", &conf, "watermarked", &wm, nullptr);
  BOOST_TEST(conf == d2[0].confidence);
  BOOST_TEST(!wm);
}

BOOST_AUTO_TEST_CASE(mark_then_detect_pipeline_at_44k1) {
  // any rate: 44.1 kHz in, marked by perthmark in both modes, detected by perthdetect
  const at::Tensor w24 = T("wave_24k");
  for (const char* mode : {"utterance", "stream"}) {
    const std::string desc = std::string("appsrc name=in format=time caps=audio/x-raw,format=F32LE,layout=interleaved,"
                                         "channels=1,rate=24000 ! audioresample ! audio/x-raw,rate=44100 ! perthmark "
                                         "mode=") +
                             mode + " model=" + kWeights + " ! perthdetect name=det model=" + kWeights +
                             " ! appsink name=out";
    double conf = -1;
    gboolean wm = FALSE;
    PipelineResult r = run_pipeline(
        desc, [&](GstElement* p) { feed_appsrc(p, "in", w24.data_ptr<float>(), w24.numel() * 4, {4410 * 4}, 0); },
        [&](GstElement* p) {
          GstElement* det = gst_bin_get_by_name(GST_BIN(p), "det");
          g_object_get(det, "confidence", &conf, "watermarked", &wm, nullptr);
          gst_object_unref(det);
        });
    BOOST_TEST(r.log.errors.empty(), r.log.all());
    std::cout << "44.1 kHz, mode " << mode << ": confidence " << conf << "\n";
    BOOST_TEST(wm);
    BOOST_TEST(conf > 0.5);
  }
}

BOOST_AUTO_TEST_CASE(missing_model_is_a_clear_error) {
  GstElement* e = GST_ELEMENT(gst_object_ref_sink(make_element("perthmark")));
  g_object_set(e, "model", "/nonexistent/perth_net_250000.pth.tar", nullptr);
  GstBus* bus = gst_bus_new();
  gst_element_set_bus(e, bus);
  BOOST_TEST(gst_element_set_state(e, GST_STATE_READY) == GST_STATE_CHANGE_FAILURE);
  BusLog log;
  log.pop_all(bus);
  BOOST_TEST(log.all().find("does not exist") != std::string::npos, log.all());
  gst_element_set_state(e, GST_STATE_NULL);
  gst_element_set_bus(e, nullptr);
  gst_object_unref(bus);
  gst_object_unref(e);
}

// --- chatterboxtts ------------------------------------------------------------------

namespace {

struct ModelDir {
  std::string dir;
  std::vector<std::string> files;
  explicit ModelDir(bool with_perth) {
    char tmpl[] = "/tmp/chatterbox-perth-XXXXXX";
    dir = mkdtemp(tmpl);
    link(fixture("t3/t3_tiny.safetensors"), "t3_cfg.safetensors");
    link(fixture("t3/tokenizer_tiny.json"), "tokenizer.json");
    link(fixture("t3/conds_tiny.pt"), "conds.pt");
    link(fixture("s3gen/flow_tiny.safetensors"), "s3gen.safetensors");
    if (with_perth) link(kWeights, "perth_net_000800.pth.tar");
  }
  void link(const std::string& from, const std::string& to) {
    BOOST_REQUIRE(symlink(from.c_str(), (dir + "/" + to).c_str()) == 0);
    files.push_back(dir + "/" + to);
  }
  ~ModelDir() {
    for (const auto& f : files) std::remove(f.c_str());
    rmdir(dir.c_str());
  }
};

struct TtsRun {
  long samples = 0;
  bool has_watermark_child = false;
  std::string warnings;
  double confidence = -1;
};

TtsRun tts(const std::string& props) {
  const std::string desc = "appsrc name=in caps=text/x-raw,format=utf8 ! chatterboxtts name=tts " + props +
                           " greedy=true vocoder=hift hift-model=" + fixture("hift/hift_tiny.safetensors") +
                           " ! perthdetect name=det model=" + kWeights + " ! appsink name=out";
  const std::string text = "the little robot counted stones by the river";
  TtsRun out;
  PipelineResult r = run_pipeline(
      desc, [&](GstElement* p) { feed_appsrc(p, "in", text.data(), text.size()); },
      [&](GstElement* p) {
        GstElement* bin = gst_bin_get_by_name(GST_BIN(p), "tts");
        GstElement* wm = gst_bin_get_by_name(GST_BIN(bin), "watermark");
        out.has_watermark_child = wm != nullptr;
        if (wm) gst_object_unref(wm);
        gst_object_unref(bin);
        GstElement* det = gst_bin_get_by_name(GST_BIN(p), "det");
        g_object_get(det, "confidence", &out.confidence, nullptr);
        gst_object_unref(det);
      });
  BOOST_TEST(r.log.errors.empty(), r.log.all());
  BOOST_TEST(pts_gaps(r.out).empty(), pts_gaps(r.out));
  out.samples = static_cast<long>(r.out.values.size());
  for (const auto& w : r.log.warnings) out.warnings += w + "\n";
  return out;
}

const long kTtsSamples = 15 * 2 * 480;  // tests/tts: 15 valid tokens -> 14400 samples

}  // namespace

BOOST_AUTO_TEST_CASE(tts_watermarks_when_the_model_dir_has_perth) {
  ModelDir m(true);
  TtsRun marked = tts("model-dir=" + m.dir);
  TtsRun plain = tts("model-dir=" + m.dir + " watermark=false");
  std::cout << "chatterboxtts: confidence with the mark " << marked.confidence << ", watermark=false "
            << plain.confidence << "\n";
  BOOST_TEST(marked.has_watermark_child);
  BOOST_TEST(marked.samples == kTtsSamples);  // same length as unmarked output
  BOOST_TEST(marked.warnings.find("NOT watermarked") == std::string::npos, marked.warnings);
  BOOST_TEST(!plain.has_watermark_child);
  BOOST_TEST(plain.samples == kTtsSamples);
  BOOST_TEST(plain.warnings.find("NOT watermarked") == std::string::npos, plain.warnings);  // asked for
  // The random-weight TTS speaks noise-like audio the toy detector was not
  // trained on: the mark must still raise its score, by a clear margin.
  BOOST_TEST(marked.confidence > plain.confidence + 0.1);
}

BOOST_AUTO_TEST_CASE(tts_watermark_model_property_and_warning) {
  ModelDir bare(false);
  TtsRun none = tts("model-dir=" + bare.dir);
  BOOST_TEST(!none.has_watermark_child);
  BOOST_TEST(none.warnings.find("NOT watermarked") != std::string::npos, none.warnings);
  TtsRun given = tts("model-dir=" + bare.dir + " watermark-model=" + kWeights + " watermark-mode=utterance");
  BOOST_TEST(given.has_watermark_child);
  BOOST_TEST(given.samples == kTtsSamples);
  BOOST_TEST(given.confidence > none.confidence + 0.1);
}
