#define BOOST_TEST_MODULE t3_mtl_tokenizer
#include <boost/test/unit_test.hpp>

#include "elements/t3/model/mtl_tokenizer.h"
#include "gst-plugins/core/checkpoint.h"
#include "tests/test_util.h"

#include <nlohmann/json.hpp>

#include <fstream>
#include <map>
#include <sstream>

using namespace chatterbox;
using namespace chatterbox::t3;
using chatterbox::test::contains;
using chatterbox::test::error_of;

// tests/t3/mtl: made by tests/t3/make_mtl_cases.py (upstream's MTLTokenizer
// and pykakasi run on the tiny vocabulary there).
#ifndef CHATTERBOX_MTL_CASES_DIR
#error "CHATTERBOX_MTL_CASES_DIR must name tests/t3/mtl"
#endif

namespace {
const std::string kDir = CHATTERBOX_MTL_CASES_DIR;

std::vector<std::string> split(const std::string& s, char sep) {
  std::vector<std::string> out;
  std::string cur;
  std::istringstream is(s);
  while (std::getline(is, cur, sep)) out.push_back(cur);
  return out;
}

MtlTokenizer tiny() { return MtlTokenizer::from_files(kDir + "/mtl_tiny.json", kDir + "/Cangjie5_TC.json"); }

std::string spaces_to_tokens(const std::string& s) {
  std::string out;
  for (char c : s) out += c == ' ' ? std::string("[SPACE]") : std::string(1, c);
  return out;
}

struct Case {
  std::string lang, raw, norm, prepared;
  std::vector<int64_t> ids;
};

std::vector<Case> cases() {
  std::ifstream f(kDir + "/mtl_cases.tsv");
  BOOST_REQUIRE(f.good());
  std::vector<Case> out;
  std::string line;
  bool header = false;
  while (std::getline(f, line)) {
    if (line.empty() || line[0] == '#') continue;
    if (!header) {
      BOOST_REQUIRE_EQUAL(line, "lang\traw_json\tpunc_norm_json\tprepared_json\tids");
      header = true;
      continue;
    }
    auto cols = split(line, '\t');
    BOOST_REQUIRE_EQUAL(cols.size(), 5u);
    Case c;
    c.lang = cols[0];
    c.raw = nlohmann::json::parse(cols[1]).get<std::string>();
    c.norm = nlohmann::json::parse(cols[2]).get<std::string>();
    c.prepared = nlohmann::json::parse(cols[3]).get<std::string>();
    for (const auto& s : split(cols[4], ',')) c.ids.push_back(std::stoll(s));
    out.push_back(c);
  }
  return out;
}
}  // namespace

// Every case as upstream: punc_norm, the string handed to the tokenizer, the
// ids. Japanese with libkakasi: pykakasi's output on every case (no known
// difference on these; the notes in tests/t3/mtl/README.md say where they can
// differ). Without libkakasi: upstream's own fallback (text unchanged).
BOOST_AUTO_TEST_CASE(reference_cases) {
  const MtlTokenizer tok = tiny();
  const bool kakasi = japanese_reader_available();
  BOOST_TEST_MESSAGE("libkakasi " << (kakasi ? "available" : "not built in: Japanese takes upstream's fallback"));
  std::map<std::string, int> per_lang;
  int ja_agree = 0, ja = 0;
  for (const Case& c : cases()) {
    BOOST_TEST_CONTEXT(c.lang << " " << c.raw) {
      ++per_lang[c.lang];
      BOOST_TEST(punc_norm_mtl(c.raw) == c.norm);
      if (c.lang == "ja") {
        ++ja;
        if (!kakasi) {
          const std::string fallback = "[ja]" + spaces_to_tokens(mtl_lower_nfkd(c.norm));
          BOOST_TEST(tok.prepare(c.norm, c.lang) == fallback);
          BOOST_TEST(tok.encode(c.norm, c.lang) == tok.tokenizer().encode(fallback), boost::test_tools::per_element());
          ja_agree += tok.prepare(c.norm, c.lang) == c.prepared;
          continue;
        }
        ja_agree += tok.prepare(c.norm, c.lang) == c.prepared;
      }
      BOOST_TEST(tok.prepare(c.norm, c.lang) == c.prepared);
      BOOST_TEST(tok.encode(c.norm, c.lang) == c.ids, boost::test_tools::per_element());
      BOOST_TEST(tok.text_to_ids(c.raw, c.lang) == c.ids, boost::test_tools::per_element());
    }
  }
  BOOST_TEST_MESSAGE("Japanese: " << ja_agree << " of " << ja << " cases as pykakasi");
  BOOST_TEST(per_lang.size() == 23u);
  for (const std::string& code : mtl_languages()) BOOST_TEST(per_lang[code] >= 5, code);
}

