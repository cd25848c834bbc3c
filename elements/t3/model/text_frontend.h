// English text front end of Chatterbox: punc_norm (tts.py) and EnTokenizer
// (tokenizers/tokenizer.py) over a Hugging Face tokenizer.json of the BPE kind.
// No LibTorch and no GStreamer here.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace chatterbox::t3 {

// Throws chatterbox::ModelError ("invalid UTF-8 at byte offset N ...") when
// `text` is not well-formed UTF-8 (overlongs, surrogates and values above
// U+10FFFF included).
std::vector<char32_t> decode_utf8(const std::string& text, const char* what = "text");
std::string encode_utf8(const std::u32string& cps);

// The reference punc_norm: capitalise the first code point (Python's
// str.islower/str.upper, full case mapping), collapse Unicode whitespace as
// " ".join(text.split()), the fixed replacement list in order, rstrip(" "),
// append "." unless the text ends in . ! ? - ,  Empty input gives the
// reference's fixed sentence.
std::string punc_norm(const std::string& text);
// Chatterbox-Turbo's punc_norm (tts_turbo.py): the same steps with a shorter
// list (no "...", " - " or ";" rules): … -> ", " (after the space collapse),
// : -> ",", em/en dash -> "-", " ," -> ",", smart quotes -> ASCII.
std::string punc_norm_turbo(const std::string& text);
// Chatterbox Multilingual's punc_norm (mtl_tts.py): punc_norm's steps and
// list, with the CJK sentence enders 、，。？！ besides . ! ? - ,
std::string punc_norm_mtl(const std::string& text);

// Python's str.isspace() (what str.split() and str.strip() use).
bool py_isspace(char32_t c);

// The start/stop text tokens T3 wraps around the ids (T3Config, not looked up
// in the tokenizer).
constexpr int64_t kStartTextToken = 255;
constexpr int64_t kStopTextToken = 0;
// Rows of the English text embedding table: every id must be below this.
constexpr int64_t kEnglishTextVocab = 704;

// EnTokenizer over tokenizer.json (also the tokenizers part of the
// multilingual MTLTokenizer, mtl_tokenizer.h). Only the structure
// Chatterbox's files are known/assumed to have is implemented (BPE model, or
// WordLevel, no normaliser,
// Whitespace pre-tokenizer, no post-processor, special tokens as added
// tokens); any other structure is refused with a ModelError naming the field,
// rather than tokenized differently from the reference.
class EnTokenizer {
 public:
  // `max_id`: ids must be below it (the T3 text vocabulary); a file with a
  // larger id is refused at load.
  static EnTokenizer from_file(const std::string& path, int64_t max_id = kEnglishTextVocab);
  static EnTokenizer from_json_string(const std::string& json, const std::string& name = "tokenizer.json",
                                      int64_t max_id = kEnglishTextVocab);

  // EnTokenizer.encode: " " -> "[SPACE]", then added tokens, Whitespace
  // pre-tokenization, BPE. No punc_norm, no 255/0 padding.
  std::vector<int64_t> encode(const std::string& text) const;
  // Tokens as strings (for tests and debugging), same segmentation as encode.
  std::vector<std::string> encode_tokens(const std::string& text) const;
  // punc_norm + encode: what ChatterboxTTS.generate feeds T3 (before padding).
  std::vector<int64_t> text_to_ids(const std::string& raw_text) const { return encode(punc_norm(raw_text)); }

  int64_t token_id(const std::string& token) const;  // -1 if absent
  const std::string& token(int64_t id) const;
  int64_t vocab_size() const { return static_cast<int64_t>(id_to_token_.size()); }

 private:
  EnTokenizer() = default;
  void bpe(const std::u32string& word, std::vector<int64_t>& out) const;

  std::map<std::string, int64_t> vocab_;          // model.vocab
  std::vector<std::string> id_to_token_;          // by id (model vocab and added tokens)
  std::vector<std::pair<std::string, int64_t>> added_;  // added tokens, content -> id
  // merges: (left id, right id) -> (rank, merged id)
  std::map<std::pair<int64_t, int64_t>, std::pair<int64_t, int64_t>> merges_;
  int64_t unk_id_ = -1;
  bool word_level_ = false;  // model.type WordLevel: whole pre-tokens, no merges
  std::string name_;
};

}  // namespace chatterbox::t3
