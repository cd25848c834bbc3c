#include "gst-plugins/bins/gstchatterboxtts.h"

#include "elements/t3/model/model_family.h"
#include "elements/vocoder/gstchatterboxvocoder.h"
#include "elements/watermark/gstperthmark.h"
#include "gst-plugins/caps.h"
#include "gst-plugins/elements.h"
#include "gst-plugins/load_time_property.h"

#include <filesystem>
#include <string>

GST_DEBUG_CATEGORY_STATIC(chatterbox_tts_debug);
#define GST_CAT_DEFAULT chatterbox_tts_debug

enum { PROP_0, PROP_MODEL_DIR, PROP_VOICE, PROP_VOCODER, PROP_VOCOS_MODEL, PROP_HIFT_MODEL, PROP_S3GEN_MODEL,
       PROP_SEED, PROP_GREEDY, PROP_STREAMING, PROP_CHUNK_TOKENS, PROP_LEFT_CONTEXT, PROP_LANGUAGE,
       PROP_WATERMARK, PROP_WATERMARK_MODEL, PROP_WATERMARK_MODE };

// How s3genmel decodes: whole utterances (exact), or the bounded-cost window
// (docs/s3gen-streaming.md); auto picks the window when upstream is live.
typedef enum { TTS_STREAMING_AUTO, TTS_STREAMING_OFF, TTS_STREAMING_ON } GstChatterboxTtsStreaming;

static GType gst_chatterbox_tts_streaming_get_type() {
  static GType type = 0;
  static const GEnumValue values[] = {
      {TTS_STREAMING_AUTO, "Window streaming when the pipeline is live, whole utterances otherwise", "auto"},
      {TTS_STREAMING_OFF, "Whole utterances (exact)", "off"},
      {TTS_STREAMING_ON, "Window streaming always", "on"},
      {0, nullptr, nullptr}};
  if (g_once_init_enter(&type)) g_once_init_leave(&type, g_enum_register_static("GstChatterboxTtsStreaming", values));
  return type;
}

// Window defaults (bench/results/live.md).
static const guint kDefaultChunkTokens = 25;
static const gint kDefaultLeftContext = 50;

struct _GstChatterboxTts {
  GstBin parent;
  GstElement* t3;
  GstElement* s3gen;
  GstElement* vocoder;
  gchar* model_dir;
  gchar* voice;
  gchar* vocos_model;
  gchar* hift_model;
  gchar* s3gen_model;
  gchar* language;  // t3's language (multilingual models)
  guint64 seed;
  gboolean greedy;
  GstChatterboxTtsStreaming streaming;
  guint chunk_tokens;
  gint left_context;
  gboolean streaming_now;  // what s3genmel was last set to
  gchar* dir_error;  // why model-dir cannot be used (posted at NULL -> READY), or NULL
  // Perth watermark: perthmark between the vocoder and the src pad when a model is found
  GstElement* perth;  // in the bin, or NULL
  gboolean watermark;
  gchar* watermark_model;
  gint watermark_mode;  // GstPerthMarkMode
  gboolean warned_unmarked;
};

G_DEFINE_TYPE(GstChatterboxTts, gst_chatterbox_tts, GST_TYPE_BIN)
GST_ELEMENT_REGISTER_DEFINE(chatterboxtts, "chatterboxtts", GST_RANK_NONE, GST_TYPE_CHATTERBOX_TTS)

static GstStaticPadTemplate sink_template =
    GST_STATIC_PAD_TEMPLATE("sink", GST_PAD_SINK, GST_PAD_ALWAYS, GST_STATIC_CAPS("text/x-raw, format=(string)utf8"));
static GstStaticPadTemplate src_template = GST_STATIC_PAD_TEMPLATE(
    "src", GST_PAD_SRC, GST_PAD_ALWAYS,
    GST_STATIC_CAPS("audio/x-raw, format=(string)F32LE, layout=(string)interleaved, channels=(int)1, "
                    "rate=(int)[1, MAX]"));

static std::string in_dir(const gchar* dir, const char* name) {
  gchar* p = g_build_filename(dir, name, nullptr);
  std::string s = p;
  g_free(p);
  return s;
}

