// torchaudio.compliance.kaldi.fbank with the arguments CAMPPlus's
// extract_feature passes (num_mel_bins=80, everything else default), in
// float32 like the reference:
//   frames of 25 ms every 10 ms, snip_edges (1 + (N - 400) / 160 frames),
//   dither 0, DC removal, pre-emphasis 0.97 (the first sample repeated),
//   povey window (symmetric Hann ^ 0.85), zero-padded to 512, |rfft|^2,
//   80 triangular bins on Kaldi's mel scale 1127 ln(1 + f / 700) from 20 Hz
//   to Nyquist, ln(max(., float32 eps)). No energy, no x32768 scaling.
// The window and the bins are torch float32 tables: computed step by step in
// IEEE float (torch_f32.h) so they are the same on every CPU.
//
// No GStreamer here: part of libchatterbox.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>

namespace chatterbox::voice {

struct KaldiFbankOptions {
  int64_t rate = 16000;
  int64_t num_mel_bins = 80;
  double frame_length_ms = 25.0, frame_shift_ms = 10.0;
  double preemphasis = 0.97;
  double low_freq = 20.0;
  double high_freq = 0.0;  // <= 0: offset from Nyquist (Kaldi's convention)
};

// The povey window [window_size] and the bins [num_mel_bins, padded/2 + 1]
// (the last FFT bin's column zero, as torchaudio pads it) as float32.
at::Tensor kaldi_povey_window(int64_t window_size);
at::Tensor kaldi_mel_banks(const KaldiFbankOptions& o, int64_t padded_window_size);

// wave: 1-D float32 -> [frames, num_mel_bins] float32 (0 frames when the
// wave is shorter than one window, as torchaudio returns an empty tensor).
// A float64 wave is computed in float64 (exact references for tests).
at::Tensor kaldi_fbank(const at::Tensor& wave, const KaldiFbankOptions& o = {});

}  // namespace chatterbox::voice
