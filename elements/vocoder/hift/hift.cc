// HiFT vocoder: module tree, loader, stage functions and exact streaming.
// Reference: resemble-ai/chatterbox 5de7a54, src/chatterbox/models/s3gen/
// hifigan.py (HiFTGenerator, SineGen, SourceModuleHnNSF, ResBlock, Snake),
// f0_predictor.py (ConvRNNF0Predictor), s3gen.py (S3Token2Wav: config, fade).
#include "elements/vocoder/hift/hift.h"

#include "elements/vocoder/hift/hift_kernels.h"
#include "elements/vocoder/hift/hift_stream.h"
#include "gst-plugins/core/compute_threads.h"
#include "gst-plugins/core/module_loader.h"
#include "gst-plugins/core/torch_f32.h"

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <ATen/Parallel.h>
#include <c10/core/InferenceMode.h>
#include <nlohmann/json.hpp>
#include <torch/nn/module.h>
#include <torch/nn/modules/container/modulelist.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <numeric>

namespace chatterbox::hift {

namespace {

constexpr double kPi = 3.14159265358979323846;

// ---- config ------------------------------------------------------------------

template <typename T>
void take(const nlohmann::json& j, const char* key, T& dst) {
  if (j.contains(key) && !j.at(key).is_null()) dst = j.at(key).get<T>();
}

// ---- module tree (names mirror HiFTGenerator.state_dict()) --------------------

// A leaf holding named tensors (Conv1d / ConvTranspose1d / Linear / Snake):
// the forward math lives in Impl, this only gives load_module the names.
struct Leaf : torch::nn::Module {
  Leaf(std::initializer_list<std::pair<const char*, std::vector<int64_t>>> params) {
    for (auto& p : params) register_parameter(p.first, at::zeros(p.second), /*requires_grad=*/false);
  }
  at::Tensor p(const char* name) const { return named_parameters(false)[name]; }
};

std::shared_ptr<Leaf> conv(int64_t out, int64_t in, int64_t k, bool bias = true) {
  if (bias) return std::make_shared<Leaf>(std::initializer_list<std::pair<const char*, std::vector<int64_t>>>{
                 {"weight", {out, in, k}}, {"bias", {out}}});
  return std::make_shared<Leaf>(
      std::initializer_list<std::pair<const char*, std::vector<int64_t>>>{{"weight", {out, in, k}}});
}

struct ResBlockMod : torch::nn::Module {
  torch::nn::ModuleList convs1, convs2, activations1, activations2;
  ResBlockMod(int64_t ch, int k, const std::vector<int>& dil) {
    convs1 = register_module("convs1", torch::nn::ModuleList());
    convs2 = register_module("convs2", torch::nn::ModuleList());
    activations1 = register_module("activations1", torch::nn::ModuleList());
    activations2 = register_module("activations2", torch::nn::ModuleList());
    for (size_t i = 0; i < dil.size(); ++i) {
      convs1->push_back(conv(ch, ch, k));
      convs2->push_back(conv(ch, ch, k));
      activations1->push_back(std::make_shared<Leaf>(
          std::initializer_list<std::pair<const char*, std::vector<int64_t>>>{{"alpha", {ch}}}));
      activations2->push_back(std::make_shared<Leaf>(
          std::initializer_list<std::pair<const char*, std::vector<int64_t>>>{{"alpha", {ch}}}));
    }
  }
};

struct HiftMod : torch::nn::Module {
  std::shared_ptr<Leaf> conv_pre, conv_post;
  torch::nn::ModuleList ups, source_downs, source_resblocks, resblocks;
  std::shared_ptr<torch::nn::Module> f0_predictor, condnet, m_source;
  std::vector<std::shared_ptr<Leaf>> condnet_convs;
  std::shared_ptr<Leaf> classifier, l_linear;

  explicit HiftMod(const HiftConfig& c) {
    const int n_up = static_cast<int>(c.upsample_rates.size());
    const int nfft2 = c.istft_n_fft + 2;
    conv_pre = register_module("conv_pre", conv(c.base_channels, c.in_channels, 7));
    ups = register_module("ups", torch::nn::ModuleList());
    for (int i = 0; i < n_up; ++i)
      // ConvTranspose1d: weight [in, out, k], bias [out]
      ups->push_back(std::make_shared<Leaf>(std::initializer_list<std::pair<const char*, std::vector<int64_t>>>{
          {"weight", {c.base_channels >> i, c.base_channels >> (i + 1), c.upsample_kernel_sizes[i]}},
          {"bias", {c.base_channels >> (i + 1)}}}));
    source_downs = register_module("source_downs", torch::nn::ModuleList());
    source_resblocks = register_module("source_resblocks", torch::nn::ModuleList());
    std::vector<int> down = source_down_rates(c);
    for (int i = 0; i < n_up; ++i) {
      int64_t ch = c.base_channels >> (i + 1);
      source_downs->push_back(conv(ch, nfft2, down[i] == 1 ? 1 : 2 * down[i]));
      source_resblocks->push_back(std::make_shared<ResBlockMod>(ch, c.source_resblock_kernel_sizes[i],
                                                                c.source_resblock_dilation_sizes[i]));
    }
    resblocks = register_module("resblocks", torch::nn::ModuleList());
    for (int i = 0; i < n_up; ++i)
      for (size_t j = 0; j < c.resblock_kernel_sizes.size(); ++j)
        resblocks->push_back(std::make_shared<ResBlockMod>(c.base_channels >> (i + 1), c.resblock_kernel_sizes[j],
                                                           c.resblock_dilation_sizes[j]));
    conv_post = register_module("conv_post", conv(nfft2, c.base_channels >> n_up, 7));

    f0_predictor = register_module("f0_predictor", std::make_shared<torch::nn::Module>());
    condnet = f0_predictor->register_module("condnet", std::make_shared<torch::nn::Module>());
    for (int k = 0; k < 5; ++k) {
      auto m = conv(c.f0_cond_channels, k == 0 ? c.f0_in_channels : c.f0_cond_channels, 3);
      condnet->register_module(std::to_string(2 * k), m);  // odd indices are the ELUs
      condnet_convs.push_back(m);
    }
    classifier = std::make_shared<Leaf>(std::initializer_list<std::pair<const char*, std::vector<int64_t>>>{
        {"weight", {c.f0_num_class, c.f0_cond_channels}}, {"bias", {c.f0_num_class}}});
    f0_predictor->register_module("classifier", classifier);
    m_source = register_module("m_source", std::make_shared<torch::nn::Module>());
    l_linear = std::make_shared<Leaf>(std::initializer_list<std::pair<const char*, std::vector<int64_t>>>{
        {"weight", {1, c.n_sines()}}, {"bias", {1}}});
    m_source->register_module("l_linear", l_linear);
  }

