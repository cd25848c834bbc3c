#include "elements/mel/gstmelspec.h"

#include "elements/mel/features/mel_extractor.h"
#include "gst-plugins/caps.h"
#include "gst-plugins/core/checkpoint.h"
#include "gst-plugins/elements.h"
#include "gst-plugins/output_timing.h"

#include <ATen/ATen.h>
#include <gst/audio/audio.h>

#include <memory>

GST_DEBUG_CATEGORY_STATIC(mel_spec_debug);
#define GST_CAT_DEFAULT mel_spec_debug

typedef enum { PRESET_S3GEN, PRESET_VOCOS } GstMelSpecPreset;

static GType gst_mel_spec_preset_get_type() {
  static GType type = 0;
  static const GEnumValue values[] = {
      {PRESET_S3GEN, "Chatterbox S3Gen: 80 mels, hop 480, n-fft 1920, 0-8 kHz, Slaney, ln(max(x,1e-5))", "s3gen"},
      {PRESET_VOCOS, "Vocos (charactr/vocos-mel-24khz): 100 mels, hop 256, n-fft 1024, HTK, ln(max(x,1e-7))", "vocos"},
      {0, nullptr, nullptr}};
  if (g_once_init_enter(&type)) g_once_init_leave(&type, g_enum_register_static("GstMelSpecPreset", values));
  return type;
}

enum { PROP_0, PROP_PRESET, PROP_N_MELS, PROP_HOP_LENGTH, PROP_N_FFT, PROP_F_MIN, PROP_F_MAX };

struct _GstMelSpec {
  GstElement parent;
  GstPad* sinkpad;
  GstPad* srcpad;

  GstMelSpecPreset preset;
  gint n_mels, hop_length, n_fft;  // 0: the preset's
  gdouble f_min, f_max;            // < 0: the preset's

  std::unique_ptr<chatterbox::mel::MelStream> stream;  // set once caps are negotiated
  chatterbox::OutputTiming timing;
};

G_DEFINE_TYPE(GstMelSpec, gst_mel_spec, GST_TYPE_ELEMENT)
GST_ELEMENT_REGISTER_DEFINE(melspec, "melspec", GST_RANK_NONE, GST_TYPE_MEL_SPEC)

static GstStaticPadTemplate sink_template = GST_STATIC_PAD_TEMPLATE(
    "sink", GST_PAD_SINK, GST_PAD_ALWAYS,
    GST_STATIC_CAPS("audio/x-raw, format=(string)F32LE, layout=(string)interleaved, channels=(int)1, "
                    "rate=(int)[1, MAX]"));
static GstStaticPadTemplate src_template =
    GST_STATIC_PAD_TEMPLATE("src", GST_PAD_SRC, GST_PAD_ALWAYS, GST_STATIC_CAPS(CHATTERBOX_MEL_TEMPLATE_CAPS));

// The recipe the properties ask for.
static chatterbox::MelFormat property_format(GstMelSpec* self) {
  GST_OBJECT_LOCK(self);
  chatterbox::MelFormat f = self->preset == PRESET_VOCOS ? chatterbox::MelFormat::vocos() : chatterbox::MelFormat::s3gen();
  if (self->n_mels > 0) f.n_mels = self->n_mels;
  if (self->hop_length > 0) f.hop_length = self->hop_length;
  if (self->n_fft > 0) f.n_fft = f.win_length = self->n_fft;
  if (self->f_min >= 0) f.f_min = self->f_min;
  if (self->f_max >= 0) f.f_max = self->f_max;
  GST_OBJECT_UNLOCK(self);
  return f;
}

// The recipe to produce: the properties' one when downstream accepts it,
// else the properties' one with every field downstream fixes replaced by
// downstream's value (e.g. a vocoder whose model needs another layout).
static bool choose_format(GstMelSpec* self, chatterbox::MelFormat* out, std::string* why) {
  chatterbox::MelFormat f = property_format(self);
  GstCaps* ours = chatterbox::mel_format_to_caps(f);
  GstCaps* peer = gst_pad_peer_query_caps(self->srcpad, nullptr);
  bool ok = true;
  if (!gst_caps_can_intersect(ours, peer)) {
    GstCaps* templ = gst_pad_get_pad_template_caps(self->srcpad);
    GstCaps* want = gst_caps_intersect(peer, templ);
    gst_caps_unref(templ);
    if (gst_caps_is_empty(want)) {
      *why = "downstream accepts no mel features at all";
      ok = false;
    } else {
      want = gst_caps_fixate(want);
      GstStructure* merged = gst_structure_copy(gst_caps_get_structure(ours, 0));
      const GstStructure* w = gst_caps_get_structure(want, 0);
      for (gint i = 0; i < gst_structure_n_fields(w); ++i) {
        const char* name = gst_structure_nth_field_name(w, i);
        gst_structure_set_value(merged, name, gst_structure_get_value(w, name));
      }
      GstCaps* mc = gst_caps_new_full(merged, nullptr);
      ok = chatterbox::mel_format_from_caps(mc, &f, why);
      gst_caps_unref(mc);
    }
    gst_caps_unref(want);
  }
  gst_caps_unref(ours);
  gst_caps_unref(peer);
  if (ok) *out = f;
  return ok;
}

