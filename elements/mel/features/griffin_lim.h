// Griffin-Lim phase reconstruction from a log-mel spectrogram: the no-training
// floor that the neural vocoders are compared against (bench/quality).
//
// Two steps:
//  1. mel_to_magnitude: the linear STFT magnitude whose mel projection best
//     matches exp(log-mel) in the least-squares sense with a non-negativity
//     constraint (the filterbank has far fewer rows than FFT bins, so the
//     plain pseudo-inverse is one of many solutions and goes negative between
//     band centres; it only seeds the non-negative solver).
//  2. griffin_lim: phases that make that magnitude a consistent STFT of one
//     signal, by alternating projections (Griffin & Lim 1984) with the
//     momentum of the "fast Griffin-Lim" of Perraudin, Balazs & Søndergaard
//     (2013): t_n = c_n + a (c_n - c_{n-1}); a = 0 is the original algorithm.
//
// The STFT is the MelExtractor's own (window, n_fft, hop, padding), so the mel
// of the output is directly comparable with the input mel, and the output has
// the length a vocoder gives for T frames: T*hop ("same") or (T-1)*hop ("center").
//
// No GStreamer here: part of libchatterbox.
#pragma once

#include "elements/mel/features/mel_extractor.h"

#include <ATen/core/Tensor.h>

#include <cstdint>

namespace chatterbox::mel {

struct GriffinLimOptions {
  int iterations = 32;      // projections; 0 = inverse STFT of the initial phases
  double momentum = 0.99;   // Perraudin et al.'s recommended value; 0 = plain Griffin-Lim
  bool random_init = true;  // initial phases uniform in [-pi, pi) drawn from `seed`; false: zero phase
  uint64_t seed = 0;
  int nnls_iterations = 100;  // multiplicative updates of the non-negative least squares (step 1)
};

// [T, n_mels] log-mel in `ex`'s layout -> [T, n_fft/2 + 1] non-negative
// float32 magnitude |X| (power-2 layouts are inverted to |X| too). Bins no mel
// band covers (above f_max) come out 0.
at::Tensor mel_to_magnitude(const MelExtractor& ex, const at::Tensor& log_mel, int nnls_iterations = 100);

// Magnitude [T, n_fft/2 + 1] -> float32 audio of T*hop ("same") or
// (T-1)*hop ("center") samples. Deterministic for a given seed.
at::Tensor griffin_lim(const MelExtractor& ex, const at::Tensor& magnitude, const GriffinLimOptions& opts = {});

// mel_to_magnitude then griffin_lim.
at::Tensor griffin_lim_from_mel(const MelExtractor& ex, const at::Tensor& log_mel, const GriffinLimOptions& opts = {});

}  // namespace chatterbox::mel
