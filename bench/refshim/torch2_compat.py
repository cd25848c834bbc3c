"""torch 2 calls upstream's Perceiver makes (once per utterance, in the T3
prefill), for Debian's torch 1.13: F.scaled_dot_product_attention (the
explicit softmax(QK^T / sqrt(d) + mask) V) and a no-op
torch.backends.cuda.sdp_kernel(**flags) (it only picks CUDA kernels)."""
import contextlib
import math

import torch
import torch.nn.functional as F


def _sdpa(q, k, v, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None):
    s = torch.matmul(q, k.transpose(-2, -1)) * (scale if scale is not None else 1.0 / math.sqrt(q.size(-1)))
    if is_causal:
        s = s.masked_fill(~torch.ones(s.shape[-2:], dtype=torch.bool).tril(), float("-inf"))
    if attn_mask is not None:
        s = s.masked_fill(~attn_mask, float("-inf")) if attn_mask.dtype == torch.bool else s + attn_mask
    return torch.matmul(torch.softmax(s, dim=-1), v)


def install():
    if not hasattr(F, "scaled_dot_product_attention"):
        F.scaled_dot_product_attention = _sdpa

        @contextlib.contextmanager
        def sdp_kernel(**_):
            yield

        torch.backends.cuda.sdp_kernel = sdp_kernel
