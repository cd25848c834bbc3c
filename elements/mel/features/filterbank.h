// Mel filterbanks and analysis windows, computed in code in double precision
// (never loaded from a file), so every mel layout in MelFormat is reproducible
// from its fields alone.
//
//  - Slaney scale + Slaney norm = librosa.filters.mel defaults
//    = torchaudio.functional.melscale_fbanks(norm="slaney", mel_scale="slaney")
//    (Chatterbox S3Gen).
//  - HTK scale, no norm = torchaudio.transforms.MelSpectrogram defaults (Vocos).
//
// No GStreamer here: part of libchatterbox.
#pragma once

#include <ATen/core/Tensor.h>

#include <string>

namespace chatterbox::mel {

enum class MelScale { Slaney, Htk };
enum class MelNorm { None, Slaney };

// "slaney" | "htk"; anything else is a ModelError naming the accepted values.
MelScale parse_mel_scale(const std::string& s);
// "slaney" | "none"; anything else is a ModelError.
MelNorm parse_mel_norm(const std::string& s);

// Slaney: linear below 1 kHz (200/3 Hz per mel), logarithmic above (27 mels
// per factor 6.4). HTK: 2595 log10(1 + f/700).
double hz_to_mel(double hz, MelScale scale);
double mel_to_hz(double mel, MelScale scale);

// Triangular filters, [n_mels, n_fft/2 + 1], float64: band i rises from
// edge i to edge i+1 and falls to edge i+2, the n_mels+2 edges equally spaced
// on the mel scale between f_min and f_max; FFT bin k sits at k*rate/n_fft Hz.
// MelNorm::Slaney scales band i by 2 / (edge[i+2] - edge[i]) (constant area).
// mel = filterbank . |X| (bins along the last dim).
at::Tensor mel_filterbank(int64_t rate, int64_t n_fft, int64_t n_mels, double f_min, double f_max, MelScale scale,
                          MelNorm norm);

// The same filterbank as torchaudio.functional.melscale_fbanks evaluates it:
// in float32 (linspace of the band edges in mel, 10^(m/2595) in float32, bin
// frequencies linspace(0, rate // 2)), returned as float32 [n_mels, n_freqs].
// It differs from the float64 one by up to ~1e-5 for the HTK scale at 24 kHz
// (the mel edges near 3266 mel carry float32 rounding of ~2e-4 mel, i.e. a few
// mHz), which is 30x the float32 noise of a log-mel, so layouts defined by
// torchaudio (Vocos: the model was trained on these exact numbers) use it.
at::Tensor mel_filterbank_torchaudio_f32(int64_t rate, int64_t n_fft, int64_t n_mels, double f_min, double f_max,
                                         MelScale scale, MelNorm norm);

// Hann window of `length` samples, float64. periodic=true (torch.hann_window
// default, scipy get_window("hann", fftbins=True)): 0.5 - 0.5 cos(2 pi n / length);
// periodic=false: the symmetric one, denominator length - 1.
at::Tensor hann_window(int64_t length, bool periodic = true);

}  // namespace chatterbox::mel
