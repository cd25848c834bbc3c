#include "elements/vocoder/gstchatterboxvocoder.h"

#include "gst-plugins/caps.h"
#include "gst-plugins/elements.h"
#include "gst-plugins/load_time_property.h"

#include <cstring>

GST_DEBUG_CATEGORY_STATIC(chatterbox_vocoder_debug);
#define GST_CAT_DEFAULT chatterbox_vocoder_debug

enum { PROP_0, PROP_VOCODER, PROP_VOCOS_MODEL, PROP_HIFT_MODEL, PROP_DEVICE, PROP_LOOKAHEAD, PROP_CHUNK_FRAMES };

struct _GstChatterboxVocoder {
  GstBin parent;
  GstPad* sink_ghost;
  GstPad* src_ghost;
  GstElement* child;
  GstChatterboxVocoderKind kind;
  gchar* vocos_model;
  gchar* hift_model;
  gchar* device;
  gint lookahead;
  gint chunk_frames;
};

G_DEFINE_TYPE(GstChatterboxVocoder, gst_chatterbox_vocoder, GST_TYPE_BIN)
GST_ELEMENT_REGISTER_DEFINE(chatterboxvocoder, "chatterboxvocoder", GST_RANK_NONE, GST_TYPE_CHATTERBOX_VOCODER)

GType gst_chatterbox_vocoder_kind_get_type(void) {
  static GType type = 0;
  static const GEnumValue values[] = {
      {GST_CHATTERBOX_VOCODER_VOCOS, "Vocos (vocosdec): one forward pass, the default", "vocos"},
      {GST_CHATTERBOX_VOCODER_HIFT, "HiFT (hiftdec): Chatterbox's own vocoder, the rollback path", "hift"},
      {0, nullptr, nullptr}};
  if (g_once_init_enter(&type)) g_once_init_leave(&type, g_enum_register_static("GstChatterboxVocoderKind", values));
  return type;
}

GstChatterboxVocoderKind gst_chatterbox_vocoder_default_kind(void) {
  const char* v = g_getenv("CHATTERBOX_USE_VOCOS");
  if (!v || !*v) return GST_CHATTERBOX_VOCODER_VOCOS;
  if (!g_ascii_strcasecmp(v, "0") || !g_ascii_strcasecmp(v, "false") || !g_ascii_strcasecmp(v, "no") ||
      !g_ascii_strcasecmp(v, "off"))
    return GST_CHATTERBOX_VOCODER_HIFT;
  if (!g_ascii_strcasecmp(v, "1") || !g_ascii_strcasecmp(v, "true") || !g_ascii_strcasecmp(v, "yes") ||
      !g_ascii_strcasecmp(v, "on"))
    return GST_CHATTERBOX_VOCODER_VOCOS;
  g_warning("CHATTERBOX_USE_VOCOS='%s' is neither true/1 nor false/0; using Vocos", v);
  return GST_CHATTERBOX_VOCODER_VOCOS;
}

static GstStaticPadTemplate sink_template =
    GST_STATIC_PAD_TEMPLATE("sink", GST_PAD_SINK, GST_PAD_ALWAYS, GST_STATIC_CAPS(CHATTERBOX_MEL_TEMPLATE_CAPS));
static GstStaticPadTemplate src_template = GST_STATIC_PAD_TEMPLATE(
    "src", GST_PAD_SRC, GST_PAD_ALWAYS,
    GST_STATIC_CAPS("audio/x-raw, format=(string)F32LE, layout=(string)interleaved, channels=(int)1, "
                    "rate=(int)[1, MAX]"));

// Passes the bin's settings to the child of the current kind.
static void configure_child(GstChatterboxVocoder* self) {
  if (!self->child) return;
  const gchar* model = self->kind == GST_CHATTERBOX_VOCODER_VOCOS ? self->vocos_model : self->hift_model;
  if (model) g_object_set(self->child, "model", model, nullptr);
  g_object_set(self->child, "device", self->device, "lookahead", self->lookahead, "chunk-frames", self->chunk_frames,
               nullptr);
}