// Points the children at the files of the model directory (Chatterbox, or
// Turbo / Nano with the mean-flow S3Gen); explicit properties win over the
// directory's files. A directory that cannot serve is remembered in
// dir_error, listing everything it lacks, and refused at READY.
static void configure(GstChatterboxTts* self) {
  const gchar* dir = self->model_dir;
  g_clear_pointer(&self->dir_error, g_free);
  std::string voice = self->voice ? self->voice : "";
  std::string s3gen = self->s3gen_model ? self->s3gen_model : "";
  std::string vocos = self->vocos_model ? self->vocos_model : "";
  if (dir) {
    try {
      const chatterbox::t3::ModelDirLayout L = chatterbox::t3::inspect_model_dir(dir);
      std::string missing;
      for (const auto& m : L.missing) {
        if ((m.role == "conds" && self->voice) || (m.role == "s3gen" && self->s3gen_model)) continue;  // given explicitly
        missing += (missing.empty() ? "" : ", ") + m.what;
      }
      if (!missing.empty())
        self->dir_error = g_strdup_printf("model-dir '%s' holds a %s model (%s) but lacks: %s", dir,
                                          chatterbox::t3::kind_name(L.kind), L.t3.c_str(), missing.c_str());
      g_object_set(self->t3, "model", L.t3.c_str(), "tokenizer", L.tokenizer.c_str(), nullptr);
      if (voice.empty()) voice = L.conds;
      if (s3gen.empty()) s3gen = L.s3gen;
      if (vocos.empty() && L.has_vocos) vocos = L.vocos;
      // Turbo's T3 is paired with the mean-flow decoder: anything else is
      // refused by s3genmel at READY.
      const bool turbo = L.kind == chatterbox::t3::ModelDirKind::Turbo || L.kind == chatterbox::t3::ModelDirKind::Nano;
      gst_util_set_object_arg(G_OBJECT(self->s3gen), "meanflow", turbo ? "on" : "auto");
    } catch (const std::exception& e) {
      self->dir_error = g_strdup(e.what());
    }
  }
  if (!s3gen.empty()) g_object_set(self->s3gen, "model", s3gen.c_str(), nullptr);
  if (!voice.empty()) g_object_set(self->t3, "voice", voice.c_str(), nullptr);
  if (!voice.empty()) g_object_set(self->s3gen, "voice", voice.c_str(), nullptr);
  // HiFT lives inside the s3gen checkpoint (mel2wav.); a Vocos for S3Gen
  // features may sit in the directory as vocos.safetensors.
  std::string hift = self->hift_model ? self->hift_model : s3gen;
  if (!hift.empty()) g_object_set(self->vocoder, "hift-model", hift.c_str(), nullptr);
  if (!vocos.empty()) g_object_set(self->vocoder, "vocos-model", vocos.c_str(), nullptr);
  g_object_set(self->t3, "seed", self->seed, "greedy", self->greedy, "language", self->language, nullptr);
  g_object_set(self->s3gen, "seed", self->seed, nullptr);
}

// Is the text source live? The latency query upstream of the bin says so
// (a live source: appsrc is-live=true, a network or capture source).
static gboolean upstream_is_live(GstChatterboxTts* self) {
  GstPad* sink = gst_element_get_static_pad(GST_ELEMENT(self), "sink");
  GstQuery* q = gst_query_new_latency();
  gboolean live = FALSE;
  if (gst_pad_peer_query(sink, q)) gst_query_parse_latency(q, &live, nullptr, nullptr);
  gst_query_unref(q);
  gst_object_unref(sink);
  return live;
}

// Sets s3genmel's decoding mode from `streaming` (and, for auto, from the
// liveness of the pipeline). s3genmel applies it from its next utterance
// and posts a LATENCY message when its latency changes.
static void apply_streaming(GstChatterboxTts* self, gboolean probe_live) {
  GST_OBJECT_LOCK(self);
  const GstChatterboxTtsStreaming mode = self->streaming;
  const guint chunk = self->chunk_tokens;
  const gint left = self->left_context;
  GST_OBJECT_UNLOCK(self);
  gboolean on = mode == TTS_STREAMING_ON;
  if (mode == TTS_STREAMING_AUTO) on = probe_live ? upstream_is_live(self) : self->streaming_now;
  GST_INFO_OBJECT(self, "s3genmel: %s", on ? "window streaming" : "whole utterances");
  self->streaming_now = on;
  if (on)
    g_object_set(self->s3gen, "left-context", left, "chunk-tokens", chunk, nullptr);
  else
    g_object_set(self->s3gen, "chunk-tokens", 0u, "left-context", -1, nullptr);
}

