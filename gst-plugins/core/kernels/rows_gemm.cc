// Decode-step GEMMs: M <= 4 rows of x against all N rows of W, each weight
// loaded once and used M times, two output rows per step. Decoding one token
// is bound by memory bandwidth (every weight is read once per token); a BLAS
// sgemm with M = 2 packs W first and per-row gemv reads W twice, both
// measured 1.7-3x slower here. Quantised weights are widened to float in
// registers (int8: sign-extend and convert, then one multiply by the row's
// scale at the end; bf16: a 16-bit shift), so only their bytes cross the
// memory bus.
#include "gst-plugins/core/kernels/rows_gemm.h"

#include "gst-plugins/core/checkpoint.h"  // ModelError
#include "gst-plugins/core/compute_threads.h"
#include "gst-plugins/core/kernels/kernel_pool.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <cmath>
#include <cstring>

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define ROWS_HAVE_X86 1
#endif

namespace chatterbox::kernels {

namespace {

// One weight element as float, for the scalar tails and the generic path.
inline float widen(float w) { return w; }
inline float widen(int8_t w) { return static_cast<float>(w); }
inline float widen(uint16_t w) {
  const uint32_t bits = static_cast<uint32_t>(w) << 16;
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

// Columns [n0, n1) of M rows, plain C++ (any CPU).
template <typename T>
void rows_scalar(const T* W, const float* scale, const float* x, float* y, int M, int64_t N, int64_t K, int64_t n0,
                 int64_t n1) {
  for (int64_t n = n0; n < n1; ++n) {
    const T* w = W + n * K;
    for (int m = 0; m < M; ++m) {
      const float* xm = x + m * K;
      float acc = 0.f;
      for (int64_t k = 0; k < K; ++k) acc += widen(w[k]) * xm[k];
      y[m * N + n] = scale ? acc * scale[n] : acc;
    }
  }
}

#ifdef ROWS_HAVE_X86
#define ROWS_AVX2 __attribute__((target("avx2,fma")))
#define ROWS_AVX512 __attribute__((target("avx512f,avx512bw,avx512vl,fma")))
#define ROWS_VNNI __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,fma")))

ROWS_AVX2 inline float hsum256(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
  return _mm_cvtss_f32(s);
}

// 8 weights from w as float (AVX2).
ROWS_AVX2 inline __m256 load8(const float* w) { return _mm256_loadu_ps(w); }
ROWS_AVX2 inline __m256 load8(const int8_t* w) {
  return _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(w))));
}
ROWS_AVX2 inline __m256 load8(const uint16_t* w) {
  return _mm256_castsi256_ps(
      _mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(w))), 16));
}

// 16 weights from w as float (AVX-512).
ROWS_AVX512 inline __m512 load16(const float* w) { return _mm512_loadu_ps(w); }
ROWS_AVX512 inline __m512 load16(const int8_t* w) {
  return _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(w))));
}
ROWS_AVX512 inline __m512 load16(const uint16_t* w) {
  return _mm512_castsi512_ps(
      _mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(w))), 16));
}

