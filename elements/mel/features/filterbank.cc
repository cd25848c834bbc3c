#include "elements/mel/features/filterbank.h"

#include "gst-plugins/core/checkpoint.h"  // ModelError
#include "gst-plugins/core/torch_f32.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <cmath>
#include <vector>

namespace chatterbox::mel {

namespace {
// Slaney's Auditory Toolbox constants, as librosa and torchaudio spell them.
constexpr double kSlaneyHzPerMel = 200.0 / 3.0;
constexpr double kSlaneyMinLogHz = 1000.0;
constexpr double kSlaneyMinLogMel = kSlaneyMinLogHz / kSlaneyHzPerMel;  // 15
const double kSlaneyLogStep = std::log(6.4) / 27.0;
}  // namespace

MelScale parse_mel_scale(const std::string& s) {
  if (s == "slaney") return MelScale::Slaney;
  if (s == "htk") return MelScale::Htk;
  throw ModelError("mel-scale='" + s + "' is not supported: use \"slaney\" (librosa default, Chatterbox S3Gen) "
                   "or \"htk\" (torchaudio default, Vocos)");
}

MelNorm parse_mel_norm(const std::string& s) {
  if (s == "slaney") return MelNorm::Slaney;
  if (s == "none") return MelNorm::None;
  throw ModelError("norm='" + s + "' is not supported: use \"slaney\" (each band scaled to constant area, librosa "
                   "default) or \"none\" (unit-peak triangles, torchaudio default)");
}

double hz_to_mel(double hz, MelScale scale) {
  if (scale == MelScale::Htk) return 2595.0 * std::log10(1.0 + hz / 700.0);
  if (hz >= kSlaneyMinLogHz) return kSlaneyMinLogMel + std::log(hz / kSlaneyMinLogHz) / kSlaneyLogStep;
  return hz / kSlaneyHzPerMel;
}

double mel_to_hz(double mel, MelScale scale) {
  if (scale == MelScale::Htk) return 700.0 * (std::pow(10.0, mel / 2595.0) - 1.0);
  if (mel >= kSlaneyMinLogMel) return kSlaneyMinLogHz * std::exp(kSlaneyLogStep * (mel - kSlaneyMinLogMel));
  return mel * kSlaneyHzPerMel;
}

at::Tensor mel_filterbank(int64_t rate, int64_t n_fft, int64_t n_mels, double f_min, double f_max, MelScale scale,
                          MelNorm norm) {
  if (rate <= 0 || n_fft <= 0 || n_mels <= 0)
    throw ModelError("mel_filterbank: rate, n_fft and n_mels must be positive (got rate=" + std::to_string(rate) +
                     " n_fft=" + std::to_string(n_fft) + " n_mels=" + std::to_string(n_mels) + ")");
  const int64_t n_freqs = n_fft / 2 + 1;

  // Band edges: n_mels + 2 points equally spaced in mel (numpy.linspace
  // arithmetic: start + i * step, the last point exactly the end).
  const double m_lo = hz_to_mel(f_min, scale), m_hi = hz_to_mel(f_max, scale);
  const int64_t n_edges = n_mels + 2;
  std::vector<double> edge(n_edges);
  const double step = (m_hi - m_lo) / static_cast<double>(n_edges - 1);
  for (int64_t i = 0; i < n_edges; ++i) edge[i] = mel_to_hz(m_lo + step * static_cast<double>(i), scale);
  edge[n_edges - 1] = mel_to_hz(m_hi, scale);

  // FFT bin centre frequencies: k * rate / n_fft (numpy.fft.rfftfreq; equal to
  // torchaudio's linspace(0, rate // 2, n_freqs) whenever n_fft and rate are even).
  std::vector<double> freq(n_freqs);
  for (int64_t k = 0; k < n_freqs; ++k)
    freq[k] = static_cast<double>(k) * static_cast<double>(rate) / static_cast<double>(n_fft);

  at::Tensor fb = at::zeros({n_mels, n_freqs}, at::kDouble);
  double* w = fb.data_ptr<double>();
  for (int64_t i = 0; i < n_mels; ++i) {
    const double lo = edge[i], mid = edge[i + 1], hi = edge[i + 2];
    const double enorm = norm == MelNorm::Slaney ? 2.0 / (hi - lo) : 1.0;
    for (int64_t k = 0; k < n_freqs; ++k) {
      const double rising = (freq[k] - lo) / (mid - lo);
      const double falling = (hi - freq[k]) / (hi - mid);
      w[i * n_freqs + k] = std::max(0.0, std::min(rising, falling)) * enorm;
    }
  }
  return fb;
}

at::Tensor mel_filterbank_torchaudio_f32(int64_t rate, int64_t n_fft, int64_t n_mels, double f_min, double f_max,
                                         MelScale scale, MelNorm norm) {
  if (rate <= 0 || n_fft <= 0 || n_mels <= 0)
    throw ModelError("mel_filterbank_torchaudio_f32: rate, n_fft and n_mels must be positive");
  // Each step is one float operation of torchaudio.functional.melscale_fbanks
  // / _mel_to_hz / _create_triangular_filterbank, in the same order, so the
  // float32 rounding is the same; the tables do not depend on the CPU
  // (torch_f32.h: ATen's own pow/exp differ by an ulp between capabilities).
  const int64_t n_freqs = n_fft / 2 + 1, n_pts = n_mels + 2;
  const std::vector<float> all_freqs = f32::linspace(0.0, static_cast<double>(rate / 2), n_freqs);
  const double m_min = hz_to_mel(f_min, scale), m_max = hz_to_mel(f_max, scale);  // Python floats
  const std::vector<float> m_pts = f32::linspace(m_min, m_max, n_pts);
  std::vector<float> f_pts(n_pts);
  for (int64_t i = 0; i < n_pts; ++i) {
    const float m = m_pts[i];
    if (scale == MelScale::Htk) {
      // 700.0 * (10.0 ** (mels / 2595.0) - 1.0)
      const float t = m / 2595.0f;
      const float p = f32::pow(10.0f, t);
      const float q = p - 1.0f;
      f_pts[i] = q * 700.0f;
    } else if (m >= f32::round(kSlaneyMinLogMel)) {
      // min_log_hz * exp(logstep * (mels - min_log_mel))
      const float d = m - f32::round(kSlaneyMinLogMel);
      const float e = f32::exp(d * f32::round(kSlaneyLogStep));
      f_pts[i] = e * f32::round(kSlaneyMinLogHz);
    } else {
      const float lin = m * f32::round(kSlaneyHzPerMel);  // f_min + f_sp * mels
      f_pts[i] = lin + 0.0f;
    }
  }
  at::Tensor fb = at::zeros({n_mels, n_freqs}, at::kFloat);
  float* w = fb.data_ptr<float>();
  for (int64_t m = 0; m < n_mels; ++m) {
    const float diff_lo = f_pts[m + 1] - f_pts[m], diff_hi = f_pts[m + 2] - f_pts[m + 1];
    // Slaney norm: 2.0 / (f_pts[2:] - f_pts[:-2])
    const float enorm = norm == MelNorm::Slaney ? 2.0f / (f_pts[m + 2] - f_pts[m]) : 1.0f;
    for (int64_t k = 0; k < n_freqs; ++k) {
      const float down_slope = f_pts[m] - all_freqs[k], up_slope = f_pts[m + 2] - all_freqs[k];
      const float down = (down_slope * -1.0f) / diff_lo;
      const float up = up_slope / diff_hi;
      const float v = std::max(0.0f, std::min(down, up));
      w[m * n_freqs + k] = norm == MelNorm::Slaney ? v * enorm : v;
    }
  }
  return fb;
}

at::Tensor hann_window(int64_t length, bool periodic) {
  if (length <= 0) throw ModelError("hann_window: length must be positive, got " + std::to_string(length));
  at::Tensor win = at::empty({length}, at::kDouble);
  double* w = win.data_ptr<double>();
  if (length == 1) {
    w[0] = 1.0;  // torch.hann_window(1) and scipy agree on a single 1
    return win;
  }
  const double denom = static_cast<double>(periodic ? length : length - 1);
  for (int64_t n = 0; n < length; ++n) w[n] = 0.5 - 0.5 * std::cos(2.0 * M_PI * static_cast<double>(n) / denom);
  return win;
}

}  // namespace chatterbox::mel
