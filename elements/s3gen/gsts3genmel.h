// s3genmel: S3 speech tokens -> 80-bin S3Gen log-mel (24 kHz, hop 480), with
// Chatterbox's flow-matching model conditioned on a voice (conds file).
#pragma once

#include <gst/gst.h>

G_BEGIN_DECLS
#define GST_TYPE_S3GEN_MEL (gst_s3gen_mel_get_type())
G_DECLARE_FINAL_TYPE(GstS3GenMel, gst_s3gen_mel, GST, S3GEN_MEL, GstElement)
G_END_DECLS