static gboolean set_sink_caps(GstMelSpec* self, GstCaps* caps) {
  GstAudioInfo info;
  if (!gst_audio_info_from_caps(&info, caps)) {
    GST_ELEMENT_ERROR(self, CORE, NEGOTIATION, ("Invalid audio caps"), ("%" GST_PTR_FORMAT, caps));
    return FALSE;
  }
  chatterbox::MelFormat f;
  std::string why;
  if (!choose_format(self, &f, &why)) {
    GST_ELEMENT_ERROR(self, CORE, NEGOTIATION, ("Cannot choose a mel recipe: %s", why.c_str()), (nullptr));
    return FALSE;
  }
  if (GST_AUDIO_INFO_RATE(&info) != f.rate || GST_AUDIO_INFO_CHANNELS(&info) != 1) {
    GST_ELEMENT_ERROR(self, CORE, NEGOTIATION,
                      ("melspec needs mono audio at %d Hz, got %d channel(s) at %d Hz", f.rate,
                       GST_AUDIO_INFO_CHANNELS(&info), GST_AUDIO_INFO_RATE(&info)),
                      ("Insert 'audioconvert ! audioresample' before melspec."));
    return FALSE;
  }
  try {
    if (self->stream && self->stream->samples_fed() > 0 && self->stream->extractor().format() != f) {
      GST_ELEMENT_ERROR(self, CORE, NEGOTIATION, ("Mel recipe changed in the middle of an utterance"), (nullptr));
      return FALSE;
    }
    if (!self->stream || self->stream->extractor().format() != f)
      self->stream = std::make_unique<chatterbox::mel::MelStream>(f);
  } catch (const std::exception& e) {
    GST_ELEMENT_ERROR(self, CORE, NEGOTIATION, ("Unsupported mel recipe: %s", e.what()), ("%s", f.to_string().c_str()));
    return FALSE;
  }
  GST_INFO_OBJECT(self, "producing %s", f.to_string().c_str());
  GstCaps* out = chatterbox::mel_format_to_caps(f);
  gboolean ok = gst_pad_set_caps(self->srcpad, out);
  gst_caps_unref(out);
  return ok;
}

// Pushes frames [t, n_mels]; `first` = index of the first frame in the utterance.
static GstFlowReturn push_frames(GstMelSpec* self, const at::Tensor& frames, int64_t first) {
  const int64_t t = frames.size(0);
  if (t == 0) return GST_FLOW_OK;
  self->timing.push_segment(self->srcpad);
  const chatterbox::MelFormat& f = self->stream->extractor().format();
  at::Tensor c = frames.to(at::kFloat).contiguous();
  GstBuffer* buf = gst_buffer_new_allocate(nullptr, c.numel() * sizeof(float), nullptr);
  gst_buffer_fill(buf, 0, c.data_ptr<float>(), c.numel() * sizeof(float));
  self->timing.stamp(buf, first, t, f.rate, f.hop_length);  // frames at rate/hop per second
  return gst_pad_push(self->srcpad, buf);
}

static GstFlowReturn finish_utterance(GstMelSpec* self) {
  if (!self->stream || self->stream->samples_fed() == 0) return GST_FLOW_OK;
  const int64_t first = self->stream->frames_emitted();
  return push_frames(self, self->stream->finish(), first);
}

