// Chatterbox-Turbo's text front end: GPT-2 byte-level BPE with added tags,
// from both layouts (tokenizer.json; vocab.json + merges.txt +
// added_tokens.json), against the reference's cases, and turbo punc_norm.
#define BOOST_TEST_MODULE t3_gpt2_tokenizer
#include <boost/test/unit_test.hpp>

#include "elements/t3/model/gpt2_tokenizer.h"
#include "elements/t3/model/text_frontend.h"
#include "gst-plugins/core/checkpoint.h"
#include "tests/fixtures.h"
#include "tests/test_util.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <unistd.h>

using chatterbox::test::contains;
using chatterbox::test::error_of;
using chatterbox::test::fixture;
using chatterbox::test::slurp;

using namespace chatterbox;
using namespace chatterbox::t3;
namespace fs = std::filesystem;

namespace {
const std::string kDir = "t3_turbo/gpt2_bpe_tiny";

std::vector<std::string> split(const std::string& s, char sep) {
  std::vector<std::string> out;
  std::string cur;
  std::istringstream is(s);
  while (std::getline(is, cur, sep)) out.push_back(cur);
  return out;
}
std::vector<int64_t> parse_ids(const std::string& s) {
  std::vector<int64_t> ids;
  for (const auto& x : split(s, ',')) ids.push_back(std::stoll(x));
  return ids;
}

// A per-process scratch directory, removed at exit.
struct TempDir {
  fs::path path = fs::temp_directory_path() / ("gpt2_tok_test_" + std::to_string(getpid()));
  TempDir() { fs::create_directories(path); }
  ~TempDir() { fs::remove_all(path); }
  std::string file(const std::string& name, const std::string& content) const {
    std::ofstream(path / name, std::ios::binary) << content;
    return (path / name).string();
  }
};

// The slow layout alone (no tokenizer.json), copied into `dir`.
void copy_slow_layout(const fs::path& dir) {
  fs::create_directories(dir);
  for (const char* f : {"vocab.json", "merges.txt", "added_tokens.json", "special_tokens_map.json"})
    fs::copy_file(fixture(kDir + "/" + f), dir / f, fs::copy_options::overwrite_existing);
}

// The three ways to name the tiny tokenizer: the tokenizer.json file, the
// fixture directory (tokenizer.json preferred), the slow layout alone.
struct Layouts {
  TempDir tmp;
  std::vector<std::pair<std::string, Gpt2Tokenizer>> all;
  Layouts() {
    copy_slow_layout(tmp.path / "slow");
    all.emplace_back("tokenizer.json", Gpt2Tokenizer::from_path(fixture(kDir + "/tokenizer.json")));
    all.emplace_back("fixture dir",
                     Gpt2Tokenizer::from_path(fs::path(fixture(kDir + "/tokenizer.json")).parent_path().string()));
    all.emplace_back("slow layout", Gpt2Tokenizer::from_path((tmp.path / "slow").string()));
  }
};
Layouts& layouts() {
  static Layouts l;
  return l;
}
}  // namespace

BOOST_AUTO_TEST_CASE(every_case_in_both_layouts) {
  std::ifstream f(fixture(kDir + "/cases.tsv"));
  std::string line;
  std::getline(f, line);
  BOOST_TEST(line == "text_json\tids\ttokens_json");
  int n = 0;
  while (std::getline(f, line)) {
    if (line.empty()) continue;
    auto cols = split(line, '\t');
    if (cols.size() == 2) cols.insert(cols.begin() + 1, "");  // the empty text: no ids
    BOOST_REQUIRE_EQUAL(cols.size(), 3u);
    const std::string text = nlohmann::json::parse(cols[0]).get<std::string>();
    const std::vector<int64_t> ids = cols[1].empty() ? std::vector<int64_t>{} : parse_ids(cols[1]);
    const auto toks = nlohmann::json::parse(cols[2]).get<std::vector<std::string>>();
    for (const auto& [name, tok] : layouts().all) {
      BOOST_TEST_CONTEXT(name << ": case " << cols[0]) {
        BOOST_TEST(tok.encode(text) == ids, boost::test_tools::per_element());
        BOOST_TEST(tok.encode_tokens(text) == toks, boost::test_tools::per_element());
        BOOST_TEST(tok.decode(ids) == text);  // byte-level: decoding gives the text back exactly
      }
    }
    ++n;
  }
  BOOST_TEST(n == 22);
}

