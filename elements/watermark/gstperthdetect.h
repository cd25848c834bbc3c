// perthdetect: passes audio/x-raw F32LE mono (any rate) through unchanged
// and runs Perth's detector (PerthImplicitWatermarker.get_watermark) on each
// utterance (ended by a DISCONT buffer, the chatterbox/utterance-end event
// or EOS). For each it posts an element message "perth-watermark" with
// confidence (double: upstream's value clipped to [0, 1], before rounding),
// watermarked (boolean: the rounded value, confidence > 0.5), utterance
// (guint64), samples (guint64), rate (int), silent (boolean: no frame loud
// enough to decode, confidence 0); the last values are the read-only
// properties `confidence` and `watermarked`.
#pragma once

#include <gst/gst.h>

G_BEGIN_DECLS
#define GST_TYPE_PERTH_DETECT (gst_perth_detect_get_type())
G_DECLARE_FINAL_TYPE(GstPerthDetect, gst_perth_detect, GST, PERTH_DETECT, GstElement)
G_END_DECLS
