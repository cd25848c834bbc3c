// The t3 element through GStreamer (GstHarness): the tiny T3 fixture's greedy
// tokens come out as S3 token buffers with token-time stamps; splitting,
// flushing, seeding and input errors.
#define BOOST_TEST_MODULE t3_element
#include <boost/test/unit_test.hpp>

#include "elements/t3/model/t3.h"
#include "gst-plugins/core/checkpoint.h"
#include "tests/fixtures.h"
#include "tests/test_util.h"

#include <ATen/ATen.h>
#include <gst/check/gstharness.h>
#include <gst/gst.h>

#include <atomic>
#include <cstring>
#include <map>
#include <string>
#include <thread>
#include <vector>
using chatterbox::test::contains;

using chatterbox::Checkpoint;
using chatterbox::test::fixture;

namespace {

struct GstInit {
  GstInit() { gst_init(nullptr, nullptr); }
};
BOOST_GLOBAL_FIXTURE(GstInit);

const char* const kText = "the little robot counted stones by the river";
const GstClockTime kTokenNs = GST_SECOND / 25;  // 40 ms

std::vector<int64_t> ids(const at::Tensor& t) {
  at::Tensor c = t.to(at::kLong).reshape({-1}).contiguous();
  return std::vector<int64_t>(c.data_ptr<int64_t>(), c.data_ptr<int64_t>() + c.numel());
}

// The fixture's greedy T3.inference output, as generate keeps it (ids < 6561,
// no stop token).
std::vector<int32_t> expected_greedy() {
  Checkpoint ck = Checkpoint::open(fixture("t3/t3_tiny.safetensors"));
  std::vector<int64_t> all = ids(ck.get_raw("test.greedy_tokens"));
  BOOST_REQUIRE(!all.empty());
  BOOST_REQUIRE_EQUAL(all.back(), 6562);  // the run ends on the stop token
  std::vector<int32_t> out;
  for (int64_t t : all)
    if (t < 6561) out.push_back(static_cast<int32_t>(t));
  BOOST_REQUIRE_LT(out.size(), all.size() - 1);  // the fixture also holds ids >= 6561 other than the stop
  return out;
}

using Props = std::map<std::string, std::string>;

// A t3 on the tiny fixture (greedy, exaggeration 0.5 unless overridden), with
// a bus to collect its messages. NULL state.
GstElement* make_t3(const Props& extra = {}, GstBus** bus = nullptr) {
  GstElement* e = gst_element_factory_make("t3", nullptr);
  BOOST_REQUIRE_MESSAGE(e, "element 't3' not found: GST_PLUGIN_PATH_1_0 must hold the built gstchatterbox plugin");
  Props p{{"model", fixture("t3/t3_tiny.safetensors")},
          {"tokenizer", fixture("t3/tokenizer_tiny.json")},
          {"voice", fixture("t3/conds_tiny.safetensors")},
          {"greedy", "true"},
          {"exaggeration", "0.5"}};
  for (const auto& kv : extra) p[kv.first] = kv.second;
  for (const auto& kv : p) gst_util_set_object_arg(G_OBJECT(e), kv.first.c_str(), kv.second.c_str());
  if (bus) {
    *bus = gst_bus_new();
    gst_element_set_bus(e, *bus);
  }
  return e;
}

struct Buf {
  GstClockTime pts, duration;
  guint64 offset, offset_end;
  bool discont;
  std::vector<int32_t> tokens;
};
struct UtteranceEnd {
  guint64 utterance, first_token, tokens;
};
struct Run {
  std::vector<GstFlowReturn> rets;
  std::vector<Buf> bufs;
  std::vector<UtteranceEnd> ends;
  bool got_segment = false, got_eos = false;
  std::string caps;
  std::vector<std::string> errors, warnings;

