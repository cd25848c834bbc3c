// Linear layers for a few rows at a time on weights packed once at load
// (Vocos streaming).
//
// Streaming feeds the Vocos backbone ~10 frames per call, so every pointwise
// conv is a GEMM of 10 rows against a 512x1536 weight. OpenBLAS packs both
// operands on every call, and for so few rows packing the weight costs more
// than the multiply: perf put 53 % of streamed Vocos time in sgemm_incopy.
// Here the weight is packed once, at load, into 16-column panels, and a small
// kernel multiplies straight from them. Whole utterances keep using BLAS
// (many rows amortise its packing).
//
// The AVX-512 and AVX2 bodies sum every output in the same order (k in
// blocks of 64 terms, one FMA per term, each block then added to the
// output), so they give identical bits; the generic path (cpu_path.h) has no
// packed kernel and callers use BLAS.
#pragma once

#include "gst-plugins/core/kernels/cpu_path.h"

#include <ATen/core/Tensor.h>

#include <cstdint>

namespace chatterbox::kernels {

struct PackedLinear {
  at::Tensor panels;  // [ceil(N / 16), K, 16] float32: panel p holds output columns 16p..16p+15, zero-padded
  int64_t n = 0;      // output features
  int64_t k = 0;      // input features
  bool defined() const { return panels.defined(); }
};

// weight [N, K] (torch Linear layout) -> panels; CPU float32.
PackedLinear pack_linear(const at::Tensor& weight);

// True when cpu_path() runs a packed kernel (AVX2 or AVX-512); otherwise
// callers stay on BLAS.
bool packed_gemm_available();

// out[m, n] += sum_k x[m, k] * W[n, k] for m < M: the caller puts the bias
// (and any residual) in `out` first. x: [M, K] with row stride ldx; out:
// [M, N] with row stride ldo; both float32 CPU.
void packed_gemm_accumulate(const PackedLinear& w, const float* x, int64_t ldx, int64_t M, float* out, int64_t ldo);

// The same on a given body (Avx2 or Avx512, at most detected_cpu_path()):
// for tests that compare the bodies with each other.
void packed_gemm_accumulate_on(CpuPath path, const PackedLinear& w, const float* x, int64_t ldx, int64_t M, float* out,
                               int64_t ldo);

}  // namespace chatterbox::kernels
