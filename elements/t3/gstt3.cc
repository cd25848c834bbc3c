#include "elements/t3/gstt3.h"

#include "elements/t3/model/gpt2_tokenizer.h"
#include "elements/t3/model/model_family.h"
#include "elements/t3/model/mtl_tokenizer.h"
#include "elements/t3/model/t3.h"
#include "elements/t3/model/t3_turbo.h"
#include "elements/t3/model/text_frontend.h"
#include "elements/voice/conditionals/voice_file.h"
#include "gst-plugins/caps.h"
#include "gst-plugins/core/compute_threads.h"
#include "gst-plugins/core/checkpoint.h"
#include "gst-plugins/core/model_cache.h"
#include "gst-plugins/elements.h"
#include "gst-plugins/load_time_property.h"

#include <ATen/ATen.h>

#include <atomic>
#include <cstring>
#include <memory>
#include <optional>
#include <string>
#include <vector>

GST_DEBUG_CATEGORY_STATIC(t3_debug);
#define GST_CAT_DEFAULT t3_debug

namespace {

using chatterbox::t3::EnTokenizer;
using chatterbox::t3::Gpt2Tokenizer;
using chatterbox::t3::MtlTokenizer;
using chatterbox::t3::SamplingOptions;
using chatterbox::t3::T3Cond;
using chatterbox::t3::T3Family;
using chatterbox::t3::T3Generator;
using chatterbox::t3::T3Model;
using chatterbox::t3::T3TurboGenerator;
using chatterbox::t3::T3TurboModel;
using chatterbox::t3::TurboSamplingOptions;

constexpr gint kTokenRate = 25;        // S3 tokens per second (caps rate)
constexpr int64_t kS3Vocab = 6561;     // caps vocab-size: valid ids are below it
// With split-sentences, a piece longer than this many code points is cut
// further at a clause break (, ; :) or a space. ~300 characters of English
// read in about 20 s, i.e. ~500 tokens: well inside max-tokens 1000, the
// length Chatterbox is tuned for.
constexpr size_t kMaxUtteranceChars = 300;

// Loaded at NULL -> READY, released at READY -> NULL. One of the two
// backbones, with its text front end.
struct Loaded {
  T3Family family;
  // Llama (Chatterbox, multilingual): shared with every t3 naming the same file.
  std::shared_ptr<const T3Model> llama;
  std::optional<EnTokenizer> en_tokenizer;
  // Multilingual Llama models (2454-entry text vocabulary): the MTLTokenizer.
  std::optional<MtlTokenizer> mtl_tokenizer;
  std::string warned_language;  // language whose fallback note was last posted
  // GPT-2 (Chatterbox-Turbo, -Nano).
  std::shared_ptr<const T3TurboModel> gpt2;
  std::optional<Gpt2Tokenizer> bpe_tokenizer;
  T3Cond cond;
  std::string model_path;
  // When voice= is reference audio: the computed conditionals, shared with
  // every t3 naming the same recording and model folder (ModelCache).
  std::shared_ptr<const chatterbox::voice::T3Voice> voice_ref;
  // GPT-2: the voice prompt's keys and values from the previous utterance
  // (its ~376 prefill positions are the same for every sentence of a voice).
  std::shared_ptr<chatterbox::t3::T3TurboPromptCache> prompt_cache =
      std::make_shared<chatterbox::t3::T3TurboPromptCache>();

