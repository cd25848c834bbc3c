// A Chatterbox Multilingual T3 through the t3 element: a tiny multilingual
// model (the tiny T3 fixture with its text table grown to the multilingual
// 2454 rows) in a model directory with upstream's file names, decoded with
// language=fr / zh and compared with the library (MtlTokenizer + T3Generator);
// the language property's errors; V3 over V2; CJK sentence splitting; the
// trim-tokens field of utterance-end.
#define BOOST_TEST_MODULE t3_mtl_element
#include <boost/test/unit_test.hpp>

#include "elements/t3/model/model_family.h"
#include "elements/t3/model/mtl_tokenizer.h"
#include "elements/t3/model/t3.h"
#include "gst-plugins/core/checkpoint.h"
#include "tests/fixtures.h"
#include "tests/test_util.h"

#include <ATen/ATen.h>
#include <gst/check/gstharness.h>
#include <gst/gst.h>
#include <glib/gstdio.h>
#include <nlohmann/json.hpp>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <string>
#include <vector>

using chatterbox::test::contains;
using chatterbox::test::fixture;
using namespace chatterbox;
using namespace chatterbox::t3;
namespace fs = std::filesystem;

#ifndef CHATTERBOX_MTL_CASES_DIR
#error "CHATTERBOX_MTL_CASES_DIR must name tests/t3/mtl"
#endif

