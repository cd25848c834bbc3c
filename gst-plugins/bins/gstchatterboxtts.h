// chatterboxtts: the whole text-to-speech chain in one element,
// t3 ! s3genmel ! chatterboxvocoder, configured from a Chatterbox model
// directory.
#pragma once

#include <gst/gst.h>

G_BEGIN_DECLS
#define GST_TYPE_CHATTERBOX_TTS (gst_chatterbox_tts_get_type())
G_DECLARE_FINAL_TYPE(GstChatterboxTts, gst_chatterbox_tts, GST, CHATTERBOX_TTS, GstBin)
G_END_DECLS
