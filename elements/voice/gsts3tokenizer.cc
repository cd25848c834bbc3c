/**
 * SECTION:element-s3tokenizer
 *
 * Turns 16 kHz mono speech into Chatterbox's S3 speech tokens (S3TokenizerV2,
 * 25 tokens per second from a 6561-entry codebook): the `tokenizer.*` part of
 * s3gen.safetensors. With s3genmel after it, speech is re-spoken in the voice
 * s3genmel is given (voice conversion, as upstream's vc.py):
 *
 *   gst-launch-1.0 filesrc location=src.wav ! decodebin ! audioconvert ! audioresample ! \
 *     s3tokenizer model=s3gen.safetensors ! s3genmel model=s3gen.safetensors voice=target.wav ! \
 *     vocosdec ! audioconvert ! wavenc ! filesink location=out.wav
 *
 * By default each utterance (up to EOS, a DISCONT buffer or a flush) is
 * tokenized whole at its end, exactly as upstream. chunk-tokens > 0 streams
 * (for live input): see the property.
 */
#include "elements/voice/gsts3tokenizer.h"

#include "elements/voice/s3tokenizer/s3tokenizer_stream.h"
#include "gst-plugins/caps.h"
#include "gst-plugins/core/model_cache.h"
#include "gst-plugins/elements.h"
#include "gst-plugins/load_time_property.h"
#include "gst-plugins/output_timing.h"

#include <cstring>
#include <memory>
#include <vector>

GST_DEBUG_CATEGORY_STATIC(s3_tokenizer_debug);
#define GST_CAT_DEFAULT s3_tokenizer_debug

enum { PROP_0, PROP_MODEL, PROP_CHUNK_TOKENS, PROP_CONTEXT_TOKENS, PROP_LOOKAHEAD_TOKENS };

static const int kRate = 16000;
static const gchar* kUtteranceEnd = "chatterbox/utterance-end";

struct _GstS3Tokenizer {
  GstElement parent;
  GstPad* sinkpad;
  GstPad* srcpad;

  // Properties (object lock).
  gchar* model;
  guint chunk_tokens;
  guint context_tokens;
  guint lookahead_tokens;

  // Loaded in NULL -> READY, shared with every user of the same file
  // (other s3tokenizers, s3genmel / t3 computing a voice from a recording).
  std::shared_ptr<const chatterbox::voice::S3Tokenizer> tokenizer;

  // Current utterance (streaming thread).
  std::unique_ptr<chatterbox::voice::S3TokenizerStream> stream;
  std::vector<uint8_t> partial;  // bytes of a sample split across buffers
  gint64 tokens_out;
  gboolean in_utterance;
  guint64 utterances;
  chatterbox::OutputTiming timing;
};

G_DEFINE_TYPE(GstS3Tokenizer, gst_s3_tokenizer, GST_TYPE_ELEMENT)
GST_ELEMENT_REGISTER_DEFINE(s3tokenizer, "s3tokenizer", GST_RANK_NONE, GST_TYPE_S3_TOKENIZER)

static GstStaticPadTemplate sink_template =
    GST_STATIC_PAD_TEMPLATE("sink", GST_PAD_SINK, GST_PAD_ALWAYS, GST_STATIC_CAPS(CHATTERBOX_AUDIO_CAPS(16000)));
static GstStaticPadTemplate src_template =
    GST_STATIC_PAD_TEMPLATE("src", GST_PAD_SRC, GST_PAD_ALWAYS, GST_STATIC_CAPS(CHATTERBOX_TOKENS_CAPS));

static GstFlowReturn push_tokens(GstS3Tokenizer* self, const std::vector<int64_t>& ids) {
  if (ids.empty()) return GST_FLOW_OK;
  self->timing.push_segment(self->srcpad);
  const gsize n = ids.size();
  GstBuffer* buf = gst_buffer_new_allocate(nullptr, n * sizeof(gint32), nullptr);
  GstMapInfo map;
  gst_buffer_map(buf, &map, GST_MAP_WRITE);
  for (gsize i = 0; i < n; ++i) {
    const gint32 v = GINT32_TO_LE(static_cast<gint32>(ids[i]));
    std::memcpy(map.data + i * sizeof v, &v, sizeof v);
  }
  gst_buffer_unmap(buf, &map);
  self->timing.stamp(buf, self->tokens_out, static_cast<int64_t>(n), 25, 1);
  self->tokens_out += static_cast<gint64>(n);
  return gst_pad_push(self->srcpad, buf);
}

