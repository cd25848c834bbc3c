// Linear layers for a few frames at a time (Vocos streaming).
//
// Streaming feeds the backbone ~10 frames per call, so every pointwise conv
// is a GEMM of 10 rows against a 512x1536 weight. OpenBLAS packs both
// operands on every call, and for so few rows packing the weight costs more
// than the multiply: perf put 53 % of streamed Vocos time in sgemm_incopy.
// Here the weight is packed once, at load, into 16-column panels, and a small
// AVX-512 kernel multiplies straight from them. Whole utterances keep using
// BLAS (many rows amortise its packing).
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>

namespace chatterbox::vocos {

struct PackedLinear {
  at::Tensor panels;  // [ceil(N / 16), K, 16] float32: panel p holds output columns 16p..16p+15, zero-padded
  int64_t n = 0;      // output features
  int64_t k = 0;      // input features
  bool defined() const { return panels.defined(); }
};

// weight [N, K] (torch Linear layout) -> panels; CPU float32.
PackedLinear pack_linear(const at::Tensor& weight);

// True when this CPU runs the packed kernel (AVX-512F); otherwise callers
// stay on BLAS. CHATTERBOX_VOCOS_BLAS_ONLY=1 forces BLAS (tests compare both).
bool small_gemm_available();

// out[m, n] += sum_k x[m, k] * W[n, k] for m < M: the caller puts the bias
// (and any residual) in `out` first. x: [M, K] with row stride ldx; out:
// [M, N] with row stride ldo; both float32 CPU. Each output's sum runs over k
// in order in blocks of 64 terms, each block added to `out` (small_gemm.cc).
void small_gemm_accumulate(const PackedLinear& w, const float* x, int64_t ldx, int64_t M, float* out, int64_t ldo);

}  // namespace chatterbox::vocos
