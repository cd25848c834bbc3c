#include "elements/watermark/gstperthmark.h"

#include "elements/watermark/perth/perth_stream.h"
#include "gst-plugins/core/model_cache.h"
#include "gst-plugins/elements.h"
#include "gst-plugins/load_time_property.h"

#include <gst/audio/audio.h>

#include <memory>
#include <string>
#include <vector>

GST_DEBUG_CATEGORY_STATIC(perth_mark_debug);
#define GST_CAT_DEFAULT perth_mark_debug

using chatterbox::perth::PerthEmbedder;
using chatterbox::perth::PerthNet;

enum { PROP_0, PROP_MODEL, PROP_MODE, PROP_LATENCY };

typedef enum { GST_PERTH_MARK_MODE_UTTERANCE = 0, GST_PERTH_MARK_MODE_STREAM = 1 } GstPerthMarkMode;

GType gst_perth_mark_mode_get_type(void) {
  static GType type = 0;
  if (g_once_init_enter(&type)) {
    static const GEnumValue values[] = {
        {GST_PERTH_MARK_MODE_UTTERANCE, "Exact: hold each utterance and mark it whole (upstream's mark)", "utterance"},
        {GST_PERTH_MARK_MODE_STREAM, "Mark as audio arrives (~0.35 s look-ahead; running-maximum mask)", "stream"},
        {0, nullptr, nullptr}};
    GType t = g_enum_register_static("GstPerthMarkMode", values);
    g_once_init_leave(&type, t);
  }
  return type;
}

struct _GstPerthMark {
  GstElement parent;
  GstPad* sinkpad;
  GstPad* srcpad;
  gchar* model;
  GstPerthMarkMode mode;
  std::shared_ptr<const PerthNet>* net;     // loaded at READY
  std::unique_ptr<PerthEmbedder>* embedder;  // per caps
  gint rate;
  // output timing: the utterance's first PTS and samples pushed since
  GstClockTime utt_pts;
  guint64 utt_out;
  gboolean utt_open;      // an utterance has samples in
  gboolean next_discont;  // mark the next pushed buffer DISCONT
  GstClockTime max_utt;   // utterance mode: the longest utterance so far (reported latency)
  guint64 utt_in;         // samples in of the open utterance
};

G_DEFINE_TYPE(GstPerthMark, gst_perth_mark, GST_TYPE_ELEMENT)
GST_ELEMENT_REGISTER_DEFINE(perthmark, "perthmark", GST_RANK_NONE, GST_TYPE_PERTH_MARK)

#define PERTH_CAPS "audio/x-raw, format=(string)F32LE, layout=(string)interleaved, channels=(int)1, rate=(int)[1, MAX]"
static GstStaticPadTemplate sink_template =
    GST_STATIC_PAD_TEMPLATE("sink", GST_PAD_SINK, GST_PAD_ALWAYS, GST_STATIC_CAPS(PERTH_CAPS));
static GstStaticPadTemplate src_template =
    GST_STATIC_PAD_TEMPLATE("src", GST_PAD_SRC, GST_PAD_ALWAYS, GST_STATIC_CAPS(PERTH_CAPS));

static GstFlowReturn push_samples(GstPerthMark* self, std::vector<float>& out) {
  if (out.empty()) return GST_FLOW_OK;
  const gsize bytes = out.size() * sizeof(float);
  GstBuffer* buf = gst_buffer_new_allocate(nullptr, bytes, nullptr);
  gst_buffer_fill(buf, 0, out.data(), bytes);
  if (GST_CLOCK_TIME_IS_VALID(self->utt_pts) && self->rate > 0) {
    const GstClockTime t0 = self->utt_pts + gst_util_uint64_scale_int(self->utt_out, GST_SECOND, self->rate);
    const GstClockTime t1 =
        self->utt_pts + gst_util_uint64_scale_int(self->utt_out + out.size(), GST_SECOND, self->rate);
    GST_BUFFER_PTS(buf) = t0;
    GST_BUFFER_DURATION(buf) = t1 - t0;
  }
  if (self->next_discont) {
    GST_BUFFER_FLAG_SET(buf, GST_BUFFER_FLAG_DISCONT);
    self->next_discont = FALSE;
  }
  self->utt_out += out.size();
  out.clear();
  return gst_pad_push(self->srcpad, buf);
}

