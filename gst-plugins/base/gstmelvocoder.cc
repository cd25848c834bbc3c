#include "gst-plugins/base/gstmelvocoder.h"

#include "gst-plugins/caps.h"
#include "gst-plugins/load_time_property.h"
#include "gst-plugins/core/vocoder.h"
#include "gst-plugins/output_timing.h"

#include <algorithm>
#include <ATen/ATen.h>
#include <gst/base/gstadapter.h>

#include <cstring>
#include <memory>

GST_DEBUG_CATEGORY_STATIC(mel_vocoder_debug);
#define GST_CAT_DEFAULT mel_vocoder_debug

enum { PROP_0, PROP_MODEL, PROP_DEVICE, PROP_THREADS, PROP_LOOKAHEAD, PROP_CHUNK_FRAMES };

// chunk-frames=-1 off a live pipeline: frames gathered per model call. Each
// call reads every weight once (Vocos in the S3Gen layout: ~55 MB of float32,
// beyond the caches), so 10-frame calls are bound by that read; 50 frames
// (1 s of audio) cost within a few percent of one whole-utterance call
// (bench/results/buffers.md).
constexpr gint kAutoChunkFrames = 50;

struct GstMelVocoderPrivate {
  GstPad* sinkpad;
  GstPad* srcpad;
  GstAdapter* adapter;
  chatterbox::StreamingVocoder* vocoder;  // owned; loaded in NULL->READY

  // Properties (under the object lock).
  gchar* model;
  gchar* device;
  gint threads;
  gint lookahead;  // -1: the model's full receptive field; applied at the next utterance
  gint chunk_frames;  // -1: auto (1 when upstream is live, else kAutoChunkFrames)

  gint chunk;  // chunk_frames resolved for this stream (streaming thread); 0: not yet (asks upstream)

  gboolean have_format;  // sink caps accepted
  std::string refusal;   // why upstream's offer could not fit, once a CAPS query showed it (object lock)
  chatterbox::MelFormat format;
  chatterbox::OutputTiming timing;  // audio time of the output
};

G_DEFINE_ABSTRACT_TYPE_WITH_PRIVATE(GstMelVocoder, gst_mel_vocoder, GST_TYPE_ELEMENT)

static GstMelVocoderPrivate* P(GstMelVocoder* self) {
  return static_cast<GstMelVocoderPrivate*>(gst_mel_vocoder_get_instance_private(self));
}

static GstStaticPadTemplate sink_template =
    GST_STATIC_PAD_TEMPLATE("sink", GST_PAD_SINK, GST_PAD_ALWAYS, GST_STATIC_CAPS(CHATTERBOX_MEL_TEMPLATE_CAPS));
static GstStaticPadTemplate src_template = GST_STATIC_PAD_TEMPLATE(
    "src", GST_PAD_SRC, GST_PAD_ALWAYS,
    GST_STATIC_CAPS("audio/x-raw, format=(string)F32LE, layout=(string)interleaved, channels=(int)1, "
                    "rate=(int)[1, MAX]"));

static gint frame_bytes(GstMelVocoderPrivate* p) { return p->format.n_mels * static_cast<gint>(sizeof(float)); }

// The lookahead the property asks for, in frames (object lock held).
static gint64 wanted_lookahead(GstMelVocoderPrivate* p) {
  return p->lookahead < 0 ? p->vocoder->default_lookahead_frames() : p->lookahead;
}

// Applies the `lookahead` property: at load, and by the streaming thread
// before each feed (never during one, so the vocoder is only ever touched by
// one thread). Both vocoders keep their output contiguous across a change:
// samples already pushed stay, a larger lookahead holds the next ones back
// until enough frames arrive, a smaller one releases them sooner.
static void apply_lookahead(GstMelVocoder* self) {
  GstMelVocoderPrivate* p = P(self);
  if (!p->vocoder) return;
  GST_OBJECT_LOCK(self);
  const gint64 frames = wanted_lookahead(p);
  GST_OBJECT_UNLOCK(self);
  if (frames != p->vocoder->lookahead_frames()) {
    GST_DEBUG_OBJECT(self, "lookahead now %" G_GINT64_FORMAT " frames", frames);
    p->vocoder->set_lookahead_frames(frames);
  }
}