  int64_t stop_token() const {
    return gpt2 ? gpt2->config().stop_speech_token : llama->config().stop_speech_token;
  }
};

// Whichever generator the backbone has, drawn from one token at a time.
struct Decoder {
  std::unique_ptr<T3Generator> llama;
  std::unique_ptr<T3TurboGenerator> gpt2;
  int64_t next_token() { return gpt2 ? gpt2->next_token() : llama->next_token(); }
  const std::vector<int64_t>& tokens() const { return gpt2 ? gpt2->tokens() : llama->tokens(); }
};

// Everything C++ of the element (GObject instance memory is not constructed).
struct State {
  std::unique_ptr<Loaded> loaded;
  std::atomic<bool> flushing{false};
};

// ------------------------------------------------------- sentence split ----

bool is_space(char32_t c) {
  return c == ' ' || (c >= 0x09 && c <= 0x0D) || (c >= 0x1C && c <= 0x1F) || c == 0x85 || c == 0xA0 ||
         c == 0x1680 || (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F || c == 0x205F ||
         c == 0x3000;
}
// CJK sentence enders (。？！ and the fullwidth full stop): a sentence ends
// there whether or not a space follows (CJK text has none).
bool is_cjk_terminator(char32_t c) { return c == 0x3002 || c == 0xFF1F || c == 0xFF01 || c == 0xFF0E; }
bool is_terminator(char32_t c) { return c == '.' || c == '!' || c == '?' || is_cjk_terminator(c); }
bool is_closer(char32_t c) {
  return c == '"' || c == '\'' || c == ')' || c == ']' || c == '}' || c == 0x201D || c == 0x2019 || c == 0xBB ||
         c == 0x300D || c == 0x300F || c == 0xFF09 || c == 0x3011 || c == 0x3009 || c == 0x300B;  // 」』）】〉》
}
// CJK clause marks (、，；：), a break for overlong pieces without a space.
bool is_cjk_clause(char32_t c) { return c == 0x3001 || c == 0xFF0C || c == 0xFF1B || c == 0xFF1A; }
// Letters and digits (anything outside ASCII counts: the tokenizer decides).
bool is_content(char32_t c) {
  return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c >= 0x80;
}
char32_t ascii_lower(char32_t c) { return c >= 'A' && c <= 'Z' ? c + 32 : c; }

// A "." after these words (or after a single letter, an initial) does not end
// a sentence.
bool is_abbreviation(const std::u32string& word) {
  static const char* const kAbbrev[] = {"mr", "mrs", "ms", "dr", "prof", "st", "jr", "sr", "vs", "etc",
                                        "e.g", "i.e", "mt", "no", "fig", "approx", "inc", "ltd", "co"};
  std::string w;
  for (char32_t c : word) {
    if (c >= 0x80) return false;
    w += static_cast<char>(ascii_lower(c));
  }
  if (w.size() == 1 && w[0] >= 'a' && w[0] <= 'z') return true;
  for (const char* a : kAbbrev)
    if (w == a) return true;
  return false;
}

std::u32string trim(const std::u32string& s) {
  size_t b = 0, e = s.size();
  while (b < e && is_space(s[b])) ++b;
  while (e > b && is_space(s[e - 1])) --e;
  return s.substr(b, e - b);
}

// Cuts a piece longer than kMaxUtteranceChars at the last clause break (or
// else space) in its second half, repeatedly.
void cut_long(std::u32string s, std::vector<std::u32string>& out) {
  while (s.size() > kMaxUtteranceChars) {
    size_t cut = 0;
    for (size_t i = kMaxUtteranceChars; i > kMaxUtteranceChars / 2 && !cut; --i)
      if (((s[i - 1] == ',' || s[i - 1] == ';' || s[i - 1] == ':') && is_space(s[i])) || is_cjk_clause(s[i - 1]))
        cut = i;
    for (size_t i = kMaxUtteranceChars; i > kMaxUtteranceChars / 2 && !cut; --i)
      if (is_space(s[i])) cut = i;
    if (!cut) cut = kMaxUtteranceChars;  // one huge word: a hard cut
    out.push_back(trim(s.substr(0, cut)));
    s = trim(s.substr(cut));
  }
  if (!s.empty()) out.push_back(s);
}

// Sentence pieces of `text` (trimmed, non-empty). A sentence ends at a run of
// . ! ? (plus closing quotes/brackets) followed by whitespace or the end, or
// at a run holding a CJK ender 。？！． whatever follows,
// except a single "." after an abbreviation or an initial, or before a word
// starting in lower case. Pieces without any letter or digit (e.g. a stray
// "!") are joined to the previous piece.
std::vector<std::string> split_sentences(const std::vector<char32_t>& cps) {
  std::vector<std::u32string> sentences;
  const size_t n = cps.size();
  size_t start = 0, i = 0;
  while (i < n) {
    if (!is_terminator(cps[i])) {
      ++i;
      continue;
    }
    size_t j = i;
    bool cjk = false;
    while (j < n && is_terminator(cps[j])) cjk = cjk || is_cjk_terminator(cps[j++]);
    const bool single_dot = j == i + 1 && cps[i] == '.';
    while (j < n && is_closer(cps[j])) ++j;
    if (j < n && !is_space(cps[j]) && !cjk) {  // "3.5", "a.m", "?!x": not a boundary
      i = j;
      continue;
    }
    bool boundary = true;
    if (single_dot) {
      size_t w = i;
      while (w > start && !is_space(cps[w - 1])) --w;
      std::u32string word(cps.begin() + w, cps.begin() + i);
      size_t k = j;
      while (k < n && is_space(cps[k])) ++k;
      if (is_abbreviation(word) || (k < n && cps[k] >= 'a' && cps[k] <= 'z')) boundary = false;
    }
    if (boundary) {
      sentences.push_back(std::u32string(cps.begin() + start, cps.begin() + j));
      start = j;
    }
    i = j;
  }
  if (start < n) sentences.push_back(std::u32string(cps.begin() + start, cps.end()));

  std::vector<std::u32string> pieces;
  for (const auto& s0 : sentences) {
    std::u32string s = trim(s0);
    if (s.empty()) continue;
    bool content = false;
    for (char32_t c : s) content = content || is_content(c);
    if (!content && !pieces.empty()) {
      pieces.back() += U' ';
      pieces.back() += s;
      continue;
    }
    pieces.push_back(s);
  }
  std::vector<std::u32string> bounded;
  for (auto& p : pieces) cut_long(p, bounded);
  std::vector<std::string> out;
  for (const auto& p : bounded) out.push_back(chatterbox::t3::encode_utf8(p));
  return out;
}

}  // namespace

// ---------------------------------------------------------------- element ----

enum {
  PROP_0,
  PROP_MODEL,
  PROP_TOKENIZER,
  PROP_VOICE,
  PROP_DEVICE,
  PROP_GREEDY,
  PROP_TEMPERATURE,
  PROP_CFG_WEIGHT,
  PROP_MIN_P,
  PROP_TOP_P,
  PROP_REPETITION_PENALTY,
  PROP_EXAGGERATION,
  PROP_SEED,
  PROP_MAX_TOKENS,
  PROP_TOKENS_PER_BUFFER,
  PROP_SPLIT_SENTENCES,
  PROP_TOP_K,
  PROP_PRECISION,
  PROP_THREADS,
  PROP_LANGUAGE,
};

// Sampling properties of one backbone family only: setting one with a model
// of the other family posts a warning once (per loaded model).
enum FamilyProperty : guint {
  kOnlyLlamaCfgWeight = 1u << 0,
  kOnlyLlamaMinP = 1u << 1,
  kOnlyLlamaExaggeration = 1u << 2,
  kOnlyGpt2TopK = 1u << 3,
};

// Defaults: ChatterboxTTS.generate's, which are also
// ChatterboxMultilingualTTS.generate's (CFG 0.5, exaggeration 0.5,
// temperature 0.8, repetition penalty 1.2, min-p 0.05, top-p 1.0).
#define DEFAULT_TEMPERATURE 0.8
#define DEFAULT_CFG_WEIGHT 0.5
#define DEFAULT_MIN_P 0.05
#define DEFAULT_TOP_P 1.0        // Llama; GPT-2 models use DEFAULT_TOP_P_GPT2 unless top-p is set
#define DEFAULT_TOP_P_GPT2 0.95  // ChatterboxTurboTTS.generate
#define DEFAULT_TOP_K 1000       // GPT-2 only
#define DEFAULT_REPETITION_PENALTY 1.2
#define DEFAULT_EXAGGERATION 0.5
#define DEFAULT_MAX_TOKENS 1000
#define DEFAULT_TOKENS_PER_BUFFER 5

struct _GstT3 {
  GstElement parent;
  GstPad* sinkpad;
  GstPad* srcpad;

  // Properties (object lock).
  gchar* model;
  gchar* tokenizer;
  gchar* voice;
  gchar* device;
  gchar* precision;  // weights of the decode GEMMs: f32, bf16, int8
  gchar* language;   // multilingual models: ISO code (NULL: en)
  gint threads;      // compute threads (process-wide), 0: leave as is
  gboolean greedy;
  gdouble temperature, cfg_weight, min_p, top_p, repetition_penalty, exaggeration;
  gboolean top_p_set;       // top-p given explicitly (else the family's default)
  gint top_k;
  guint family_props_set;     // FamilyProperty bits the application set
  guint family_props_warned;  // ... already warned about for the loaded model
  guint64 seed;
  gint max_tokens;
  gint tokens_per_buffer;
  gboolean split_sentences;