BOOST_AUTO_TEST_CASE(languages) {
  BOOST_TEST(mtl_languages().size() == 23u);
  BOOST_TEST(mtl_language_list() ==
             "ar, da, de, el, en, es, fi, fr, he, hi, it, ja, ko, ms, nl, no, pl, pt, ru, sv, sw, tr, zh");
  BOOST_TEST(std::string(mtl_language_name("fr")) == "French");
  BOOST_TEST(!is_mtl_language("xx"));
  const MtlTokenizer tok = tiny();
  const std::string e = error_of([&] { tok.prepare("hello", "xx"); });
  BOOST_TEST(contains(e, "unsupported language 'xx'"), e);
  BOOST_TEST(contains(e, "ar, da, de"), e);
  // The code is case-insensitive, as generate's language_id.lower().
  BOOST_TEST(tok.prepare("Bonjour", "FR") == tok.prepare("Bonjour", "fr"));
  BOOST_TEST(tok.prepare("Bonjour", "fr").rfind("[fr]", 0) == 0);
}

BOOST_AUTO_TEST_CASE(punc_norm_cjk_enders) {
  BOOST_TEST(punc_norm_mtl("你好。") == "你好。");
  BOOST_TEST(punc_norm_mtl("你好，") == "你好，");
  BOOST_TEST(punc_norm_mtl("你好、") == "你好、");
  BOOST_TEST(punc_norm_mtl("你好？") == "你好？");
  BOOST_TEST(punc_norm_mtl("你好！") == "你好！");
  BOOST_TEST(punc_norm_mtl("你好") == "你好.");
  // The English punc_norm has no CJK enders.
  BOOST_TEST(punc_norm("你好。") == "你好。.");
  BOOST_TEST(punc_norm_mtl("") == "You need to add some text for me to talk.");
}

BOOST_AUTO_TEST_CASE(lower_nfkd) {
  // Final sigma, dotted capital I, compatibility forms, decomposed accents.
  BOOST_TEST(mtl_lower_nfkd("ΣΑΣ") == "\u03c3\u03b1\u03c2");
  BOOST_TEST(mtl_lower_nfkd("\u0130") == "i\u0307");
  BOOST_TEST(mtl_lower_nfkd("\uff21\uff11") == "a1");
  BOOST_TEST(mtl_lower_nfkd("\u00c9") == "e\u0301");
  BOOST_TEST(contains(error_of([] { mtl_lower_nfkd("\xff"); }), "invalid UTF-8"));
}

BOOST_AUTO_TEST_CASE(korean_jamo) {
  // Precomposed syllables (the step alone, without the NFKD before it).
  BOOST_TEST(korean_normalize("\ud55c") == "\u1112\u1161\u11ab");  // 한
  BOOST_TEST(korean_normalize("\uac00") == "\u1100\u1161");        // 가: no final
  BOOST_TEST(korean_normalize("  \uac00 a\t") == "\u1100\u1161 a");
  // Upstream's range ends at U+D7AF: the formula runs on U+D7A4..U+D7AF too.
  BOOST_TEST(korean_normalize("\ud7a4") == "\u1113\u1161");
  // After NFKD the step is the strip only.
  BOOST_TEST(korean_normalize(mtl_lower_nfkd("\ud55c")) == mtl_lower_nfkd("\ud55c"));
}