// Frames to gather before a model call in this stream: the property, or for
// -1 whether upstream is live (a live pipeline wants each frame's audio as
// soon as it can be final; elsewhere latency is free and bigger calls are
// cheaper). Asked once per stream, from the streaming thread.
static gint resolved_chunk(GstMelVocoder* self) {
  GstMelVocoderPrivate* p = P(self);
  if (p->chunk > 0) return p->chunk;
  GST_OBJECT_LOCK(self);
  const gint wanted = p->chunk_frames;
  GST_OBJECT_UNLOCK(self);
  if (wanted > 0) return p->chunk = wanted;
  gboolean live = FALSE;
  GstQuery* q = gst_query_new_latency();
  if (gst_pad_peer_query(p->sinkpad, q)) gst_query_parse_latency(q, &live, nullptr, nullptr);
  gst_query_unref(q);
  p->chunk = live ? 1 : kAutoChunkFrames;
  GST_DEBUG_OBJECT(self, "upstream is %slive: %d frames per model call", live ? "" : "not ", p->chunk);
  return p->chunk;
}

// Pushes `samples` (1-D) as one buffer stamped in audio time; `first` is the
// index of its first sample within the current utterance.
static GstFlowReturn push_audio(GstMelVocoder* self, const at::Tensor& samples, gint64 first) {
  GstMelVocoderPrivate* p = P(self);
  const gint64 n = samples.numel();
  if (n == 0) return GST_FLOW_OK;
  p->timing.push_segment(p->srcpad);
  at::Tensor s = samples.to(at::kCPU).to(at::kFloat).contiguous();
  GstBuffer* buf = gst_buffer_new_allocate(nullptr, n * sizeof(float), nullptr);
  gst_buffer_fill(buf, 0, s.data_ptr<float>(), n * sizeof(float));
  p->timing.stamp(buf, first, n, p->vocoder->sample_rate(), 1);
  return gst_pad_push(p->srcpad, buf);
}

static GstFlowReturn feed_held(GstMelVocoder* self);

// Mel data of the current utterance has arrived (fed, or gathered for a chunk).
static bool utterance_open(GstMelVocoderPrivate* p) {
  return p->vocoder->frames_in() > 0 || gst_adapter_available(p->adapter) > 0;
}

// Ends the current utterance: pushes every remaining sample but the last
// `trim_frames` frames' (utterance-end's trim-frames: ChatterboxMultilingualTTS
// .generate drops the final speech token's audio). Samples a small lookahead
// already pushed cannot be taken back: then fewer are dropped, with a warning.
static GstFlowReturn drain(GstMelVocoder* self, guint trim_frames = 0) {
  GstMelVocoderPrivate* p = P(self);
  if (!p->vocoder || !p->have_format) return GST_FLOW_OK;
  // Whole frames still gathered for a chunk go in first.
  GstFlowReturn held = feed_held(self);
  if (held != GST_FLOW_OK) return held;
  if (p->vocoder->frames_in() == 0) {
    gst_adapter_clear(p->adapter);  // at most a partial frame of an empty utterance
    return GST_FLOW_OK;
  }
  const gsize left = gst_adapter_available(p->adapter);
  if (left > 0) {
    GST_ELEMENT_WARNING(self, STREAM, DECODE, ("Dropping %" G_GSIZE_FORMAT " trailing bytes: not a whole mel frame", left),
                        ("a frame is %d bytes (n-mels=%d x 4)", frame_bytes(p), p->format.n_mels));
    gst_adapter_clear(p->adapter);
  }
  try {
    const gint64 first = p->vocoder->samples_out();
    at::Tensor rest = p->vocoder->drain().reshape({-1});
    const gint64 trim = static_cast<gint64>(trim_frames) * p->format.hop_length;
    if (trim > 0) {
      if (trim > rest.numel())
        GST_ELEMENT_WARNING(self, STREAM, DECODE,
                            ("Could drop only %" G_GINT64_FORMAT " of the %" G_GINT64_FORMAT
                             " final samples the model's generate drops: the rest was already pushed",
                             static_cast<gint64>(rest.numel()), trim),
                            ("raise 'lookahead' to at least %u frames", trim_frames));
      rest = rest.narrow(0, 0, std::max<gint64>(0, rest.numel() - trim));
    }
    return push_audio(self, rest, first);
  } catch (const std::exception& e) {
    GST_ELEMENT_ERROR(self, STREAM, DECODE, ("Vocoder failed at the end of the utterance"), ("%s", e.what()));
    return GST_FLOW_ERROR;
  }
}