BOOST_AUTO_TEST_CASE(turbo_punc_norm_cases) {
  std::ifstream f(fixture("t3_turbo/punc_norm_cases.tsv"));
  std::string line;
  std::getline(f, line);
  BOOST_TEST(line == "raw_json\tpunc_norm_json\tids_of_punc_norm");
  int n = 0;
  while (std::getline(f, line)) {
    if (line.empty()) continue;
    auto cols = split(line, '\t');
    BOOST_REQUIRE_EQUAL(cols.size(), 3u);
    const std::string raw = nlohmann::json::parse(cols[0]).get<std::string>();
    const std::string norm = nlohmann::json::parse(cols[1]).get<std::string>();
    const std::vector<int64_t> ids = parse_ids(cols[2]);
    BOOST_TEST_CONTEXT("case " << cols[0]) {
      BOOST_TEST(punc_norm_turbo(raw) == norm);
      for (const auto& [name, tok] : layouts().all) {
        BOOST_TEST_CONTEXT(name) {
          BOOST_TEST(tok.encode(norm) == ids, boost::test_tools::per_element());
          BOOST_TEST(tok.text_to_ids(raw) == ids, boost::test_tools::per_element());
        }
      }
    }
    ++n;
  }
  BOOST_TEST(n == 14);
  // Where the two versions differ: the English one rewrites "...", " - " and ";".
  BOOST_TEST(punc_norm_turbo("Wait... a - b; c") == "Wait... a - b; c.");
  BOOST_TEST(punc_norm("Wait... a - b; c") == "Wait,  a, b,  c.");  // ", " + the space that followed
}

BOOST_AUTO_TEST_CASE(tags_are_their_added_ids_and_other_brackets_are_text) {
  const Checkpoint ck = Checkpoint::open(fixture("t3_turbo/t3_turbo_tiny.safetensors"));
  const nlohmann::json tags = ck.config()["tokenizer"]["tags"];
  BOOST_REQUIRE_EQUAL(tags.size(), 19u);
  for (const auto& [name, tok] : layouts().all) {
    BOOST_TEST(tok.vocab_size() == 576);
    BOOST_TEST(tok.token_id("<|endoftext|>") == 556);
    for (auto it = tags.begin(); it != tags.end(); ++it) {
      BOOST_TEST(tok.token_id(it.key()) == it.value().get<int64_t>());
      BOOST_TEST(tok.encode("a " + it.key() + ".") == (std::vector<int64_t>{64, 220, it.value().get<int64_t>(), 13}),
                 boost::test_tools::per_element());
    }
    // Unknown bracket text is plain byte-level text: no id at or above 556.
    for (const char* s : {"[unknown tag]", "[LAUGH]", "[laugh", "laugh]", "[ laugh]"})
      for (int64_t id : tok.encode(s)) BOOST_TEST(id < 556, s);
  }
}

BOOST_AUTO_TEST_CASE(fixture_text_gives_the_reference_ids) {
  const Checkpoint ck = Checkpoint::open(fixture("t3_turbo/t3_turbo_tiny.safetensors"));
  at::Tensor t = ck.get_raw("test.text_tokens").to(at::kLong).reshape({-1}).contiguous();
  const std::vector<int64_t> want(t.data_ptr<int64_t>(), t.data_ptr<int64_t>() + t.numel());
  BOOST_TEST(punc_norm_turbo(ck.metadata("text")) == ck.metadata("text_punc_norm"));
  for (const auto& [name, tok] : layouts().all)
    BOOST_TEST(tok.text_to_ids(ck.metadata("text")) == want, boost::test_tools::per_element());
}

