// The t3 element with a GPT-2 (Chatterbox-Turbo) model: the backbone and the
// tokenizer are detected, the tiny Turbo fixture decodes through a pipeline
// as the library (and the reference) does, tags reach T3 as their added-token
// ids, and properties of the other family warn once.
#define BOOST_TEST_MODULE t3_turbo_element
#include <boost/test/unit_test.hpp>

#include "elements/t3/model/gpt2_tokenizer.h"
#include "elements/t3/model/t3_turbo.h"
#include "gst-plugins/core/checkpoint.h"
#include "tests/fixtures.h"
#include "tests/test_util.h"

#include <ATen/ATen.h>
#include <gst/check/gstharness.h>
#include <gst/gst.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <string>
#include <unistd.h>
#include <vector>

using chatterbox::Checkpoint;
using chatterbox::test::contains;
using chatterbox::test::fixture;
using chatterbox::test::slurp;
using namespace chatterbox::t3;
namespace fs = std::filesystem;

namespace {

struct GstInit {
  GstInit() { gst_init(nullptr, nullptr); }
};
BOOST_GLOBAL_FIXTURE(GstInit);

std::vector<int64_t> ids(const at::Tensor& t) {
  at::Tensor c = t.to(at::kLong).reshape({-1}).contiguous();
  return std::vector<int64_t>(c.data_ptr<int64_t>(), c.data_ptr<int64_t>() + c.numel());
}
std::vector<int32_t> valid(const std::vector<int64_t>& all) {  // what generate keeps: ids < 6561
  std::vector<int32_t> out;
  for (int64_t t : all)
    if (t < 6561) out.push_back(static_cast<int32_t>(t));
  return out;
}

// The fixture, its voice as a conds file, and a Turbo model directory whose
// tokenizer is the slow layout alone (so the directory default is exercised).
struct Files {
  fs::path dir = fs::temp_directory_path() / ("t3_turbo_element_" + std::to_string(getpid()));
  Checkpoint ck = Checkpoint::open(fixture("t3_turbo/t3_turbo_tiny.safetensors"));
  std::string model = fixture("t3_turbo/t3_turbo_tiny.safetensors");
  std::string tokenizer_json = fixture("t3_turbo/gpt2_bpe_tiny/tokenizer.json");
  std::string voice, model_dir, text;
  T3TurboModel library = T3TurboModel::from_checkpoint(ck);
  Gpt2Tokenizer tok = Gpt2Tokenizer::from_path(tokenizer_json);
  T3Cond cond = T3Cond::from_checkpoint(ck, "test.cond.");
  Files() {
    fs::create_directories(dir / "turbo");
    voice = (dir / "voice.safetensors").string();
    chatterbox::write_safetensors(voice, {{"t3.speaker_emb", ck.get("test.cond.speaker_emb")},
                                          {"t3.cond_prompt_speech_tokens", ck.get_raw("test.cond.cond_prompt_speech_tokens")}});
    model_dir = (dir / "turbo").string();
    fs::create_symlink(model, dir / "turbo" / "t3_turbo_v1.safetensors");
    fs::copy_file(voice, dir / "turbo" / "conds.pt");  // read by content: safetensors is fine
    for (const char* f : {"vocab.json", "merges.txt", "added_tokens.json", "special_tokens_map.json"})
      fs::copy_file(fixture(std::string("t3_turbo/gpt2_bpe_tiny/") + f), dir / "turbo" / f);
    text = ck.metadata("text");
  }
  ~Files() { fs::remove_all(dir); }
};
Files& files() {
  static Files f;
  return f;
}

using Props = std::map<std::string, std::string>;

struct Run {
  std::vector<int32_t> tokens;
  std::vector<std::string> errors, warnings;
};

void collect(GstBus* bus, Run& r) {
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

// Each text as one buffer through a t3 in a harness, then EOS.
Run run_texts(const std::vector<std::string>& texts, const Props& props) {
  GstElement* e = gst_element_factory_make("t3", nullptr);
  BOOST_REQUIRE_MESSAGE(e, "element 't3' not found: GST_PLUGIN_PATH_1_0 must hold the built gstchatterbox plugin");
  for (const auto& kv : props) gst_util_set_object_arg(G_OBJECT(e), kv.first.c_str(), kv.second.c_str());
  GstBus* bus = gst_bus_new();
  gst_element_set_bus(e, bus);
  GstHarness* h = gst_harness_new_with_element(e, "sink", "src");
  gst_harness_set_src_caps_str(h, "text/x-raw, format=(string)utf8");
  Run r;
  for (const auto& t : texts) {
    GstBuffer* b = gst_buffer_new_allocate(nullptr, t.size(), nullptr);
    gst_buffer_fill(b, 0, t.data(), t.size());
    if (gst_harness_push(h, b) != GST_FLOW_OK) break;
  }
  gst_harness_push_event(h, gst_event_new_eos());
  while (GstBuffer* b = gst_harness_try_pull(h)) {
    GstMapInfo map;
    BOOST_REQUIRE(gst_buffer_map(b, &map, GST_MAP_READ));
    for (size_t i = 0; i + 4 <= map.size; i += 4) {
      gint32 v;
      std::memcpy(&v, map.data + i, 4);
      r.tokens.push_back(GINT32_FROM_LE(v));
    }
    gst_buffer_unmap(b, &map);
    gst_buffer_unref(b);
  }
  collect(bus, r);
  gst_harness_teardown(h);
  gst_object_unref(e);
  gst_object_unref(bus);
  return r;
}

Props turbo_props(const Props& extra = {}) {
  Props p{{"model", files().model}, {"tokenizer", files().tokenizer_json}, {"voice", files().voice}, {"greedy", "true"}};
  for (const auto& kv : extra) p[kv.first] = kv.second;
  return p;
}

size_t count_containing(const std::vector<std::string>& v, const std::string& part) {
  size_t n = 0;
  for (const auto& s : v) n += contains(s, part);
  return n;
}

}  // namespace

BOOST_AUTO_TEST_CASE(greedy_turbo_through_a_pipeline_matches_the_library) {
  Files& f = files();
  // What the library (and the reference run) gives for the fixture's text.
  const std::vector<int64_t> text_ids = f.tok.text_to_ids(f.text);
  BOOST_TEST(text_ids == ids(f.ck.get_raw("test.text_tokens")), boost::test_tools::per_element());
  TurboSamplingOptions o;
  o.greedy = true;
  const std::vector<int32_t> want = valid(f.library.inference(text_ids, f.cond, o));
  BOOST_TEST(want == valid(ids(f.ck.get_raw("test.greedy.tokens_returned"))), boost::test_tools::per_element());
  BOOST_REQUIRE_EQUAL(want.size(), 21u);

  // A real pipeline: file -> t3 (model directory only: T3, tokenizer in the
  // slow layout and conds.pt found there) -> file.
  const std::string in = (f.dir / "text.txt").string(), out = (f.dir / "tokens.s32").string();
  std::ofstream(in, std::ios::binary) << f.text;
  const std::string launch = "filesrc location=" + in + " ! text/x-raw,format=utf8 ! t3 model=" + f.model_dir +
                             " greedy=true ! filesink location=" + out;
  GError* err = nullptr;
  GstElement* pipe = gst_parse_launch(launch.c_str(), &err);
  BOOST_REQUIRE_MESSAGE(pipe && !err, (err ? err->message : "no pipeline"));
  GstBus* bus = gst_element_get_bus(pipe);
  BOOST_REQUIRE(gst_element_set_state(pipe, GST_STATE_PLAYING) != GST_STATE_CHANGE_FAILURE);
  GstMessage* m = gst_bus_timed_pop_filtered(bus, 120 * GST_SECOND,
                                             static_cast<GstMessageType>(GST_MESSAGE_EOS | GST_MESSAGE_ERROR));
  BOOST_REQUIRE(m);
  BOOST_TEST(GST_MESSAGE_TYPE(m) == GST_MESSAGE_EOS);
  gst_message_unref(m);
  gst_element_set_state(pipe, GST_STATE_NULL);
  gst_object_unref(bus);
  gst_object_unref(pipe);
  const std::string bytes = slurp(out);
  BOOST_REQUIRE_EQUAL(bytes.size() % 4, 0u);
  std::vector<int32_t> got(bytes.size() / 4);
  for (size_t i = 0; i < got.size(); ++i) {
    gint32 v;
    std::memcpy(&v, bytes.data() + 4 * i, 4);
    got[i] = GINT32_FROM_LE(v);
  }
  BOOST_TEST(got == want, boost::test_tools::per_element());

  // The same through a harness naming the tokenizer.json file, and the
  // fixture directory (both layouts: tokenizer.json preferred).
  BOOST_TEST(run_texts({f.text}, turbo_props()).tokens == want, boost::test_tools::per_element());
  Run r = run_texts({f.text}, turbo_props({{"tokenizer", fs::path(f.tokenizer_json).parent_path().string()}}));
  BOOST_TEST(r.tokens == want, boost::test_tools::per_element());
  BOOST_TEST(r.errors.empty());
  BOOST_TEST(r.warnings.empty());
}

BOOST_AUTO_TEST_CASE(tags_reach_t3_as_their_added_token_ids) {
  Files& f = files();
  const std::string text = "[laugh] oh, the little robot counted stones";
  const std::vector<int64_t> tagged = f.tok.text_to_ids(text);
  BOOST_REQUIRE_EQUAL(tagged.front(), 557);  // [laugh]
  // The same text with the tag's characters as plain byte-level tokens.
  std::vector<int64_t> spelled = f.tok.encode("[");
  for (int64_t id : f.tok.encode("laugh]")) spelled.push_back(id);
  spelled.insert(spelled.end(), tagged.begin() + 1, tagged.end());
  TurboSamplingOptions o;
  o.greedy = true;
  o.max_new_tokens = 30;
  const std::vector<int32_t> with_tag = valid(f.library.inference(tagged, f.cond, o));
  const std::vector<int32_t> without = valid(f.library.inference(spelled, f.cond, o));
  BOOST_REQUIRE(with_tag != without);  // the id makes a difference the test can see
  Run r = run_texts({text}, turbo_props({{"max-tokens", "30"}}));
  BOOST_TEST(r.errors.empty());
  BOOST_TEST(r.tokens == with_tag, boost::test_tools::per_element());
}

BOOST_AUTO_TEST_CASE(seeded_sampling_uses_turbo_defaults) {
  // top-k 1000 and top-p 0.95 (Turbo's generate defaults; top-p is not set
  // here) with seed 50296 reproduce the reference's sampled run.
  Files& f = files();
  Run r = run_texts({f.text}, turbo_props({{"greedy", "false"}, {"seed", "50296"}, {"max-tokens", "17"}}));
  BOOST_TEST(r.errors.empty());
  BOOST_TEST(r.tokens == valid(ids(f.ck.get_raw("test.sample.tokens"))), boost::test_tools::per_element());
  // An explicit top-p of 1.0 is honoured (and changes the draw).
  Run off = run_texts({f.text}, turbo_props({{"greedy", "false"}, {"seed", "50296"}, {"max-tokens", "17"}, {"top-p", "1.0"}}));
  BOOST_TEST(off.tokens != r.tokens);
}

BOOST_AUTO_TEST_CASE(other_family_properties_warn_once) {
  Files& f = files();
  Run r = run_texts({f.text, f.text},
                    turbo_props({{"cfg-weight", "0.3"}, {"min-p", "0.1"}, {"exaggeration", "0.7"}, {"max-tokens", "3"}}));
  BOOST_TEST(r.errors.empty());
  for (const char* p : {"'cfg-weight'", "'min-p'", "'exaggeration'"})
    BOOST_TEST(count_containing(r.warnings, p) == 1u, p);
  BOOST_TEST(count_containing(r.warnings, "GPT-2") == 3u);
  BOOST_TEST(r.warnings.size() == 3u);
  // top-k with a Llama model.
  Run l = run_texts({"hello there"}, {{"model", fixture("t3/t3_tiny.safetensors")},
                                      {"tokenizer", fixture("t3/tokenizer_tiny.json")},
                                      {"voice", fixture("t3/conds_tiny.safetensors")},
                                      {"greedy", "true"},
                                      {"max-tokens", "3"},
                                      {"top-k", "50"}});
  BOOST_TEST(l.errors.empty());
  BOOST_REQUIRE_EQUAL(l.warnings.size(), 1u);
  BOOST_TEST(contains(l.warnings[0], "'top-k'"), l.warnings[0]);
  BOOST_TEST(contains(l.warnings[0], "Llama"), l.warnings[0]);
}

BOOST_AUTO_TEST_CASE(properties_and_load_errors) {
  GstElement* e = gst_element_factory_make("t3", nullptr);
  BOOST_REQUIRE(e);
  gint top_k;
  gdouble top_p;
  g_object_get(e, "top-k", &top_k, "top-p", &top_p, nullptr);
  BOOST_TEST(top_k == 1000);
  BOOST_TEST(top_p == 1.0);  // the Llama default; GPT-2 models use 0.95 unless set
  gst_object_unref(e);

  auto load_error = [](const Props& props) {
    GstElement* t3 = gst_element_factory_make("t3", nullptr);
    for (const auto& kv : props) gst_util_set_object_arg(G_OBJECT(t3), kv.first.c_str(), kv.second.c_str());
    GstBus* bus = gst_bus_new();
    gst_element_set_bus(t3, bus);
    BOOST_TEST(gst_element_set_state(t3, GST_STATE_READY) == GST_STATE_CHANGE_FAILURE);
    Run r;
    collect(bus, r);
    gst_element_set_state(t3, GST_STATE_NULL);
    gst_object_unref(t3);
    gst_object_unref(bus);
    return r.errors.empty() ? std::string() : r.errors[0];
  };
  // The English tokenizer cannot serve a GPT-2 model.
  std::string err = load_error(turbo_props({{"tokenizer", fixture("t3/tokenizer_tiny.json")}}));
  BOOST_TEST(contains(err, "tokenizer_tiny.json"), err);
  BOOST_TEST(contains(err, "pre_tokenizer"), err);
  // A directory with two T3 checkpoints is refused, naming both.
  Files& f = files();
  fs::create_symlink(fixture("t3/t3_tiny.safetensors"), f.dir / "turbo" / "t3_cfg.safetensors");
  err = load_error({{"model", f.model_dir}});
  fs::remove(f.dir / "turbo" / "t3_cfg.safetensors");
  BOOST_TEST(contains(err, "mixes T3 models"), err);
  BOOST_TEST(contains(err, "t3_cfg.safetensors"), err);
  BOOST_TEST(contains(err, "t3_turbo_v1.safetensors"), err);
}
