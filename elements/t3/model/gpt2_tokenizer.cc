#include "elements/t3/model/gpt2_tokenizer.h"

#include "elements/t3/model/text_frontend.h"  // decode_utf8, encode_utf8, punc_norm_turbo
#include "gst-plugins/core/checkpoint.h"      // ModelError

#include <nlohmann/json.hpp>
#include <unicode/uchar.h>

#include <filesystem>
#include <fstream>
#include <limits>
#include <queue>
#include <sstream>

namespace chatterbox::t3 {

namespace {
using json = nlohmann::json;
namespace fs = std::filesystem;

// Far above any real vocabulary (GPT-2: 50257); a hostile file cannot make
// the id table allocate gigabytes.
constexpr int64_t kMaxPlausibleId = int64_t(1) << 24;

[[noreturn]] void refuse(const std::string& name, const std::string& what) {
  throw ModelError("tokenizer '" + name + "': " + what +
                   "; only GPT-2's byte-level BPE layout is supported (BPE model, normalizer null, pre_tokenizer "
                   "ByteLevel without prefix space, no post-processing beyond ByteLevel)");
}

std::string read_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw ModelError("tokenizer file '" + path + "' cannot be opened");
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

json parse_json(const std::string& text, const std::string& name) {
  try {
    return json::parse(text);
  } catch (const std::exception& e) {
    throw ModelError("tokenizer '" + name + "' is not valid JSON: " + e.what());
  }
}

bool null_or_empty(const json& j, const char* key) {
  if (!j.contains(key) || j[key].is_null()) return true;
  return j[key].is_string() && j[key].get<std::string>().empty();
}
bool flag(const json& j, const char* key, bool dflt) {
  if (!j.contains(key) || j[key].is_null()) return dflt;
  return j[key].is_boolean() ? j[key].get<bool>() : dflt;
}

// GPT-2's bytes_to_unicode: the printable bytes map to themselves, the other
// 68 to U+0100 + n in byte order, so every byte is one visible character.
const std::string& byte_char(unsigned char b) {
  static const auto table = [] {
    std::vector<std::string> t(256);
    auto printable = [](int c) { return (c >= '!' && c <= '~') || (c >= 0xA1 && c <= 0xAC) || (c >= 0xAE && c <= 0xFF); };
    int n = 0;
    for (int c = 0; c < 256; ++c)
      t[c] = encode_utf8(std::u32string(1, printable(c) ? static_cast<char32_t>(c) : static_cast<char32_t>(0x100 + n++)));
    return t;
  }();
  return table[b];
}

// The inverse map, code point -> byte (-1 for none).
int char_byte(char32_t c) {
  static const auto inv = [] {
    std::map<char32_t, int> m;
    for (int b = 0; b < 256; ++b) m[decode_utf8(byte_char(static_cast<unsigned char>(b)))[0]] = b;
    return m;
  }();
  auto it = inv.find(c);
  return it == inv.end() ? -1 : it->second;
}

// The classes of GPT-2's pre-tokenizer regex, as Oniguruma (tokenizers) and
// Python's regex module define them: \s is White_Space, \p{L} the letter
// categories, \p{N} the number categories.
bool is_ws(char32_t c) { return u_isUWhiteSpace(static_cast<UChar32>(c)); }
bool is_letter(char32_t c) {
  switch (u_charType(static_cast<UChar32>(c))) {
    case U_UPPERCASE_LETTER: case U_LOWERCASE_LETTER: case U_TITLECASE_LETTER: case U_MODIFIER_LETTER:
    case U_OTHER_LETTER: return true;
    default: return false;
  }
}
bool is_number(char32_t c) {
  switch (u_charType(static_cast<UChar32>(c))) {
    case U_DECIMAL_DIGIT_NUMBER: case U_LETTER_NUMBER: case U_OTHER_NUMBER: return true;
    default: return false;
  }
}
bool is_other(char32_t c) { return !is_ws(c) && !is_letter(c) && !is_number(c); }

// One leftmost match of
//   's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
// at `i` (the regex never fails to match at a position: \s+ or one of the
// ` ?X+` branches always applies). Returns the end of the match.
size_t gpt2_match(const std::vector<char32_t>& s, size_t i) {
  const size_t n = s.size();
  if (s[i] == '\'' && i + 1 < n) {  // contractions, lower case only
    char32_t a = s[i + 1];
    if (a == 's' || a == 't' || a == 'm' || a == 'd') return i + 2;
    if (i + 2 < n) {
      char32_t b = s[i + 2];
      if ((a == 'r' && b == 'e') || (a == 'v' && b == 'e') || (a == 'l' && b == 'l')) return i + 3;
    }
  }
  // ` ?X+` for X = letters, numbers, other: an optional ASCII space, then a run.
  for (bool (*cls)(char32_t) : {is_letter, is_number, is_other}) {
    size_t j = i;
    if (s[j] == ' ' && j + 1 < n && cls(s[j + 1])) ++j;
    if (!cls(s[j])) continue;
    while (j < n && cls(s[j])) ++j;
    return j;
  }
  // Whitespace run [i, j): \s+(?!\S) backs off one character when a
  // non-space follows (that space then prefixes the next word); a single
  // whitespace character before a non-space falls to \s+.
  size_t j = i;
  while (j < n && is_ws(s[j])) ++j;
  if (j == n || j - i == 1) return j;
  return j - 1;
}
}  // namespace

// ---------------------------------------------------------------- loading ----

void Gpt2Tokenizer::add_token(const AddedToken& a) {
  if (a.content.empty()) refuse(name_, "an added token is empty");
  decode_utf8(a.content, "an added token");
  for (const auto& b : added_)
    if (b.content == a.content) {
      if (b.id != a.id)
        refuse(name_, "added token '" + a.content + "' has two ids (" + std::to_string(b.id) + " and " +
                          std::to_string(a.id) + ")");
      return;
    }
  if (a.id < 0 || a.id >= kMaxPlausibleId)
    refuse(name_, "added token '" + a.content + "' has the implausible id " + std::to_string(a.id));
  added_.push_back(a);
}

void Gpt2Tokenizer::finish(int64_t max_id) {
  for (const auto& a : added_) {
    if (static_cast<int64_t>(id_to_token_.size()) <= a.id) id_to_token_.resize(a.id + 1);
    id_to_token_[a.id] = a.content;
  }
  if (max_id > 0 && static_cast<int64_t>(id_to_token_.size()) > max_id)
    throw ModelError("tokenizer '" + name_ + "': token '" + id_to_token_.back() + "' has id " +
                     std::to_string(id_to_token_.size() - 1) + ", outside the T3 text vocabulary [0, " +
                     std::to_string(max_id) + "); this tokenizer does not belong to the model");
  // Byte-level BPE can encode any text only if every byte has its token.
  for (int b = 0; b < 256; ++b) {
    auto it = vocab_.find(byte_char(static_cast<unsigned char>(b)));
    if (it == vocab_.end())
      refuse(name_, "the vocabulary lacks the byte token '" + byte_char(static_cast<unsigned char>(b)) + "' (byte " +
                        std::to_string(b) + ")");
    byte_id_[b] = it->second;
  }
}

namespace {
// Adds the model vocabulary, checking ids.
void read_vocab(const json& v, const std::string& name, std::map<std::string, int64_t>& vocab,
                std::vector<std::string>& id_to_token) {
  if (!v.is_object()) refuse(name, "the vocabulary is not a JSON object");
  for (auto it = v.begin(); it != v.end(); ++it) {
    if (!it.value().is_number_integer() || it.value().get<int64_t>() < 0 ||
        it.value().get<int64_t>() >= kMaxPlausibleId)
      refuse(name, "the id of '" + it.key() + "' is not an integer in [0, 2^24)");
    decode_utf8(it.key(), "the tokenizer vocabulary");
    const int64_t id = it.value().get<int64_t>();
    vocab[it.key()] = id;
    if (static_cast<int64_t>(id_to_token.size()) <= id) id_to_token.resize(id + 1);
    id_to_token[id] = it.key();
  }
}

// (rank-ordered) merge list -> map; the merged token must be in the vocabulary.
void read_merges(const std::vector<std::pair<std::string, std::string>>& pairs, const std::string& name,
                 const std::map<std::string, int64_t>& vocab,
                 std::map<std::pair<int64_t, int64_t>, std::pair<int64_t, int64_t>>& merges) {
  auto id_of = [&](const std::string& s) -> int64_t {
    auto it = vocab.find(s);
    return it == vocab.end() ? -1 : it->second;
  };
  int64_t rank = 0;
  for (const auto& [a, b] : pairs) {
    int64_t ia = id_of(a), ib = id_of(b), ic = id_of(a + b);
    if (ia < 0 || ib < 0 || ic < 0)
      refuse(name, "merge #" + std::to_string(rank) + " ('" + a + "' '" + b + "') uses a token missing from the vocabulary");
    merges.emplace(std::make_pair(ia, ib), std::make_pair(rank, ic));  // the first occurrence wins, as in tokenizers
    ++rank;
  }
}

int64_t max_length_of(const std::string& config_json, const std::string& name) {
  if (config_json.empty()) return 0;
  json c = parse_json(config_json, name);
  if (!c.is_object() || !c.contains("model_max_length") || !c["model_max_length"].is_number()) return 0;
  // transformers writes 1e30 (VERY_LARGE_INTEGER) for "no limit".
  double v = c["model_max_length"].get<double>();
  if (!(v >= 1) || v > 1e15) return 0;
  return static_cast<int64_t>(v);
}
}  // namespace

Gpt2Tokenizer Gpt2Tokenizer::from_tokenizer_json(const std::string& text, const std::string& name, int64_t max_id) {
  json j = parse_json(text, name);
  if (!j.is_object()) refuse(name, "top level is not a JSON object");
  if (j.contains("normalizer") && !j["normalizer"].is_null()) refuse(name, "'normalizer' is not null");
  for (const char* key : {"truncation", "padding"})
    if (j.contains(key) && !j[key].is_null()) refuse(name, std::string("'") + key + "' is not null");
  const json* pre = j.contains("pre_tokenizer") ? &j["pre_tokenizer"] : nullptr;
  if (!pre || !pre->is_object() || pre->value("type", "") != "ByteLevel")
    refuse(name, "'pre_tokenizer' is not of type ByteLevel");
  if (flag(*pre, "add_prefix_space", false)) refuse(name, "'pre_tokenizer.add_prefix_space' is true");
  if (!flag(*pre, "use_regex", true)) refuse(name, "'pre_tokenizer.use_regex' is false");
  if (j.contains("post_processor") && !j["post_processor"].is_null() &&
      j["post_processor"].value("type", "") != "ByteLevel")
    refuse(name, "'post_processor' is neither null nor ByteLevel (it would add tokens)");
  if (!j.contains("model") || !j["model"].is_object()) refuse(name, "'model' is missing");
  const json& m = j["model"];
  if (m.value("type", "BPE") != "BPE") refuse(name, "'model.type' is not \"BPE\"");
  if (m.contains("dropout") && !m["dropout"].is_null()) refuse(name, "'model.dropout' is set");
  if (!null_or_empty(m, "continuing_subword_prefix")) refuse(name, "'model.continuing_subword_prefix' is set");
  if (!null_or_empty(m, "end_of_word_suffix")) refuse(name, "'model.end_of_word_suffix' is set");
  if (flag(m, "byte_fallback", false)) refuse(name, "'model.byte_fallback' is true");
  if (!m.contains("vocab")) refuse(name, "'model.vocab' is missing");
  if (!m.contains("merges") || !m["merges"].is_array()) refuse(name, "'model.merges' is missing");

  Gpt2Tokenizer tok;
  tok.name_ = name;
  tok.ignore_merges_ = flag(m, "ignore_merges", false);
  read_vocab(m["vocab"], name, tok.vocab_, tok.id_to_token_);
  std::vector<std::pair<std::string, std::string>> pairs;
  for (const json& mg : m["merges"]) {
    if (mg.is_string()) {  // "a b" (tokenizers < 0.20)
      std::string s = mg.get<std::string>();
      size_t sp = s.find(' ');
      if (sp == std::string::npos || s.find(' ', sp + 1) != std::string::npos)
        refuse(name, "merge '" + s + "' is not of the form \"a b\"");
      pairs.emplace_back(s.substr(0, sp), s.substr(sp + 1));
    } else if (mg.is_array() && mg.size() == 2 && mg[0].is_string() && mg[1].is_string()) {  // ["a", "b"]
      pairs.emplace_back(mg[0].get<std::string>(), mg[1].get<std::string>());
    } else {
      refuse(name, "merge #" + std::to_string(pairs.size()) + " is neither \"a b\" nor [\"a\", \"b\"]");
    }
  }
  read_merges(pairs, name, tok.vocab_, tok.merges_);
  if (j.contains("added_tokens") && !j["added_tokens"].is_null()) {
    if (!j["added_tokens"].is_array()) refuse(name, "'added_tokens' is not a list");
    for (const json& a : j["added_tokens"]) {
      if (!a.is_object() || !a.contains("content") || !a["content"].is_string() || !a.contains("id") ||
          !a["id"].is_number_integer())
        refuse(name, "an 'added_tokens' entry lacks 'content' or an integer 'id'");
      AddedToken t{a["content"].get<std::string>(), a["id"].get<int64_t>(), flag(a, "lstrip", false),
                   flag(a, "rstrip", false), flag(a, "normalized", true)};
      if (flag(a, "single_word", false)) refuse(name, "added token '" + t.content + "' has 'single_word' set");
      tok.add_token(t);
    }
  }
  tok.finish(max_id);
  return tok;
}

Gpt2Tokenizer Gpt2Tokenizer::from_vocab_merges(const std::string& vocab_json, const std::string& merges_txt,
                                               const std::string& added_tokens_json,
                                               const std::string& special_tokens_map_json,
                                               const std::string& tokenizer_config_json, const std::string& name,
                                               int64_t max_id) {
  Gpt2Tokenizer tok;
  tok.name_ = name;
  read_vocab(parse_json(vocab_json, name + "/vocab.json"), name + "/vocab.json", tok.vocab_, tok.id_to_token_);
  // merges.txt: an optional "#version" header, then one "a b" per line.
  std::vector<std::pair<std::string, std::string>> pairs;
  std::istringstream lines(merges_txt);
  std::string line;
  for (size_t no = 1; std::getline(lines, line); ++no) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.empty() || (no == 1 && line.rfind("#version", 0) == 0)) continue;
    size_t sp = line.find(' ');
    if (sp == std::string::npos || sp == 0 || line.find(' ', sp + 1) != std::string::npos)
      refuse(name + "/merges.txt", "line " + std::to_string(no) + " is not of the form \"a b\"");
    pairs.emplace_back(line.substr(0, sp), line.substr(sp + 1));
  }
  read_merges(pairs, name + "/merges.txt", tok.vocab_, tok.merges_);

  // tokenizer_config.json's added_tokens_decoder (transformers >= 4.34) has
  // each added token's flags; added_tokens.json (legacy) only content -> id,
  // which transformers adds with no stripping.
  if (!tokenizer_config_json.empty()) {
    json c = parse_json(tokenizer_config_json, name + "/tokenizer_config.json");
    if (c.is_object() && c.contains("added_tokens_decoder") && c["added_tokens_decoder"].is_object()) {
      for (auto it = c["added_tokens_decoder"].begin(); it != c["added_tokens_decoder"].end(); ++it) {
        const json& a = it.value();
        int64_t id;
        try {
          id = std::stoll(it.key());
        } catch (const std::exception&) {
          refuse(name + "/tokenizer_config.json", "added_tokens_decoder key '" + it.key() + "' is not an id");
        }
        if (!a.is_object() || !a.contains("content") || !a["content"].is_string())
          refuse(name + "/tokenizer_config.json", "added_tokens_decoder entry " + it.key() + " lacks 'content'");
        if (flag(a, "single_word", false))
          refuse(name + "/tokenizer_config.json", "added token '" + a["content"].get<std::string>() + "' has 'single_word' set");
        tok.add_token({a["content"].get<std::string>(), id, flag(a, "lstrip", false), flag(a, "rstrip", false),
                       flag(a, "normalized", true)});
      }
    }
    tok.model_max_length_ = max_length_of(tokenizer_config_json, name + "/tokenizer_config.json");
  }
  if (!added_tokens_json.empty()) {
    json a = parse_json(added_tokens_json, name + "/added_tokens.json");
    if (!a.is_object()) refuse(name + "/added_tokens.json", "not a JSON object of token -> id");
    for (auto it = a.begin(); it != a.end(); ++it) {
      if (!it.value().is_number_integer()) refuse(name + "/added_tokens.json", "the id of '" + it.key() + "' is not an integer");
      tok.add_token({it.key(), it.value().get<int64_t>()});
    }
  }
  // The special tokens (bos/eos/unk: "<|endoftext|>") are split out before
  // BPE too; they live in vocab.json.
  if (!special_tokens_map_json.empty()) {
    json s = parse_json(special_tokens_map_json, name + "/special_tokens_map.json");
    if (s.is_object())
      for (auto it = s.begin(); it != s.end(); ++it) {
        const json& v = it.value();
        std::string content = v.is_string() ? v.get<std::string>()
                              : (v.is_object() && v.contains("content") && v["content"].is_string())
                                  ? v["content"].get<std::string>()
                                  : std::string();
        if (content.empty()) continue;  // lists (additional_special_tokens) are in added_tokens.json
        auto in_vocab = tok.vocab_.find(content);
        if (in_vocab == tok.vocab_.end() && tok.token_id(content) < 0)
          refuse(name + "/special_tokens_map.json", "special token '" + content + "' is in neither vocab.json nor added_tokens.json");
        if (in_vocab != tok.vocab_.end()) tok.add_token({content, in_vocab->second});
      }
  }
  tok.finish(max_id);
  return tok;
}