BOOST_AUTO_TEST_CASE(strip_flags_absorb_whitespace) {
  // lstrip / rstrip (not in the tiny file, possible in a real one): the
  // spaces beside the tag become part of it instead of a token of their own.
  nlohmann::json j = nlohmann::json::parse(slurp(fixture(kDir + "/tokenizer.json")));
  for (auto& a : j["added_tokens"])
    if (a["content"] == "[chuckle]") a["lstrip"] = a["rstrip"] = true;
  Gpt2Tokenizer tok = Gpt2Tokenizer::from_tokenizer_json(j.dump(), "stripped");
  Gpt2Tokenizer plain = Gpt2Tokenizer::from_path(fixture(kDir + "/tokenizer.json"));
  auto cat = [](std::vector<int64_t> a, const std::vector<int64_t>& b, const std::vector<int64_t>& c) {
    a.insert(a.end(), b.begin(), b.end());
    a.insert(a.end(), c.begin(), c.end());
    return a;
  };
  BOOST_TEST(tok.encode("stone [chuckle] by") == cat(plain.encode("stone"), {558}, plain.encode("by")),
             boost::test_tools::per_element());
  BOOST_TEST(plain.encode("stone [chuckle] by") == cat(plain.encode("stone"), {220, 558}, plain.encode(" by")),
             boost::test_tools::per_element());
}

BOOST_AUTO_TEST_CASE(ignore_merges_takes_whole_vocabulary_words) {
  nlohmann::json j = nlohmann::json::parse(slurp(fixture(kDir + "/tokenizer.json")));
  j["model"]["vocab"]["xyz"] = 576;
  Gpt2Tokenizer merging = Gpt2Tokenizer::from_tokenizer_json(j.dump(), "merging");
  Gpt2Tokenizer plain = Gpt2Tokenizer::from_path(fixture(kDir + "/tokenizer.json"));
  BOOST_TEST(merging.encode("xyz").size() > 1u);  // no merge reaches the new entry
  BOOST_TEST(merging.encode("xyz") == plain.encode("xyz"), boost::test_tools::per_element());
  j["model"]["ignore_merges"] = true;
  Gpt2Tokenizer whole = Gpt2Tokenizer::from_tokenizer_json(j.dump(), "whole");
  BOOST_TEST(whole.encode("xyz") == std::vector<int64_t>{576}, boost::test_tools::per_element());
}

BOOST_AUTO_TEST_CASE(model_max_length_truncates_like_the_reference) {
  TempDir tmp;
  copy_slow_layout(tmp.path / "cut");
  std::ofstream(tmp.path / "cut" / "tokenizer_config.json") << R"({"model_max_length": 4})";
  Gpt2Tokenizer tok = Gpt2Tokenizer::from_path((tmp.path / "cut").string());
  BOOST_TEST(tok.model_max_length() == 4);
  BOOST_TEST(tok.text_to_ids("hello there") == (std::vector<int64_t>{357, 297, 78, 259}), boost::test_tools::per_element());
  BOOST_TEST(tok.encode("hello there").size() == 5u);  // encode itself never cuts
  // transformers' "no limit" (1e30) is no limit.
  std::ofstream(tmp.path / "cut" / "tokenizer_config.json") << R"({"model_max_length": 1e30})";
  BOOST_TEST(Gpt2Tokenizer::from_path((tmp.path / "cut").string()).model_max_length() == 0);
}

