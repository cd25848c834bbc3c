// Waveform-comparison metrics for vocoder quality (bench/quality): every
// number chatterbox-quality prints. Reference first, test second; both mono,
// the same rate and the same length (compare() trims to the shorter).
//
//  - STOI (stoi.h), Taal et al. 2011: 0..1, higher is better.
//  - log-mel L1, the S3Gen recipe (MelFormat::s3gen(): 80 Slaney mels of
//    |STFT| at 24 kHz, n_fft 1920, hop 480, ln(max(x, 1e-5))): mean absolute
//    difference over frames and bands; what vocos-train reports.
//  - MCD, mel-cepstral distortion in dB: cepstra c_m = (1/K) sum_k L_k
//    cos(pi m (k + 1/2) / K) of the S3Gen log-mel L (K = 80 bands, natural
//    log of the mel magnitude; this scaling makes L_k = c_0 + 2 sum c_m cos(.)),
//    coefficients c1..c24 (c0, the level, left out), frames paired one to one
//    (no DTW: the signals are time-aligned copies), per frame
//    (10 / ln 10) sqrt(2 sum_m (c_m - c'_m)^2), mean over frames.
//  - multi-resolution STFT distance: Hann STFTs (n_fft, hop) = (512, 128),
//    (1024, 256), (2048, 512), centre-padded, |X| = sqrt(max(|X|^2, 1e-7));
//    spectral convergence |A - B|_F / |A|_F and log-magnitude mean |ln A - ln B|,
//    each averaged over the resolutions; the distance is their sum (the STFT
//    loss vocos-train minimises).
//  - spectral similarity: Pearson correlation of the |STFT| magnitudes (Hann,
//    n_fft 1024, hop 256, centre-padded) over every bin and frame: 1 = the same
//    spectrogram up to gain.
//  - SNR: 10 log10(sum r^2 / sum (r - t)^2) dB (inf when identical).
//  - SI-SNR (scale-invariant SNR, Le Roux et al. 2019): both made zero-mean,
//    r scaled by <t, r>/<r, r>, then the SNR of that target against the rest.
//    Sample-exact measures: a vocoder that regenerates phase scores near or
//    below 0 dB on them however good it sounds.
//
// No GStreamer here.
#pragma once

#include "bench/quality/stoi.h"

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace chatterbox::quality {

double snr_db(const std::vector<double>& ref, const std::vector<double>& test);
double si_snr_db(const std::vector<double>& ref, const std::vector<double>& test);

// Log-mel [T, M] pairs (frame-major), compared over their first min(T) frames.
double log_mel_l1(const at::Tensor& ref_mel, const at::Tensor& test_mel);
// [T, order + 1]: c0..c_order of each frame, float64.
at::Tensor mel_cepstrum(const at::Tensor& log_mel, int order);
double mcd_db(const at::Tensor& ref_mel, const at::Tensor& test_mel, int order = 24);

// S3Gen log-mel of 24 kHz audio, float32 [T, 80] (MelExtractor).
at::Tensor s3gen_log_mel(const std::vector<double>& audio_24k);

struct StftDistance {
  double spectral_convergence = 0;
  double log_magnitude = 0;
  double total() const { return spectral_convergence + log_magnitude; }
};
StftDistance multi_resolution_stft(const std::vector<double>& ref, const std::vector<double>& test);
double spectral_similarity(const std::vector<double>& ref, const std::vector<double>& test);

struct Report {
  int64_t rate = 0;     // the rate compared at (the reference's)
  int64_t samples = 0;  // after trimming to the shorter signal
  int64_t ref_samples = 0, test_samples = 0;
  std::optional<StoiResult> stoi;  // empty when undefined (too little speech)
  std::string stoi_error;
  double log_mel_l1 = 0, mcd_db = 0;
  StftDistance mr_stft;
  double spectral_similarity = 0, snr_db = 0, si_snr_db = 0;
};

// Every metric. `ref` and `test` at `rate` Hz; the longer one is cut to the
// shorter one's length (no delay search: the signals must be aligned, as a
// vocoder's copy-synthesis is). The mel metrics resample to 24 kHz when
// `rate` differs.
Report compare(std::vector<double> ref, std::vector<double> test, int64_t rate);

}  // namespace chatterbox::quality
