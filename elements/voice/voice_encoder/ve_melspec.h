// The VoiceEncoder's front end (chatterbox/models/voice_encoder/melspec.py and
// the librosa calls embeds_from_wavs makes), at 16 kHz:
//  - librosa.effects.trim(top_db=20): RMS of 2048-sample frames every 512
//    (1024 zeros padded each side), in dB relative to the loudest frame; the
//    kept span runs from the first frame above -top_db to the end of the last
//    one (sample granularity 512).
//  - power mel: librosa.stft(n_fft 400, hop 160, periodic Hann, center,
//    reflect), |X|^2, the 40-band librosa filterbank; no log, no
//    normalisation (VoiceEncConfig: mel_type "amp", mel_power 2,
//    normalized_mels False, preemphasis 0). librosa's STFT runs in float64 on
//    the float32 samples and rounds the spectrum to complex64; the rest is
//    float32, as here.
//
// No GStreamer here: part of libchatterbox.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>

namespace chatterbox::voice {

struct TrimResult {
  int64_t start = 0, end = 0;  // wave[start:end] is kept
  at::Tensor frame_db;         // [1 + N / 512] float64: each frame's dB relative to the loudest
};

// wave: 1-D float32.
TrimResult librosa_trim(const at::Tensor& wave, double top_db = 20.0);

// wave: 1-D float32 at 16 kHz (> 200 samples) -> [1 + N / 160, n_mels] float32.
at::Tensor ve_power_mel(const at::Tensor& wave, const at::Tensor& mel_basis);

}  // namespace chatterbox::voice
