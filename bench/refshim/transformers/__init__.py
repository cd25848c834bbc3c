"""transformers' LlamaModel and GPT2Model as upstream T3 calls them (see
../README.md): inputs_embeds in, hidden states and a growing key/value cache
out. Module and parameter names are transformers' own."""
import math

import torch
import torch.nn.functional as F
from torch import nn

from .modeling_outputs import BaseModelOutputWithPast


class _Config:
    def __init__(self, **kw):
        for k, v in kw.items():
            setattr(self, k, v)


class LlamaConfig(_Config):
    pass


class GPT2Config(_Config):
    pass


class LlamaPreTrainedModel(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.config = config


class GenerationMixin:
    pass


def _causal_attention(q, k, v):
    """softmax(q k^T / sqrt(d)) v; query i (of S new ones) sees keys up to
    past + i."""
    s, t = q.size(-2), k.size(-2)
    scores = torch.matmul(q, k.transpose(-1, -2)) / math.sqrt(q.size(-1))
    if s > 1:
        mask = torch.ones(s, t, dtype=torch.bool).tril(t - s)
        scores = scores.masked_fill(~mask, float("-inf"))
    return torch.matmul(torch.softmax(scores.float(), dim=-1).to(q.dtype), v)


class LlamaRMSNorm(nn.Module):
    def __init__(self, n, eps):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(n))
        self.eps = eps

    def forward(self, x):
        x32 = x.float()
        x32 = x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * x32.to(x.dtype)


def _llama3_inv_freq(c):
    d = c.head_dim
    inv = 1.0 / (c.rope_theta ** (torch.arange(0, d, 2, dtype=torch.int64).float() / d))
    rs = c.rope_scaling
    factor, lo, hi, old = rs["factor"], rs["low_freq_factor"], rs["high_freq_factor"], rs["original_max_position_embeddings"]
    low_wl, high_wl = old / lo, old / hi
    wl = 2 * math.pi / inv
    inv1 = torch.where(wl > low_wl, inv / factor, inv)
    smooth = (old / wl - lo) / (hi - lo)
    smoothed = (1 - smooth) * inv1 / factor + smooth * inv1
    medium = ~(wl < high_wl) * ~(wl > low_wl)
    return torch.where(medium, smoothed, inv1)


def _rotate_half(x):
    h = x.size(-1) // 2
    return torch.cat((-x[..., h:], x[..., :h]), dim=-1)


class LlamaAttention(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.h, self.d = c.num_attention_heads, c.head_dim
        w = c.hidden_size
        self.q_proj = nn.Linear(w, self.h * self.d, bias=False)
        self.k_proj = nn.Linear(w, self.h * self.d, bias=False)
        self.v_proj = nn.Linear(w, self.h * self.d, bias=False)
        self.o_proj = nn.Linear(self.h * self.d, w, bias=False)

    def forward(self, x, cos, sin, cache):
        b, s, _ = x.shape
        q = self.q_proj(x).view(b, s, self.h, self.d).transpose(1, 2)
        k = self.k_proj(x).view(b, s, self.h, self.d).transpose(1, 2)
        v = self.v_proj(x).view(b, s, self.h, self.d).transpose(1, 2)
        q = q * cos + _rotate_half(q) * sin
        k = k * cos + _rotate_half(k) * sin
        if cache is not None:
            k = torch.cat([cache[0], k], dim=2)
            v = torch.cat([cache[1], v], dim=2)
        o = _causal_attention(q, k, v).transpose(1, 2).reshape(b, s, self.h * self.d)
        return self.o_proj(o), (k, v)


class LlamaMLP(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.gate_proj = nn.Linear(c.hidden_size, c.intermediate_size, bias=False)
        self.up_proj = nn.Linear(c.hidden_size, c.intermediate_size, bias=False)
        self.down_proj = nn.Linear(c.intermediate_size, c.hidden_size, bias=False)

    def forward(self, x):
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class LlamaDecoderLayer(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.self_attn = LlamaAttention(c)
        self.mlp = LlamaMLP(c)
        self.input_layernorm = LlamaRMSNorm(c.hidden_size, c.rms_norm_eps)
        self.post_attention_layernorm = LlamaRMSNorm(c.hidden_size, c.rms_norm_eps)

    def forward(self, x, cos, sin, cache):
        a, kv = self.self_attn(self.input_layernorm(x), cos, sin, cache)
        h = x + a
        return h + self.mlp(self.post_attention_layernorm(h)), kv


class LlamaModel(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.config = c
        self.embed_tokens = nn.Embedding(c.vocab_size, c.hidden_size)
        self.layers = nn.ModuleList([LlamaDecoderLayer(c) for _ in range(c.num_hidden_layers)])
        self.norm = LlamaRMSNorm(c.hidden_size, c.rms_norm_eps)
        self.register_buffer("inv_freq", _llama3_inv_freq(c), persistent=False)

    def forward(self, inputs_embeds=None, past_key_values=None, use_cache=True, output_attentions=False,
                output_hidden_states=False, return_dict=True, **_):
        x = inputs_embeds
        past = 0 if not past_key_values else past_key_values[0][0].size(2)
        pos = torch.arange(past, past + x.size(1), dtype=torch.float32)
        ang = pos[:, None] * self.inv_freq[None, :]
        emb = torch.cat((ang, ang), dim=-1)
        cos, sin = emb.cos().to(x.dtype), emb.sin().to(x.dtype)
        hidden, cache = [x], []
        for i, layer in enumerate(self.layers):
            x, kv = layer(x, cos, sin, past_key_values[i] if past_key_values else None)
            cache.append(kv)
            hidden.append(x)
        x = self.norm(x)
        hidden[-1] = x
        return BaseModelOutputWithPast(last_hidden_state=x, past_key_values=cache,
                                       hidden_states=tuple(hidden) if output_hidden_states else None,
                                       attentions=None)


class Conv1D(nn.Module):
    """GPT-2's linear layer with its weight stored (in, out)."""

    def __init__(self, nf, nx):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(nx, nf).normal_(std=0.02))
        self.bias = nn.Parameter(torch.zeros(nf))

    def forward(self, x):
        return torch.addmm(self.bias, x.reshape(-1, x.size(-1)), self.weight).view(*x.shape[:-1], -1)


def _gelu_new(x):
    return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * torch.pow(x, 3.0))))


