// Multi-period and multi-resolution discriminators, hinge and feature-matching
// losses (the Vocos recipe's GAN part); see discriminators.h.
#include "elements/vocoder/vocos/train/discriminators.h"

#include <ATen/CPUGeneratorImpl.h>
#include <torch/types.h>

#include <cmath>
#include <stdexcept>
#include <string>

namespace chatterbox::vocos_train {

namespace nn = torch::nn;

namespace {

constexpr double kLeakySlope = 0.1;  // both reference discriminators

// The holder's forwarding constructor cannot take brace lists.
WNConv2d wn_conv(int64_t in, int64_t out, std::array<int64_t, 2> k, std::array<int64_t, 2> s,
                 std::array<int64_t, 2> p) {
  return WNConv2d(std::make_shared<WNConv2dImpl>(in, out, k, s, p));
}

std::string list_str(const std::vector<int64_t>& v) {
  std::string s;
  for (auto x : v) s += (s.empty() ? "" : ",") + std::to_string(x);
  return s;
}

}  // namespace

// --- config ----------------------------------------------------------------------

nlohmann::json DiscriminatorConfig::to_json() const {
  return {{"periods", periods}, {"mpd_channels", mpd_channels}, {"fft_sizes", fft_sizes}, {"mrd_channels", mrd_channels}};
}

DiscriminatorConfig DiscriminatorConfig::from_json(const nlohmann::json& j) {
  DiscriminatorConfig c;
  c.periods = j.at("periods").get<std::vector<int64_t>>();
  c.mpd_channels = j.at("mpd_channels").get<std::vector<int64_t>>();
  c.fft_sizes = j.at("fft_sizes").get<std::vector<int64_t>>();
  c.mrd_channels = j.at("mrd_channels").get<int64_t>();
  return c;
}

void DiscriminatorConfig::validate(int64_t segment_samples) const {
  if (periods.empty()) throw std::invalid_argument("GAN: at least one MPD period is needed");
  for (auto p : periods)
    if (p < 1 || p >= segment_samples)
      throw std::invalid_argument("GAN: MPD period " + std::to_string(p) + " must be in [1, segment samples " +
                                  std::to_string(segment_samples) + ")");
  if (mpd_channels.size() != 5)
    throw std::invalid_argument("GAN: the MPD has 5 convolutions; --mpd-channels gave " +
                                std::to_string(mpd_channels.size()) + " (" + list_str(mpd_channels) + ")");
  for (auto c : mpd_channels)
    if (c < 1) throw std::invalid_argument("GAN: MPD channels must be positive (" + list_str(mpd_channels) + ")");
  if (mrd_channels < 1) throw std::invalid_argument("GAN: MRD channels must be positive");
  if (fft_sizes.empty()) throw std::invalid_argument("GAN: at least one MRD window length is needed");
  for (auto w : fft_sizes)
    if (w < 32 || w % 4 != 0 || w / 2 >= segment_samples)
      throw std::invalid_argument("GAN: MRD window " + std::to_string(w) +
                                  " must be a multiple of 4, >= 32 and less than twice the segment (" +
                                  std::to_string(segment_samples) + " samples)");
}

// --- weight-normed conv ----------------------------------------------------------

WNConv2dImpl::WNConv2dImpl(int64_t in, int64_t out, std::array<int64_t, 2> k, std::array<int64_t, 2> s,
                           std::array<int64_t, 2> p)
    : stride(s), padding(p) {
  weight_g = register_parameter("weight_g", torch::ones({out, 1, 1, 1}));
  weight_v = register_parameter("weight_v", torch::zeros({out, in, k[0], k[1]}));
  bias = register_parameter("bias", torch::zeros({out}));
}

at::Tensor WNConv2dImpl::forward(const at::Tensor& x) {
  return at::conv2d(x, at::_weight_norm(weight_v, weight_g, 0), bias, stride, padding);
}

// --- multi-period ------------------------------------------------------------------

DiscriminatorPImpl::DiscriminatorPImpl(int64_t p, const std::vector<int64_t>& ch) : period(p) {
  // kernel (5,1); stride (3,1) except the last conv; padding (2,0).
  convs = register_module("convs", nn::ModuleList());
  int64_t in = 1;
  for (size_t i = 0; i < ch.size(); ++i) {
    convs->push_back(wn_conv(in, ch[i], {5, 1}, {i + 1 < ch.size() ? int64_t{3} : int64_t{1}, 1}, {2, 0}));
    in = ch[i];
  }
  conv_post = register_module("conv_post", wn_conv(in, 1, {3, 1}, {1, 1}, {1, 0}));
}

DiscOut DiscriminatorPImpl::forward(const at::Tensor& audio) {
  at::Tensor x = audio.unsqueeze(1);  // [B, 1, N]
  const int64_t B = x.size(0), N = x.size(2);
  int64_t n = N;
  if (N % period != 0) {  // reflect-pad the end up to a whole number of periods
    const int64_t pad = period - N % period;
    x = at::reflection_pad1d(x, {0, pad});
    n += pad;
  }
  x = x.view({B, 1, n / period, period});
  DiscOut out;
  for (size_t i = 0; i < convs->size(); ++i) {
    x = at::leaky_relu(convs[i]->as<WNConv2dImpl>()->forward(x), kLeakySlope);
    if (i > 0) out.fmap.push_back(x);
  }
  x = conv_post->forward(x);
  out.fmap.push_back(x);
  out.score = x.flatten(1);
  return out;
}

// --- multi-resolution --------------------------------------------------------------

DiscriminatorRImpl::DiscriminatorRImpl(int64_t w, int64_t ch) : window_length(w), hop(w / 4) {
  window = at::hann_window(w, /*periodic=*/true, at::kFloat);
  const int64_t nb = w / 2 + 1;
  const double edges[][2] = {{0.0, 0.1}, {0.1, 0.25}, {0.25, 0.5}, {0.5, 0.75}, {0.75, 1.0}};
  for (auto& e : edges) bands.emplace_back(static_cast<int64_t>(e[0] * nb), static_cast<int64_t>(e[1] * nb));
  band_convs = register_module("band_convs", nn::ModuleList());
  for (size_t b = 0; b < bands.size(); ++b) {
    nn::ModuleList stack;
    // (3,9) kernels, the middle three halving the frequency axis, then a (3,3).
    stack->push_back(wn_conv(2, ch, {3, 9}, {1, 1}, {1, 4}));
    for (int i = 0; i < 3; ++i) stack->push_back(wn_conv(ch, ch, {3, 9}, {1, 2}, {1, 4}));
    stack->push_back(wn_conv(ch, ch, {3, 3}, {1, 1}, {1, 1}));
    band_convs->push_back(stack);
  }
  conv_post = register_module("conv_post", wn_conv(ch, 1, {3, 3}, {1, 1}, {1, 1}));
}

std::vector<at::Tensor> DiscriminatorRImpl::spectrogram(const at::Tensor& audio) const {
  at::Tensor x = audio - audio.mean(-1, /*keepdim=*/true);
  x = 0.8 * x / (x.abs().amax(-1, /*keepdim=*/true) + 1e-9);
  // torchaudio Spectrogram(power=None): center=True, reflect pad, hann window.
  const int64_t pad = window_length / 2;
  x = at::reflection_pad1d(x.unsqueeze(1), {pad, pad}).squeeze(1);
  at::Tensor spec = at::fft_rfft(x.unfold(-1, window_length, hop) * window, window_length, -1);  // [B, T, F]
  at::Tensor ri = at::view_as_real(spec).permute({0, 3, 1, 2});                              // [B, 2, T, F]
  std::vector<at::Tensor> out;
  for (auto& [lo, hi] : bands) out.push_back(ri.narrow(3, lo, hi - lo));
  return out;
}

DiscOut DiscriminatorRImpl::forward(const at::Tensor& audio) {
  std::vector<at::Tensor> xb = spectrogram(audio), ys;
  DiscOut out;
  for (size_t b = 0; b < xb.size(); ++b) {
    at::Tensor x = xb[b];
    auto& stack = *band_convs[b]->as<nn::ModuleListImpl>();
    for (size_t i = 0; i < stack.size(); ++i) {
      x = at::leaky_relu(stack[i]->as<WNConv2dImpl>()->forward(x), kLeakySlope);
      if (i > 0) out.fmap.push_back(x);
    }
    ys.push_back(x);
  }
  at::Tensor x = conv_post->forward(at::cat(ys, -1));
  out.fmap.push_back(x);
  out.score = x;
  return out;
}

// --- both, and the losses ------------------------------------------------------------

DiscriminatorsImpl::DiscriminatorsImpl(const DiscriminatorConfig& c) : cfg(c) {
  multiperioddisc = register_module("multiperioddisc", SubDiscriminators());
  multiresddisc = register_module("multiresddisc", SubDiscriminators());
  for (auto p : c.periods) multiperioddisc->discriminators->push_back(DiscriminatorP(p, c.mpd_channels));
  for (auto w : c.fft_sizes) multiresddisc->discriminators->push_back(DiscriminatorR(w, c.mrd_channels));
}

void DiscriminatorsImpl::init(uint64_t seed) {
  torch::NoGradGuard ng;
  at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(seed);
  for (auto& m : modules(/*include_self=*/false)) {
    auto* conv = m->as<WNConv2dImpl>();
    if (!conv) continue;
    const auto& v = conv->weight_v;
    const double bound = 1.0 / std::sqrt(static_cast<double>(v.numel() / v.size(0)));
    v.copy_(at::rand(v.sizes(), gen, at::TensorOptions().dtype(at::kFloat)).mul_(2 * bound).sub_(bound));
    conv->bias.copy_(at::rand(conv->bias.sizes(), gen, at::TensorOptions().dtype(at::kFloat)).mul_(2 * bound).sub_(bound));
    conv->weight_g.copy_(v.flatten(1).norm(2, 1).view_as(conv->weight_g));
  }
}

std::vector<DiscOut> DiscriminatorsImpl::forward(const at::Tensor& audio) {
  std::vector<DiscOut> out;
  for (auto& d : *multiperioddisc->discriminators) out.push_back(d->as<DiscriminatorPImpl>()->forward(audio));
  for (auto& d : *multiresddisc->discriminators) out.push_back(d->as<DiscriminatorRImpl>()->forward(audio));
  return out;
}

void DiscriminatorsImpl::set_requires_grad(bool on) {
  for (auto& p : parameters()) p.requires_grad_(on);
}

DiscLoss DiscriminatorsImpl::discriminator_loss(const at::Tensor& real, const at::Tensor& generated,
                                                double mrd_weight) {
  const int64_t B = real.size(0);
  const size_t n_mpd = cfg.periods.size();
  std::vector<DiscOut> outs = forward(at::cat({real, generated.detach()}, 0));
  DiscLoss l;
  l.mpd = at::zeros({}, at::kFloat);
  l.mrd = at::zeros({}, at::kFloat);
  for (size_t k = 0; k < outs.size(); ++k) {
    const at::Tensor& s = outs[k].score;
    at::Tensor term = at::relu(1 - s.narrow(0, 0, B)).mean() + at::relu(1 + s.narrow(0, B, B)).mean();
    (k < n_mpd ? l.mpd : l.mrd) = (k < n_mpd ? l.mpd : l.mrd) + term;
  }
  l.mpd = l.mpd / static_cast<double>(n_mpd);
  l.mrd = l.mrd / static_cast<double>(outs.size() - n_mpd);
  l.total = l.mpd + mrd_weight * l.mrd;
  return l;
}

GenAdvLoss DiscriminatorsImpl::generator_loss(const at::Tensor& real, const at::Tensor& generated) {
  const size_t n_mpd = cfg.periods.size();
  std::vector<DiscOut> r, g;
  set_requires_grad(false);  // the graph is recorded now: leave the weights out of it
  {
    torch::NoGradGuard ng;
    r = forward(real);
  }
  g = forward(generated);
  set_requires_grad(true);
  GenAdvLoss l;
  l.adv_mpd = l.adv_mrd = l.fm_mpd = l.fm_mrd = at::zeros({}, at::kFloat);
  for (size_t k = 0; k < g.size(); ++k) {
    const bool mp = k < n_mpd;
    at::Tensor adv = at::relu(1 - g[k].score).mean();
    at::Tensor fm = at::zeros({}, at::kFloat);
    for (size_t i = 0; i < g[k].fmap.size(); ++i) fm = fm + at::abs(r[k].fmap[i] - g[k].fmap[i]).mean();
    (mp ? l.adv_mpd : l.adv_mrd) = (mp ? l.adv_mpd : l.adv_mrd) + adv;
    (mp ? l.fm_mpd : l.fm_mrd) = (mp ? l.fm_mpd : l.fm_mrd) + fm;
  }
  const double kp = 1.0 / static_cast<double>(n_mpd), kr = 1.0 / static_cast<double>(g.size() - n_mpd);
  l.adv_mpd = l.adv_mpd * kp;
  l.fm_mpd = l.fm_mpd * kp;
  l.adv_mrd = l.adv_mrd * kr;
  l.fm_mrd = l.fm_mrd * kr;
  return l;
}

}  // namespace chatterbox::vocos_train