// Ends the open utterance: the rest of its samples, then a fresh state.
static GstFlowReturn finish_utterance(GstPerthMark* self) {
  if (!self->embedder || !*self->embedder || !self->utt_open) return GST_FLOW_OK;
  std::vector<float> out;
  try {
    (*self->embedder)->finish(out);
  } catch (const std::exception& e) {
    GST_ELEMENT_ERROR(self, STREAM, FAILED, ("Perth watermarking failed: %s", e.what()), (nullptr));
    return GST_FLOW_ERROR;
  }
  GstFlowReturn ret = push_samples(self, out);
  if (self->mode == GST_PERTH_MARK_MODE_UTTERANCE && self->rate > 0) {
    const GstClockTime d = gst_util_uint64_scale_int(self->utt_in, GST_SECOND, self->rate);
    if (d > self->max_utt) {
      self->max_utt = d;
      gst_element_post_message(GST_ELEMENT(self), gst_message_new_latency(GST_OBJECT(self)));
    }
  }
  self->utt_open = FALSE;
  self->utt_in = 0;
  return ret;
}

static GstFlowReturn gst_perth_mark_chain(GstPad*, GstObject* parent, GstBuffer* buf) {
  GstPerthMark* self = GST_PERTH_MARK(parent);
  if (!self->embedder || !*self->embedder) {
    gst_buffer_unref(buf);
    GST_ELEMENT_ERROR(self, CORE, NEGOTIATION, ("perthmark received audio before its caps"), (nullptr));
    return GST_FLOW_NOT_NEGOTIATED;
  }
  GstFlowReturn ret = GST_FLOW_OK;
  if (GST_BUFFER_FLAG_IS_SET(buf, GST_BUFFER_FLAG_DISCONT) && self->utt_open) {
    ret = finish_utterance(self);
    if (ret != GST_FLOW_OK) {
      gst_buffer_unref(buf);
      return ret;
    }
  }
  if (!self->utt_open) {
    self->utt_open = TRUE;
    self->utt_pts = GST_BUFFER_PTS(buf);
    self->utt_out = 0;
    self->utt_in = 0;
    self->next_discont = TRUE;
  } else if (!GST_CLOCK_TIME_IS_VALID(self->utt_pts) && GST_BUFFER_PTS_IS_VALID(buf) && self->rate > 0) {
    self->utt_pts = GST_BUFFER_PTS(buf) - gst_util_uint64_scale_int(self->utt_in, GST_SECOND, self->rate);
  }
  GstMapInfo map;
  if (!gst_buffer_map(buf, &map, GST_MAP_READ)) {
    gst_buffer_unref(buf);
    GST_ELEMENT_ERROR(self, RESOURCE, READ, ("perthmark could not read an input buffer"), (nullptr));
    return GST_FLOW_ERROR;
  }
  const int64_t n = static_cast<int64_t>(map.size / sizeof(float));
  std::vector<float> out;
  try {
    (*self->embedder)->push(reinterpret_cast<const float*>(map.data), n, out);
  } catch (const std::exception& e) {
    gst_buffer_unmap(buf, &map);
    gst_buffer_unref(buf);
    GST_ELEMENT_ERROR(self, STREAM, FAILED, ("Perth watermarking failed: %s", e.what()), (nullptr));
    return GST_FLOW_ERROR;
  }
  self->utt_in += static_cast<guint64>(n);
  gst_buffer_unmap(buf, &map);
  gst_buffer_unref(buf);
  return push_samples(self, out);
}