namespace {

struct GstInit {
  GstInit() { gst_init(nullptr, nullptr); }
};
BOOST_GLOBAL_FIXTURE(GstInit);

// The tiny English T3 with text_emb / text_head grown to 2454 rows: the first
// 704 as they are, the rest a deterministic pattern of the same scale
// (`phase` tells V3 from V2).
void write_mtl_t3(const std::string& path, double phase) {
  const TensorStore src = read_safetensors(fixture("t3/t3_tiny.safetensors"));
  std::map<std::string, at::Tensor> out;
  for (const auto& [k, v] : src.tensors) {
    if (k.rfind("test.", 0) == 0) continue;
    if (k == "text_emb.weight" || k == "text_head.weight") {
      const int64_t rows = kMultilingualTextVocab - v.size(0), H = v.size(1);
      at::Tensor r = at::arange(rows * H, at::kDouble).reshape({rows, H});
      at::Tensor extra = (at::sin(r * 0.37 + phase) * v.std().item<double>() * 1.7).to(at::kFloat);
      out[k] = at::cat({v, extra}, 0).contiguous();
    } else {
      out[k] = v;
    }
  }
  std::map<std::string, std::string> meta;
  nlohmann::json cfg = nlohmann::json::parse(src.metadata.at("config"));
  if (cfg.contains("t3")) cfg["t3"]["text_tokens_dict_size"] = kMultilingualTextVocab;
  meta["config"] = cfg.dump();
  write_safetensors(path, out, meta);
}

void copy(const std::string& from, const std::string& to) { fs::copy_file(from, to, fs::copy_options::overwrite_existing); }

// A multilingual model directory with upstream's names (V3 and V2 both).
struct MtlDir {
  std::string dir;
  MtlDir() {
    gchar* d = g_dir_make_tmp("t3-mtl-XXXXXX", nullptr);
    dir = d;
    g_free(d);
    write_mtl_t3(dir + "/t3_mtl23ls_v3.safetensors", 0.0);
    write_mtl_t3(dir + "/t3_mtl23ls_v2.safetensors", 1.0);
    const std::string m = CHATTERBOX_MTL_CASES_DIR;
    copy(m + "/mtl_tiny.json", dir + "/" + kMtlVocabFile);
    copy(m + "/Cangjie5_TC.json", dir + "/" + kCangjieFile);
    copy(fixture("t3/conds_tiny.safetensors"), dir + "/conds.pt");
  }
  ~MtlDir() { fs::remove_all(dir); }
};
const MtlDir& mtl_dir() {
  static MtlDir d;
  return d;
}

using Props = std::map<std::string, std::string>;

struct Run {
  std::vector<GstFlowReturn> rets;
  std::vector<int32_t> tokens;
  std::vector<guint> trims;   // trim-tokens of each utterance-end
  std::vector<guint64> lens;  // tokens of each utterance
  std::vector<std::string> errors, warnings;
  GstStateChangeReturn state = GST_STATE_CHANGE_SUCCESS;
};

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

Run run_texts(const std::vector<std::string>& texts, const Props& props) {
  GstElement* e = gst_element_factory_make("t3", nullptr);
  BOOST_REQUIRE_MESSAGE(e, "element 't3' not found: GST_PLUGIN_PATH_1_0 must hold the built gstchatterbox plugin");
  Props p{{"model", mtl_dir().dir}, {"greedy", "true"}, {"max-tokens", "80"}};
  for (const auto& kv : props) p[kv.first] = kv.second;
  for (const auto& kv : p) gst_util_set_object_arg(G_OBJECT(e), kv.first.c_str(), kv.second.c_str());
  GstBus* bus = gst_bus_new();
  gst_element_set_bus(e, bus);
  Run r;
  r.state = gst_element_set_state(e, GST_STATE_READY);
  if (r.state == GST_STATE_CHANGE_FAILURE) {
    collect_messages(bus, r);
    gst_element_set_state(e, GST_STATE_NULL);
    gst_object_unref(e);
    gst_object_unref(bus);
    return r;
  }
  GstHarness* h = gst_harness_new_with_element(e, "sink", "src");
  gst_harness_set_src_caps_str(h, "text/x-raw, format=(string)utf8");
  for (const auto& t : texts) {
    GstBuffer* b = gst_buffer_new_allocate(nullptr, t.size(), nullptr);
    gst_buffer_fill(b, 0, t.data(), t.size());
    r.rets.push_back(gst_harness_push(h, b));
    if (r.rets.back() != GST_FLOW_OK) break;
  }
  while (GstBuffer* b = gst_harness_try_pull(h)) {
    GstMapInfo map;
    gst_buffer_map(b, &map, GST_MAP_READ);
    for (size_t i = 0; i + 4 <= map.size; i += 4) {
      gint32 v;
      std::memcpy(&v, map.data + i, 4);
      r.tokens.push_back(GINT32_FROM_LE(v));
    }
    gst_buffer_unmap(b, &map);
    gst_buffer_unref(b);
  }
  while (GstEvent* ev = gst_harness_try_pull_event(h)) {
    if (GST_EVENT_TYPE(ev) == GST_EVENT_CUSTOM_DOWNSTREAM &&
        gst_structure_has_name(gst_event_get_structure(ev), "chatterbox/utterance-end")) {
      guint trim = 99;
      guint64 n = 0;
      BOOST_TEST(gst_structure_get_uint(gst_event_get_structure(ev), "trim-tokens", &trim));
      BOOST_TEST(gst_structure_get_uint64(gst_event_get_structure(ev), "tokens", &n));
      r.trims.push_back(trim);
      r.lens.push_back(n);
    }
    gst_event_unref(ev);
  }
  collect_messages(bus, r);
  gst_harness_teardown(h);
  gst_object_unref(e);
  gst_object_unref(bus);
  return r;
}

// The library on the same files: MtlTokenizer ids, greedy T3Generator with
// generate's defaults, generate's valid tokens.
std::vector<int32_t> library_tokens(const std::string& model_file, const std::string& text, const std::string& lang) {
  const std::string d = mtl_dir().dir;
  const MtlTokenizer tok = MtlTokenizer::from_files(d + "/" + kMtlVocabFile, d + "/" + kCangjieFile);
  const T3Model model = T3Model::load(model_file);
  SamplingOptions o;
  o.greedy = true;
  o.cfg_weight = 0.5;
  o.repetition_penalty = 1.2;
  o.max_new_tokens = 80;
  T3Generator gen(model, o);
  gen.start(tok.text_to_ids(text, lang), T3Cond::load(d + "/conds.pt").with_exaggeration(0.5));
  while (gen.next_token() >= 0) {
  }
  std::vector<int32_t> out;
  for (int64_t t : drop_invalid_tokens(gen.tokens())) out.push_back(static_cast<int32_t>(t));
  return out;
}

const char* const kFrench = "Bonjour le monde, ça va très bien";

}  // namespace

BOOST_AUTO_TEST_CASE(french_decodes_as_the_library) {
  const std::string v3 = mtl_dir().dir + "/t3_mtl23ls_v3.safetensors";
  const std::vector<int32_t> want = library_tokens(v3, kFrench, "fr");
  BOOST_TEST_MESSAGE("fr: " << want.size() << " tokens");
  BOOST_REQUIRE(!want.empty());
  Run r = run_texts({kFrench}, {{"language", "fr"}});
  BOOST_TEST(r.errors.empty());
  BOOST_REQUIRE_EQUAL(r.rets.size(), 1u);
  BOOST_TEST(r.rets[0] == GST_FLOW_OK);
  BOOST_TEST(r.tokens == want, boost::test_tools::per_element());
  // The final token's audio is dropped downstream, as generate does.
  BOOST_REQUIRE_EQUAL(r.trims.size(), 1u);
  BOOST_TEST(r.trims[0] == (want.size() > 1 ? 1u : 0u));
  // The language changes what T3 sees: German gives the library's German run.
  const std::vector<int32_t> de = library_tokens(v3, kFrench, "de");
  Run r2 = run_texts({kFrench}, {{"language", "DE"}});
  BOOST_TEST(r2.tokens == de, boost::test_tools::per_element());
  BOOST_TEST(MtlTokenizer::from_files(mtl_dir().dir + "/" + kMtlVocabFile).text_to_ids(kFrench, "fr") !=
             MtlTokenizer::from_files(mtl_dir().dir + "/" + kMtlVocabFile).text_to_ids(kFrench, "de"));
}