  std::vector<int32_t> tokens() const {
    std::vector<int32_t> all;
    for (const auto& b : bufs) all.insert(all.end(), b.tokens.begin(), b.tokens.end());
    return all;
  }
};

GstBuffer* text_buffer(const std::string& text) {
  GstBuffer* b = gst_buffer_new_allocate(nullptr, text.size(), nullptr);
  if (!text.empty()) gst_buffer_fill(b, 0, text.data(), text.size());
  return b;
}

void collect_messages(GstBus* bus, Run& r) {
  while (GstMessage* m = gst_bus_pop(bus)) {
    GError* err = nullptr;
    gchar* dbg = nullptr;
    if (GST_MESSAGE_TYPE(m) == GST_MESSAGE_ERROR) {
      gst_message_parse_error(m, &err, &dbg);
      r.errors.push_back(err->message + std::string(" | ") + (dbg ? dbg : ""));
    } else if (GST_MESSAGE_TYPE(m) == GST_MESSAGE_WARNING) {
      gst_message_parse_warning(m, &err, &dbg);
      r.warnings.push_back(err->message + std::string(" | ") + (dbg ? dbg : ""));
    }
    if (err) g_error_free(err);
    g_free(dbg);
    gst_message_unref(m);
  }
}

void drain(GstHarness* h, Run& r) {
  while (GstBuffer* b = gst_harness_try_pull(h)) {
    Buf x;
    x.pts = GST_BUFFER_PTS(b);
    x.duration = GST_BUFFER_DURATION(b);
    x.offset = GST_BUFFER_OFFSET(b);
    x.offset_end = GST_BUFFER_OFFSET_END(b);
    x.discont = GST_BUFFER_FLAG_IS_SET(b, GST_BUFFER_FLAG_DISCONT);
    GstMapInfo map;
    BOOST_REQUIRE(gst_buffer_map(b, &map, GST_MAP_READ));
    BOOST_REQUIRE_EQUAL(map.size % 4, 0u);
    x.tokens.resize(map.size / 4);
    for (size_t i = 0; i < x.tokens.size(); ++i) {
      gint32 v;
      std::memcpy(&v, map.data + 4 * i, 4);
      x.tokens[i] = GINT32_FROM_LE(v);
    }
    gst_buffer_unmap(b, &map);
    gst_buffer_unref(b);
    r.bufs.push_back(std::move(x));
  }
  while (GstEvent* ev = gst_harness_try_pull_event(h)) {
    switch (GST_EVENT_TYPE(ev)) {
      case GST_EVENT_SEGMENT: {
        const GstSegment* seg;
        gst_event_parse_segment(ev, &seg);
        BOOST_TEST(seg->format == GST_FORMAT_TIME);
        BOOST_TEST(seg->start == 0u);
        r.got_segment = true;
        break;
      }
      case GST_EVENT_CAPS: {
        GstCaps* c;
        gst_event_parse_caps(ev, &c);
        gchar* s = gst_caps_to_string(c);
        r.caps = s;
        g_free(s);
        break;
      }
      case GST_EVENT_EOS: r.got_eos = true; break;
      case GST_EVENT_CUSTOM_DOWNSTREAM: {
        const GstStructure* s = gst_event_get_structure(ev);
        if (gst_structure_has_name(s, "chatterbox/utterance-end")) {
          UtteranceEnd u{};
          BOOST_TEST(gst_structure_get_uint64(s, "utterance", &u.utterance));
          BOOST_TEST(gst_structure_get_uint64(s, "first-token", &u.first_token));
          BOOST_TEST(gst_structure_get_uint64(s, "tokens", &u.tokens));
          r.ends.push_back(u);
        }
        break;
      }
      default: break;
    }
    gst_event_unref(ev);
  }
}

// Pushes each text as one buffer, then EOS; returns everything t3 produced.
Run run_texts(const std::vector<std::string>& texts, const Props& props = {}) {
  GstBus* bus = nullptr;
  GstElement* e = make_t3(props, &bus);
  GstHarness* h = gst_harness_new_with_element(e, "sink", "src");
  gst_harness_set_src_caps_str(h, "text/x-raw, format=(string)utf8");
  Run r;
  for (const auto& t : texts) {
    r.rets.push_back(gst_harness_push(h, text_buffer(t)));
    if (r.rets.back() != GST_FLOW_OK) break;
  }
  if (r.rets.back() == GST_FLOW_OK) gst_harness_push_event(h, gst_event_new_eos());
  drain(h, r);
  collect_messages(bus, r);
  gst_harness_teardown(h);
  gst_object_unref(e);
  gst_object_unref(bus);
  return r;
}


// Every buffer is stamped at token time and they tile the stream.
void check_timestamps(const Run& r) {
  guint64 idx = 0;
  for (const auto& b : r.bufs) {
    BOOST_TEST(!b.tokens.empty());
    BOOST_TEST(b.offset == idx);
    BOOST_TEST(b.offset_end == idx + b.tokens.size());
    BOOST_TEST(b.pts == idx * kTokenNs);
    BOOST_TEST(b.duration == b.tokens.size() * kTokenNs);
    idx += b.tokens.size();
  }
}

// State change to READY fails; returns the error text posted.
std::string load_error(const Props& props) {
  GstBus* bus = nullptr;
  GstElement* e = make_t3(props, &bus);
  GstStateChangeReturn ret = gst_element_set_state(e, GST_STATE_READY);
  BOOST_TEST(ret == GST_STATE_CHANGE_FAILURE);
  Run r;
  collect_messages(bus, r);
  gst_element_set_state(e, GST_STATE_NULL);
  gst_object_unref(e);
  gst_object_unref(bus);
  BOOST_REQUIRE_EQUAL(r.errors.size(), 1u);
  BOOST_TEST_MESSAGE("load error: " << r.errors[0]);
  return r.errors[0];
}

}  // namespace

