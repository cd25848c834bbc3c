// Live stress: property changes while PLAYING (each either allowed and
// applied, or refused with a warning, as docs/robustness.md says), and two
// pipelines running at once in two threads, sharing model weights through
// the cache, each giving exactly what one pipeline alone gives.
#define BOOST_TEST_MODULE stress_live
#include <boost/test/data/monomorphic.hpp>
#include <boost/test/data/test_case.hpp>
#include <boost/test/unit_test.hpp>

#include "tests/stress/stress_util.h"

#include <thread>

using namespace chatterbox::stress;
namespace bdata = boost::unit_test::data;

BOOST_GLOBAL_FIXTURE(GstInit);

namespace {

std::string string_prop(GstElement* e, const char* name) {
  gchar* v = nullptr;
  g_object_get(e, name, &v, nullptr);
  std::string s = v ? v : "";
  g_free(v);
  return s;
}

size_t count_containing(const std::vector<std::string>& v, const std::string& part) {
  size_t n = 0;
  for (const auto& s : v) n += contains(s, part);
  return n;
}

// Every buffer starts where the previous one ended (1 ns rounding allowed).
std::string pts_gaps(const Output& o) {
  std::string out;
  for (size_t i = 1; i < o.pts.size(); ++i) {
    const gint64 d = static_cast<gint64>(o.pts[i]) - static_cast<gint64>(o.pts[i - 1] + o.duration[i - 1]);
    if (d < -1 || d > 1) out += "gap of " + std::to_string(d) + " ns before buffer " + std::to_string(i) + "; ";
  }
  return out;
}

}  // namespace

// --- properties while PLAYING --------------------------------------------------

// Files and devices: refused outside NULL, with a warning naming the
// property, the value unchanged, the stream unharmed.
BOOST_AUTO_TEST_CASE(file_properties_are_refused_while_playing) {
  struct Refusal {
    const char* kase;
    const char* factory;
    std::vector<std::string> props;
  };
  const std::vector<Refusal> all = {
      {"vocosdec", "vocosdec", {"model", "device"}},
      {"hiftdec", "hiftdec", {"model", "device"}},
      {"s3genmel", "s3genmel", {"model", "voice", "noise-file", "device"}},
      {"t3", "t3", {"model", "tokenizer", "voice", "device"}},
      {"chatterboxvocoder", "chatterboxvocoder", {"vocos-model", "hift-model", "device"}},
      {"chatterboxtts", "chatterboxtts", {"model-dir", "voice", "vocos-model", "hift-model", "s3gen-model"}},
  };
  for (const auto& r : all) {
    const Case& c = find_case(r.kase);
    Pipeline p(c.desc);
    GstElement* e = p.element(r.factory);
    BOOST_REQUIRE(p.set(GST_STATE_PLAYING) == GST_STATE_CHANGE_SUCCESS);
    Output out;
    BOOST_REQUIRE(p.pull(out));
    for (const auto& prop : r.props) {
      const std::string before = string_prop(e, prop.c_str());
      g_object_set(e, prop.c_str(), "/nonexistent/elsewhere.safetensors", nullptr);
      BOOST_TEST(string_prop(e, prop.c_str()) == before, r.factory << "." << prop << " changed while playing");
    }
    p.pull_to_eos(out);
    p.set(GST_STATE_NULL);
    p.drain_bus();
    BOOST_TEST(p.log.errors.empty(), r.factory << ": " << p.log.all());
    for (const auto& prop : r.props)
      BOOST_TEST(count_containing(p.log.warnings, "'" + prop + "' can only change in the NULL state") == 1u,
                 r.factory << "." << prop << ": " << p.log.all());
    // Back in NULL the same property is accepted.
    const std::string first = r.props.front();
    g_object_set(e, first.c_str(), "/some/other.safetensors", nullptr);
    BOOST_TEST(string_prop(e, first.c_str()) == "/some/other.safetensors", r.factory);
  }
}

// melspec's recipe is fixed at caps negotiation: refused from PAUSED on.
BOOST_AUTO_TEST_CASE(melspec_recipe_is_refused_while_playing) {
  Pipeline p(find_case("melspec").desc);
  GstElement* e = p.element("melspec");
  BOOST_REQUIRE(p.set(GST_STATE_PLAYING) == GST_STATE_CHANGE_SUCCESS);
  Output out;
  BOOST_REQUIRE(p.pull(out));
  g_object_set(e, "n-mels", 100, "hop-length", 256, nullptr);
  gint n_mels = -1, hop = -1;
  g_object_get(e, "n-mels", &n_mels, "hop-length", &hop, nullptr);
  BOOST_TEST(n_mels == 0);
  BOOST_TEST(hop == 0);
  p.pull_to_eos(out);
  p.set(GST_STATE_NULL);
  BOOST_TEST(p.log.errors.empty(), p.log.all());
  BOOST_TEST(count_containing(p.log.warnings, "can only change in the NULL or READY state") == 2u, p.log.all());
  BOOST_TEST(out.bytes.size() == reference(find_case("melspec")).bytes.size());
}

// hiftdec's source settings are read when the model loads: refused too.
BOOST_AUTO_TEST_CASE(hiftdec_source_settings_are_refused_while_playing) {
  Pipeline p(find_case("hiftdec").desc);
  GstElement* e = p.element("hiftdec");
  BOOST_REQUIRE(p.set(GST_STATE_PLAYING) == GST_STATE_CHANGE_SUCCESS);
  Output out;
  BOOST_REQUIRE(p.pull(out));
  g_object_set(e, "deterministic", FALSE, "seed", static_cast<guint64>(9), "trim-fade", FALSE, nullptr);
  gboolean det = FALSE, fade = FALSE;
  guint64 seed = 1;
  g_object_get(e, "deterministic", &det, "seed", &seed, "trim-fade", &fade, nullptr);
  BOOST_TEST(det == TRUE);
  BOOST_TEST(fade == TRUE);
  BOOST_TEST(seed == 0u);
  p.pull_to_eos(out);
  p.set(GST_STATE_NULL);
  p.drain_bus();
  BOOST_TEST(p.log.errors.empty(), p.log.all());
  BOOST_TEST(count_containing(p.log.warnings, "can only change in the NULL state") == 3u, p.log.all());
}

