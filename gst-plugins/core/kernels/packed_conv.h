// Direct stride-1 Conv1d on weights packed at load (HiFT's layers): a
// register tile of output channels x time columns accumulates over (ci, j)
// in that order with one FMA per term, so each output is summed in the same
// order whatever the tile, the column count or the column's position:
// chunked and whole runs give identical bits. AVX-512 only (cpu_path.h);
// elsewhere callers use per-tap BLAS.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>

namespace chatterbox::kernels {

// A stride-1 Conv1d's weight [Cout, Cin, k] and bias, packed for conv_into:
// [ceil(Cout / 8)][Cin][k][8] (output channels innermost, zero rows to a
// multiple of 8).
struct PackedConv {
  at::Tensor w, bias;
  int64_t cout = 0, cin = 0;
  int k = 1;
};
PackedConv pack_conv(const at::Tensor& weight, const at::Tensor& bias);

// Whether conv_into can run here (cpu_path() is avx512); callers fall back
// to BLAS otherwise.
bool packed_conv_available();

// out[co, t] = (init ? init[co, t] : bias[co]) + sum over ci, then j, of
// W[co, ci, j] x[ci, t + j dil], for t < n = out.size(1). Each element is
// summed in that fixed order, so results do not depend on n or on where the
// column sits. x: [Cin, >= n + (k - 1) dil], init and out: [Cout, n] (rows
// may be strided, columns contiguous; init may be out itself).
void conv_into(const PackedConv& p, int64_t dil, const at::Tensor& x, const at::Tensor& init, const at::Tensor& out);

}  // namespace chatterbox::kernels