  State* st;
  // Streaming state (stream lock).
  gboolean segment_pushed;
  guint64 next_token;   // index of the next token pushed (timestamps)
  guint64 utterances;   // utterances generated since start / flush (seed offset)
};

G_DEFINE_TYPE(GstT3, gst_t3, GST_TYPE_ELEMENT)
GST_ELEMENT_REGISTER_DEFINE(t3, "t3", GST_RANK_NONE, GST_TYPE_T3)

static GstStaticPadTemplate sink_template =
    GST_STATIC_PAD_TEMPLATE("sink", GST_PAD_SINK, GST_PAD_ALWAYS, GST_STATIC_CAPS("text/x-raw, format=(string)utf8"));
static GstStaticPadTemplate src_template =
    GST_STATIC_PAD_TEMPLATE("src", GST_PAD_SRC, GST_PAD_ALWAYS, GST_STATIC_CAPS(CHATTERBOX_TOKENS_CAPS));

// ------------------------------------------------------------- loading ----

static std::string path_join(const std::string& dir, const char* name) {
  gchar* p = g_build_filename(dir.c_str(), name, nullptr);
  std::string s(p);
  g_free(p);
  return s;
}

static std::string dir_of(const std::string& file) {
  gchar* d = g_path_get_dirname(file.c_str());
  std::string s(d);
  g_free(d);
  return s;
}

static bool is_dir(const std::string& p) { return g_file_test(p.c_str(), G_FILE_TEST_IS_DIR); }
static bool is_file(const std::string& p) { return g_file_test(p.c_str(), G_FILE_TEST_IS_REGULAR); }

// Posts, once per loaded model, a warning for each sampling property the
// application set that the loaded backbone does not use.
static void warn_family_properties(GstT3* self) {
  if (!self->st->loaded) return;
  const bool gpt2 = self->st->loaded->family == T3Family::Gpt2;
  struct Rule {
    guint bit;
    const char* name;
    bool applies;
  };
  const Rule rules[] = {{kOnlyLlamaCfgWeight, "cfg-weight", !gpt2},
                        {kOnlyLlamaMinP, "min-p", !gpt2},
                        {kOnlyLlamaExaggeration, "exaggeration", !gpt2},
                        {kOnlyGpt2TopK, "top-k", gpt2}};
  GST_OBJECT_LOCK(self);
  const guint pending = self->family_props_set & ~self->family_props_warned;
  self->family_props_warned |= pending;
  GST_OBJECT_UNLOCK(self);
  for (const Rule& r : rules)
    if ((pending & r.bit) && !r.applies)
      GST_ELEMENT_WARNING(self, LIBRARY, SETTINGS,
                          ("'%s' does not apply to %s T3 models: ignored", r.name,
                           gpt2 ? "GPT-2 (Chatterbox-Turbo/Nano)" : "Llama (Chatterbox)"),
                          ("model %s; %s", self->st->loaded->model_path.c_str(),
                           gpt2 ? "Turbo/Nano decode without CFG, min-p or exaggeration, as ChatterboxTurboTTS.generate"
                                : "top-k is used by GPT-2 (Turbo/Nano) models only"));
}

static std::string lower_ascii(std::string s) {
  for (char& c : s)
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c + 32);
  return s;
}

// The language of the next utterance: the property (NULL: en), checked
// against the 23 of upstream. Posts an error listing them and returns "" for
// an unknown code.
static std::string checked_language(GstT3* self) {
  GST_OBJECT_LOCK(self);
  std::string lang = self->language ? lower_ascii(self->language) : "en";
  GST_OBJECT_UNLOCK(self);
  if (!chatterbox::t3::is_mtl_language(lang)) {
    GST_ELEMENT_ERROR(self, LIBRARY, SETTINGS,
                      ("Unknown language '%s': t3 language= takes one of %s", lang.c_str(),
                       chatterbox::t3::mtl_language_list().c_str()),
                      ("ISO 639-1 codes of Chatterbox Multilingual's SUPPORTED_LANGUAGES"));
    return "";
  }
  // Once per language: what this build does differently from a full
  // upstream install (optional packages' fallbacks).
  Loaded* L = self->st->loaded.get();
  if (L && L->mtl_tokenizer && L->warned_language != lang) {
    L->warned_language = lang;
    const std::string note = L->mtl_tokenizer->fallback_note(lang);
    if (!note.empty())
      GST_ELEMENT_WARNING(self, LIBRARY, SETTINGS, ("%s (language %s): %s", chatterbox::t3::mtl_language_name(lang),
                                                    lang.c_str(), note.c_str()),
                          ("see tests/t3/mtl/README.md for what each language needs"));
  }
  return lang;
}