static void reset_stream(GstMelVocoder* self) {
  GstMelVocoderPrivate* p = P(self);
  gst_adapter_clear(p->adapter);
  p->chunk = 0;  // asked again for the next stream (the pipeline may have changed)
  if (p->vocoder) p->vocoder->reset();
}

static GstFlowReturn gst_mel_vocoder_chain(GstPad* pad, GstObject* parent, GstBuffer* buf) {
  GstMelVocoder* self = GST_MEL_VOCODER(parent);
  GstMelVocoderPrivate* p = P(self);
  if (!p->have_format || !p->vocoder) {
    GST_ELEMENT_ERROR(self, CORE, NEGOTIATION, ("Mel data arrived before caps were negotiated"), (nullptr));
    gst_buffer_unref(buf);
    return GST_FLOW_NOT_NEGOTIATED;
  }
  GstFlowReturn ret = GST_FLOW_OK;
  if (GST_BUFFER_FLAG_IS_SET(buf, GST_BUFFER_FLAG_DISCONT) && utterance_open(p)) {
    GST_DEBUG_OBJECT(self, "DISCONT: finishing the current utterance");
    ret = drain(self);
    reset_stream(self);
    if (ret != GST_FLOW_OK) {
      gst_buffer_unref(buf);
      return ret;
    }
  }
  if (p->vocoder->frames_in() == 0 && gst_adapter_available(p->adapter) == 0) {
    p->timing.begin_utterance(buf);  // first data of an utterance
  }
  gst_adapter_push(p->adapter, buf);
  const gsize fb = frame_bytes(p);
  if (gst_adapter_available(p->adapter) / fb < static_cast<gsize>(resolved_chunk(self))) return GST_FLOW_OK;
  return feed_held(self);
}

// Feeds every whole frame in the adapter to the vocoder and pushes what
// comes out.
static GstFlowReturn feed_held(GstMelVocoder* self) {
  GstMelVocoderPrivate* p = P(self);
  const gsize fb = frame_bytes(p);
  const gsize nframes = gst_adapter_available(p->adapter) / fb;
  if (nframes == 0) return GST_FLOW_OK;

  at::Tensor frames = at::empty({static_cast<int64_t>(nframes), p->format.n_mels}, at::kFloat);
  gst_adapter_copy(p->adapter, frames.data_ptr<float>(), 0, nframes * fb);
  gst_adapter_flush(p->adapter, nframes * fb);
  if (!at::isfinite(frames).all().item<bool>()) {
    GST_ELEMENT_ERROR(self, STREAM, DECODE, ("Mel input contains NaN or infinite values"),
                      ("refusing to vocode %" G_GSIZE_FORMAT " frames starting at frame %" G_GINT64_FORMAT
                       " of the utterance: the output would be garbage",
                       nframes, p->vocoder->frames_in()));
    return GST_FLOW_ERROR;
  }
  apply_lookahead(self);
  try {
    const gint64 first = p->vocoder->samples_out();
    at::Tensor out = p->vocoder->feed(frames);
    return push_audio(self, out, first);
  } catch (const std::exception& e) {
    GST_ELEMENT_ERROR(self, STREAM, DECODE, ("Vocoder failed"), ("%s", e.what()));
    return GST_FLOW_ERROR;
  }
}