static gboolean set_caps(GstPerthMark* self, GstCaps* caps) {
  GstAudioInfo info;
  if (!gst_audio_info_from_caps(&info, caps) || GST_AUDIO_INFO_CHANNELS(&info) != 1 ||
      GST_AUDIO_INFO_FORMAT(&info) != GST_AUDIO_FORMAT_F32LE) {
    GST_ELEMENT_ERROR(self, CORE, NEGOTIATION, ("perthmark needs mono F32LE audio"),
                      ("got %" GST_PTR_FORMAT "; insert 'audioconvert' before it", caps));
    return FALSE;
  }
  const gint rate = GST_AUDIO_INFO_RATE(&info);
  if (self->embedder && *self->embedder && rate == self->rate) return TRUE;
  if (self->utt_open) finish_utterance(self);
  if (!self->net || !*self->net) {
    GST_ELEMENT_ERROR(self, RESOURCE, NOT_FOUND, ("perthmark has no model loaded"), (nullptr));
    return FALSE;
  }
  try {
    self->embedder->reset(new PerthEmbedder(*self->net, rate,
                                            self->mode == GST_PERTH_MARK_MODE_STREAM ? PerthEmbedder::Mode::Stream
                                                                                       : PerthEmbedder::Mode::Utterance));
  } catch (const std::exception& e) {
    GST_ELEMENT_ERROR(self, CORE, NEGOTIATION, ("perthmark cannot mark audio at %d Hz: %s", rate, e.what()), (nullptr));
    return FALSE;
  }
  self->rate = rate;
  gst_element_post_message(GST_ELEMENT(self), gst_message_new_latency(GST_OBJECT(self)));
  return TRUE;
}

static gboolean gst_perth_mark_sink_event(GstPad* pad, GstObject* parent, GstEvent* event) {
  GstPerthMark* self = GST_PERTH_MARK(parent);
  switch (GST_EVENT_TYPE(event)) {
    case GST_EVENT_CAPS: {
      GstCaps* caps;
      gst_event_parse_caps(event, &caps);
      if (!set_caps(self, caps)) {
        gst_event_unref(event);
        return FALSE;
      }
      return gst_pad_push_event(self->srcpad, event);
    }
    case GST_EVENT_EOS:
      finish_utterance(self);
      return gst_pad_push_event(self->srcpad, event);
    case GST_EVENT_CUSTOM_DOWNSTREAM:
      if (gst_event_has_name(event, "chatterbox/utterance-end")) finish_utterance(self);
      return gst_pad_event_default(pad, parent, event);
    case GST_EVENT_FLUSH_STOP:
      if (self->embedder && *self->embedder) (*self->embedder)->reset();
      self->utt_open = FALSE;
      self->utt_in = 0;
      return gst_pad_push_event(self->srcpad, event);
    default:
      return gst_pad_event_default(pad, parent, event);
  }
}

static GstClockTime own_latency(GstPerthMark* self) {
  if (self->mode == GST_PERTH_MARK_MODE_UTTERANCE) return self->max_utt;
  double s = 0.0;
  if (self->embedder && *self->embedder) s = (*self->embedder)->latency_seconds();
  else if (self->net && *self->net) {
    PerthEmbedder e(*self->net, 24000, PerthEmbedder::Mode::Stream);
    s = e.latency_seconds();
  }
  return static_cast<GstClockTime>(s * GST_SECOND);
}

static gboolean gst_perth_mark_src_query(GstPad* pad, GstObject* parent, GstQuery* query) {
  GstPerthMark* self = GST_PERTH_MARK(parent);
  if (GST_QUERY_TYPE(query) == GST_QUERY_LATENCY) {
    if (!gst_pad_peer_query(self->sinkpad, query)) return FALSE;
    gboolean live;
    GstClockTime min, max;
    gst_query_parse_latency(query, &live, &min, &max);
    const GstClockTime ours = own_latency(self);
    min += ours;
    if (GST_CLOCK_TIME_IS_VALID(max)) max += ours;
    gst_query_set_latency(query, live, min, max);
    return TRUE;
  }
  return gst_pad_query_default(pad, parent, query);
}