// Ends the current utterance: tokenizes what is left, pushes it and marks the
// end for s3genmel (which then decodes without waiting for more).
static GstFlowReturn finish_utterance(GstS3Tokenizer* self) {
  if (!self->in_utterance) return GST_FLOW_OK;
  self->in_utterance = FALSE;
  if (!self->partial.empty()) {
    GST_ELEMENT_WARNING(self, STREAM, DECODE, ("Dropping %zu trailing bytes: not a whole F32 sample",
                                               self->partial.size()), (nullptr));
    self->partial.clear();
  }
  GstFlowReturn ret = GST_FLOW_OK;
  const gint64 samples = self->stream ? self->stream->samples() : 0;
  try {
    std::vector<int64_t> ids = self->stream->finish();
    if (self->stream->too_short())
      GST_ELEMENT_WARNING(self, STREAM, DECODE,
                          ("An utterance of %" G_GINT64_FORMAT " samples (%.1f ms) is too short to tokenize: the S3 "
                           "tokenizer needs at least %d samples (12.6 ms at 16 kHz); it gives no tokens",
                           samples, samples * 1000.0 / kRate, 201),
                          (nullptr));
    GST_DEBUG_OBJECT(self, "utterance %" G_GUINT64_FORMAT ": %" G_GINT64_FORMAT " samples, %zu final tokens",
                     self->utterances, samples, ids.size());
    ret = push_tokens(self, ids);
  } catch (const std::exception& e) {
    GST_ELEMENT_ERROR(self, STREAM, FAILED, ("S3 tokenizer failed"), ("%s", e.what()));
    ret = GST_FLOW_ERROR;
  }
  self->stream.reset();
  if (ret == GST_FLOW_OK && self->tokens_out > 0) {
    self->timing.push_segment(self->srcpad);
    GstStructure* info = gst_structure_new(kUtteranceEnd, "utterance", G_TYPE_UINT64, self->utterances, "tokens",
                                           G_TYPE_UINT64, static_cast<guint64>(self->tokens_out), nullptr);
    gst_pad_push_event(self->srcpad, gst_event_new_custom(GST_EVENT_CUSTOM_DOWNSTREAM, info));
  }
  self->utterances++;
  self->tokens_out = 0;
  return ret;
}

static GstFlowReturn gst_s3_tokenizer_chain(GstPad*, GstObject* parent, GstBuffer* buf) {
  GstS3Tokenizer* self = GST_S3_TOKENIZER(parent);
  GstFlowReturn ret = GST_FLOW_OK;
  if (GST_BUFFER_FLAG_IS_SET(buf, GST_BUFFER_FLAG_DISCONT) && self->in_utterance) ret = finish_utterance(self);
  if (ret != GST_FLOW_OK) {
    gst_buffer_unref(buf);
    return ret;
  }
  if (!self->in_utterance) {
    chatterbox::voice::S3TokenizerStreamOptions o;
    GST_OBJECT_LOCK(self);
    o.chunk_tokens = self->chunk_tokens;
    o.context_tokens = self->context_tokens;
    o.lookahead_tokens = self->lookahead_tokens;
    GST_OBJECT_UNLOCK(self);
    try {
      self->stream = std::make_unique<chatterbox::voice::S3TokenizerStream>(*self->tokenizer, o);
    } catch (const std::exception& e) {
      gst_buffer_unref(buf);
      GST_ELEMENT_ERROR(self, LIBRARY, SETTINGS, ("Invalid streaming settings: %s", e.what()),
                        ("lower chunk-tokens, context-tokens or lookahead-tokens"));
      return GST_FLOW_ERROR;
    }
    self->in_utterance = TRUE;
    self->tokens_out = 0;
    self->timing.begin_utterance(buf);
  }
  GstMapInfo map;
  gst_buffer_map(buf, &map, GST_MAP_READ);
  std::vector<float> samples;
  if (self->partial.empty() && map.size % sizeof(float) == 0) {
    samples.resize(map.size / sizeof(float));
    std::memcpy(samples.data(), map.data, samples.size() * sizeof(float));
  } else {
    std::vector<uint8_t> bytes(self->partial);
    bytes.insert(bytes.end(), map.data, map.data + map.size);
    samples.resize(bytes.size() / sizeof(float));
    std::memcpy(samples.data(), bytes.data(), samples.size() * sizeof(float));
    self->partial.assign(bytes.begin() + samples.size() * sizeof(float), bytes.end());
  }
  gst_buffer_unmap(buf, &map);
  gst_buffer_unref(buf);
#if G_BYTE_ORDER == G_BIG_ENDIAN
  for (float& f : samples) {
    guint32 u;
    std::memcpy(&u, &f, 4);
    u = GUINT32_SWAP_LE_BE(u);
    std::memcpy(&f, &u, 4);
  }
#endif
  try {
    ret = push_tokens(self, self->stream->push(samples.data(), static_cast<int64_t>(samples.size())));
  } catch (const std::exception& e) {
    GST_ELEMENT_ERROR(self, STREAM, FAILED, ("S3 tokenizer failed"), ("%s", e.what()));
    return GST_FLOW_ERROR;
  }
  return ret;
}

