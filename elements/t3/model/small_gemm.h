// Internal to the T3 library: x W^T with W in the nn.Linear layout [out, in].
#pragma once

#include <ATen/core/Tensor.h>

namespace chatterbox::t3 {

// x [..., in] (float32, CPU), W [out, in] contiguous -> [..., out]. Up to 4
// rows use a kernel that streams W once (decode); more rows go to at::linear.
at::Tensor small_rows_matmul_t(const at::Tensor& x, const at::Tensor& W);

}  // namespace chatterbox::t3