// lookahead: allowed while playing, applied from the next buffer. Dropping
// it to 0 mid-stream and back: the output stays contiguous (no gap, no
// repeat), has the utterance's exact length, is finite, and a LATENCY
// message is posted for each change.
BOOST_DATA_TEST_CASE(lookahead_changes_while_playing_keep_the_stream_whole,
                     bdata::make(std::vector<std::string>{"vocosdec", "hiftdec", "chatterboxvocoder"}), name) {
  const Case& c = find_case(name);
  const Output& ref = reference(c);
  Pipeline p(c.desc);
  GstElement* e = p.element(name.c_str());
  // Every buffer vocoded as it comes (off a live pipeline the default
  // gathers 50 frames per call, too few buffers to change anything between).
  g_object_set(e, "chunk-frames", 1, nullptr);
  BOOST_REQUIRE(p.set(GST_STATE_PLAYING) == GST_STATE_CHANGE_SUCCESS);
  Output out;
  BOOST_REQUIRE(p.pull(out));
  g_object_set(e, "lookahead", 0, nullptr);
  BOOST_REQUIRE(p.pull(out));
  BOOST_REQUIRE(p.pull(out));
  g_object_set(e, "lookahead", -1, nullptr);
  p.pull_to_eos(out);
  p.set(GST_STATE_NULL);
  p.drain_bus();
  BOOST_TEST(p.log.errors.empty(), p.log.all());
  BOOST_TEST(p.log.warnings.empty(), p.log.all());
  BOOST_TEST(p.log.latency_messages >= 2, name);
  BOOST_TEST(out.bytes.size() == ref.bytes.size(), name);
  BOOST_TEST(pts_gaps(out) == "", name);
  std::vector<float> v(out.bytes.size() / 4);
  std::memcpy(v.data(), out.bytes.data(), v.size() * 4);
  for (float x : v) BOOST_REQUIRE(std::isfinite(x));
}

// t3's decoding settings and s3genmel's noise / step settings are live:
// read at the start of each text buffer / utterance, never half-way. A
// change while playing is accepted without a warning and the stream ends
// cleanly; the next run (from NULL) uses the new values.
BOOST_AUTO_TEST_CASE(live_settings_are_accepted_while_playing) {
  {
    Pipeline p(find_case("t3").desc);
    GstElement* e = p.element("t3");
    BOOST_REQUIRE(p.set(GST_STATE_PLAYING) == GST_STATE_CHANGE_SUCCESS);
    Output out;
    BOOST_REQUIRE(p.pull(out));
    g_object_set(e, "temperature", 0.5, "seed", static_cast<guint64>(3), "tokens-per-buffer", 2, nullptr);
    p.pull_to_eos(out);
    p.set(GST_STATE_NULL);
    p.drain_bus();
    BOOST_TEST(p.log.errors.empty(), p.log.all());
    BOOST_TEST(p.log.warnings.empty(), p.log.all());
    gdouble t = 0;
    g_object_get(e, "temperature", &t, nullptr);
    BOOST_TEST(t == 0.5);
  }
  for (const char* kase : {"s3genmel", "s3genmel-chunked"}) {
    Pipeline p(find_case(kase).desc);
    GstElement* e = p.element("s3genmel");
    BOOST_REQUIRE(p.set(GST_STATE_PLAYING) == GST_STATE_CHANGE_SUCCESS);
    g_object_set(e, "seed", static_cast<guint64>(11), "n-timesteps", 3, "cfg-rate", 0.5, "chunk-tokens", 4u, nullptr);
    Output out;
    p.pull_to_eos(out);
    p.set(GST_STATE_NULL);
    p.drain_bus();
    BOOST_TEST(p.log.errors.empty(), kase << ": " << p.log.all());
    BOOST_TEST(p.log.warnings.empty(), kase << ": " << p.log.all());
    BOOST_TEST(!out.bytes.empty(), kase);
  }
}

// --- two pipelines at once ---------------------------------------------------

// Each element's pipeline run twice in each of two threads at once (the
// second pipeline's elements share the first one's weights through the model
// cache): every run equals the single-pipeline reference.
BOOST_DATA_TEST_CASE(two_pipelines_in_two_threads_match_one_alone, bdata::make(case_names()), name) {
  const Case& c = find_case(name);
  const Output& ref = reference(c);
  std::vector<Output> outs(4);
  std::vector<std::string> errors(4);
  auto worker = [&](int t) {
    for (int k = 0; k < 2; ++k) {
      try {
        Pipeline p(c.desc);
        outs[t * 2 + k] = p.run();
        errors[t * 2 + k] = p.log.all();
      } catch (const std::exception& e) {
        errors[t * 2 + k] = e.what();
      }
    }
  };
  std::thread a(worker, 0), b(worker, 1);
  a.join();
  b.join();
  for (int i = 0; i < 4; ++i) {
    BOOST_TEST(errors[i] == "", name << " run " << i);
    BOOST_TEST(compare(outs[i], ref, c.tolerance).empty(), name << " run " << i << ": " << compare(outs[i], ref, c.tolerance));
  }
}
