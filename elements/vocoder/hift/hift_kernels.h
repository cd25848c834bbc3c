// Hand-written CPU kernels for HiFT's hot element-wise steps (internal).
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>

namespace chatterbox::hift::kernels {

// Snake(x) = x + inv[c] * sin(a[c] x)^2, inv = 1 / (a + 1e-9), for x [C, T]
// float32, written into dst [C, T] (a column range of a convolution's input
// buffer: rows may be strided, columns contiguous) in one pass.
void snake_into(const at::Tensor& x, at::Tensor dst, const at::Tensor& a, const at::Tensor& inv);

// ELU(x) = x > 0 ? x : expm1(x), float32 x [C, T] into dst [C, T] (rows may
// be strided), per element with the scalar libm (no vector/scalar split).
void elu_into(const at::Tensor& x, at::Tensor dst);

// conv_post's output [2K, m] (log-magnitudes, then phase logits) -> the
// spectrum [re(K); im(K)] with magnitude min(exp(x), 100) and phase sin(y),
// as HiFTGenerator._istft; plain per-element float math (no vector/scalar
// split), so a column's result does not depend on the chunk it is in.
at::Tensor istft_spec(const at::Tensor& post, int64_t K);

}  // namespace chatterbox::hift::kernels
