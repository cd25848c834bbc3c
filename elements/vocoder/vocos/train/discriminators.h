// The adversarial part of the Vocos recipe (gemelo-ai/vocos: discriminators.py,
// loss.py, experiment.py), training-only: a multi-period discriminator (HiFi-GAN's
// MPD: the waveform folded by period p into a 2-D [N/p, p] image, weight-normed
// (k,1) convolutions striding along time) and a multi-resolution discriminator
// (DAC's MRD: complex STFT at three window lengths split into five frequency
// bands, a weight-normed 2-D conv stack per band), hinge losses and feature
// matching. Parameter names follow the reference's VocosExp state dict
// ("multiperioddisc.discriminators.0.convs.0.weight_v", ...).
#pragma once

#include <ATen/ATen.h>
#include <torch/nn/module.h>
#include <torch/nn/modules/container/modulelist.h>
#include <torch/nn/pimpl.h>

#include <nlohmann/json.hpp>

#include <array>
#include <cstdint>
#include <utility>
#include <vector>

namespace chatterbox::vocos_train {

// Shapes of the discriminators. The defaults are the reference's; narrower
// channel lists make the tests (and CPU experiments) cheap.
struct DiscriminatorConfig {
  std::vector<int64_t> periods{2, 3, 5, 7, 11};
  std::vector<int64_t> mpd_channels{32, 128, 512, 1024, 1024};  // the five (5,1) convs of each period
  std::vector<int64_t> fft_sizes{2048, 1024, 512};                // MRD window lengths (hop = window / 4)
  int64_t mrd_channels = 32;

  nlohmann::json to_json() const;
  static DiscriminatorConfig from_json(const nlohmann::json& j);
  // Throws std::invalid_argument naming the bad field, or a window that does
  // not fit segments of `segment_samples` (reflect padding needs window/2 < N).
  void validate(int64_t segment_samples) const;
};

// Conv2d with weight = g * v / ||v|| (torch.nn.utils.weight_norm, dim 0):
// parameters weight_g [out,1,1,1], weight_v, bias, as the reference names them.
struct WNConv2dImpl : torch::nn::Module {
  at::Tensor weight_g, weight_v, bias;
  std::array<int64_t, 2> stride, padding;
  WNConv2dImpl(int64_t in, int64_t out, std::array<int64_t, 2> kernel, std::array<int64_t, 2> stride,
               std::array<int64_t, 2> padding);
  at::Tensor forward(const at::Tensor& x);
};
TORCH_MODULE(WNConv2d);

// One discriminator's verdict on a batch: score map and the feature maps that
// feature matching compares (every conv output but the first, then conv_post).
struct DiscOut {
  at::Tensor score;
  std::vector<at::Tensor> fmap;
};

struct DiscriminatorPImpl : torch::nn::Module {
  int64_t period;
  torch::nn::ModuleList convs;
  WNConv2d conv_post{nullptr};
  DiscriminatorPImpl(int64_t period, const std::vector<int64_t>& channels);
  DiscOut forward(const at::Tensor& audio);  // [B, N]
};
TORCH_MODULE(DiscriminatorP);

struct DiscriminatorRImpl : torch::nn::Module {
  int64_t window_length, hop;
  at::Tensor window;                                 // hann (periodic); not a parameter
  std::vector<std::pair<int64_t, int64_t>> bands;    // [lo, hi) frequency bins
  torch::nn::ModuleList band_convs;
  WNConv2d conv_post{nullptr};
  DiscriminatorRImpl(int64_t window_length, int64_t channels);
  // DC removed, peak-normalised to 0.8, complex STFT (center, reflect) as
  // [B, 2 (re, im), frames, bins], split into the bands.
  std::vector<at::Tensor> spectrogram(const at::Tensor& audio) const;
  DiscOut forward(const at::Tensor& audio);  // [B, N]
};
TORCH_MODULE(DiscriminatorR);

// The hinge-loss terms, each already divided by the number of
// sub-discriminators as the reference's training_step does.
struct DiscLoss {
  at::Tensor total, mpd, mrd;  // total = mpd + mrd_weight * mrd
};
struct GenAdvLoss {
  at::Tensor adv_mpd, adv_mrd, fm_mpd, fm_mrd;
};

// A list of sub-discriminators under the name "discriminators", as the
// reference's MultiPeriodDiscriminator / MultiResolutionDiscriminator hold them.
struct SubDiscriminatorsImpl : torch::nn::Module {
  torch::nn::ModuleList discriminators;
  SubDiscriminatorsImpl() { discriminators = register_module("discriminators", torch::nn::ModuleList()); }
};
TORCH_MODULE(SubDiscriminators);

struct DiscriminatorsImpl : torch::nn::Module {
  DiscriminatorConfig cfg;
  SubDiscriminators multiperioddisc{nullptr}, multiresddisc{nullptr};
  explicit DiscriminatorsImpl(const DiscriminatorConfig& c);

  // torch's default Conv2d initialisation (kaiming-uniform, a = sqrt(5): v and
  // bias ~ U(+-1/sqrt(fan_in))), then g = ||v|| per output channel so the
  // initial weight is v, as weight_norm() leaves it; from `seed` alone.
  void init(uint64_t seed);

  // Every sub-discriminator on `audio` [B, N]: MPD outputs first, then MRD.
  std::vector<DiscOut> forward(const at::Tensor& audio);

  // Discriminator hinge loss: real and generated audio go through as one
  // batch (one forward, same values as two); generated is detached.
  DiscLoss discriminator_loss(const at::Tensor& real, const at::Tensor& generated, double mrd_weight);
  // Generator hinge loss and feature matching; gradients reach `generated`
  // only: the discriminators' own parameters are left out of the graph, and
  // the real audio's feature maps are computed without one.
  GenAdvLoss generator_loss(const at::Tensor& real, const at::Tensor& generated);

 private:
  void set_requires_grad(bool on);
};
TORCH_MODULE(Discriminators);

}  // namespace chatterbox::vocos_train