BOOST_AUTO_TEST_CASE(greedy_fixture_tokens) {
  const std::vector<int32_t> want = expected_greedy();
  Run r = run_texts({kText});
  BOOST_REQUIRE_EQUAL(r.rets.size(), 1u);
  BOOST_TEST(r.rets[0] == GST_FLOW_OK);
  BOOST_TEST(r.errors.empty());
  BOOST_TEST(r.got_segment);
  BOOST_TEST(r.got_eos);
  BOOST_TEST(contains(r.caps, "audio/x-speech-tokens"));
  BOOST_TEST(contains(r.caps, "s3-v2-25hz"));
  BOOST_TEST(r.tokens() == want, boost::test_tools::per_element());
  check_timestamps(r);
  // Default tokens-per-buffer 5: full buffers, then the remainder.
  BOOST_REQUIRE_EQUAL(r.bufs.size(), (want.size() + 4) / 5);
  for (size_t i = 0; i + 1 < r.bufs.size(); ++i) BOOST_TEST(r.bufs[i].tokens.size() == 5u);
  BOOST_TEST(r.bufs[0].discont);
  for (size_t i = 1; i < r.bufs.size(); ++i) BOOST_TEST(!r.bufs[i].discont);
  BOOST_REQUIRE_EQUAL(r.ends.size(), 1u);
  BOOST_TEST(r.ends[0].utterance == 0u);
  BOOST_TEST(r.ends[0].first_token == 0u);
  BOOST_TEST(r.ends[0].tokens == want.size());
}

BOOST_AUTO_TEST_CASE(tokens_per_buffer_is_honoured) {
  const std::vector<int32_t> want = expected_greedy();
  for (int n : {1, 3, 7, 1000}) {
    Run r = run_texts({kText}, {{"tokens-per-buffer", std::to_string(n)}});
    BOOST_TEST(r.tokens() == want, boost::test_tools::per_element());
    const size_t nb = (want.size() + n - 1) / n;
    BOOST_TEST_REQUIRE(r.bufs.size() == nb, "tokens-per-buffer " << n);
    for (size_t i = 0; i < nb; ++i)
      BOOST_TEST(r.bufs[i].tokens.size() == (i + 1 < nb ? size_t(n) : want.size() - (nb - 1) * n));
    check_timestamps(r);
  }
}

BOOST_AUTO_TEST_CASE(sentences_are_utterances_with_continuing_time) {
  const std::vector<int32_t> want = expected_greedy();
  // Two sentences in one buffer, then a third buffer: three utterances; each
  // normalises to the fixture's "The little robot counted stones by the river."
  const std::string two = std::string(kText) + ".  The little robot counted stones by the river.";
  Run r = run_texts({two, kText}, {{"tokens-per-buffer", "4"}});
  BOOST_TEST(r.rets == std::vector<GstFlowReturn>({GST_FLOW_OK, GST_FLOW_OK}), boost::test_tools::per_element());
  std::vector<int32_t> thrice;
  for (int i = 0; i < 3; ++i) thrice.insert(thrice.end(), want.begin(), want.end());
  BOOST_TEST(r.tokens() == thrice, boost::test_tools::per_element());
  check_timestamps(r);
  BOOST_REQUIRE_EQUAL(r.ends.size(), 3u);
  size_t discont = 0;
  guint64 idx = 0;
  for (const auto& b : r.bufs) {
    if (b.discont) {
      BOOST_TEST(b.offset == discont * want.size());  // each utterance starts with DISCONT
      ++discont;
    }
    idx += b.tokens.size();
  }
  BOOST_TEST(discont == 3u);
  for (guint64 u = 0; u < 3; ++u) {
    BOOST_TEST(r.ends[u].utterance == u);
    BOOST_TEST(r.ends[u].first_token == u * want.size());
    BOOST_TEST(r.ends[u].tokens == want.size());
  }
  // split-sentences=false: the buffer is one utterance.
  Run one = run_texts({two}, {{"split-sentences", "false"}});
  BOOST_TEST(one.ends.size() == 1u);
  BOOST_TEST(one.bufs.size() > 0u);
  BOOST_TEST(one.bufs[0].discont);
}

