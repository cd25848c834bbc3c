// GstMelVocoder: base class of the mel -> audio elements (vocosdec, hiftdec).
//
// It owns everything that is the same for every vocoder: caps negotiation
// from the model's feature layout (refusing a mismatched upstream with a
// message that names the field), frame accounting over a GstAdapter (partial
// frames are carried), timestamps in audio time, DISCONT / flush / EOS
// handling (EOS drains exactly the remaining samples), the latency query
// (upstream + lookahead) and the common properties. A subclass only supplies
// load_model().
#pragma once

#include <gst/gst.h>

namespace chatterbox {
class StreamingVocoder;
}

G_BEGIN_DECLS

#define GST_TYPE_MEL_VOCODER (gst_mel_vocoder_get_type())
G_DECLARE_DERIVABLE_TYPE(GstMelVocoder, gst_mel_vocoder, GST, MEL_VOCODER, GstElement)

struct _GstMelVocoderClass {
  GstElementClass parent_class;

  // Loads the model at `path` (never NULL: the `model` property or the
  // subclass's default_model) for `device` ("cpu", "cuda") with `threads`
  // CPU threads (0: LibTorch's default). Returns a new vocoder owned by the
  // caller, or NULL with *error set to a message a user can act on.
  chatterbox::StreamingVocoder* (*load_model)(GstMelVocoder* self, const gchar* path, const gchar* device,
                                              gint threads, GError** error);
  // Path used when the `model` property is unset; NULL: `model` is required.
  const gchar* default_model;
};

G_END_DECLS
