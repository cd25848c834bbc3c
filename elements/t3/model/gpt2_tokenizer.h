// Text front end of Chatterbox-Turbo and -Nano: GPT-2's byte-level BPE with
// added tokens (the paralinguistic tags "[laugh]", "[clear throat]", ...), as
// the Hugging Face tokenizers library runs it, read from either layout a
// model directory may hold:
//   - tokenizer.json (the `tokenizers` layout), or
//   - vocab.json + merges.txt (+ added_tokens.json, special_tokens_map.json,
//     tokenizer_config.json): GPT2Tokenizer's layout, which AutoTokenizer
//     converts to the same fast tokenizer.
// Both give identical ids. No LibTorch and no GStreamer here.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

namespace chatterbox::t3 {

class Gpt2Tokenizer {
 public:
  // A tokenizer.json file, or a directory holding tokenizer.json (preferred,
  // as AutoTokenizer prefers it) or vocab.json + merges.txt. A
  // tokenizer_config.json in the same directory supplies model_max_length.
  // `max_id` (> 0): every id must be below it (the T3 text vocabulary); a
  // tokenizer with a larger id is refused at load. ModelError names the file
  // and the field on anything outside the GPT-2 byte-level layout.
  static Gpt2Tokenizer from_path(const std::string& path, int64_t max_id = -1);
  static Gpt2Tokenizer from_tokenizer_json(const std::string& json_text, const std::string& name = "tokenizer.json",
                                           int64_t max_id = -1);
  // The slow layout's file contents; empty strings for absent optional files.
  static Gpt2Tokenizer from_vocab_merges(const std::string& vocab_json, const std::string& merges_txt,
                                         const std::string& added_tokens_json,
                                         const std::string& special_tokens_map_json,
                                         const std::string& tokenizer_config_json, const std::string& name,
                                         int64_t max_id = -1);
  // Whether `dir` holds a tokenizer this class reads (either layout).
  static bool dir_has_tokenizer(const std::string& dir);

  // The ids tokenizer(text).input_ids gives: added tokens first (leftmost,
  // longest), then GPT-2's pre-tokenizer regex and BPE on each remaining
  // piece. No BOS/EOS, no truncation, no punc_norm.
  std::vector<int64_t> encode(const std::string& text) const;
  // The byte-level token strings of encode() ("Ġw", "[laugh]", ...).
  std::vector<std::string> encode_tokens(const std::string& text) const;
  // Inverse of encode for any ids: token strings joined, byte characters
  // mapped back to bytes (added tokens verbatim). Not necessarily valid UTF-8.
  std::string decode(const std::vector<int64_t>& ids) const;
  // What ChatterboxTurboTTS.generate feeds T3: punc_norm_turbo, encode, cut
  // to model_max_length when the tokenizer has one (truncation=True).
  std::vector<int64_t> text_to_ids(const std::string& raw_text) const;

  int64_t token_id(const std::string& token) const;  // -1 if absent
  const std::string& token(int64_t id) const;
  int64_t vocab_size() const { return static_cast<int64_t>(id_to_token_.size()); }
  // tokenizer_config.json's model_max_length; 0 when there is none (no cut).
  int64_t model_max_length() const { return model_max_length_; }
  const std::string& name() const { return name_; }

  struct AddedToken {
    std::string content;
    int64_t id;
    bool lstrip = false, rstrip = false;  // absorb whitespace on that side into the token
    bool normalized = true;  // no normaliser here; decides only which split pass matches it
  };

 private:
  Gpt2Tokenizer() = default;
  void add_token(const AddedToken& a);
  void finish(int64_t max_id);  // checks shared by both layouts
  void bpe(const std::string& byte_chars, std::vector<int64_t>& out) const;
  void encode_plain(const std::string& piece, std::vector<int64_t>& out) const;

  std::map<std::string, int64_t> vocab_;  // model vocab: byte-level string -> id
  std::vector<std::string> id_to_token_;  // by id (model vocab and added tokens)
  std::vector<AddedToken> added_;
  // (left id, right id) -> (rank, merged id)
  std::map<std::pair<int64_t, int64_t>, std::pair<int64_t, int64_t>> merges_;
  int64_t byte_id_[256] = {};  // id of each byte's token
  bool ignore_merges_ = false;  // tokenizers' BPE.ignore_merges: a word in the vocab is one token
  int64_t model_max_length_ = 0;
  std::string name_;
};

}  // namespace chatterbox::t3
