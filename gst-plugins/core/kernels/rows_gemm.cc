// y = x W^T for a handful of rows x (decode steps: the CFG pair), reading the
// weight matrix once. Decoding one token is bound by memory bandwidth (every
// weight is read once per token); a BLAS sgemm with M = 2 packs W first and
// per-row gemv reads W twice, both measured 1.7-3x slower here.
#include "gst-plugins/core/kernels/rows_gemm.h"

#include "gst-plugins/core/compute_threads.h"
#include "gst-plugins/core/kernels/cpu_path.h"
#include "gst-plugins/core/kernels/kernel_pool.h"

#include <ATen/ATen.h>

#include <algorithm>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define ROWS_HAVE_X86 1
#endif

namespace chatterbox::kernels {

namespace {

// Scalar loop for the odd column a 2-column kernel leaves.
void rows_scalar(const float* W, const float* x, float* y, int64_t M, int64_t N, int64_t K, int64_t n0, int64_t n1) {
  for (int64_t n = n0; n < n1; ++n) {
    const float* w = W + n * K;
    for (int64_t m = 0; m < M; ++m) {
      const float* xm = x + m * K;
      float acc = 0.f;
      for (int64_t k = 0; k < K; ++k) acc += w[k] * xm[k];
      y[m * N + n] = acc;
    }
  }
}

#ifdef ROWS_HAVE_X86
__attribute__((target("avx2,fma"))) inline float hsum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
  return _mm_cvtss_f32(s);
}

// M rows of x (M <= 4) against 2 rows of W per iteration: each W element is
// loaded once and used M times.
template <int M>
__attribute__((target("avx2,fma"))) void rows_avx2(const float* W, const float* x, float* y, int64_t N, int64_t K,
                                                  int64_t n0, int64_t n1) {
  const int64_t K8 = K & ~int64_t(7);
  int64_t n = n0;
  for (; n + 2 <= n1; n += 2) {
    const float* w0 = W + n * K;
    const float* w1 = w0 + K;
    __m256 a0[M], a1[M];
    for (int m = 0; m < M; ++m) a0[m] = a1[m] = _mm256_setzero_ps();
    for (int64_t k = 0; k < K8; k += 8) {
      __m256 v0 = _mm256_loadu_ps(w0 + k), v1 = _mm256_loadu_ps(w1 + k);
      for (int m = 0; m < M; ++m) {
        __m256 xv = _mm256_loadu_ps(x + m * K + k);
        a0[m] = _mm256_fmadd_ps(v0, xv, a0[m]);
        a1[m] = _mm256_fmadd_ps(v1, xv, a1[m]);
      }
    }
    for (int m = 0; m < M; ++m) {
      float s0 = hsum(a0[m]), s1 = hsum(a1[m]);
      for (int64_t k = K8; k < K; ++k) s0 += w0[k] * x[m * K + k], s1 += w1[k] * x[m * K + k];
      y[m * N + n] = s0;
      y[m * N + n + 1] = s1;
    }
  }
  if (n < n1) rows_scalar(W, x, y, M, N, K, n, n1);
}

#endif

}  // namespace

bool rows_kernel_available(int64_t M) {
#ifdef ROWS_HAVE_X86
  return M >= 1 && M <= 4 && cpu_path_at_least(CpuPath::Avx2);
#else
  (void)M;
  return false;
#endif
}

at::Tensor rows_matmul_t(const at::Tensor& x_in, const at::Tensor& W) {
  const int64_t K = W.size(1), N = W.size(0);
  const int64_t M = x_in.numel() / K;
  if (!rows_kernel_available(M) || !W.is_contiguous() || W.scalar_type() != at::kFloat || !W.device().is_cpu() ||
      x_in.scalar_type() != at::kFloat)
    return at::linear(x_in, W);
  at::Tensor x = x_in.contiguous();
  std::vector<int64_t> out_shape = x.sizes().vec();
  out_shape.back() = N;
  at::Tensor y = at::empty(out_shape, x.options());
  const float* wp = W.data_ptr<float>();
  const float* xp = x.data_ptr<float>();
  float* yp = y.data_ptr<float>();
  // Threads: the compute_threads() setting, in our kernel pool (no OpenMP:
  // compute_threads.h), in even column ranges, for products of at least
  // 1M multiply-adds (~4 MB of weights read: worth waking a worker).
  const int parts = N * K >= (int64_t{1} << 20) ? compute_threads() : 1;
  run_parallel(parts, (N + 1) / 2, [&](int64_t u0, int64_t u1) {
    const int64_t n0 = 2 * u0, n1 = std::min(N, 2 * u1);
#ifdef ROWS_HAVE_X86
    switch (M) {
      case 1: return rows_avx2<1>(wp, xp, yp, N, K, n0, n1);
      case 2: return rows_avx2<2>(wp, xp, yp, N, K, n0, n1);
      case 3: return rows_avx2<3>(wp, xp, yp, N, K, n0, n1);
      default: return rows_avx2<4>(wp, xp, yp, N, K, n0, n1);
    }
#else
    rows_scalar(wp, xp, yp, M, N, K, n0, n1);
#endif
  });
  return y;
}

}  // namespace chatterbox::kernels
