// Comparison helpers for parity tests against float64/float32 references.
#pragma once

#include <ATen/ATen.h>

#include <string>

namespace chatterbox::test {

inline double max_abs_diff(const at::Tensor& a, const at::Tensor& b) {
  return (a.to(at::kDouble) - b.to(at::kDouble)).abs().max().item<double>();
}

// ||a - b|| / ||b||
inline double rel_l2(const at::Tensor& got, const at::Tensor& expected) {
  at::Tensor e = expected.to(at::kDouble);
  return (got.to(at::kDouble) - e).norm().item<double>() / e.norm().item<double>();
}

// Higham's worst-case bound for a float32 sum of n terms in any order:
// |fl(sum) - sum| <= gamma_n * sum |terms|, gamma_n = n u / (1 - n u),
// u = 2^-24. It holds whatever the summation order (BLAS kernel, SIMD width,
// blocking), so a check against it does not depend on the CPU.
inline double gamma_f32(int64_t n) {
  const double nu = static_cast<double>(n) * 0x1p-24;
  return nu / (1.0 - nu);
}

// For y = b + x W^T computed in float32 (x [M, K], W [N, K], b [N] or
// undefined): the largest ratio of the actual error of `got` (against the
// float64 product) to the worst-case bound gamma_{K+1} * (|b| + |x| |W|^T),
// element by element. <= 1 for any correct float32 evaluation; a wrong index
// or a lost term shows as a ratio far above 1.
// extra_roundings: further roundings of each output (e.g. a per-row scale
// multiply after the sum), counted as terms.
inline double gemm_error_ratio(const at::Tensor& got, const at::Tensor& x, const at::Tensor& W,
                               const at::Tensor& b = at::Tensor(), int64_t extra_roundings = 0) {
  at::Tensor xd = x.to(at::kDouble).reshape({-1, x.size(-1)}), Wd = W.to(at::kDouble);
  at::Tensor ref = at::matmul(xd, Wd.t()), mag = at::matmul(xd.abs(), Wd.abs().t());
  if (b.defined()) {
    ref = ref + b.to(at::kDouble);
    mag = mag + b.to(at::kDouble).abs();
  }
  const int64_t terms = W.size(1) + (b.defined() ? 1 : 0) + extra_roundings;
  at::Tensor err = (got.to(at::kDouble).reshape(ref.sizes()) - ref).abs();
  // + the smallest normal so exact zeros (K = 0 terms) do not divide by 0
  return (err / (gamma_f32(terms) * mag + 1e-300)).max().item<double>();
}

}  // namespace chatterbox::test