// Posts why the model cannot take what upstream offers: an ERROR where it
// ends the pipeline (READY->PAUSED, EOS without caps), a WARNING while
// answering a CAPS query (upstream may still try something else).
static void post_layout_refusal(GstMelVocoder* self, const std::string& why, bool error) {
  GstMelVocoderPrivate* p = P(self);
  const std::string layout = p->vocoder->mel_format().to_string();
  if (error)
    GST_ELEMENT_ERROR(self, CORE, NEGOTIATION,
                      ("The %s model cannot vocode the mel features upstream offers: %s", p->vocoder->name(), why.c_str()),
                      ("Use a model trained for that layout (for S3Gen mels: a Vocos trained by vocos-train, or "
                       "hiftdec), or produce the model's layout upstream (melspec follows downstream caps). Model "
                       "layout: %s",
                       layout.c_str()));
  else
    GST_ELEMENT_WARNING(self, CORE, NEGOTIATION,
                        ("The %s model cannot vocode the mel features upstream offers: %s", p->vocoder->name(),
                         why.c_str()),
                        ("Use a model trained for that layout (for S3Gen mels: a Vocos trained by vocos-train, or "
                         "hiftdec). Model layout: %s",
                         layout.c_str()));
}

// READY->PAUSED: when nothing upstream can offer fits the model, fail now,
// with the fields named (see query_upstream_caps).
static gboolean upstream_can_fit(GstMelVocoder* self) {
  GstMelVocoderPrivate* p = P(self);
  GstCaps* offered = chatterbox::query_upstream_caps(p->sinkpad);
  if (!offered) return TRUE;
  const std::string why = chatterbox::explain_mel_caps_mismatch(p->vocoder->mel_format(), offered);
  GST_DEBUG_OBJECT(self, "upstream offers %" GST_PTR_FORMAT, offered);
  gst_caps_unref(offered);
  if (why.empty()) return TRUE;
  post_layout_refusal(self, why, /*error=*/true);
  return FALSE;
}

static gboolean accept_format(GstMelVocoder* self, GstCaps* caps) {
  GstMelVocoderPrivate* p = P(self);
  chatterbox::MelFormat f;
  std::string why;
  if (!chatterbox::mel_format_from_caps(caps, &f, &why)) {
    GST_ELEMENT_ERROR(self, CORE, NEGOTIATION, ("Incomplete mel caps: %s", why.c_str()),
                      ("caps: %" GST_PTR_FORMAT, caps));
    return FALSE;
  }
  const std::string mismatch = p->vocoder->mel_format().mismatch(f);
  if (!mismatch.empty()) {
    GST_ELEMENT_ERROR(self, CORE, NEGOTIATION,
                      ("The %s model cannot vocode these mel features: %s", p->vocoder->name(), mismatch.c_str()),
                      ("Use a model trained for this feature layout (for S3Gen mels: a Vocos trained by "
                       "vocos-train, or hiftdec), or produce the model's layout upstream (melspec follows "
                       "downstream caps). Model layout: %s",
                       p->vocoder->mel_format().to_string().c_str()));
    return FALSE;
  }
  if (p->have_format && utterance_open(p) && f != p->format) drain(self);
  p->format = f;
  p->have_format = TRUE;
  GstCaps* out = chatterbox::audio_caps(p->vocoder->sample_rate());
  gboolean ok = gst_pad_set_caps(p->srcpad, out);
  gst_caps_unref(out);
  return ok;
}