  // HiFTGenerator.__init__: downsample_rates = [1] + upsample_rates[::-1][:-1],
  // cumprod, reversed: the stride of source_downs[i] ([15, 3, 1]).
  static std::vector<int> source_down_rates(const HiftConfig& c) {
    const int n = static_cast<int>(c.upsample_rates.size());
    std::vector<int> rates{1};
    for (int i = n - 1; i >= 1; --i) rates.push_back(c.upsample_rates[i]);
    std::vector<int> cum(n);
    std::partial_sum(rates.begin(), rates.end(), cum.begin(), std::multiplies<int>());
    std::reverse(cum.begin(), cum.end());
    return cum;
  }
};

// ---- receptive field by interval propagation ------------------------------------

struct Iv {
  int64_t lo, hi;
};
int64_t floordiv(int64_t a, int64_t b) { return a >= 0 ? a / b : -((-a + b - 1) / b); }
int64_t ceildiv(int64_t a, int64_t b) { return -floordiv(-a, b); }
// Conv1d (stride s, padding p, kernel k, dilation 1): out o <- in [s o - p, s o - p + k - 1].
Iv back_conv(Iv o, int k, int s, int p) { return {s * o.lo - p, s * o.hi - p + k - 1}; }
// ConvTranspose1d: out o = s i + kk - p, kk in [0, k) <- i in [ceil((o+p-k+1)/s), floor((o+p)/s)].
Iv back_convT(Iv o, int k, int s, int p) { return {ceildiv(o.lo + p - k + 1, s), floordiv(o.hi + p, s)}; }
int64_t resblock_radius(int k, const std::vector<int>& dil) {
  int64_t r = 0;
  for (int d : dil) r += (k - 1) / 2 * d + (k - 1) / 2;
  return r;
}

uint64_t mix64(uint64_t z) {
  z += 0x9e3779b97f4a7c15ULL;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

}  // namespace

// ---- HiftConfig ------------------------------------------------------------------

HiftConfig HiftConfig::chatterbox() { return HiftConfig{}; }

int HiftConfig::samples_per_frame() const {
  int p = istft_hop;
  for (int r : upsample_rates) p *= r;
  return p;
}

HiftConfig HiftConfig::from_json(const nlohmann::json& j) {
  HiftConfig c;
  try {
    take(j, "in_channels", c.in_channels);
    take(j, "base_channels", c.base_channels);
    take(j, "nb_harmonics", c.nb_harmonics);
    take(j, "sampling_rate", c.sampling_rate);
    take(j, "nsf_alpha", c.nsf_alpha);
    take(j, "nsf_sigma", c.nsf_sigma);
    take(j, "nsf_voiced_threshold", c.nsf_voiced_threshold);
    take(j, "upsample_rates", c.upsample_rates);
    take(j, "upsample_kernel_sizes", c.upsample_kernel_sizes);
    if (j.contains("istft_params")) {
      take(j.at("istft_params"), "n_fft", c.istft_n_fft);
      take(j.at("istft_params"), "hop_len", c.istft_hop);
    }
    take(j, "resblock_kernel_sizes", c.resblock_kernel_sizes);
    take(j, "resblock_dilation_sizes", c.resblock_dilation_sizes);
    take(j, "source_resblock_kernel_sizes", c.source_resblock_kernel_sizes);
    take(j, "source_resblock_dilation_sizes", c.source_resblock_dilation_sizes);
    take(j, "lrelu_slope", c.lrelu_slope);
    take(j, "audio_limit", c.audio_limit);
    if (j.contains("f0_predictor")) {
      const auto& f = j.at("f0_predictor");
      take(f, "in_channels", c.f0_in_channels);
      take(f, "cond_channels", c.f0_cond_channels);
      take(f, "num_class", c.f0_num_class);
    }
  } catch (const nlohmann::json::exception& e) {
    throw ModelError(std::string("HiFT config: a value has the wrong type (") + e.what() + ")");
  }
  const size_t n = c.upsample_rates.size();
  if (n == 0 || c.upsample_kernel_sizes.size() != n || c.source_resblock_kernel_sizes.size() != n ||
      c.source_resblock_dilation_sizes.size() != n)
    throw ModelError("HiFT config: upsample_rates, upsample_kernel_sizes, source_resblock_kernel_sizes and "
                     "source_resblock_dilation_sizes must have the same non-zero length");
  if (c.resblock_kernel_sizes.size() != c.resblock_dilation_sizes.size() || c.resblock_kernel_sizes.empty())
    throw ModelError("HiFT config: resblock_kernel_sizes and resblock_dilation_sizes must have the same length");
  for (size_t i = 0; i < n; ++i)
    if (c.upsample_kernel_sizes[i] - c.upsample_rates[i] < 0 || (c.upsample_kernel_sizes[i] - c.upsample_rates[i]) % 2)
      throw ModelError("HiFT config: upsample kernel " + std::to_string(c.upsample_kernel_sizes[i]) + " minus rate " +
                       std::to_string(c.upsample_rates[i]) + " must be even and >= 0 (output length = rate x input)");
  if (c.istft_hop <= 0 || c.istft_n_fft % c.istft_hop || c.istft_n_fft % 2)
    throw ModelError("HiFT config: istft hop_len must divide an even n_fft");
  if (c.f0_num_class != 1) throw ModelError("HiFT config: only f0_predictor.num_class = 1 is supported");
  return c;
}

nlohmann::json HiftConfig::to_json() const {
  return {{"in_channels", in_channels},
          {"base_channels", base_channels},
          {"nb_harmonics", nb_harmonics},
          {"sampling_rate", sampling_rate},
          {"nsf_alpha", nsf_alpha},
          {"nsf_sigma", nsf_sigma},
          {"nsf_voiced_threshold", nsf_voiced_threshold},
          {"upsample_rates", upsample_rates},
          {"upsample_kernel_sizes", upsample_kernel_sizes},
          {"istft_params", {{"n_fft", istft_n_fft}, {"hop_len", istft_hop}}},
          {"resblock_kernel_sizes", resblock_kernel_sizes},
          {"resblock_dilation_sizes", resblock_dilation_sizes},
          {"source_resblock_kernel_sizes", source_resblock_kernel_sizes},
          {"source_resblock_dilation_sizes", source_resblock_dilation_sizes},
          {"lrelu_slope", lrelu_slope},
          {"audio_limit", audio_limit},
          {"f0_predictor",
           {{"in_channels", f0_in_channels}, {"cond_channels", f0_cond_channels}, {"num_class", f0_num_class}}}};
}

// ---- SourceDraws ---------------------------------------------------------------

SourceDraws SourceDraws::random(uint64_t seed) {
  SourceDraws d;
  d.mode = Mode::Random;
  d.seed = seed;
  return d;
}

SourceDraws SourceDraws::injected(const at::Tensor& phases, const at::Tensor& noise) {
  SourceDraws d;
  d.mode = Mode::Injected;
  d.phases = phases.to(at::kFloat).reshape({-1}).contiguous();
  if (noise.dim() == 3) {
    if (noise.size(0) != 1) throw ModelError("HiFT injected noise: expected [1, n_sines, N], got " + shape_str(noise.sizes()));
    d.noise = noise[0].to(at::kFloat).contiguous();
  } else if (noise.dim() == 2) {
    d.noise = noise.to(at::kFloat).contiguous();
  } else {
    throw ModelError("HiFT injected noise: expected [n_sines, N], got " + shape_str(noise.sizes()));
  }
  if (d.noise.size(0) != d.phases.size(0))
    throw ModelError("HiFT injected draws: " + std::to_string(d.phases.size(0)) + " phases but " +
                     std::to_string(d.noise.size(0)) + " noise rows");
  return d;
}

// ---- HiftModel::Impl --------------------------------------------------------------

namespace {

using detail::Act;
using detail::ActW;
using detail::ConvW;

std::shared_ptr<Leaf> leaf(torch::nn::ModuleList& l, size_t i) { return std::static_pointer_cast<Leaf>(l[i]); }

ConvW conv_w(const Leaf& l, int dil, at::ScalarType dt = at::kFloat) {
  return detail::make_conv(l.p("weight").to(dt), l.p("bias").to(dt), dil);
}

// Snake: x + (1.0 / (alpha + 1e-9)) * sin(x * alpha)^2, in float32.
ActW snake_w(const Leaf& l) {
  ActW a;
  a.kind = Act::Snake;
  a.alpha = l.p("alpha").contiguous();
  a.inv = at::reciprocal(a.alpha + 1e-9);
  return a;
}

detail::ResW res_w(ResBlockMod& m, const std::vector<int>& dil) {
  detail::ResW r;
  for (size_t i = 0; i < dil.size(); ++i) {
    r.c1.push_back(conv_w(*leaf(m.convs1, i), dil[i]));
    r.c2.push_back(conv_w(*leaf(m.convs2, i), 1));
    r.s1.push_back(snake_w(*leaf(m.activations1, i)));
    r.s2.push_back(snake_w(*leaf(m.activations2, i)));
  }
  return r;
}

// ConvTranspose1d weight [Cin, Cout, k] (stride u) -> the causal conv
// [u Cout, Cin, J] of detail::ConvTW.
detail::ConvTW convt_w(const Leaf& l, int u) {
  detail::ConvTW c;
  at::Tensor w = l.p("weight");
  const int64_t cin = w.size(0);
  c.u = u;
  c.k = static_cast<int>(w.size(2));
  c.p = (c.k - u) / 2;
  c.cout = w.size(1);
  c.J = (c.k + u - 1) / u;
  at::Tensor cw = at::zeros({u, c.cout, cin, c.J}, at::kFloat);
  for (int j = 0; j < c.J; ++j)
    for (int r = 0; r < u && r + u * j < c.k; ++r) cw[r].select(2, c.J - 1 - j).copy_(w.select(2, r + u * j).t());
  c.conv = detail::make_conv(cw.view({u * c.cout, cin, c.J}), l.p("bias").repeat({u}), 1);
  return c;
}

ActW leaky(double slope) {
  ActW a;
  a.kind = Act::LeakyRelu;
  a.slope = slope;
  return a;
}

// Mel frames per decoder step in a whole-utterance run: small enough that a
// step's activations stay in the core's cache (the whole utterance at once
// took 1.6x the CPU time), large enough for efficient tiles; 24 frames make
// every stage's column count a multiple of the kernel's 48-column tile.
constexpr int64_t kBlockFrames = 24;

}  // namespace

struct HiftModel::Impl {
  HiftConfig cfg;
  MelFormat mel = MelFormat::s3gen();
  int64_t nparams = 0;
  int spf = 480;
  std::vector<int> down_rates;
  detail::Weights w;
  std::vector<float> lin_w;  // the source's harmonic merge
  float lin_b = 0.f;
  Field field{};

