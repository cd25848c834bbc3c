// How far a torchaudio float32 filterbank (mel_filterbank_torchaudio_f32, or
// a reference's own evaluation of it) can move when its transcendental
// function results differ by an ulp: the bound the filterbank checks use
// instead of one CPU's last bits.
//
// Every step of melscale_fbanks is one IEEE float operation (identical on any
// CPU given identical inputs) except pow (HTK) and exp (Slaney above 1 kHz):
// ATen evaluates those with Sleef's 1-ulp functions on AVX2/AVX-512 and with
// libm otherwise; ours (torch_f32.h) are within half an ulp. So each band
// edge f_i may differ by delta_i = 2 ulp(r_i) * c + 2 ulp(f_i) (r_i the
// transcendental's result, c its scale: 700 Hz for HTK, 1000 Hz for Slaney's
// log part; no transcendental below 1 kHz on the Slaney scale: delta 0), and
// a triangle entry v = max(0, min(down, up)) with down = (x - a) / (c - a),
// up = (b - x) / (b - c) moves by at most the larger of
//   (|x - c| delta_a + |x - a| delta_c) / (c - a)^2  and
//   (|x - c| delta_b + |b - x| delta_c) / (b - c)^2
// (first order; Lipschitz through max/min), plus 4 float32 roundings of a
// value <= 1 (the subtractions and the division may round the other way).
// Slaney norm e = 2 / (b - a) adds v e ((delta_a + delta_b) / (b - a) + 2^-23).
#pragma once

#include "elements/mel/features/filterbank.h"
#include "gst-plugins/core/torch_f32.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <cmath>
#include <vector>

namespace chatterbox::test {

inline double ulp_f32(float v) {
  const float a = std::fabs(v);
  return static_cast<double>(std::nextafter(a, INFINITY) - a);
}

// [n_mels, n_fft / 2 + 1] float64: the per-entry bound described above.
inline at::Tensor torchaudio_filterbank_bound(int64_t rate, int64_t n_fft, int64_t n_mels, double f_min, double f_max,
                                              mel::MelScale scale, mel::MelNorm norm) {
  const int64_t n_freqs = n_fft / 2 + 1, n_pts = n_mels + 2;
  const std::vector<float> freqs = f32::linspace(0.0, static_cast<double>(rate / 2), n_freqs);
  const std::vector<float> m_pts = f32::linspace(mel::hz_to_mel(f_min, scale), mel::hz_to_mel(f_max, scale), n_pts);
  std::vector<double> f(n_pts), delta(n_pts);
  for (int64_t i = 0; i < n_pts; ++i) {
    const float m = m_pts[i];
    if (scale == mel::MelScale::Htk) {
      const float r = f32::pow(10.0f, m / 2595.0f);
      f[i] = (r - 1.0f) * 700.0f;
      delta[i] = 2 * ulp_f32(r) * 700.0 + 2 * ulp_f32(static_cast<float>(f[i]));
    } else if (m >= 15.0f) {
      const float r = f32::exp((m - 15.0f) * static_cast<float>(std::log(6.4) / 27.0));
      f[i] = r * 1000.0f;
      delta[i] = 2 * ulp_f32(r) * 1000.0 + 2 * ulp_f32(static_cast<float>(f[i]));
    } else {
      f[i] = m * static_cast<float>(200.0 / 3.0);
      delta[i] = 0.0;
    }
  }
  at::Tensor bound = at::zeros({n_mels, n_freqs}, at::kDouble);
  double* B = bound.data_ptr<double>();
  const double round4 = 4 * std::ldexp(1.0, -24);
  for (int64_t m = 0; m < n_mels; ++m) {
    const double a = f[m], c = f[m + 1], b = f[m + 2];
    const double da = delta[m], dc = delta[m + 1], db = delta[m + 2];
    const double e = norm == mel::MelNorm::Slaney ? 2.0 / (b - a) : 1.0;
    for (int64_t k = 0; k < n_freqs; ++k) {
      const double x = freqs[k];
      if (x < a - da || x > b + db) continue;  // zero on both sides
      const double v = std::max(0.0, std::min((x - a) / (c - a), (b - x) / (b - c)));
      const double dv = std::max((std::fabs(x - c) * da + std::fabs(x - a) * dc) / ((c - a) * (c - a)),
                                 (std::fabs(x - c) * db + std::fabs(b - x) * dc) / ((b - c) * (b - c))) +
                        round4;
      B[m * n_freqs + k] = norm == mel::MelNorm::Slaney
                               ? e * dv + v * e * ((da + db) / (b - a) + std::ldexp(1.0, -23)) + round4 * e
                               : dv;
    }
  }
  return bound;
}

// Largest |got - want| / bound over the entries (<= 1: within the bound).
inline double bound_ratio(const at::Tensor& got, const at::Tensor& want, const at::Tensor& bound) {
  at::Tensor d = (got.to(at::kDouble) - want.to(at::kDouble)).abs();
  return (d / (bound + 1e-300)).max().item<double>();
}

}  // namespace chatterbox::test