static gboolean load_model(GstT3* self) {
  GST_OBJECT_LOCK(self);
  std::string model = self->model ? self->model : "";
  std::string tokenizer = self->tokenizer ? self->tokenizer : "";
  std::string voice = self->voice ? self->voice : "";
  std::string device = self->device ? self->device : "cpu";
  const std::string precision = self->precision ? self->precision : "f32";
  const std::string language = self->language ? self->language : "";
  const gint threads = self->threads;
  self->family_props_warned = 0;
  GST_OBJECT_UNLOCK(self);
  chatterbox::set_compute_threads(threads);

  if (device != "cpu") {
    GST_ELEMENT_ERROR(self, RESOURCE, SETTINGS,
                      ("Device '%s' is not available to t3: the T3 model runs on the CPU only in this build", device.c_str()),
                      ("Set device=cpu."));
    return FALSE;
  }
  if (model.empty()) {
    GST_ELEMENT_ERROR(self, RESOURCE, NOT_FOUND,
                      ("No T3 model given: set 'model' to t3_cfg.safetensors, t3_turbo_v1.safetensors, "
                       "t3_nano_v1.safetensors, t3_mtl23ls_v3.safetensors (or _v2) or the folder holding one"),
                      (nullptr));
    return FALSE;
  }
  if (is_dir(model)) {
    try {
      model = chatterbox::t3::t3_checkpoint_in_dir(model);
    } catch (const std::exception& e) {
      GST_ELEMENT_ERROR(self, RESOURCE, NOT_FOUND, ("%s", e.what()), (nullptr));
      return FALSE;
    }
  }
  if (!is_file(model)) {
    GST_ELEMENT_ERROR(self, RESOURCE, NOT_FOUND, ("T3 model file '%s' does not exist", model.c_str()), (nullptr));
    return FALSE;
  }
  const std::string dir = dir_of(model);
  if (voice.empty()) {
    voice = path_join(dir, "conds.pt");
    if (!is_file(voice)) {
      GST_ELEMENT_ERROR(self, RESOURCE, NOT_FOUND,
                        ("No voice: set 'voice' to a conds file (conds.pt, or safetensors with t3.speaker_emb, "
                         "t3.cond_prompt_speech_tokens, t3.emotion_adv); there is no '%s'",
                         voice.c_str()),
                        (nullptr));
      return FALSE;
    }
  }
  // Which file failed is part of every message.
  std::string stage = "model '" + model + "'";
  try {
    GST_INFO_OBJECT(self, "loading T3 model %s", model.c_str());
    auto loaded = std::make_unique<Loaded>();
    // The backbone is told by the tensor names; each family has its loader
    // and its tokenizer (a file, or a directory holding it).
    loaded->family = chatterbox::t3::detect_t3_family(chatterbox::Checkpoint::open(model));
    int64_t text_vocab;
    if (loaded->family == T3Family::Gpt2) {
      loaded->gpt2 = chatterbox::ModelCache::global().get<T3TurboModel>(
          chatterbox::ModelCache::make_key("t3-gpt2", {model}, "cpu", precision), [&] {
            return std::make_shared<const T3TurboModel>(T3TurboModel::load(model).with_precision(precision));
          });
      text_vocab = loaded->gpt2->config().text_tokens_dict_size;
      if (tokenizer.empty()) tokenizer = dir;  // tokenizer.json or vocab.json + merges.txt beside the model
      stage = "tokenizer '" + tokenizer + "'";
      loaded->bpe_tokenizer.emplace(Gpt2Tokenizer::from_path(tokenizer, text_vocab));
    } else {
      loaded->llama = chatterbox::ModelCache::global().get<T3Model>(
          chatterbox::ModelCache::make_key("t3", {model}, "cpu", precision),
          [&] { return std::make_shared<const T3Model>(T3Model::load(model).with_precision(precision)); });
      text_vocab = loaded->llama->config().text_tokens_dict_size;
      // T3Config.is_multilingual: the 2454-entry grapheme vocabulary.
      const bool mtl = text_vocab == chatterbox::t3::kMultilingualTextVocab;
      const char* file = mtl ? chatterbox::t3::kMtlVocabFile : "tokenizer.json";
      if (tokenizer.empty()) tokenizer = path_join(dir, file);
      if (is_dir(tokenizer)) tokenizer = path_join(tokenizer, file);
      stage = "tokenizer '" + tokenizer + "'";
      if (!is_file(tokenizer)) throw chatterbox::ModelError("the file does not exist (set the 'tokenizer' property)");
      if (mtl) {
        // Cangjie5_TC.json beside the vocabulary (upstream downloads it into
        // the tokenizer's folder); without it Chinese is not spelled in codes.
        const std::string cangjie = path_join(dir_of(tokenizer), chatterbox::t3::kCangjieFile);
        loaded->mtl_tokenizer.emplace(MtlTokenizer::from_files(tokenizer, is_file(cangjie) ? cangjie : "", text_vocab));
      } else {
        loaded->en_tokenizer.emplace(EnTokenizer::from_file(tokenizer, text_vocab));
      }
    }
    stage = "voice '" + voice + "'";
    if (!is_file(voice)) throw chatterbox::ModelError("the file does not exist (set the 'voice' property)");
    if (chatterbox::voice::is_reference_audio(voice)) {
      // Reference audio: prepare_conditionals' T3 half, with the S3
      // tokenizer of the s3gen checkpoint and the VoiceEncoder beside the
      // model. GPT-2 models (Turbo, Nano) and Llama models with Turbo's
      // 375-token prompt get Turbo's reference preparation (> 5 s, -27 LUFS,
      // 15 s prompt window).
      std::string s3gen = path_join(dir, "s3gen.safetensors");
      if (!is_file(s3gen)) s3gen = path_join(dir, "s3gen_meanflow.safetensors");
      const std::string ve = path_join(dir, "ve.safetensors");
      stage = "voice '" + voice + "' (reference audio)";
      for (const std::string& f : {s3gen, ve})
        if (!is_file(f))
          throw chatterbox::ModelError("a voice from reference audio needs '" + f +
                                       "' beside the model (s3gen.safetensors or s3gen_meanflow.safetensors for the "
                                       "speech tokenizer, ve.safetensors for the speaker embedding)");
      using chatterbox::voice::Variant;
      chatterbox::voice::CloneOptions o;
      const bool turbo_prompt =
          loaded->gpt2 || loaded->llama->config().speech_cond_prompt_len ==
                              chatterbox::voice::VariantSpec::of(Variant::Turbo).prompt_tokens;
      o.variant = turbo_prompt ? Variant::Turbo : Variant::Original;
      loaded->voice_ref = chatterbox::voice::cached_t3_voice(voice, s3gen, ve, o);
      loaded->cond.speaker_emb = loaded->voice_ref->speaker_emb;
      loaded->cond.cond_prompt_speech_tokens = loaded->voice_ref->cond_prompt_speech_tokens;
      loaded->cond.emotion_adv = loaded->voice_ref->emotion_adv;
      for (const std::string& w : loaded->voice_ref->warnings)
        GST_ELEMENT_WARNING(self, RESOURCE, READ, ("Voice '%s': %s", voice.c_str(), w.c_str()), (nullptr));
    } else {
      loaded->cond = T3Cond::load(voice);
    }
    // Validates the voice against the model now rather than on the first text.
    if (loaded->gpt2)
      loaded->gpt2->cond_embedding(loaded->cond);
    else
      loaded->llama->cond_embedding(loaded->cond);
    loaded->model_path = model;
    stage = "model '" + model + "'";
    if (!language.empty() && !loaded->mtl_tokenizer && chatterbox::t3::is_mtl_language(lower_ascii(language)) &&
        lower_ascii(language) != "en")
      throw chatterbox::ModelError("language '" + language + "' needs a Chatterbox Multilingual T3 "
                                   "(t3_mtl23ls_v3.safetensors or t3_mtl23ls_v2.safetensors, 2454-entry text "
                                   "vocabulary); this one speaks English only (set language=en or leave it unset)");
    self->st->loaded = std::move(loaded);
  } catch (const std::exception& e) {
    GST_ELEMENT_ERROR(self, RESOURCE, OPEN_READ, ("Could not load T3 %s: %s", stage.c_str(), e.what()), (nullptr));
    return FALSE;
  }
  if (checked_language(self).empty()) {
    self->st->loaded.reset();
    return FALSE;
  }
  GST_INFO_OBJECT(self, "T3 ready (%s backbone): %s, tokenizer %s, voice %s",
                  chatterbox::t3::family_name(self->st->loaded->family), model.c_str(), tokenizer.c_str(),
                  voice.c_str());
  warn_family_properties(self);
  return TRUE;
}

// ----------------------------------------------------------- streaming ----

static void ensure_segment(GstT3* self) {
  if (self->segment_pushed) return;
  // Src caps are fixed; a pad without caps gets them before the segment.
  if (!gst_pad_has_current_caps(self->srcpad)) {
    GstCaps* caps = gst_caps_from_string(CHATTERBOX_TOKENS_CAPS);
    gst_pad_set_caps(self->srcpad, caps);
    gst_caps_unref(caps);
  }
  GstSegment seg;
  gst_segment_init(&seg, GST_FORMAT_TIME);
  gst_pad_push_event(self->srcpad, gst_event_new_segment(&seg));
  self->segment_pushed = TRUE;
}

static GstFlowReturn push_tokens(GstT3* self, std::vector<int32_t>& tokens, bool discont) {
  if (tokens.empty()) return GST_FLOW_OK;
  ensure_segment(self);
  const guint64 first = self->next_token, n = tokens.size();
  for (auto& t : tokens) t = GINT32_TO_LE(t);
  GstBuffer* buf = gst_buffer_new_allocate(nullptr, n * sizeof(int32_t), nullptr);
  gst_buffer_fill(buf, 0, tokens.data(), n * sizeof(int32_t));
  const GstClockTime start = gst_util_uint64_scale_int(first, GST_SECOND, kTokenRate);
  const GstClockTime end = gst_util_uint64_scale_int(first + n, GST_SECOND, kTokenRate);
  GST_BUFFER_PTS(buf) = start;
  GST_BUFFER_DURATION(buf) = end - start;
  GST_BUFFER_OFFSET(buf) = first;
  GST_BUFFER_OFFSET_END(buf) = first + n;
  if (discont) GST_BUFFER_FLAG_SET(buf, GST_BUFFER_FLAG_DISCONT);
  self->next_token = first + n;
  tokens.clear();
  GST_LOG_OBJECT(self, "pushing tokens %" G_GUINT64_FORMAT "..%" G_GUINT64_FORMAT, first, first + n);
  return gst_pad_push(self->srcpad, buf);
}

struct Settings {
  SamplingOptions opts;              // Llama
  TurboSamplingOptions turbo_opts;   // GPT-2
  double exaggeration;
  size_t tokens_per_buffer;
  bool split;
  std::string language;  // multilingual models
};

