// The caps contract between chatterbox elements: audio/x-mel-spectrogram
// (every field that changes the meaning of a number), audio/x-speech-tokens,
// and conversion between caps and chatterbox::MelFormat.
#pragma once

#include <gst/gst.h>

#include "gst-plugins/core/mel_format.h"

#include <string>

#define CHATTERBOX_MEL_MEDIA_TYPE "audio/x-mel-spectrogram"
#define CHATTERBOX_TOKENS_MEDIA_TYPE "audio/x-speech-tokens"

// Template caps: any mel layout (F32LE, frame-major, natural log).
#define CHATTERBOX_MEL_TEMPLATE_CAPS \
  CHATTERBOX_MEL_MEDIA_TYPE ", format=(string)F32LE, layout=(string)frame-major, log=(string)ln"

// S3 speech tokens: one S32LE id per token, 25 tokens per second.
#define CHATTERBOX_TOKENS_CAPS                                                                 \
  CHATTERBOX_TOKENS_MEDIA_TYPE ", format=(string)S32LE, codebook=(string)s3-v2-25hz, vocab-size=(int)6561, " \
                               "rate=(int)25"

#define CHATTERBOX_AUDIO_CAPS(rate) \
  "audio/x-raw, format=(string)F32LE, layout=(string)interleaved, channels=(int)1, rate=(int)" #rate

namespace chatterbox {

// Fully fixed caps describing `f`.
GstCaps* mel_format_to_caps(const MelFormat& f);

// Reads every field of fixed mel caps. Returns false and sets *why (a sentence
// naming the missing or malformed field) when the caps do not describe a
// complete mel layout.
bool mel_format_from_caps(const GstCaps* caps, MelFormat* out, std::string* why);

// Explains why `offered` (possibly partial or unfixed) caps cannot carry the
// model's `expected` layout: the fields whose values disagree, worded for the
// user. Empty when they are compatible.
std::string explain_mel_caps_mismatch(const MelFormat& expected, const GstCaps* offered);

// Explains, field by field, why no structure of `offered` (possibly partial
// or unfixed) can carry `wanted` (its first structure): "<subject> expects
// F=V, upstream offers W; ...". Empty when they can intersect, or when
// `offered` is null or empty (nothing to judge).
std::string explain_caps_mismatch(const GstCaps* wanted, const GstCaps* offered, const char* subject);

// What the upstream peer of `sinkpad` can offer: a CAPS query without a
// filter, which elements answer in READY too. nullptr when there is no peer
// or it did not answer. For the READY->PAUSED check every chatterbox element
// makes: when nothing upstream offers can fit, the element fails the state
// change with an ERROR naming each field (synchronously, so a pipeline that
// cannot negotiate ends at once, instead of leaving upstream to fail later
// with a bare "not-negotiated" while the sinks preroll on its EOS).
GstCaps* query_upstream_caps(GstPad* sinkpad);

// Answers an ACCEPT_CAPS query on a sink pad: anything within the pad's
// template. For elements whose CAPS event then refuses what it cannot take
// with an ERROR naming the reason; the pad's default accept-caps would
// refuse it silently first (upstream then says only "not-negotiated").
gboolean accept_caps_within_template(GstPad* pad, GstQuery* query);

// Mono F32LE audio caps at `rate`.
GstCaps* audio_caps(int rate);

// Answers a CAPS query with `caps` (taken) intersected with the query's
// filter. Returns true when the filter excluded everything `caps` offers:
// upstream is about to fail with a bare not-negotiated, and the element
// should say why.
bool answer_caps_query(GstQuery* query, GstCaps* caps);

// Answers a LATENCY query on a src pad: upstream's latency (asked through
// `sinkpad`) plus `ours`. `bounded`: false when this element may hold data
// for an unbounded time (no maximum latency then). FALSE if upstream did not
// answer.
gboolean answer_latency_query(GstPad* sinkpad, GstQuery* query, GstClockTime ours, bool bounded = true);

}  // namespace chatterbox
