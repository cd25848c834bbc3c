// librosa.filters.mel exactly as librosa 0.11 rounds it to float32 (its
// default dtype), for the tables the voice front end multiplies by: the S3
// tokenizer's `_mel_filters` (128 bands; Chatterbox builds it with librosa
// at run time, the real checkpoint does not store it) and the VoiceEncoder's
// mel basis (40 bands).
//
// librosa computes every triangle in float64, stores it into a float32 array
// (one rounding), then multiplies that array in place by the float64 Slaney
// norm (a second rounding). elements/mel's mel_filterbank gives the float64
// triangle and band edges; this reproduces the two roundings, so the result
// does not depend on the CPU (only IEEE double arithmetic and libm's exp/log
// on scalars, which round to the same float32 on any machine).
//
// No GStreamer here: part of libchatterbox.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>

namespace chatterbox::voice {

// [n_mels, n_fft / 2 + 1] float32; Slaney scale and Slaney norm (librosa's
// defaults, the only ones Chatterbox uses).
at::Tensor librosa_mel_f32(int64_t rate, int64_t n_fft, int64_t n_mels, double f_min, double f_max);

}  // namespace chatterbox::voice