// Each text buffer: streaming=auto asks again before t3 turns it into tokens
// (a source may become live or not after the state changes, e.g. a harness
// or an appsrc whose is-live is set late).
static GstPadProbeReturn text_probe(GstPad*, GstPadProbeInfo*, gpointer user) {
  GstChatterboxTts* self = GST_CHATTERBOX_TTS(user);
  GST_OBJECT_LOCK(self);
  const bool automatic = self->streaming == TTS_STREAMING_AUTO;
  GST_OBJECT_UNLOCK(self);
  if (automatic) apply_streaming(self, TRUE);
  return GST_PAD_PROBE_OK;
}

// Upstream's CheckpointManager.load_latest: the perth_net_<step>.pth.tar with
// the highest step in the directory ("" if none).
static std::string find_perth_model(const gchar* dir) {
  if (!dir) return "";
  namespace fs = std::filesystem;
  std::error_code ec;
  std::string best;
  long long best_step = -1;
  for (const auto& e : fs::directory_iterator(dir, ec)) {
    const std::string name = e.path().filename().string();
    const std::string pre = "perth_net_", ext = ".pth.tar";
    if (name.size() <= pre.size() + ext.size() || name.rfind(pre, 0) != 0 ||
        name.compare(name.size() - ext.size(), ext.size(), ext) != 0)
      continue;
    const std::string num = name.substr(pre.size(), name.size() - pre.size() - ext.size());
    long long step = -1;
    try {
      step = std::stoll(num);
    } catch (const std::exception&) {
      continue;
    }
    if (step > best_step) {
      best_step = step;
      best = e.path().string();
    }
  }
  return best;
}

// Puts perthmark before the src pad when watermarking is on and a model is
// found, takes it out otherwise (NULL state only).
static void place_watermark(GstChatterboxTts* self) {
  const std::string model = self->watermark_model ? self->watermark_model : find_perth_model(self->model_dir);
  const bool want = self->watermark && !model.empty();
  GstPad* ghost = gst_element_get_static_pad(GST_ELEMENT(self), "src");
  GstPad* voc_src = gst_element_get_static_pad(self->vocoder, "src");
  if (want) {
    if (!self->perth) {
      self->perth = gst_element_factory_make("perthmark", "watermark");
      if (!self->perth) {
        GST_ELEMENT_WARNING(self, CORE, MISSING_PLUGIN, ("perthmark is missing: the output is NOT watermarked"),
                            (nullptr));
      } else {
        gst_bin_add(GST_BIN(self), self->perth);
        gst_ghost_pad_set_target(GST_GHOST_PAD(ghost), nullptr);  // frees the vocoder's src pad
        if (!gst_element_link(self->vocoder, self->perth))
          GST_ELEMENT_WARNING(self, CORE, NEGOTIATION, ("cannot link perthmark: the output is NOT watermarked"),
                              (nullptr));
        GstPad* psrc = gst_element_get_static_pad(self->perth, "src");
        gst_ghost_pad_set_target(GST_GHOST_PAD(ghost), psrc);
        gst_object_unref(psrc);
      }
    }
    if (self->perth) {
      g_object_set(self->perth, "model", model.c_str(), "mode", self->watermark_mode, nullptr);
      GST_INFO_OBJECT(self, "watermarking with Perth model %s", model.c_str());
    }
  } else {
    if (self->perth) {
      gst_ghost_pad_set_target(GST_GHOST_PAD(ghost), nullptr);
      gst_element_unlink(self->vocoder, self->perth);
      gst_ghost_pad_set_target(GST_GHOST_PAD(ghost), voc_src);
      gst_element_set_state(self->perth, GST_STATE_NULL);
      gst_bin_remove(GST_BIN(self), self->perth);
      self->perth = nullptr;
    }
    if (self->watermark && !self->warned_unmarked) {
      self->warned_unmarked = TRUE;
      GST_ELEMENT_WARNING(self, RESOURCE, NOT_FOUND,
                          ("No Perth watermark model found: the output is NOT watermarked"),
                          ("put perth_net_250000.pth.tar (resemble-perth: perth/perth_net/pretrained/implicit/) in "
                           "model-dir or set watermark-model=PATH; watermark=false silences this"));
    } else if (!self->watermark) {
      GST_INFO_OBJECT(self, "watermark=false: the output is not watermarked");
    }
  }
  gst_object_unref(voc_src);
  gst_object_unref(ghost);
}

