// Chatterbox Multilingual's text front end (mtl_tts.py punc_norm,
// models/tokenizers/tokenizer.py MTLTokenizer, upstream 5de7a54): lower-case,
// NFKD, the per-language step, the "[xx]" language token, " " -> "[SPACE]",
// then the tokenizers-file encode of text_frontend.h. No LibTorch and no
// GStreamer here.
//
// Per-language steps, as upstream (each differs from a full upstream install
// only where said):
//   ko  Hangul syllables -> conjoining jamo, then strip (upstream's own code;
//       after NFKD no syllable is left, so only the strip acts).
//   ja  kanji -> hiragana as pykakasi's convert + upstream's hiragana_normalize
//       (a phrase's reading replaces it, " " before a reading starting with
//       は or へ, NFKD again), the readings from libkakasi (Debian's kakasi:
//       the dictionary pykakasi's is built from; words where pykakasi's added
//       UniDic entries or its longest match choose otherwise differ: see
//       tests/t3/mtl/README.md). Built without libkakasi: upstream's own
//       fallback when pykakasi is missing, the text unchanged (and
//       japanese_reader_available() is false so callers can warn).
//   zh  each "Lo" character with a Cangjie code becomes [cj_x]... plus the
//       homograph index and [cj_.], from Cangjie5_TC.json. Word segmentation
//       (spacy-pkuseg upstream) is not done: upstream's own fallback when
//       pkuseg is missing. Its effect on the ids: pkuseg joins the words it
//       finds with " ", i.e. a [SPACE] token between Chinese words, which this
//       front end (like upstream without pkuseg) does not emit.
//   he  no diacritics (dicta-onnx is optional upstream; its fallback).
//   ru  no stress marks (russian-text-stresser is optional upstream; its fallback).
#pragma once

#include "elements/t3/model/text_frontend.h"

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace chatterbox::t3 {

// Rows of the multilingual text embedding table (T3Config.multilingual()).
constexpr int64_t kMultilingualTextVocab = 2454;

// The 23 language codes of SUPPORTED_LANGUAGES, in upstream's order.
const std::vector<std::string>& mtl_languages();
bool is_mtl_language(const std::string& code);
std::string mtl_language_list();  // "ar, da, de, ..."
// English name of a code ("French"); "" when unknown.
const char* mtl_language_name(const std::string& code);

// Whether this build reads Japanese kanji (libkakasi was found at build time
// and its dictionary loads).
bool japanese_reader_available();

// ChineseCangjieConverter's table: Cangjie5_TC.json, a JSON list of
// "glyph\tcode[\t...]" strings. word2cj keeps a glyph's last code; the
// homograph index is the glyph's first position among the glyphs of that
// code, in file order.
class CangjieTable {
 public:
  static CangjieTable from_file(const std::string& path);
  static CangjieTable from_json_string(const std::string& json, const std::string& name = "Cangjie5_TC.json");
  // _cangjie_encode: code + index (index omitted when 0); "" when absent.
  std::string encode(char32_t glyph) const;
  size_t size() const { return word2cj_.size(); }

 private:
  std::map<char32_t, std::pair<std::string, size_t>> word2cj_;  // glyph -> (code, index)
};

// The steps, exposed for tests. Input and output are UTF-8.
std::string mtl_lower_nfkd(const std::string& text);                 // str.lower() then NFKD
std::string korean_normalize(const std::string& text);                // decompose syllables, strip
std::string hiragana_normalize(const std::string& text);              // ja (needs libkakasi; else unchanged)
std::string cangjie_convert(const std::string& text, const CangjieTable* table);  // zh (no table: unchanged)

class MtlTokenizer {
 public:
  // `vocab`: grapheme_mtl_merged_expanded_v1.json (a tokenizers file as
  // EnTokenizer reads it); `cangjie`: Cangjie5_TC.json, or "" for none (then
  // Chinese characters reach the tokenizer as they are, as upstream when its
  // table cannot be loaded).
  static MtlTokenizer from_files(const std::string& vocab, const std::string& cangjie = "",
                                 int64_t max_id = kMultilingualTextVocab);
  // preprocess_text + the language step + "[xx]" + [SPACE]: the string
  // MTLTokenizer.encode hands the tokenizer. ModelError for a code outside
  // mtl_languages().
  std::string prepare(const std::string& text, const std::string& language) const;
  // MTLTokenizer.encode (no punc_norm, no 255 / 0 padding).
  std::vector<int64_t> encode(const std::string& text, const std::string& language) const;
  // punc_norm_mtl + encode: what ChatterboxMultilingualTTS.generate feeds T3.
  std::vector<int64_t> text_to_ids(const std::string& raw, const std::string& language) const {
    return encode(punc_norm_mtl(raw), language);
  }
  bool has_cangjie() const { return cangjie_.has_value(); }
  const EnTokenizer& tokenizer() const { return tok_; }
  // What this build does differently from a full upstream install for
  // `language` (one sentence; "" when nothing): for warnings.
  std::string fallback_note(const std::string& language) const;

 private:
  MtlTokenizer(EnTokenizer tok) : tok_(std::move(tok)) {}
  EnTokenizer tok_;
  std::optional<CangjieTable> cangjie_;
};

}  // namespace chatterbox::t3
