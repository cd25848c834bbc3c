// Internal: the torch::nn module tree of the S3Gen flow. Registered names
// mirror the reference state dict one to one (CausalMaskedDiffWithXvec,
// UpsampleConformerEncoder, ConditionalDecoder), so load_module maps keys
// directly. Not installed; include only from elements/s3gen/flow/*.cc.
#pragma once

#include "elements/s3gen/flow/s3gen_flow.h"

#include <torch/nn/module.h>
#include <torch/nn/modules/container/modulelist.h>
#include <torch/nn/modules/conv.h>
#include <torch/nn/modules/embedding.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/modules/normalization.h>

#include <memory>
#include <vector>

namespace chatterbox::s3gen {

// A parameterless node that only carries named children ("0", "1", "mlp"),
// standing in for nn.Sequential / nn.ModuleList so state-dict paths match.
struct Node : torch::nn::Module {};

// ---------------------------------------------------------------- encoder --

// RelPositionMultiHeadedAttention (rel_selfattn) with EspnetRelPositionalEncoding.
struct RelPosAttention : torch::nn::Module {
  RelPosAttention(int64_t n_feat, int64_t n_head);
  // x [B, T, C], pos_emb [1, 2T-1, C] -> [B, T, C]; full context, no padding.
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& pos_emb);

  int64_t h, d_k;
  torch::nn::Linear linear_q{nullptr}, linear_k{nullptr}, linear_v{nullptr}, linear_out{nullptr},
      linear_pos{nullptr};
  torch::Tensor pos_bias_u, pos_bias_v;
};

// ConformerEncoderLayer: normalize_before, no macaron, no conv module, swish FFN.
struct ConformerLayer : torch::nn::Module {
  ConformerLayer(int64_t size, int64_t heads, int64_t linear_units);
  torch::Tensor forward(torch::Tensor x, const torch::Tensor& pos_emb);

  std::shared_ptr<RelPosAttention> self_attn;
  std::shared_ptr<Node> feed_forward;  // w_1, w_2
  torch::nn::Linear w_1{nullptr}, w_2{nullptr};
  torch::nn::LayerNorm norm_ff{nullptr}, norm_mha{nullptr};
};

// LinearNoSubsampling: out.0 Linear, out.1 LayerNorm(eps 1e-5), then x * sqrt(d).
struct LinearEmbed : torch::nn::Module {
  LinearEmbed(int64_t idim, int64_t odim);
  torch::Tensor forward(const torch::Tensor& x);

  std::shared_ptr<Node> out;
  torch::nn::Linear linear{nullptr};
  torch::nn::LayerNorm norm{nullptr};
  double xscale;
};

struct UpsampleConformerEncoder : torch::nn::Module {
  explicit UpsampleConformerEncoder(const S3GenFlowConfig& c);
  // xs [B, T, input_size] -> [B, stride*T, output_size]
  torch::Tensor forward(const torch::Tensor& xs);

  int64_t d, pre_lookahead, stride;
  std::shared_ptr<LinearEmbed> embed, up_embed;
  torch::nn::LayerNorm after_norm{nullptr};
  std::shared_ptr<Node> pre_lookahead_layer, up_layer;
  torch::nn::Conv1d pl_conv1{nullptr}, pl_conv2{nullptr}, up_conv{nullptr};
  std::shared_ptr<Node> encoders, up_encoders;
  std::vector<std::shared_ptr<ConformerLayer>> enc_layers, up_layers;
};

// EspnetRelPositionalEncoding table for T frames: [1, 2T-1, d], relative
// positions T-1 ... -(T-1).
torch::Tensor espnet_rel_pos_emb(int64_t T, int64_t d, const torch::TensorOptions& opts);

// -------------------------------------------------------------- estimator --

// Estimator activations are time-major [B, T, C] and masks [B, T, 1]
// (the reference is channel-major; only the layout differs).
// CausalBlock1D: block.0 CausalConv1d(k3), block.2 LayerNorm over channels, Mish.
struct CausalBlock1D : torch::nn::Module {
  CausalBlock1D(int64_t dim, int64_t dim_out);
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& mask, bool mask_is_ones);

  std::shared_ptr<Node> block;
  torch::nn::Conv1d conv{nullptr};
  torch::nn::LayerNorm norm{nullptr};
};