static GstFlowReturn gst_mel_spec_chain(GstPad*, GstObject* parent, GstBuffer* buf) {
  GstMelSpec* self = GST_MEL_SPEC(parent);
  if (!self->stream) {
    gst_buffer_unref(buf);
    GST_ELEMENT_ERROR(self, CORE, NEGOTIATION, ("Audio arrived before caps were negotiated"), (nullptr));
    return GST_FLOW_NOT_NEGOTIATED;
  }
  GstFlowReturn ret = GST_FLOW_OK;
  if (GST_BUFFER_FLAG_IS_SET(buf, GST_BUFFER_FLAG_DISCONT) && self->stream->samples_fed() > 0) {
    ret = finish_utterance(self);
    if (ret != GST_FLOW_OK) {
      gst_buffer_unref(buf);
      return ret;
    }
  }
  if (self->stream->samples_fed() == 0) {
    self->timing.begin_utterance(buf);
  }
  GstMapInfo map;
  if (!gst_buffer_map(buf, &map, GST_MAP_READ)) {
    gst_buffer_unref(buf);
    GST_ELEMENT_ERROR(self, RESOURCE, READ, ("Cannot map input buffer"), (nullptr));
    return GST_FLOW_ERROR;
  }
  // Audio caps guarantee whole F32 samples; a stray tail byte count is ignored.
  const int64_t n = static_cast<int64_t>(map.size / sizeof(float));
  try {
    const int64_t first = self->stream->frames_emitted();
    at::Tensor frames = self->stream->feed(reinterpret_cast<const float*>(map.data), n);
    gst_buffer_unmap(buf, &map);
    gst_buffer_unref(buf);
    return push_frames(self, frames, first);
  } catch (const std::exception& e) {
    gst_buffer_unmap(buf, &map);
    gst_buffer_unref(buf);
    GST_ELEMENT_ERROR(self, STREAM, FAILED, ("Mel analysis failed"), ("%s", e.what()));
    return GST_FLOW_ERROR;
  }
}