static Settings read_settings(GstT3* self) {
  Settings s;
  GST_OBJECT_LOCK(self);
  s.opts.greedy = self->greedy;
  s.opts.temperature = self->temperature;
  s.opts.cfg_weight = self->cfg_weight;
  s.opts.min_p = self->min_p;
  s.opts.top_p = self->top_p;
  s.opts.repetition_penalty = self->repetition_penalty;
  s.opts.max_new_tokens = self->max_tokens;
  s.opts.seed = self->seed;
  s.turbo_opts.greedy = self->greedy;
  s.turbo_opts.temperature = self->temperature;
  s.turbo_opts.top_k = self->top_k;
  s.turbo_opts.top_p = self->top_p_set ? self->top_p : DEFAULT_TOP_P_GPT2;
  s.turbo_opts.repetition_penalty = self->repetition_penalty;
  s.turbo_opts.max_new_tokens = self->max_tokens;
  s.turbo_opts.seed = self->seed;
  s.exaggeration = self->exaggeration;
  s.tokens_per_buffer = static_cast<size_t>(self->tokens_per_buffer);
  s.split = self->split_sentences;
  GST_OBJECT_UNLOCK(self);
  return s;
}

// One ChatterboxTTS.generate (or ChatterboxTurboTTS.generate) call's worth
// of T3: punc_norm, tokenize, decode, pushing valid tokens as they are drawn.
static GstFlowReturn generate_utterance(GstT3* self, const std::string& text, const Settings& s, const T3Cond& cond) {
  // ChatterboxMultilingualTTS.generate drops the audio of the last speech
  // token ("emitted just before EOS with degraded attention"): downstream is
  // told through the utterance-end event (s3genmel drops its mel frames).
  Loaded& L = *self->st->loaded;
  // Utterance n draws from seed + n: reproducible for a given text stream,
  // yet repeated sentences are not forced to sound identical.
  const uint64_t seed = s.opts.seed + self->utterances;
  std::string normalized;
  std::vector<int64_t> ids;
  Decoder gen;
  if (L.gpt2) {
    normalized = chatterbox::t3::punc_norm_turbo(text);
    ids = L.bpe_tokenizer->text_to_ids(text);
    TurboSamplingOptions opts = s.turbo_opts;
    opts.seed = seed;
    gen.gpt2 = std::make_unique<T3TurboGenerator>(*L.gpt2, opts, L.prompt_cache);
    gen.gpt2->start(ids, cond);
  } else {
    if (L.mtl_tokenizer) {
      normalized = chatterbox::t3::punc_norm_mtl(text);
      ids = L.mtl_tokenizer->encode(normalized, s.language);
    } else {
      normalized = chatterbox::t3::punc_norm(text);
      ids = L.en_tokenizer->encode(normalized);
    }
    SamplingOptions opts = s.opts;
    opts.seed = seed;
    gen.llama = std::make_unique<T3Generator>(*L.llama, opts);
    gen.llama->start(ids, cond);
  }
  GST_DEBUG_OBJECT(self, "utterance %" G_GUINT64_FORMAT ": \"%s\" -> %zu text tokens", self->utterances,
                   normalized.c_str(), ids.size());
  const guint64 first_token = self->next_token;

  std::vector<int32_t> pending;
  pending.reserve(s.tokens_per_buffer);
  bool discont = true;
  int64_t dropped = 0;
  for (;;) {
    // A FLUSH_START (seek) or PAUSED -> READY stops generation between tokens.
    if (self->st->flushing.load(std::memory_order_acquire)) return GST_FLOW_FLUSHING;
    const int64_t tok = gen.next_token();
    if (tok < 0) break;
    if (tok >= kS3Vocab) {  // stop token, or an id outside the codebook (generate drops them)
      if (tok != L.stop_token()) ++dropped;
      continue;
    }
    pending.push_back(static_cast<int32_t>(tok));
    if (pending.size() >= s.tokens_per_buffer) {
      GstFlowReturn ret = push_tokens(self, pending, discont);
      discont = false;
      if (ret != GST_FLOW_OK) return ret;
    }
  }
  GstFlowReturn ret = push_tokens(self, pending, discont);
  if (ret != GST_FLOW_OK) return ret;
  const guint64 produced = self->next_token - first_token;
  if (dropped) GST_DEBUG_OBJECT(self, "dropped %" G_GINT64_FORMAT " ids outside the S3 codebook", dropped);
  if (produced == 0) GST_WARNING_OBJECT(self, "utterance \"%s\" produced no speech tokens", normalized.c_str());
  if (!gen.tokens().empty() && gen.tokens().back() != L.stop_token())
    GST_WARNING_OBJECT(self, "utterance \"%s\" reached max-tokens (%" G_GINT64_FORMAT ") without a stop token",
                       normalized.c_str(), s.opts.max_new_tokens);
  ensure_segment(self);
  const guint trim = L.mtl_tokenizer && produced > 1 ? 1 : 0;
  GstStructure* info = gst_structure_new(GST_T3_UTTERANCE_END_EVENT, "utterance", G_TYPE_UINT64, self->utterances,
                                         "first-token", G_TYPE_UINT64, first_token, "tokens", G_TYPE_UINT64, produced,
                                         "trim-tokens", G_TYPE_UINT, trim, nullptr);
  gst_pad_push_event(self->srcpad, gst_event_new_custom(GST_EVENT_CUSTOM_DOWNSTREAM, info));
  ++self->utterances;
  return GST_FLOW_OK;
}

static GstFlowReturn gst_t3_chain(GstPad*, GstObject* parent, GstBuffer* buf) {
  GstT3* self = GST_T3(parent);
  if (!self->st->loaded) {
    gst_buffer_unref(buf);
    GST_ELEMENT_ERROR(self, CORE, STATE_CHANGE, ("Text arrived but no T3 model is loaded"), (nullptr));
    return GST_FLOW_ERROR;
  }
  GstMapInfo map;
  if (!gst_buffer_map(buf, &map, GST_MAP_READ)) {
    gst_buffer_unref(buf);
    GST_ELEMENT_ERROR(self, RESOURCE, READ, ("Cannot map the text buffer"), (nullptr));
    return GST_FLOW_ERROR;
  }
  std::string text(reinterpret_cast<const char*>(map.data), map.size);
  gst_buffer_unmap(buf, &map);
  gst_buffer_unref(buf);
  // A C string's terminator (e.g. from an application's strlen + 1) is not text.
  while (!text.empty() && text.back() == '\0') text.pop_back();

  std::vector<char32_t> cps;
  try {
    cps = chatterbox::t3::decode_utf8(text, "the text buffer");
  } catch (const std::exception& e) {
    GST_ELEMENT_ERROR(self, STREAM, DECODE, ("Input text is not valid UTF-8: %s", e.what()), (nullptr));
    return GST_FLOW_ERROR;
  }

  warn_family_properties(self);  // for properties set since the model loaded
  Settings s = read_settings(self);
  s.language = checked_language(self);
  if (s.language.empty()) return GST_FLOW_ERROR;
  if (!self->st->loaded->mtl_tokenizer && s.language != "en") {
    GST_ELEMENT_ERROR(self, LIBRARY, SETTINGS,
                      ("language '%s' needs a Chatterbox Multilingual T3; %s speaks English only", s.language.c_str(),
                       self->st->loaded->model_path.c_str()),
                      ("multilingual models: t3_mtl23ls_v3.safetensors, t3_mtl23ls_v2.safetensors"));
    return GST_FLOW_ERROR;
  }
  std::vector<std::string> pieces;
  if (text.empty()) {
    // As ChatterboxTTS.generate(""): punc_norm substitutes its fixed sentence.
    GST_ELEMENT_WARNING(self, STREAM, FORMAT, ("Empty text buffer: speaking the reference's fallback sentence"),
                        ("punc_norm(\"\") = \"%s\"", chatterbox::t3::punc_norm("").c_str()));
    pieces.push_back(text);
  } else if (s.split) {
    pieces = split_sentences(cps);
    // Whitespace only: one utterance of the raw text, as generate would run it.
    if (pieces.empty()) pieces.push_back(text);
  } else {
    pieces.push_back(text);
  }

  try {
    const T3Cond cond = self->st->loaded->cond.with_exaggeration(s.exaggeration);
    for (const std::string& piece : pieces) {
      GstFlowReturn ret = generate_utterance(self, piece, s, cond);
      if (ret != GST_FLOW_OK) {
        GST_DEBUG_OBJECT(self, "stopping generation: %s", gst_flow_get_name(ret));
        return ret;
      }
    }
  } catch (const std::exception& e) {
    GST_ELEMENT_ERROR(self, STREAM, FAILED, ("T3 generation failed: %s", e.what()), (nullptr));
    return GST_FLOW_ERROR;
  }
  return GST_FLOW_OK;
}