static gboolean gst_mel_vocoder_sink_event(GstPad* pad, GstObject* parent, GstEvent* event) {
  GstMelVocoder* self = GST_MEL_VOCODER(parent);
  GstMelVocoderPrivate* p = P(self);
  switch (GST_EVENT_TYPE(event)) {
    case GST_EVENT_CAPS: {
      GstCaps* caps;
      gst_event_parse_caps(event, &caps);
      gboolean ok = p->vocoder && accept_format(self, caps);
      gst_event_unref(event);
      return ok;
    }
    case GST_EVENT_SEGMENT: {
      p->timing.set_segment(event);  // pushed (as TIME) with the next audio
      gst_event_unref(event);
      return TRUE;
    }
    case GST_EVENT_EOS:
      // Upstream gave up negotiating (its own error says only
      // "not-negotiated"): say why, as an ERROR.
      if (!p->have_format) {
        GST_OBJECT_LOCK(self);
        const std::string why = p->refusal;
        GST_OBJECT_UNLOCK(self);
        if (!why.empty()) post_layout_refusal(self, why, /*error=*/true);
      }
      drain(self);
      reset_stream(self);
      p->timing.push_segment(p->srcpad);  // an empty stream still owes downstream a segment before EOS
      return gst_pad_push_event(p->srcpad, event);
    case GST_EVENT_CUSTOM_DOWNSTREAM:
      // End of an utterance (t3 / s3genmel): emit its last samples now.
      if (gst_event_has_name(event, "chatterbox/utterance-end")) {
        guint trim = 0;
        if (!gst_structure_get_uint(gst_event_get_structure(event), "trim-frames", &trim)) trim = 0;
        drain(self, trim);
        reset_stream(self);
      }
      return gst_pad_event_default(pad, parent, event);
    case GST_EVENT_FLUSH_STOP:
      reset_stream(self);
      p->timing.flush();
      return gst_pad_push_event(p->srcpad, event);
    default:
      return gst_pad_event_default(pad, parent, event);
  }
}

static gboolean gst_mel_vocoder_sink_query(GstPad* pad, GstObject* parent, GstQuery* query) {
  GstMelVocoder* self = GST_MEL_VOCODER(parent);
  GstMelVocoderPrivate* p = P(self);
  switch (GST_QUERY_TYPE(query)) {
    case GST_QUERY_CAPS: {
      GstCaps* caps = p->vocoder ? chatterbox::mel_format_to_caps(p->vocoder->mel_format())
                                 : gst_pad_get_pad_template_caps(pad);
      if (chatterbox::answer_caps_query(query, caps) && p->vocoder) {
        // Upstream will fail with not-negotiated; say why in words.
        GstCaps* filter;
        gst_query_parse_caps(query, &filter);
        const std::string why = chatterbox::explain_mel_caps_mismatch(p->vocoder->mel_format(), filter);
        GST_OBJECT_LOCK(self);
        p->refusal = why;
        GST_OBJECT_UNLOCK(self);
        post_layout_refusal(self, why, /*error=*/false);
      }
      return TRUE;
    }
    case GST_QUERY_ACCEPT_CAPS: {
      // Accept anything within the template: the pad checks accept-caps
      // before a CAPS event reaches sink_event, so refusing a mismatched
      // layout here would fail negotiation silently (upstream only says
      // "not-negotiated"). accept_format() then refuses it with an ERROR
      // naming each differing field. The CAPS query stays exact, so
      // negotiating upstream elements still pick the model's layout.
      return chatterbox::accept_caps_within_template(pad, query);
    }
    default:
      return gst_pad_query_default(pad, parent, query);
  }
}

