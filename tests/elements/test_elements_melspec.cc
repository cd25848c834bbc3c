// Element-level tests of melspec (audio -> log-mel) and of the copy-synthesis
// pipelines melspec ! vocoder, through parsed GStreamer pipelines.
#define BOOST_TEST_MODULE elements_melspec
#include <boost/test/unit_test.hpp>

#include "elements/mel/features/mel_extractor.h"
#include "elements/vocoder/vocos/vocos.h"
#include "tests/elements/gst_test_util.h"
#include "tests/tensor_compare.h"

#include <glib/gstdio.h>

#include <iostream>

using namespace chatterbox;
using namespace chatterbox::test;

BOOST_TEST_GLOBAL_FIXTURE(GstGlobal);

namespace {

const char* kAudioCaps = "audio/x-raw,format=F32LE,layout=interleaved,channels=1,rate=24000";

// melspec over `audio` (1-D float32) fed in buffers of `sizes` bytes; output
// frames [T, n_mels] and the caps melspec produced.
struct MelRun {
  PipelineResult r;
  at::Tensor mel;  // [T, n_mels]
  int n_mels = 0;
  std::string caps;
};

MelRun run_melspec(const at::Tensor& audio, const std::string& props = "", const std::vector<size_t>& sizes = {},
                   const std::string& downstream = "", GstClockTime pts0 = 0) {
  MelRun m;
  m.r = run_pipeline(std::string("appsrc name=in format=time caps=\"") + kAudioCaps + "\" ! melspec name=m " + props +
                         downstream + " ! appsink name=out",
                     [&](GstElement* p) { feed_appsrc(p, "in", audio.data_ptr<float>(), audio.numel() * 4, sizes, pts0); });
  if (m.r.out.caps) {
    gchar* s = gst_caps_to_string(m.r.out.caps);
    m.caps = s;
    g_free(s);
    gst_structure_get_int(gst_caps_get_structure(m.r.out.caps, 0), "n-mels", &m.n_mels);
  }
  if (m.n_mels > 0) m.mel = m.r.out.tensor().reshape({-1, m.n_mels});
  return m;
}

// The README's frame-relative criterion: max over bins of
// |exp(got) - exp(exp)| / max over mels of exp(exp) in that frame.
double frame_relative(const at::Tensor& got, const at::Tensor& expected) {
  at::Tensor g = got.to(at::kDouble).exp(), e = expected.to(at::kDouble).exp();
  at::Tensor frame_max = std::get<0>(e.max(1, true));
  return ((g - e).abs() / frame_max).max().item<double>();
}
// Log-domain max abs over bins with exp(expected) >= 1e-3 x frame max.
double log_abs_strong(const at::Tensor& got, const at::Tensor& expected) {
  at::Tensor e = expected.to(at::kDouble);
  at::Tensor strong = e.exp() >= 1e-3 * std::get<0>(e.exp().max(1, true));
  return ((got.to(at::kDouble) - e).abs() * strong).max().item<double>();
}

std::string temp_dir() {
  GError* err = nullptr;
  gchar* d = g_dir_make_tmp("chatterbox-melspec-XXXXXX", &err);
  if (!d) throw std::runtime_error(err->message);
  std::string s = d;
  g_free(d);
  return s;
}

}  // namespace

// 10a. Default preset = S3Gen mel.
BOOST_AUTO_TEST_CASE(melspec_s3gen_matches_reference) {
  const std::string f = "vocos/mel_s3gen.safetensors";
  at::Tensor audio = fixture_tensor(f, "test.audio")[0].contiguous();
  at::Tensor expected = fixture_tensor(f, "test.mel_f64")[0].t().contiguous();  // [T, 80] F64
  MelRun m = run_melspec(audio);
  BOOST_TEST(m.r.log.eos);
  BOOST_TEST(m.r.log.all() == "");
  BOOST_TEST(contains(m.caps, "n-mels=(int)80"), m.caps);
  BOOST_TEST(contains(m.caps, "padding=(string)same"), m.caps);
  BOOST_TEST_REQUIRE(m.mel.size(0) == expected.size(0));
  BOOST_TEST_REQUIRE(m.mel.size(0) == audio.numel() / 480);
  const double rl2 = rel_l2(m.mel, expected), fr = frame_relative(m.mel, expected),
               mad = max_abs_diff(m.mel, expected);
  std::cout << "[melspec s3gen] rel-L2 (log) " << rl2 << ", frame-relative " << fr << ", max abs (log) " << mad << "\n";
  BOOST_TEST(rl2 <= 6e-6);
  BOOST_TEST(fr <= 7e-6);
  BOOST_TEST(mad <= 8e-4);
  // Frame timing: hop 480 at 24 kHz = 20 ms per frame, contiguous.
  BOOST_TEST(pts_gaps(m.r.out) == "");
  BOOST_TEST(m.r.out.bufs.front().pts == 0u);
  BOOST_TEST(m.r.out.bufs.front().discont);
  const BufInfo& last = m.r.out.bufs.back();
  BOOST_TEST(last.pts + last.duration == static_cast<GstClockTime>(m.mel.size(0)) * 20 * GST_MSECOND);
  BOOST_TEST(last.offset_end == static_cast<guint64>(m.mel.size(0)));
}

