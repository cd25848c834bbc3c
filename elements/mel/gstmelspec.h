// melspec: audio/x-raw (F32LE mono) -> audio/x-mel-spectrogram.
// The feature recipe follows downstream caps when downstream constrains them
// (so `melspec ! vocosdec` produces whatever the vocoder's model expects),
// else the `preset` property with per-field overrides.
#pragma once

#include <gst/gst.h>

G_BEGIN_DECLS
#define GST_TYPE_MEL_SPEC (gst_mel_spec_get_type())
G_DECLARE_FINAL_TYPE(GstMelSpec, gst_mel_spec, GST, MEL_SPEC, GstElement)
G_END_DECLS