bool Gpt2Tokenizer::dir_has_tokenizer(const std::string& dir) {
  std::error_code ec;
  return fs::is_regular_file(fs::path(dir) / "tokenizer.json", ec) ||
         (fs::is_regular_file(fs::path(dir) / "vocab.json", ec) && fs::is_regular_file(fs::path(dir) / "merges.txt", ec));
}

Gpt2Tokenizer Gpt2Tokenizer::from_path(const std::string& path, int64_t max_id) {
  std::error_code ec;
  const fs::path p(path);
  auto optional = [&](const fs::path& f) { return fs::is_regular_file(f, ec) ? read_file(f.string()) : std::string(); };
  if (fs::is_directory(p, ec)) {
    if (fs::is_regular_file(p / "tokenizer.json", ec)) {
      Gpt2Tokenizer t = from_tokenizer_json(read_file((p / "tokenizer.json").string()), (p / "tokenizer.json").string(), max_id);
      t.model_max_length_ = max_length_of(optional(p / "tokenizer_config.json"), (p / "tokenizer_config.json").string());
      return t;
    }
    std::vector<std::string> missing;
    for (const char* f : {"vocab.json", "merges.txt"})
      if (!fs::is_regular_file(p / f, ec)) missing.push_back(f);
    if (!missing.empty())
      throw ModelError("tokenizer directory '" + path + "' holds neither tokenizer.json nor vocab.json + merges.txt (" +
                       (missing.size() == 2 ? std::string("both missing") : missing[0] + " is missing") + ")");
    return from_vocab_merges(read_file((p / "vocab.json").string()), read_file((p / "merges.txt").string()),
                             optional(p / "added_tokens.json"), optional(p / "special_tokens_map.json"),
                             optional(p / "tokenizer_config.json"), path, max_id);
  }
  if (!fs::is_regular_file(p, ec))
    throw ModelError("tokenizer '" + path + "' does not exist; give tokenizer.json or the directory holding the tokenizer");
  Gpt2Tokenizer t = from_tokenizer_json(read_file(path), path, max_id);
  t.model_max_length_ = max_length_of(optional(p.parent_path() / "tokenizer_config.json"),
                                      (p.parent_path() / "tokenizer_config.json").string());
  return t;
}