// 10b. preset=vocos = Vocos MelSpectrogramFeatures.
BOOST_AUTO_TEST_CASE(melspec_vocos_preset_matches_reference) {
  const std::string f = "vocos/mel_vocos.safetensors";
  at::Tensor audio = fixture_tensor(f, "test.audio")[0].contiguous();
  at::Tensor expected = fixture_tensor(f, "test.mel_f64")[0].t().contiguous();  // [T, 100]
  MelRun m = run_melspec(audio, "preset=vocos");
  BOOST_TEST(m.r.log.all() == "");
  BOOST_TEST(contains(m.caps, "n-mels=(int)100"), m.caps);
  BOOST_TEST(contains(m.caps, "padding=(string)center"), m.caps);
  BOOST_TEST_REQUIRE(m.mel.size(0) == 1 + audio.numel() / 256);
  BOOST_TEST_REQUIRE(m.mel.size(0) == expected.size(0));
  // The element computes the library's features: within the README's
  // float32 criteria of the library's float64 result (same tables).
  at::Tensor lib64 = mel::MelExtractor(MelFormat::vocos()).compute(audio.to(at::kDouble));
  const double fr = frame_relative(m.mel, lib64), strong = log_abs_strong(m.mel, lib64);
  std::cout << "[melspec vocos] vs library float64: frame-relative " << fr << ", log max abs over strong bins "
            << strong << "\n";
  BOOST_TEST(fr <= 6e-6);
  BOOST_TEST(strong <= 6e-4);
  // Against the reference: plus what our CPU-independent tables' last bits
  // do to the mel (test_mel.cc bounds the tables themselves), computed in
  // float64.
  const double fr_tables = frame_relative(lib64, expected), strong_tables = log_abs_strong(lib64, expected);
  std::cout << "[melspec vocos] vs reference: frame-relative " << frame_relative(m.mel, expected) << " (tables "
            << fr_tables << ")\n";
  BOOST_TEST(frame_relative(m.mel, expected) <= 6e-6 + fr_tables);
  BOOST_TEST(log_abs_strong(m.mel, expected) <= 6e-4 + strong_tables);
}

// 10c. Any split of the audio gives the same frames and contiguous stamps.
BOOST_AUTO_TEST_CASE(melspec_chunked_equals_whole) {
  for (const char* preset : {"s3gen", "vocos"}) {
    BOOST_TEST_CONTEXT(preset) {
      const std::string f = std::string("vocos/mel_") + preset + ".safetensors";
      at::Tensor audio = fixture_tensor(f, "test.audio")[0].contiguous();
      const std::string props = std::string("preset=") + preset;
      MelRun whole = run_melspec(audio, props);
      BOOST_TEST_REQUIRE(whole.mel.numel() > 0);
      const GstClockTime pts0 = 3 * GST_SECOND;
      for (uint32_t seed : {1u, 2u}) {
        // Pieces from a few samples to a few hops, empty buffers included.
        MelRun r = run_melspec(audio, props, random_split(audio.numel() * 4, 4 * 700, seed), "", pts0);
        BOOST_TEST(r.r.log.all() == "");
        BOOST_TEST_REQUIRE(r.mel.sizes() == whole.mel.sizes());
        const double mad = max_abs_diff(r.mel, whole.mel);
        std::cout << "[melspec chunked] " << preset << " seed " << seed << ": " << r.r.out.bufs.size()
                  << " buffers, max abs (log) " << mad << "\n";
        BOOST_TEST(mad <= 1e-5);
        BOOST_TEST(pts_gaps(r.r.out) == "");
        BOOST_TEST(r.r.out.bufs.front().pts == pts0);
        BOOST_TEST(r.r.out.bufs.front().discont);
      }
    }
  }
}

