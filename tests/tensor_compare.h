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

}  // namespace chatterbox::test
