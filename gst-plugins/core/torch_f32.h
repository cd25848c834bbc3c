// Float32 tables computed the way PyTorch's CPU kernels compute them, but the
// same on every CPU.
//
// Some of our constants are defined by a reference's float32 evaluation
// (torchaudio's mel filterbank and torch.hann_window for Vocos, HiFT's
// trim fade): the models were trained on those exact numbers. Evaluating
// them through ATen would make their last bits depend on the CPU: ATen picks
// its transcendental kernels at run time (Sleef on AVX-512 or AVX2, libm
// without), and their results differ by an ulp (a Vocos filterbank entry then
// moves by up to 1.3e-5). So here every arithmetic step is one IEEE float
// operation, exactly as the reference performs it (those are the same on any
// CPU), and each transcendental function is evaluated in double and rounded
// to float once: the correctly rounded result in all but astronomically rare
// cases, which the reference's own kernels (Sleef's 1-ulp functions) match
// up to one ulp. Tests bound the remaining difference from that one ulp.
#pragma once

#include <cmath>
#include <cstdint>
#include <vector>

namespace chatterbox::f32 {

// Forces a rounding to float (no extended precision, no contraction).
inline float round(double x) { return static_cast<float>(x); }

inline float cos(float x) { return round(std::cos(static_cast<double>(x))); }
inline float exp(float x) { return round(std::exp(static_cast<double>(x))); }
inline float pow(float base, float e) { return round(std::pow(static_cast<double>(base), static_cast<double>(e))); }

// torch.linspace(start, end, steps, dtype=float32) as ATen 1.13's CPU kernel
// computes it: start and end rounded to float, step = (end - start) /
// (steps - 1) in float; the first half counts up from start, the second
// down from end. The kernel's vectorised loop (whole pairs of 8-lane
// vectors, as on the default and AVX2 capabilities, which the reference
// fixtures were made with) computes a vector's base value that way and its
// lanes as base + lane * step: other roundings than the scalar tail's
// start + i * step, so both are reproduced.
inline std::vector<float> linspace(double start_d, double end_d, int64_t steps) {
  std::vector<float> out(steps > 0 ? steps : 0);
  if (steps <= 0) return out;
  const float start = round(start_d), end = round(end_d);
  if (steps == 1) {
    out[0] = start;
    return out;
  }
  const float step = (end - start) / static_cast<float>(steps - 1);
  const int64_t halfway = steps / 2;
  auto scalar = [&](int64_t i) -> float {
    if (i < halfway) {
      const float d = step * static_cast<float>(i);
      return start + d;
    }
    const float d = step * static_cast<float>(steps - i - 1);
    return end - d;
  };
  constexpr int64_t kLanes = 8;
  int64_t i = 0;
  for (; i + 2 * kLanes <= steps; i += 2 * kLanes)  // two vectors per iteration
    for (int64_t v = i; v < i + 2 * kLanes; v += kLanes) {
      const float base = scalar(v);
      for (int64_t lane = 0; lane < kLanes; ++lane) {
        const float d = static_cast<float>(lane) * step;
        out[v + lane] = base + d;
      }
    }
  for (; i < steps; ++i) out[i] = scalar(i);
  return out;
}

// torch.hann_window(length, periodic, dtype=float32): hamming_window with
// alpha = beta = 0.5 over length (+1 when periodic, last point dropped):
// w[n] = 0.5 - 0.5 cos(n * (2 pi / (N - 1))) with each step in float.
inline std::vector<float> hann_window(int64_t length, bool periodic = true) {
  std::vector<float> w(length > 0 ? length : 0);
  if (length <= 0) return w;
  if (length == 1) {
    w[0] = 1.f;
    return w;
  }
  const int64_t n = periodic ? length + 1 : length;
  const float scale = round(M_PI * 2.0 / static_cast<double>(n - 1));
  for (int64_t i = 0; i < length; ++i) {
    const float c = cos(static_cast<float>(i) * scale);
    const float m = c * -0.5f;
    w[i] = m + 0.5f;
  }
  return w;
}

}  // namespace chatterbox::f32
