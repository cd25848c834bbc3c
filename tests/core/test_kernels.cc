// The shared CPU kernels (gst-plugins/core/kernels/): every body this CPU has
// (AVX-512, AVX2, generic) against float64, for float32 and weight-only
// quantised weights, over odd shapes that exercise the SIMD tails. Bounds:
// Higham's worst case for a sum in any order (tests/tensor_compare.h), and
// the quantisers' own rounding bounds; no CPU's summation order is assumed.
// The suite runs again under the `lowest` and `avx2` test setups.
#define BOOST_TEST_MODULE kernels
#include <boost/test/unit_test.hpp>

#include "gst-plugins/core/checkpoint.h"
#include "gst-plugins/core/kernels/cpu_path.h"
#include "gst-plugins/core/kernels/decode_attention.h"
#include "gst-plugins/core/kernels/rows_gemm.h"
#include "tests/tensor_compare.h"
#include "tests/test_util.h"

#include <ATen/ATen.h>

#include <cmath>
#include <iostream>
#include <vector>

using namespace chatterbox;
using namespace chatterbox::kernels;
using chatterbox::test::gemm_error_ratio;

namespace {

std::vector<CpuPath> paths_here() {
  std::vector<CpuPath> p{CpuPath::Generic};
  if (static_cast<int>(detected_cpu_path()) >= static_cast<int>(CpuPath::Avx2)) p.push_back(CpuPath::Avx2);
  if (detected_cpu_path() >= CpuPath::Avx512) p.push_back(CpuPath::Avx512);
  if (detected_cpu_path() >= CpuPath::Avx512Vnni) p.push_back(CpuPath::Avx512Vnni);
  return p;
}

// The int8 VNNI body's error against the exact product with the stored
// weights. Integer sums are exact; x is rounded to 16 bits per row
// (|x - x'| <= s / 2, s = max|x| / 32767), then one float rounding:
// |y - y*| <= s / 2 * sum|w| + 2^-23 |y*|.
double vnni_error_ratio(const at::Tensor& got, const at::Tensor& x, const QuantizedWeight& q) {
  const int64_t K = q.k, N = q.n, M = x.numel() / K;
  at::Tensor xd = x.to(at::kDouble).reshape({M, K}), wd = dequantize(q).to(at::kDouble);
  at::Tensor exact = at::matmul(xd, wd.t());
  at::Tensor s = std::get<0>(xd.abs().max(1, true)) / 32767.0;  // [M, 1]
  at::Tensor bound = s / 2 * wd.abs().sum(1).unsqueeze(0) + std::ldexp(1.0, -23) * exact.abs() + 1e-30;
  return ((got.to(at::kDouble).reshape({M, N}) - exact).abs() / bound).max().item<double>();
}

const std::vector<std::pair<int64_t, int64_t>> kShapes{{33, 1029}, {8194, 32}, {7, 5}, {301, 4096}, {2, 17}};

}  // namespace

BOOST_AUTO_TEST_CASE(cpu_path_is_reported) {
  std::cout << "CPU: " << cpu_description() << "\n";
  BOOST_TEST(static_cast<int>(cpu_path()) <= static_cast<int>(detected_cpu_path()));
  BOOST_TEST(std::string(cpu_path_name(CpuPath::Avx2)) == "avx2");
}