static gboolean gst_s3_tokenizer_sink_event(GstPad* pad, GstObject* parent, GstEvent* event) {
  GstS3Tokenizer* self = GST_S3_TOKENIZER(parent);
  switch (GST_EVENT_TYPE(event)) {
    case GST_EVENT_CAPS: {
      gst_event_unref(event);
      GstCaps* out = gst_caps_from_string(CHATTERBOX_TOKENS_CAPS);
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
      // An upstream utterance mark ends ours too (the mark is passed on).
      if (gst_event_has_name(event, kUtteranceEnd)) {
        finish_utterance(self);
        gst_event_unref(event);
        return TRUE;
      }
      return gst_pad_event_default(pad, parent, event);
    case GST_EVENT_FLUSH_STOP:
      self->stream.reset();
      self->partial.clear();
      self->in_utterance = FALSE;
      self->tokens_out = 0;
      self->timing.flush();
      return gst_pad_push_event(self->srcpad, event);
    default:
      return gst_pad_event_default(pad, parent, event);
  }
}

static gboolean gst_s3_tokenizer_src_query(GstPad* pad, GstObject* parent, GstQuery* query) {
  GstS3Tokenizer* self = GST_S3_TOKENIZER(parent);
  if (GST_QUERY_TYPE(query) == GST_QUERY_CAPS) {
    chatterbox::answer_caps_query(query, gst_caps_from_string(CHATTERBOX_TOKENS_CAPS));
    return TRUE;
  }
  if (GST_QUERY_TYPE(query) == GST_QUERY_LATENCY) {
    // Chunked: a chunk's first sample waits for the chunk, the lookahead and
    // the last frame's half window. Whole utterances: unbounded (the
    // utterance's length), reported as no maximum.
    chatterbox::voice::S3TokenizerStreamOptions o;
    GST_OBJECT_LOCK(self);
    o.chunk_tokens = self->chunk_tokens;
    o.lookahead_tokens = self->lookahead_tokens;
    GST_OBJECT_UNLOCK(self);
    const GstClockTime ours = gst_util_uint64_scale_int(o.latency_samples(), GST_SECOND, kRate);
    GST_DEBUG_OBJECT(self, "latency %" GST_TIME_FORMAT " (%s)", GST_TIME_ARGS(ours),
                     o.chunk_tokens > 0 ? "chunked" : "whole utterances: no maximum");
    return chatterbox::answer_latency_query(self->sinkpad, query, ours, /*bounded=*/o.chunk_tokens > 0);
  }
  return gst_pad_query_default(pad, parent, query);
}

static gboolean load(GstS3Tokenizer* self) {
  GST_OBJECT_LOCK(self);
  const std::string model = self->model ? self->model : "";
  GST_OBJECT_UNLOCK(self);
  if (model.empty()) {
    GST_ELEMENT_ERROR(self, RESOURCE, NOT_FOUND,
                      ("No model given: set 'model' to Chatterbox's s3gen.safetensors (or a file holding its "
                       "tokenizer.* tensors)"),
                      (nullptr));
    return FALSE;
  }
  try {
    using chatterbox::voice::S3Tokenizer;
    self->tokenizer = chatterbox::ModelCache::global().get<S3Tokenizer>(
        chatterbox::ModelCache::make_key("s3tokenizer", {model}),
        [&] { return std::make_shared<const S3Tokenizer>(S3Tokenizer::load(model)); });
  } catch (const std::exception& e) {
    GST_ELEMENT_ERROR(self, RESOURCE, OPEN_READ, ("Could not load the S3 tokenizer from '%s': %s", model.c_str(),
                                                  e.what()),
                      (nullptr));
    return FALSE;
  }
  const auto& c = self->tokenizer->config();
  GST_INFO_OBJECT(self, "loaded S3TokenizerV2 from '%s': width %lld, %lld blocks, %lld mels", model.c_str(),
                  static_cast<long long>(c.n_state), static_cast<long long>(c.n_layer),
                  static_cast<long long>(c.n_mels));
  return TRUE;
}

// READY->PAUSED: upstream that can offer no 16 kHz mono F32 audio fails now,
// naming the fields (put audioconvert ! audioresample in front).
static gboolean upstream_offers_audio(GstS3Tokenizer* self) {
  GstCaps* offered = chatterbox::query_upstream_caps(self->sinkpad);
  if (!offered) return TRUE;
  GstCaps* want = chatterbox::audio_caps(kRate);
  const std::string why = chatterbox::explain_caps_mismatch(want, offered, "s3tokenizer");
  gst_caps_unref(want);
  gst_caps_unref(offered);
  if (why.empty()) return TRUE;
  GST_ELEMENT_ERROR(self, CORE, NEGOTIATION, ("s3tokenizer cannot take the audio upstream offers: %s", why.c_str()),
                    ("s3tokenizer reads mono F32LE audio at 16 kHz: put audioconvert ! audioresample before it"));
  return FALSE;
}

static GstStateChangeReturn gst_s3_tokenizer_change_state(GstElement* element, GstStateChange transition) {
  GstS3Tokenizer* self = GST_S3_TOKENIZER(element);
  switch (transition) {
    case GST_STATE_CHANGE_NULL_TO_READY:
      if (!load(self)) return GST_STATE_CHANGE_FAILURE;
      break;
    case GST_STATE_CHANGE_READY_TO_PAUSED:
      if (!upstream_offers_audio(self)) return GST_STATE_CHANGE_FAILURE;
      self->timing.start();
      self->in_utterance = FALSE;
      self->utterances = 0;
      self->tokens_out = 0;
      self->partial.clear();
      break;
    default:
      break;
  }
  GstStateChangeReturn ret = GST_ELEMENT_CLASS(gst_s3_tokenizer_parent_class)->change_state(element, transition);
  switch (transition) {
    case GST_STATE_CHANGE_PAUSED_TO_READY:
      self->stream.reset();
      self->in_utterance = FALSE;
      break;
    case GST_STATE_CHANGE_READY_TO_NULL:
      self->stream.reset();
      self->tokenizer.reset();
      break;
    default:
      break;
  }
  return ret;
}

static void gst_s3_tokenizer_set_property(GObject* object, guint id, const GValue* value, GParamSpec* pspec) {
  GstS3Tokenizer* self = GST_S3_TOKENIZER(object);
  GST_OBJECT_LOCK(self);
  if (id == PROP_MODEL && !chatterbox::element_is_stopped(GST_ELEMENT(self))) {
    GST_OBJECT_UNLOCK(self);
    chatterbox::warn_load_time_property(GST_ELEMENT(self), pspec);
    return;
  }
  switch (id) {
    case PROP_MODEL:
      g_free(self->model);
      self->model = g_value_dup_string(value);
      break;
    case PROP_CHUNK_TOKENS: self->chunk_tokens = g_value_get_uint(value); break;
    case PROP_CONTEXT_TOKENS: self->context_tokens = g_value_get_uint(value); break;
    case PROP_LOOKAHEAD_TOKENS: self->lookahead_tokens = g_value_get_uint(value); break;
    default: G_OBJECT_WARN_INVALID_PROPERTY_ID(object, id, pspec);
  }
  GST_OBJECT_UNLOCK(self);
}

static void gst_s3_tokenizer_get_property(GObject* object, guint id, GValue* value, GParamSpec* pspec) {
  GstS3Tokenizer* self = GST_S3_TOKENIZER(object);
  GST_OBJECT_LOCK(self);
  switch (id) {
    case PROP_MODEL: g_value_set_string(value, self->model); break;
    case PROP_CHUNK_TOKENS: g_value_set_uint(value, self->chunk_tokens); break;
    case PROP_CONTEXT_TOKENS: g_value_set_uint(value, self->context_tokens); break;
    case PROP_LOOKAHEAD_TOKENS: g_value_set_uint(value, self->lookahead_tokens); break;
    default: G_OBJECT_WARN_INVALID_PROPERTY_ID(object, id, pspec);
  }
  GST_OBJECT_UNLOCK(self);
}

static void gst_s3_tokenizer_finalize(GObject* object) {
  GstS3Tokenizer* self = GST_S3_TOKENIZER(object);
  g_free(self->model);
  self->tokenizer.~shared_ptr();
  self->stream.~unique_ptr();
  self->partial.~vector();
  self->timing.~OutputTiming();
  G_OBJECT_CLASS(gst_s3_tokenizer_parent_class)->finalize(object);
}

static void gst_s3_tokenizer_class_init(GstS3TokenizerClass* klass) {
  GObjectClass* gobject_class = G_OBJECT_CLASS(klass);
  GstElementClass* element_class = GST_ELEMENT_CLASS(klass);
  GST_DEBUG_CATEGORY_INIT(s3_tokenizer_debug, "s3tokenizer", 0, "chatterbox S3 speech tokenizer");
  gobject_class->set_property = gst_s3_tokenizer_set_property;
  gobject_class->get_property = gst_s3_tokenizer_get_property;
  gobject_class->finalize = gst_s3_tokenizer_finalize;
  element_class->change_state = gst_s3_tokenizer_change_state;
  const GParamFlags rw = static_cast<GParamFlags>(G_PARAM_READWRITE | G_PARAM_STATIC_STRINGS);
  const GParamFlags live = static_cast<GParamFlags>(rw | GST_PARAM_MUTABLE_PLAYING);
  g_object_class_install_property(gobject_class, PROP_MODEL,
      g_param_spec_string("model", "Model",
                          "Chatterbox's s3gen.safetensors (its tokenizer.* tensors are used) or a file holding only "
                          "those tensors (with or without the tokenizer. prefix); loaded when going to READY and "
                          "shared with every element using the same file. Changeable in the NULL state only.",
                          nullptr, rw));
  g_object_class_install_property(gobject_class, PROP_CHUNK_TOKENS,
      g_param_spec_uint("chunk-tokens", "Chunk tokens",
                        "0 (default): tokenize each utterance whole at its end (EOS, a DISCONT buffer, or an "
                        "upstream utterance-end mark), exactly as the reference (whose log-mel floor and attention "
                        "span the whole input). N > 0: stream, deciding N tokens (N x 40 ms) at a time with one "
                        "encoder pass over context-tokens before and lookahead-tokens after them; the output does "
                        "not depend on buffer sizes, but may differ from whole-utterance tokens (README gives the "
                        "measured agreement). Latency (N + lookahead) x 40 ms + 2.5 ms. Changeable while playing: "
                        "applies from the next utterance.",
                        0, chatterbox::voice::S3TokenizerStreamOptions::kMaxWindowTokens, 0, live));
  g_object_class_install_property(gobject_class, PROP_CONTEXT_TOKENS,
      g_param_spec_uint("context-tokens", "Context tokens",
                        "Chunked mode: tokens of audio before each chunk the encoder sees (40 ms each; default 100 "
                        "= 4 s). context + chunk + lookahead must not exceed 750 (30 s). Changeable while playing: "
                        "applies from the next utterance.",
                        0, chatterbox::voice::S3TokenizerStreamOptions::kMaxWindowTokens, 100, live));
  g_object_class_install_property(gobject_class, PROP_LOOKAHEAD_TOKENS,
      g_param_spec_uint("lookahead-tokens", "Lookahead tokens",
                        "Chunked mode: tokens of audio after each chunk the encoder waits for (40 ms each; default "
                        "25 = 1 s; adds to the latency). Changeable while playing: applies from the next utterance.",
                        0, chatterbox::voice::S3TokenizerStreamOptions::kMaxWindowTokens, 25, live));
  gst_element_class_add_static_pad_template(element_class, &sink_template);
  gst_element_class_add_static_pad_template(element_class, &src_template);
  gst_element_class_set_static_metadata(element_class, "S3 speech tokenizer", "Codec/Encoder/Audio",
      "Turns 16 kHz speech into Chatterbox's S3 speech tokens (25 Hz, 6561 codes) with S3TokenizerV2",
      "gst-chatterbox developers");
}

static void gst_s3_tokenizer_init(GstS3Tokenizer* self) {
  new (&self->tokenizer) std::shared_ptr<const chatterbox::voice::S3Tokenizer>();
  new (&self->stream) std::unique_ptr<chatterbox::voice::S3TokenizerStream>();
  new (&self->partial) std::vector<uint8_t>();
  new (&self->timing) chatterbox::OutputTiming();
  self->context_tokens = 100;
  self->lookahead_tokens = 25;
  self->sinkpad = gst_pad_new_from_static_template(&sink_template, "sink");
  gst_pad_set_chain_function(self->sinkpad, gst_s3_tokenizer_chain);
  gst_pad_set_event_function(self->sinkpad, gst_s3_tokenizer_sink_event);
  gst_element_add_pad(GST_ELEMENT(self), self->sinkpad);
  self->srcpad = gst_pad_new_from_static_template(&src_template, "src");
  gst_pad_set_query_function(self->srcpad, gst_s3_tokenizer_src_query);
  gst_pad_use_fixed_caps(self->srcpad);
  gst_element_add_pad(GST_ELEMENT(self), self->srcpad);
}