template <int M, typename T>
ROWS_AVX2 void rows_avx2(const T* W, const float* scale, const float* x, float* y, int64_t N, int64_t K, int64_t n0,
                         int64_t n1) {
  // Two chain sets need 4M + 4 + 2 ymm registers: only up to 2 rows fit in 16.
  const int64_t K16 = M <= 2 ? K & ~int64_t(15) : 0, K8 = K & ~int64_t(7);
  int64_t n = n0;
  for (; n + 2 <= n1; n += 2) {
    const T* w0 = W + n * K;
    const T* w1 = w0 + K;
    __m256 a0[M], a1[M], b0[M], b1[M];  // two sets of chains, as rows_avx512
    for (int m = 0; m < M; ++m) a0[m] = a1[m] = b0[m] = b1[m] = _mm256_setzero_ps();
    int64_t k = 0;
    for (; k < K16; k += 16) {
      const __m256 v0 = load8(w0 + k), v1 = load8(w1 + k), u0 = load8(w0 + k + 8), u1 = load8(w1 + k + 8);
      for (int m = 0; m < M; ++m) {
        const __m256 xv = _mm256_loadu_ps(x + m * K + k), xu = _mm256_loadu_ps(x + m * K + k + 8);
        a0[m] = _mm256_fmadd_ps(v0, xv, a0[m]);
        a1[m] = _mm256_fmadd_ps(v1, xv, a1[m]);
        b0[m] = _mm256_fmadd_ps(u0, xu, b0[m]);
        b1[m] = _mm256_fmadd_ps(u1, xu, b1[m]);
      }
    }
    for (; k < K8; k += 8) {
      const __m256 v0 = load8(w0 + k), v1 = load8(w1 + k);
      for (int m = 0; m < M; ++m) {
        const __m256 xv = _mm256_loadu_ps(x + m * K + k);
        a0[m] = _mm256_fmadd_ps(v0, xv, a0[m]);
        a1[m] = _mm256_fmadd_ps(v1, xv, a1[m]);
      }
    }
    for (int m = 0; m < M; ++m) {
      a0[m] = _mm256_add_ps(a0[m], b0[m]);
      a1[m] = _mm256_add_ps(a1[m], b1[m]);
      float s0 = hsum256(a0[m]), s1 = hsum256(a1[m]);
      for (int64_t k = K8; k < K; ++k) s0 += widen(w0[k]) * x[m * K + k], s1 += widen(w1[k]) * x[m * K + k];
      y[m * N + n] = scale ? s0 * scale[n] : s0;
      y[m * N + n + 1] = scale ? s1 * scale[n + 1] : s1;
    }
  }
  if (n < n1) rows_scalar(W, scale, x, y, M, N, K, n, n1);
}

// Two accumulator sets (even and odd 16-column steps): twice the
// independent FMA chains, so one or two rows are not bound by the FMA
// latency (4 chains of 4 cycles each had left the loads waiting).
template <int M, typename T>
ROWS_AVX512 void rows_avx512(const T* W, const float* scale, const float* x, float* y, int64_t N, int64_t K,
                             int64_t n0, int64_t n1) {
  const int64_t K32 = K & ~int64_t(31), K16 = K & ~int64_t(15);
  int64_t n = n0;
  for (; n + 2 <= n1; n += 2) {
    const T* w0 = W + n * K;
    const T* w1 = w0 + K;
    __m512 a0[M], a1[M], b0[M], b1[M];
    for (int m = 0; m < M; ++m) a0[m] = a1[m] = b0[m] = b1[m] = _mm512_setzero_ps();
    int64_t k = 0;
    for (; k < K32; k += 32) {
      const __m512 v0 = load16(w0 + k), v1 = load16(w1 + k);
      const __m512 u0 = load16(w0 + k + 16), u1 = load16(w1 + k + 16);
      for (int m = 0; m < M; ++m) {
        const __m512 xv = _mm512_loadu_ps(x + m * K + k), xu = _mm512_loadu_ps(x + m * K + k + 16);
        a0[m] = _mm512_fmadd_ps(v0, xv, a0[m]);
        a1[m] = _mm512_fmadd_ps(v1, xv, a1[m]);
        b0[m] = _mm512_fmadd_ps(u0, xu, b0[m]);
        b1[m] = _mm512_fmadd_ps(u1, xu, b1[m]);
      }
    }
    for (; k < K16; k += 16) {
      const __m512 v0 = load16(w0 + k), v1 = load16(w1 + k);
      for (int m = 0; m < M; ++m) {
        const __m512 xv = _mm512_loadu_ps(x + m * K + k);
        a0[m] = _mm512_fmadd_ps(v0, xv, a0[m]);
        a1[m] = _mm512_fmadd_ps(v1, xv, a1[m]);
      }
    }
    for (int m = 0; m < M; ++m) {
      a0[m] = _mm512_add_ps(a0[m], b0[m]);
      a1[m] = _mm512_add_ps(a1[m], b1[m]);
      float s0 = _mm512_reduce_add_ps(a0[m]), s1 = _mm512_reduce_add_ps(a1[m]);
      for (int64_t k = K16; k < K; ++k) s0 += widen(w0[k]) * x[m * K + k], s1 += widen(w1[k]) * x[m * K + k];
      y[m * N + n] = scale ? s0 * scale[n] : s0;
      y[m * N + n + 1] = scale ? s1 * scale[n + 1] : s1;
    }
  }
  if (n < n1) rows_scalar(W, scale, x, y, M, N, K, n, n1);
}
// x rows rounded to 16 bits for the VNNI body: xq = round(x / s) in
// [-32767, 32767], stored offset by 32768 as two unsigned bytes (hi, lo), so
// that sum_k xq w = 256 dot(hi, w) + dot(lo, w) - 32768 rowsum(w). Rows are
// kp >= K bytes long (the packed weights' padded K; the pad's codes are 0).
struct X16 {
  std::vector<uint8_t> hi, lo;  // [M][kp]
  std::vector<double> scale;    // [M]
  int64_t kp = 0;
};
X16 split_rows(const float* x, int M, int64_t K, int64_t kp) {
  X16 q;
  q.kp = kp;
  q.hi.assign(M * kp, 0);
  q.lo.assign(M * kp, 0);
  q.scale.resize(M);
  for (int m = 0; m < M; ++m) {
    const float* xm = x + m * K;
    double amax = 0;
    for (int64_t k = 0; k < K; ++k) amax = std::max(amax, std::fabs(static_cast<double>(xm[k])));
    const double s = amax > 0 ? amax / 32767.0 : 1.0;
    q.scale[m] = s;
    for (int64_t k = 0; k < K; ++k) {
      const long v = std::lrint(xm[k] / s) + 32768;  // in [1, 65535]
      q.hi[m * kp + k] = static_cast<uint8_t>(v >> 8);
      q.lo[m * kp + k] = static_cast<uint8_t>(v & 255);
    }
  }
  return q;
}