static GstStateChangeReturn gst_perth_mark_change_state(GstElement* element, GstStateChange transition) {
  GstPerthMark* self = GST_PERTH_MARK(element);
  if (transition == GST_STATE_CHANGE_NULL_TO_READY) {
    GST_OBJECT_LOCK(self);
    const std::string path = self->model ? self->model : "";
    GST_OBJECT_UNLOCK(self);
    if (path.empty()) {
      GST_ELEMENT_ERROR(self, RESOURCE, NOT_FOUND, ("perthmark needs a Perth model: set model=PATH"),
                        ("perth_net_250000.pth.tar from the resemble-perth package "
                         "(perth/perth_net/pretrained/implicit/), or a safetensors file with its tensors"));
      return GST_STATE_CHANGE_FAILURE;
    }
    try {
      auto& cache = chatterbox::ModelCache::global();
      *self->net = cache.get<PerthNet>(chatterbox::ModelCache::make_key("perth", {path}),
                                       [&] { return PerthNet::load(path); });
      GST_INFO_OBJECT(self, "Perth model %s (hidden %ld, step %ld)", path.c_str(),
                      static_cast<long>((*self->net)->config().hidden_size), static_cast<long>((*self->net)->step()));
    } catch (const std::exception& e) {
      GST_ELEMENT_ERROR(self, RESOURCE, OPEN_READ, ("Cannot load the Perth watermark model: %s", e.what()), (nullptr));
      return GST_STATE_CHANGE_FAILURE;
    }
  }
  GstStateChangeReturn ret = GST_ELEMENT_CLASS(gst_perth_mark_parent_class)->change_state(element, transition);
  if (transition == GST_STATE_CHANGE_PAUSED_TO_READY) {
    self->embedder->reset();
    self->rate = 0;
    self->utt_open = FALSE;
    self->utt_in = 0;
  } else if (transition == GST_STATE_CHANGE_READY_TO_NULL) {
    self->net->reset();
  }
  return ret;
}

static void gst_perth_mark_set_property(GObject* object, guint id, const GValue* value, GParamSpec* pspec) {
  GstPerthMark* self = GST_PERTH_MARK(object);
  GST_OBJECT_LOCK(self);
  const bool stopped = chatterbox::element_is_stopped(GST_ELEMENT(self));
  GST_OBJECT_UNLOCK(self);
  if (!stopped && (id == PROP_MODEL || id == PROP_MODE)) {
    chatterbox::warn_load_time_property(GST_ELEMENT(self), pspec);
    return;
  }
  switch (id) {
    case PROP_MODEL:
      GST_OBJECT_LOCK(self);
      g_free(self->model);
      self->model = g_value_dup_string(value);
      GST_OBJECT_UNLOCK(self);
      break;
    case PROP_MODE: self->mode = static_cast<GstPerthMarkMode>(g_value_get_enum(value)); break;
    default: G_OBJECT_WARN_INVALID_PROPERTY_ID(object, id, pspec);
  }
}

static void gst_perth_mark_get_property(GObject* object, guint id, GValue* value, GParamSpec* pspec) {
  GstPerthMark* self = GST_PERTH_MARK(object);
  switch (id) {
    case PROP_MODEL:
      GST_OBJECT_LOCK(self);
      g_value_set_string(value, self->model);
      GST_OBJECT_UNLOCK(self);
      break;
    case PROP_MODE: g_value_set_enum(value, self->mode); break;
    case PROP_LATENCY: g_value_set_uint64(value, own_latency(self)); break;
    default: G_OBJECT_WARN_INVALID_PROPERTY_ID(object, id, pspec);
  }
}

