#include "elements/s3gen/gsts3genmel.h"

#include "elements/s3gen/flow/s3gen_flow.h"
#include "elements/voice/conditionals/voice_file.h"
#include "gst-plugins/caps.h"
#include "gst-plugins/core/checkpoint.h"
#include "gst-plugins/core/model_cache.h"
#include "gst-plugins/elements.h"
#include "gst-plugins/load_time_property.h"
#include "gst-plugins/output_timing.h"

#include <ATen/ATen.h>

#include <cstring>
#include <memory>
#include <optional>
#include <vector>

GST_DEBUG_CATEGORY_STATIC(s3gen_mel_debug);
#define GST_CAT_DEFAULT s3gen_mel_debug

enum { PROP_0, PROP_MODEL, PROP_VOICE, PROP_N_TIMESTEPS, PROP_CFG_RATE, PROP_SEED, PROP_NOISE_FILE, PROP_DEVICE,
       PROP_CHUNK_TOKENS, PROP_PRECISION, PROP_MEANFLOW, PROP_APPEND_SILENCE, PROP_LEFT_CONTEXT, PROP_CONTEXT_MEL };

// meanflow / append-silence: auto follows the model (Turbo or not).
typedef enum { S3GEN_MEL_AUTO, S3GEN_MEL_OFF, S3GEN_MEL_ON } GstS3GenMelSwitch;

static GType gst_s3gen_mel_switch_get_type() {
  static GType type = 0;
  static const GEnumValue values[] = {
      {S3GEN_MEL_AUTO, "Follow the model", "auto"},
      {S3GEN_MEL_OFF, "Off", "off"},
      {S3GEN_MEL_ON, "On", "on"},
      {0, nullptr, nullptr}};
  if (g_once_init_enter(&type)) g_once_init_leave(&type, g_enum_register_static("GstS3GenMelSwitch", values));
  return type;
}

// Chatterbox's silence token (S3GEN_SIL); ChatterboxTurboTTS.generate appends
// three of them (pre_lookahead_len) before decoding.
static const int64_t kSilenceToken = 4299;
// The flow's pre-lookahead (pre_lookahead_len of every Chatterbox S3Gen).
static const guint kLookaheadTokens = 3;

struct _GstS3GenMel {
  GstElement parent;
  GstPad* sinkpad;
  GstPad* srcpad;

  // Properties (object lock).
  gchar* model;
  gchar* voice_path;
  gchar* noise_file;
  gchar* device;
  gchar* precision;
  GstS3GenMelSwitch meanflow;        // expectation checked at load
  GstS3GenMelSwitch append_silence;  // auto: on for mean-flow models, as upstream's Turbo TTS
  gint n_timesteps;  // 0: the model's (10, or 2 for mean flow)
  gdouble cfg_rate;  // < 0: the model's (0.7)
  guint64 seed;
  guint chunk_tokens;  // 0: whole utterance (exact)
  gint left_context;   // -1: upstream's re-decode-all rule; >= 0: bounded window (tokens)
  gboolean context_mel;  // window mode: context frames conditioned on the emitted mel

  // Loaded in NULL -> READY. The flow weights are shared with every
  // s3genmel naming the same file (ModelCache).
  std::shared_ptr<const chatterbox::S3GenFlow> flow;
  std::optional<chatterbox::S3GenVoice> voice;
  // When voice= is reference audio: embed_ref's result, shared with every
  // s3genmel naming the same recording and model (ModelCache).
  std::shared_ptr<const chatterbox::voice::S3GenRef> voice_ref;
  at::Tensor noise;  // from noise-file, or undefined

  // Current utterance.
  std::vector<int64_t> tokens;  // whole-utterance mode: everything; streaming: not yet pushed
  std::vector<uint8_t> partial;  // bytes of a token split across buffers (< 4)
  // The live settings, read under the object lock when an utterance starts
  // (a change while playing applies from the next utterance).
  gint cur_n_timesteps;
  gdouble cur_cfg_rate;
  guint64 cur_seed;
  guint cur_chunk_tokens;
  gint cur_left_context;
  gboolean cur_context_mel;
  gboolean cur_append_silence;
  std::unique_ptr<chatterbox::S3GenFlowStreamer> streamer;
  gint64 frames_out;
  guint64 utterances;
  gboolean in_utterance;
  chatterbox::OutputTiming timing;
  gboolean have_caps;
};

G_DEFINE_TYPE(GstS3GenMel, gst_s3gen_mel, GST_TYPE_ELEMENT)
GST_ELEMENT_REGISTER_DEFINE(s3genmel, "s3genmel", GST_RANK_NONE, GST_TYPE_S3GEN_MEL)

static GstStaticPadTemplate sink_template =
    GST_STATIC_PAD_TEMPLATE("sink", GST_PAD_SINK, GST_PAD_ALWAYS, GST_STATIC_CAPS(CHATTERBOX_TOKENS_CAPS));