static GstStateChangeReturn gst_chatterbox_tts_change_state(GstElement* element, GstStateChange transition) {
  GstChatterboxTts* self = GST_CHATTERBOX_TTS(element);
  // Live sources answer the latency query by READY->PAUSED at the latest
  // when they are linked; PAUSED->PLAYING asks again (a live pipeline's data
  // flows only in PLAYING, so s3genmel's first utterance sees the result).
  if (transition == GST_STATE_CHANGE_READY_TO_PAUSED || transition == GST_STATE_CHANGE_PAUSED_TO_PLAYING)
    apply_streaming(self, TRUE);
  if (transition == GST_STATE_CHANGE_NULL_TO_READY) {
    configure(self);  // the directory as it is now
    place_watermark(self);
    if (self->dir_error) {
      GST_ELEMENT_ERROR(self, RESOURCE, NOT_FOUND, ("%s", self->dir_error),
                        ("a Chatterbox model directory holds t3_cfg.safetensors, s3gen.safetensors, tokenizer.json, "
                         "conds.pt; a Multilingual one t3_mtl23ls_v3.safetensors (or _v2), s3gen.safetensors, "
                         "grapheme_mtl_merged_expanded_v1.json, conds.pt (Cangjie5_TC.json for Chinese); "
                         "a Turbo/Nano one t3_turbo_v1.safetensors or t3_nano_v1.safetensors, "
                         "s3gen_meanflow.safetensors, the tokenizer (tokenizer.json or vocab.json + merges.txt), "
                         "conds.pt"));
      return GST_STATE_CHANGE_FAILURE;
    }
  }
  return GST_ELEMENT_CLASS(gst_chatterbox_tts_parent_class)->change_state(element, transition);
}

static void set_string(gchar** dst, const GValue* v) {
  g_free(*dst);
  *dst = g_value_dup_string(v);
}

static void gst_chatterbox_tts_set_property(GObject* object, guint id, const GValue* value, GParamSpec* pspec) {
  GstChatterboxTts* self = GST_CHATTERBOX_TTS(object);
  GST_OBJECT_LOCK(self);
  const bool stopped = chatterbox::element_is_stopped(GST_ELEMENT(self));
  GST_OBJECT_UNLOCK(self);
  const bool live_setting = id == PROP_SEED || id == PROP_GREEDY || id == PROP_STREAMING || id == PROP_CHUNK_TOKENS ||
                            id == PROP_LEFT_CONTEXT || id == PROP_LANGUAGE;
  if (!stopped && !live_setting) {
    // Files (and the vocoder kind) are loaded in READY: refused, as by the children.
    chatterbox::warn_load_time_property(GST_ELEMENT(self), pspec);
    return;
  }
  switch (id) {
    case PROP_MODEL_DIR: set_string(&self->model_dir, value); break;
    case PROP_VOICE: set_string(&self->voice, value); break;
    case PROP_VOCOS_MODEL: set_string(&self->vocos_model, value); break;
    case PROP_HIFT_MODEL: set_string(&self->hift_model, value); break;
    case PROP_S3GEN_MODEL: set_string(&self->s3gen_model, value); break;
    case PROP_SEED: self->seed = g_value_get_uint64(value); break;
    case PROP_GREEDY: self->greedy = g_value_get_boolean(value); break;
    case PROP_LANGUAGE: set_string(&self->language, value); break;
    case PROP_WATERMARK: self->watermark = g_value_get_boolean(value); break;
    case PROP_WATERMARK_MODEL: set_string(&self->watermark_model, value); break;
    case PROP_WATERMARK_MODE: self->watermark_mode = g_value_get_enum(value); break;
    case PROP_VOCODER: g_object_set_property(G_OBJECT(self->vocoder), "vocoder", value); return;
    case PROP_STREAMING:
    case PROP_CHUNK_TOKENS:
    case PROP_LEFT_CONTEXT:
      GST_OBJECT_LOCK(self);
      if (id == PROP_STREAMING) self->streaming = static_cast<GstChatterboxTtsStreaming>(g_value_get_enum(value));
      if (id == PROP_CHUNK_TOKENS) self->chunk_tokens = g_value_get_uint(value);
      if (id == PROP_LEFT_CONTEXT) self->left_context = g_value_get_int(value);
      GST_OBJECT_UNLOCK(self);
      apply_streaming(self, !stopped);
      return;
    default: G_OBJECT_WARN_INVALID_PROPERTY_ID(object, id, pspec); return;
  }
  if (stopped) {
    configure(self);
  } else {
    // Live settings only (t3 applies them from its next text buffer, s3genmel
    // from its next utterance); re-setting the files would be refused.
    g_object_set(self->t3, "seed", self->seed, "greedy", self->greedy, "language", self->language, nullptr);
    g_object_set(self->s3gen, "seed", self->seed, nullptr);
  }
}