static void gst_perth_mark_finalize(GObject* object) {
  GstPerthMark* self = GST_PERTH_MARK(object);
  g_free(self->model);
  delete self->embedder;
  delete self->net;
  G_OBJECT_CLASS(gst_perth_mark_parent_class)->finalize(object);
}

static void gst_perth_mark_class_init(GstPerthMarkClass* klass) {
  GObjectClass* gobject_class = G_OBJECT_CLASS(klass);
  GstElementClass* element_class = GST_ELEMENT_CLASS(klass);
  GST_DEBUG_CATEGORY_INIT(perth_mark_debug, "perthmark", 0, "Perth implicit watermark embedder");
  gobject_class->set_property = gst_perth_mark_set_property;
  gobject_class->get_property = gst_perth_mark_get_property;
  gobject_class->finalize = gst_perth_mark_finalize;
  element_class->change_state = gst_perth_mark_change_state;
  g_object_class_install_property(gobject_class, PROP_MODEL,
      g_param_spec_string("model", "Model",
                          "Perth implicit weights: perth_net_250000.pth.tar as the resemble-perth package ships it "
                          "(hparams.yaml beside it is read when present), or safetensors with the same tensor names",
                          nullptr, static_cast<GParamFlags>(G_PARAM_READWRITE | G_PARAM_STATIC_STRINGS)));
  g_object_class_install_property(gobject_class, PROP_MODE,
      g_param_spec_enum("mode", "Mode",
                        "utterance: upstream's exact mark, each utterance held until DISCONT / utterance-end / EOS; "
                        "stream: marked as it arrives (running-maximum mask, ~0.35 s look-ahead)",
                        GST_TYPE_PERTH_MARK_MODE, GST_PERTH_MARK_MODE_UTTERANCE,
                        static_cast<GParamFlags>(G_PARAM_READWRITE | G_PARAM_STATIC_STRINGS)));
  g_object_class_install_property(gobject_class, PROP_LATENCY,
      g_param_spec_uint64("latency", "Latency",
                          "The delay this element adds (ns): stream mode's look-ahead plus its resamplers' delay; "
                          "utterance mode: the longest utterance so far",
                          0, G_MAXUINT64, 0, static_cast<GParamFlags>(G_PARAM_READABLE | G_PARAM_STATIC_STRINGS)));
  gst_element_class_add_static_pad_template(element_class, &sink_template);
  gst_element_class_add_static_pad_template(element_class, &src_template);
  gst_element_class_set_static_metadata(element_class, "Perth watermark embedder", "Filter/Effect/Audio",
      "Embeds Resemble AI's Perth implicit watermark (PerthNet) in mono float audio at any rate",
      "gst-chatterbox developers");
}

static void gst_perth_mark_init(GstPerthMark* self) {
  self->sinkpad = gst_pad_new_from_static_template(&sink_template, "sink");
  self->srcpad = gst_pad_new_from_static_template(&src_template, "src");
  gst_pad_set_chain_function(self->sinkpad, gst_perth_mark_chain);
  gst_pad_set_event_function(self->sinkpad, gst_perth_mark_sink_event);
  gst_pad_set_query_function(self->srcpad, gst_perth_mark_src_query);
  GST_PAD_SET_PROXY_CAPS(self->sinkpad);
  GST_PAD_SET_PROXY_CAPS(self->srcpad);
  GST_PAD_SET_PROXY_ALLOCATION(self->sinkpad);
  gst_element_add_pad(GST_ELEMENT(self), self->sinkpad);
  gst_element_add_pad(GST_ELEMENT(self), self->srcpad);
  self->model = nullptr;
  self->mode = GST_PERTH_MARK_MODE_UTTERANCE;
  self->net = new std::shared_ptr<const PerthNet>();
  self->embedder = new std::unique_ptr<PerthEmbedder>();
  self->rate = 0;
  self->utt_pts = GST_CLOCK_TIME_NONE;
  self->utt_out = self->utt_in = 0;
  self->utt_open = FALSE;
  self->next_discont = FALSE;
  self->max_utt = 0;
}