// The interleaved layout (QuantizedWeight::packed) of row-major codes [N, K].
at::Tensor pack_vnni(const at::Tensor& codes) {
  const int64_t N = codes.size(0), K = codes.size(1), nb = (N + 15) / 16, k4 = (K + 3) / 4;
  at::Tensor padded = at::zeros({nb * 16, k4 * 4}, codes.options());
  padded.narrow(0, 0, N).narrow(1, 0, K).copy_(codes);
  return padded.view({nb, 16, k4, 4}).permute({0, 2, 1, 3}).contiguous();
}

at::Tensor unpack_vnni(const at::Tensor& packed, int64_t N, int64_t K) {
  const int64_t nb = packed.size(0), k4 = packed.size(1);
  return packed.permute({0, 2, 1, 3}).reshape({nb * 16, k4 * 4}).narrow(0, 0, N).narrow(1, 0, K).contiguous();
}

// Output rows of 16-row blocks [b0, b1), G blocks at a time: per 4 k, one
// broadcast of each x row's hi and lo bytes and one 64-byte weight load per
// block feed 2 M dot-product instructions, each summing 4 products into each
// of 16 lanes (one lane per output row). G blocks give 2 M G independent
// accumulation chains; G = 8 / M keeps them and the broadcasts in registers.
// The epilogue forms the exact sum in 64-bit integers, then
// double(sum) * x scale * row scale rounded once to float, per output.
// Rows m0 .. m0 + M - 1 of xq, into the same rows of y [rows, N].
template <int M, int G>
ROWS_VNNI void rows_vnni(const int8_t* P, const float* scale, const int32_t* rowsum, const X16& xq, int64_t m0,
                         float* y, int64_t N, int64_t b0, int64_t b1) {
  const int64_t K4 = xq.kp / 4;
  const uint8_t* hi = xq.hi.data() + m0 * xq.kp;
  const uint8_t* lo = xq.lo.data() + m0 * xq.kp;
  const double* xs = xq.scale.data() + m0;
  y += m0 * N;
  for (int64_t b = b0; b + G <= b1; b += G) {
    __m512i h[G][M], l[G][M];
    for (int g = 0; g < G; ++g)
      for (int m = 0; m < M; ++m) h[g][m] = l[g][m] = _mm512_setzero_si512();
    const int8_t* base = P + b * K4 * 64;
    for (int64_t k4 = 0; k4 < K4; ++k4) {
      __m512i xh[M], xl[M];
      for (int m = 0; m < M; ++m) {
        int32_t hv, lv;
        std::memcpy(&hv, hi + m * xq.kp + 4 * k4, 4);
        std::memcpy(&lv, lo + m * xq.kp + 4 * k4, 4);
        xh[m] = _mm512_set1_epi32(hv);
        xl[m] = _mm512_set1_epi32(lv);
      }
      for (int g = 0; g < G; ++g) {
        const __m512i v = _mm512_loadu_si512(base + (g * K4 + k4) * 64);
        for (int m = 0; m < M; ++m) {
          h[g][m] = _mm512_dpbusd_epi32(h[g][m], xh[m], v);
          l[g][m] = _mm512_dpbusd_epi32(l[g][m], xl[m], v);
        }
      }
    }
    for (int g = 0; g < G; ++g) {
      const int64_t n0 = (b + g) * 16;
      for (int half = 0; half < 2; ++half) {
        const int64_t n = n0 + 8 * half;
        if (n >= N) break;
        const int valid = static_cast<int>(std::min<int64_t>(8, N - n));
        const __mmask8 mask = static_cast<__mmask8>((1u << valid) - 1);
        const __m512i rs = _mm512_slli_epi64(
            _mm512_cvtepi32_epi64(_mm256_maskz_loadu_epi32(mask, rowsum + n)), 15);  // 32768 rowsum
        const __m512d ws = _mm512_cvtps_pd(_mm256_maskz_loadu_ps(mask, scale + n));
        for (int m = 0; m < M; ++m) {
          const __m256i hh = half ? _mm512_extracti64x4_epi64(h[g][m], 1) : _mm512_castsi512_si256(h[g][m]);
          const __m256i ll = half ? _mm512_extracti64x4_epi64(l[g][m], 1) : _mm512_castsi512_si256(l[g][m]);
          const __m512i d = _mm512_sub_epi64(
              _mm512_add_epi64(_mm512_slli_epi64(_mm512_cvtepi32_epi64(hh), 8), _mm512_cvtepi32_epi64(ll)), rs);
          const __m512d v = _mm512_mul_pd(_mm512_mul_pd(_mm512_cvtepi64_pd(d), _mm512_set1_pd(xs[m])), ws);
          _mm256_mask_storeu_ps(y + m * N + n, mask, _mm512_cvtpd_ps(v));
        }
      }
    }
  }
}

