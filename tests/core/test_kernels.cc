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
  BOOST_TEST(q8.data.scalar_type() == at::kChar);
  BOOST_TEST(q8.bytes() == 37 * 91 + 37 * 4 + 37 * 4);  // codes, scales, code sums
  BOOST_TEST(q8.rowsum[7].item<int>() == q8.data[7].to(at::kInt).sum().item<int>());
  BOOST_TEST(q8.data.abs().max().item<int>() <= 127);
  BOOST_TEST(q8.scale[5].item<float>() == 1.0f);
  // Round to nearest: at most half a step (plus the float32 rounding of the
  // product q * scale) from the weight.
  at::Tensor err8 = (dequantize(q8).to(at::kDouble) - W.to(at::kDouble)).abs();
  at::Tensor half = q8.scale.to(at::kDouble).unsqueeze(1) * (0.5 + 1e-6);
  BOOST_TEST((err8 <= half).all().item<bool>());
  // The row maximum is exactly representable: +-127 steps.
  for (int64_t r : {0, 1, 36}) BOOST_TEST(q8.data[r].abs().max().item<int>() == 127);
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
            // Integer sums are exact; x is rounded to 16 bits per row
            // (|x - x'| <= s / 2, s = max|x| / 32767), then one float rounding:
            // |y - y*| <= s / 2 * sum|w| + 2^-23 |y*| with w the stored weights.
            at::Tensor xd = x.to(at::kDouble).reshape({M, nk.second}), wd = dequantize(q).to(at::kDouble);
            at::Tensor exact = at::matmul(xd, wd.t());
            at::Tensor s = std::get<0>(xd.abs().max(1, true)) / 32767.0;  // [M, 1]
            at::Tensor bound = s / 2 * wd.abs().sum(1).unsqueeze(0) + std::ldexp(1.0, -23) * exact.abs() + 1e-30;
            const double r = ((got.to(at::kDouble).reshape({M, nk.first}) - exact).abs() / bound).max().item<double>();
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
    for (int64_t M : {1, 2, 5, 37}) {
      at::Tensor W = at::randn({300, 257}), x = at::randn({M, 257});
      QuantizedWeight q = quantize_weight(W, fmt);
      at::Tensor got = rows_matmul_t(x, q);
      BOOST_REQUIRE(got.sizes() == at::IntArrayRef({M, 300}));
      BOOST_TEST(gemm_error_ratio(got, x, dequantize(q), at::Tensor(), 1) <= 1.0,
                 weight_format_name(fmt) << " M " << M);
    }
  // float32 weights through the tensor overload too.
  at::Tensor W = at::randn({64, 100}), x = at::randn({2, 100});
  BOOST_TEST(gemm_error_ratio(rows_matmul_t(x, W), x, W) <= 1.0);
}