BOOST_AUTO_TEST_CASE(v3_over_v2) {
  const std::string d = mtl_dir().dir;
  BOOST_TEST(t3_checkpoint_in_dir(d) == d + "/t3_mtl23ls_v3.safetensors");
  const ModelDirLayout L = inspect_model_dir(d);
  BOOST_TEST(std::string(kind_name(L.kind)) == "Chatterbox Multilingual");
  BOOST_TEST(L.tokenizer == d + "/" + kMtlVocabFile);
  // Every file but s3gen.safetensors is there.
  BOOST_REQUIRE_EQUAL(L.missing.size(), 1u);
  BOOST_TEST(L.missing[0].role == "s3gen");
  // V2 named explicitly decodes V2 (its text rows differ).
  const std::string v2 = d + "/t3_mtl23ls_v2.safetensors";
  Run r = run_texts({kFrench}, {{"language", "fr"}, {"model", v2}});
  BOOST_TEST(r.tokens == library_tokens(v2, kFrench, "fr"), boost::test_tools::per_element());
}

BOOST_AUTO_TEST_CASE(chinese_cangjie_and_cjk_sentences) {
  const std::string v3 = mtl_dir().dir + "/t3_mtl23ls_v3.safetensors";
  // Two sentences ended by 。 and ！ with no space: two utterances.
  Run r = run_texts({"你好。我很好！"}, {{"language", "zh"}});
  BOOST_TEST(r.errors.empty());
  BOOST_TEST(r.lens.size() == 2u);
  std::vector<int32_t> want = library_tokens(v3, "你好。", "zh");
  const std::vector<int32_t> b = library_tokens(v3, "我很好！", "zh");
  want.insert(want.end(), b.begin(), b.end());
  BOOST_TEST(r.tokens == want, boost::test_tools::per_element());
  // Upstream's pkuseg fallback is announced.
  bool warned = false;
  for (const auto& w : r.warnings) warned = warned || contains(w, "segmentation");
  BOOST_TEST(warned);
}

BOOST_AUTO_TEST_CASE(language_errors) {
  Run r = run_texts({kFrench}, {{"language", "xx"}});
  BOOST_TEST(r.state == GST_STATE_CHANGE_FAILURE);
  BOOST_REQUIRE_EQUAL(r.errors.size(), 1u);
  BOOST_TEST(contains(r.errors[0], "Unknown language 'xx'"), r.errors[0]);
  BOOST_TEST(contains(r.errors[0], mtl_language_list()), r.errors[0]);
  // An English-only model refuses other languages.
  Run e = run_texts({kFrench}, {{"language", "fr"},
                                {"model", fixture("t3/t3_tiny.safetensors")},
                                {"tokenizer", fixture("t3/tokenizer_tiny.json")},
                                {"voice", fixture("t3/conds_tiny.safetensors")}});
  BOOST_TEST(e.state == GST_STATE_CHANGE_FAILURE);
  BOOST_REQUIRE_EQUAL(e.errors.size(), 1u);
  BOOST_TEST(contains(e.errors[0], "needs a Chatterbox Multilingual T3"), e.errors[0]);
  // ... but takes en, and the English model's output does not trim.
  Run en = run_texts({"the little robot counted stones by the river"},
                     {{"language", "en"},
                      {"model", fixture("t3/t3_tiny.safetensors")},
                      {"tokenizer", fixture("t3/tokenizer_tiny.json")},
                      {"voice", fixture("t3/conds_tiny.safetensors")}});
  BOOST_TEST(en.errors.empty());
  BOOST_REQUIRE_EQUAL(en.trims.size(), 1u);
  BOOST_TEST(en.trims[0] == 0u);
  // The language property of an idle element.
  GstElement* t3 = gst_element_factory_make("t3", nullptr);
  gchar* lang = nullptr;
  g_object_get(t3, "language", &lang, nullptr);
  BOOST_TEST(lang == nullptr);
  g_object_unref(t3);
}