static void get_string(GValue* value, const gchar* s) { g_value_set_string(value, s); }

static void gst_chatterbox_tts_get_property(GObject* object, guint id, GValue* value, GParamSpec* pspec) {
  GstChatterboxTts* self = GST_CHATTERBOX_TTS(object);
  switch (id) {
    case PROP_MODEL_DIR: get_string(value, self->model_dir); break;
    case PROP_VOICE: get_string(value, self->voice); break;
    case PROP_VOCOS_MODEL: get_string(value, self->vocos_model); break;
    case PROP_HIFT_MODEL: get_string(value, self->hift_model); break;
    case PROP_S3GEN_MODEL: get_string(value, self->s3gen_model); break;
    case PROP_SEED: g_value_set_uint64(value, self->seed); break;
    case PROP_GREEDY: g_value_set_boolean(value, self->greedy); break;
    case PROP_LANGUAGE: get_string(value, self->language); break;
    case PROP_WATERMARK: g_value_set_boolean(value, self->watermark); break;
    case PROP_WATERMARK_MODEL: get_string(value, self->watermark_model); break;
    case PROP_WATERMARK_MODE: g_value_set_enum(value, self->watermark_mode); break;
    case PROP_VOCODER: g_object_get_property(G_OBJECT(self->vocoder), "vocoder", value); break;
    case PROP_STREAMING: g_value_set_enum(value, self->streaming); break;
    case PROP_CHUNK_TOKENS: g_value_set_uint(value, self->chunk_tokens); break;
    case PROP_LEFT_CONTEXT: g_value_set_int(value, self->left_context); break;
    default: G_OBJECT_WARN_INVALID_PROPERTY_ID(object, id, pspec);
  }
}

static void gst_chatterbox_tts_finalize(GObject* object) {
  GstChatterboxTts* self = GST_CHATTERBOX_TTS(object);
  g_free(self->model_dir);
  g_free(self->voice);
  g_free(self->vocos_model);
  g_free(self->hift_model);
  g_free(self->s3gen_model);
  g_free(self->language);
  g_free(self->dir_error);
  g_free(self->watermark_model);
  G_OBJECT_CLASS(gst_chatterbox_tts_parent_class)->finalize(object);
}

