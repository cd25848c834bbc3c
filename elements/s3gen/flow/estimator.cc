// ConditionalDecoder: the velocity estimator of the S3Gen CFM, a 1-D U-Net
// of causal resnet blocks and diffusers-style transformer blocks, conditioned
// on time (sinusoidal + MLP), mu, speaker and prompt mel (stacked on channels).
#include "elements/s3gen/flow/flow_modules.h"

#include <torch/types.h>

#include <cmath>
#include <string>

namespace chatterbox::s3gen {

torch::Tensor causal_conv_btc(torch::nn::Conv1d& conv, const torch::Tensor& x) {
  // The estimator keeps activations time-major ([B, T, C]) so LayerNorm and
  // the transformer blocks need no transposes; a causal conv is then one GEMM
  // over the k most recent frames: cols[b, t, c*k + j] = x[b, t - (k-1) + j, c]
  // against weight [Cout, Cin*k] (the Conv1d weight's own memory order).
  const int64_t k = conv->options.kernel_size()->at(0);
  const int64_t B = x.size(0), T = x.size(1), C = x.size(2);
  const torch::Tensor w = conv->weight.view({conv->weight.size(0), C * k});
  if (k == 1) return torch::linear(x, w, conv->bias);
  torch::Tensor cols = torch::constant_pad_nd(x, {0, 0, k - 1, 0}).unfold(1, k, 1).reshape({B, T, C * k});
  return torch::linear(cols, w, conv->bias);
}

namespace {

// SinusoidalPosEmb (Matcha): scale 1000, half sin / half cos.
torch::Tensor sinusoidal_time(const torch::Tensor& t, int64_t dim) {
  const int64_t half = dim / 2;
  const double step = std::log(10000.0) / static_cast<double>(half - 1);
  torch::Tensor freqs = torch::exp(torch::arange(half, t.options()) * -step);
  torch::Tensor arg = (t.unsqueeze(1) * 1000.0) * freqs.unsqueeze(0);
  return torch::cat({arg.sin(), arg.cos()}, -1);
}

// LibTorch 1.13 has no bfloat16 / float16 Mish kernel on the CPU; there it
// runs in float32 and rounds once (what a native reduced-precision kernel
// computes internally too).
torch::Tensor mish_any(const torch::Tensor& x) {
  if (x.is_cpu() && (x.scalar_type() == torch::kBFloat16 || x.scalar_type() == torch::kHalf))
    return torch::mish(x.to(torch::kFloat)).to(x.scalar_type());
  return torch::mish(x);
}

}  // namespace

CausalBlock1D::CausalBlock1D(int64_t dim, int64_t dim_out) {
  block = register_module("block", std::make_shared<Node>());
  conv = block->register_module("0", torch::nn::Conv1d(torch::nn::Conv1dOptions(dim, dim_out, 3)));
  norm = block->register_module("2", torch::nn::LayerNorm(torch::nn::LayerNormOptions({dim_out}).eps(1e-5)));
}

torch::Tensor CausalBlock1D::forward(const torch::Tensor& x, const torch::Tensor& mask, bool mask_is_ones) {
  torch::Tensor y = causal_conv_btc(conv, mask_is_ones ? x : x * mask);
  y = mish_any(norm(y));
  return mask_is_ones ? y : y * mask;
}

CausalResnetBlock1D::CausalResnetBlock1D(int64_t dim, int64_t dim_out, int64_t time_emb_dim) {
  mlp = register_module("mlp", std::make_shared<Node>());
  mlp_linear = mlp->register_module("1", torch::nn::Linear(time_emb_dim, dim_out));
  block1 = register_module("block1", std::make_shared<CausalBlock1D>(dim, dim_out));
  block2 = register_module("block2", std::make_shared<CausalBlock1D>(dim_out, dim_out));
  res_conv = register_module("res_conv", torch::nn::Conv1d(torch::nn::Conv1dOptions(dim, dim_out, 1)));
}

torch::Tensor CausalResnetBlock1D::forward(const torch::Tensor& x, const torch::Tensor& mask,
                                           const torch::Tensor& time_mish, bool mask_is_ones) {
  torch::Tensor h = block1->forward(x, mask, mask_is_ones);
  h = h + mlp_linear(time_mish).unsqueeze(1);
  h = block2->forward(h, mask, mask_is_ones);
  return h + causal_conv_btc(res_conv, mask_is_ones ? x : x * mask);
}

TransformerBlock::TransformerBlock(int64_t dim, int64_t heads_, int64_t head_dim_) : heads(heads_), head_dim(head_dim_) {
  const int64_t inner = heads * head_dim;
  norm1 = register_module("norm1", torch::nn::LayerNorm(torch::nn::LayerNormOptions({dim}).eps(1e-5)));
  attn1 = register_module("attn1", std::make_shared<Node>());
  to_q = attn1->register_module("to_q", torch::nn::Linear(torch::nn::LinearOptions(dim, inner).bias(false)));
  to_k = attn1->register_module("to_k", torch::nn::Linear(torch::nn::LinearOptions(dim, inner).bias(false)));
  to_v = attn1->register_module("to_v", torch::nn::Linear(torch::nn::LinearOptions(dim, inner).bias(false)));
  to_out = attn1->register_module("to_out", std::make_shared<Node>());
  to_out0 = to_out->register_module("0", torch::nn::Linear(inner, dim));
  norm3 = register_module("norm3", torch::nn::LayerNorm(torch::nn::LayerNormOptions({dim}).eps(1e-5)));
  ff = register_module("ff", std::make_shared<Node>());
  ff_net = ff->register_module("net", std::make_shared<Node>());
  ff_gelu = ff_net->register_module("0", std::make_shared<Node>());
  ff_proj = ff_gelu->register_module("proj", torch::nn::Linear(dim, 4 * dim));
  ff_out = ff_net->register_module("2", torch::nn::Linear(4 * dim, dim));
}

void TransformerBlock::fuse() {
  // One GEMM for q, k and v instead of three (same math, fewer passes over x).
  w_qkv = torch::cat({to_q->weight, to_k->weight, to_v->weight}, 0).contiguous();
}

torch::Tensor TransformerBlock::forward(torch::Tensor x, const torch::Tensor& bias) {
  const int64_t B = x.size(0), T = x.size(1), inner = heads * head_dim;
  torch::Tensor xn = norm1(x);
  torch::Tensor qkv = w_qkv.defined() ? torch::linear(xn, w_qkv)
                                      : torch::cat({to_q(xn), to_k(xn), to_v(xn)}, -1);
  // One copy to head-major [3, B*H, T, hd]; the batched GEMMs then read
  // q, k^T and v without further copies.
  qkv = qkv.view({B, T, 3, heads, head_dim}).permute({2, 0, 3, 1, 4}).reshape({3, B * heads, T, head_dim});
  torch::Tensor q = qkv[0], k = qkv[1], v = qkv[2];
  torch::Tensor scores = torch::bmm(q, k.transpose(1, 2)).mul_(1.0 / std::sqrt(static_cast<double>(head_dim)));
  scores = scores.view({B, heads, T, T});
  if (bias.defined()) scores.add_(bias);
  torch::Tensor attn = torch::softmax(scores, -1).view({B * heads, T, T});
  torch::Tensor out = torch::bmm(attn, v).view({B, heads, T, head_dim}).transpose(1, 2).reshape({B, T, inner});
  x = x + to_out0(out);
  return x + ff_out(torch::gelu(ff_proj(norm3(x))));
}

ConditionalDecoder::ConditionalDecoder(const S3GenFlowConfig& c) : in_channels(c.estimator_in_channels) {
  const auto& ch = c.estimator_channels;
  const int64_t time_dim = ch[0] * 4;
  time_mlp = register_module("time_mlp", std::make_shared<Node>());
  time_linear_1 = time_mlp->register_module("linear_1", torch::nn::Linear(in_channels, time_dim));
  time_linear_2 = time_mlp->register_module("linear_2", torch::nn::Linear(time_dim, time_dim));
  if (c.meanflow)
    time_embed_mixer = register_module(
        "time_embed_mixer", torch::nn::Linear(torch::nn::LinearOptions(2 * time_dim, time_dim).bias(false)));

  auto make_level = [&](Node& parent, size_t index, int64_t dim_in, int64_t dim_out) {
    auto node = parent.register_module(std::to_string(index), std::make_shared<Node>());
    UnetLevel lv;
    lv.resnet = node->register_module("0", std::make_shared<CausalResnetBlock1D>(dim_in, dim_out, time_dim));
    auto list = node->register_module("1", std::make_shared<Node>());
    for (int64_t j = 0; j < c.n_blocks; ++j)
      lv.transformers.push_back(list->register_module(
          std::to_string(j), std::make_shared<TransformerBlock>(dim_out, c.num_heads, c.attention_head_dim)));
    return std::make_pair(node, lv);
  };

  down_blocks = register_module("down_blocks", std::make_shared<Node>());
  int64_t out_ch = in_channels;
  for (size_t i = 0; i < ch.size(); ++i) {
    const int64_t in_ch = out_ch;
    out_ch = ch[i];
    auto [node, lv] = make_level(*down_blocks, i, in_ch, out_ch);
    if (i + 1 == ch.size()) {
      lv.is_causal = true;
      lv.conv = node->register_module("2", torch::nn::Conv1d(torch::nn::Conv1dOptions(out_ch, out_ch, 3)));
    } else {  // Downsample1D
      auto ds = node->register_module("2", std::make_shared<Node>());
      lv.conv = ds->register_module("conv", torch::nn::Conv1d(torch::nn::Conv1dOptions(out_ch, out_ch, 3).stride(2).padding(1)));
    }
    downs.push_back(lv);
  }
  mid_blocks = register_module("mid_blocks", std::make_shared<Node>());
  for (int64_t i = 0; i < c.num_mid_blocks; ++i) mids.push_back(make_level(*mid_blocks, i, ch.back(), ch.back()).second);

  up_blocks = register_module("up_blocks", std::make_shared<Node>());
  std::vector<int64_t> rch(ch.rbegin(), ch.rend());
  rch.push_back(ch[0]);
  for (size_t i = 0; i + 1 < rch.size(); ++i) {
    auto [node, lv] = make_level(*up_blocks, i, rch[i] * 2, rch[i + 1]);
    const int64_t o = rch[i + 1];
    if (i + 2 == rch.size()) {
      lv.is_causal = true;
      lv.conv = node->register_module("2", torch::nn::Conv1d(torch::nn::Conv1dOptions(o, o, 3)));
    } else {  // Upsample1D(use_conv_transpose=True)
      auto us = node->register_module("2", std::make_shared<Node>());
      lv.conv_t = us->register_module("conv", torch::nn::ConvTranspose1d(torch::nn::ConvTranspose1dOptions(o, o, 4).stride(2).padding(1)));
    }
    ups.push_back(lv);
  }
  final_block = register_module("final_block", std::make_shared<CausalBlock1D>(rch.back(), rch.back()));
  final_proj = register_module("final_proj", torch::nn::Conv1d(torch::nn::Conv1dOptions(rch.back(), c.output_size, 1)));
}

void ConditionalDecoder::fuse() {
  for (auto* levels : {&downs, &mids, &ups})
    for (auto& lv : *levels)
      for (auto& tb : lv.transformers) tb->fuse();
}

torch::Tensor ConditionalDecoder::forward(const torch::Tensor& x_in, const torch::Tensor& mask,
                                          const torch::Tensor& mu, const torch::Tensor& t,
                                          const torch::Tensor& spks, const torch::Tensor& cond,
                                          const torch::Tensor& r) {
  // The sinusoidal embedding is computed in float32 from float32 times (a
  // bf16 t would be coarser than the step size) and then cast to the
  // weights' dtype.
  const auto dtype = x_in.scalar_type();
  torch::Tensor temb;
  if (time_embed_mixer) {
    TORCH_CHECK(r.defined(), "the mean-flow estimator needs the end time r");
    const int64_t B = t.size(0);
    // t and r through the same embedding + MLP as one batch, then mixed:
    // mixer([mlp(emb(t)), mlp(emb(r))]).
    torch::Tensor e = sinusoidal_time(torch::cat({t, r.expand_as(t)}), in_channels).to(dtype);
    e = time_linear_2(torch::silu(time_linear_1(e)));
    temb = time_embed_mixer(torch::cat({e.slice(0, 0, B), e.slice(0, B, 2 * B)}, 1));
  } else {
    temb = time_linear_2(torch::silu(time_linear_1(sinusoidal_time(t, in_channels).to(dtype))));
  }
  // Every resnet's mlp starts with Mish of the same embedding.
  const torch::Tensor tmish = mish_any(temb);

  const int64_t T = x_in.size(2);
  // Time-major from here on ([B, T, C]); channels stacked as x, mu, spks, cond.
  torch::Tensor x =
      torch::cat({x_in, mu, spks.unsqueeze(-1).expand({spks.size(0), spks.size(1), T}), cond}, 1).transpose(1, 2).contiguous();

  auto level_masks = [](const torch::Tensor& m) {  // m [B, T, 1]
    // diffusers adds (1 - mask) * -1e10 to the scores of padded keys.
    const bool ones = m.min().item<float>() == 1.0f;
    torch::Tensor bias;
    if (!ones) bias = ((1.0 - m) * -1.0e10).transpose(1, 2).unsqueeze(1);  // [B, 1, 1, T]
    return std::make_pair(ones, bias);
  };
  auto run_transformers = [](UnetLevel& lv, torch::Tensor h, const torch::Tensor& bias) {
    for (auto& tb : lv.transformers) h = tb->forward(h, bias);
    return h;
  };
  // Generic (non-Chatterbox) samplers run channel-major.
  auto channel_major = [](auto& module, const torch::Tensor& h) {
    return module->forward(h.transpose(1, 2)).transpose(1, 2).contiguous();
  };

  std::vector<torch::Tensor> hiddens;
  std::vector<torch::Tensor> masks{mask.transpose(1, 2)};
  for (auto& lv : downs) {
    torch::Tensor m = masks.back();
    auto [ones, bias] = level_masks(m);
    x = lv.resnet->forward(x, m, tmish, ones);
    x = run_transformers(lv, x, bias);
    hiddens.push_back(x);
    torch::Tensor xm = ones ? x : x * m;
    x = lv.is_causal ? causal_conv_btc(lv.conv, xm) : channel_major(lv.conv, xm);
    masks.push_back(m.slice(1, 0, c10::nullopt, 2));
  }
  masks.pop_back();
  {
    torch::Tensor m = masks.back();
    auto [ones, bias] = level_masks(m);
    for (auto& lv : mids) {
      x = lv.resnet->forward(x, m, tmish, ones);
      x = run_transformers(lv, x, bias);
    }
  }
  torch::Tensor m_up;
  bool up_ones = true;
  for (auto& lv : ups) {
    m_up = masks.back();
    masks.pop_back();
    torch::Tensor skip = hiddens.back();
    hiddens.pop_back();
    x = torch::cat({x.slice(1, 0, skip.size(1)), skip}, -1);
    auto [ones, bias] = level_masks(m_up);
    up_ones = ones;
    x = lv.resnet->forward(x, m_up, tmish, ones);
    x = run_transformers(lv, x, bias);
    torch::Tensor xm = ones ? x : x * m_up;
    x = lv.is_causal ? causal_conv_btc(lv.conv, xm) : channel_major(lv.conv_t, xm);
  }
  x = final_block->forward(x, m_up, up_ones);
  torch::Tensor out = causal_conv_btc(final_proj, up_ones ? x : x * m_up).transpose(1, 2).contiguous();
  return up_ones ? out : out * mask;
}

}  // namespace chatterbox::s3gen
