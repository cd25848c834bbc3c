// y = x W^T for a handful of rows x against an unpacked nn.Linear weight
// [out, in] (T3 decode: the CFG pair), reading W once.
#pragma once

#include <ATen/core/Tensor.h>

namespace chatterbox::kernels {

// x [..., in] (float32, CPU), W [out, in] contiguous -> [..., out]. Up to 4
// rows use the AVX2 kernel where cpu_path() allows it; more rows, other
// types, and the generic path go to at::linear (BLAS).
at::Tensor rows_matmul_t(const at::Tensor& x, const at::Tensor& W);

// Whether rows_matmul_t runs the hand-written kernel for M rows here.
bool rows_kernel_available(int64_t M);

}  // namespace chatterbox::kernels
