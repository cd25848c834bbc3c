// hiftdec: mel -> 24 kHz audio with HiFT, Chatterbox's own vocoder (F0
// predictor + neural source filter + iSTFT): the rollback path. Streaming,
// caps and timestamps are GstMelVocoder's; streaming is exact (the sine
// source's phase is carried across buffers).
#pragma once

#include "gst-plugins/base/gstmelvocoder.h"

G_BEGIN_DECLS
#define GST_TYPE_HIFT_DEC (gst_hift_dec_get_type())
G_DECLARE_FINAL_TYPE(GstHiftDec, gst_hift_dec, GST, HIFT_DEC, GstMelVocoder)
G_END_DECLS