// --------------------------------------------------------------- encoding ----

int64_t Gpt2Tokenizer::token_id(const std::string& token) const {
  for (const auto& a : added_)
    if (a.content == token) return a.id;
  auto it = vocab_.find(token);
  return it == vocab_.end() ? -1 : it->second;
}

const std::string& Gpt2Tokenizer::token(int64_t id) const {
  if (id < 0 || id >= vocab_size())
    throw ModelError("tokenizer '" + name_ + "': id " + std::to_string(id) + " is outside the vocabulary");
  return id_to_token_[id];
}

// BPE over one pre-token (already mapped to byte characters): repeatedly
// merge the adjacent pair of lowest rank, leftmost on ties. As in the
// tokenizers library, a heap of candidate pairs over a linked list of
// symbols keeps a long word (a CJK sentence is one pre-token) at n log n.
void Gpt2Tokenizer::bpe(const std::string& chars, std::vector<int64_t>& out) const {
  if (ignore_merges_) {
    auto whole = vocab_.find(chars);
    if (whole != vocab_.end()) {
      out.push_back(whole->second);
      return;
    }
  }
  struct Sym {
    int64_t id;
    int64_t prev, next;  // -1: none
  };
  std::vector<Sym> syms;
  for (char32_t c : decode_utf8(chars)) {
    const int64_t i = static_cast<int64_t>(syms.size());
    syms.push_back({byte_id_[char_byte(c)], i - 1, -1});
    if (i > 0) syms[i - 1].next = i;
  }
  struct Cand {
    int64_t rank, pos, left, right, merged;
    bool operator>(const Cand& o) const { return rank != o.rank ? rank > o.rank : pos > o.pos; }
  };
  std::priority_queue<Cand, std::vector<Cand>, std::greater<Cand>> heap;
  auto offer = [&](int64_t l) {
    if (l < 0 || syms[l].next < 0) return;
    auto it = merges_.find({syms[l].id, syms[syms[l].next].id});
    if (it != merges_.end()) heap.push({it->second.first, l, syms[l].id, syms[syms[l].next].id, it->second.second});
  };
  for (int64_t k = 0; k + 1 < static_cast<int64_t>(syms.size()); ++k) offer(k);
  std::vector<bool> dead(syms.size(), false);
  while (!heap.empty()) {
    const Cand c = heap.top();
    heap.pop();
    // Stale: a neighbour merged since this pair was offered.
    if (dead[c.pos] || syms[c.pos].id != c.left) continue;
    const int64_t r = syms[c.pos].next;
    if (r < 0 || syms[r].id != c.right) continue;
    syms[c.pos].id = c.merged;
    dead[r] = true;
    syms[c.pos].next = syms[r].next;
    if (syms[r].next >= 0) syms[syms[r].next].prev = c.pos;
    offer(syms[c.pos].prev);
    offer(c.pos);
  }
  for (int64_t k = syms.empty() ? -1 : 0; k >= 0; k = syms[k].next) out.push_back(syms[k].id);
}