template <int M, int G>
void vnni_blocks(const int8_t* P, const float* scale, const int32_t* rowsum, const X16& xq, int64_t m0, float* y,
                 int64_t N, int64_t b0, int64_t b1) {
  const int64_t bg = b0 + (b1 - b0) / G * G;
  rows_vnni<M, G>(P, scale, rowsum, xq, m0, y, N, b0, bg);
  rows_vnni<M, 1>(P, scale, rowsum, xq, m0, y, N, bg, b1);
}

// Up to kVnniRows rows at once (more: prefill, in groups of that many).
constexpr int kVnniRows = 8;
void run_vnni(const int8_t* P, const float* scale, const int32_t* rowsum, const X16& xq, int64_t m0, int M, float* y,
              int64_t N, int64_t b0, int64_t b1) {
  switch (M) {
    case 1: return vnni_blocks<1, 8>(P, scale, rowsum, xq, m0, y, N, b0, b1);
    case 2: return vnni_blocks<2, 4>(P, scale, rowsum, xq, m0, y, N, b0, b1);
    case 3: return vnni_blocks<3, 2>(P, scale, rowsum, xq, m0, y, N, b0, b1);
    case 4: return vnni_blocks<4, 2>(P, scale, rowsum, xq, m0, y, N, b0, b1);
    case 5: return vnni_blocks<5, 1>(P, scale, rowsum, xq, m0, y, N, b0, b1);
    case 6: return vnni_blocks<6, 1>(P, scale, rowsum, xq, m0, y, N, b0, b1);
    case 7: return vnni_blocks<7, 1>(P, scale, rowsum, xq, m0, y, N, b0, b1);
    default: return vnni_blocks<8, 1>(P, scale, rowsum, xq, m0, y, N, b0, b1);
  }
}
#endif

template <typename T>
void run_rows(CpuPath path, const T* W, const float* scale, const float* x, float* y, int M, int64_t N, int64_t K,
              int64_t n0, int64_t n1) {
#ifdef ROWS_HAVE_X86
  if (path >= CpuPath::Avx512) {
    switch (M) {
      case 1: return rows_avx512<1>(W, scale, x, y, N, K, n0, n1);
      case 2: return rows_avx512<2>(W, scale, x, y, N, K, n0, n1);
      case 3: return rows_avx512<3>(W, scale, x, y, N, K, n0, n1);
      default: return rows_avx512<4>(W, scale, x, y, N, K, n0, n1);
    }
  }
  if (path == CpuPath::Avx2) {
    switch (M) {
      case 1: return rows_avx2<1>(W, scale, x, y, N, K, n0, n1);
      case 2: return rows_avx2<2>(W, scale, x, y, N, K, n0, n1);
      case 3: return rows_avx2<3>(W, scale, x, y, N, K, n0, n1);
      default: return rows_avx2<4>(W, scale, x, y, N, K, n0, n1);
    }
  }
#endif
  (void)path;
  rows_scalar(W, scale, x, y, M, N, K, n0, n1);
}

