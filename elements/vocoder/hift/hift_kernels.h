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

// A stride-1 Conv1d's weight [Cout, Cin, k] and bias, packed for conv_into:
// [ceil(Cout / 8)][Cin][k][8] (output channels innermost, zero rows to a
// multiple of 8).
struct PackedConv {
  at::Tensor w, bias;
  int64_t cout = 0, cin = 0;
  int k = 1;
};
PackedConv pack_conv(const at::Tensor& weight, const at::Tensor& bias);

// Whether conv_into can run here (an AVX-512 CPU, and
// CHATTERBOX_HIFT_BLAS_CONV=1 not set); callers fall back to BLAS otherwise.
bool packed_conv_available();

// out[co, t] = (init ? init[co, t] : bias[co]) + sum over ci, then j, of
// W[co, ci, j] x[ci, t + j dil], for t < n = out.size(1). Each element is
// summed in that fixed order, so results do not depend on n or on where the
// column sits. x: [Cin, >= n + (k - 1) dil], init and out: [Cout, n] (rows
// may be strided, columns contiguous; init may be out itself).
void conv_into(const PackedConv& p, int64_t dil, const at::Tensor& x, const at::Tensor& init, const at::Tensor& out);

}  // namespace chatterbox::hift::kernels
