#include "gst-plugins/core/kernels/packed_gemm.h"

#include "gst-plugins/core/compute_threads.h"
#include "gst-plugins/core/kernels/cpu_path.h"
#include "gst-plugins/core/kernels/kernel_pool.h"

#include <ATen/ATen.h>

#include <algorithm>

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define PACKED_GEMM_X86 1
#endif

namespace chatterbox::kernels {

namespace {
constexpr int64_t kLanes = 16;   // output columns per panel
constexpr int64_t kKBlock = 64;  // terms per partial sum (see below)

// Why blocks of 64 terms: a float32 sum of 1536 terms in one running
// accumulator drifts ~10x further from the exact value than BLAS's blocked
// sums (streamed output 6e-6 rel-L2 from whole instead of 3e-7).

#ifdef PACKED_GEMM_X86
// ---- AVX-512: one zmm per panel, up to 12 rows x 2 panels per pass ----------
#define PG_AVX512 __attribute__((target("avx512f")))
constexpr int kMaxRows512 = 12;  // 12 x 2 accumulators + 2 weight registers of 32

PG_AVX512 inline __mmask16 column_mask(int64_t remaining) {
  return remaining >= kLanes ? static_cast<__mmask16>(0xffff) : static_cast<__mmask16>((1u << remaining) - 1u);
}

template <int MR, int NP>
PG_AVX512 void block512(const float* wp, int64_t K, const float* x, int64_t ldx, float* out, int64_t ldo, int64_t c0,
                        int64_t N) {
  __mmask16 mask[NP];
  for (int p = 0; p < NP; ++p) mask[p] = column_mask(N - c0 - p * kLanes);
  const int64_t panel = K * kLanes;
  for (int64_t k0 = 0; k0 < K; k0 += kKBlock) {
    const int64_t k1 = std::min(K, k0 + kKBlock);
    __m512 acc[MR][NP];
    for (int r = 0; r < MR; ++r)
      for (int p = 0; p < NP; ++p) acc[r][p] = _mm512_setzero_ps();
    for (int64_t k = k0; k < k1; ++k) {
      __m512 w[NP];
      for (int p = 0; p < NP; ++p) w[p] = _mm512_loadu_ps(wp + p * panel + k * kLanes);
      for (int r = 0; r < MR; ++r) {
        const __m512 xv = _mm512_set1_ps(x[r * ldx + k]);
        for (int p = 0; p < NP; ++p) acc[r][p] = _mm512_fmadd_ps(w[p], xv, acc[r][p]);
      }
    }
    for (int r = 0; r < MR; ++r)
      for (int p = 0; p < NP; ++p) {
        float* o = out + r * ldo + c0 + p * kLanes;
        _mm512_mask_storeu_ps(o, mask[p], _mm512_add_ps(_mm512_maskz_loadu_ps(mask[p], o), acc[r][p]));
      }
  }
}

// Panels [p0, p1) of MR rows.
template <int MR>
PG_AVX512 void rows512(const PackedLinear& w, const float* x, int64_t ldx, float* out, int64_t ldo, int64_t p0,
                       int64_t p1) {
  const float* wp = w.panels.data_ptr<float>();
  const int64_t panel = w.k * kLanes;
  int64_t p = p0;
  for (; p + 2 <= p1; p += 2) block512<MR, 2>(wp + p * panel, w.k, x, ldx, out, ldo, p * kLanes, w.n);
  if (p < p1) block512<MR, 1>(wp + p * panel, w.k, x, ldx, out, ldo, p * kLanes, w.n);
}

// ---- AVX2: a panel as two ymm, up to 6 rows per pass ------------------------
#define PG_AVX2 __attribute__((target("avx2,fma")))
constexpr int kMaxRows256 = 6;  // 6 x 2 accumulators + 2 weight registers + 1 broadcast of 16

template <int MR>
PG_AVX2 void panel256(const float* wp, int64_t K, const float* x, int64_t ldx, float* out, int64_t ldo, int64_t c0,
                      int64_t N) {
  const int64_t cols = std::min<int64_t>(kLanes, N - c0);
  for (int64_t k0 = 0; k0 < K; k0 += kKBlock) {
    const int64_t k1 = std::min(K, k0 + kKBlock);
    __m256 lo[MR], hi[MR];
    for (int r = 0; r < MR; ++r) lo[r] = hi[r] = _mm256_setzero_ps();
    for (int64_t k = k0; k < k1; ++k) {
      const __m256 wl = _mm256_loadu_ps(wp + k * kLanes), wh = _mm256_loadu_ps(wp + k * kLanes + 8);
      for (int r = 0; r < MR; ++r) {
        const __m256 xv = _mm256_broadcast_ss(x + r * ldx + k);
        lo[r] = _mm256_fmadd_ps(wl, xv, lo[r]);
        hi[r] = _mm256_fmadd_ps(wh, xv, hi[r]);
      }
    }
    for (int r = 0; r < MR; ++r) {
      float* o = out + r * ldo + c0;
      if (cols == kLanes) {
        _mm256_storeu_ps(o, _mm256_add_ps(_mm256_loadu_ps(o), lo[r]));
        _mm256_storeu_ps(o + 8, _mm256_add_ps(_mm256_loadu_ps(o + 8), hi[r]));
      } else {  // last, partial panel: the zero-padded columns are not stored
        alignas(32) float tmp[kLanes];
        _mm256_store_ps(tmp, lo[r]);
        _mm256_store_ps(tmp + 8, hi[r]);
        for (int64_t c = 0; c < cols; ++c) o[c] += tmp[c];
      }
    }
  }
}

template <int MR>
PG_AVX2 void rows256(const PackedLinear& w, const float* x, int64_t ldx, float* out, int64_t ldo, int64_t p0,
                     int64_t p1) {
  const float* wp = w.panels.data_ptr<float>();
  const int64_t panel = w.k * kLanes;
  for (int64_t p = p0; p < p1; ++p) panel256<MR>(wp + p * panel, w.k, x, ldx, out, ldo, p * kLanes, w.n);
}

using RowsFn = void (*)(const PackedLinear&, const float*, int64_t, float*, int64_t, int64_t, int64_t);
constexpr RowsFn kRows512[kMaxRows512 + 1] = {nullptr,    rows512<1>,  rows512<2>,  rows512<3>, rows512<4>,
                                              rows512<5>, rows512<6>,  rows512<7>,  rows512<8>, rows512<9>,
                                              rows512<10>, rows512<11>, rows512<12>};
constexpr RowsFn kRows256[kMaxRows256 + 1] = {nullptr,    rows256<1>, rows256<2>, rows256<3>,
                                              rows256<4>, rows256<5>, rows256<6>};
#endif

}  // namespace

PackedLinear pack_linear(const at::Tensor& weight) {
  TORCH_CHECK(weight.dim() == 2, "pack_linear: expected a [N, K] weight");
  PackedLinear w;
  w.n = weight.size(0);
  w.k = weight.size(1);
  const int64_t panels = (w.n + kLanes - 1) / kLanes;
  // Filled in place: temporaries of this size would stay in the heap after
  // loading (tens of MB of resident memory for a full-size model).
  w.panels = at::zeros({panels, w.k, kLanes}, at::kFloat);
  at::Tensor src = weight.to(at::kCPU, at::kFloat).contiguous();
  const float* s = src.data_ptr<float>();
  float* d = w.panels.data_ptr<float>();
  for (int64_t n = 0; n < w.n; ++n)
    for (int64_t k = 0; k < w.k; ++k) d[((n / kLanes) * w.k + k) * kLanes + n % kLanes] = s[n * w.k + k];
  return w;
}

bool packed_gemm_available() {
#ifdef PACKED_GEMM_X86
  return cpu_path_at_least(CpuPath::Avx2);
#else
  return false;
#endif
}

void packed_gemm_accumulate(const PackedLinear& w, const float* x, int64_t ldx, int64_t M, float* out, int64_t ldo) {
  TORCH_CHECK(packed_gemm_available(), "packed_gemm_accumulate: no packed kernel on this CPU path");
  packed_gemm_accumulate_on(cpu_path(), w, x, ldx, M, out, ldo);
}

void packed_gemm_accumulate_on(CpuPath path, const PackedLinear& w, const float* x, int64_t ldx, int64_t M, float* out,
                               int64_t ldo) {
  TORCH_CHECK(w.defined() && path != CpuPath::Generic &&
                  static_cast<int>(path) <= static_cast<int>(detected_cpu_path()),
              "packed_gemm_accumulate: no packed kernel for path ", cpu_path_name(path), " on this CPU");
#ifdef PACKED_GEMM_X86
  const bool wide = path >= CpuPath::Avx512;
  const int64_t step = wide ? kMaxRows512 : kMaxRows256;
  // Threads (the compute_threads() setting) split the output panels when the
  // product is worth waking a worker (~4M multiply-adds, ~0.3 ms); an
  // output's sum does not depend on the split.
  const int64_t panels = w.panels.size(0);
  const int parts = M * w.n * w.k >= (int64_t{1} << 22) ? compute_threads() : 1;
  // An even panel count per part keeps the AVX-512 body's pairs of panels.
  const int64_t units = (panels + 1) / 2;
  run_parallel(parts, units, [&](int64_t u0, int64_t u1) {
    const int64_t p0 = 2 * u0, p1 = std::min(panels, 2 * u1);
    for (int64_t m = 0; m < M; m += step) {
      const int64_t r = std::min<int64_t>(step, M - m);
      (wide ? kRows512 : kRows256)[r](w, x + m * ldx, ldx, out + m * ldo, ldo, p0, p1);
    }
  });
#else
  (void)x, (void)ldx, (void)M, (void)out, (void)ldo;
#endif
}

}  // namespace chatterbox::kernels
