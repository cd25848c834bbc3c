// s3tokenizer: 16 kHz mono speech (audio/x-raw F32LE) -> S3 speech tokens
// (audio/x-speech-tokens, 25 per second) with Chatterbox's S3TokenizerV2, the
// front half of voice conversion (s3tokenizer ! s3genmel voice=target).
#pragma once

#include <gst/gst.h>

G_BEGIN_DECLS
#define GST_TYPE_S3_TOKENIZER (gst_s3_tokenizer_get_type())
G_DECLARE_FINAL_TYPE(GstS3Tokenizer, gst_s3_tokenizer, GST, S3_TOKENIZER, GstElement)
G_END_DECLS
