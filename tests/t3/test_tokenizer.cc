#define BOOST_TEST_MODULE t3_tokenizer
#include <boost/test/unit_test.hpp>

#include "elements/t3/model/text_frontend.h"
#include "gst-plugins/core/checkpoint.h"
#include "tests/fixtures.h"
#include "tests/test_util.h"

#include <nlohmann/json.hpp>

#include <fstream>
#include <sstream>
using chatterbox::test::contains;
using chatterbox::test::slurp;
using chatterbox::test::error_of;

using namespace chatterbox;
using namespace chatterbox::t3;
using chatterbox::test::fixture;

namespace {
std::vector<std::string> split(const std::string& s, char sep) {
  std::vector<std::string> out;
  std::string cur;
  std::istringstream is(s);
  while (std::getline(is, cur, sep)) out.push_back(cur);
  return out;
}
EnTokenizer tiny() { return EnTokenizer::from_file(fixture("t3/tokenizer_tiny.json")); }
}  // namespace

BOOST_AUTO_TEST_CASE(tiny_cases_match_reference) {
  EnTokenizer tok = tiny();
  std::ifstream f(fixture("t3/tokenizer_tiny_cases.tsv"));
  std::string line;
  std::getline(f, line);
  BOOST_TEST(line == "raw_json\tpunc_norm_json\tids\ttokens_json");
  int n = 0;
  while (std::getline(f, line)) {
    if (line.empty()) continue;
    auto cols = split(line, '\t');
    BOOST_REQUIRE_EQUAL(cols.size(), 4u);
    std::string raw = nlohmann::json::parse(cols[0]).get<std::string>();
    std::string norm = nlohmann::json::parse(cols[1]).get<std::string>();
    std::vector<int64_t> ids;
    for (const auto& s : split(cols[2], ',')) ids.push_back(std::stoll(s));
    auto toks = nlohmann::json::parse(cols[3]).get<std::vector<std::string>>();
    BOOST_TEST_CONTEXT("case " << cols[0]) {
      BOOST_TEST(punc_norm(raw) == norm);
      BOOST_TEST(tok.encode(norm) == ids, boost::test_tools::per_element());
      BOOST_TEST(tok.encode_tokens(norm) == toks, boost::test_tools::per_element());
      BOOST_TEST(tok.text_to_ids(raw) == ids, boost::test_tools::per_element());
    }
    ++n;
  }
  BOOST_TEST(n == 12);
}

BOOST_AUTO_TEST_CASE(t3_fixture_text_ids) {
  Checkpoint ck = Checkpoint::open(fixture("t3/t3_tiny.safetensors"));
  std::string text = ck.metadata("text");
  BOOST_TEST(punc_norm(text) == ck.metadata("text_punc_norm"));
  at::Tensor ref = ck.get_raw("test.text_ids").reshape({-1});
  std::vector<int64_t> want(ref.data_ptr<int64_t>(), ref.data_ptr<int64_t>() + ref.numel());
  BOOST_TEST(tiny().text_to_ids(text) == want, boost::test_tools::per_element());
}

BOOST_AUTO_TEST_CASE(punc_norm_python_semantics) {
  BOOST_TEST(punc_norm("") == "You need to add some text for me to talk.");
  BOOST_TEST(punc_norm("   ") == ".");
  BOOST_TEST(punc_norm("  hello") == "hello.");              // capitalisation sees the raw first code point
  BOOST_TEST(punc_norm("\xc3\x9f" "ig") == "SSig.");          // full case mapping: ß -> SS
  BOOST_TEST(punc_norm("\xc3\xa9t\xc3\xa9") == "\xc3\x89t\xc3\xa9.");  // é -> É, rest untouched
  BOOST_TEST(punc_norm("\xc2\xaa" "b") == "\xc2\xaa" "b.");   // ª is Lowercase (Other_Lowercase) but upper() is itself
  BOOST_TEST(punc_norm("a\xc2\xa0" "b\xe3\x80\x80" "c\xe2\x80\xa8" "d\x1f" "e\xc2\x85" "f") == "A b c d e f.");
  BOOST_TEST(punc_norm("a\xe2\x80\x8b" "b") == "A\xe2\x80\x8b" "b.");  // U+200B is not whitespace for Python
  BOOST_TEST(punc_norm("Wait...") == "Wait,");
  BOOST_TEST(punc_norm("x...y") == "X, y.");
  BOOST_TEST(punc_norm("He said \"hi\"") == "He said \"hi\".");
  BOOST_TEST(punc_norm("a \xe2\x80\x94 b") == "A - b.");        // " — " -> " - " (the " - " rule ran before)
  BOOST_TEST(punc_norm("done!   ") == "Done!");
  BOOST_TEST(punc_norm("end-") == "End-");
}

BOOST_AUTO_TEST_CASE(utf8_errors_name_the_offset) {
  EnTokenizer tok = tiny();
  auto err = [&](const std::string& s) { return error_of([&] { punc_norm(s); }); };
  BOOST_TEST(contains(err("ab\xff"), "byte offset 2"));
  BOOST_TEST(contains(err("\xc0\xaf"), "byte offset 0"));        // overlong
  BOOST_TEST(contains(err("xy\xe2\x82"), "byte offset 2"));      // truncated
  BOOST_TEST(contains(err("\xed\xa0\x80"), "surrogate"));
  BOOST_TEST(contains(err("\xf4\x90\x80\x80"), "U+10FFFF"));
  BOOST_TEST(contains(err("a\xc3(b"), "byte offset 2"));          // bad continuation byte
  BOOST_TEST(contains(error_of([&] { tok.encode("ok\x80"); }), "byte offset 2"));
}