  // From the loaded module tree (which is not kept: the prepared copies are
  // all that inference reads).
  void prepare(HiftMod& mod) {
    const HiftConfig& c = cfg;
    spf = c.samples_per_frame();
    down_rates = HiftMod::source_down_rates(c);
    w.spf = spf;
    w.n_fft = c.istft_n_fft;
    w.hop = c.istft_hop;
    w.audio_limit = c.audio_limit;
    w.pre = conv_w(*mod.conv_pre, 1);
    w.post = conv_w(*mod.conv_post, 1);
    w.up_act = leaky(c.lrelu_slope);
    w.post_act = leaky(0.01);  // F.leaky_relu's default slope
    w.nk = static_cast<int>(c.resblock_kernel_sizes.size());
    const int n_up = static_cast<int>(c.upsample_rates.size());
    for (int i = 0; i < n_up; ++i) {
      w.ups.push_back(convt_w(*leaf(mod.ups, i), c.upsample_rates[i]));
      // source_downs[i]: kernel 2s (1 when s = 1) over blocks of s STFT frames.
      detail::SConvW d;
      auto sd = leaf(mod.source_downs, i);
      at::Tensor dw = sd->p("weight");
      d.s = down_rates[i];
      d.k = static_cast<int>(dw.size(2));
      d.p = d.s == 1 ? 0 : d.s / 2;
      d.cin = dw.size(1);
      if (d.s > 1)  // [Cout, Cin, 2s] -> [Cout, Cin, 2, s] -> [Cout, Cin, s, 2] -> [Cout, Cin s, 2]
        dw = dw.reshape({dw.size(0), d.cin, 2, d.s}).permute({0, 1, 3, 2}).reshape({dw.size(0), d.cin * d.s, 2});
      d.block = detail::make_conv(dw.contiguous(), sd->p("bias"), 1);
      w.downs.push_back(d);
      w.src_rb.push_back(res_w(*std::static_pointer_cast<ResBlockMod>(mod.source_resblocks[i]),
                               c.source_resblock_dilation_sizes[i]));
      for (int j = 0; j < w.nk; ++j)
        w.rb.push_back(res_w(*std::static_pointer_cast<ResBlockMod>(mod.resblocks[i * w.nk + j]),
                             c.resblock_dilation_sizes[j]));
    }
    // F0 predictor: chunking-invariant either way (see f0_whole).
    const at::ScalarType f0_type = chatterbox::kernels::packed_conv_available() ? at::kFloat : at::kDouble;
    for (auto& m : mod.condnet_convs) w.f0.push_back(conv_w(*m, 1, f0_type));
    w.cls = detail::make_conv(mod.classifier->p("weight").unsqueeze(2).to(f0_type),
                              mod.classifier->p("bias").to(f0_type), 1);
    at::Tensor lw = mod.l_linear->p("weight").contiguous();
    lin_w.assign(lw.data_ptr<float>(), lw.data_ptr<float>() + lw.numel());
    lin_b = mod.l_linear->p("bias").item<float>();

    // Periodic Hann (scipy get_window("hann", n, fftbins=True)), computed in
    // double and rounded to float32 as the reference does.
    const int N = c.istft_n_fft, K = N / 2 + 1;
    std::vector<float> win(N);
    for (int n = 0; n < N; ++n) win[n] = static_cast<float>(0.5 - 0.5 * std::cos(2.0 * kPi * n / N));
    w.win2.resize(N);
    for (int n = 0; n < N; ++n) w.win2[n] = static_cast<double>(win[n]) * win[n];
    // torch.stft: X[k] = sum_n x[n] w[n] exp(-2 pi i k n / N); rows [re(K), im(K)].
    at::Tensor stft_basis = at::empty({2 * K, N}, at::kFloat);
    auto sb = stft_basis.accessor<float, 2>();
    for (int k = 0; k < K; ++k)
      for (int n = 0; n < N; ++n) {
        double ang = 2.0 * kPi * ((static_cast<int64_t>(k) * n) % N) / N;
        sb[k][n] = static_cast<float>(win[n] * std::cos(ang));
        sb[K + k][n] = static_cast<float>(-win[n] * std::sin(ang));
      }
    // torch.istft frame: irfft (imaginary parts of DC and Nyquist ignored),
    // times the window: x[n] = w[n]/N (re0 + (-1)^n re_{N/2} + 2 sum_k (re_k cos - im_k sin)).
    at::Tensor istft_basis = at::empty({N, 2 * K}, at::kFloat);
    auto ib = istft_basis.accessor<float, 2>();
    for (int n = 0; n < N; ++n)
      for (int k = 0; k < K; ++k) {
        double ck = (k == 0 || k == N / 2) ? 1.0 : 2.0;
        double ang = 2.0 * kPi * ((static_cast<int64_t>(k) * n) % N) / N;
        ib[n][k] = static_cast<float>(win[n] * ck * std::cos(ang) / N);
        ib[n][K + k] = static_cast<float>((k == 0 || k == N / 2) ? 0.0 : -win[n] * ck * std::sin(ang) / N);
      }
    // As convs: the STFT over blocks of hop samples (tap j = basis columns
    // hop j .. hop j + hop - 1), the iSTFT frame synthesis as a kernel-1 conv.
    const int hop = c.istft_hop;
    w.stft = detail::make_conv(stft_basis.view({2 * K, N / hop, hop}).permute({0, 2, 1}).contiguous(),
                               at::zeros({2 * K}, at::kFloat), 1);
    w.istft = detail::make_conv(istft_basis.unsqueeze(2), at::zeros({N}, at::kFloat), 1);
    compute_field();
  }