BOOST_AUTO_TEST_CASE(cangjie_table) {
  // word2cj keeps a glyph's last code; the index is the position among the
  // glyphs of that code, in file order; other lines are ignored.
  const CangjieTable t = CangjieTable::from_json_string(
      R"(["漢字\t倉頡碼\t標註", "文\tyk", "头\tyk", "达\tyk", "漢\tetao", "漢\tetlo", "日\ta\t[u]"])");
  BOOST_TEST(t.encode(U'文') == "yk");
  BOOST_TEST(t.encode(U'头') == "yk1");
  BOOST_TEST(t.encode(U'达') == "yk2");
  BOOST_TEST(t.encode(U'漢') == "etlo");
  BOOST_TEST(t.encode(U'日') == "a");
  BOOST_TEST(t.encode(U'x') == "");
  BOOST_TEST(cangjie_convert("头,日x", &t) == "[cj_y][cj_k][cj_1][cj_.],[cj_a][cj_.]x");
  // Only "Lo" characters: a digit-like CJK symbol or a Latin letter stays.
  BOOST_TEST(cangjie_convert("〇a", &t) == "〇a");
  BOOST_TEST(cangjie_convert("头", nullptr) == "头");
  BOOST_TEST(contains(error_of([] { CangjieTable::from_json_string(R"({"a": 1})"); }), "JSON list"));
  BOOST_TEST(contains(error_of([] { CangjieTable::from_json_string(R"(["a b"])"); }), "no tab"));
}

BOOST_AUTO_TEST_CASE(zh_without_table) {
  const MtlTokenizer tok = MtlTokenizer::from_files(kDir + "/mtl_tiny.json");
  BOOST_TEST(!tok.has_cangjie());
  BOOST_TEST(tok.prepare("你好", "zh") == "[zh]你好");
  BOOST_TEST(contains(tok.fallback_note("zh"), "Cangjie"));
  BOOST_TEST(contains(tiny().fallback_note("zh"), "segmentation"));
  BOOST_TEST(contains(tiny().fallback_note("he"), "dicta"));
  BOOST_TEST(contains(tiny().fallback_note("ru"), "stress"));
  BOOST_TEST(tiny().fallback_note("fr").empty());
  BOOST_TEST(tiny().fallback_note("ja").empty() == japanese_reader_available());
}

BOOST_AUTO_TEST_CASE(vocabulary_checks) {
  // A tokenizer without the language tokens (the English one) is refused.
  const std::string en = std::string(CHATTERBOX_FIXTURES_DIR) + "/t3/tokenizer_tiny.json";
  std::string e = error_of([&] { MtlTokenizer::from_files(en); });
  BOOST_TEST(contains(e, "no language token '[ar]'"), e);
  // Ids beyond the multilingual table.
  e = error_of([&] { MtlTokenizer::from_files(kDir + "/mtl_tiny.json", "", 300); });
  BOOST_TEST(contains(e, "outside the T3 text vocabulary [0, 300)"), e);
}

BOOST_AUTO_TEST_CASE(word_level_model) {
  // A WordLevel tokenizers file: whole pre-tokens, [UNK] otherwise.
  const std::string j = R"({"version": "1.0", "truncation": null, "padding": null, "normalizer": null,
    "pre_tokenizer": {"type": "Whitespace"}, "post_processor": null, "decoder": null,
    "added_tokens": [{"id": 0, "content": "[STOP]"}, {"id": 1, "content": "[UNK]"}, {"id": 2, "content": "[SPACE]"},
                     {"id": 3, "content": "[START]"}],
    "model": {"type": "WordLevel", "unk_token": "[UNK]",
              "vocab": {"[STOP]": 0, "[UNK]": 1, "[SPACE]": 2, "[START]": 3, "ab": 4, "c": 5, "!": 6}}})";
  const EnTokenizer tok = EnTokenizer::from_json_string(j, "wl.json", 10);
  BOOST_TEST(tok.encode("ab c!") == (std::vector<int64_t>{4, 2, 5, 6}), boost::test_tools::per_element());
  BOOST_TEST(tok.encode("abc") == (std::vector<int64_t>{1}), boost::test_tools::per_element());
}
