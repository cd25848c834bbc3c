// vocosdec: mel -> 24 kHz audio with Vocos (ConvNeXt backbone + iSTFT head)
// in one forward pass. All streaming and negotiation logic is GstMelVocoder's.
#pragma once

#include "gst-plugins/base/gstmelvocoder.h"

G_BEGIN_DECLS
#define GST_TYPE_VOCOS_DEC (gst_vocos_dec_get_type())
G_DECLARE_FINAL_TYPE(GstVocosDec, gst_vocos_dec, GST, VOCOS_DEC, GstMelVocoder)
G_END_DECLS
