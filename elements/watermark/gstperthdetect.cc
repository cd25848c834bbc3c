#include "elements/watermark/gstperthdetect.h"

#include "elements/watermark/perth/perth.h"
#include "gst-plugins/core/model_cache.h"
#include "gst-plugins/elements.h"
#include "gst-plugins/load_time_property.h"

#include <ATen/ATen.h>
#include <gst/audio/audio.h>

#include <algorithm>
#include <cmath>
#include <memory>
#include <string>
#include <vector>

GST_DEBUG_CATEGORY_STATIC(perth_detect_debug);
#define GST_CAT_DEFAULT perth_detect_debug

using chatterbox::perth::PerthNet;

enum { PROP_0, PROP_MODEL, PROP_CONFIDENCE, PROP_WATERMARKED };

struct _GstPerthDetect {
  GstElement parent;
  GstPad* sinkpad;
  GstPad* srcpad;
  gchar* model;
  std::shared_ptr<const PerthNet>* net;
  std::vector<float>* utt;  // the open utterance's samples
  gint rate;
  guint64 utterance;        // index of the next utterance reported
  gdouble confidence;       // last reported (-1 before any)
  gboolean watermarked;
};

G_DEFINE_TYPE(GstPerthDetect, gst_perth_detect, GST_TYPE_ELEMENT)
GST_ELEMENT_REGISTER_DEFINE(perthdetect, "perthdetect", GST_RANK_NONE, GST_TYPE_PERTH_DETECT)

#define PERTH_CAPS "audio/x-raw, format=(string)F32LE, layout=(string)interleaved, channels=(int)1, rate=(int)[1, MAX]"
static GstStaticPadTemplate sink_template =
    GST_STATIC_PAD_TEMPLATE("sink", GST_PAD_SINK, GST_PAD_ALWAYS, GST_STATIC_CAPS(PERTH_CAPS));
static GstStaticPadTemplate src_template =
    GST_STATIC_PAD_TEMPLATE("src", GST_PAD_SRC, GST_PAD_ALWAYS, GST_STATIC_CAPS(PERTH_CAPS));

// Detects on the open utterance and posts the result (nothing for an empty one).
static void report(GstPerthDetect* self) {
  if (self->utt->empty() || !*self->net || self->rate <= 0) {
    self->utt->clear();
    return;
  }
  double raw = NAN;
  const guint64 n = self->utt->size();
  try {
    at::Tensor x = at::from_blob(self->utt->data(), {static_cast<int64_t>(n)}, at::kFloat);
    const double sr = static_cast<double>((*self->net)->config().sample_rate);
    const int64_t n32 = static_cast<int64_t>(std::ceil(static_cast<double>(n) * sr / self->rate));
    if (n32 > (*self->net)->config().n_fft / 2) raw = (*self->net)->detect_raw(x, self->rate);
  } catch (const std::exception& e) {
    GST_ELEMENT_WARNING(self, STREAM, FAILED, ("Perth detection failed on utterance %" G_GUINT64_FORMAT ": %s",
                                               self->utterance, e.what()),
                        (nullptr));
  }
  self->utt->clear();
  const gboolean silent = std::isnan(raw);
  const double conf = silent ? 0.0 : std::clamp(raw, 0.0, 1.0);
  const gboolean marked = conf > 0.5;  // torch.round: half to even, so 0.5 -> 0
  GST_OBJECT_LOCK(self);
  self->confidence = conf;
  self->watermarked = marked;
  const guint64 index = self->utterance++;
  GST_OBJECT_UNLOCK(self);
  GST_INFO_OBJECT(self, "utterance %" G_GUINT64_FORMAT ": %" G_GUINT64_FORMAT " samples, confidence %f%s", index, n,
                  conf, silent ? " (silent: nothing to decode)" : "");
  GstStructure* s = gst_structure_new("perth-watermark", "confidence", G_TYPE_DOUBLE, conf, "watermarked",
                                      G_TYPE_BOOLEAN, marked, "utterance", G_TYPE_UINT64, index, "samples",
                                      G_TYPE_UINT64, n, "rate", G_TYPE_INT, self->rate, "silent", G_TYPE_BOOLEAN,
                                      silent, nullptr);
  gst_element_post_message(GST_ELEMENT(self), gst_message_new_element(GST_OBJECT(self), s));
  g_object_notify(G_OBJECT(self), "confidence");
  g_object_notify(G_OBJECT(self), "watermarked");
}