static gboolean gst_t3_sink_event(GstPad* pad, GstObject* parent, GstEvent* event) {
  GstT3* self = GST_T3(parent);
  switch (GST_EVENT_TYPE(event)) {
    case GST_EVENT_CAPS: {
      // Text caps carry nothing to configure; the output caps are fixed.
      gst_event_unref(event);
      GstCaps* caps = gst_caps_from_string(CHATTERBOX_TOKENS_CAPS);
      gboolean ok = gst_pad_set_caps(self->srcpad, caps);
      gst_caps_unref(caps);
      return ok;
    }
    case GST_EVENT_SEGMENT:
      // Output time is token time from 0, whatever the text's segment.
      gst_event_unref(event);
      ensure_segment(self);
      return TRUE;
    case GST_EVENT_GAP:
      // A gap in text time says nothing about token time.
      gst_event_unref(event);
      return TRUE;
    case GST_EVENT_EOS:
      ensure_segment(self);
      return gst_pad_push_event(self->srcpad, event);
    case GST_EVENT_FLUSH_START:
      // Not serialized: the chain may be mid-utterance; it checks this between tokens.
      self->st->flushing.store(true, std::memory_order_release);
      return gst_pad_push_event(self->srcpad, event);
    case GST_EVENT_FLUSH_STOP:
      // Serialized: the chain has returned.
      self->st->flushing.store(false, std::memory_order_release);
      self->segment_pushed = FALSE;
      self->next_token = 0;
      self->utterances = 0;
      return gst_pad_push_event(self->srcpad, event);
    default:
      return gst_pad_event_default(pad, parent, event);
  }
}

static GstStateChangeReturn gst_t3_change_state(GstElement* element, GstStateChange transition) {
  GstT3* self = GST_T3(element);
  switch (transition) {
    case GST_STATE_CHANGE_NULL_TO_READY:
      if (!load_model(self)) return GST_STATE_CHANGE_FAILURE;
      break;
    case GST_STATE_CHANGE_READY_TO_PAUSED:
      self->st->flushing.store(false);
      self->segment_pushed = FALSE;
      self->next_token = 0;
      self->utterances = 0;
      break;
    case GST_STATE_CHANGE_PAUSED_TO_READY:
      // Deactivating the sink pad waits for the chain: end generation first.
      self->st->flushing.store(true, std::memory_order_release);
      break;
    default:
      break;
  }
  GstStateChangeReturn ret = GST_ELEMENT_CLASS(gst_t3_parent_class)->change_state(element, transition);
  if (transition == GST_STATE_CHANGE_READY_TO_NULL) self->st->loaded.reset();
  return ret;
}

// ---------------------------------------------------------- properties ----

static void gst_t3_set_property(GObject* object, guint id, const GValue* value, GParamSpec* pspec) {
  GstT3* self = GST_T3(object);
  GST_OBJECT_LOCK(self);
  const bool file =
      id == PROP_MODEL || id == PROP_TOKENIZER || id == PROP_VOICE || id == PROP_DEVICE || id == PROP_PRECISION;
  if (file && !chatterbox::element_is_stopped(GST_ELEMENT(self))) {
    GST_OBJECT_UNLOCK(self);
    chatterbox::warn_load_time_property(GST_ELEMENT(self), pspec);
    return;
  }
  switch (id) {
    case PROP_MODEL: g_free(self->model); self->model = g_value_dup_string(value); break;
    case PROP_TOKENIZER: g_free(self->tokenizer); self->tokenizer = g_value_dup_string(value); break;
    case PROP_VOICE: g_free(self->voice); self->voice = g_value_dup_string(value); break;
    case PROP_DEVICE:
      g_free(self->device);
      self->device = g_value_dup_string(value);
      if (!self->device) self->device = g_strdup("cpu");
      break;
    case PROP_PRECISION:
      g_free(self->precision);
      self->precision = g_value_dup_string(value);
      if (!self->precision) self->precision = g_strdup("f32");
      break;
    case PROP_THREADS: self->threads = g_value_get_int(value); break;
    case PROP_LANGUAGE: g_free(self->language); self->language = g_value_dup_string(value); break;
    case PROP_GREEDY: self->greedy = g_value_get_boolean(value); break;
    case PROP_TEMPERATURE: self->temperature = g_value_get_double(value); break;
    case PROP_CFG_WEIGHT:
      self->cfg_weight = g_value_get_double(value);
      self->family_props_set |= kOnlyLlamaCfgWeight;
      break;
    case PROP_MIN_P:
      self->min_p = g_value_get_double(value);
      self->family_props_set |= kOnlyLlamaMinP;
      break;
    case PROP_TOP_P:
      self->top_p = g_value_get_double(value);
      self->top_p_set = TRUE;
      break;
    case PROP_TOP_K:
      self->top_k = g_value_get_int(value);
      self->family_props_set |= kOnlyGpt2TopK;
      break;
    case PROP_REPETITION_PENALTY: self->repetition_penalty = g_value_get_double(value); break;
    case PROP_EXAGGERATION:
      self->exaggeration = g_value_get_double(value);
      self->family_props_set |= kOnlyLlamaExaggeration;
      break;
    case PROP_SEED: self->seed = g_value_get_uint64(value); break;
    case PROP_MAX_TOKENS: self->max_tokens = g_value_get_int(value); break;
    case PROP_TOKENS_PER_BUFFER: self->tokens_per_buffer = g_value_get_int(value); break;
    case PROP_SPLIT_SENTENCES: self->split_sentences = g_value_get_boolean(value); break;
    default: G_OBJECT_WARN_INVALID_PROPERTY_ID(object, id, pspec);
  }
  GST_OBJECT_UNLOCK(self);
}