// Replaces the child by a new element of the current kind (NULL state only).
static gboolean make_child(GstChatterboxVocoder* self) {
  const char* factory = self->kind == GST_CHATTERBOX_VOCODER_VOCOS ? "vocosdec" : "hiftdec";
  GstElement* child = gst_element_factory_make(factory, nullptr);
  if (!child) {
    GST_ERROR_OBJECT(self, "element '%s' is not available", factory);
    return FALSE;
  }
  if (self->child) {
    gst_ghost_pad_set_target(GST_GHOST_PAD(self->sink_ghost), nullptr);
    gst_ghost_pad_set_target(GST_GHOST_PAD(self->src_ghost), nullptr);
    gst_element_set_state(self->child, GST_STATE_NULL);
    gst_bin_remove(GST_BIN(self), self->child);
  }
  self->child = child;
  gst_bin_add(GST_BIN(self), child);
  configure_child(self);
  GstPad* sink = gst_element_get_static_pad(child, "sink");
  GstPad* src = gst_element_get_static_pad(child, "src");
  gst_ghost_pad_set_target(GST_GHOST_PAD(self->sink_ghost), sink);
  gst_ghost_pad_set_target(GST_GHOST_PAD(self->src_ghost), src);
  gst_object_unref(sink);
  gst_object_unref(src);
  GST_INFO_OBJECT(self, "vocoder: %s", factory);
  return TRUE;
}

static void gst_chatterbox_vocoder_set_property(GObject* object, guint id, const GValue* value, GParamSpec* pspec) {
  GstChatterboxVocoder* self = GST_CHATTERBOX_VOCODER(object);
  GST_OBJECT_LOCK(self);
  const GstState state = GST_STATE_PENDING(self) != GST_STATE_VOID_PENDING ? GST_STATE_PENDING(self) : GST_STATE(self);
  GST_OBJECT_UNLOCK(self);
  if (state > GST_STATE_NULL && (id == PROP_VOCOS_MODEL || id == PROP_HIFT_MODEL || id == PROP_DEVICE)) {
    // The child has loaded its model; passing the file on would only be
    // refused there (re-setting the others would warn too).
    chatterbox::warn_load_time_property(GST_ELEMENT(self), pspec);
    return;
  }
  if (state > GST_STATE_NULL && id == PROP_LOOKAHEAD) {
    // Live: only the lookahead goes to the child (it applies from its next buffer).
    self->lookahead = g_value_get_int(value);
    if (self->child) g_object_set(self->child, "lookahead", self->lookahead, nullptr);
    return;
  }
  if (state > GST_STATE_NULL && id == PROP_CHUNK_FRAMES) {
    self->chunk_frames = g_value_get_int(value);
    if (self->child) g_object_set(self->child, "chunk-frames", self->chunk_frames, nullptr);
    return;
  }
  switch (id) {
    case PROP_VOCODER: {
      auto kind = static_cast<GstChatterboxVocoderKind>(g_value_get_enum(value));
      if (kind == self->kind) return;
      if (state > GST_STATE_NULL) {
        GST_WARNING_OBJECT(self, "'vocoder' can only change in the NULL state; ignored");
        return;
      }
      self->kind = kind;
      make_child(self);
      return;
    }
    case PROP_VOCOS_MODEL:
      g_free(self->vocos_model);
      self->vocos_model = g_value_dup_string(value);
      break;
    case PROP_HIFT_MODEL:
      g_free(self->hift_model);
      self->hift_model = g_value_dup_string(value);
      break;
    case PROP_DEVICE:
      g_free(self->device);
      self->device = g_value_dup_string(value);
      if (!self->device) self->device = g_strdup("cpu");
      break;
    case PROP_LOOKAHEAD:
      self->lookahead = g_value_get_int(value);
      break;
    case PROP_CHUNK_FRAMES:
      self->chunk_frames = g_value_get_int(value);
      break;
    default:
      G_OBJECT_WARN_INVALID_PROPERTY_ID(object, id, pspec);
      return;
  }
  configure_child(self);
}

static void gst_chatterbox_vocoder_get_property(GObject* object, guint id, GValue* value, GParamSpec* pspec) {
  GstChatterboxVocoder* self = GST_CHATTERBOX_VOCODER(object);
  switch (id) {
    case PROP_VOCODER: g_value_set_enum(value, self->kind); break;
    case PROP_VOCOS_MODEL: g_value_set_string(value, self->vocos_model); break;
    case PROP_HIFT_MODEL: g_value_set_string(value, self->hift_model); break;
    case PROP_DEVICE: g_value_set_string(value, self->device); break;
    case PROP_LOOKAHEAD: g_value_set_int(value, self->lookahead); break;
    case PROP_CHUNK_FRAMES: g_value_set_int(value, self->chunk_frames); break;
    default: G_OBJECT_WARN_INVALID_PROPERTY_ID(object, id, pspec);
  }
}