  // Receptive field of decode for one output frame, by walking the graph
  // backwards with exact integer intervals (any config).
  void compute_field() {
    const HiftConfig& c = cfg;
    const int n_up = static_cast<int>(c.upsample_rates.size());
    const int64_t K0 = 100000;  // a frame far from the utterance start
    const int hop = c.istft_hop, N = c.istft_n_fft;
    // Output sample n = padded position n + N/2; frame f covers [hop f, hop f + N).
    Iv smp{K0 * spf, K0 * spf + spf - 1};
    Iv x{ceildiv(smp.lo + N / 2 - N + 1, hop), floordiv(smp.hi + N / 2, hop)};
    x = back_conv(x, 7, 1, 3);  // conv_post
    Iv st{INT64_MAX, INT64_MIN};  // source STFT frames needed (finest rate)
    for (int i = n_up - 1; i >= 0; --i) {
      int64_t r = 0;
      for (size_t j = 0; j < c.resblock_kernel_sizes.size(); ++j)
        r = std::max(r, resblock_radius(c.resblock_kernel_sizes[j], c.resblock_dilation_sizes[j]));
      x = {x.lo - r, x.hi + r};
      // source branch
      int64_t rs = resblock_radius(c.source_resblock_kernel_sizes[i], c.source_resblock_dilation_sizes[i]);
      Iv s{x.lo - rs, x.hi + rs};
      int u = down_rates[i];
      s = u == 1 ? s : back_conv(s, 2 * u, u, u / 2);
      st = {std::min(st.lo, s.lo), std::max(st.hi, s.hi)};
      // upsampling branch; the last stage's ReflectionPad1d((1, 0)) shifts by one
      if (i == n_up - 1) x = {x.lo - 1, x.hi};
      int k = c.upsample_kernel_sizes[i], ur = c.upsample_rates[i];
      x = back_convT(x, k, ur, (k - ur) / 2);
    }
    x = back_conv(x, 7, 1, 3);  // conv_pre
    // STFT frame f reads source samples [hop f - N/2, hop f + N/2 - 1].
    Iv src{hop * st.lo - N / 2, hop * st.hi + N / 2 - 1};
    field.mel_left = K0 - x.lo;
    field.mel_right = x.hi - K0;
    field.src_left = K0 * spf - src.lo;
    field.src_right = src.hi - (K0 * spf + spf - 1);
    field.f0_radius = 5;  // five k3 convolutions
  }