// The M <= 4 product on `path`, in the kernel pool (compute_threads()
// workers, no OpenMP: compute_threads.h) over even column ranges, for
// products of at least 1M multiply-adds (a few MB of weights: worth waking a
// worker). Each output's sum is the same whatever the split.
at::Tensor rows_product(CpuPath path, const at::Tensor& x_in, const QuantizedWeight& w) {
  const int64_t K = w.k, N = w.n;
  const int M = static_cast<int>(x_in.numel() / K);
  at::Tensor x = x_in.contiguous();
  std::vector<int64_t> out_shape = x.sizes().vec();
  out_shape.back() = N;
  at::Tensor y = at::empty(out_shape, x.options());
  const float* xp = x.data_ptr<float>();
  float* yp = y.data_ptr<float>();
  const float* sp = w.format == WeightFormat::Int8 ? w.scale.data_ptr<float>() : nullptr;
  const int parts = N * K >= (int64_t{1} << 20) ? compute_threads() : 1;
#ifdef ROWS_HAVE_X86
  if (w.format == WeightFormat::Int8 && path >= CpuPath::Avx512Vnni) {
    // A weight quantised on another path is packed for this call (tests).
    const at::Tensor packed = w.packed.defined() ? w.packed : pack_vnni(w.data);
    const X16 xq = split_rows(xp, M, K, packed.size(1) * 4);
    const int8_t* wp = packed.data_ptr<int8_t>();
    const int32_t* rs = w.rowsum.data_ptr<int32_t>();
    // Many rows (prefill): groups of kVnniRows, each reading the weights once.
    for (int m0 = 0; m0 < M; m0 += kVnniRows) {
      const int rows = std::min(kVnniRows, M - m0);
      run_parallel(parts, packed.size(0),
                   [&](int64_t b0, int64_t b1) { run_vnni(wp, sp, rs, xq, m0, rows, yp, N, b0, b1); });
    }
    return y;
  }
#endif
  // The other bodies read row-major codes (unpacked for this call if needed).
  const at::Tensor codes = w.format == WeightFormat::Int8 && !w.data.defined() ? w.codes() : w.data;
  run_parallel(parts, (N + 1) / 2, [&](int64_t u0, int64_t u1) {
    const int64_t n0 = 2 * u0, n1 = std::min(N, 2 * u1);
    switch (w.format) {
      case WeightFormat::F32: return run_rows(path, w.data.data_ptr<float>(), sp, xp, yp, M, N, K, n0, n1);
      case WeightFormat::Int8: return run_rows(path, codes.data_ptr<int8_t>(), sp, xp, yp, M, N, K, n0, n1);
      case WeightFormat::BF16:
        return run_rows(path, reinterpret_cast<const uint16_t*>(w.data.data_ptr<int16_t>()), sp, xp, yp, M, N, K, n0,
                        n1);
    }
  });
  return y;
}

}  // namespace

QuantizedWeight float_weight(const at::Tensor& W) {
  TORCH_CHECK(W.dim() == 2, "float_weight: expected a [N, K] weight");
  QuantizedWeight q;
  q.format = WeightFormat::F32;
  q.data = W.to(at::kCPU, at::kFloat).contiguous();
  q.n = W.size(0);
  q.k = W.size(1);
  return q;
}

WeightFormat parse_weight_format(const std::string& s) {
  if (s == "f32") return WeightFormat::F32;
  if (s == "bf16") return WeightFormat::BF16;
  if (s == "int8") return WeightFormat::Int8;
  throw ModelError("unknown weight precision '" + s + "' (use f32, bf16 or int8)");
}

const char* weight_format_name(WeightFormat f) {
  switch (f) {
    case WeightFormat::BF16: return "bf16";
    case WeightFormat::Int8: return "int8";
    default: return "f32";
  }
}