static void gst_t3_get_property(GObject* object, guint id, GValue* value, GParamSpec* pspec) {
  GstT3* self = GST_T3(object);
  GST_OBJECT_LOCK(self);
  switch (id) {
    case PROP_MODEL: g_value_set_string(value, self->model); break;
    case PROP_TOKENIZER: g_value_set_string(value, self->tokenizer); break;
    case PROP_VOICE: g_value_set_string(value, self->voice); break;
    case PROP_DEVICE: g_value_set_string(value, self->device); break;
    case PROP_PRECISION: g_value_set_string(value, self->precision); break;
    case PROP_THREADS: g_value_set_int(value, self->threads); break;
    case PROP_LANGUAGE: g_value_set_string(value, self->language); break;
    case PROP_GREEDY: g_value_set_boolean(value, self->greedy); break;
    case PROP_TEMPERATURE: g_value_set_double(value, self->temperature); break;
    case PROP_CFG_WEIGHT: g_value_set_double(value, self->cfg_weight); break;
    case PROP_MIN_P: g_value_set_double(value, self->min_p); break;
    case PROP_TOP_P: g_value_set_double(value, self->top_p); break;
    case PROP_TOP_K: g_value_set_int(value, self->top_k); break;
    case PROP_REPETITION_PENALTY: g_value_set_double(value, self->repetition_penalty); break;
    case PROP_EXAGGERATION: g_value_set_double(value, self->exaggeration); break;
    case PROP_SEED: g_value_set_uint64(value, self->seed); break;
    case PROP_MAX_TOKENS: g_value_set_int(value, self->max_tokens); break;
    case PROP_TOKENS_PER_BUFFER: g_value_set_int(value, self->tokens_per_buffer); break;
    case PROP_SPLIT_SENTENCES: g_value_set_boolean(value, self->split_sentences); break;
    default: G_OBJECT_WARN_INVALID_PROPERTY_ID(object, id, pspec);
  }
  GST_OBJECT_UNLOCK(self);
}

static void gst_t3_finalize(GObject* object) {
  GstT3* self = GST_T3(object);
  delete self->st;
  g_free(self->model);
  g_free(self->tokenizer);
  g_free(self->voice);
  g_free(self->device);
  g_free(self->precision);
  g_free(self->language);
  G_OBJECT_CLASS(gst_t3_parent_class)->finalize(object);
}

