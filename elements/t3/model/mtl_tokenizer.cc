#include "elements/t3/model/mtl_tokenizer.h"

#include "gst-plugins/core/checkpoint.h"  // ModelError

#include <nlohmann/json.hpp>
#include <unicode/locid.h>
#include <unicode/normalizer2.h>
#include <unicode/uchar.h>
#include <unicode/unistr.h>

#include <fstream>
#include <mutex>
#include <sstream>

#ifdef CHATTERBOX_HAVE_KAKASI
#include <iconv.h>
extern "C" {
#include <libkakasi.h>
}
#endif

namespace chatterbox::t3 {

// ------------------------------------------------------------ languages ----

namespace {
struct Language {
  const char* code;
  const char* name;
};
// mtl_tts.py SUPPORTED_LANGUAGES, in its order.
constexpr Language kLanguages[] = {
    {"ar", "Arabic"},  {"da", "Danish"},    {"de", "German"},  {"el", "Greek"},      {"en", "English"},
    {"es", "Spanish"}, {"fi", "Finnish"},   {"fr", "French"},  {"he", "Hebrew"},     {"hi", "Hindi"},
    {"it", "Italian"}, {"ja", "Japanese"},  {"ko", "Korean"},  {"ms", "Malay"},      {"nl", "Dutch"},
    {"no", "Norwegian"}, {"pl", "Polish"},  {"pt", "Portuguese"}, {"ru", "Russian"}, {"sv", "Swedish"},
    {"sw", "Swahili"}, {"tr", "Turkish"},   {"zh", "Chinese"},
};

std::string ascii_lower(std::string s) {
  for (char& c : s)
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c + 32);
  return s;
}

std::u32string to_u32(const std::string& s, const char* what = "text") {
  std::vector<char32_t> v = decode_utf8(s, what);
  return std::u32string(v.begin(), v.end());
}
}  // namespace

const std::vector<std::string>& mtl_languages() {
  static const std::vector<std::string> codes = [] {
    std::vector<std::string> v;
    for (const Language& l : kLanguages) v.push_back(l.code);
    return v;
  }();
  return codes;
}

bool is_mtl_language(const std::string& code) { return mtl_language_name(code)[0] != '\0'; }

const char* mtl_language_name(const std::string& code) {
  for (const Language& l : kLanguages)
    if (code == l.code) return l.name;
  return "";
}

std::string mtl_language_list() {
  std::string s;
  for (const Language& l : kLanguages) s += std::string(s.empty() ? "" : ", ") + l.code;
  return s;
}

// ------------------------------------------------- lower-case and NFKD ----

namespace {
std::string nfkd(const icu::UnicodeString& u) {
  UErrorCode err = U_ZERO_ERROR;
  const icu::Normalizer2* norm = icu::Normalizer2::getNFKDInstance(err);
  icu::UnicodeString n = U_SUCCESS(err) ? norm->normalize(u, err) : u;
  if (U_FAILURE(err)) throw ModelError(std::string("Unicode NFKD normalisation failed: ") + u_errorName(err));
  std::string out;
  n.toUTF8String(out);
  return out;
}
}  // namespace

std::string mtl_lower_nfkd(const std::string& text) {
  decode_utf8(text);  // ModelError on malformed input
  // str.lower(): full case mapping without a locale (final sigma included),
  // as ICU's root locale; then unicodedata.normalize("NFKD").
  icu::UnicodeString u = icu::UnicodeString::fromUTF8(text);
  u.toLower(icu::Locale::getRoot());
  return nfkd(u);
}

// --------------------------------------------------------------- Korean ----

std::string korean_normalize(const std::string& text) {
  std::u32string out;
  for (char32_t c : to_u32(text)) {
    // tokenizer.py's range and formula (U+D7A4..U+D7AF included, as there).
    if (c < 0xAC00 || c > 0xD7AF) {
      out += c;
      continue;
    }
    const char32_t base = c - 0xAC00;
    out += static_cast<char32_t>(0x1100 + base / (21 * 28));
    out += static_cast<char32_t>(0x1161 + (base % (21 * 28)) / 28);
    if (base % 28 > 0) out += static_cast<char32_t>(0x11A7 + base % 28);
  }
  // str.strip()
  size_t b = 0, e = out.size();
  while (b < e && py_isspace(out[b])) ++b;
  while (e > b && py_isspace(out[e - 1])) --e;
  return encode_utf8(out.substr(b, e - b));
}