BOOST_AUTO_TEST_CASE(sentence_splitting_policy) {
  // Abbreviations, initials, decimals and a lower-case continuation do not split.
  Run r = run_texts({"Mr. Smith met J. R. Tolkien at 3.5 o'clock. and then? He left! Fine."},
                    {{"max-tokens", "3"}});
  BOOST_TEST(r.rets[0] == GST_FLOW_OK);
  BOOST_TEST(r.ends.size() == 3u);  // "... then?" | "He left!" | "Fine."
  // A 1000-character sentence without punctuation is cut into pieces of at most 300.
  std::string lng;
  while (lng.size() < 1000) lng += "the robot counted stones ";
  Run l = run_texts({lng}, {{"max-tokens", "3"}});
  BOOST_TEST(l.rets[0] == GST_FLOW_OK);
  BOOST_TEST(l.ends.size() == 4u);
}

BOOST_AUTO_TEST_CASE(flush_interrupts_generation) {
  // Many utterances: generation runs far longer than it takes to flush.
  std::string text;
  for (int i = 0; i < 2000; ++i) text += "The little robot counted stones by the river. ";
  GstBus* bus = nullptr;
  GstElement* e = make_t3({{"tokens-per-buffer", "1"}}, &bus);
  GstHarness* h = gst_harness_new_with_element(e, "sink", "src");
  gst_harness_set_src_caps_str(h, "text/x-raw, format=(string)utf8");
  std::atomic<GstFlowReturn> ret{GST_FLOW_CUSTOM_ERROR};
  const gint64 t0 = g_get_monotonic_time();
  std::thread pusher([&] { ret = gst_harness_push(h, text_buffer(text)); });
  GstBuffer* first = gst_harness_pull(h);  // blocks until the first token
  BOOST_REQUIRE(first);
  gst_buffer_unref(first);
  const gint64 t1 = g_get_monotonic_time();
  BOOST_TEST(gst_harness_push_event(h, gst_event_new_flush_start()));
  pusher.join();
  const gint64 t2 = g_get_monotonic_time();
  BOOST_TEST_MESSAGE("first token after " << (t1 - t0) / 1000 << " ms; chain returned " << (t2 - t1) / 1000
                                          << " ms after FLUSH_START");
  BOOST_TEST(ret.load() == GST_FLOW_FLUSHING);
  BOOST_TEST(gst_harness_push_event(h, gst_event_new_flush_stop(TRUE)));
  // Still usable; time restarts at 0 with a new segment.
  Run r;
  drain(h, r);  // whatever came before the flush
  r = Run{};
  GstSegment seg;
  gst_segment_init(&seg, GST_FORMAT_TIME);
  gst_harness_push_event(h, gst_event_new_segment(&seg));
  BOOST_TEST(gst_harness_push(h, text_buffer(kText)) == GST_FLOW_OK);
  drain(h, r);
  BOOST_TEST(r.tokens() == expected_greedy(), boost::test_tools::per_element());
  BOOST_REQUIRE(!r.bufs.empty());
  BOOST_TEST(r.bufs[0].pts == 0u);
  BOOST_TEST(r.got_segment);
  gst_harness_teardown(h);
  gst_object_unref(e);
  gst_object_unref(bus);
}