static void gst_t3_class_init(GstT3Class* klass) {
  GObjectClass* gobject_class = G_OBJECT_CLASS(klass);
  GstElementClass* element_class = GST_ELEMENT_CLASS(klass);
  GST_DEBUG_CATEGORY_INIT(t3_debug, "t3", 0, "chatterbox text to S3 speech tokens");
  gobject_class->set_property = gst_t3_set_property;
  gobject_class->get_property = gst_t3_get_property;
  gobject_class->finalize = gst_t3_finalize;
  element_class->change_state = gst_t3_change_state;

  // Files and device: read when the element goes NULL -> READY; refused
  // (with a warning) in any other state.
  const GParamFlags files = static_cast<GParamFlags>(G_PARAM_READWRITE | G_PARAM_STATIC_STRINGS);
  // Decoding settings: read at the start of each text buffer (a change applies
  // from the next buffer, never in the middle of an utterance).
  const GParamFlags live = static_cast<GParamFlags>(G_PARAM_READWRITE | G_PARAM_STATIC_STRINGS | GST_PARAM_MUTABLE_PLAYING);
  g_object_class_install_property(gobject_class, PROP_MODEL,
      g_param_spec_string("model", "Model",
                          "T3 weights: Chatterbox's t3_cfg.safetensors or Chatterbox Multilingual's "
                          "t3_mtl23ls_v3.safetensors / t3_mtl23ls_v2.safetensors (Llama backbone; a folder holding "
                          "both gives V3), Chatterbox-Turbo's "
                          "t3_turbo_v1.safetensors or Chatterbox-Nano's t3_nano_v1.safetensors (GPT-2 backbone), "
                          "or the folder holding one (with the tokenizer and conds.pt). The backbone is detected from "
                          "the checkpoint. Loaded when the element goes to READY (t3 elements naming the same file "
                          "share one copy of the weights). Changeable in the NULL state only.",
                          nullptr, files));
  g_object_class_install_property(gobject_class, PROP_TOKENIZER,
      g_param_spec_string("tokenizer", "Tokenizer",
                          "The model's text tokenizer: a Hugging Face tokenizer.json, or a directory holding one (GPT-2 "
                          "models also read vocab.json + merges.txt + added_tokens.json). Default: the model's folder. "
                          "Llama models take Chatterbox's English tokenizer (multilingual ones, with a 2454-entry text "
                          "vocabulary, grapheme_mtl_merged_expanded_v1.json and Cangjie5_TC.json beside it), GPT-2 "
                          "models GPT-2's byte-level BPE with "
                          "the paralinguistic tags ([laugh], [chuckle], ...). Changeable in the NULL state only.",
                          nullptr, files));
  g_object_class_install_property(gobject_class, PROP_VOICE,
      g_param_spec_string("voice", "Voice",
                          "Voice conditionals: conds.pt, or a safetensors file with t3.speaker_emb, "
                          "t3.cond_prompt_speech_tokens and (Llama models) t3.emotion_adv, as chatterbox-voice "
                          "writes; or reference speech (WAV, FLAC, ...), from which they are computed as Chatterbox's "
                          "prepare_conditionals does, with s3gen.safetensors (or s3gen_meanflow.safetensors) and "
                          "ve.safetensors beside the model (once per file: elements naming the same recording share "
                          "the result). Default: conds.pt beside the model; an error if there is none. Changeable in "
                          "the NULL state only.",
                          nullptr, files));
  g_object_class_install_property(gobject_class, PROP_DEVICE,
      g_param_spec_string("device", "Device",
                          "Where T3 runs: 'cpu' (the only device the T3 model supports; anything else is refused "
                          "when the element goes to READY). Changeable in the NULL state only.",
                          "cpu", files));
  g_object_class_install_property(gobject_class, PROP_PRECISION,
      g_param_spec_string("precision", "Precision",
                          "Weights of the backbone's linear layers and the speech head, which every decode step "
                          "reads once: 'f32' (the checkpoint's), 'bf16' (half the bytes) or 'int8' (weight-only, "
                          "one float scale per output row: a quarter of the bytes). Sums stay in float32; the "
                          "accuracy cost on full-size weights is in bench/results. Both backbones. Elements naming "
                          "the same file and precision share one copy. Changeable in the NULL state only.",
                          "f32", files));
  g_object_class_install_property(gobject_class, PROP_THREADS,
      g_param_spec_int("threads", "Threads",
                       "CPU threads for the math (0: leave the process's setting). Process-wide, as for the "
                       "vocoders: OpenBLAS's pool for the GEMMs and the kernel pool for the decode kernels; "
                       "OpenMP stays at one thread (no spinning workers). Applied when the element goes to READY.",
                       0, 256, 0, static_cast<GParamFlags>(G_PARAM_READWRITE | G_PARAM_STATIC_STRINGS)));
  g_object_class_install_property(gobject_class, PROP_LANGUAGE,
      g_param_spec_string("language", "Language",
                          "Language of the text for Chatterbox Multilingual models (t3_mtl23ls_v3/_v2): one of ar da "
                          "de el en es fi fr he hi it ja ko ms nl no pl pt ru sv sw tr zh (case-insensitive; NULL: "
                          "en); an unknown code is an error listing them. Each language runs upstream's text step "
                          "(ja needs libkakasi at build time, zh Cangjie5_TC.json beside the tokenizer; the element "
                          "warns when it takes upstream's fallback). English-only models accept only en. Applies "
                          "from the next text buffer.",
                          nullptr, live));
  g_object_class_install_property(gobject_class, PROP_GREEDY,
      g_param_spec_boolean("greedy", "Greedy",
                           "Take the most probable token at every step (deterministic) instead of sampling",
                           FALSE, live));
  g_object_class_install_property(gobject_class, PROP_TEMPERATURE,
      g_param_spec_double("temperature", "Temperature", "Sampling temperature", 0.01, 5.0, DEFAULT_TEMPERATURE, live));
  g_object_class_install_property(gobject_class, PROP_CFG_WEIGHT,
      g_param_spec_double("cfg-weight", "CFG weight",
                          "Classifier-free guidance: logits = cond + w (cond - uncond); 0 runs the conditional row "
                          "alone. Llama models only (GPT-2 Turbo/Nano models have no CFG: setting it warns)",
                          0.0, 10.0, DEFAULT_CFG_WEIGHT, live));
  g_object_class_install_property(gobject_class, PROP_MIN_P,
      g_param_spec_double("min-p", "Min p",
                          "Drop tokens less probable than min-p times the most probable one (0: off). Llama models "
                          "only (setting it with a GPT-2 model warns)",
                          0.0, 1.0,
                          DEFAULT_MIN_P, live));
  g_object_class_install_property(gobject_class, PROP_TOP_P,
      g_param_spec_double("top-p", "Top p",
                          "Nucleus sampling mass (1: off). Both families; unless set, Llama models use 1.0 and GPT-2 "
                          "(Turbo/Nano) models 0.95, each its generate's default",
                          0.01, 1.0, DEFAULT_TOP_P, live));
  g_object_class_install_property(gobject_class, PROP_TOP_K,
      g_param_spec_int("top-k", "Top k",
                       "Keep only the k most probable tokens (0: off). GPT-2 (Turbo/Nano) models only, applied "
                       "after the temperature and before top-p as inference_turbo does (setting it with a Llama "
                       "model warns)",
                       0, 100000, DEFAULT_TOP_K, live));
  g_object_class_install_property(gobject_class, PROP_REPETITION_PENALTY,
      g_param_spec_double("repetition-penalty", "Repetition penalty",
                          "Penalty on the logits of tokens already generated in the utterance (1: off). Both "
                          "families (GPT-2 models apply it after top-k/top-p, as inference_turbo)",
                          0.01, 10.0,
                          DEFAULT_REPETITION_PENALTY, live));
  g_object_class_install_property(gobject_class, PROP_EXAGGERATION,
      g_param_spec_double("exaggeration", "Exaggeration",
                          "Emotion exaggeration given to T3 (replaces the voice's emotion_adv, as generate does). "
                          "Llama models only (setting it with a GPT-2 model warns)",
                          0.0,
                          10.0, DEFAULT_EXAGGERATION, live));
  g_object_class_install_property(gobject_class, PROP_SEED,
      g_param_spec_uint64("seed", "Seed",
                          "Seed of the sampler when not greedy: utterance n (counted from the start or the last "
                          "flush) samples with seed + n, so a text stream is reproducible. Draws are torch's CPU "
                          "generator's: utterance 0 equals the reference run after torch.manual_seed(seed)",
                          0, G_MAXUINT64, 0, live));
  g_object_class_install_property(gobject_class, PROP_MAX_TOKENS,
      g_param_spec_int("max-tokens", "Max tokens",
                       "Most speech tokens per utterance (25 per second of speech), stop token included", 1, 4096,
                       DEFAULT_MAX_TOKENS, live));
  g_object_class_install_property(gobject_class, PROP_TOKENS_PER_BUFFER,
      g_param_spec_int("tokens-per-buffer", "Tokens per buffer",
                       "Push the tokens as soon as this many are sampled (the last buffer of an utterance may hold "
                       "fewer); 1 gives the lowest latency",
                       1, 4096, DEFAULT_TOKENS_PER_BUFFER, live));
  g_object_class_install_property(gobject_class, PROP_SPLIT_SENTENCES,
      g_param_spec_boolean("split-sentences", "Split sentences",
                           "Generate each sentence (ended by . ! ? and a space, or by the CJK enders 。？！) as its "
                           "own utterance, and cut "
                           "sentences longer than 300 characters at a clause break, to stay within the length T3 "
                           "handles reliably. Off: each buffer is one utterance.",
                           TRUE, live));

  gst_element_class_add_static_pad_template(element_class, &sink_template);
  gst_element_class_add_static_pad_template(element_class, &src_template);
  gst_element_class_set_static_metadata(element_class, "Chatterbox T3", "Codec/Encoder/Text",
      "Turns UTF-8 text into S3 speech tokens (25 Hz) with Chatterbox's T3 (Llama backbone) or Chatterbox-Turbo/Nano's "
      "(GPT-2 backbone, detected from the model), streaming tokens as they are sampled. "
      "Each utterance starts with a DISCONT buffer and ends with a '" GST_T3_UTTERANCE_END_EVENT "' event.",
      "gst-chatterbox developers");
}

static void gst_t3_init(GstT3* self) {
  self->st = new State();
  self->sinkpad = gst_pad_new_from_static_template(&sink_template, "sink");
  gst_pad_set_chain_function(self->sinkpad, gst_t3_chain);
  gst_pad_set_event_function(self->sinkpad, gst_t3_sink_event);
  gst_element_add_pad(GST_ELEMENT(self), self->sinkpad);
  self->srcpad = gst_pad_new_from_static_template(&src_template, "src");
  gst_pad_use_fixed_caps(self->srcpad);
  gst_element_add_pad(GST_ELEMENT(self), self->srcpad);

  self->device = g_strdup("cpu");
  self->precision = g_strdup("f32");
  self->greedy = FALSE;
  self->temperature = DEFAULT_TEMPERATURE;
  self->cfg_weight = DEFAULT_CFG_WEIGHT;
  self->min_p = DEFAULT_MIN_P;
  self->top_p = DEFAULT_TOP_P;
  self->top_p_set = FALSE;
  self->top_k = DEFAULT_TOP_K;
  self->family_props_set = 0;
  self->family_props_warned = 0;
  self->repetition_penalty = DEFAULT_REPETITION_PENALTY;
  self->exaggeration = DEFAULT_EXAGGERATION;
  self->seed = 0;
  self->max_tokens = DEFAULT_MAX_TOKENS;
  self->tokens_per_buffer = DEFAULT_TOKENS_PER_BUFFER;
  self->split_sentences = TRUE;
  self->segment_pushed = FALSE;
  self->next_token = 0;
  self->utterances = 0;
}