// 10d. Without a preset, melspec follows the layout downstream asks for.
BOOST_AUTO_TEST_CASE(melspec_follows_vocoder_layout) {
  struct Case {
    const char* model;
    const char* n_mels;
    int hop;
    bool center;
  };
  for (Case c : {Case{"vocos/tiny_center.safetensors", "n-mels=(int)100", 256, true},
                 Case{"vocos/tiny_s3gen_same.safetensors", "n-mels=(int)80", 480, false}}) {
    BOOST_TEST_CONTEXT(c.model) {
      at::Tensor audio = fixture_tensor(c.model, "test.input_audio")[0].contiguous();
      at::Tensor ref_audio = fixture_tensor(c.model, "test.output_audio")[0];
      std::string mel_caps;
      PipelineResult r = run_pipeline(
          std::string("appsrc name=in format=time caps=\"") + kAudioCaps +
              "\" ! melspec name=m ! vocosdec model=" + fixture(c.model) + " ! appsink name=out",
          [&](GstElement* p) { feed_appsrc(p, "in", audio.data_ptr<float>(), audio.numel() * 4); },
          [&](GstElement* p) {
            GstElement* m = gst_bin_get_by_name(GST_BIN(p), "m");
            GstPad* pad = gst_element_get_static_pad(m, "src");
            if (GstCaps* caps = gst_pad_get_current_caps(pad)) {
              gchar* s = gst_caps_to_string(caps);
              mel_caps = s;
              g_free(s);
              gst_caps_unref(caps);
            }
            gst_object_unref(pad);
            gst_object_unref(m);
          });
      BOOST_TEST(r.log.eos);
      BOOST_TEST(r.log.all() == "");
      BOOST_TEST(contains(mel_caps, c.n_mels), mel_caps);
      BOOST_TEST(contains(mel_caps, c.center ? "padding=(string)center" : "padding=(string)same"), mel_caps);
      const int64_t n = audio.numel();
      BOOST_TEST(static_cast<int64_t>(r.out.values.size()) == c.hop * (n / c.hop));
      BOOST_TEST_REQUIRE(r.out.values.size() == static_cast<size_t>(ref_audio.numel()));
      // The pipeline is the library's features through the library's
      // vocoder. (Against the reference audio, the random tiny vocoder
      // amplifies the last bits of the features' empty bands, which float32
      // and table rounding decide: printed, not bounded.)
      const MelFormat layout = c.center ? MelFormat::vocos() : MelFormat::s3gen();
      at::Tensor feats = mel::MelExtractor(layout).compute(audio);  // [T, n_mels] float32
      auto voc = VocosVocoder::load(fixture(c.model));
      at::Tensor direct = voc->forward(feats.t().unsqueeze(0)).reshape({-1});
      const double rl2 = rel_l2(r.out.tensor(), direct);
      std::cout << "[melspec ! vocosdec] " << c.model << ": audio rel-L2 vs in-process forward " << rl2
                << ", vs reference audio " << rel_l2(r.out.tensor(), ref_audio) << "\n";
      // Both float32 evaluations of the same forward (streamed features and
      // audio vs whole), each within the Vocos README's float32 rel-L2 error
      // (1.4e-6) of the exact result: 2 x 3 x that.
      BOOST_TEST(rl2 <= 2 * 3 * 1.4e-6);
    }
  }
}

// 10e. The wrong rate is refused, naming what melspec needs and the fix.
BOOST_AUTO_TEST_CASE(melspec_refuses_wrong_rate_with_advice) {
  // A pinned rate on a capsfilter fails at link time (gst_parse names the
  // caps melspec cannot take).
  PipelineResult r = run_pipeline("audiotestsrc num-buffers=5 ! audio/x-raw,rate=16000 ! melspec ! fakesink");
  BOOST_TEST(!r.log.eos);
  BOOST_TEST_REQUIRE(!r.log.errors.empty());
  BOOST_TEST(contains(r.log.errors[0], "melspec"), r.log.all());
  BOOST_TEST(contains(r.log.errors[0], "16000"), r.log.all());
  // Caps that only show up at run time (appsrc, a demuxer's pad): melspec
  // itself explains, suggesting audioconvert ! audioresample.
  std::vector<float> tone(16000, 0.1f);
  PipelineResult rt = run_pipeline("appsrc name=in format=time ! melspec ! fakesink", [&](GstElement* p) {
    GstElement* src = gst_bin_get_by_name(GST_BIN(p), "in");
    GstCaps* caps = gst_caps_from_string("audio/x-raw,format=F32LE,layout=interleaved,channels=1,rate=16000");
    g_object_set(src, "caps", caps, nullptr);
    gst_caps_unref(caps);
    gst_object_unref(src);
    feed_appsrc(p, "in", tone.data(), tone.size() * 4);
  });
  BOOST_TEST(!rt.log.eos);
  BOOST_TEST(!rt.log.errors.empty());
  const std::string all = rt.log.all();
  BOOST_TEST(contains(all, "24000"), all);
  BOOST_TEST(contains(all, "audioconvert ! audioresample"), all);
}

