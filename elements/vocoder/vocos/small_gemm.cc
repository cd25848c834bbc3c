#include "elements/vocoder/vocos/small_gemm.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <cstdlib>

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define VOCOS_HAVE_AVX512_PATH 1
#endif

namespace chatterbox::vocos {

namespace {
constexpr int64_t kLanes = 16;  // output columns per panel (one zmm register)
constexpr int kMaxRows = 12;    // rows per pass: 12 x 2 accumulators + 2 weight registers of 32
constexpr int64_t kKBlock = 64;  // terms per partial sum (see block())

#ifdef VOCOS_HAVE_AVX512_PATH
#define VOCOS_AVX512 __attribute__((target("avx512f")))

VOCOS_AVX512 inline __mmask16 column_mask(int64_t remaining) {
  return remaining >= kLanes ? static_cast<__mmask16>(0xffff) : static_cast<__mmask16>((1u << remaining) - 1u);
}

// MR rows x NP panels (NP * 16 columns starting at column c0). The sum over
// k runs in blocks of kKBlock terms, each block summed from zero and then
// added to the output: a float32 sum of 1536 terms in one running
// accumulator drifts ~10x further from the exact value than BLAS's blocked
// sums (streamed output 6e-6 rel-L2 from whole instead of 3e-7).
template <int MR, int NP>
VOCOS_AVX512 void block(const float* wp, int64_t K, const float* x, int64_t ldx, float* out, int64_t ldo, int64_t c0,
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

template <int MR>
VOCOS_AVX512 void rows(const PackedLinear& w, const float* x, int64_t ldx, float* out, int64_t ldo) {
  const float* wp = w.panels.data_ptr<float>();
  const int64_t panels = w.panels.size(0), panel = w.k * kLanes;
  int64_t p = 0;
  for (; p + 2 <= panels; p += 2) block<MR, 2>(wp + p * panel, w.k, x, ldx, out, ldo, p * kLanes, w.n);
  if (p < panels) block<MR, 1>(wp + p * panel, w.k, x, ldx, out, ldo, p * kLanes, w.n);
}

using RowsFn = void (*)(const PackedLinear&, const float*, int64_t, float*, int64_t);
constexpr RowsFn kRows[kMaxRows + 1] = {nullptr,  rows<1>,  rows<2>, rows<3>, rows<4>,  rows<5>, rows<6>,
                                        rows<7>,  rows<8>,  rows<9>, rows<10>, rows<11>, rows<12>};
#endif

bool cpu_has_avx512() {
#ifdef VOCOS_HAVE_AVX512_PATH
  static const bool has = [] {
    if (const char* e = std::getenv("CHATTERBOX_VOCOS_BLAS_ONLY"); e && e[0] == '1') return false;
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f") != 0;
  }();
  return has;
#else
  return false;
#endif
}

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

bool small_gemm_available() { return cpu_has_avx512(); }

void small_gemm_accumulate(const PackedLinear& w, const float* x, int64_t ldx, int64_t M, float* out, int64_t ldo) {
  TORCH_CHECK(w.defined() && small_gemm_available(), "small_gemm_accumulate: no packed kernel on this CPU");
#ifdef VOCOS_HAVE_AVX512_PATH
  for (int64_t m = 0; m < M; m += kMaxRows) {
    const int64_t r = std::min<int64_t>(kMaxRows, M - m);
    kRows[r](w, x + m * ldx, ldx, out + m * ldo, ldo);
  }
#else
  (void)x, (void)ldx, (void)M, (void)out, (void)ldo;
#endif
}

}  // namespace chatterbox::vocos
