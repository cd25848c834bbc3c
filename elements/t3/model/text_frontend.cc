#include "elements/t3/model/text_frontend.h"

#include "gst-plugins/core/checkpoint.h"  // ModelError

#include <nlohmann/json.hpp>
#include <unicode/uchar.h>
#include <unicode/unistr.h>
#include <unicode/locid.h>

#include <algorithm>
#include <fstream>
#include <limits>
#include <sstream>

namespace chatterbox::t3 {

// ---------------------------------------------------------------- UTF-8 ----

std::vector<char32_t> decode_utf8(const std::string& text, const char* what) {
  std::vector<char32_t> out;
  out.reserve(text.size());
  const auto* s = reinterpret_cast<const unsigned char*>(text.data());
  const size_t n = text.size();
  size_t i = 0;
  auto fail = [&](size_t at, const char* why) {
    throw ModelError(std::string("invalid UTF-8 in ") + what + " at byte offset " + std::to_string(at) + " (" + why +
                     "); text must be UTF-8 encoded");
  };
  while (i < n) {
    unsigned char c = s[i];
    if (c < 0x80) {
      out.push_back(c);
      ++i;
      continue;
    }
    int len;
    char32_t cp, min;
    if ((c & 0xE0) == 0xC0) {
      len = 2, cp = c & 0x1F, min = 0x80;
    } else if ((c & 0xF0) == 0xE0) {
      len = 3, cp = c & 0x0F, min = 0x800;
    } else if ((c & 0xF8) == 0xF0) {
      len = 4, cp = c & 0x07, min = 0x10000;
    } else {
      fail(i, (c & 0xC0) == 0x80 ? "unexpected continuation byte" : "invalid lead byte");
    }
    if (i + len > n) fail(i, "truncated sequence");
    for (int k = 1; k < len; ++k) {
      if ((s[i + k] & 0xC0) != 0x80) fail(i + k, "expected a continuation byte");
      cp = (cp << 6) | (s[i + k] & 0x3F);
    }
    if (cp < min) fail(i, "overlong encoding");
    if (cp >= 0xD800 && cp <= 0xDFFF) fail(i, "UTF-16 surrogate");
    if (cp > 0x10FFFF) fail(i, "code point above U+10FFFF");
    out.push_back(cp);
    i += len;
  }
  return out;
}

std::string encode_utf8(const std::u32string& cps) {
  std::string out;
  out.reserve(cps.size());
  for (char32_t c : cps) {
    if (c < 0x80) {
      out += static_cast<char>(c);
    } else if (c < 0x800) {
      out += static_cast<char>(0xC0 | (c >> 6));
      out += static_cast<char>(0x80 | (c & 0x3F));
    } else if (c < 0x10000) {
      out += static_cast<char>(0xE0 | (c >> 12));
      out += static_cast<char>(0x80 | ((c >> 6) & 0x3F));
      out += static_cast<char>(0x80 | (c & 0x3F));
    } else {
      out += static_cast<char>(0xF0 | (c >> 18));
      out += static_cast<char>(0x80 | ((c >> 12) & 0x3F));
      out += static_cast<char>(0x80 | ((c >> 6) & 0x3F));
      out += static_cast<char>(0x80 | (c & 0x3F));
    }
  }
  return out;
}

// Python's str.isspace / str.split() set (Py_UNICODE_ISSPACE: bidi WS, B, S or Zs).
bool py_isspace(char32_t c) {
  return (c >= 0x09 && c <= 0x0D) || (c >= 0x1C && c <= 0x20) || c == 0x85 || c == 0xA0 || c == 0x1680 ||
         (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F || c == 0x205F || c == 0x3000;
}

namespace {

// Python's str.upper() of one code point: full case mapping, no locale
// (ICU's root locale), so "ß" -> "SS" and "ŉ" -> "ʼN".
std::u32string py_upper(char32_t c) {
  icu::UnicodeString u = icu::UnicodeString(static_cast<UChar32>(c));
  u.toUpper(icu::Locale::getRoot());
  std::u32string out;
  for (int32_t i = 0; i < u.length();) {
    UChar32 cp = u.char32At(i);
    out += static_cast<char32_t>(cp);
    i += U16_LENGTH(cp);
  }
  return out;
}

void replace_all(std::string& s, const std::string& from, const std::string& to) {
  std::string out;
  size_t pos = 0;
  while (true) {
    size_t hit = s.find(from, pos);
    if (hit == std::string::npos) break;
    out.append(s, pos, hit - pos);
    out += to;
    pos = hit + from.size();
  }
  out.append(s, pos, std::string::npos);
  s.swap(out);
}

// Oniguruma's Unicode \w (what the tokenizers library's Whitespace
// pre-tokenizer regex \w+|[^\w\s]+ uses): UTS #18 word characters.
bool is_word(char32_t c) {
  if (c < 0x80) return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_';
  UChar32 u = static_cast<UChar32>(c);
  if (u_hasBinaryProperty(u, UCHAR_ALPHABETIC) || u_hasBinaryProperty(u, UCHAR_JOIN_CONTROL)) return true;
  int8_t t = u_charType(u);
  return t == U_NON_SPACING_MARK || t == U_ENCLOSING_MARK || t == U_COMBINING_SPACING_MARK ||
         t == U_DECIMAL_DIGIT_NUMBER || t == U_CONNECTOR_PUNCTUATION;
}
bool is_space(char32_t c) {
  if (c < 0x80) return c == ' ' || (c >= 0x09 && c <= 0x0D);
  return u_isUWhiteSpace(static_cast<UChar32>(c));
}

}  // namespace

// ------------------------------------------------------------- punc_norm ----

namespace {
using Replacement = std::pair<const char*, const char*>;

// The steps both punc_norm versions share, with the version's replacement
// list (applied in order, each once over the whole text).
std::string punc_norm_with(const std::string& text, const Replacement* replace, size_t n_replace,
                           const std::vector<std::string>& enders) {
  std::vector<char32_t> cps = decode_utf8(text);
  if (cps.empty()) return "You need to add some text for me to talk.";

  std::u32string t(cps.begin(), cps.end());
  // Python's str.islower() on one code point is the Unicode Lowercase property.
  if (u_hasBinaryProperty(static_cast<UChar32>(t[0]), UCHAR_LOWERCASE)) t = py_upper(t[0]) + t.substr(1);

  // " ".join(text.split())
  std::u32string joined;
  size_t i = 0;
  while (i < t.size()) {
    while (i < t.size() && py_isspace(t[i])) ++i;
    size_t start = i;
    while (i < t.size() && !py_isspace(t[i])) ++i;
    if (i > start) {
      if (!joined.empty()) joined += U' ';
      joined.append(t, start, i - start);
    }
  }
  std::string s = encode_utf8(joined);
  for (size_t k = 0; k < n_replace; ++k) replace_all(s, replace[k].first, replace[k].second);

  while (!s.empty() && s.back() == ' ') s.pop_back();
  bool ended = false;
  for (const std::string& e : enders)
    ended = ended || (s.size() >= e.size() && s.compare(s.size() - e.size(), e.size(), e) == 0);
  if (!ended) s += ".";
  return s;
}
}  // namespace

namespace {
// tts.py's list (mtl_tts.py has the same); order matters.
const Replacement kReplace[] = {
    {"...", ", "},         {"\u2026", ", "},   {":", ","},       {" - ", ", "},
    {";", ", "},           {"\u2014", "-"},    {"\u2013", "-"},  {" ,", ","},
    {"\u201c", "\""},      {"\u201d", "\""},   {"\u2018", "'"},  {"\u2019", "'"},
};
const std::vector<std::string> kEnders = {".", "!", "?", "-", ","};
}  // namespace

std::string punc_norm(const std::string& text) {
  return punc_norm_with(text, kReplace, sizeof(kReplace) / sizeof(kReplace[0]), kEnders);
}

std::string punc_norm_mtl(const std::string& text) {
  // mtl_tts.py: the same list, and the CJK enders besides.
  static const std::vector<std::string> kMtlEnders = {".", "!", "?", "-", ",", "\u3001", "\uff0c", "\u3002",
                                                      "\uff1f", "\uff01"};
  return punc_norm_with(text, kReplace, sizeof(kReplace) / sizeof(kReplace[0]), kMtlEnders);
}

std::string punc_norm_turbo(const std::string& text) {
  // tts_turbo.py's list; order matters.
  static const Replacement kReplace[] = {
      {"\u2026", ", "}, {":", ","},      {"\u2014", "-"},  {"\u2013", "-"}, {" ,", ","},
      {"\u201c", "\""}, {"\u201d", "\""}, {"\u2018", "'"},  {"\u2019", "'"},
  };
  return punc_norm_with(text, kReplace, sizeof(kReplace) / sizeof(kReplace[0]), kEnders);
}

// ------------------------------------------------------------ tokenizer ----

namespace {
using json = nlohmann::json;

[[noreturn]] void refuse(const std::string& name, const std::string& what) {
  throw ModelError("tokenizer '" + name + "': " + what +
                   "; only the layout of Chatterbox's tokenizer files is supported (BPE or WordLevel model, "
                   "normalizer null, pre_tokenizer Whitespace, post_processor null, special tokens in added_tokens)");
}

bool null_or_empty(const json& j, const char* key) {
  if (!j.contains(key) || j[key].is_null()) return true;
  return j[key].is_string() && j[key].get<std::string>().empty();
}
bool null_or_false(const json& j, const char* key) {
  if (!j.contains(key) || j[key].is_null()) return true;
  return j[key].is_boolean() && !j[key].get<bool>();
}
}  // namespace

EnTokenizer EnTokenizer::from_file(const std::string& path, int64_t max_id) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw ModelError("tokenizer '" + path + "' cannot be opened; give the path of Chatterbox's tokenizer.json");
  std::stringstream ss;
  ss << f.rdbuf();
  return from_json_string(ss.str(), path, max_id);
}

EnTokenizer EnTokenizer::from_json_string(const std::string& text, const std::string& name, int64_t max_id) {
  json j;
  try {
    j = json::parse(text);
  } catch (const std::exception& e) {
    throw ModelError("tokenizer '" + name + "' is not valid JSON: " + e.what());
  }
  if (!j.is_object()) refuse(name, "top level is not a JSON object");
  for (const char* key : {"normalizer", "post_processor", "truncation", "padding"})
    if (j.contains(key) && !j[key].is_null()) refuse(name, std::string("'") + key + "' is not null");
  if (!j.contains("pre_tokenizer") || !j["pre_tokenizer"].is_object() || j["pre_tokenizer"].size() != 1 ||
      j["pre_tokenizer"].value("type", "") != "Whitespace")
    refuse(name, "'pre_tokenizer' is not {\"type\": \"Whitespace\"}");
  if (!j.contains("model") || !j["model"].is_object()) refuse(name, "'model' is missing");
  const json& m = j["model"];
  const std::string type = m.value("type", "");
  // WordLevel: each pre-token is one vocabulary entry (or [UNK]); no merges.
  const bool word_level = type == "WordLevel";
  if (type != "BPE" && !word_level) refuse(name, "'model.type' is neither \"BPE\" nor \"WordLevel\"");
  if (!word_level) {
    if (m.contains("dropout") && !m["dropout"].is_null()) refuse(name, "'model.dropout' is set");
    if (!null_or_empty(m, "continuing_subword_prefix")) refuse(name, "'model.continuing_subword_prefix' is set");
    if (!null_or_empty(m, "end_of_word_suffix")) refuse(name, "'model.end_of_word_suffix' is set");
    if (!null_or_false(m, "fuse_unk")) refuse(name, "'model.fuse_unk' is true");
    if (!null_or_false(m, "byte_fallback")) refuse(name, "'model.byte_fallback' is true");
  }
  if (!m.contains("unk_token") || !m["unk_token"].is_string() || m["unk_token"].get<std::string>() != "[UNK]")
    refuse(name, "'model.unk_token' is not \"[UNK]\"");
  if (!m.contains("vocab") || !m["vocab"].is_object()) refuse(name, "'model.vocab' is missing");
  if (!word_level && (!m.contains("merges") || !m["merges"].is_array())) refuse(name, "'model.merges' is missing");

  EnTokenizer tok;
  tok.name_ = name;
  tok.word_level_ = word_level;
  auto put_id = [&](const std::string& s, const json& v, const char* where) {
    if (!v.is_number_integer()) refuse(name, std::string(where) + " id of '" + s + "' is not an integer");
    int64_t id = v.get<int64_t>();
    if (id < 0 || id >= max_id)
      throw ModelError("tokenizer '" + name + "': token '" + s + "' has id " + std::to_string(id) +
                       ", outside the T3 text vocabulary [0, " + std::to_string(max_id) +
                       "); this tokenizer does not belong to the T3 model");
    if (static_cast<int64_t>(tok.id_to_token_.size()) <= id) tok.id_to_token_.resize(id + 1);
    tok.id_to_token_[id] = s;
    return id;
  };
  for (auto it = m["vocab"].begin(); it != m["vocab"].end(); ++it) {
    decode_utf8(it.key(), "tokenizer vocabulary");
    tok.vocab_[it.key()] = put_id(it.key(), it.value(), "model.vocab");
  }
  if (j.contains("added_tokens") && !j["added_tokens"].is_null()) {
    if (!j["added_tokens"].is_array()) refuse(name, "'added_tokens' is not a list");
    for (const json& a : j["added_tokens"]) {
      if (!a.is_object() || !a.contains("content") || !a["content"].is_string() || !a.contains("id"))
        refuse(name, "an 'added_tokens' entry lacks 'content' or 'id'");
      std::string content = a["content"].get<std::string>();
      for (const char* flag : {"single_word", "lstrip", "rstrip"})
        if (!null_or_false(a, flag)) refuse(name, "added token '" + content + "' has '" + flag + "' set");
      if (content.empty()) refuse(name, "an added token is empty");
      tok.added_.emplace_back(content, put_id(content, a["id"], "added_tokens"));
    }
  }
  auto vocab_id = [&](const std::string& s) -> int64_t {
    auto it = tok.vocab_.find(s);
    return it == tok.vocab_.end() ? -1 : it->second;
  };
  tok.unk_id_ = vocab_id("[UNK]");
  if (tok.unk_id_ < 0) refuse(name, "'[UNK]' is not in 'model.vocab'");
  for (const char* special : {"[START]", "[STOP]"})
    if (tok.token_id(special) < 0) refuse(name, std::string("'") + special + "' is not in the vocabulary");

  int64_t rank = 0;
  static const json kNoMerges = json::array();
  for (const json& mg : word_level ? kNoMerges : m["merges"]) {
    std::string a, b;
    if (mg.is_string()) {  // "a b" (tokenizers < 0.20)
      std::string s = mg.get<std::string>();
      size_t sp = s.find(' ');
      if (sp == std::string::npos || s.find(' ', sp + 1) != std::string::npos)
        refuse(name, "merge '" + s + "' is not of the form \"a b\"");
      a = s.substr(0, sp), b = s.substr(sp + 1);
    } else if (mg.is_array() && mg.size() == 2 && mg[0].is_string() && mg[1].is_string()) {  // ["a", "b"]
      a = mg[0].get<std::string>(), b = mg[1].get<std::string>();
    } else {
      refuse(name, "merge #" + std::to_string(rank) + " is neither \"a b\" nor [\"a\", \"b\"]");
    }
    int64_t ia = vocab_id(a), ib = vocab_id(b), ic = vocab_id(a + b);
    if (ia < 0 || ib < 0 || ic < 0)
      refuse(name, "merge #" + std::to_string(rank) + " ('" + a + "' '" + b + "') uses a token missing from the vocabulary");
    // The first occurrence of a pair wins, as in the tokenizers library.
    tok.merges_.emplace(std::make_pair(ia, ib), std::make_pair(rank, ic));
    ++rank;
  }
  return tok;
}

int64_t EnTokenizer::token_id(const std::string& token) const {
  for (const auto& a : added_)
    if (a.first == token) return a.second;
  auto it = vocab_.find(token);
  return it == vocab_.end() ? -1 : it->second;
}

const std::string& EnTokenizer::token(int64_t id) const {
  if (id < 0 || id >= vocab_size())
    throw ModelError("tokenizer '" + name_ + "': id " + std::to_string(id) + " is outside the vocabulary");
  return id_to_token_[id];
}

// BPE over one pre-token: code points -> ids ([UNK] per unknown code point,
// never merged), then repeatedly merge the adjacent pair of lowest rank,
// leftmost on ties.
void EnTokenizer::bpe(const std::u32string& word, std::vector<int64_t>& out) const {
  if (word_level_) {
    auto it = vocab_.find(encode_utf8(word));
    out.push_back(it == vocab_.end() ? unk_id_ : it->second);
    return;
  }
  struct Sym {
    int64_t id;
    bool unk;
  };
  std::vector<Sym> syms;
  syms.reserve(word.size());
  for (char32_t c : word) {
    auto it = vocab_.find(encode_utf8(std::u32string(1, c)));
    if (it == vocab_.end())
      syms.push_back({unk_id_, true});
    else
      syms.push_back({it->second, false});
  }
  while (syms.size() > 1) {
    int64_t best_rank = std::numeric_limits<int64_t>::max(), best_id = -1;
    size_t best_pos = 0;
    for (size_t k = 0; k + 1 < syms.size(); ++k) {
      if (syms[k].unk || syms[k + 1].unk) continue;
      auto it = merges_.find({syms[k].id, syms[k + 1].id});
      if (it != merges_.end() && it->second.first < best_rank) {
        best_rank = it->second.first, best_id = it->second.second, best_pos = k;
      }
    }
    if (best_id < 0) break;
    syms[best_pos] = {best_id, false};
    syms.erase(syms.begin() + best_pos + 1);
  }
  for (const Sym& s : syms) out.push_back(s.id);
}

std::vector<int64_t> EnTokenizer::encode(const std::string& text) const {
  std::vector<char32_t> cps_v = decode_utf8(text);
  std::string s = encode_utf8(std::u32string(cps_v.begin(), cps_v.end()));
  replace_all(s, " ", "[SPACE]");

  std::vector<int64_t> ids;
  // Pre-tokenize and BPE a stretch of text between added tokens.
  auto plain = [&](const std::string& piece) {
    std::vector<char32_t> cps = decode_utf8(piece);
    size_t i = 0;
    while (i < cps.size()) {
      if (is_space(cps[i])) {
        ++i;
        continue;
      }
      bool word = is_word(cps[i]);
      size_t start = i;
      while (i < cps.size() && !is_space(cps[i]) && is_word(cps[i]) == word) ++i;
      bpe(std::u32string(cps.begin() + start, cps.begin() + i), ids);
    }
  };
  // Added tokens: leftmost match, longest at that position.
  size_t pos = 0;
  while (pos < s.size()) {
    size_t best_at = std::string::npos, best_len = 0;
    int64_t best_id = -1;
    for (const auto& a : added_) {
      size_t hit = s.find(a.first, pos);
      if (hit == std::string::npos) continue;
      if (hit < best_at || (hit == best_at && a.first.size() > best_len))
        best_at = hit, best_len = a.first.size(), best_id = a.second;
    }
    if (best_id < 0) {
      plain(s.substr(pos));
      break;
    }
    if (best_at > pos) plain(s.substr(pos, best_at - pos));
    ids.push_back(best_id);
    pos = best_at + best_len;
  }
  return ids;
}

std::vector<std::string> EnTokenizer::encode_tokens(const std::string& text) const {
  std::vector<std::string> out;
  for (int64_t id : encode(text)) out.push_back(token(id));
  return out;
}

}  // namespace chatterbox::t3