BOOST_AUTO_TEST_CASE(quantisers_round_within_their_bounds) {
  at::manual_seed(3);
  at::Tensor W = at::randn({37, 91}) * at::rand({37, 1}) * 4;
  W[5].zero_();  // an all-zero row: scale 1, codes 0
  QuantizedWeight q8 = quantize_weight(W, WeightFormat::Int8);
  const at::Tensor codes = q8.codes();
  BOOST_TEST(codes.scalar_type() == at::kChar);
  BOOST_REQUIRE(codes.sizes() == at::IntArrayRef({37, 91}));
  // Codes (row-major, or the VNNI layout padded to 16 rows x 4 columns), scales, code sums.
  const int64_t stored = q8.packed.defined() ? 48 * 92 : 37 * 91;
  BOOST_TEST(q8.bytes() == stored + 37 * 4 + 37 * 4);
  BOOST_TEST(q8.data.defined() != q8.packed.defined());  // stored once
  BOOST_TEST(q8.rowsum[7].item<int>() == codes[7].to(at::kInt).sum().item<int>());
  BOOST_TEST(codes.abs().max().item<int>() <= 127);
  BOOST_TEST(q8.scale[5].item<float>() == 1.0f);
  // Round to nearest: at most half a step (plus the float32 rounding of the
  // product q * scale) from the weight.
  at::Tensor err8 = (dequantize(q8).to(at::kDouble) - W.to(at::kDouble)).abs();
  at::Tensor half = q8.scale.to(at::kDouble).unsqueeze(1) * (0.5 + 1e-6);
  BOOST_TEST((err8 <= half).all().item<bool>());
  // The row maximum is exactly representable: +-127 steps.
  for (int64_t r : {0, 1, 36}) BOOST_TEST(codes[r].abs().max().item<int>() == 127);
  QuantizedWeight q16 = quantize_weight(W, WeightFormat::BF16);
  BOOST_TEST(q16.bytes() == 37 * 91 * 2);
  // bfloat16 keeps 8 significant bits: round to nearest errs by <= 2^-8 relative.
  at::Tensor err16 = (dequantize(q16).to(at::kDouble) - W.to(at::kDouble)).abs();
  BOOST_TEST((err16 <= W.to(at::kDouble).abs() * std::ldexp(1.0, -8)).all().item<bool>());
  BOOST_TEST(chatterbox::test::contains(
      chatterbox::test::error_of([] { parse_weight_format("int4"); }), "unknown weight precision 'int4'"));
}

BOOST_AUTO_TEST_CASE(every_body_and_format_matches_float64) {
  at::manual_seed(11);
  for (WeightFormat fmt : {WeightFormat::F32, WeightFormat::BF16, WeightFormat::Int8})
    for (CpuPath path : paths_here())
      for (int64_t M : {1, 2, 3, 4})
        for (auto nk : kShapes) {
          at::Tensor W = at::randn({nk.first, nk.second}), x = at::randn({M, 1, nk.second});
          QuantizedWeight q = quantize_weight(W, fmt);
          at::Tensor got = rows_matmul_t_on(path, x, q);
          BOOST_REQUIRE(got.sizes() == at::IntArrayRef({M, 1, nk.first}));
          if (fmt == WeightFormat::Int8 && path == CpuPath::Avx512Vnni) {
            const double r = vnni_error_ratio(got, x, q);
            BOOST_TEST(r <= 1.0, "int8 VNNI, M " << M << " N " << nk.first << " K " << nk.second << ": " << r);
            continue;
          }
          // Against the exact product with the weights as stored (the
          // quantisation itself is the other test's business); the int8
          // scale multiply is one more rounding.
          const double ratio =
              gemm_error_ratio(got, x, dequantize(q), at::Tensor(), fmt == WeightFormat::Int8 ? 1 : 0);
          BOOST_TEST(ratio <= 1.0, weight_format_name(fmt) << " on " << cpu_path_name(path) << ", M " << M << " N "
                                                           << nk.first << " K " << nk.second << ": " << ratio);
        }
}

BOOST_AUTO_TEST_CASE(dispatch_and_prefill_rows) {
  // The public entry point on this process's path, and more than 4 rows
  // (prefill: dequantise, one BLAS GEMM).
  at::manual_seed(12);
  for (WeightFormat fmt : {WeightFormat::F32, WeightFormat::BF16, WeightFormat::Int8})
    for (int64_t M : {1, 2, 5, 8, 9, 37}) {
      at::Tensor W = at::randn({300, 257}), x = at::randn({M, 257});
      QuantizedWeight q = quantize_weight(W, fmt);
      at::Tensor got = rows_matmul_t(x, q);
      BOOST_REQUIRE(got.sizes() == at::IntArrayRef({M, 300}));
      if (fmt == WeightFormat::Int8 && cpu_path_at_least(CpuPath::Avx512Vnni)) {
        // Every row count runs the VNNI body (8 rows per pass): its bound.
        BOOST_TEST(vnni_error_ratio(got, x, q) <= 1.0, "int8 VNNI M " << M);
        continue;
      }
      BOOST_TEST(gemm_error_ratio(got, x, dequantize(q), at::Tensor(), 1) <= 1.0,
                 weight_format_name(fmt) << " M " << M);
    }
  // float32 weights through the tensor overload too.
  at::Tensor W = at::randn({64, 100}), x = at::randn({2, 100});
  BOOST_TEST(gemm_error_ratio(rows_matmul_t(x, W), x, W) <= 1.0);
}