static gboolean gst_mel_vocoder_src_query(GstPad* pad, GstObject* parent, GstQuery* query) {
  GstMelVocoder* self = GST_MEL_VOCODER(parent);
  GstMelVocoderPrivate* p = P(self);
  switch (GST_QUERY_TYPE(query)) {
    case GST_QUERY_CAPS:
      chatterbox::answer_caps_query(
          query, p->vocoder ? chatterbox::audio_caps(p->vocoder->sample_rate()) : gst_pad_get_pad_template_caps(pad));
      return TRUE;
    case GST_QUERY_LATENCY: {
      GstClockTime ours = 0;
      if (p->vocoder) {
        // A sample is final only once `lookahead` further frames have arrived
        // (the property's value: a change applies from the next buffer).
        const chatterbox::MelFormat& f = p->vocoder->mel_format();
        GST_OBJECT_LOCK(self);
        gint64 frames = wanted_lookahead(p);
        const gint chunk = p->chunk_frames;
        GST_OBJECT_UNLOCK(self);
        // Gathering a chunk holds its first frame back by chunk - 1 more
        // frames (auto on a live pipeline gathers none).
        if (chunk > 1) frames += chunk - 1;
        ours = gst_util_uint64_scale_int(frames * f.hop_length, GST_SECOND, f.rate);
      }
      GST_DEBUG_OBJECT(self, "latency: upstream + %" GST_TIME_FORMAT, GST_TIME_ARGS(ours));
      return chatterbox::answer_latency_query(p->sinkpad, query, ours);
    }
    default:
      return gst_pad_query_default(pad, parent, query);
  }
}

static gboolean load_model(GstMelVocoder* self) {
  GstMelVocoderPrivate* p = P(self);
  GstMelVocoderClass* klass = GST_MEL_VOCODER_GET_CLASS(self);
  GST_OBJECT_LOCK(self);
  gchar* model = g_strdup(p->model ? p->model : klass->default_model);
  gchar* device = g_strdup(p->device);
  const gint threads = p->threads;
  GST_OBJECT_UNLOCK(self);
  if (!model || !*model) {
    GST_ELEMENT_ERROR(self, RESOURCE, NOT_FOUND, ("No model given: set the 'model' property"), (nullptr));
    g_free(model);
    g_free(device);
    return FALSE;
  }
  GError* err = nullptr;
  GST_INFO_OBJECT(self, "loading model %s on %s", model, device);
  p->vocoder = klass->load_model(self, model, device, threads, &err);
  if (!p->vocoder) {
    GST_ELEMENT_ERROR(self, RESOURCE, OPEN_READ, ("Could not load model '%s': %s", model, err ? err->message : "unknown error"),
                      (nullptr));
    g_clear_error(&err);
  } else {
    apply_lookahead(self);
    GST_INFO_OBJECT(self, "model %s expects %s", model, p->vocoder->mel_format().to_string().c_str());
  }
  g_free(model);
  g_free(device);
  return p->vocoder != nullptr;
}

static GstStateChangeReturn gst_mel_vocoder_change_state(GstElement* element, GstStateChange transition) {
  GstMelVocoder* self = GST_MEL_VOCODER(element);
  GstMelVocoderPrivate* p = P(self);
  switch (transition) {
    case GST_STATE_CHANGE_NULL_TO_READY:
      if (!load_model(self)) return GST_STATE_CHANGE_FAILURE;
      break;
    case GST_STATE_CHANGE_READY_TO_PAUSED:
      if (!upstream_can_fit(self)) return GST_STATE_CHANGE_FAILURE;
      GST_OBJECT_LOCK(self);
      p->refusal.clear();
      GST_OBJECT_UNLOCK(self);
      p->timing.start();
      reset_stream(self);
      break;
    default:
      break;
  }
  GstStateChangeReturn ret = GST_ELEMENT_CLASS(gst_mel_vocoder_parent_class)->change_state(element, transition);
  switch (transition) {
    case GST_STATE_CHANGE_PAUSED_TO_READY:
      reset_stream(self);
      p->have_format = FALSE;
      break;
    case GST_STATE_CHANGE_READY_TO_NULL:
      delete p->vocoder;
      p->vocoder = nullptr;
      break;
    default:
      break;
  }
  return ret;
}