// 10f. audioconvert ! audioresample convert anything to what melspec needs.
BOOST_AUTO_TEST_CASE(melspec_after_convert_and_resample) {
  std::string sink_caps;
  PipelineResult r = run_pipeline(
      "audiotestsrc num-buffers=20 samplesperbuffer=1024 ! audio/x-raw,rate=16000,format=S16LE,channels=2 ! "
      "audioconvert ! audioresample ! melspec name=m ! appsink name=out",
      {}, [&](GstElement* p) {
        GstElement* m = gst_bin_get_by_name(GST_BIN(p), "m");
        GstPad* pad = gst_element_get_static_pad(m, "sink");
        if (GstCaps* caps = gst_pad_get_current_caps(pad)) {
          gchar* s = gst_caps_to_string(caps);
          sink_caps = s;
          g_free(s);
          gst_caps_unref(caps);
        }
        gst_object_unref(pad);
        gst_object_unref(m);
      });
  BOOST_TEST(r.log.eos);
  BOOST_TEST(r.log.all() == "");
  BOOST_TEST(contains(sink_caps, "rate=(int)24000"), sink_caps);
  BOOST_TEST(contains(sink_caps, "channels=(int)1"), sink_caps);
  // 20 x 1024 samples at 16 kHz = 1.28 s = 30720 samples at 24 kHz = 64 frames
  // (audioresample may round the total by a sample or so).
  const size_t frames = r.out.values.size() / 80;
  BOOST_TEST(r.out.values.size() % 80 == 0u);
  BOOST_TEST(frames >= 63u);
  BOOST_TEST(frames <= 64u);
}

// 11. Copy synthesis: wav file -> melspec -> vocoder -> wav file.
BOOST_AUTO_TEST_CASE(copy_synthesis_pipelines) {
  const std::string f = "vocos/mel_s3gen.safetensors";
  at::Tensor audio = fixture_tensor(f, "test.audio")[0].contiguous();
  const int64_t n = audio.numel();
  const std::string dir = temp_dir();
  const std::string in_wav = dir + "/in.wav";
  PipelineResult w = run_pipeline(std::string("appsrc name=in format=time caps=\"") + kAudioCaps +
                                      "\" ! wavenc ! filesink location=" + in_wav,
                                  [&](GstElement* p) { feed_appsrc(p, "in", audio.data_ptr<float>(), n * 4, {}, 0); });
  BOOST_TEST_REQUIRE(w.log.eos, w.log.all());
  struct Case {
    std::string name, vocoder;
  };
  for (const Case& c : {Case{"vocosdec", "vocosdec model=" + fixture("vocos/tiny_s3gen_same.safetensors")},
                        Case{"hiftdec", "hiftdec model=" + fixture("hift/hift_tiny.safetensors")}}) {
    BOOST_TEST_CONTEXT(c.name) {
      const std::string out_wav = dir + "/out_" + c.name + ".wav";
      PipelineResult r = run_pipeline("filesrc location=" + in_wav +
                                      " ! wavparse ! audioconvert ! audioresample ! melspec ! " + c.vocoder +
                                      " ! wavenc ! filesink location=" + out_wav);
      BOOST_TEST(r.log.eos);
      BOOST_TEST(r.log.all() == "");
      // Read the result back.
      PipelineResult back = run_pipeline("filesrc location=" + out_wav + " ! wavparse ! appsink name=out");
      BOOST_TEST(back.log.eos, back.log.all());
      BOOST_TEST_REQUIRE(back.out.caps != nullptr);
      gchar* cs = gst_caps_to_string(back.out.caps);
      BOOST_TEST(contains(cs, "rate=(int)24000"), cs);
      BOOST_TEST(contains(cs, "F32LE"), cs);
      g_free(cs);
      BOOST_TEST(static_cast<int64_t>(back.out.values.size()) == n / 480 * 480);
      double peak = 0;
      for (float v : back.out.values) peak = std::max(peak, static_cast<double>(std::fabs(v)));
      BOOST_TEST(peak > 1e-3);  // audio, not silence
      BOOST_TEST(std::isfinite(peak));
      g_unlink(out_wav.c_str());
    }
  }
  g_unlink(in_wav.c_str());
  g_rmdir(dir.c_str());
}
