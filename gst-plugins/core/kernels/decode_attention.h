// Attention of one new query position against a KV cache: the decode step of
// the T3 backbones (Llama and GPT-2), per layer.
//
// With LibTorch this is two batched matmuls of [1, d] x [d, T] and [1, T] x
// [T, d] per head, which OpenBLAS runs as B x heads tiny GEMMs: perf put 17 %
// of an int8 decode step there (as much as 9 ms of 50 per token), for 2 x B x
// heads x T x d multiply-adds, a few microseconds of arithmetic. Here each
// head's scores are dot products straight off the cache rows, the softmax is
// LibTorch's (vectorised exp) over all heads at once, and the weighted sum of
// V rows accumulates d-wide registers.
#pragma once

#include "gst-plugins/core/kernels/cpu_path.h"

#include <ATen/core/Tensor.h>

namespace chatterbox::kernels {

// q [B, nh, d]; k_cache, v_cache [B, nkv, cap, d] (contiguous float32 CPU, the
// first T positions valid; nh a multiple of nkv: query head h reads kv head
// h / (nh / nkv)). Returns o [B, nh, d]:
//   o[b, h] = softmax_t(score_scale * q[b, h] . K[b, h', t]) . V[b, h', t], t < T.
// On the generic path (or other dtypes/devices): LibTorch's matmuls.
at::Tensor decode_attention(const at::Tensor& q, const at::Tensor& k_cache, const at::Tensor& v_cache, int64_t T,
                            double score_scale);

// The same on a given path (at most detected_cpu_path()), for tests.
at::Tensor decode_attention_on(CpuPath path, const at::Tensor& q, const at::Tensor& k_cache, const at::Tensor& v_cache,
                               int64_t T, double score_scale);

}  // namespace chatterbox::kernels