BOOST_AUTO_TEST_CASE(seeded_sampling_is_reproducible) {
  const Props p{{"greedy", "false"}, {"seed", "11"}, {"max-tokens", "40"}};
  Run a = run_texts({kText}, p);
  Run b = run_texts({kText}, p);
  BOOST_TEST(!a.tokens().empty());
  BOOST_TEST(a.tokens() == b.tokens(), boost::test_tools::per_element());
  Props q = p;
  q["seed"] = "12";
  Run c = run_texts({kText}, q);
  BOOST_TEST(a.tokens() != c.tokens());
  for (int32_t t : a.tokens()) BOOST_TEST((t >= 0 && t < 6561));
  // Utterance n samples with seed + n: the second of two identical sentences
  // is the first one generated alone with seed 12.
  Run two = run_texts({std::string(kText) + ". The little robot counted stones by the river."}, p);
  BOOST_REQUIRE_EQUAL(two.ends.size(), 2u);
  std::vector<int32_t> all = two.tokens();
  std::vector<int32_t> second(all.begin() + two.ends[1].first_token, all.end());
  BOOST_TEST(second == c.tokens(), boost::test_tools::per_element());
}

BOOST_AUTO_TEST_CASE(empty_text_speaks_the_reference_fallback) {
  Run empty = run_texts({""});
  Run fallback = run_texts({"You need to add some text for me to talk."});
  BOOST_TEST(empty.rets[0] == GST_FLOW_OK);
  BOOST_TEST(!empty.tokens().empty());
  BOOST_TEST(empty.tokens() == fallback.tokens(), boost::test_tools::per_element());
  BOOST_REQUIRE_EQUAL(empty.warnings.size(), 1u);
  BOOST_TEST(contains(empty.warnings[0], "Empty text"));
  BOOST_TEST(fallback.warnings.empty());
  // A trailing NUL (C string) is not text: same as without it.
  Run nul = run_texts({std::string(kText) + '\0'});
  BOOST_TEST(nul.tokens() == expected_greedy(), boost::test_tools::per_element());
}

BOOST_AUTO_TEST_CASE(unknown_characters_run_as_unk) {
  // Characters outside the tiny vocabulary become [UNK] ids; T3 still runs.
  Run r = run_texts({"\u65e5\u672c\u8a9e \u0416\u0416"});
  BOOST_TEST(r.rets[0] == GST_FLOW_OK);
  BOOST_TEST(r.errors.empty());
  BOOST_TEST(r.ends.size() == 1u);
}

BOOST_AUTO_TEST_CASE(invalid_utf8_names_the_offset) {
  Run r = run_texts({std::string("hello") + "\xC3\x28" + " world"});
  BOOST_TEST(r.rets[0] == GST_FLOW_ERROR);
  BOOST_TEST(r.bufs.empty());
  BOOST_REQUIRE_EQUAL(r.errors.size(), 1u);
  BOOST_TEST_MESSAGE("error: " << r.errors[0]);
  BOOST_TEST(contains(r.errors[0], "not valid UTF-8"));
  // The offset of the byte where decoding failed: 0x28 is not a continuation byte.
  BOOST_TEST(contains(r.errors[0], "byte offset 6"));
  Run r2 = run_texts({"ok \xFF"});
  BOOST_TEST(r2.rets[0] == GST_FLOW_ERROR);
  BOOST_REQUIRE_EQUAL(r2.errors.size(), 1u);
  BOOST_TEST(contains(r2.errors[0], "byte offset 3"));
}

BOOST_AUTO_TEST_CASE(load_errors_name_the_file) {
  BOOST_TEST(contains(load_error({{"model", "/nonexistent/dir/t3_cfg.safetensors"}}),
                      "/nonexistent/dir/t3_cfg.safetensors"));
  // A folder: t3_cfg.safetensors inside it.
  const std::string dir = chatterbox::test::fixtures_dir() + "/t3";
  BOOST_TEST(contains(load_error({{"model", dir}}), dir + "/t3_cfg.safetensors"));
  // Not a T3 checkpoint: the loader's message, with the file name.
  std::string e = load_error({{"model", fixture("t3/conds_tiny.safetensors")}});
  BOOST_TEST(contains(e, "conds_tiny.safetensors"));
  BOOST_TEST(contains(load_error({{"tokenizer", "/nonexistent/tokenizer.json"}}), "/nonexistent/tokenizer.json"));
  BOOST_TEST(contains(load_error({{"voice", "/nonexistent/conds.pt"}}), "/nonexistent/conds.pt"));
  BOOST_TEST(contains(load_error({{"device", "cuda"}}), "cuda"));
  // The default voice is conds.pt beside the model; the fixture folder has none.
  GstElement* e2 = gst_element_factory_make("t3", nullptr);
  BOOST_REQUIRE(e2);
  g_object_set(e2, "model", fixture("t3/t3_tiny.safetensors").c_str(), "tokenizer",
               fixture("t3/tokenizer_tiny.json").c_str(), nullptr);
  GstBus* bus = gst_bus_new();
  gst_element_set_bus(e2, bus);
  BOOST_TEST(gst_element_set_state(e2, GST_STATE_READY) == GST_STATE_CHANGE_FAILURE);
  Run r;
  collect_messages(bus, r);
  BOOST_REQUIRE_EQUAL(r.errors.size(), 1u);
  BOOST_TEST(contains(r.errors[0], dir + "/conds.pt"));
  gst_element_set_state(e2, GST_STATE_NULL);
  gst_object_unref(e2);
  gst_object_unref(bus);
}