  // ---- F0 ----
  // The sine phase integrates F0 over the whole utterance, so a last-bit
  // change in F0 would move every later harmonic phase: F0 must not depend
  // on how the utterance is chunked. The packed kernel's sums do not (nor do
  // its ELU's), so there the ConvRNNF0Predictor runs in float32 like the
  // reference. BLAS GEMMs may round differently for other column counts, so
  // there it runs in float64 and is rounded to float32: the rounded F0 is the
  // same however the utterance is chunked (within the fixture's f32-vs-f64
  // budget of the float32 reference).
  at::Tensor f0_whole(const at::Tensor& mel_ct) const {
    detail::F0S s = detail::f0_init(w);
    return detail::f0_step(w, s, mel_ct, true, mel_ct.size(1));
  }

  // ---- source ----
  at::Tensor source_chunk(const at::Tensor& f0_in, SourceState& stt, const SourceDraws& dr) const {
    const HiftConfig& c = cfg;
    const int H = c.n_sines();
    at::Tensor f0 = f0_in.to(at::kFloat).contiguous().reshape({-1});
    const int64_t nf = f0.numel();
    at::Tensor out = at::empty({nf * spf}, at::kFloat);
    if (stt.acc.size() != static_cast<size_t>(H)) stt.acc.assign(H, 0.0);
    const float* fp = f0.data_ptr<float>();
    float* op = out.data_ptr<float>();
    // Float32 constants exactly as the reference's tensor-scalar ops see them.
    const float thr = static_cast<float>(c.nsf_voiced_threshold);
    const float amp = static_cast<float>(c.nsf_alpha);
    const float nstd = static_cast<float>(c.nsf_sigma);
    const float unv = static_cast<float>(c.nsf_alpha / 3.0);
    const float sr = static_cast<float>(c.sampling_rate);
    const float two_pi = static_cast<float>(2.0 * kPi);
    std::vector<float> ph(H, 0.f);
    const float* noise = nullptr;
    int64_t noise_len = 0;
    if (dr.mode == SourceDraws::Mode::Injected) {
      if (dr.phases.numel() != H || dr.noise.size(0) != H)
        throw ModelError("HiFT injected draws: expected " + std::to_string(H) + " harmonics, got phases " +
                         shape_str(dr.phases.sizes()) + " and noise " + shape_str(dr.noise.sizes()));
      noise_len = dr.noise.size(1);
      if (stt.pos + nf * spf > noise_len)
        throw ModelError("HiFT injected draws: the recorded noise has " + std::to_string(noise_len) +
                         " samples, the utterance needs " + std::to_string(stt.pos + nf * spf));
      for (int h = 1; h < H; ++h) ph[h] = dr.phases.data_ptr<float>()[h];
      noise = dr.noise.data_ptr<float>();
    } else if (dr.mode == SourceDraws::Mode::Random) {
      for (int h = 1; h < H; ++h) {
        uint64_t z = mix64(mix64(dr.seed ^ 0x5eedULL) + static_cast<uint64_t>(h));
        double u = static_cast<double>(z >> 11) * 0x1.0p-53;
        ph[h] = static_cast<float>(-kPi + 2.0 * kPi * u);
      }
    }
    const bool rnd = dr.mode == SourceDraws::Mode::Random;
    std::vector<float> inc(H);
    double* acc = stt.acc.data();
    for (int64_t i = 0; i < nf; ++i) {
      const float fv = fp[i];
      const float uv = fv > thr ? 1.f : 0.f;
      const float namp = uv * nstd + (1.f - uv) * unv;
      for (int h = 0; h < H; ++h) inc[h] = (fv * static_cast<float>(h + 1)) / sr;
      for (int j = 0; j < spf; ++j) {
        const int64_t pos = stt.pos + i * spf + j;
        float lin = 0.f;
        for (int h = 0; h < H; ++h) {
          acc[h] += static_cast<double>(inc[h]);  // torch CPU cumsum: double accumulator
          const float cs = static_cast<float>(acc[h]);
          const float frac = cs - std::floor(cs);  // % 1 (exact for cs >= 0)
          float sw = amp * std::sin(two_pi * frac + ph[h]);
          float nz = 0.f;
          if (noise) {
            nz = namp * noise[h * noise_len + pos];
          } else if (rnd) {
            uint64_t key = mix64(mix64(dr.seed) ^ (static_cast<uint64_t>(h) << 56) ^ static_cast<uint64_t>(pos));
            double u1 = (static_cast<double>(key >> 11) + 1.0) * 0x1.0p-53;
            double u2 = static_cast<double>(mix64(key) >> 11) * 0x1.0p-53;
            nz = namp * static_cast<float>(std::sqrt(-2.0 * std::log(u1)) * std::cos(2.0 * kPi * u2));
          }
          sw = sw * uv + nz;
          lin += lin_w[h] * sw;
        }
        op[i * spf + j] = std::tanh(lin + lin_b);
      }
    }
    stt.pos += nf * spf;
    return out;
  }