static GstStaticPadTemplate src_template = GST_STATIC_PAD_TEMPLATE(
    "src", GST_PAD_SRC, GST_PAD_ALWAYS,
    GST_STATIC_CAPS(CHATTERBOX_MEL_MEDIA_TYPE ", format=(string)F32LE, layout=(string)frame-major, log=(string)ln, "
                                              "rate=(int)24000, n-mels=(int)80, hop-length=(int)480"));

// mel [1, 80, k] -> one frame-major buffer stamped in audio time.
static GstFlowReturn push_mel(GstS3GenMel* self, const at::Tensor& mel) {
  const int64_t k = mel.size(2);
  if (k == 0) return GST_FLOW_OK;
  if (!at::isfinite(mel).all().item<bool>()) {
    GST_ELEMENT_ERROR(self, STREAM, FAILED, ("The flow model produced NaN or infinite mel values"),
                      ("check the model and voice files"));
    return GST_FLOW_ERROR;
  }
  self->timing.push_segment(self->srcpad);
  at::Tensor frames = mel[0].transpose(0, 1).contiguous();  // [k, 80]
  GstBuffer* buf = gst_buffer_new_allocate(nullptr, frames.numel() * sizeof(float), nullptr);
  gst_buffer_fill(buf, 0, frames.data_ptr<float>(), frames.numel() * sizeof(float));
  const chatterbox::MelFormat f = chatterbox::MelFormat::s3gen();
  const gint64 first = self->frames_out;
  self->timing.stamp(buf, first, k, f.rate, f.hop_length);  // frames at rate/hop per second
  self->frames_out += k;
  return gst_pad_push(self->srcpad, buf);
}

static at::Tensor token_tensor(const std::vector<int64_t>& ids) {
  return at::tensor(ids, at::kLong).reshape({1, static_cast<int64_t>(ids.size())});
}

static chatterbox::S3GenStreamerOptions streamer_options(GstS3GenMel* self) {
  chatterbox::S3GenStreamerOptions o;
  o.n_timesteps = self->cur_n_timesteps > 0 ? self->cur_n_timesteps : -1;
  o.cfg_rate = self->cur_cfg_rate;
  o.seed = self->cur_seed + self->utterances;
  o.append_silence_on_finish = self->cur_append_silence;
  o.silence_token = kSilenceToken;
  o.left_context = self->cur_left_context;
  o.chunk_tokens = self->cur_chunk_tokens;
  o.context_cond = self->cur_context_mel;
  return o;
}

// Bytes of a token that never completed: dropped, visibly.
static void drop_partial_token(GstS3GenMel* self) {
  if (self->partial.empty()) return;
  GST_ELEMENT_WARNING(self, STREAM, DECODE,
                      ("Dropping %zu trailing bytes: not a whole S32 token", self->partial.size()),
                      ("the utterance ended in the middle of a 4-byte token id"));
  self->partial.clear();
}

// Ends the current utterance: decodes what is left and pushes it.
static GstFlowReturn finish_utterance(GstS3GenMel* self) {
  drop_partial_token(self);
  if (!self->in_utterance) return GST_FLOW_OK;
  self->in_utterance = FALSE;
  GstFlowReturn ret = GST_FLOW_OK;
  try {
    at::Tensor mel;
    if (self->streamer) {
      if (!self->tokens.empty()) ret = push_mel(self, self->streamer->push(token_tensor(self->tokens)));
      self->tokens.clear();
      if (ret == GST_FLOW_OK && self->streamer->tokens() > 0) ret = push_mel(self, self->streamer->finish());
      self->streamer.reset();
    } else if (!self->tokens.empty()) {
      if (self->cur_append_silence)
        self->tokens.insert(self->tokens.end(), self->flow->config().pre_lookahead_len, kSilenceToken);
      chatterbox::S3GenInferenceOptions o;
      o.n_timesteps = self->cur_n_timesteps > 0 ? self->cur_n_timesteps : -1;
      o.cfg_rate = self->cur_cfg_rate;
      o.seed = self->cur_seed + self->utterances;
      if (self->noise.defined()) o.noise = self->noise;
      GST_DEBUG_OBJECT(self, "decoding an utterance of %zu tokens", self->tokens.size());
      ret = push_mel(self, self->flow->inference(token_tensor(self->tokens), *self->voice, o));
      self->tokens.clear();
    }
  } catch (const std::exception& e) {
    self->tokens.clear();
    self->streamer.reset();
    GST_ELEMENT_ERROR(self, STREAM, FAILED, ("S3Gen flow failed"), ("%s", e.what()));
    ret = GST_FLOW_ERROR;
  }
  self->utterances++;
  self->frames_out = 0;
  return ret;
}