struct CausalResnetBlock1D : torch::nn::Module {
  CausalResnetBlock1D(int64_t dim, int64_t dim_out, int64_t time_emb_dim);
  // time_mish = mish(time embedding), shared by every block of one call.
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& mask, const torch::Tensor& time_mish,
                        bool mask_is_ones);

  std::shared_ptr<Node> mlp;  // mlp.1 Linear (mlp.0 is Mish)
  torch::nn::Linear mlp_linear{nullptr};
  std::shared_ptr<CausalBlock1D> block1, block2;
  torch::nn::Conv1d res_conv{nullptr};
};

// diffusers BasicTransformerBlock as the estimator uses it: self-attention
// (to_q/k/v without bias, to_out.0 with bias) and a GELU FFN, pre-LayerNorm.
struct TransformerBlock : torch::nn::Module {
  TransformerBlock(int64_t dim, int64_t heads, int64_t head_dim);
  // x [B, T, C]; bias [B, 1, 1, T] additive key padding bias or undefined.
  torch::Tensor forward(torch::Tensor x, const torch::Tensor& bias);

  int64_t heads, head_dim;
  torch::nn::LayerNorm norm1{nullptr}, norm3{nullptr};
  std::shared_ptr<Node> attn1, to_out, ff, ff_net, ff_gelu;
  torch::nn::Linear to_q{nullptr}, to_k{nullptr}, to_v{nullptr}, to_out0{nullptr}, ff_proj{nullptr},
      ff_out{nullptr};
  torch::Tensor w_qkv;  // [3 * inner, C], filled by fuse() after loading
  void fuse();
};

struct UnetLevel {
  std::shared_ptr<CausalResnetBlock1D> resnet;
  std::vector<std::shared_ptr<TransformerBlock>> transformers;
  // Down/up sampler: a causal conv at the last level, otherwise a stride-2
  // Conv1d (down) or ConvTranspose1d (up).
  torch::nn::Conv1d conv{nullptr};
  torch::nn::ConvTranspose1d conv_t{nullptr};
  bool is_causal = false;
};

struct ConditionalDecoder : torch::nn::Module {
  explicit ConditionalDecoder(const S3GenFlowConfig& c);
  // r: the mean-flow end time (meanflow models only; ignored otherwise, as
  // upstream). t and r [B], float32 whatever the weights' dtype.
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& mask, const torch::Tensor& mu,
                        const torch::Tensor& t, const torch::Tensor& spks, const torch::Tensor& cond,
                        const torch::Tensor& r = {});
  void fuse();

  int64_t in_channels;
  std::shared_ptr<Node> time_mlp;
  torch::nn::Linear time_linear_1{nullptr}, time_linear_2{nullptr};
  // Mean-flow (Turbo) only: Linear(2D -> D, no bias) over [emb(t), emb(r)]
  // (upstream's intmeanflow time mixer).
  torch::nn::Linear time_embed_mixer{nullptr};
  std::shared_ptr<Node> down_blocks, mid_blocks, up_blocks;
  std::vector<UnetLevel> downs, mids, ups;
  std::shared_ptr<CausalBlock1D> final_block;
  torch::nn::Conv1d final_proj{nullptr};
};

// ------------------------------------------------------------------- flow --

struct FlowModel : torch::nn::Module {
  explicit FlowModel(const S3GenFlowConfig& c);

  S3GenFlowConfig cfg;
  torch::nn::Embedding input_embedding{nullptr};
  torch::nn::Linear spk_embed_affine_layer{nullptr}, encoder_proj{nullptr};
  std::shared_ptr<UpsampleConformerEncoder> encoder;
  std::shared_ptr<Node> decoder;  // decoder.estimator
  std::shared_ptr<ConditionalDecoder> estimator;
};

// Causal (left pad k-1) Conv1d on time-major [B, T, C], as one GEMM over
// unfolded frames.
torch::Tensor causal_conv_btc(torch::nn::Conv1d& conv, const torch::Tensor& x);

}  // namespace chatterbox::s3gen
