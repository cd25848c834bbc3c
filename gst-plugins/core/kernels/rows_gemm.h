// y = x W^T for a handful of rows x against an unpacked nn.Linear-layout
// weight W [out, in], reading W once: the decode step of T3 (the CFG pair),
// which is bound by the bytes of weights read per token. W is float32, or
// weight-only quantised (QuantizedWeight: int8 with a float scale per output
// row, or bfloat16), which reads 4x / 2x fewer bytes; the products are
// summed in float32 either way.
#pragma once

#include "gst-plugins/core/kernels/cpu_path.h"

#include <ATen/core/Tensor.h>

#include <string>

namespace chatterbox::kernels {

enum class WeightFormat { F32, BF16, Int8 };
WeightFormat parse_weight_format(const std::string& s);  // "f32", "bf16", "int8"; else a ModelError
const char* weight_format_name(WeightFormat f);

struct QuantizedWeight {
  WeightFormat format = WeightFormat::F32;
  // [N, K]: float32, int8, or bf16 bits (int16 storage). Undefined for int8
  // weights kept in the VNNI layout instead (`packed`): codes() reads either.
  at::Tensor data;
  // int8 on the avx512vnni path: the codes interleaved for the VNNI body,
  // [ceil(N/16), ceil(K/4), 16, 4] (16 output rows x 4 consecutive k per
  // 64-byte vector, zero padded), so that one broadcast of 4 x bytes times one
  // weight vector gives 16 outputs' partial sums: no horizontal sums at all.
  // The row-major copy is then dropped (the weights are stored once).
  at::Tensor packed;
  at::Tensor scale;   // [N] float32 (int8 only): row n is codes()[n] * scale[n]
  at::Tensor rowsum;  // [N] int32 (int8 only): the sum of each row's codes (the VNNI body's offset)
  int64_t n = 0, k = 0;
  bool defined() const { return data.defined() || packed.defined(); }
  int64_t bytes() const;  // of the stored codes (padding included), scales and code sums
  // The weights as stored, row-major [N, K] (int8 codes: unpacked when packed).
  at::Tensor codes() const;
};

// A float32 weight as it is (no copy when already contiguous float32 CPU).
QuantizedWeight float_weight(const at::Tensor& W);

// W [N, K] float -> the format. int8: symmetric per output row, scale =
// max|w| / 127, q = round-half-even(w / scale) (an all-zero row gets scale 1).
// bf16: round to nearest even.
QuantizedWeight quantize_weight(const at::Tensor& W, WeightFormat format);
// Back to float32 [N, K] (prefill's real GEMMs, tests).
at::Tensor dequantize(const QuantizedWeight& w);

// x [..., K] (float32, CPU) -> [..., N]. Up to 4 rows run the hand-written
// kernel of cpu_path() (AVX-512 or AVX2 bodies; the generic path runs
// at::linear for float32 and a plain loop for quantised weights); more rows
// (prefill) dequantise and call at::linear (BLAS), except int8 on the
// avx512vnni path: any number of rows run the VNNI body, 8 rows per pass over
// the codes (no float copy of the weights per call).
//
// int8 on the avx512vnni path: each x row is rounded to 16 bits (a float
// scale per row, |x - x'| <= scale / 2, i.e. 2^-16 of the row's max) and its
// two bytes are multiplied with the codes by VNNI's integer dot products,
// summed exactly in integers: 8x fewer instructions than widening each code
// to float. The weights are in the interleaved `packed` layout
// (quantize_weight makes it on this path; an unpacked weight is packed per
// call), so 16 outputs accumulate in the lanes of one register. The result
// differs from the float body by that rounding only (far below int8's own
// 2^-8).
at::Tensor rows_matmul_t(const at::Tensor& x, const at::Tensor& W);
at::Tensor rows_matmul_t(const at::Tensor& x, const QuantizedWeight& W);

// The same on a given path (at most detected_cpu_path()), for tests that run
// every body on one machine.
at::Tensor rows_matmul_t_on(CpuPath path, const at::Tensor& x, const QuantizedWeight& W);

// Whether rows_matmul_t runs a hand-written SIMD kernel for M rows here.
bool rows_kernel_available(int64_t M);

}  // namespace chatterbox::kernels
