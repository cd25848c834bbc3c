#include "elements/vocoder/gsthiftdec.h"

#include "elements/vocoder/hift/hift.h"
#include "gst-plugins/core/compute_threads.h"
#include "gst-plugins/core/model_cache.h"
#include "gst-plugins/elements.h"
#include "gst-plugins/load_time_property.h"

#include <cstring>

enum { PROP_0, PROP_DETERMINISTIC, PROP_TRIM_FADE, PROP_SEED };

struct _GstHiftDec {
  GstMelVocoder parent;
  gboolean deterministic;
  gboolean trim_fade;
  guint64 seed;
};

G_DEFINE_TYPE(GstHiftDec, gst_hift_dec, GST_TYPE_MEL_VOCODER)
GST_ELEMENT_REGISTER_DEFINE(hiftdec, "hiftdec", GST_RANK_NONE, GST_TYPE_HIFT_DEC)

static chatterbox::StreamingVocoder* gst_hift_dec_load_model(GstMelVocoder* base, const gchar* path,
                                                             const gchar* device, gint threads, GError** error) {
  GstHiftDec* self = GST_HIFT_DEC(base);
  if (device && std::strcmp(device, "cpu") != 0) {
    g_set_error(error, GST_RESOURCE_ERROR, GST_RESOURCE_ERROR_SETTINGS,
                "hiftdec runs on the CPU only (device '%s' asked for); use device=cpu", device);
    return nullptr;
  }
  try {
    // Process-wide: OpenBLAS's pool and HiFT's own kernel threads; no
    // spinning OpenMP workers (compute_threads.h).
    chatterbox::set_compute_threads(threads);
    chatterbox::hift::HiftVocoderOptions opts;
    GST_OBJECT_LOCK(self);
    opts.trim_fade = self->trim_fade;
    opts.draws = self->deterministic ? chatterbox::hift::SourceDraws::deterministic()
                                     : chatterbox::hift::SourceDraws::random(self->seed);
    GST_OBJECT_UNLOCK(self);
    // Instances naming the same file share the weights (the source draws and
    // the streaming state are the vocoder's own). "" = auto prefix: mel2wav.
    // inside Chatterbox's s3gen.safetensors.
    auto model = chatterbox::ModelCache::global().get<chatterbox::hift::HiftModel>(
        chatterbox::ModelCache::make_key("hift", {path}, "cpu"),
        [&]() -> std::shared_ptr<const chatterbox::hift::HiftModel> { return chatterbox::hift::HiftModel::load(path); });
    return new chatterbox::hift::HiftVocoder(std::move(model), opts);
  } catch (const std::exception& e) {
    g_set_error_literal(error, GST_RESOURCE_ERROR, GST_RESOURCE_ERROR_OPEN_READ, e.what());
    return nullptr;
  }
}

static void gst_hift_dec_set_property(GObject* object, guint id, const GValue* value, GParamSpec* pspec) {
  GstHiftDec* self = GST_HIFT_DEC(object);
  GST_OBJECT_LOCK(self);
  if (!chatterbox::element_is_stopped(GST_ELEMENT(self))) {
    // Read when the model loads: a change now would silently not apply.
    GST_OBJECT_UNLOCK(self);
    chatterbox::warn_load_time_property(GST_ELEMENT(self), pspec);
    return;
  }
  switch (id) {
    case PROP_DETERMINISTIC: self->deterministic = g_value_get_boolean(value); break;
    case PROP_TRIM_FADE: self->trim_fade = g_value_get_boolean(value); break;
    case PROP_SEED: self->seed = g_value_get_uint64(value); break;
    default: G_OBJECT_WARN_INVALID_PROPERTY_ID(object, id, pspec);
  }
  GST_OBJECT_UNLOCK(self);
}

static void gst_hift_dec_get_property(GObject* object, guint id, GValue* value, GParamSpec* pspec) {
  GstHiftDec* self = GST_HIFT_DEC(object);
  GST_OBJECT_LOCK(self);
  switch (id) {
    case PROP_DETERMINISTIC: g_value_set_boolean(value, self->deterministic); break;
    case PROP_TRIM_FADE: g_value_set_boolean(value, self->trim_fade); break;
    case PROP_SEED: g_value_set_uint64(value, self->seed); break;
    default: G_OBJECT_WARN_INVALID_PROPERTY_ID(object, id, pspec);
  }
  GST_OBJECT_UNLOCK(self);
}

static void gst_hift_dec_class_init(GstHiftDecClass* klass) {
  GObjectClass* gobject_class = G_OBJECT_CLASS(klass);
  GstMelVocoderClass* vocoder_class = GST_MEL_VOCODER_CLASS(klass);
  gobject_class->set_property = gst_hift_dec_set_property;
  gobject_class->get_property = gst_hift_dec_get_property;
  vocoder_class->load_model = gst_hift_dec_load_model;
  vocoder_class->default_model = CHATTERBOX_DEFAULT_HIFT_MODEL;
  // Read when the model loads (NULL -> READY); refused with a warning in any
  // other state.
  const GParamFlags rw = static_cast<GParamFlags>(G_PARAM_READWRITE | G_PARAM_STATIC_STRINGS);
  g_object_class_install_property(gobject_class, PROP_DETERMINISTIC,
      g_param_spec_boolean("deterministic", "Deterministic",
                           "Zero initial harmonic phases and no additive noise in the sine source (reproduces the "
                           "reference's deterministic fixtures). Off: seeded random draws, as upstream. Changeable in "
                           "the NULL state only.",
                           FALSE, rw));
  g_object_class_install_property(gobject_class, PROP_TRIM_FADE,
      g_param_spec_boolean("trim-fade", "Trim fade",
                           "Silence the first 10 ms and fade in over the next 10 ms of each utterance, as "
                           "Chatterbox's S3Token2Wav does. Changeable in the NULL state only.",
                           TRUE, rw));
  g_object_class_install_property(gobject_class, PROP_SEED,
      g_param_spec_uint64("seed", "Seed",
                          "Seed of the source's random draws when not deterministic (utterance n uses seed + n); "
                          "the draws do not depend on buffer sizes. Changeable in the NULL state only.",
                          0, G_MAXUINT64, 0, rw));
  gst_element_class_set_static_metadata(GST_ELEMENT_CLASS(klass), "HiFT vocoder", "Codec/Decoder/Audio",
      "Turns S3Gen log-mel frames into audio with Chatterbox's HiFT (F0 predictor, neural source filter, iSTFT); "
      "the model may be Chatterbox's s3gen.safetensors (its mel2wav. part is used)",
      "gst-chatterbox developers");
}

static void gst_hift_dec_init(GstHiftDec* self) {
  self->trim_fade = TRUE;
}
