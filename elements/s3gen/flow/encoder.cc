// UpsampleConformerEncoder of the S3Gen flow (CosyVoice 2 / Chatterbox):
// linear embed + rel-pos conformer blocks at the token rate, nearest x2
// upsampling with a causal conv, then more conformer blocks at the mel rate.
#include "elements/s3gen/flow/flow_modules.h"

#include <torch/nn/functional/activation.h>
#include <torch/nn/functional/padding.h>
#include <torch/types.h>

#include <cmath>
#include <string>

namespace chatterbox::s3gen {

namespace F = torch::nn::functional;

torch::Tensor espnet_rel_pos_emb(int64_t T, int64_t d, const torch::TensorOptions& opts) {
  // Same float32 arithmetic as EspnetRelPositionalEncoding.extend_pe: the
  // argument is (integer position) * div_term, negative positions being the
  // exact negation, so the table matches the reference's slice bit for bit
  // up to the sin/cos implementation.
  torch::Tensor div = torch::exp(torch::arange(0, d, 2, torch::kFloat) * -(std::log(10000.0) / d));
  torch::Tensor pos = torch::arange(T - 1, -T, -1, torch::kFloat).unsqueeze(1);  // T-1 ... -(T-1)
  torch::Tensor arg = pos * div;
  torch::Tensor pe = torch::stack({torch::sin(arg), torch::cos(arg)}, -1).reshape({1, 2 * T - 1, d});
  return pe.to(opts);
}

RelPosAttention::RelPosAttention(int64_t n_feat, int64_t n_head) : h(n_head), d_k(n_feat / n_head) {
  linear_q = register_module("linear_q", torch::nn::Linear(n_feat, n_feat));
  linear_k = register_module("linear_k", torch::nn::Linear(n_feat, n_feat));
  linear_v = register_module("linear_v", torch::nn::Linear(n_feat, n_feat));
  linear_out = register_module("linear_out", torch::nn::Linear(n_feat, n_feat));
  linear_pos = register_module("linear_pos", torch::nn::Linear(torch::nn::LinearOptions(n_feat, n_feat).bias(false)));
  pos_bias_u = register_parameter("pos_bias_u", torch::zeros({h, d_k}));
  pos_bias_v = register_parameter("pos_bias_v", torch::zeros({h, d_k}));
}

torch::Tensor RelPosAttention::forward(const torch::Tensor& x, const torch::Tensor& pos_emb) {
  const int64_t B = x.size(0), T = x.size(1), L = pos_emb.size(1);
  torch::Tensor q = linear_q(x).view({B, T, h, d_k});
  torch::Tensor k = linear_k(x).view({B, T, h, d_k}).transpose(1, 2);
  torch::Tensor v = linear_v(x).view({B, T, h, d_k}).transpose(1, 2);
  torch::Tensor p = linear_pos(pos_emb).view({1, L, h, d_k}).transpose(1, 2);  // [1, h, 2T-1, d_k]

  torch::Tensor q_u = (q + pos_bias_u).transpose(1, 2);  // [B, h, T, d_k]
  torch::Tensor q_v = (q + pos_bias_v).transpose(1, 2);
  torch::Tensor ac = torch::matmul(q_u, k.transpose(-2, -1));                 // [B, h, T, T]
  torch::Tensor bd = torch::matmul(q_v, p.transpose(-2, -1)).contiguous();    // [B, h, T, 2T-1]
  // rel_shift: out[i][j] = bd[i][T-1-i+j] (relative position i-j). A strided
  // view instead of the reference's pad/reshape copy.
  torch::Tensor bd_shift = bd.as_strided({B, h, T, T}, {h * T * L, T * L, L - 1, 1}, bd.storage_offset() + T - 1);
  torch::Tensor scores = ac.add_(bd_shift).div_(std::sqrt(static_cast<double>(d_k)));
  torch::Tensor attn = torch::softmax(scores, -1);
  torch::Tensor out = torch::matmul(attn, v).transpose(1, 2).reshape({B, T, h * d_k});
  return linear_out(out);
}

ConformerLayer::ConformerLayer(int64_t size, int64_t heads, int64_t linear_units) {
  self_attn = register_module("self_attn", std::make_shared<RelPosAttention>(size, heads));
  feed_forward = register_module("feed_forward", std::make_shared<Node>());
  w_1 = feed_forward->register_module("w_1", torch::nn::Linear(size, linear_units));
  w_2 = feed_forward->register_module("w_2", torch::nn::Linear(linear_units, size));
  // eps 1e-12 inside the conformer layers (wenet convention).
  norm_ff = register_module("norm_ff", torch::nn::LayerNorm(torch::nn::LayerNormOptions({size}).eps(1e-12)));
  norm_mha = register_module("norm_mha", torch::nn::LayerNorm(torch::nn::LayerNormOptions({size}).eps(1e-12)));
}

torch::Tensor ConformerLayer::forward(torch::Tensor x, const torch::Tensor& pos_emb) {
  x = x + self_attn->forward(norm_mha(x), pos_emb);
  return x + w_2(torch::silu(w_1(norm_ff(x))));
}

LinearEmbed::LinearEmbed(int64_t idim, int64_t odim) : xscale(std::sqrt(static_cast<double>(odim))) {
  out = register_module("out", std::make_shared<Node>());
  linear = out->register_module("0", torch::nn::Linear(idim, odim));
  norm = out->register_module("1", torch::nn::LayerNorm(torch::nn::LayerNormOptions({odim}).eps(1e-5)));
}

torch::Tensor LinearEmbed::forward(const torch::Tensor& x) { return norm(linear(x)).mul_(xscale); }

UpsampleConformerEncoder::UpsampleConformerEncoder(const S3GenFlowConfig& c)
    : d(c.encoder_output_size), pre_lookahead(c.pre_lookahead_len), stride(c.up_stride) {
  embed = register_module("embed", std::make_shared<LinearEmbed>(c.input_size, d));
  after_norm = register_module("after_norm", torch::nn::LayerNorm(torch::nn::LayerNormOptions({d}).eps(1e-5)));
  pre_lookahead_layer = register_module("pre_lookahead_layer", std::make_shared<Node>());
  pl_conv1 = pre_lookahead_layer->register_module("conv1", torch::nn::Conv1d(torch::nn::Conv1dOptions(d, d, pre_lookahead + 1)));
  pl_conv2 = pre_lookahead_layer->register_module("conv2", torch::nn::Conv1d(torch::nn::Conv1dOptions(d, d, 3)));
  encoders = register_module("encoders", std::make_shared<Node>());
  for (int64_t i = 0; i < c.encoder_blocks; ++i)
    enc_layers.push_back(encoders->register_module(
        std::to_string(i), std::make_shared<ConformerLayer>(d, c.encoder_heads, c.encoder_linear_units)));
  up_layer = register_module("up_layer", std::make_shared<Node>());
  up_conv = up_layer->register_module("conv", torch::nn::Conv1d(torch::nn::Conv1dOptions(d, d, 2 * stride + 1)));
  // up_embed is built with (input_size, output_size) upstream but consumes the
  // up_layer output; the two widths are equal in every Chatterbox config
  // (checked in S3GenFlowConfig::validate).
  up_embed = register_module("up_embed", std::make_shared<LinearEmbed>(c.input_size, d));
  up_encoders = register_module("up_encoders", std::make_shared<Node>());
  for (int64_t i = 0; i < c.encoder_up_blocks; ++i)
    up_layers.push_back(up_encoders->register_module(
        std::to_string(i), std::make_shared<ConformerLayer>(d, c.encoder_heads, c.encoder_linear_units)));
}

torch::Tensor UpsampleConformerEncoder::forward(const torch::Tensor& xs) {
  // Batch 1, no padding, full-context attention (static_chunk_size 0): the
  // reference's masks are all true, so they are not materialised here.
  torch::Tensor x = embed->forward(xs);
  torch::Tensor pos = espnet_rel_pos_emb(x.size(1), d, x.options());

  // PreLookaheadLayer: right pad (look-ahead), conv k=L+1, leaky_relu(0.01),
  // left pad 2, conv k3, residual.
  {
    torch::Tensor y = x.transpose(1, 2);
    y = torch::constant_pad_nd(y, {0, pre_lookahead});
    y = torch::leaky_relu(pl_conv1(y), 0.01);
    y = torch::constant_pad_nd(y, {2, 0});
    y = pl_conv2(y);
    x = x + y.transpose(1, 2);
  }
  for (auto& layer : enc_layers) x = layer->forward(x, pos);

  // Upsample1D: nearest x stride, left pad 2*stride, conv k=2*stride+1.
  {
    torch::Tensor y = x.transpose(1, 2);
    y = y.repeat_interleave(stride, 2);
    y = torch::constant_pad_nd(y, {2 * stride, 0});
    y = up_conv(y);
    x = y.transpose(1, 2).contiguous();
  }
  x = up_embed->forward(x);
  pos = espnet_rel_pos_emb(x.size(1), d, x.options());
  for (auto& layer : up_layers) x = layer->forward(x, pos);
  return after_norm(x);
}

}  // namespace chatterbox::s3gen