static gboolean gst_mel_spec_sink_event(GstPad* pad, GstObject* parent, GstEvent* event) {
  GstMelSpec* self = GST_MEL_SPEC(parent);
  switch (GST_EVENT_TYPE(event)) {
    case GST_EVENT_CAPS: {
      GstCaps* caps;
      gst_event_parse_caps(event, &caps);
      gboolean ok = set_sink_caps(self, caps);
      gst_event_unref(event);
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
    case GST_EVENT_FLUSH_STOP:
      if (self->stream) self->stream->reset();
      self->timing.flush();
      return gst_pad_push_event(self->srcpad, event);
    default:
      return gst_pad_event_default(pad, parent, event);
  }
}

static void post_rate_refusal(GstMelSpec* self, int rate, const std::string& offered, bool error) {
  if (error)
    GST_ELEMENT_ERROR(self, CORE, NEGOTIATION,
                      ("melspec needs mono F32LE audio at %d Hz, which upstream does not offer: insert "
                       "'audioconvert ! audioresample' before melspec",
                       rate),
                      ("%s", offered.c_str()));
  else
    GST_ELEMENT_WARNING(self, CORE, NEGOTIATION,
                        ("melspec needs mono F32LE audio at %d Hz, which upstream does not offer: insert "
                         "'audioconvert ! audioresample' before melspec",
                         rate),
                        ("%s", offered.c_str()));
}

static gboolean gst_mel_spec_sink_query(GstPad* pad, GstObject* parent, GstQuery* query) {
  GstMelSpec* self = GST_MEL_SPEC(parent);
  if (GST_QUERY_TYPE(query) == GST_QUERY_CAPS) {
    // Offer exactly the rate the chosen recipe needs, so an upstream
    // audioresample converts to it.
    chatterbox::MelFormat f;
    std::string why;
    GstCaps* caps = choose_format(self, &f, &why) ? chatterbox::audio_caps(f.rate) : gst_caps_new_empty();
    if (chatterbox::answer_caps_query(query, caps)) {
      // Upstream will fail with a bare not-negotiated; say what to do.
      GstCaps* filter;
      gst_query_parse_caps(query, &filter);
      gchar* offered = gst_caps_to_string(filter);
      post_rate_refusal(self, f.rate, std::string("upstream offers ") + offered, /*error=*/false);
      g_free(offered);
    }
    return TRUE;
  }
  if (GST_QUERY_TYPE(query) == GST_QUERY_ACCEPT_CAPS) {
    // Anything within the template: a rate or channel count melspec cannot
    // take is then refused by set_sink_caps with an ERROR saying what to
    // insert, instead of the pad's silent accept-caps failure (upstream
    // would only say "not-negotiated").
    return chatterbox::accept_caps_within_template(pad, query);
  }
  return gst_pad_query_default(pad, parent, query);
}

static gboolean gst_mel_spec_src_query(GstPad* pad, GstObject* parent, GstQuery* query) {
  GstMelSpec* self = GST_MEL_SPEC(parent);
  if (GST_QUERY_TYPE(query) == GST_QUERY_LATENCY) {
    GstClockTime ours = 0;
    if (self->stream) {
      // Frame t is stamped t*hop but needs samples up to t*hop + n_fft - pad.
      const auto& ex = self->stream->extractor();
      ours = gst_util_uint64_scale_int(ex.n_fft() - ex.pad(), GST_SECOND, ex.format().rate);
    }
    return chatterbox::answer_latency_query(self->sinkpad, query, ours);
  }
  return gst_pad_query_default(pad, parent, query);
}

// READY->PAUSED (downstream is already PAUSED): a recipe must exist for
// what downstream takes, and upstream must be able to offer its audio;
// otherwise fail now with the reason (see query_upstream_caps).
static gboolean negotiation_can_succeed(GstMelSpec* self) {
  chatterbox::MelFormat f;
  std::string why;
  if (!choose_format(self, &f, &why)) {
    GST_ELEMENT_ERROR(self, CORE, NEGOTIATION, ("Cannot choose a mel recipe: %s", why.c_str()), (nullptr));
    return FALSE;
  }
  GstCaps* offered = chatterbox::query_upstream_caps(self->sinkpad);
  if (!offered) return TRUE;
  GstCaps* want = chatterbox::audio_caps(f.rate);
  why = chatterbox::explain_caps_mismatch(want, offered, "melspec");
  gst_caps_unref(want);
  gst_caps_unref(offered);
  if (why.empty()) return TRUE;
  post_rate_refusal(self, f.rate, why, /*error=*/true);
  return FALSE;
}

static GstStateChangeReturn gst_mel_spec_change_state(GstElement* element, GstStateChange transition) {
  GstMelSpec* self = GST_MEL_SPEC(element);
  if (transition == GST_STATE_CHANGE_READY_TO_PAUSED) {
    if (!negotiation_can_succeed(self)) return GST_STATE_CHANGE_FAILURE;
    self->timing.start();
  }
  GstStateChangeReturn ret = GST_ELEMENT_CLASS(gst_mel_spec_parent_class)->change_state(element, transition);
  if (transition == GST_STATE_CHANGE_PAUSED_TO_READY) self->stream.reset();
  return ret;
}

static void gst_mel_spec_set_property(GObject* object, guint id, const GValue* value, GParamSpec* pspec) {
  GstMelSpec* self = GST_MEL_SPEC(object);
  GST_OBJECT_LOCK(self);
  if (GST_STATE(self) > GST_STATE_READY || GST_STATE_PENDING(self) > GST_STATE_READY) {
    // The recipe is fixed when the caps are negotiated: a change now would
    // silently not apply (or change the features mid-utterance).
    GST_OBJECT_UNLOCK(self);
    GST_ELEMENT_WARNING(self, LIBRARY, SETTINGS,
                        ("'%s' can only change in the NULL or READY state: ignored", pspec->name),
                        ("the mel recipe is fixed when the caps are negotiated"));
    return;
  }
  switch (id) {
    case PROP_PRESET: self->preset = static_cast<GstMelSpecPreset>(g_value_get_enum(value)); break;
    case PROP_N_MELS: self->n_mels = g_value_get_int(value); break;
    case PROP_HOP_LENGTH: self->hop_length = g_value_get_int(value); break;
    case PROP_N_FFT: self->n_fft = g_value_get_int(value); break;
    case PROP_F_MIN: self->f_min = g_value_get_double(value); break;
    case PROP_F_MAX: self->f_max = g_value_get_double(value); break;
    default: G_OBJECT_WARN_INVALID_PROPERTY_ID(object, id, pspec);
  }
  GST_OBJECT_UNLOCK(self);
}

static void gst_mel_spec_get_property(GObject* object, guint id, GValue* value, GParamSpec* pspec) {
  GstMelSpec* self = GST_MEL_SPEC(object);
  GST_OBJECT_LOCK(self);
  switch (id) {
    case PROP_PRESET: g_value_set_enum(value, self->preset); break;
    case PROP_N_MELS: g_value_set_int(value, self->n_mels); break;
    case PROP_HOP_LENGTH: g_value_set_int(value, self->hop_length); break;
    case PROP_N_FFT: g_value_set_int(value, self->n_fft); break;
    case PROP_F_MIN: g_value_set_double(value, self->f_min); break;
    case PROP_F_MAX: g_value_set_double(value, self->f_max); break;
    default: G_OBJECT_WARN_INVALID_PROPERTY_ID(object, id, pspec);
  }
  GST_OBJECT_UNLOCK(self);
}

static void gst_mel_spec_finalize(GObject* object) {
  GstMelSpec* self = GST_MEL_SPEC(object);
  self->stream.~unique_ptr();
  G_OBJECT_CLASS(gst_mel_spec_parent_class)->finalize(object);
}

static void gst_mel_spec_class_init(GstMelSpecClass* klass) {
  GObjectClass* gobject_class = G_OBJECT_CLASS(klass);
  GstElementClass* element_class = GST_ELEMENT_CLASS(klass);
  GST_DEBUG_CATEGORY_INIT(mel_spec_debug, "melspec", 0, "chatterbox audio to log-mel");
  gobject_class->set_property = gst_mel_spec_set_property;
  gobject_class->get_property = gst_mel_spec_get_property;
  gobject_class->finalize = gst_mel_spec_finalize;
  element_class->change_state = gst_mel_spec_change_state;

  const GParamFlags rw = static_cast<GParamFlags>(G_PARAM_READWRITE | G_PARAM_STATIC_STRINGS | GST_PARAM_MUTABLE_READY);
  g_object_class_install_property(gobject_class, PROP_PRESET,
      g_param_spec_enum("preset", "Preset",
                        "Feature recipe used when downstream does not constrain the mel caps. This and the "
                        "overrides below change in the NULL or READY state only (refused with a warning later).",
                        gst_mel_spec_preset_get_type(), PRESET_S3GEN, rw));
  g_object_class_install_property(gobject_class, PROP_N_MELS,
      g_param_spec_int("n-mels", "Mel bands", "Override the preset's number of mel bands (0: preset)", 0, 1024, 0, rw));
  g_object_class_install_property(gobject_class, PROP_HOP_LENGTH,
      g_param_spec_int("hop-length", "Hop length", "Override the preset's hop in samples (0: preset)", 0, 65536, 0, rw));
  g_object_class_install_property(gobject_class, PROP_N_FFT,
      g_param_spec_int("n-fft", "FFT size", "Override the preset's FFT size and window length (0: preset)", 0, 65536, 0,
                       rw));
  g_object_class_install_property(gobject_class, PROP_F_MIN,
      g_param_spec_double("f-min", "Lowest frequency", "Override the preset's lowest mel frequency in Hz (-1: preset)",
                          -1, 1e6, -1, rw));
  g_object_class_install_property(gobject_class, PROP_F_MAX,
      g_param_spec_double("f-max", "Highest frequency", "Override the preset's highest mel frequency in Hz (-1: preset)",
                          -1, 1e6, -1, rw));

  gst_element_class_add_static_pad_template(element_class, &sink_template);
  gst_element_class_add_static_pad_template(element_class, &src_template);
  gst_element_class_set_static_metadata(element_class, "Log-mel spectrogram", "Filter/Analyzer/Audio",
      "Turns mono audio into log-mel frames in the S3Gen or Vocos feature layout (or as downstream asks)",
      "gst-chatterbox developers");
}

static void gst_mel_spec_init(GstMelSpec* self) {
  new (&self->stream) std::unique_ptr<chatterbox::mel::MelStream>();
  self->sinkpad = gst_pad_new_from_static_template(&sink_template, "sink");
  gst_pad_set_chain_function(self->sinkpad, gst_mel_spec_chain);
  gst_pad_set_event_function(self->sinkpad, gst_mel_spec_sink_event);
  gst_pad_set_query_function(self->sinkpad, gst_mel_spec_sink_query);
  gst_element_add_pad(GST_ELEMENT(self), self->sinkpad);
  self->srcpad = gst_pad_new_from_static_template(&src_template, "src");
  gst_pad_set_query_function(self->srcpad, gst_mel_spec_src_query);
  gst_pad_use_fixed_caps(self->srcpad);
  gst_element_add_pad(GST_ELEMENT(self), self->srcpad);
  self->preset = PRESET_S3GEN;
  self->f_min = self->f_max = -1;
  new (&self->timing) chatterbox::OutputTiming();
}