static GstFlowReturn gst_perth_detect_chain(GstPad*, GstObject* parent, GstBuffer* buf) {
  GstPerthDetect* self = GST_PERTH_DETECT(parent);
  if (GST_BUFFER_FLAG_IS_SET(buf, GST_BUFFER_FLAG_DISCONT)) report(self);
  GstMapInfo map;
  if (gst_buffer_map(buf, &map, GST_MAP_READ)) {
    const float* x = reinterpret_cast<const float*>(map.data);
    self->utt->insert(self->utt->end(), x, x + map.size / sizeof(float));
    gst_buffer_unmap(buf, &map);
  }
  return gst_pad_push(self->srcpad, buf);
}

static gboolean gst_perth_detect_sink_event(GstPad* pad, GstObject* parent, GstEvent* event) {
  GstPerthDetect* self = GST_PERTH_DETECT(parent);
  switch (GST_EVENT_TYPE(event)) {
    case GST_EVENT_CAPS: {
      GstCaps* caps;
      gst_event_parse_caps(event, &caps);
      GstAudioInfo info;
      if (!gst_audio_info_from_caps(&info, caps) || GST_AUDIO_INFO_CHANNELS(&info) != 1 ||
          GST_AUDIO_INFO_FORMAT(&info) != GST_AUDIO_FORMAT_F32LE) {
        GST_ELEMENT_ERROR(self, CORE, NEGOTIATION, ("perthdetect needs mono F32LE audio"),
                          ("got %" GST_PTR_FORMAT "; insert 'audioconvert' before it", caps));
        gst_event_unref(event);
        return FALSE;
      }
      if (GST_AUDIO_INFO_RATE(&info) != self->rate) report(self);
      self->rate = GST_AUDIO_INFO_RATE(&info);
      return gst_pad_push_event(self->srcpad, event);
    }
    case GST_EVENT_EOS:
      report(self);
      return gst_pad_push_event(self->srcpad, event);
    case GST_EVENT_CUSTOM_DOWNSTREAM:
      if (gst_event_has_name(event, "chatterbox/utterance-end")) report(self);
      return gst_pad_event_default(pad, parent, event);
    case GST_EVENT_FLUSH_STOP:
      self->utt->clear();
      return gst_pad_push_event(self->srcpad, event);
    default:
      return gst_pad_event_default(pad, parent, event);
  }
}

static GstStateChangeReturn gst_perth_detect_change_state(GstElement* element, GstStateChange transition) {
  GstPerthDetect* self = GST_PERTH_DETECT(element);
  if (transition == GST_STATE_CHANGE_NULL_TO_READY) {
    GST_OBJECT_LOCK(self);
    const std::string path = self->model ? self->model : "";
    GST_OBJECT_UNLOCK(self);
    if (path.empty()) {
      GST_ELEMENT_ERROR(self, RESOURCE, NOT_FOUND, ("perthdetect needs a Perth model: set model=PATH"),
                        ("perth_net_250000.pth.tar from the resemble-perth package, or a safetensors file with its "
                         "tensors"));
      return GST_STATE_CHANGE_FAILURE;
    }
    try {
      *self->net = chatterbox::ModelCache::global().get<PerthNet>(chatterbox::ModelCache::make_key("perth", {path}),
                                                                  [&] { return PerthNet::load(path); });
    } catch (const std::exception& e) {
      GST_ELEMENT_ERROR(self, RESOURCE, OPEN_READ, ("Cannot load the Perth watermark model: %s", e.what()), (nullptr));
      return GST_STATE_CHANGE_FAILURE;
    }
  }
  GstStateChangeReturn ret = GST_ELEMENT_CLASS(gst_perth_detect_parent_class)->change_state(element, transition);
  if (transition == GST_STATE_CHANGE_PAUSED_TO_READY) {
    self->utt->clear();
    self->rate = 0;
  } else if (transition == GST_STATE_CHANGE_READY_TO_NULL) {
    self->net->reset();
  }
  return ret;
}

static void gst_perth_detect_set_property(GObject* object, guint id, const GValue* value, GParamSpec* pspec) {
  GstPerthDetect* self = GST_PERTH_DETECT(object);
  GST_OBJECT_LOCK(self);
  const bool stopped = chatterbox::element_is_stopped(GST_ELEMENT(self));
  GST_OBJECT_UNLOCK(self);
  if (id == PROP_MODEL && !stopped) {
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
    default: G_OBJECT_WARN_INVALID_PROPERTY_ID(object, id, pspec);
  }
}