static GstFlowReturn gst_s3gen_mel_chain(GstPad*, GstObject* parent, GstBuffer* buf) {
  GstS3GenMel* self = GST_S3GEN_MEL(parent);
  GstFlowReturn ret = GST_FLOW_OK;
  if (GST_BUFFER_FLAG_IS_SET(buf, GST_BUFFER_FLAG_DISCONT) && self->in_utterance) ret = finish_utterance(self);
  if (ret != GST_FLOW_OK) {
    gst_buffer_unref(buf);
    return ret;
  }
  if (!self->in_utterance) {
    self->in_utterance = TRUE;
    self->frames_out = 0;
    self->timing.begin_utterance(buf);
    GST_OBJECT_LOCK(self);
    self->cur_n_timesteps = self->n_timesteps;
    self->cur_cfg_rate = self->cfg_rate;
    self->cur_seed = self->seed;
    self->cur_chunk_tokens = self->chunk_tokens;
    self->cur_left_context = self->left_context;
    self->cur_context_mel = self->context_mel;
    const GstS3GenMelSwitch silence = self->append_silence;
    GST_OBJECT_UNLOCK(self);
    self->cur_append_silence =
        silence == S3GEN_MEL_ON || (silence == S3GEN_MEL_AUTO && self->flow->meanflow());
    if (self->cur_chunk_tokens > 0)
      self->streamer = std::make_unique<chatterbox::S3GenFlowStreamer>(*self->flow, *self->voice, streamer_options(self));
  }
  GstMapInfo map;
  gst_buffer_map(buf, &map, GST_MAP_READ);
  // A token may straddle buffers (any byte source, e.g. filesrc blocksize):
  // its first bytes wait for the rest.
  std::vector<uint8_t> bytes(self->partial);
  bytes.insert(bytes.end(), map.data, map.data + map.size);
  gst_buffer_unmap(buf, &map);
  gst_buffer_unref(buf);
  const gsize n = bytes.size() / sizeof(gint32);
  self->partial.assign(bytes.begin() + n * sizeof(gint32), bytes.end());
  for (gsize i = 0; i < n; ++i) {
    gint32 id;
    std::memcpy(&id, bytes.data() + i * sizeof(gint32), sizeof id);
    id = GINT32_FROM_LE(id);
    // Upstream drops ids outside the codebook (T3's start/stop and unused ids).
    if (id < 0 || id >= 6561) {
      GST_WARNING_OBJECT(self, "dropping token id %d: outside the 6561-entry S3 codebook", id);
      continue;
    }
    self->tokens.push_back(id);
  }
  // Window mode: the streamer cuts its own chunks (each as soon as its
  // look-ahead is in). Upstream's rule: a decode every chunk-tokens tokens.
  const bool window = self->cur_left_context >= 0;
  if (self->streamer && !self->tokens.empty() && (window || self->tokens.size() >= self->cur_chunk_tokens)) {
    try {
      ret = push_mel(self, self->streamer->push(token_tensor(self->tokens)));
      self->tokens.clear();
    } catch (const std::exception& e) {
      GST_ELEMENT_ERROR(self, STREAM, FAILED, ("S3Gen flow failed"), ("%s", e.what()));
      return GST_FLOW_ERROR;
    }
  }
  return ret;
}

static gboolean gst_s3gen_mel_sink_event(GstPad* pad, GstObject* parent, GstEvent* event) {
  GstS3GenMel* self = GST_S3GEN_MEL(parent);
  switch (GST_EVENT_TYPE(event)) {
    case GST_EVENT_CAPS: {
      GstCaps* caps;
      gst_event_parse_caps(event, &caps);
      GstCaps* want = gst_caps_from_string(CHATTERBOX_TOKENS_CAPS);
      const bool fits = gst_caps_is_subset(caps, want);
      const std::string why = fits ? "" : chatterbox::explain_caps_mismatch(want, caps, "s3genmel");
      gst_caps_unref(want);
      gst_event_unref(event);
      if (!fits) {
        GST_ELEMENT_ERROR(self, CORE, NEGOTIATION,
                          ("s3genmel cannot take the speech tokens upstream offers: %s", why.c_str()),
                          ("s3genmel decodes Chatterbox's S3 tokens: %s", CHATTERBOX_TOKENS_CAPS));
        return FALSE;
      }
      GstCaps* out = chatterbox::mel_format_to_caps(chatterbox::MelFormat::s3gen());
      gboolean ok = gst_pad_set_caps(self->srcpad, out);
      gst_caps_unref(out);
      return ok;
    }
    case GST_EVENT_SEGMENT:
      self->timing.set_segment(event);
      gst_event_unref(event);
      return TRUE;
    case GST_EVENT_EOS:
      finish_utterance(self);
      self->timing.push_segment(self->srcpad);
      return gst_pad_push_event(self->srcpad, event);
    case GST_EVENT_CUSTOM_DOWNSTREAM:
      // t3 marks the end of each utterance: decode it now rather than at the
      // next utterance's DISCONT, then pass the mark on (vocoders drain on it).
      if (gst_event_has_name(event, "chatterbox/utterance-end")) {
        finish_utterance(self);
        // trim-tokens (t3, multilingual models: generate drops the final
        // token's audio) in mel frames for the vocoder, which drops their
        // samples from the audio it drains: upstream cuts the vocoded audio,
        // and the vocoder's output before the cut needs those frames
        // (tests/hift trim_before_vocoder_vs_after).
        guint trim = 0;
        if (gst_structure_get_uint(gst_event_get_structure(event), "trim-tokens", &trim) && trim > 0) {
          GstStructure* s = gst_structure_copy(gst_event_get_structure(event));
          gst_structure_set(s, "trim-frames", G_TYPE_UINT,
                            static_cast<guint>(trim * self->flow->config().token_mel_ratio), nullptr);
          gst_event_unref(event);
          event = gst_event_new_custom(GST_EVENT_CUSTOM_DOWNSTREAM, s);
        }
      }
      return gst_pad_event_default(pad, parent, event);
    case GST_EVENT_FLUSH_STOP:
      self->tokens.clear();
      self->partial.clear();
      self->streamer.reset();
      self->in_utterance = FALSE;
      // Utterances count from the last flush, as in t3: a seek back to the
      // start gives the same mel as the first play.
      self->utterances = 0;
      self->timing.flush();
      return gst_pad_push_event(self->srcpad, event);
    default:
      return gst_pad_event_default(pad, parent, event);
  }
}