  // ---- decoder ----
  // mel [80, T] + source [spf T] -> audio [spf T], through the incremental
  // graph in blocks of kBlockFrames (cache-sized steps; the result is the
  // same for any blocking). `post` receives conv_post's output when non-null.
  at::Tensor decode_one(const at::Tensor& mel_ct, const at::Tensor& src, at::Tensor* post) const {
    const int64_t T = mel_ct.size(1);
    detail::DecoderS s = detail::decoder_init(w);
    std::vector<at::Tensor> out, posts;
    std::vector<at::Tensor>* pp = post ? &posts : nullptr;
    for (int64_t t = 0; t < T; t += kBlockFrames) {
      const int64_t m = std::min(kBlockFrames, T - t);
      out.push_back(detail::decoder_step(w, s, mel_ct.narrow(1, t, m), src.narrow(0, t * spf, m * spf), false, T, pp));
    }
    out.push_back(detail::decoder_step(w, s, {}, {}, true, T, pp));
    if (post) *post = at::cat(posts, 1);
    return at::cat(out);
  }
};

// ---- HiftModel ---------------------------------------------------------------------

HiftModel::HiftModel() : impl_(std::make_unique<Impl>()) {}
HiftModel::~HiftModel() = default;

std::shared_ptr<HiftModel> HiftModel::load(const std::string& path, const std::string& prefix,
                                           const std::optional<HiftConfig>& config) {
  Checkpoint ck = Checkpoint::open(path);
  if (prefix.empty()) {
    if (!ck.has("conv_pre.weight") && ck.has("mel2wav.conv_pre.weight")) ck = ck.sub("mel2wav.");
  } else {
    ck = ck.sub(prefix);
  }
  return from_checkpoint(ck, config);
}

std::shared_ptr<HiftModel> HiftModel::from_checkpoint(const Checkpoint& ck, const std::optional<HiftConfig>& config) {
  c10::InferenceMode guard;
  if (!ck.has("conv_pre.weight"))
    throw ModelError("checkpoint '" + ck.path() + "' has no HiFT vocoder under prefix '" + ck.prefix() +
                     "' (missing '" + ck.prefix() + "conv_pre.weight'); pass a HiFTGenerator state dict or "
                     "Chatterbox's s3gen.safetensors (prefix 'mel2wav.')");
  std::shared_ptr<HiftModel> m(new HiftModel());
  Impl& im = *m->impl_;
  if (ck.has_metadata("config")) {
    im.cfg = HiftConfig::from_json(ck.config());
  } else if (config) {
    im.cfg = *config;
  } else {
    // Real checkpoints carry no metadata: Chatterbox's config, widths from shapes.
    im.cfg = HiftConfig::chatterbox();
    im.cfg.base_channels = static_cast<int>(ck.get("conv_pre.weight").size(0));
    im.cfg.in_channels = static_cast<int>(ck.get("conv_pre.weight").size(1));
    if (ck.has("f0_predictor.condnet.0.weight")) {
      at::Tensor w = ck.get("f0_predictor.condnet.0.weight");
      im.cfg.f0_cond_channels = static_cast<int>(w.size(0));
      im.cfg.f0_in_channels = static_cast<int>(w.size(1));
    }
  }
  auto mod = std::make_shared<HiftMod>(im.cfg);
  load_module(*mod, ck);
  for (auto& p : mod->parameters()) im.nparams += p.numel();
  im.prepare(*mod);
  return m;
}

std::shared_ptr<HiftModel> HiftModel::random(const HiftConfig& config, uint64_t seed) {
  c10::InferenceMode guard;
  std::shared_ptr<HiftModel> m(new HiftModel());
  Impl& im = *m->impl_;
  im.cfg = config;
  auto mod = std::make_shared<HiftMod>(im.cfg);
  auto gen = at::make_generator<at::CPUGeneratorImpl>(seed);
  for (auto& p : mod->named_parameters()) {
    at::Tensor t = p.value();
    const std::string& name = p.key();
    if (name.size() >= 5 && name.compare(name.size() - 5, 5, "alpha") == 0) {
      t.fill_(1.0);
    } else if (t.dim() >= 2) {
      // fan-in scaling keeps activations O(1) through the stack
      int64_t fan = t.numel() / t.size(0);
      if (name.rfind("ups.", 0) == 0) fan = t.numel() / t.size(1) / 2;
      t.normal_(0.0, 1.0 / std::sqrt(static_cast<double>(fan)), gen);
    } else {
      t.normal_(0.0, 0.01, gen);
    }
    im.nparams += t.numel();
  }
  im.prepare(*mod);
  return m;
}

const HiftConfig& HiftModel::config() const { return impl_->cfg; }
const MelFormat& HiftModel::mel_format() const { return impl_->mel; }
int64_t HiftModel::num_parameters() const { return impl_->nparams; }
const HiftModel::Field& HiftModel::field() const { return impl_->field; }
const detail::Weights& HiftModel::weights() const { return impl_->w; }

SourceState HiftModel::initial_state() const {
  SourceState s;
  s.acc.assign(impl_->cfg.n_sines(), 0.0);
  return s;
}

namespace {
void check_mel(const at::Tensor& mel, int n_mels, const char* what) {
  if (mel.dim() != 3 || mel.size(1) != n_mels)
    throw ModelError(std::string("HiFT ") + what + ": expected mel [B, " + std::to_string(n_mels) + ", T], got " +
                     shape_str(mel.sizes()));
}
}  // namespace

at::Tensor HiftModel::f0(const at::Tensor& mel) const {
  c10::InferenceMode guard;
  ComputeThreads threads;
  check_mel(mel, impl_->cfg.f0_in_channels, "f0");
  std::vector<at::Tensor> out;
  for (int64_t b = 0; b < mel.size(0); ++b) out.push_back(impl_->f0_whole(mel[b].to(at::kFloat)));
  return at::stack(out);
}

at::Tensor HiftModel::source_chunk(const at::Tensor& f0, SourceState& state, const SourceDraws& draws) const {
  c10::InferenceMode guard;
  return impl_->source_chunk(f0, state, draws);
}

at::Tensor HiftModel::source_from_f0(const at::Tensor& f0, const SourceDraws& draws) const {
  c10::InferenceMode guard;
  if (f0.dim() != 2) throw ModelError("HiFT source_from_f0: expected F0 [B, T], got " + shape_str(f0.sizes()));
  std::vector<at::Tensor> out;
  for (int64_t b = 0; b < f0.size(0); ++b) {
    SourceState st = initial_state();
    out.push_back(impl_->source_chunk(f0[b], st, draws));
  }
  return at::stack(out).unsqueeze(1);
}

HiftModel::Decoded HiftModel::decode(const at::Tensor& mel, const at::Tensor& source) const {
  c10::InferenceMode guard;
  ComputeThreads threads;
  check_mel(mel, impl_->cfg.in_channels, "decode");
  const int64_t B = mel.size(0), T = mel.size(2);
  at::Tensor src = source.reshape({source.size(0), -1}).to(at::kFloat);
  if (src.size(0) != B || src.size(1) != T * impl_->spf)
    throw ModelError("HiFT decode: source " + shape_str(source.sizes()) + " does not match mel " +
                     shape_str(mel.sizes()) + " (expected [B, 1, " + std::to_string(T * impl_->spf) + "])");
  if (T == 0) return {at::empty({B, 0}, at::kFloat), at::empty({B, impl_->cfg.istft_n_fft + 2, 0}, at::kFloat)};
  std::vector<at::Tensor> audio, post;
  for (int64_t b = 0; b < B; ++b) {
    at::Tensor p;
    audio.push_back(impl_->decode_one(mel[b].to(at::kFloat), src[b].contiguous(), &p));
    post.push_back(p);
  }
  return {at::stack(audio), at::stack(post)};
}

at::Tensor HiftModel::inference(const at::Tensor& mel, const SourceDraws& draws, at::Tensor* source_out) const {
  c10::InferenceMode guard;
  ComputeThreads threads;
  check_mel(mel, impl_->cfg.in_channels, "inference");
  if (mel.size(2) == 0) {
    if (source_out) *source_out = at::empty({mel.size(0), 1, 0}, at::kFloat);
    return at::empty({mel.size(0), 0}, at::kFloat);
  }
  at::Tensor s = source_from_f0(f0(mel), draws);
  if (source_out) *source_out = s;
  return decode(mel, s).audio;
}

at::Tensor trim_fade(int sampling_rate) {
  const int64_t n = sampling_rate / 50;
  at::Tensor f = at::zeros({2 * n}, at::kFloat);
  // torch.linspace(pi, 0, n) in float32, then (cos + 1) / 2 in float32, each
  // step as torch does it but the same on every CPU (torch_f32.h).
  const std::vector<float> lin = chatterbox::f32::linspace(kPi, 0.0, n);
  float* p = f.data_ptr<float>() + n;
  for (int64_t i = 0; i < n; ++i) {
    const float c = chatterbox::f32::cos(lin[i]);
    const float s = c + 1.0f;
    p[i] = s / 2.0f;
  }
  return f;
}

// ---- HiftVocoder (exact streaming) -------------------------------------------------
//
// Every layer of the F0 predictor and the decoder runs incrementally
// (hift_stream.h): a new mel frame goes into conv_pre and the F0 predictor;
// F0 becomes final 5 frames later (five k3 convs) and only then extends the
// source (the sine phases are carried in double), which feeds the source
// STFT; each layer emits the columns whose inputs have all arrived. So every
// sample is computed once, as in the whole-utterance run, and the audio
// samples come out as soon as they are final; after n frames that is at
// least spf (n - default lookahead) samples (the receptive field, field()).
// feed() emits spf * max(emitted, n - lookahead) samples in all: at the
// default lookahead only final ones; with a smaller lookahead the rest come
// from a copy of the graph finished as if the utterance ended at frame n
// (the committed state is untouched: its later final samples replace
// nothing, the ones already emitted are skipped). drain() flushes the graph
// with the true end's padding.

struct HiftVocoder::Pipe {
  detail::F0S f0;
  SourceState sst;
  detail::DecoderS dec;
};

struct HiftVocoder::State {
  Pipe pipe;
  int64_t n = 0;        // frames fed
  at::Tensor fin;       // final samples not yet emitted: [fin_start, fin_start + numel)
  int64_t fin_start = 0;
  int64_t emitted = 0;  // samples returned
  SourceDraws draws;
};

HiftVocoder::HiftVocoder(std::shared_ptr<const HiftModel> model, HiftVocoderOptions opts)
    : model_(std::move(model)), opts_(std::move(opts)) {
  if (!model_) throw ModelError("HiftVocoder: no model");
  lookahead_ = opts_.lookahead_frames < 0 ? default_lookahead_frames() : opts_.lookahead_frames;
  reset();
}
HiftVocoder::~HiftVocoder() = default;

const HiftModel& HiftVocoder::model() const { return *model_; }
const MelFormat& HiftVocoder::mel_format() const { return model_->mel_format(); }

int64_t HiftVocoder::default_lookahead_frames() const {
  const auto& f = model_->field();
  const int64_t spf = model_->config().samples_per_frame();
  return std::max(f.mel_right, f.f0_radius + ceildiv(f.src_right, spf));
}
int64_t HiftVocoder::lookahead_frames() const { return lookahead_; }
void HiftVocoder::set_lookahead_frames(int64_t frames) {
  lookahead_ = frames < 0 ? default_lookahead_frames() : frames;
}
int64_t HiftVocoder::samples_out() const { return st_->emitted; }
int64_t HiftVocoder::frames_in() const { return st_->n; }

void HiftVocoder::reset() {
  st_ = std::make_unique<State>();
  st_->pipe.f0 = detail::f0_init(model_->weights());
  st_->pipe.sst = model_->initial_state();
  st_->pipe.dec = detail::decoder_init(model_->weights());
  st_->fin = at::empty({0}, at::kFloat);
  st_->draws = opts_.draws;
  if (st_->draws.mode == SourceDraws::Mode::Random) st_->draws.seed = opts_.draws.seed + utterance_;
}

at::Tensor HiftVocoder::advance(Pipe& p, const at::Tensor& mel_ct, bool at_end) const {
  const detail::Weights& w = model_->weights();
  at::Tensor f0 = detail::f0_step(w, p.f0, mel_ct, at_end, st_->n);
  at::Tensor src;
  if (f0.numel() > 0) src = model_->source_chunk(f0, p.sst, st_->draws);
  return detail::decoder_step(w, p.dec, mel_ct, src, at_end, st_->n);
}

at::Tensor HiftVocoder::feed(const at::Tensor& frames) {
  c10::InferenceMode guard;
  ComputeThreads threads;
  const int64_t C = model_->config().in_channels;
  if (frames.dim() != 2 || frames.size(1) != C)
    throw ModelError("hift: expected mel frames [T, " + std::to_string(C) + "], got " + shape_str(frames.sizes()));
  if (frames.size(0) == 0) return at::empty({0}, at::kFloat);
  // A long buffer goes through in kBlockFrames steps, as whole utterances
  // do: one 500-frame step made every layer's working set overflow the
  // caches (a 10 s buffer took 2.4x the time of 10-frame buffers). Any
  // blocking gives the same samples.
  at::Tensor mel = frames.to(at::kFloat);
  std::vector<at::Tensor> parts;
  for (int64_t t0 = 0; t0 < mel.size(0); t0 += kBlockFrames) {
    const int64_t n = std::min(kBlockFrames, mel.size(0) - t0);
    st_->n += n;
    at::Tensor fresh = advance(st_->pipe, mel.narrow(0, t0, n).t(), false);
    if (fresh.numel() > 0) parts.push_back(fresh);
  }
  if (!parts.empty()) {
    parts.insert(parts.begin(), st_->fin);
    st_->fin = at::cat(parts);
  }
  return emit(false);
}

at::Tensor HiftVocoder::drain() {
  c10::InferenceMode guard;
  ComputeThreads threads;
  at::Tensor out = at::empty({0}, at::kFloat);
  if (st_->n > 0) {
    at::Tensor fresh = advance(st_->pipe, {}, true);
    st_->fin = at::cat({st_->fin, fresh});
    out = emit(true);
  }
  ++utterance_;
  reset();
  return out;
}

// Returns samples [emitted, target): the final ones, then (below the default
// lookahead) provisional ones.
at::Tensor HiftVocoder::emit(bool at_end) {
  State& s = *st_;
  const int64_t spf = model_->config().samples_per_frame();
  const int64_t target = at_end ? spf * s.n : spf * std::max(s.emitted / spf, s.n - lookahead_);
  if (target <= s.emitted) return at::empty({0}, at::kFloat);
  const int64_t fin_end = s.fin_start + s.fin.numel();
  std::vector<at::Tensor> parts;
  const int64_t a = std::max(s.emitted, s.fin_start), b = std::min(target, fin_end);
  if (b > a) parts.push_back(s.fin.narrow(0, a - s.fin_start, b - a));
  if (target > fin_end) {
    TORCH_CHECK(!at_end, "HiFT stream: the utterance's end left ", target - fin_end, " samples missing");
    Pipe copy = s.pipe;
    at::Tensor prov = advance(copy, {}, true);  // samples [fin_end, spf n)
    const int64_t p0 = std::max(s.emitted, fin_end);
    parts.push_back(prov.narrow(0, p0 - fin_end, target - p0));
  }
  at::Tensor out = at::cat(parts);  // a new tensor (the fade below writes it)
  // S3Token2Wav's fade on the utterance's first samples.
  if (opts_.trim_fade) {
    at::Tensor fade = trim_fade(model_->config().sampling_rate);
    const int64_t f1 = std::min<int64_t>(target, fade.numel());
    if (f1 > s.emitted) out.narrow(0, 0, f1 - s.emitted).mul_(fade.narrow(0, s.emitted, f1 - s.emitted));
  }
  s.emitted = target;
  if (s.emitted > s.fin_start) {
    const int64_t k = std::min<int64_t>(s.fin.numel(), s.emitted - s.fin_start);
    s.fin = s.fin.narrow(0, k, s.fin.numel() - k);
    s.fin_start += k;
  }
  return out;
}

at::Tensor HiftVocoder::forward(const at::Tensor& mel) {
  c10::InferenceMode guard;
  ComputeThreads threads;
  SourceDraws d = opts_.draws;
  if (d.mode == SourceDraws::Mode::Random) d.seed = opts_.draws.seed + utterance_;
  ++utterance_;  // a whole utterance: the next one gets fresh draws
  at::Tensor audio = model_->inference(mel, d);
  if (opts_.trim_fade) {
    at::Tensor fade = trim_fade(model_->config().sampling_rate);
    const int64_t k = std::min<int64_t>(fade.numel(), audio.size(1));
    audio.narrow(1, 0, k).mul_(fade.narrow(0, 0, k));
  }
  return audio;
}

}  // namespace chatterbox::hift