static void gst_chatterbox_tts_class_init(GstChatterboxTtsClass* klass) {
  GObjectClass* gobject_class = G_OBJECT_CLASS(klass);
  GstElementClass* element_class = GST_ELEMENT_CLASS(klass);
  GST_DEBUG_CATEGORY_INIT(chatterbox_tts_debug, "chatterboxtts", 0, "Chatterbox TTS bin");
  gobject_class->set_property = gst_chatterbox_tts_set_property;
  gobject_class->get_property = gst_chatterbox_tts_get_property;
  gobject_class->finalize = gst_chatterbox_tts_finalize;
  element_class->change_state = gst_chatterbox_tts_change_state;
  const GParamFlags rw = static_cast<GParamFlags>(G_PARAM_READWRITE | G_PARAM_STATIC_STRINGS);
  g_object_class_install_property(gobject_class, PROP_MODEL_DIR,
      g_param_spec_string("model-dir", "Model directory",
                          "Directory holding Chatterbox's files: t3_cfg.safetensors, s3gen.safetensors, "
                          "tokenizer.json, conds.pt; or Chatterbox Multilingual's: t3_mtl23ls_v3.safetensors and/or "
                          "t3_mtl23ls_v2.safetensors (V3 when both), s3gen.safetensors, "
                          "grapheme_mtl_merged_expanded_v1.json, conds.pt, Cangjie5_TC.json (Chinese); "
                          "or Chatterbox-Turbo's / -Nano's: t3_turbo_v1.safetensors or "
                          "t3_nano_v1.safetensors, s3gen_meanflow.safetensors (run as mean flow), the tokenizer "
                          "(tokenizer.json or vocab.json + merges.txt + added_tokens.json), conds.pt. Optionally "
                          "vocos.safetensors (a Vocos for S3Gen mels). Which model it is comes from the T3 file; a "
                          "mixed or incomplete directory is refused at READY, listing what is missing",
                          nullptr, rw));
  g_object_class_install_property(gobject_class, PROP_VOICE,
      g_param_spec_string("voice", "Voice",
                          "Conds file for T3 and S3Gen, or a reference recording (each reads it as t3 and s3genmel "
                          "do; default: conds.pt in model-dir)",
                          nullptr, rw));
  g_object_class_install_property(gobject_class, PROP_VOCODER,
      g_param_spec_enum("vocoder", "Vocoder",
                        "vocos or hift (default from CHATTERBOX_USE_VOCOS: false/0 selects hift, otherwise vocos)",
                        gst_chatterbox_vocoder_kind_get_type(), gst_chatterbox_vocoder_default_kind(), rw));
  g_object_class_install_property(gobject_class, PROP_VOCOS_MODEL,
      g_param_spec_string("vocos-model", "Vocos model",
                          "Vocos for S3Gen mels (default: vocos.safetensors in model-dir, else vocosdec's default)",
                          nullptr, rw));
  g_object_class_install_property(gobject_class, PROP_HIFT_MODEL,
      g_param_spec_string("hift-model", "HiFT model", "HiFT weights (default: the s3gen model's mel2wav. part)", nullptr,
                          rw));
  g_object_class_install_property(gobject_class, PROP_S3GEN_MODEL,
      g_param_spec_string("s3gen-model", "S3Gen model",
                          "Flow model (default: s3gen.safetensors, or s3gen_meanflow.safetensors for Turbo/Nano, in "
                          "model-dir)",
                          nullptr,
                          rw));
  g_object_class_install_property(gobject_class, PROP_SEED,
      g_param_spec_uint64("seed", "Seed",
                          "Seed of T3's sampler and S3Gen's noise. Changeable while playing (applies from the next "
                          "text buffer / utterance); the files and the vocoder change in the NULL state only.",
                          0, G_MAXUINT64, 0, static_cast<GParamFlags>(rw | GST_PARAM_MUTABLE_PLAYING)));
  g_object_class_install_property(gobject_class, PROP_LANGUAGE,
      g_param_spec_string("language", "Language",
                          "Language of the text (multilingual model directories): one of ar da de el en es fi fr he "
                          "hi it ja ko ms nl no pl pt ru sv sw tr zh (NULL: en), passed to t3. Changeable while "
                          "playing (applies from the next text buffer).",
                          nullptr, static_cast<GParamFlags>(rw | GST_PARAM_MUTABLE_PLAYING)));
  g_object_class_install_property(gobject_class, PROP_GREEDY,
      g_param_spec_boolean("greedy", "Greedy",
                           "T3 takes the most likely token instead of sampling. Changeable while playing (applies "
                           "from the next text buffer).",
                           FALSE, static_cast<GParamFlags>(rw | GST_PARAM_MUTABLE_PLAYING)));
  const GParamFlags live = static_cast<GParamFlags>(rw | GST_PARAM_MUTABLE_PLAYING);
  g_object_class_install_property(gobject_class, PROP_STREAMING,
      g_param_spec_enum("streaming", "Streaming",
                        "How s3genmel decodes: off = whole utterances (exact, first audio after the whole utterance); "
                        "on = bounded-cost window streaming (chunk-tokens, left-context; first audio after one "
                        "chunk, the mel deviates from the whole decode, see bench/results/live.md); auto (default) = "
                        "on when the text source is live (its latency query says live: appsrc is-live=true, a "
                        "network source), asked going to PAUSED, to PLAYING and at each text buffer. Changeable while playing "
                        "(applies from the next utterance).",
                        gst_chatterbox_tts_streaming_get_type(), TTS_STREAMING_AUTO, live));
  g_object_class_install_property(gobject_class, PROP_CHUNK_TOKENS,
      g_param_spec_uint("chunk-tokens", "Chunk tokens",
                        "Tokens (40 ms each) per streamed chunk when streaming; s3genmel's latency is (this + 3) x "
                        "40 ms. Changeable while playing.",
                        1, 100000, kDefaultChunkTokens, live));
  g_object_class_install_property(gobject_class, PROP_LEFT_CONTEXT,
      g_param_spec_int("left-context", "Left context",
                       "Tokens of left context each streamed chunk is decoded with (s3genmel left-context; -1: "
                       "upstream's re-decode-everything rule). Changeable while playing.",
                       -1, 100000, kDefaultLeftContext, live));
  g_object_class_install_property(gobject_class, PROP_WATERMARK,
      g_param_spec_boolean("watermark", "Watermark",
                           "Mark the output with Resemble AI's Perth implicit watermark (perthmark) when a Perth model "
                           "is found (watermark-model, or perth_net_*.pth.tar in model-dir); without one the output is "
                           "not marked and a warning says so once",
                           TRUE, rw));
  g_object_class_install_property(gobject_class, PROP_WATERMARK_MODEL,
      g_param_spec_string("watermark-model", "Watermark model",
                          "Perth weights (default: the perth_net_<step>.pth.tar with the highest step in model-dir)",
                          nullptr, rw));
  g_object_class_install_property(gobject_class, PROP_WATERMARK_MODE,
      g_param_spec_enum("watermark-mode", "Watermark mode",
                        "perthmark's mode: stream (default: marks the audio as it is synthesised, ~0.35 s look-ahead) "
                        "or utterance (upstream's exact mark; each utterance is held until it ends)",
                        GST_TYPE_PERTH_MARK_MODE, 1, rw));
  gst_element_class_add_static_pad_template(element_class, &sink_template);
  gst_element_class_add_static_pad_template(element_class, &src_template);
  gst_element_class_set_static_metadata(element_class, "Chatterbox text to speech", "Filter/Converter/Text/Audio/Bin",
      "UTF-8 text in, 24 kHz speech out: t3 ! s3genmel ! chatterboxvocoder from one model directory",
      "gst-chatterbox developers");
}