static gboolean gst_s3gen_mel_sink_query(GstPad* pad, GstObject* parent, GstQuery* query) {
  if (GST_QUERY_TYPE(query) == GST_QUERY_ACCEPT_CAPS) {
    // Any speech tokens: other codebooks, vocabularies or rates are then
    // refused by the CAPS event with an ERROR naming the fields, instead of
    // the pad's silent accept-caps failure (upstream would only say
    // "not-negotiated"). The CAPS query stays exact.
    GstCaps* caps;
    gst_query_parse_accept_caps(query, &caps);
    gst_query_set_accept_caps_result(query, gst_caps_get_size(caps) == 1 &&
                                                gst_structure_has_name(gst_caps_get_structure(caps, 0),
                                                                       CHATTERBOX_TOKENS_MEDIA_TYPE));
    return TRUE;
  }
  return gst_pad_query_default(pad, parent, query);
}

static gboolean gst_s3gen_mel_src_query(GstPad* pad, GstObject* parent, GstQuery* query) {
  GstS3GenMel* self = GST_S3GEN_MEL(parent);
  if (GST_QUERY_TYPE(query) == GST_QUERY_CAPS) {
    chatterbox::answer_caps_query(query, chatterbox::mel_format_to_caps(chatterbox::MelFormat::s3gen()));
    return TRUE;
  }
  if (GST_QUERY_TYPE(query) == GST_QUERY_LATENCY) {
    // Streaming (either rule): a token's frames wait for the rest of its
    // chunk and the 3 look-ahead tokens after it, at most chunk-tokens + 3
    // tokens of 40 ms. Whole utterances: unbounded (the utterance length),
    // reported as no maximum.
    GST_OBJECT_LOCK(self);
    const guint chunk = self->chunk_tokens;
    GST_OBJECT_UNLOCK(self);
    const GstClockTime ours = chunk > 0 ? gst_util_uint64_scale_int(chunk + kLookaheadTokens, GST_SECOND, 25) : 0;
    return chatterbox::answer_latency_query(self->sinkpad, query, ours, /*bounded=*/chunk > 0);
  }
  return gst_pad_query_default(pad, parent, query);
}