static void gst_mel_vocoder_set_property(GObject* object, guint prop_id, const GValue* value, GParamSpec* pspec) {
  GstMelVocoder* self = GST_MEL_VOCODER(object);
  GstMelVocoderPrivate* p = P(self);
  GST_OBJECT_LOCK(self);
  switch (prop_id) {
    case PROP_MODEL:
    case PROP_DEVICE:
      // The model is loaded in READY and up: a new file or device would
      // silently not apply. Refused, with a warning on the bus.
      if (!chatterbox::element_is_stopped(GST_ELEMENT(self))) {
        GST_OBJECT_UNLOCK(self);
        chatterbox::warn_load_time_property(GST_ELEMENT(self), pspec);
        return;
      }
      if (prop_id == PROP_MODEL) {
        g_free(p->model);
        p->model = g_value_dup_string(value);
      } else {
        g_free(p->device);
        p->device = g_value_dup_string(value);
        if (!p->device) p->device = g_strdup("cpu");
      }
      break;
    case PROP_THREADS:
      p->threads = g_value_get_int(value);
      break;
    case PROP_LOOKAHEAD: {
      const gboolean changed = p->lookahead != g_value_get_int(value);
      p->lookahead = g_value_get_int(value);
      GST_OBJECT_UNLOCK(self);
      // The pipeline's latency changes: let the application recompute it.
      if (changed && p->vocoder) gst_element_post_message(GST_ELEMENT(self), gst_message_new_latency(GST_OBJECT(self)));
      return;
    }
    case PROP_CHUNK_FRAMES: {
      const gboolean changed = p->chunk_frames != g_value_get_int(value);
      p->chunk_frames = g_value_get_int(value);
      GST_OBJECT_UNLOCK(self);
      if (changed && p->vocoder) gst_element_post_message(GST_ELEMENT(self), gst_message_new_latency(GST_OBJECT(self)));
      return;
    }
    default:
      G_OBJECT_WARN_INVALID_PROPERTY_ID(object, prop_id, pspec);
  }
  GST_OBJECT_UNLOCK(self);
}

static void gst_mel_vocoder_get_property(GObject* object, guint prop_id, GValue* value, GParamSpec* pspec) {
  GstMelVocoder* self = GST_MEL_VOCODER(object);
  GstMelVocoderPrivate* p = P(self);
  GST_OBJECT_LOCK(self);
  switch (prop_id) {
    case PROP_MODEL:
      g_value_set_string(value, p->model ? p->model : GST_MEL_VOCODER_GET_CLASS(self)->default_model);
      break;
    case PROP_DEVICE:
      g_value_set_string(value, p->device);
      break;
    case PROP_THREADS:
      g_value_set_int(value, p->threads);
      break;
    case PROP_LOOKAHEAD:
      g_value_set_int(value, p->lookahead);
      break;
    case PROP_CHUNK_FRAMES:
      g_value_set_int(value, p->chunk_frames);
      break;
    default:
      G_OBJECT_WARN_INVALID_PROPERTY_ID(object, prop_id, pspec);
  }
  GST_OBJECT_UNLOCK(self);
}

static void gst_mel_vocoder_finalize(GObject* object) {
  GstMelVocoderPrivate* p = P(GST_MEL_VOCODER(object));
  delete p->vocoder;
  p->format.~MelFormat();
  p->refusal.~basic_string();
  g_object_unref(p->adapter);
  g_free(p->model);
  g_free(p->device);
  G_OBJECT_CLASS(gst_mel_vocoder_parent_class)->finalize(object);
}

