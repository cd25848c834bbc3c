// Hand-written CPU kernels for HiFT's hot element-wise steps (internal).
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>

namespace chatterbox::hift::kernels {

// Snake(x) = x + inv[c] * sin(a[c] x)^2, inv = 1 / (a + 1e-9), for x [C, T]
// float32, written into dst [C, T] (a column range of a convolution's input
// buffer: rows may be strided, columns contiguous) in one pass.
void snake_into(const at::Tensor& x, at::Tensor dst, const at::Tensor& a, const at::Tensor& inv);

}  // namespace chatterbox::hift::kernels