static gboolean load(GstS3GenMel* self) {
  GST_OBJECT_LOCK(self);
  std::string model = self->model ? self->model : "";
  std::string voice = self->voice_path ? self->voice_path : "";
  std::string noise = self->noise_file ? self->noise_file : "";
  std::string device = self->device ? self->device : "cpu";
  chatterbox::S3GenLoadOptions lo;
  lo.device = device;
  lo.precision = self->precision ? self->precision : "f32";
  const GstS3GenMelSwitch want_meanflow = self->meanflow;
  GST_OBJECT_UNLOCK(self);
  if (model.empty()) {
    GST_ELEMENT_ERROR(self, RESOURCE, NOT_FOUND, ("No model given: set 'model' to Chatterbox's s3gen.safetensors"),
                      (nullptr));
    return FALSE;
  }
  if (voice.empty()) {
    GST_ELEMENT_ERROR(self, RESOURCE, NOT_FOUND,
                      ("No voice given: set 'voice' to a conds file (Chatterbox's conds.pt, or safetensors with "
                       "gen.prompt_token, gen.prompt_feat, gen.embedding)"),
                      (nullptr));
    return FALSE;
  }
  try {
    self->flow = chatterbox::ModelCache::global().get<chatterbox::S3GenFlow>(
        chatterbox::ModelCache::make_key("s3gen", {model}, device, "precision=" + lo.precision),
        [&] { return std::make_shared<const chatterbox::S3GenFlow>(chatterbox::S3GenFlow::load(model, lo)); });
  } catch (const std::exception& e) {
    GST_ELEMENT_ERROR(self, RESOURCE, OPEN_READ, ("Could not load model '%s': %s", model.c_str(), e.what()), (nullptr));
    return FALSE;
  }
  const bool is_meanflow = self->flow->meanflow();
  if ((want_meanflow == S3GEN_MEL_ON && !is_meanflow) || (want_meanflow == S3GEN_MEL_OFF && is_meanflow)) {
    GST_ELEMENT_ERROR(self, RESOURCE, SETTINGS,
                      ("meanflow=%s, but '%s' is %s", want_meanflow == S3GEN_MEL_ON ? "on" : "off", model.c_str(),
                       is_meanflow ? "a mean-flow (Chatterbox-Turbo) flow" : "a standard (CFM + CFG) flow"),
                      ("the time_embed_mixer tensor marks a mean-flow flow; set meanflow=auto to accept either"));
    self->flow.reset();
    return FALSE;
  }
  GST_INFO_OBJECT(self, "loaded %s flow from '%s' (%s, %s, %lld steps by default)",
                  is_meanflow ? "mean-flow (Turbo)" : "standard", model.c_str(), self->flow->device().c_str(),
                  self->flow->precision().c_str(), static_cast<long long>(self->flow->config().n_timesteps));
  try {
    chatterbox::S3GenVoice v;
    if (chatterbox::voice::is_reference_audio(voice)) {
      // Reference audio: upstream's embed_ref on its first 10 s, with the
      // tokenizer and speaker encoder of this model's checkpoint (Turbo's
      // reference preparation for a mean-flow model).
      using chatterbox::voice::Variant;
      self->voice_ref = chatterbox::voice::cached_s3gen_voice(voice, model, is_meanflow ? Variant::Turbo : Variant::Original);
      v = chatterbox::S3GenVoice{self->voice_ref->prompt_token, self->voice_ref->prompt_feat, self->voice_ref->embedding};
      for (const std::string& w : self->voice_ref->warnings)
        GST_ELEMENT_WARNING(self, RESOURCE, READ, ("Voice '%s': %s", voice.c_str(), w.c_str()), (nullptr));
    } else {
      v = chatterbox::S3GenVoice::load(voice);
    }
    // embed_ref keeps frames = 2 * tokens + 1 when the clip is not a multiple
    // of 40 ms (so do conds files made from such clips, upstream's or
    // chatterbox-voice's); upstream's flow then returns one frame fewer. This
    // flow takes exactly 2 frames per prompt token, so that last prompt frame
    // (10 ms of conditioning) is left out.
    const int64_t want = self->flow->config().token_mel_ratio * v.prompt_token.size(1);
    if (v.prompt_feat.size(1) == want + 1) {
      GST_INFO_OBJECT(self, "voice '%s': %lld prompt mel frames for %lld tokens, using the first %lld", voice.c_str(),
                      static_cast<long long>(v.prompt_feat.size(1)), static_cast<long long>(v.prompt_token.size(1)),
                      static_cast<long long>(want));
      v.prompt_feat = v.prompt_feat.slice(1, 0, want).contiguous();
    }
    self->voice.emplace(std::move(v));
  } catch (const std::exception& e) {
    GST_ELEMENT_ERROR(self, RESOURCE, OPEN_READ, ("Could not load voice '%s': %s", voice.c_str(), e.what()), (nullptr));
    self->flow.reset();
    self->voice_ref.reset();
    return FALSE;
  }
  if (!noise.empty()) {
    try {
      chatterbox::Checkpoint ck = chatterbox::Checkpoint::open(noise);
      self->noise = ck.get("noise", {1, 80, -1});
    } catch (const std::exception& e) {
      GST_ELEMENT_ERROR(self, RESOURCE, OPEN_READ,
                        ("Could not read noise file '%s': %s", noise.c_str(), e.what()),
                        ("expected a safetensors file holding 'noise' [1, 80, N], N >= prompt + target frames"));
      self->flow.reset();
      self->voice.reset();
      self->voice_ref.reset();
      return FALSE;
    }
  }
  return TRUE;
}

// READY->PAUSED: when upstream can offer no S3 speech tokens (another
// codebook, vocabulary or rate), fail now, naming the fields (see
// query_upstream_caps), instead of upstream failing later with a bare
// not-negotiated.
static gboolean upstream_offers_tokens(GstS3GenMel* self) {
  GstCaps* offered = chatterbox::query_upstream_caps(self->sinkpad);
  if (!offered) return TRUE;
  GstCaps* want = gst_caps_from_string(CHATTERBOX_TOKENS_CAPS);
  const std::string why = chatterbox::explain_caps_mismatch(want, offered, "s3genmel");
  gst_caps_unref(want);
  gst_caps_unref(offered);
  if (why.empty()) return TRUE;
  GST_ELEMENT_ERROR(self, CORE, NEGOTIATION, ("s3genmel cannot take the speech tokens upstream offers: %s", why.c_str()),
                    ("s3genmel decodes Chatterbox's S3 tokens: %s", CHATTERBOX_TOKENS_CAPS));
  return FALSE;
}