// A stretch of text without added tokens: pre-tokenizer regex, bytes, BPE.
void Gpt2Tokenizer::encode_plain(const std::string& piece, std::vector<int64_t>& out) const {
  const std::vector<char32_t> cps = decode_utf8(piece);
  for (size_t i = 0; i < cps.size();) {
    const size_t j = gpt2_match(cps, i);
    std::string chars;
    for (unsigned char b : encode_utf8(std::u32string(cps.begin() + i, cps.begin() + j))) chars += byte_char(b);
    bpe(chars, out);
    i = j;
  }
}

std::vector<int64_t> Gpt2Tokenizer::encode(const std::string& text) const {
  decode_utf8(text);  // refuses invalid UTF-8 with the offset
  // tokenizers splits in two passes: the non-normalized added tokens on the
  // raw text, then the normalized ones on what is left. Each pass takes the
  // leftmost match, the longest at that position; lstrip/rstrip extend it
  // over adjacent whitespace.
  struct Piece {
    std::string text;
    int64_t id;  // -1: plain text
  };
  std::vector<Piece> pieces{{text, -1}};
  for (bool normalized_pass : {false, true}) {
    std::vector<Piece> next;
    for (const Piece& pc : pieces) {
      if (pc.id >= 0) {
        next.push_back(pc);
        continue;
      }
      const std::string& s = pc.text;
      size_t pos = 0;
      // Each token's next occurrence at or after pos, searched again only
      // once pos has passed it: linear in the text per token.
      std::vector<size_t> next_hit(added_.size(), 0);
      std::vector<bool> searched(added_.size(), false);
      while (pos < s.size()) {
        size_t at = std::string::npos, len = 0;
        const AddedToken* best = nullptr;
        for (size_t t = 0; t < added_.size(); ++t) {
          const AddedToken& a = added_[t];
          if (a.normalized != normalized_pass) continue;
          if (!searched[t] || (next_hit[t] != std::string::npos && next_hit[t] < pos)) {
            next_hit[t] = s.find(a.content, pos);
            searched[t] = true;
          }
          const size_t hit = next_hit[t];
          if (hit != std::string::npos && (hit < at || (hit == at && a.content.size() > len)))
            at = hit, len = a.content.size(), best = &a;
        }
        if (!best) break;
        size_t b = at, e = at + len;
        auto ws_before = [&](size_t k) {  // the code point ending at byte k, if whitespace: its start
          size_t st = k - 1;
          while (st > pos && (static_cast<unsigned char>(s[st]) & 0xC0) == 0x80) --st;
          std::vector<char32_t> c = decode_utf8(s.substr(st, k - st));
          return c.size() == 1 && is_ws(c[0]) ? st : std::string::npos;
        };
        if (best->lstrip)
          while (b > pos) {
            size_t st = ws_before(b);
            if (st == std::string::npos) break;
            b = st;
          }
        if (best->rstrip)
          while (e < s.size()) {
            size_t len8 = 1;
            unsigned char c0 = static_cast<unsigned char>(s[e]);
            if (c0 >= 0xF0) len8 = 4; else if (c0 >= 0xE0) len8 = 3; else if (c0 >= 0xC0) len8 = 2;
            std::vector<char32_t> c = decode_utf8(s.substr(e, len8));
            if (c.size() != 1 || !is_ws(c[0])) break;
            e += len8;
          }
        if (b > pos) next.push_back({s.substr(pos, b - pos), -1});
        next.push_back({best->content, best->id});
        pos = e;
      }
      if (pos < s.size()) next.push_back({s.substr(pos), -1});
    }
    pieces.swap(next);
  }
  std::vector<int64_t> ids;
  for (const Piece& pc : pieces) {
    if (pc.id >= 0)
      ids.push_back(pc.id);
    else
      encode_plain(pc.text, ids);
  }
  return ids;
}

std::vector<std::string> Gpt2Tokenizer::encode_tokens(const std::string& text) const {
  std::vector<std::string> out;
  for (int64_t id : encode(text)) out.push_back(token(id));
  return out;
}

std::string Gpt2Tokenizer::decode(const std::vector<int64_t>& ids) const {
  std::string out;
  for (int64_t id : ids) {
    const std::string& t = token(id);
    bool added = false;
    for (const auto& a : added_) added = added || (a.id == id);
    if (added) {
      out += t;
      continue;
    }
    for (char32_t c : decode_utf8(t)) {
      int b = char_byte(c);
      if (b < 0) throw ModelError("tokenizer '" + name_ + "': token " + std::to_string(id) + " is not byte-level");
      out += static_cast<char>(b);
    }
  }
  return out;
}

std::vector<int64_t> Gpt2Tokenizer::text_to_ids(const std::string& raw_text) const {
  std::vector<int64_t> ids = encode(punc_norm_turbo(raw_text));
  if (model_max_length_ > 0 && static_cast<int64_t>(ids.size()) > model_max_length_) ids.resize(model_max_length_);
  return ids;
}

}  // namespace chatterbox::t3