// Decode attention (one query per head against a KV cache) on every path:
// float64 reference and a float32 bound built from the steps. Scores: a dot
// of d terms and one scaling, |e_s| <= gamma(d + 1) scale |q|.|k_t|. Softmax:
// perturbing every score by at most E moves each p_t by a factor within
// exp(+-2E), plus the exp's and the sum's own roundings (gamma(T + 4)).
// Output: a sum of T products, gamma(T + 1) sum p_t |v_t|, plus the
// propagated sum |dp_t| |v_t|. Doubled for margin. Cache rows past T hold NaN,
// so reading one fails the test.
BOOST_AUTO_TEST_CASE(decode_attention_matches_float64_on_every_path) {
  at::manual_seed(21);
  struct Case {
    int64_t B, nh, nkv, d, T;
  };
  for (Case c : {Case{2, 4, 4, 64, 300}, Case{1, 4, 2, 64, 37}, Case{2, 3, 3, 24, 5}, Case{1, 2, 1, 7, 1},
                 Case{2, 16, 16, 64, 129}, Case{1, 2, 2, 80, 17}})
    for (CpuPath path : paths_here()) {
      const int64_t cap = c.T + 3;
      at::Tensor q = at::randn({c.B, c.nh, c.d}) * 2;
      at::Tensor K = at::randn({c.B, c.nkv, cap, c.d}), V = at::randn({c.B, c.nkv, cap, c.d});
      K.narrow(2, c.T, 3).fill_(NAN);
      V.narrow(2, c.T, 3).fill_(NAN);
      const double scale = 1.0 / std::sqrt(static_cast<double>(c.d));
      at::Tensor got = decode_attention_on(path, q, K, V, c.T, scale);
      BOOST_REQUIRE(got.sizes() == at::IntArrayRef({c.B, c.nh, c.d}));
      const int64_t g = c.nh / c.nkv;
      at::Tensor Kd = K.narrow(2, 0, c.T).to(at::kDouble).repeat_interleave(g, 1);  // [B, nh, T, d]
      at::Tensor Vd = V.narrow(2, 0, c.T).to(at::kDouble).repeat_interleave(g, 1);
      at::Tensor qd = q.to(at::kDouble).unsqueeze(2);                                // [B, nh, 1, d]
      at::Tensor sc = at::matmul(qd, Kd.transpose(-1, -2)) * scale;                 // [B, nh, 1, T]
      at::Tensor p = at::softmax(sc, -1);
      at::Tensor exact = at::matmul(p, Vd).squeeze(2);
      using chatterbox::test::gamma_f32;
      at::Tensor es = gamma_f32(c.d + 1) * scale * at::matmul(qd.abs(), Kd.abs().transpose(-1, -2));
      at::Tensor E = std::get<0>(es.max(-1, true));                                  // [B, nh, 1, 1]
      at::Tensor dp = p * (at::expm1(2 * E) + gamma_f32(c.T + 4));
      at::Tensor bound = (at::matmul(dp, Vd.abs()) + gamma_f32(c.T + 1) * at::matmul(p, Vd.abs())).squeeze(2) * 2;
      const double r = ((got.to(at::kDouble) - exact).abs() / (bound + 1e-300)).max().item<double>();
      BOOST_TEST(r <= 1.0, cpu_path_name(path) << " B " << c.B << " nh " << c.nh << " nkv " << c.nkv << " d " << c.d
                                                << " T " << c.T << ": error / bound " << r);
    }
  // Shape errors are reported, not read out of bounds.
  BOOST_CHECK_THROW(decode_attention(at::randn({1, 2, 8}), at::randn({1, 2, 4, 8}), at::randn({1, 2, 4, 8}), 5, 1.0),
                    std::exception);
}