// ------------------------------------------------------------- Japanese ----

namespace {
#ifdef CHATTERBOX_HAVE_KAKASI
bool is_kanji(char32_t c) { return c >= 19968 && c <= 40959; }  // tokenizer.py is_kanji

// Characters pykakasi's convert() drops (its "PUA: ignore and drop" branch:
// U+F000..U+FFFD and U+10000..U+10FFFD that no earlier branch claims; of
// those only variation selectors 1-3 / the ideographic variation selectors
// (itaiji keys) and CJK compatibility ideographs are claimed).
bool pykakasi_drops(char32_t c) {
  if (c >= 0xFE00 && c <= 0xFE02) return false;
  if (c >= 0xF900 && c <= 0xFAFF) return false;
  if (c >= 0xE0100 && c <= 0xE01EF) return false;
  return (c >= 0xF000 && c <= 0xFFFD) || (c >= 0x10000 && c <= 0x10FFFD);
}

// libkakasi keeps global state: one configuration (-JH -f -s, EUC-JP in and
// out) for the process, one call at a time.
std::mutex& kakasi_mutex() {
  static std::mutex m;
  return m;
}
bool kakasi_ready_locked() {
  static const bool ok = [] {
    static char a0[] = "kakasi", a1[] = "-JH", a2[] = "-f", a3[] = "-s", a4[] = "-ieuc", a5[] = "-oeuc";
    char* argv[] = {a0, a1, a2, a3, a4, a5};
    return kakasi_getopt_argv(6, argv) == 0;
  }();
  return ok;
}

// iconv of a whole string; false when any character does not convert.
bool iconv_all(const char* to, const char* from, const std::string& in, std::string& out) {
  iconv_t cd = iconv_open(to, from);
  if (cd == reinterpret_cast<iconv_t>(-1)) return false;
  out.assign(in.size() * 4 + 16, '\0');
  char* ip = const_cast<char*>(in.data());
  size_t il = in.size();
  char* op = out.data();
  size_t ol = out.size();
  const size_t r = iconv(cd, &ip, &il, &op, &ol);
  iconv_close(cd);
  if (r == static_cast<size_t>(-1) || il != 0) return false;
  out.resize(out.size() - ol);
  return true;
}

// A character kakasi can be given: ASCII graphic (not the brackets its
// furigana output uses) or a two-byte EUC-JP (JIS X 0208) character.
bool kakasi_feedable(char32_t c) {
  if (c < 0x80) return c > 0x20 && c < 0x7F && c != '[' && c != ']';
  if (py_isspace(c)) return false;
  std::string euc;
  if (!iconv_all("EUC-JP", "UTF-8", encode_utf8(std::u32string(1, c)), euc)) return false;
  return euc.size() == 2 && static_cast<unsigned char>(euc[0]) >= 0xA1;
}

// kakasi -JH -f -s on `s` (feedable characters only): words separated by
// " ", a converted phrase as "orig[reading]"; an unknown kanji comes back as
// nothing (as pykakasi's empty reading). Empty on a conversion failure.
std::vector<std::u32string> kakasi_words(const std::u32string& s) {
  std::string euc, out_utf8;
  if (!iconv_all("EUC-JP", "UTF-8", encode_utf8(s), euc)) return {};
  {
    std::lock_guard<std::mutex> lock(kakasi_mutex());
    char* r = kakasi_do(euc.data());
    if (!r) return {};
    std::string res(r);
    kakasi_free(r);
    if (!iconv_all("UTF-8", "EUC-JP", res, out_utf8)) return {};
  }
  std::vector<std::u32string> words(1);
  for (char32_t c : to_u32(out_utf8)) {
    if (c == ' ')
      words.emplace_back();
    else
      words.back() += c;
  }
  return words;
}

// A word as (orig, reading); false when it is not "orig[reading]".
bool split_phrase(const std::u32string& word, std::u32string& orig, std::u32string& hira) {
  const size_t open = word.find(U'[');
  if (open == std::u32string::npos || word.back() != U']') return false;
  orig = word.substr(0, open), hira = word.substr(open + 1, word.size() - open - 2);
  return true;
}

// kakasi 2.3.6 (Debian's) loses the kanji part of the reading of dictionary
// words spelled with a small っ (the past and te forms of godan verbs):
// 買った -> [た] where its dictionary says かっ + た. Given such a phrase
// (its reading is just the kana after the っ), the reading of "stem + っ"
// alone is asked for (買っ -> かっ, which kakasi gets right; 言っ -> いっっ,
// its reading いっ for 言 before a t-row kana plus that kana: one っ is
// dropped, there is no っっ in Japanese) and the kana after it appended.
std::u32string repair_sokuon(const std::u32string& orig, const std::u32string& hira) {
  const size_t q = orig.rfind(U'\u3063');  // っ
  if (q == std::u32string::npos || q == 0 || hira != orig.substr(q + 1)) return hira;
  const std::vector<std::u32string> w = kakasi_words(orig.substr(0, q + 1));
  std::u32string o2, h2;
  if (w.size() != 1 || !split_phrase(w[0], o2, h2) || o2 != orig.substr(0, q + 1) || h2.empty() ||
      h2.back() != U'\u3063')
    return hira;
  if (h2.size() >= 2 && h2[h2.size() - 2] == U'\u3063') h2.pop_back();
  return h2 + orig.substr(q + 1);
}

// One stretch of feedable characters: each phrase with kanji is replaced by
// its reading, " " before a reading starting with は or へ (hiragana_normalize).
std::u32string kakasi_stretch(const std::u32string& s) {
  const std::vector<std::u32string> words = kakasi_words(s);
  if (words.empty()) return s;
  std::u32string out;
  for (const std::u32string& word : words) {
    std::u32string orig, hira;
    if (!split_phrase(word, orig, hira)) {
      out += word;
      continue;
    }
    bool kanji = false;
    for (char32_t c : orig) kanji = kanji || is_kanji(c);
    if (!kanji) {  // hiragana_normalize keeps phrases without kanji as they are
      out += orig;
      continue;
    }
    hira = repair_sokuon(orig, hira);
    if (!hira.empty() && (hira[0] == U'\u306F' || hira[0] == U'\u3078')) out += U' ';  // は, へ
    out += hira;
  }
  return out;
}
#endif
}  // namespace