static GstStateChangeReturn gst_s3gen_mel_change_state(GstElement* element, GstStateChange transition) {
  GstS3GenMel* self = GST_S3GEN_MEL(element);
  switch (transition) {
    case GST_STATE_CHANGE_NULL_TO_READY:
      if (!load(self)) return GST_STATE_CHANGE_FAILURE;
      break;
    case GST_STATE_CHANGE_READY_TO_PAUSED:
      if (!upstream_offers_tokens(self)) return GST_STATE_CHANGE_FAILURE;
      self->timing.start();
      self->in_utterance = FALSE;
      self->utterances = 0;
      self->tokens.clear();
      self->partial.clear();
      break;
    default:
      break;
  }
  GstStateChangeReturn ret = GST_ELEMENT_CLASS(gst_s3gen_mel_parent_class)->change_state(element, transition);
  switch (transition) {
    case GST_STATE_CHANGE_PAUSED_TO_READY:
      self->streamer.reset();
      self->tokens.clear();
      break;
    case GST_STATE_CHANGE_READY_TO_NULL:
      self->flow.reset();
      self->voice.reset();
      self->voice_ref.reset();
      self->noise = at::Tensor();
      break;
    default:
      break;
  }
  return ret;
}

static void set_string(gchar** dst, const GValue* value) {
  g_free(*dst);
  *dst = g_value_dup_string(value);
}

static void gst_s3gen_mel_set_property(GObject* object, guint id, const GValue* value, GParamSpec* pspec) {
  GstS3GenMel* self = GST_S3GEN_MEL(object);
  GST_OBJECT_LOCK(self);
  const bool file = id == PROP_MODEL || id == PROP_VOICE || id == PROP_NOISE_FILE || id == PROP_DEVICE ||
                    id == PROP_PRECISION || id == PROP_MEANFLOW;
  bool latency_changed = false;
  if (file && !chatterbox::element_is_stopped(GST_ELEMENT(self))) {
    GST_OBJECT_UNLOCK(self);
    chatterbox::warn_load_time_property(GST_ELEMENT(self), pspec);
    return;
  }
  switch (id) {
    case PROP_MODEL: set_string(&self->model, value); break;
    case PROP_VOICE: set_string(&self->voice_path, value); break;
    case PROP_NOISE_FILE: set_string(&self->noise_file, value); break;
    case PROP_DEVICE: set_string(&self->device, value); break;
    case PROP_PRECISION: set_string(&self->precision, value); break;
    case PROP_MEANFLOW: self->meanflow = static_cast<GstS3GenMelSwitch>(g_value_get_enum(value)); break;
    case PROP_APPEND_SILENCE: self->append_silence = static_cast<GstS3GenMelSwitch>(g_value_get_enum(value)); break;
    case PROP_N_TIMESTEPS: self->n_timesteps = g_value_get_int(value); break;
    case PROP_CFG_RATE: self->cfg_rate = g_value_get_double(value); break;
    case PROP_SEED: self->seed = g_value_get_uint64(value); break;
    case PROP_CHUNK_TOKENS: {
      const guint v = g_value_get_uint(value);
      latency_changed = v != self->chunk_tokens;
      self->chunk_tokens = v;
      break;
    }
    case PROP_LEFT_CONTEXT: self->left_context = g_value_get_int(value); break;
    case PROP_CONTEXT_MEL: self->context_mel = g_value_get_boolean(value); break;
    default: G_OBJECT_WARN_INVALID_PROPERTY_ID(object, id, pspec);
  }
  GST_OBJECT_UNLOCK(self);
  // The reported latency follows chunk-tokens: tell the pipeline to ask again.
  if (latency_changed)
    gst_element_post_message(GST_ELEMENT(self), gst_message_new_latency(GST_OBJECT(self)));
}

static void gst_s3gen_mel_get_property(GObject* object, guint id, GValue* value, GParamSpec* pspec) {
  GstS3GenMel* self = GST_S3GEN_MEL(object);
  GST_OBJECT_LOCK(self);
  switch (id) {
    case PROP_MODEL: g_value_set_string(value, self->model); break;
    case PROP_VOICE: g_value_set_string(value, self->voice_path); break;
    case PROP_NOISE_FILE: g_value_set_string(value, self->noise_file); break;
    case PROP_DEVICE: g_value_set_string(value, self->device); break;
    case PROP_PRECISION: g_value_set_string(value, self->precision); break;
    case PROP_MEANFLOW: g_value_set_enum(value, self->meanflow); break;
    case PROP_APPEND_SILENCE: g_value_set_enum(value, self->append_silence); break;
    case PROP_N_TIMESTEPS: g_value_set_int(value, self->n_timesteps); break;
    case PROP_CFG_RATE: g_value_set_double(value, self->cfg_rate); break;
    case PROP_SEED: g_value_set_uint64(value, self->seed); break;
    case PROP_CHUNK_TOKENS: g_value_set_uint(value, self->chunk_tokens); break;
    case PROP_LEFT_CONTEXT: g_value_set_int(value, self->left_context); break;
    case PROP_CONTEXT_MEL: g_value_set_boolean(value, self->context_mel); break;
    default: G_OBJECT_WARN_INVALID_PROPERTY_ID(object, id, pspec);
  }
  GST_OBJECT_UNLOCK(self);
}

static void gst_s3gen_mel_finalize(GObject* object) {
  GstS3GenMel* self = GST_S3GEN_MEL(object);
  g_free(self->model);
  g_free(self->voice_path);
  g_free(self->noise_file);
  g_free(self->device);
  g_free(self->precision);
  self->flow.~shared_ptr();
  self->voice.~optional();
  self->voice_ref.~shared_ptr();
  self->noise.~Tensor();
  self->tokens.~vector();
  self->partial.~vector();
  self->streamer.~unique_ptr();
  G_OBJECT_CLASS(gst_s3gen_mel_parent_class)->finalize(object);
}

