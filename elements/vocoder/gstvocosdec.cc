#include "elements/vocoder/gstvocosdec.h"

#include "elements/vocoder/vocos/vocos.h"
#include "gst-plugins/core/model_cache.h"
#include "gst-plugins/elements.h"

struct _GstVocosDec {
  GstMelVocoder parent;
};

G_DEFINE_TYPE(GstVocosDec, gst_vocos_dec, GST_TYPE_MEL_VOCODER)
GST_ELEMENT_REGISTER_DEFINE(vocosdec, "vocosdec", GST_RANK_NONE, GST_TYPE_VOCOS_DEC)

static chatterbox::StreamingVocoder* gst_vocos_dec_load_model(GstMelVocoder*, const gchar* path, const gchar* device,
                                                              gint threads, GError** error) {
  try {
    chatterbox::VocosLoadOptions opts;
    opts.device = device;
    opts.threads = threads;  // also sizes OpenBLAS's pool (see VocosLoadOptions)
    // Instances naming the same file on the same device share the weights;
    // each keeps its own streaming state.
    auto model = chatterbox::ModelCache::global().get<chatterbox::VocosModel>(
        chatterbox::ModelCache::make_key("vocos", {path}, device),
        [&] { return chatterbox::VocosModel::load(path, opts); });
    chatterbox::set_vocos_threads(threads);  // a cached model was loaded with another element's setting
    return new chatterbox::VocosVocoder(std::move(model));
  } catch (const std::exception& e) {
    g_set_error_literal(error, GST_RESOURCE_ERROR, GST_RESOURCE_ERROR_OPEN_READ, e.what());
    return nullptr;
  }
}

static void gst_vocos_dec_class_init(GstVocosDecClass* klass) {
  GstMelVocoderClass* vocoder_class = GST_MEL_VOCODER_CLASS(klass);
  vocoder_class->load_model = gst_vocos_dec_load_model;
  // The embedded default: a small Vocos for S3Gen features trained by
  // vocos-train (models/README.md), installed or from the source tree.
  vocoder_class->default_model = g_file_test(CHATTERBOX_INSTALLED_VOCOS_MODEL, G_FILE_TEST_EXISTS)
                                     ? CHATTERBOX_INSTALLED_VOCOS_MODEL
                                     : CHATTERBOX_SOURCE_VOCOS_MODEL;
  gst_element_class_set_static_metadata(GST_ELEMENT_CLASS(klass), "Vocos vocoder", "Codec/Decoder/Audio",
      "Turns log-mel frames into audio with Vocos (ConvNeXt + iSTFT). The model's feature layout fixes the sink "
      "caps: S3Gen mels need a Vocos trained for them (vocos-train); charactr/vocos-mel-24khz takes melspec "
      "preset=vocos features.",
      "gst-chatterbox developers");
}

static void gst_vocos_dec_init(GstVocosDec*) {}