bool japanese_reader_available() {
#ifdef CHATTERBOX_HAVE_KAKASI
  std::lock_guard<std::mutex> lock(kakasi_mutex());
  return kakasi_ready_locked();
#else
  return false;
#endif
}

std::string hiragana_normalize(const std::string& text) {
  if (!japanese_reader_available()) return text;  // upstream without pykakasi
#ifdef CHATTERBOX_HAVE_KAKASI
  const std::u32string cps = to_u32(text);
  std::u32string out;
  size_t i = 0;
  while (i < cps.size()) {
    if (kakasi_feedable(cps[i])) {
      size_t j = i;
      while (j < cps.size() && kakasi_feedable(cps[j])) ++j;
      out += kakasi_stretch(cps.substr(i, j - i));
      i = j;
      continue;
    }
    // Not for kakasi: kept as pykakasi keeps it, except what it drops: its
    // PUA branch, and kanji outside JIS X 0208 (taken as unknown to its
    // dictionary, whose empty reading replaces them).
    if (!pykakasi_drops(cps[i]) && !is_kanji(cps[i])) out += cps[i];
    ++i;
  }
  return nfkd(icu::UnicodeString::fromUTF8(encode_utf8(out)));  // upstream normalises NFKD again
#else
  return text;
#endif
}

// --------------------------------------------------------------- Chinese ----

CangjieTable CangjieTable::from_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw ModelError("Cangjie table '" + path + "' cannot be opened; give the path of Cangjie5_TC.json");
  std::stringstream ss;
  ss << f.rdbuf();
  return from_json_string(ss.str(), path);
}