BOOST_AUTO_TEST_CASE(properties_defaults) {
  GstElement* e = gst_element_factory_make("t3", nullptr);
  BOOST_REQUIRE(e);
  gboolean greedy, split;
  gint max_tokens, tpb;
  gdouble temperature, cfg, min_p, top_p, rep, exag;
  gchar* device;
  g_object_get(e, "greedy", &greedy, "split-sentences", &split, "max-tokens", &max_tokens, "tokens-per-buffer", &tpb,
               "temperature", &temperature, "cfg-weight", &cfg, "min-p", &min_p, "top-p", &top_p,
               "repetition-penalty", &rep, "exaggeration", &exag, "device", &device, nullptr);
  BOOST_TEST(!greedy);
  BOOST_TEST(split);
  BOOST_TEST(max_tokens == 1000);
  BOOST_TEST(tpb == 5);
  BOOST_TEST(temperature == 0.8);
  BOOST_TEST(cfg == 0.5);
  BOOST_TEST(min_p == 0.05);
  BOOST_TEST(top_p == 1.0);
  BOOST_TEST(rep == 1.2);
  BOOST_TEST(exag == 0.5);
  BOOST_TEST(std::string(device) == "cpu");
  g_free(device);
  gst_object_unref(e);
}

// The reference's sampled run: torch.manual_seed(3146), then generate. The
// first utterance samples with `seed` itself, drawn as torch's CPU generator
// draws, so the element reproduces it.
BOOST_AUTO_TEST_CASE(seed_reproduces_the_reference_sampled_run) {
  Checkpoint s = Checkpoint::open(fixture("t3/t3_tiny_sampled.safetensors"));
  std::vector<int64_t> all = ids(s.get_raw("test.sample.tokens"));
  std::vector<int32_t> want;
  for (int64_t t : all)
    if (t < 6561) want.push_back(static_cast<int32_t>(t));
  BOOST_REQUIRE(!want.empty());
  Run r = run_texts({kText}, {{"greedy", "false"}, {"seed", "3146"}, {"max-tokens", "20"}});
  BOOST_TEST(r.tokens() == want, boost::test_tools::per_element());
}

BOOST_AUTO_TEST_CASE(precision_runs_the_quantised_model) {
  using chatterbox::t3::SamplingOptions;
  using chatterbox::t3::T3Cond;
  using chatterbox::t3::T3Model;
  // precision=bf16 / int8 decodes the library's with_precision model: the
  // same greedy tokens as T3Model::with_precision(...).inference.
  Checkpoint ck = Checkpoint::open(fixture("t3/t3_tiny.safetensors"));
  const T3Model f32 = T3Model::from_checkpoint(ck);
  const T3Cond cond = T3Cond::load(fixture("t3/conds_tiny.safetensors")).with_exaggeration(0.5);
  SamplingOptions greedy;
  greedy.greedy = true;
  for (const char* p : {"bf16", "int8"}) {
    BOOST_TEST_CONTEXT(p) {
      std::vector<int32_t> want;
      for (int64_t t : f32.with_precision(p).inference(ids(ck.get_raw("test.text_ids")), cond, greedy))
        if (t < 6561) want.push_back(static_cast<int32_t>(t));
      Run r = run_texts({kText}, {{"precision", p}});
      BOOST_TEST(r.errors.empty());
      BOOST_TEST(r.tokens() == want, boost::test_tools::per_element());
    }
  }
  const std::string e = load_error({{"precision", "int4"}});
  BOOST_TEST(contains(e, "unknown weight precision 'int4' (use f32, bf16 or int8)"), e);
}