static void gst_chatterbox_vocoder_finalize(GObject* object) {
  GstChatterboxVocoder* self = GST_CHATTERBOX_VOCODER(object);
  g_free(self->vocos_model);
  g_free(self->hift_model);
  g_free(self->device);
  G_OBJECT_CLASS(gst_chatterbox_vocoder_parent_class)->finalize(object);
}

static void gst_chatterbox_vocoder_class_init(GstChatterboxVocoderClass* klass) {
  GObjectClass* gobject_class = G_OBJECT_CLASS(klass);
  GstElementClass* element_class = GST_ELEMENT_CLASS(klass);
  GST_DEBUG_CATEGORY_INIT(chatterbox_vocoder_debug, "chatterboxvocoder", 0, "vocoder switch bin");
  gobject_class->set_property = gst_chatterbox_vocoder_set_property;
  gobject_class->get_property = gst_chatterbox_vocoder_get_property;
  gobject_class->finalize = gst_chatterbox_vocoder_finalize;
  const GParamFlags rw = static_cast<GParamFlags>(G_PARAM_READWRITE | G_PARAM_STATIC_STRINGS);
  g_object_class_install_property(gobject_class, PROP_VOCODER,
      g_param_spec_enum("vocoder", "Vocoder",
                        "Which vocoder runs inside. Default from the environment: CHATTERBOX_USE_VOCOS=false/0 "
                        "selects hift, true/1 or unset selects vocos. Changeable in the NULL state.",
                        gst_chatterbox_vocoder_kind_get_type(), GST_CHATTERBOX_VOCODER_VOCOS, rw));
  g_object_class_install_property(gobject_class, PROP_VOCOS_MODEL,
      g_param_spec_string("vocos-model", "Vocos model", "Model of the vocosdec inside (unset: vocosdec's default)",
                          nullptr, rw));
  g_object_class_install_property(gobject_class, PROP_HIFT_MODEL,
      g_param_spec_string("hift-model", "HiFT model",
                          "Model of the hiftdec inside, e.g. Chatterbox's s3gen.safetensors (unset: hiftdec's default)",
                          nullptr, rw));
  g_object_class_install_property(gobject_class, PROP_DEVICE,
      g_param_spec_string("device", "Device", "Device of the vocoder inside ('cpu', 'cuda')", "cpu", rw));
  g_object_class_install_property(gobject_class, PROP_LOOKAHEAD,
      g_param_spec_int("lookahead", "Lookahead",
                       "Lookahead of the vocoder inside (-1: exact streaming). Changeable while playing (applies "
                       "from the child's next buffer); the models and device change in the NULL state only.",
                       -1, 10000, -1, static_cast<GParamFlags>(rw | GST_PARAM_MUTABLE_PLAYING)));
  g_object_class_install_property(gobject_class, PROP_CHUNK_FRAMES,
      g_param_spec_int("chunk-frames", "Chunk frames",
                       "Mel frames the vocoder inside gathers per model call (-1: 1 when upstream is live, 50 "
                       "otherwise; see vocosdec). Changeable while playing (applies from its next stream).",
                       -1, 10000, -1, static_cast<GParamFlags>(rw | GST_PARAM_MUTABLE_PLAYING)));
  gst_element_class_add_static_pad_template(element_class, &sink_template);
  gst_element_class_add_static_pad_template(element_class, &src_template);
  gst_element_class_set_static_metadata(element_class, "Chatterbox vocoder switch", "Codec/Decoder/Audio/Bin",
      "vocosdec or hiftdec behind one element; 'vocoder' property or CHATTERBOX_USE_VOCOS chooses",
      "gst-chatterbox developers");
}

static void gst_chatterbox_vocoder_init(GstChatterboxVocoder* self) {
  GstElementClass* klass = GST_ELEMENT_GET_CLASS(self);
  self->sink_ghost = gst_ghost_pad_new_no_target_from_template("sink", gst_element_class_get_pad_template(klass, "sink"));
  self->src_ghost = gst_ghost_pad_new_no_target_from_template("src", gst_element_class_get_pad_template(klass, "src"));
  gst_element_add_pad(GST_ELEMENT(self), self->sink_ghost);
  gst_element_add_pad(GST_ELEMENT(self), self->src_ghost);
  self->device = g_strdup("cpu");
  self->lookahead = -1;
  self->chunk_frames = -1;
  self->kind = gst_chatterbox_vocoder_default_kind();
  make_child(self);
}