static void gst_s3gen_mel_class_init(GstS3GenMelClass* klass) {
  GObjectClass* gobject_class = G_OBJECT_CLASS(klass);
  GstElementClass* element_class = GST_ELEMENT_CLASS(klass);
  GST_DEBUG_CATEGORY_INIT(s3gen_mel_debug, "s3genmel", 0, "chatterbox S3Gen tokens to mel");
  gobject_class->set_property = gst_s3gen_mel_set_property;
  gobject_class->get_property = gst_s3gen_mel_get_property;
  gobject_class->finalize = gst_s3gen_mel_finalize;
  element_class->change_state = gst_s3gen_mel_change_state;
  // Files and device: read when going to READY, refused (with a warning) in
  // any other state. Decoding settings: read when an utterance starts.
  const GParamFlags rw = static_cast<GParamFlags>(G_PARAM_READWRITE | G_PARAM_STATIC_STRINGS);
  const GParamFlags live = static_cast<GParamFlags>(rw | GST_PARAM_MUTABLE_PLAYING);
  g_object_class_install_property(gobject_class, PROP_MODEL,
      g_param_spec_string("model", "Model",
                          "Chatterbox's s3gen.safetensors, Chatterbox-Turbo's s3gen_meanflow.safetensors (or s3gen.pt; "
                          "their flow. tensors are used) or a flow-only "
                          "checkpoint with a config; loaded when going to READY (s3genmel elements naming the same "
                          "file share one copy of the weights). Changeable in the NULL state only.",
                          nullptr, rw));
  g_object_class_install_property(gobject_class, PROP_VOICE,
      g_param_spec_string("voice", "Voice",
                          "Conds file giving the prompt tokens, prompt mel and x-vector: Chatterbox's conds.pt, or "
                          "safetensors with gen.prompt_token [1,P], gen.prompt_feat [1,2P,80], gen.embedding [1,192] "
                          "(as chatterbox-voice writes); or reference speech (WAV, FLAC, ...), from which they are "
                          "computed with the model file's tokenizer and speaker encoder as Chatterbox's embed_ref "
                          "does (once per file: elements naming the same recording and model share the result). "
                          "Changeable in the NULL state only.",
                          nullptr, rw));
  g_object_class_install_property(gobject_class, PROP_N_TIMESTEPS,
      g_param_spec_int("n-timesteps", "Steps",
                       "Euler steps of the flow ODE (0: the model's: 10, or 2 for a mean-flow / Chatterbox-Turbo "
                       "model). Changeable while playing: applies from the next utterance.",
                       0, 1000, 0, live));
  g_object_class_install_property(gobject_class, PROP_CFG_RATE,
      g_param_spec_double("cfg-rate", "CFG rate",
                          "Classifier-free guidance rate (negative: the model's, 0.7). Not used by mean-flow "
                          "(Turbo) models, which were distilled with guidance. Changeable while playing: applies from "
                          "the next utterance.",
                          -1.0, 100.0, -1.0, live));
  g_object_class_install_property(gobject_class, PROP_SEED,
      g_param_spec_uint64("seed", "Seed",
                          "Seed of the initial noise (utterance n, counted from the start or the last flush, uses "
                          "seed + n): the same seed gives the same mel. "
                          "Changeable while playing: applies from the next utterance.",
                          0, G_MAXUINT64, 0, live));
  g_object_class_install_property(gobject_class, PROP_NOISE_FILE,
      g_param_spec_string("noise-file", "Noise file",
                          "Safetensors holding 'noise' [1, 80, N] used as the initial noise (first frames used) to "
                          "reproduce a reference run exactly; whole-utterance mode only. Changeable in the NULL state "
                          "only.",
                          nullptr, rw));
  g_object_class_install_property(gobject_class, PROP_DEVICE,
      g_param_spec_string("device", "Device",
                          "Where to run: 'cpu', or 'cuda' / 'cuda:N' with a CUDA LibTorch build (refused at READY "
                          "otherwise). Changeable in the NULL state only.",
                          "cpu", rw));
  g_object_class_install_property(gobject_class, PROP_PRECISION,
      g_param_spec_string("precision", "Precision",
                          "Floating-point type of the flow's weights and arithmetic: 'f32' (default, the reference), "
                          "'bf16' or 'f16' (the mel moves by about 1 % rel. L2 in bf16; see README). A type the "
                          "device's LibTorch kernels lack (f16 on the CPU) is refused at READY with the reason. "
                          "Changeable in the NULL state only.",
                          "f32", rw));
  g_object_class_install_property(gobject_class, PROP_MEANFLOW,
      g_param_spec_enum("meanflow", "Mean flow",
                        "Which decoder the model must be: auto (default) takes what the checkpoint holds (a "
                        "time_embed_mixer tensor marks Chatterbox-Turbo's mean-flow decoder: 2 plain Euler steps, no "
                        "CFG); on / off refuse at READY a model of the other kind. Changeable in the NULL state only.",
                        gst_s3gen_mel_switch_get_type(), S3GEN_MEL_AUTO, rw));
  g_object_class_install_property(gobject_class, PROP_APPEND_SILENCE,
      g_param_spec_enum("append-silence", "Append silence",
                        "Decode three silence tokens (4299) after each utterance's last token, giving it quiet right "
                        "context (6 more mel frames): auto (default) does it for mean-flow models as "
                        "ChatterboxTurboTTS.generate does, not for standard ones (ChatterboxTTS.generate). "
                        "Changeable while playing: applies from the next utterance.",
                        gst_s3gen_mel_switch_get_type(), S3GEN_MEL_AUTO, live));
  g_object_class_install_property(gobject_class, PROP_CHUNK_TOKENS,
      g_param_spec_uint("chunk-tokens", "Chunk tokens",
                        "0 (default): decode each utterance whole at its end (DISCONT or EOS), exactly as the "
                        "reference. N > 0: stream in chunks of N tokens; left-context picks the rule (-1: upstream's "
                        "S3GenStreamer, re-decoding all tokens so far every N tokens; >= 0: the bounded-cost window). "
                        "Either way a chunk's frames wait for its 3 look-ahead tokens; the latency query reports "
                        "(N + 3) x 40 ms and a LATENCY message is posted when this changes. Streamed frames differ "
                        "from whole-utterance ones (bench/results/live.md). Changeable while playing: applies from the "
                        "next utterance.",
                        0, 100000, 0, live));
  g_object_class_install_property(gobject_class, PROP_LEFT_CONTEXT,
      g_param_spec_int("left-context", "Left context",
                       "Streaming rule when chunk-tokens > 0 (ignored otherwise). -1 (default): upstream's rule, "
                       "every chunk re-decodes the whole utterance so far (cost grows with the utterance). N >= 0: "
                       "bounded cost: each chunk runs the encoder over the N tokens before it (voice prompt, then "
                       "the utterance), the chunk and its 3 look-ahead tokens, and the flow over the frames of those "
                       "N + chunk-tokens tokens only, the context frames conditioned on the mel already emitted; one "
                       "noise draw per utterance (docs/s3gen-streaming.md). Changeable while playing: applies from "
                       "the next utterance.",
                       -1, 100000, -1, live));
  g_object_class_install_property(gobject_class, PROP_CONTEXT_MEL,
      g_param_spec_boolean("context-mel", "Context mel",
                           "Window mode (left-context >= 0): condition the context frames on the mel already emitted "
                           "(TRUE, default: the model continues it, as it continues its voice prompt) or give them "
                           "zero conditioning as the whole decode does, re-decoding them from the same noise (FALSE; "
                           "on full-size random weights about twice as close to the whole decode, "
                           "bench/results/live.md). The voice prompt's frames keep their prompt mel either way. "
                           "Changeable while playing: applies from the next utterance.",
                           TRUE, live));
  gst_element_class_add_static_pad_template(element_class, &sink_template);
  gst_element_class_add_static_pad_template(element_class, &src_template);
  gst_element_class_set_static_metadata(element_class, "S3Gen token-to-mel", "Codec/Decoder/Audio",
      "Turns S3 speech tokens into 80-bin log-mel frames with Chatterbox's flow-matching decoder, conditioned on "
      "a voice",
      "gst-chatterbox developers");
}