BOOST_AUTO_TEST_CASE(unicode_tokenization) {
  EnTokenizer tok = tiny();
  // One [UNK] per unknown code point, including 4-byte ones, never merged.
  BOOST_TEST(tok.encode("\xf0\x9f\x98\x80\xf0\x9f\x98\x80") == std::vector<int64_t>({1, 1}), boost::test_tools::per_element());
  // "é" is a word character: "thé" stays one pre-token, the [UNK] blocks merges across it.
  BOOST_TEST(tok.encode_tokens("th\xc3\xa9" "e") == std::vector<std::string>({"th", "[UNK]", "e"}),
             boost::test_tools::per_element());
  // "%" is not: "the%" splits into "the" | "%".
  BOOST_TEST(tok.encode_tokens("the%") == std::vector<std::string>({"the", "[UNK]"}), boost::test_tools::per_element());
  // Punctuation runs stay one pre-token; digits are word characters.
  BOOST_TEST(tok.encode_tokens("?!") == std::vector<std::string>({"?", "!"}), boost::test_tools::per_element());
  // Added tokens typed by the user are matched; [SPACE] substitution.
  BOOST_TEST(tok.encode("a[STOP]b c") == std::vector<int64_t>({29, 0, 30, 2, 31}), boost::test_tools::per_element());
  // Non-space whitespace reaching the tokenizer (punc_norm not applied) is dropped by the pre-tokenizer.
  BOOST_TEST(tok.encode("a\tb") == std::vector<int64_t>({29, 30}), boost::test_tools::per_element());
  BOOST_TEST(tok.token_id("[START]") == 255);
  BOOST_TEST(tok.token_id("[STOP]") == 0);
  for (int64_t id : tok.text_to_ids("Caf\xc3\xa9 \xe2\x80\x94 \xe4\xb8\xad\xe6\x96\x87 \xf0\x9f\x8e\xb5!")) BOOST_TEST(id < 704);
}

BOOST_AUTO_TEST_CASE(refuses_other_structures) {
  nlohmann::json base = nlohmann::json::parse(slurp(fixture("t3/tokenizer_tiny.json")));
  auto refused = [&](const std::function<void(nlohmann::json&)>& edit) {
    nlohmann::json j = base;
    edit(j);
    return error_of([&] { EnTokenizer::from_json_string(j.dump(), "edited.json"); });
  };
  BOOST_TEST(refused([](nlohmann::json&) {}).empty());
  BOOST_TEST(contains(refused([](auto& j) { j["normalizer"] = {{"type", "Lowercase"}}; }), "'normalizer'"));
  BOOST_TEST(contains(refused([](auto& j) { j["post_processor"] = {{"type", "TemplateProcessing"}}; }), "'post_processor'"));
  BOOST_TEST(contains(refused([](auto& j) { j["pre_tokenizer"] = {{"type", "ByteLevel"}}; }), "'pre_tokenizer'"));
  BOOST_TEST(contains(refused([](auto& j) { j["model"]["type"] = "WordPiece"; }), "'model.type'"));
  BOOST_TEST(contains(refused([](auto& j) { j["model"]["fuse_unk"] = true; }), "fuse_unk"));
  BOOST_TEST(contains(refused([](auto& j) { j["model"]["byte_fallback"] = true; }), "byte_fallback"));
  BOOST_TEST(contains(refused([](auto& j) { j["model"]["continuing_subword_prefix"] = "##"; }), "continuing_subword_prefix"));
  BOOST_TEST(contains(refused([](auto& j) { j["model"]["dropout"] = 0.1; }), "dropout"));
  BOOST_TEST(contains(refused([](auto& j) { j["added_tokens"][2]["lstrip"] = true; }), "lstrip"));
  BOOST_TEST(contains(refused([](auto& j) { j["model"]["vocab"]["zz"] = 704; }), "704"));
  BOOST_TEST(contains(refused([](auto& j) { j["model"]["merges"].push_back("q q"); }), "missing from the vocabulary"));
  BOOST_TEST(contains(refused([](auto& j) {
                        j["model"]["vocab"].erase("[START]");
                        j["added_tokens"].erase(3);
                      }),
                      "[START]"));
  BOOST_TEST(contains(error_of([] { EnTokenizer::from_json_string("{not json", "bad.json"); }), "not valid JSON"));
  BOOST_TEST(contains(error_of([] { EnTokenizer::from_file("/nonexistent/tokenizer.json"); }), "/nonexistent/tokenizer.json"));
  // Newer merge format ["a", "b"] is the same tokenizer.
  nlohmann::json j = base;
  for (auto& m : j["model"]["merges"]) {
    std::string s = m.get<std::string>();
    m = nlohmann::json::array({s.substr(0, s.find(' ')), s.substr(s.find(' ') + 1)});
  }
  EnTokenizer t2 = EnTokenizer::from_json_string(j.dump());
  BOOST_TEST(t2.encode("The little robot counted stones.") == tiny().encode("The little robot counted stones."),
             boost::test_tools::per_element());
}