int64_t QuantizedWeight::bytes() const {
  return (data.defined() ? data.numel() * data.element_size() : 0) +
         (packed.defined() ? packed.numel() * packed.element_size() : 0) +
         (scale.defined() ? scale.numel() * scale.element_size() : 0) +
         (rowsum.defined() ? rowsum.numel() * rowsum.element_size() : 0);
}

QuantizedWeight quantize_weight(const at::Tensor& W_in, WeightFormat format) {
  TORCH_CHECK(W_in.dim() == 2, "quantize_weight: expected a [N, K] weight");
  at::Tensor W = W_in.to(at::kCPU, at::kFloat).contiguous();
  QuantizedWeight q;
  q.format = format;
  q.n = W.size(0);
  q.k = W.size(1);
  switch (format) {
    case WeightFormat::F32: q.data = W; break;
    case WeightFormat::BF16:
      // Round to nearest even: the conversion LibTorch itself does.
      q.data = W.to(at::kBFloat16).view(at::kShort).contiguous();
      break;
    case WeightFormat::Int8: {
      at::Tensor amax = W.abs().amax(1);
      at::Tensor scale = at::where(amax > 0, amax / 127.0, at::ones_like(amax));
      q.data = (W / scale.unsqueeze(1)).round().clamp(-127, 127).to(at::kChar).contiguous();
      q.scale = scale.contiguous();
      q.rowsum = q.data.to(at::kInt).sum(1).to(at::kInt).contiguous();
#ifdef ROWS_HAVE_X86
      if (cpu_path_at_least(CpuPath::Avx512Vnni)) {
        q.packed = pack_vnni(q.data);
        q.data = at::Tensor();
      }
#endif
      break;
    }
  }
  return q;
}

at::Tensor dequantize(const QuantizedWeight& w) {
  switch (w.format) {
    case WeightFormat::BF16: return w.data.view(at::kBFloat16).to(at::kFloat);
    case WeightFormat::Int8: return w.codes().to(at::kFloat) * w.scale.unsqueeze(1);
    default: return w.data;
  }
}

at::Tensor QuantizedWeight::codes() const {
#ifdef ROWS_HAVE_X86
  if (!data.defined() && packed.defined()) return unpack_vnni(packed, n, k);
#endif
  return data;
}

bool rows_kernel_available(int64_t M) { return M >= 1 && M <= 4 && cpu_path_at_least(CpuPath::Avx2); }

at::Tensor rows_matmul_t(const at::Tensor& x, const at::Tensor& W) {
  const int64_t M = x.numel() / W.size(1);
  if (!rows_kernel_available(M) || !W.is_contiguous() || W.scalar_type() != at::kFloat || !W.device().is_cpu() ||
      x.scalar_type() != at::kFloat)
    return at::linear(x, W);
  return rows_product(cpu_path(), x, float_weight(W));
}

at::Tensor rows_matmul_t(const at::Tensor& x, const QuantizedWeight& W) {
  if (W.format == WeightFormat::F32) return rows_matmul_t(x, W.data);
  const int64_t M = x.numel() / W.k;
  const bool cpu_float = x.scalar_type() == at::kFloat && x.device().is_cpu();
  // int8 on the VNNI path: any number of rows in the integer kernel (prefill
  // reads the codes once per 8 rows instead of widening all of them to a
  // float copy per call, and rounds like the decode steps).
  if (cpu_float && M >= 1 && W.format == WeightFormat::Int8 && cpu_path_at_least(CpuPath::Avx512Vnni))
    return rows_product(cpu_path(), x, W);
  if (M < 1 || M > 4 || !cpu_float)
    return at::linear(x.to(at::kFloat), dequantize(W));  // prefill: dequantise once, one real GEMM
  return rows_product(cpu_path(), x, W);
}

at::Tensor rows_matmul_t_on(CpuPath path, const at::Tensor& x, const QuantizedWeight& W) {
  TORCH_CHECK(static_cast<int>(path) <= static_cast<int>(detected_cpu_path()), "rows_matmul_t_on: path ",
              cpu_path_name(path), " is not available on this CPU");
  const int64_t M = x.numel() / W.k;
  TORCH_CHECK(M >= 1 && M <= 4 && x.scalar_type() == at::kFloat, "rows_matmul_t_on: 1 to 4 float32 rows");
  return rows_product(path, x, W);
}

}  // namespace chatterbox::kernels