static void gst_s3gen_mel_init(GstS3GenMel* self) {
  new (&self->flow) std::shared_ptr<const chatterbox::S3GenFlow>();
  new (&self->voice) std::optional<chatterbox::S3GenVoice>();
  new (&self->voice_ref) std::shared_ptr<const chatterbox::voice::S3GenRef>();
  new (&self->noise) at::Tensor();
  new (&self->tokens) std::vector<int64_t>();
  new (&self->partial) std::vector<uint8_t>();
  new (&self->streamer) std::unique_ptr<chatterbox::S3GenFlowStreamer>();
  self->sinkpad = gst_pad_new_from_static_template(&sink_template, "sink");
  gst_pad_set_chain_function(self->sinkpad, gst_s3gen_mel_chain);
  gst_pad_set_event_function(self->sinkpad, gst_s3gen_mel_sink_event);
  gst_element_add_pad(GST_ELEMENT(self), self->sinkpad);
  self->srcpad = gst_pad_new_from_static_template(&src_template, "src");
  gst_pad_set_query_function(self->srcpad, gst_s3gen_mel_src_query);
  gst_pad_set_query_function(self->sinkpad, gst_s3gen_mel_sink_query);
  gst_pad_use_fixed_caps(self->srcpad);
  gst_element_add_pad(GST_ELEMENT(self), self->srcpad);
  self->device = g_strdup("cpu");
  self->precision = g_strdup("f32");
  self->cfg_rate = -1.0;
  self->left_context = -1;
  self->context_mel = TRUE;
  new (&self->timing) chatterbox::OutputTiming();
}
