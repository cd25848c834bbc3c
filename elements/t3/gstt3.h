// t3: text/x-raw (UTF-8) -> audio/x-speech-tokens (S3 tokens, 25 Hz).
//
// Each text buffer is one or more sentences. With split-sentences (default)
// the text is cut at sentence ends (. ! ?) and overlong sentences further at
// clause breaks, and every piece is generated as its own utterance, as
// ChatterboxTTS.generate would be called once per piece. Tokens are pushed as
// they are sampled, `tokens-per-buffer` at a time.
//
// Output stream:
//  - one TIME segment from 0; PTS = token index / 25 s, duration 40 ms per
//    token, OFFSET / OFFSET_END = token indices; timestamps run on across
//    utterances and buffers (reset by a flush);
//  - the first buffer of every utterance carries DISCONT (the project's
//    utterance boundary: downstream decoders finish the previous utterance
//    there);
//  - after the last token of every utterance a custom serialized downstream
//    event "chatterbox/utterance-end" (fields: utterance (guint64),
//    first-token (guint64), tokens (guint64), trim-tokens (guint: how many
//    final tokens' audio the reference drops: 1 for multilingual models, as
//    ChatterboxMultilingualTTS.generate, else 0)) lets downstream finish it
//    without waiting for the next utterance or EOS; elements that do not know
//    it pass it on;
//  - only valid S3 ids (< 6561): the stop token and ids the model may emit
//    above the codebook are dropped, as ChatterboxTTS.generate does.
#pragma once

#include <gst/gst.h>

G_BEGIN_DECLS
#define GST_TYPE_T3 (gst_t3_get_type())
G_DECLARE_FINAL_TYPE(GstT3, gst_t3, GST, T3, GstElement)

// Name of the custom downstream event pushed after each utterance.
#define GST_T3_UTTERANCE_END_EVENT "chatterbox/utterance-end"
G_END_DECLS