static void gst_chatterbox_tts_init(GstChatterboxTts* self) {
  self->t3 = gst_element_factory_make("t3", "t3");
  self->s3gen = gst_element_factory_make("s3genmel", "s3genmel");
  self->vocoder = gst_element_factory_make("chatterboxvocoder", "vocoder");
  g_return_if_fail(self->t3 && self->s3gen && self->vocoder);
  gst_bin_add_many(GST_BIN(self), self->t3, self->s3gen, self->vocoder, nullptr);
  gst_element_link_many(self->t3, self->s3gen, self->vocoder, nullptr);
  GstPad* sink = gst_element_get_static_pad(self->t3, "sink");
  GstPad* src = gst_element_get_static_pad(self->vocoder, "src");
  GstElementClass* klass = GST_ELEMENT_GET_CLASS(self);
  GstPad* ghost_sink = gst_ghost_pad_new_from_template("sink", sink, gst_element_class_get_pad_template(klass, "sink"));
  gst_pad_add_probe(ghost_sink, GST_PAD_PROBE_TYPE_BUFFER, text_probe, self, nullptr);
  gst_element_add_pad(GST_ELEMENT(self), ghost_sink);
  gst_element_add_pad(GST_ELEMENT(self),
                      gst_ghost_pad_new_from_template("src", src, gst_element_class_get_pad_template(klass, "src")));
  gst_object_unref(sink);
  gst_object_unref(src);
  self->streaming = TTS_STREAMING_AUTO;
  self->chunk_tokens = kDefaultChunkTokens;
  self->left_context = kDefaultLeftContext;
  self->perth = nullptr;
  self->watermark = TRUE;
  self->watermark_model = nullptr;
  self->watermark_mode = 1;  // stream
  self->warned_unmarked = FALSE;
}