static void gst_perth_detect_get_property(GObject* object, guint id, GValue* value, GParamSpec* pspec) {
  GstPerthDetect* self = GST_PERTH_DETECT(object);
  GST_OBJECT_LOCK(self);
  switch (id) {
    case PROP_MODEL: g_value_set_string(value, self->model); break;
    case PROP_CONFIDENCE: g_value_set_double(value, self->confidence); break;
    case PROP_WATERMARKED: g_value_set_boolean(value, self->watermarked); break;
    default: G_OBJECT_WARN_INVALID_PROPERTY_ID(object, id, pspec);
  }
  GST_OBJECT_UNLOCK(self);
}

static void gst_perth_detect_finalize(GObject* object) {
  GstPerthDetect* self = GST_PERTH_DETECT(object);
  g_free(self->model);
  delete self->net;
  delete self->utt;
  G_OBJECT_CLASS(gst_perth_detect_parent_class)->finalize(object);
}

static void gst_perth_detect_class_init(GstPerthDetectClass* klass) {
  GObjectClass* gobject_class = G_OBJECT_CLASS(klass);
  GstElementClass* element_class = GST_ELEMENT_CLASS(klass);
  GST_DEBUG_CATEGORY_INIT(perth_detect_debug, "perthdetect", 0, "Perth implicit watermark detector");
  gobject_class->set_property = gst_perth_detect_set_property;
  gobject_class->get_property = gst_perth_detect_get_property;
  gobject_class->finalize = gst_perth_detect_finalize;
  element_class->change_state = gst_perth_detect_change_state;
  g_object_class_install_property(gobject_class, PROP_MODEL,
      g_param_spec_string("model", "Model",
                          "Perth implicit weights: perth_net_250000.pth.tar (resemble-perth), or safetensors with the "
                          "same tensor names",
                          nullptr, static_cast<GParamFlags>(G_PARAM_READWRITE | G_PARAM_STATIC_STRINGS)));
  g_object_class_install_property(gobject_class, PROP_CONFIDENCE,
      g_param_spec_double("confidence", "Confidence",
                          "The last utterance's detector output in [0, 1] (upstream's get_watermark before rounding); "
                          "-1 before the first",
                          -1.0, 1.0, -1.0, static_cast<GParamFlags>(G_PARAM_READABLE | G_PARAM_STATIC_STRINGS)));
  g_object_class_install_property(gobject_class, PROP_WATERMARKED,
      g_param_spec_boolean("watermarked", "Watermarked",
                           "Whether the last utterance carries the mark (the rounded confidence, as upstream)", FALSE,
                           static_cast<GParamFlags>(G_PARAM_READABLE | G_PARAM_STATIC_STRINGS)));
  gst_element_class_add_static_pad_template(element_class, &sink_template);
  gst_element_class_add_static_pad_template(element_class, &src_template);
  gst_element_class_set_static_metadata(element_class, "Perth watermark detector", "Filter/Analyzer/Audio",
      "Passes audio through and reports, per utterance, whether it carries Resemble AI's Perth implicit watermark",
      "gst-chatterbox developers");
}

static void gst_perth_detect_init(GstPerthDetect* self) {
  self->sinkpad = gst_pad_new_from_static_template(&sink_template, "sink");
  self->srcpad = gst_pad_new_from_static_template(&src_template, "src");
  gst_pad_set_chain_function(self->sinkpad, gst_perth_detect_chain);
  gst_pad_set_event_function(self->sinkpad, gst_perth_detect_sink_event);
  GST_PAD_SET_PROXY_CAPS(self->sinkpad);
  GST_PAD_SET_PROXY_CAPS(self->srcpad);
  GST_PAD_SET_PROXY_ALLOCATION(self->sinkpad);
  gst_element_add_pad(GST_ELEMENT(self), self->sinkpad);
  gst_element_add_pad(GST_ELEMENT(self), self->srcpad);
  self->model = nullptr;
  self->net = new std::shared_ptr<const PerthNet>();
  self->utt = new std::vector<float>();
  self->rate = 0;
  self->utterance = 0;
  self->confidence = -1.0;
  self->watermarked = FALSE;
}
