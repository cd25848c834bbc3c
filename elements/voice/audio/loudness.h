// ChatterboxTurboTTS.norm_loudness: the reference scaled to -27 LUFS
// integrated loudness (ITU-R BS.1770 with EBU R128 gating). Upstream measures
// with pyloudnorm; here libebur128 measures (the same standard: K-weighting,
// 400 ms blocks with 75 % overlap, -70 LUFS absolute and -10 LU relative
// gates). Their K-weighting filters are designed from slightly different
// parameterisations, so at 24 kHz the two can differ by a few hundredths of
// a dB: not checked against a fixture (the clone fixtures do not cover Turbo).
// As upstream, a non-finite or non-positive gain (silence) leaves the wave
// unchanged, and the gain multiplies in float32.
//
// No GStreamer here: part of libchatterbox.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>

namespace chatterbox::voice {

// Integrated loudness in LUFS of a mono float32 wave (-inf for silence or
// audio shorter than one 400 ms block).
double integrated_loudness(const at::Tensor& wave, int64_t rate);
// The wave scaled to `target_lufs` (unchanged when the gain is not finite).
at::Tensor normalize_loudness(const at::Tensor& wave, int64_t rate, double target_lufs = -27.0);

}  // namespace chatterbox::voice