CangjieTable CangjieTable::from_json_string(const std::string& text, const std::string& name) {
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(text);
  } catch (const std::exception& e) {
    throw ModelError("Cangjie table '" + name + "' is not valid JSON: " + e.what());
  }
  if (!j.is_array())
    throw ModelError("Cangjie table '" + name + "' is not a JSON list of \"glyph\\tcode\" strings (Cangjie5_TC.json)");
  std::map<char32_t, std::string> word2cj;
  std::map<std::string, std::vector<char32_t>> cj2word;
  size_t k = 0;
  for (const auto& e : j) {
    if (!e.is_string())
      throw ModelError("Cangjie table '" + name + "': entry " + std::to_string(k) + " is not a string");
    const std::string s = e.get<std::string>();
    const size_t tab = s.find('\t');
    if (tab == std::string::npos)
      throw ModelError("Cangjie table '" + name + "': entry " + std::to_string(k) + " has no tab (\"glyph\\tcode\")");
    const size_t tab2 = s.find('\t', tab + 1);
    const std::string word = s.substr(0, tab);
    const std::string code = s.substr(tab + 1, tab2 == std::string::npos ? std::string::npos : tab2 - tab - 1);
    ++k;
    const std::u32string w = to_u32(word, "the Cangjie table");
    // Upstream keys by the whole word; only single glyphs are ever looked up.
    if (w.size() != 1) continue;
    word2cj[w[0]] = code;
    cj2word[code].push_back(w[0]);
  }
  CangjieTable t;
  for (const auto& [glyph, code] : word2cj) {
    const auto& words = cj2word[code];
    size_t index = 0;
    while (words[index] != glyph) ++index;
    t.word2cj_[glyph] = {code, index};
  }
  return t;
}

std::string CangjieTable::encode(char32_t glyph) const {
  auto it = word2cj_.find(glyph);
  if (it == word2cj_.end()) return "";
  return it->second.first + (it->second.second > 0 ? std::to_string(it->second.second) : "");
}

std::string cangjie_convert(const std::string& text, const CangjieTable* table) {
  const std::u32string cps = to_u32(text);
  if (!table) return text;
  std::string out;
  for (char32_t c : cps) {
    std::string code;
    if (u_charType(static_cast<UChar32>(c)) == U_OTHER_LETTER) code = table->encode(c);
    if (code.empty()) {
      out += encode_utf8(std::u32string(1, c));
      continue;
    }
    for (char ch : code) out += std::string("[cj_") + ch + "]";
    out += "[cj_.]";
  }
  return out;
}

// ------------------------------------------------------------ tokenizer ----

MtlTokenizer MtlTokenizer::from_files(const std::string& vocab, const std::string& cangjie, int64_t max_id) {
  MtlTokenizer t(EnTokenizer::from_file(vocab, max_id));
  if (!cangjie.empty()) t.cangjie_ = CangjieTable::from_file(cangjie);
  for (const std::string& code : mtl_languages())
    if (t.tok_.token_id("[" + code + "]") < 0)
      throw ModelError("tokenizer '" + vocab + "' has no language token '[" + code +
                       "]'; it is not Chatterbox Multilingual's grapheme_mtl_merged_expanded_v1.json");
  return t;
}

std::string MtlTokenizer::prepare(const std::string& text, const std::string& language) const {
  const std::string lang = ascii_lower(language);
  if (!is_mtl_language(lang))
    throw ModelError("unsupported language '" + language + "'; supported languages: " + mtl_language_list());
  std::string txt = mtl_lower_nfkd(text);
  if (lang == "zh")
    txt = cangjie_convert(txt, cangjie_ ? &*cangjie_ : nullptr);
  else if (lang == "ja")
    txt = hiragana_normalize(txt);
  else if (lang == "ko")
    txt = korean_normalize(txt);
  // he, ru: upstream's optional packages are absent; their fallback is the text.
  txt = "[" + lang + "]" + txt;
  std::string out;
  for (char c : txt) {
    if (c == ' ')
      out += "[SPACE]";
    else
      out += c;
  }
  return out;
}

std::vector<int64_t> MtlTokenizer::encode(const std::string& text, const std::string& language) const {
  return tok_.encode(prepare(text, language));
}

std::string MtlTokenizer::fallback_note(const std::string& language) const {
  const std::string lang = ascii_lower(language);
  if (lang == "ja" && !japanese_reader_available())
    return "Japanese kanji are not converted to hiragana: this build has no libkakasi (upstream's own fallback "
           "when pykakasi is missing); kanji reach the tokenizer as they are";
  if (lang == "zh" && !cangjie_)
    return "no Cangjie5_TC.json beside the tokenizer: Chinese characters are not spelled in Cangjie codes "
           "(upstream's fallback when the table cannot be loaded)";
  if (lang == "zh")
    return "no Chinese word segmentation (spacy-pkuseg upstream; its fallback): no [SPACE] between words";
  if (lang == "he") return "no Hebrew diacritics (dicta-onnx is optional upstream; its fallback)";
  if (lang == "ru") return "no Russian stress marks (russian-text-stresser is optional upstream; its fallback)";
  return "";
}

}  // namespace chatterbox::t3
