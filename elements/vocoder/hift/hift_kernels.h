// Hand-written CPU kernels for HiFT's hot element-wise steps (internal).
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>

namespace chatterbox::hift::kernels {

// Snake(x) = x + inv[c] * sin(a[c] x)^2, inv = 1 / (a + 1e-9), for x [1, C, T]
// (contiguous float32), written into a new [1, C, T + 2 pad] tensor whose
// `pad` columns on each side are zero: the input of the next convolution,
// with its zero padding, in one pass.
at::Tensor snake_padded(const at::Tensor& x, const at::Tensor& a, const at::Tensor& inv, int64_t pad);

}  // namespace chatterbox::hift::kernels