class GPT2Attention(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.h, self.w = c.n_head, c.n_embd
        self.c_attn = Conv1D(3 * self.w, self.w)
        self.c_proj = Conv1D(self.w, self.w)

    def forward(self, x, cache):
        b, s, _ = x.shape
        q, k, v = self.c_attn(x).split(self.w, dim=2)
        d = self.w // self.h
        q, k, v = (t.view(b, s, self.h, d).transpose(1, 2) for t in (q, k, v))
        if cache is not None:
            k = torch.cat([cache[0], k], dim=2)
            v = torch.cat([cache[1], v], dim=2)
        o = _causal_attention(q, k, v).transpose(1, 2).reshape(b, s, self.w)
        return self.c_proj(o), (k, v)


class GPT2MLP(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.c_fc = Conv1D(4 * c.n_embd, c.n_embd)
        self.c_proj = Conv1D(c.n_embd, 4 * c.n_embd)

    def forward(self, x):
        return self.c_proj(_gelu_new(self.c_fc(x)))


class GPT2Block(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.ln_1 = nn.LayerNorm(c.n_embd, eps=c.layer_norm_epsilon)
        self.attn = GPT2Attention(c)
        self.ln_2 = nn.LayerNorm(c.n_embd, eps=c.layer_norm_epsilon)
        self.mlp = GPT2MLP(c)

    def forward(self, x, cache):
        a, kv = self.attn(self.ln_1(x), cache)
        h = x + a
        return h + self.mlp(self.ln_2(h)), kv


class GPT2Model(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.config = c
        self.wte = nn.Embedding(c.vocab_size, c.n_embd)
        self.wpe = nn.Embedding(c.n_positions, c.n_embd)
        self.h = nn.ModuleList([GPT2Block(c) for _ in range(c.n_layer)])
        self.ln_f = nn.LayerNorm(c.n_embd, eps=c.layer_norm_epsilon)

    def forward(self, inputs_embeds=None, past_key_values=None, use_cache=True, **_):
        past = 0 if not past_key_values else past_key_values[0][0].size(2)
        x = inputs_embeds + self.wpe(torch.arange(past, past + inputs_embeds.size(1)))[None]
        cache = []
        for i, block in enumerate(self.h):
            x, kv = block(x, past_key_values[i] if past_key_values else None)
            cache.append(kv)
        x = self.ln_f(x)
        return BaseModelOutputWithPast(last_hidden_state=x, past_key_values=cache, hidden_states=None,
                                       attentions=None)