static void gst_mel_vocoder_class_init(GstMelVocoderClass* klass) {
  GObjectClass* gobject_class = G_OBJECT_CLASS(klass);
  GstElementClass* element_class = GST_ELEMENT_CLASS(klass);
  GST_DEBUG_CATEGORY_INIT(mel_vocoder_debug, "melvocoder", 0, "chatterbox mel vocoder base class");
  gobject_class->set_property = gst_mel_vocoder_set_property;
  gobject_class->get_property = gst_mel_vocoder_get_property;
  gobject_class->finalize = gst_mel_vocoder_finalize;
  element_class->change_state = gst_mel_vocoder_change_state;

  const GParamFlags rw = static_cast<GParamFlags>(G_PARAM_READWRITE | G_PARAM_STATIC_STRINGS);
  const GParamFlags rw_playing = static_cast<GParamFlags>(rw | GST_PARAM_MUTABLE_PLAYING);
  g_object_class_install_property(gobject_class, PROP_MODEL,
      g_param_spec_string("model", "Model",
                          "Model file (safetensors, or a PyTorch checkpoint) or a directory holding one with its "
                          "config; loaded when the element goes to READY (instances naming the same file share one "
                          "copy of the weights). Its feature layout fixes the sink caps. Changeable in the NULL "
                          "state only: refused with a warning otherwise.",
                          nullptr, rw));
  g_object_class_install_property(gobject_class, PROP_DEVICE,
      g_param_spec_string("device", "Device",
                          "Where to run the model: 'cpu', or 'cuda' / 'cuda:N' (needs a CUDA LibTorch build; "
                          "an error when unavailable). Changeable in the NULL state only.",
                          "cpu", rw));
  g_object_class_install_property(gobject_class, PROP_THREADS,
      g_param_spec_int("threads", "Threads",
                       "CPU threads for LibTorch (0: LibTorch's default). Process-wide: LibTorch has one pool. "
                       "Applied when the element goes to READY.",
                       0, 256, 0, rw));
  g_object_class_install_property(gobject_class, PROP_LOOKAHEAD,
      g_param_spec_int("lookahead", "Lookahead",
                       "Mel frames of right context awaited before audio is emitted. -1: the model's full receptive "
                       "field, which makes the streamed output equal the whole-utterance output. Smaller values "
                       "lower the latency at the cost of small errors near chunk boundaries (see bench/). "
                       "Changeable while playing: applies from the next buffer (output stays contiguous: samples "
                       "already pushed stay) and posts a LATENCY message.",
                       -1, 10000, -1, rw_playing));
  g_object_class_install_property(gobject_class, PROP_CHUNK_FRAMES,
      g_param_spec_int("chunk-frames", "Chunk frames",
                       "Mel frames gathered before each model call. Bigger calls cost less per frame (each call "
                       "reads every weight once); the audio is the same, only later: the latency query adds "
                       "chunk-frames - 1 frames. -1: 1 frame when upstream is live (audio as soon as it is final), "
                       "50 frames (1 s) otherwise. The end of an utterance (EOS, DISCONT, utterance-end, a caps "
                       "change) always releases what is gathered. Changeable while playing: applies from the next "
                       "stream (after a flush or the next READY->PAUSED) and posts a LATENCY message.",
                       -1, 10000, -1, rw_playing));

  gst_element_class_add_static_pad_template(element_class, &sink_template);
  gst_element_class_add_static_pad_template(element_class, &src_template);
  klass->load_model = nullptr;
  klass->default_model = nullptr;
}

static void gst_mel_vocoder_init(GstMelVocoder* self) {
  GstMelVocoderPrivate* p = P(self);
  GstElementClass* klass = GST_ELEMENT_GET_CLASS(self);
  p->sinkpad = gst_pad_new_from_template(gst_element_class_get_pad_template(klass, "sink"), "sink");
  gst_pad_set_chain_function(p->sinkpad, gst_mel_vocoder_chain);
  gst_pad_set_event_function(p->sinkpad, gst_mel_vocoder_sink_event);
  gst_pad_set_query_function(p->sinkpad, gst_mel_vocoder_sink_query);
  gst_element_add_pad(GST_ELEMENT(self), p->sinkpad);
  p->srcpad = gst_pad_new_from_template(gst_element_class_get_pad_template(klass, "src"), "src");
  gst_pad_set_query_function(p->srcpad, gst_mel_vocoder_src_query);
  gst_pad_use_fixed_caps(p->srcpad);
  gst_element_add_pad(GST_ELEMENT(self), p->srcpad);
  p->adapter = gst_adapter_new();
  p->device = g_strdup("cpu");
  p->lookahead = -1;
  p->chunk_frames = -1;
  // GObject memory is zero-filled, not constructed: C++ members are placed
  // here and destroyed in finalize.
  new (&p->format) chatterbox::MelFormat();
  new (&p->refusal) std::string();
  new (&p->timing) chatterbox::OutputTiming();
}
