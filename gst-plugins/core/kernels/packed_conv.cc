// Direct stride-1 convolution on weights packed at load (HiFT's layers).
#include "gst-plugins/core/kernels/packed_conv.h"

#include "gst-plugins/core/compute_threads.h"
#include "gst-plugins/core/kernels/cpu_path.h"
#include "gst-plugins/core/kernels/kernel_pool.h"

#include <ATen/ATen.h>

#include <algorithm>

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#endif

namespace chatterbox::kernels {

// A register tile of 8 output channels x 16 NV time columns accumulates over
// (ci, j) in that order with one FMA per term, so every output element is
// summed in the same order whatever the tile, the column count or the
// column's position (masked lanes for the tails): chunked and whole runs
// give identical bits. The weights are packed once at load so the inner
// loop reads them contiguously; the input is read in place (no packing copy,
// unlike a GEMM per tap).

namespace {

constexpr int kMR = 8;  // output channels per tile

#if defined(__x86_64__) && defined(__GNUC__)
#define CB_AVX512 __attribute__((target("avx512f")))

CB_AVX512 inline __mmask16 lane_mask(int64_t remaining) {
  return remaining >= 16 ? static_cast<__mmask16>(0xFFFF) : static_cast<__mmask16>((1u << remaining) - 1u);
}

// One tile: NR (8, or 4: half of the 8-row weight panel, from row roff)
// output channels from co0 (rows of them valid), columns [t0, t0 + nt)
// (nt <= 16 NV; kFull: nt == 16 NV, no lane masks in the inner loop).
template <int NR, int NV, bool kFull>
CB_AVX512 void tile(const float* wp, int64_t cin, int k, int64_t dil, const float* x, int64_t ldx, const float* init,
                    int64_t ldi, const float* bias, float* out, int64_t ldo, int64_t co0, int rows, int64_t t0,
                    int64_t nt) {
  __mmask16 m[NV];
  for (int v = 0; v < NV; ++v) m[v] = kFull ? static_cast<__mmask16>(0xFFFF) : lane_mask(nt - 16 * v);
  __m512 acc[NR][NV];
#pragma GCC unroll 8
  for (int r = 0; r < NR; ++r) {
#pragma GCC unroll 5
    for (int v = 0; v < NV; ++v) {
      if (r >= rows)
        acc[r][v] = _mm512_setzero_ps();
      else if (init)
        acc[r][v] = _mm512_maskz_loadu_ps(m[v], init + (co0 + r) * ldi + t0 + 16 * v);
      else
        acc[r][v] = _mm512_set1_ps(bias[co0 + r]);
    }
  }
  const float* w = wp;
  for (int64_t ci = 0; ci < cin; ++ci) {
    const float* xr = x + ci * ldx + t0;
    for (int j = 0; j < k; ++j, w += kMR) {
      const float* xp = xr + j * dil;
      __m512 xv[NV];
#pragma GCC unroll 5
      for (int v = 0; v < NV; ++v)
        xv[v] = kFull ? _mm512_loadu_ps(xp + 16 * v) : _mm512_maskz_loadu_ps(m[v], xp + 16 * v);
#pragma GCC unroll 8
      for (int r = 0; r < NR; ++r) {
        const __m512 b = _mm512_set1_ps(w[r]);
#pragma GCC unroll 5
        for (int v = 0; v < NV; ++v) acc[r][v] = _mm512_fmadd_ps(b, xv[v], acc[r][v]);
      }
    }
  }
#pragma GCC unroll 8
  for (int r = 0; r < NR; ++r) {
    if (r >= rows) break;
#pragma GCC unroll 5
    for (int v = 0; v < NV; ++v) _mm512_mask_storeu_ps(out + (co0 + r) * ldo + t0 + 16 * v, m[v], acc[r][v]);
  }
}

// 49..80 columns as two passes of 4 rows x 64 / 80 columns (20 accumulators:
// as FMA-bound as the 48-column tile, where 48 + a short tail was not).
template <int NV>
CB_AVX512 void wide_pair(const float* wp, int64_t cin, int k, int64_t dil, const float* x, int64_t ldx,
                         const float* init, int64_t ldi, const float* bias, float* out, int64_t ldo, int64_t co0,
                         int rows, int64_t t0, int64_t nt) {
  for (int h = 0; h < 2 && 4 * h < rows; ++h) {
    const int r = std::min(4, rows - 4 * h);
    if (nt == 16 * NV)
      tile<4, NV, true>(wp + 4 * h, cin, k, dil, x, ldx, init, ldi, bias, out, ldo, co0 + 4 * h, r, t0, nt);
    else
      tile<4, NV, false>(wp + 4 * h, cin, k, dil, x, ldx, init, ldi, bias, out, ldo, co0 + 4 * h, r, t0, nt);
  }
}

// Fewer than 8 columns (streaming a frame at a time, the F0 predictor's one
// column per frame): vectors run along output channels instead, NB blocks of
// 8 per pass, acc[b][t] = 8 channels of column t. Same (ci, j) order and one
// FMA per term per element as tile(), so the same bits.
#define CB_AVX512VL __attribute__((target("avx512f,avx512vl,fma")))
template <int NB>
CB_AVX512VL void tile_narrow(const float* wp, int64_t panel, int64_t cin, int k, int64_t dil, const float* x,
                             int64_t ldx, const float* init, int64_t ldi, const float* bias, float* out, int64_t ldo,
                             int64_t cout, int64_t co0, int64_t n) {
  __m256 acc[NB][7];
  alignas(32) float tmp[8];
  for (int b = 0; b < NB; ++b)
    for (int64_t t = 0; t < n; ++t) {
      for (int r = 0; r < 8; ++r) {
        const int64_t co = co0 + 8 * b + r;
        tmp[r] = co >= cout ? 0.f : init ? init[co * ldi + t] : bias[co];
      }
      acc[b][t] = _mm256_load_ps(tmp);
    }
  for (int64_t ci = 0; ci < cin; ++ci) {
    const float* xr = x + ci * ldx;
    for (int j = 0; j < k; ++j) {
      __m256 wv[NB];
      for (int b = 0; b < NB; ++b) wv[b] = _mm256_loadu_ps(wp + b * panel + (ci * k + j) * kMR);
      const float* xp = xr + j * dil;
      for (int64_t t = 0; t < n; ++t) {
        const __m256 xv = _mm256_set1_ps(xp[t]);
        for (int b = 0; b < NB; ++b) acc[b][t] = _mm256_fmadd_ps(wv[b], xv, acc[b][t]);
      }
    }
  }
  for (int b = 0; b < NB; ++b)
    for (int64_t t = 0; t < n; ++t) {
      _mm256_store_ps(tmp, acc[b][t]);
      for (int r = 0; r < 8; ++r) {
        const int64_t co = co0 + 8 * b + r;
        if (co < cout) out[co * ldo + t] = tmp[r];
      }
    }
}

CB_AVX512 void conv_avx512(const PackedConv& p, int64_t dil, const float* x, int64_t ldx, int64_t n,
                           const float* init, int64_t ldi, const float* bias, float* out, int64_t ldo, int64_t cb0,
                           int64_t cb1) {
  const int64_t panel = p.cin * p.k * kMR;
  const float* w = p.w.data_ptr<float>();
  if (n < 8) {
    int64_t cb = cb0;
    for (; cb + 4 <= cb1; cb += 4)
      tile_narrow<4>(w + cb * panel, panel, p.cin, p.k, dil, x, ldx, init, ldi, bias, out, ldo, p.cout, cb * kMR, n);
    for (; cb < cb1; ++cb)
      tile_narrow<1>(w + cb * panel, panel, p.cin, p.k, dil, x, ldx, init, ldi, bias, out, ldo, p.cout, cb * kMR, n);
    return;
  }
  // Columns: 48-wide tiles; a tail of 1..32 after at least one of them goes
  // with the last one into a 4-row pass of 64 or 80 columns.
  const int64_t rest48 = n % 48;
  const int64_t full = n / 48 - (n >= 48 && rest48 > 0 && rest48 <= 32 ? 1 : 0);
  for (int64_t cb = cb0; cb < cb1; ++cb) {
    const int64_t co0 = cb * kMR;
    const int rows = static_cast<int>(std::min<int64_t>(kMR, p.cout - co0));
    const float* wb = w + cb * panel;
    int64_t t0 = 0;
    for (int64_t f = 0; f < full; ++f, t0 += 48)
      tile<8, 3, true>(wb, p.cin, p.k, dil, x, ldx, init, ldi, bias, out, ldo, co0, rows, t0, 48);
    const int64_t rest = n - t0;
    if (rest > 64)
      wide_pair<5>(wb, p.cin, p.k, dil, x, ldx, init, ldi, bias, out, ldo, co0, rows, t0, rest);
    else if (rest > 48)
      wide_pair<4>(wb, p.cin, p.k, dil, x, ldx, init, ldi, bias, out, ldo, co0, rows, t0, rest);
    else if (rest > 32)
      tile<8, 3, false>(wb, p.cin, p.k, dil, x, ldx, init, ldi, bias, out, ldo, co0, rows, t0, rest);
    else if (rest > 16)
      tile<8, 2, false>(wb, p.cin, p.k, dil, x, ldx, init, ldi, bias, out, ldo, co0, rows, t0, rest);
    else if (rest > 0)
      tile<8, 1, false>(wb, p.cin, p.k, dil, x, ldx, init, ldi, bias, out, ldo, co0, rows, t0, rest);
  }
}

#endif

}  // namespace

PackedConv pack_conv(const at::Tensor& weight, const at::Tensor& bias) {
  PackedConv p;
  p.cout = weight.size(0);
  p.cin = weight.size(1);
  p.k = static_cast<int>(weight.size(2));
  const int64_t blocks = (p.cout + kMR - 1) / kMR;
  at::Tensor w = at::zeros({blocks * kMR, p.cin, p.k}, at::kFloat);
  w.narrow(0, 0, p.cout).copy_(weight);
  // [blocks, 8, Cin, k] -> [blocks, Cin, k, 8]
  p.w = w.view({blocks, kMR, p.cin, p.k}).permute({0, 2, 3, 1}).contiguous();
  p.bias = bias.reshape({-1}).to(at::kFloat).contiguous();
  return p;
}

bool packed_conv_available() {
#if defined(__x86_64__) && defined(__GNUC__)
  return cpu_path_at_least(CpuPath::Avx512);
#else
  return false;
#endif
}

void conv_into(const PackedConv& p, int64_t dil, const at::Tensor& x, const at::Tensor& init, const at::Tensor& out) {
  const int64_t n = out.size(1);
  TORCH_CHECK(packed_conv_available(), "conv_into: no AVX-512");
  TORCH_CHECK(x.scalar_type() == at::kFloat && out.scalar_type() == at::kFloat && x.size(0) == p.cin &&
                  out.size(0) == p.cout && x.size(1) >= n + (p.k - 1) * dil && (x.size(1) <= 1 || x.stride(1) == 1) &&
                  (n <= 1 || out.stride(1) == 1),
              "conv_into: mismatched tensors");
  const float* ip = nullptr;
  int64_t ldi = 0;
  if (init.defined()) {
    TORCH_CHECK(init.scalar_type() == at::kFloat && init.size(0) == p.cout && init.size(1) == n &&
                    (n <= 1 || init.stride(1) == 1),
                "conv_into: mismatched init");
    ip = init.data_ptr<float>();
    ldi = init.stride(0);
  }
  if (n == 0) return;
#if defined(__x86_64__) && defined(__GNUC__)
  const int64_t blocks = (p.cout + kMR - 1) / kMR;
  const float* xp = x.data_ptr<float>();
  const float* bp = p.bias.data_ptr<float>();
  float* op = out.data_ptr<float>();
  const int64_t ldx = x.stride(0), ldo = out.stride(0);
  // Threads (the compute_threads() setting) for convolutions worth waking a
  // worker (32M multiply-adds, ~0.2 ms): output-channel blocks, or column
  // ranges when there are few blocks. Either split leaves every element's
  // sum as it is.
  const int parts = p.cout * p.cin * p.k * n >= (int64_t{1} << 25) ? compute_threads() : 1;
  if (blocks >= 2 * parts) {
    run_parallel(parts, blocks, [&](int64_t b0, int64_t b1) {
      conv_avx512(p, dil, xp, ldx, n, ip, ldi, bp, op, ldo, b0, b1);
    });
  } else {
    const int64_t units = (n + 47) / 48;
    run_parallel(parts, units, [&](int64_t u0, int64_t u1) {
      const int64_t t0 = 48 * u0, t1 = std::min(n, 48 * u1);
      conv_avx512(p, dil, xp + t0, ldx, t1 - t0, ip ? ip + t0 : nullptr, ldi, bp, op + t0, ldo, 0, blocks);
    });
  }
#endif
}

}  // namespace chatterbox::kernels
