// chatterboxvocoder: a bin holding either vocosdec or hiftdec, so a pipeline
// switches vocoder (and rolls back to HiFT) with one property or one
// environment variable, without edits.
#pragma once

#include <gst/gst.h>

G_BEGIN_DECLS
#define GST_TYPE_CHATTERBOX_VOCODER (gst_chatterbox_vocoder_get_type())
G_DECLARE_FINAL_TYPE(GstChatterboxVocoder, gst_chatterbox_vocoder, GST, CHATTERBOX_VOCODER, GstBin)

typedef enum { GST_CHATTERBOX_VOCODER_VOCOS, GST_CHATTERBOX_VOCODER_HIFT } GstChatterboxVocoderKind;

GType gst_chatterbox_vocoder_kind_get_type(void);

// The default kind: CHATTERBOX_USE_VOCOS=true/1/yes -> vocos, false/0/no ->
// hift, unset (or unrecognised, with a warning) -> vocos.
GstChatterboxVocoderKind gst_chatterbox_vocoder_default_kind(void);
G_END_DECLS