BOOST_AUTO_TEST_CASE(errors_name_the_file_and_field) {
  TempDir tmp;
  const std::string json_text = slurp(fixture(kDir + "/tokenizer.json"));
  BOOST_TEST(contains(error_of([&] { Gpt2Tokenizer::from_path("/nonexistent/tokenizer.json"); }), "/nonexistent/tokenizer.json"));
  // A directory with only half of the slow layout.
  fs::create_directories(tmp.path / "half");
  fs::copy_file(fixture(kDir + "/vocab.json"), tmp.path / "half" / "vocab.json");
  std::string e = error_of([&] { Gpt2Tokenizer::from_path((tmp.path / "half").string()); });
  BOOST_TEST(contains(e, "merges.txt is missing"), e);
  BOOST_TEST(!Gpt2Tokenizer::dir_has_tokenizer((tmp.path / "half").string()));
  // The English (Llama T3) tokenizer is not GPT-2's layout.
  e = error_of([&] { Gpt2Tokenizer::from_path(fixture("t3/tokenizer_tiny.json")); });
  BOOST_TEST(contains(e, "pre_tokenizer"), e);
  BOOST_TEST(contains(e, "tokenizer_tiny.json"), e);
  BOOST_TEST(contains(error_of([&] { Gpt2Tokenizer::from_tokenizer_json("{not json", "broken.json"); }), "broken.json"));
  // A merge whose token is missing, a missing byte token.
  nlohmann::json j = nlohmann::json::parse(json_text);
  j["model"]["merges"].push_back(nlohmann::json::array({"q", "zz"}));
  e = error_of([&] { Gpt2Tokenizer::from_tokenizer_json(j.dump(), "m.json"); });
  BOOST_TEST(contains(e, "merge #300"), e);
  j = nlohmann::json::parse(json_text);
  j["model"]["vocab"].erase("Ġ");
  j["model"]["merges"] = nlohmann::json::array();
  e = error_of([&] { Gpt2Tokenizer::from_tokenizer_json(j.dump(), "v.json"); });
  BOOST_TEST(contains(e, "byte token 'Ġ' (byte 32)"), e);
  j = nlohmann::json::parse(json_text);
  j["added_tokens"][3]["single_word"] = true;
  BOOST_TEST(contains(error_of([&] { Gpt2Tokenizer::from_tokenizer_json(j.dump(), "s.json"); }), "single_word"));
  j = nlohmann::json::parse(json_text);
  j["pre_tokenizer"]["add_prefix_space"] = true;
  BOOST_TEST(contains(error_of([&] { Gpt2Tokenizer::from_tokenizer_json(j.dump(), "p.json"); }), "add_prefix_space"));
  // Ids beyond the model's text vocabulary.
  e = error_of([&] { Gpt2Tokenizer::from_path(fixture(kDir + "/tokenizer.json"), 560); });
  BOOST_TEST(contains(e, "id 575"), e);
  BOOST_TEST(contains(e, "[0, 560)"), e);
  // Slow-layout file errors name the file.
  copy_slow_layout(tmp.path / "bad");
  std::ofstream(tmp.path / "bad" / "merges.txt") << "#version: 0.2\nh e\nnot-a-pair\n";
  e = error_of([&] { Gpt2Tokenizer::from_path((tmp.path / "bad").string()); });
  BOOST_TEST(contains(e, "merges.txt"), e);
  BOOST_TEST(contains(e, "line 3"), e);
  copy_slow_layout(tmp.path / "bad");
  std::ofstream(tmp.path / "bad" / "added_tokens.json") << R"({"[laugh]": "x"})";
  e = error_of([&] { Gpt2Tokenizer::from_path((tmp.path / "bad").string()); });
  BOOST_TEST(contains(e, "added_tokens.json"), e);
  BOOST_TEST(contains(e, "[laugh]"), e);
  // Invalid UTF-8 text: the byte offset.
  BOOST_TEST(contains(error_of([&] { layouts().all[0].second.encode("ok \xFF"); }), "byte offset 3"));
}

BOOST_AUTO_TEST_CASE(long_inputs_stay_near_linear) {
  // A CJK paragraph is one pre-token (all \p{L}); many tags in one text.
  // Quadratic merging or tag search would take minutes here; the heap-based
  // BPE and the cached tag search take a small fraction of a second.
  const Gpt2Tokenizer& tok = layouts().all[0].second;
  std::string cjk, tags;
  for (int i = 0; i < 2000; ++i) cjk += "\u4eca\u5929\u5929\u6c14\u5f88\u597d";  // 12000 code points, 36 kB
  for (int i = 0; i < 2000; ++i) tags += "[laugh] ha [clear throat]";
  const auto t0 = std::chrono::steady_clock::now();
  std::vector<int64_t> a = tok.encode(cjk), b = tok.encode(tags);
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  BOOST_TEST_MESSAGE("encode 36 kB CJK + 2000 x 2 tags: " << s << " s");
  BOOST_TEST(s < 30.0);
  BOOST_TEST(tok.decode(a) == cjk);
  BOOST_TEST(tok.decode(b) == tags);
  BOOST_TEST(std::count(b.begin(), b.end(), 557) == 2000);
  BOOST_TEST(std::count(b.begin(), b.end(), 565) == 2000);
}
