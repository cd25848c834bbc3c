// The Vocos module tree (internal to elements/vocoder/vocos): registered
// names mirror the vocos.models / vocos.heads state dicts, so load_module and
// state_dict() map one to one. The inference library (vocos.cc) reads these
// parameters into its own fast path; the trainer (train/) uses the
// differentiable forward() methods.
#pragma once

#include "elements/vocoder/vocos/vocos.h"

#include <ATen/ATen.h>
#include <torch/nn/module.h>
#include <torch/nn/modules/container/modulelist.h>
#include <torch/nn/modules/conv.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/modules/normalization.h>
#include <torch/types.h>

#include <algorithm>

namespace chatterbox::vocos_modules {

namespace nn = torch::nn;

struct ConvNeXtBlockImpl : nn::Module {
  nn::Conv1d dwconv{nullptr};
  nn::LayerNorm norm{nullptr};
  nn::Linear pwconv1{nullptr}, pwconv2{nullptr};
  torch::Tensor gamma;
  explicit ConvNeXtBlockImpl(const VocosConfig& c) {
    dwconv = register_module("dwconv", nn::Conv1d(nn::Conv1dOptions(c.dim, c.dim, 7).padding(3).groups(c.dim)));
    norm = register_module("norm", nn::LayerNorm(nn::LayerNormOptions({c.dim}).eps(c.layer_norm_eps)));
    pwconv1 = register_module("pwconv1", nn::Linear(c.dim, c.intermediate_dim));
    pwconv2 = register_module("pwconv2", nn::Linear(c.intermediate_dim, c.dim));
    // layer_scale_init_value = 1 / num_layers in the reference.
    gamma = register_parameter("gamma", torch::full({c.dim}, 1.0 / std::max(1, c.num_layers)));
  }
  // x: [B, T, C] (channels-last, as the reference's Linear layers see it).
  at::Tensor forward(const at::Tensor& x) {
    at::Tensor y = dwconv->forward(x.transpose(1, 2)).transpose(1, 2);
    y = pwconv2->forward(at::gelu(pwconv1->forward(norm->forward(y))));
    return x + gamma * y;
  }
};
TORCH_MODULE(ConvNeXtBlock);

struct BackboneImpl : nn::Module {
  nn::Conv1d embed{nullptr};
  nn::LayerNorm norm{nullptr};
  nn::ModuleList convnext;
  nn::LayerNorm final_layer_norm{nullptr};
  explicit BackboneImpl(const VocosConfig& c) {
    embed = register_module("embed", nn::Conv1d(nn::Conv1dOptions(c.input_channels, c.dim, 7).padding(3)));
    norm = register_module("norm", nn::LayerNorm(nn::LayerNormOptions({c.dim}).eps(c.layer_norm_eps)));
    convnext = register_module("convnext", nn::ModuleList());
    for (int i = 0; i < c.num_layers; ++i) convnext->push_back(ConvNeXtBlock(c));
    final_layer_norm =
        register_module("final_layer_norm", nn::LayerNorm(nn::LayerNormOptions({c.dim}).eps(c.layer_norm_eps)));
  }
  ConvNeXtBlockImpl& block(size_t i) { return *convnext[i]->as<ConvNeXtBlockImpl>(); }
  at::Tensor forward(const at::Tensor& mel) {  // [B, M, T] -> [B, T, dim]
    at::Tensor x = norm->forward(embed->forward(mel).transpose(1, 2));
    for (size_t i = 0; i < convnext->size(); ++i) x = block(i).forward(x);
    return final_layer_norm->forward(x);
  }
};
TORCH_MODULE(Backbone);

struct ISTFTImpl : nn::Module {
  torch::Tensor window;
  explicit ISTFTImpl(const VocosConfig& c) {
    window = register_buffer("window", torch::hann_window(c.win_length, /*periodic=*/true));
  }
};
TORCH_MODULE(ISTFT);

struct HeadImpl : nn::Module {
  nn::Linear out{nullptr};
  ISTFT istft{nullptr};
  explicit HeadImpl(const VocosConfig& c) {
    out = register_module("out", nn::Linear(c.dim, c.n_fft + 2));
    istft = register_module("istft", ISTFT(c));
  }
};
TORCH_MODULE(Head);

struct NetImpl : nn::Module {
  VocosConfig cfg;
  Backbone backbone{nullptr};
  Head head{nullptr};
  at::Tensor envelope_cache;  // overlap-added window², for the last T
  int64_t envelope_T = -1;
  explicit NetImpl(const VocosConfig& c) : cfg(c) {
    backbone = register_module("backbone", Backbone(c));
    head = register_module("head", Head(c));
  }

  // Differentiable mel [B, M, T] -> audio [B, output_samples(T)]: ISTFTHead
  // with the iSTFT written as irfft + windowed overlap-add (col2im) divided by
  // the window envelope, then trimmed ("same": (win-hop)/2, "center": n_fft/2
  // each side) -- the same samples as the inference library's forward().
  at::Tensor forward(const at::Tensor& mel) {
    const int64_t B = mel.size(0), T = mel.size(2), F = cfg.n_fft / 2 + 1, n = cfg.n_fft, hop = cfg.hop_length;
    at::Tensor z = head->out->forward(backbone->forward(mel));  // [B, T, n_fft + 2]
    at::Tensor mag = at::clamp_max(at::exp(z.narrow(2, 0, F)), cfg.mag_clip_max);
    at::Tensor ph = z.narrow(2, F, F);
    at::Tensor spec = at::complex(mag * at::cos(ph), mag * at::sin(ph));
    at::Tensor fr = at::fft_irfft(spec, n, -1) * head->istft->window;  // [B, T, n_fft]
    const int64_t size = (T - 1) * hop + n;
    at::Tensor y = at::col2im(fr.transpose(1, 2), {1, size}, {1, n}, {1, 1}, {0, 0}, {1, hop}).view({B, size});
    if (envelope_T != T) {
      torch::NoGradGuard ng;
      at::Tensor wsq = head->istft->window.square().view({1, n, 1}).expand({1, n, T}).contiguous();
      envelope_cache = at::col2im(wsq, {1, size}, {1, n}, {1, 1}, {0, 0}, {1, hop}).view({size}).clamp_min(1e-11);
      envelope_T = T;
    }
    const int64_t off = cfg.trim_samples(), len = cfg.output_samples(T);
    return (y / envelope_cache).narrow(1, off, len);
  }
};
TORCH_MODULE(Net);

}  // namespace chatterbox::vocos_modules
