// HiFT vocoder: module tree, loader, stage functions and exact streaming.
// Reference: resemble-ai/chatterbox 5de7a54, src/chatterbox/models/s3gen/
// hifigan.py (HiFTGenerator, SineGen, SourceModuleHnNSF, ResBlock, Snake),
// f0_predictor.py (ConvRNNF0Predictor), s3gen.py (S3Token2Wav: config, fade).
#include "elements/vocoder/hift/hift.h"

#include "elements/vocoder/hift/hift_kernels.h"
#include "gst-plugins/core/module_loader.h"

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

struct ResW {
  int k;
  std::vector<int> dil;
  std::vector<at::Tensor> w1, b1, w2, b2;  // conv weights [C, C, k], biases [C]
  std::vector<at::Tensor> t1, t2;          // the same as taps [k, C, C]
  std::vector<at::Tensor> a1, inv1, a2, inv2;  // Snake alpha and 1 / (alpha + 1e-9)
};

struct HiftModel::Impl {
  HiftConfig cfg;
  MelFormat mel = MelFormat::s3gen();
  std::shared_ptr<HiftMod> mod;
  int64_t nparams = 0;
  int spf = 480;
  std::vector<int> down_rates;

  // Decoder weights (float32, contiguous).
  at::Tensor pre_w, pre_b, post_w, post_b;
  std::vector<at::Tensor> up_w, up_b, sd_w, sd_b;
  at::Tensor pre_t, post_t;      // taps [k, Cout, Cin]
  std::vector<at::Tensor> up_t;  // ConvTranspose as [k * Cout, Cin]
  std::vector<ResW> src_rb, rb;
  // F0 predictor in float64 (chunking-invariant F0, see f0_window).
  std::vector<at::Tensor> f0_w, f0_b;
  at::Tensor cls_w, cls_b;
  std::vector<float> lin_w;
  float lin_b = 0.f;
  // STFT basis [n_fft + 2, 1, n_fft] (window folded in), iSTFT synthesis
  // matrix [n_fft, n_fft + 2] (irfft with window folded in), window^2.
  at::Tensor stft_basis, istft_basis;
  std::vector<double> win2;
  Field field{};

  ResW resblock(ResBlockMod& m, int k, const std::vector<int>& dil) {
    ResW r;
    r.k = k;
    r.dil = dil;
    for (size_t i = 0; i < dil.size(); ++i) {
      auto c1 = std::static_pointer_cast<Leaf>(m.convs1[i]);
      auto c2 = std::static_pointer_cast<Leaf>(m.convs2[i]);
      r.w1.push_back(c1->p("weight").contiguous());
      r.b1.push_back(c1->p("bias").contiguous());
      r.w2.push_back(c2->p("weight").contiguous());
      r.b2.push_back(c2->p("bias").contiguous());
      r.t1.push_back(to_taps(r.w1.back()));
      r.t2.push_back(to_taps(r.w2.back()));
      // Snake: x + (1.0 / (alpha + 1e-9)) * sin(x * alpha)^2, in float32.
      at::Tensor a1 = std::static_pointer_cast<Leaf>(m.activations1[i])->p("alpha").contiguous();
      at::Tensor a2 = std::static_pointer_cast<Leaf>(m.activations2[i])->p("alpha").contiguous();
      r.a1.push_back(a1);
      r.a2.push_back(a2);
      r.inv1.push_back(at::reciprocal(a1 + 1e-9));
      r.inv2.push_back(at::reciprocal(a2 + 1e-9));
    }
    return r;
  }

  void prepare() {
    const HiftConfig& c = cfg;
    spf = c.samples_per_frame();
    down_rates = HiftMod::source_down_rates(c);
    pre_w = mod->conv_pre->p("weight").contiguous();
    pre_b = mod->conv_pre->p("bias").contiguous();
    post_w = mod->conv_post->p("weight").contiguous();
    post_b = mod->conv_post->p("bias").contiguous();
    pre_t = to_taps(pre_w);
    post_t = to_taps(post_w);
    const int n_up = static_cast<int>(c.upsample_rates.size());
    for (int i = 0; i < n_up; ++i) {
      auto u = std::static_pointer_cast<Leaf>(mod->ups[i]);
      up_w.push_back(u->p("weight").contiguous());
      up_b.push_back(u->p("bias").contiguous());
      up_t.push_back(up_w.back().permute({2, 1, 0}).reshape({-1, up_w.back().size(0)}).contiguous());
      auto d = std::static_pointer_cast<Leaf>(mod->source_downs[i]);
      sd_w.push_back(d->p("weight").contiguous());
      sd_b.push_back(d->p("bias").contiguous());
      src_rb.push_back(resblock(*std::static_pointer_cast<ResBlockMod>(mod->source_resblocks[i]),
                                c.source_resblock_kernel_sizes[i], c.source_resblock_dilation_sizes[i]));
      for (size_t j = 0; j < c.resblock_kernel_sizes.size(); ++j)
        rb.push_back(resblock(*std::static_pointer_cast<ResBlockMod>(mod->resblocks[i * c.resblock_kernel_sizes.size() + j]),
                              c.resblock_kernel_sizes[j], c.resblock_dilation_sizes[j]));
    }
    for (auto& m : mod->condnet_convs) {
      f0_w.push_back(m->p("weight").to(at::kDouble).contiguous());
      f0_b.push_back(m->p("bias").to(at::kDouble).contiguous());
    }
    cls_w = mod->classifier->p("weight").to(at::kDouble).contiguous();
    cls_b = mod->classifier->p("bias").to(at::kDouble).contiguous();
    at::Tensor lw = mod->l_linear->p("weight").contiguous();
    lin_w.assign(lw.data_ptr<float>(), lw.data_ptr<float>() + lw.numel());
    lin_b = mod->l_linear->p("bias").item<float>();

    // Periodic Hann (scipy get_window("hann", n, fftbins=True)), computed in
    // double and rounded to float32 as the reference does.
    const int N = c.istft_n_fft, K = N / 2 + 1;
    std::vector<float> win(N);
    for (int n = 0; n < N; ++n) win[n] = static_cast<float>(0.5 - 0.5 * std::cos(2.0 * kPi * n / N));
    win2.resize(N);
    for (int n = 0; n < N; ++n) win2[n] = static_cast<double>(win[n]) * win[n];
    // torch.stft: X[k] = sum_n x[n] w[n] exp(-2 pi i k n / N); channels [re(K), im(K)].
    stft_basis = at::empty({2 * K, 1, N}, at::kFloat);
    auto sb = stft_basis.accessor<float, 3>();
    for (int k = 0; k < K; ++k)
      for (int n = 0; n < N; ++n) {
        double ang = 2.0 * kPi * ((static_cast<int64_t>(k) * n) % N) / N;
        sb[k][0][n] = static_cast<float>(win[n] * std::cos(ang));
        sb[K + k][0][n] = static_cast<float>(-win[n] * std::sin(ang));
      }
    // torch.istft frame: irfft (imaginary parts of DC and Nyquist ignored),
    // times the window: x[n] = w[n]/N (re0 + (-1)^n re_{N/2} + 2 sum_k (re_k cos - im_k sin)).
    istft_basis = at::empty({N, 2 * K}, at::kFloat);
    auto ib = istft_basis.accessor<float, 2>();
    for (int n = 0; n < N; ++n)
      for (int k = 0; k < K; ++k) {
        double ck = (k == 0 || k == N / 2) ? 1.0 : 2.0;
        double ang = 2.0 * kPi * ((static_cast<int64_t>(k) * n) % N) / N;
        ib[n][k] = static_cast<float>(win[n] * ck * std::cos(ang) / N);
        ib[n][K + k] = static_cast<float>((k == 0 || k == N / 2) ? 0.0 : -win[n] * ck * std::sin(ang) / N);
      }
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
  // Runs the ConvRNNF0Predictor in float64 and rounds to float32. Why: the
  // sine phase integrates F0 over the whole utterance, so a last-bit change in
  // F0 (which float32 convolutions produce when the window, and hence the
  // blocking, changes) would move later harmonic phases; in float64 the
  // rounded F0 is the same whatever the window. Compared with the float32
  // reference this is within the fixture's f32-vs-f64 budget.
  at::Tensor f0_window(const at::Tensor& mel_ct) const {
    at::Tensor x = mel_ct.to(at::kDouble).unsqueeze(0);
    for (size_t k = 0; k < f0_w.size(); ++k) x = at::elu(at::conv1d(x, f0_w[k], f0_b[k], 1, 1));
    at::Tensor f = at::addmm(cls_b.unsqueeze(1), cls_w, x[0]);  // [1, W]
    return f.abs_()[0].to(at::kFloat).contiguous();
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
  // Two implementations of the same graph:
  //  - fast (default): channel-major [C, T] tensors; every stride-1 conv is
  //    a sum of per-tap GEMMs on shifted views of one padded buffer (no
  //    im2col copy), the bias and the residual are the GEMMs' initial value,
  //    Snake is one fused pass that writes the next conv's padded input, and
  //    ConvTranspose1d is one GEMM plus a strided overlap-add;
  //  - reference operation order (CHATTERBOX_HIFT_REFERENCE_OPS=1): the
  //    reference's torch ops one by one (conv1d, conv_transpose1d, Snake as
  //    x + 1/(a+1e-9) * sin(x a)^2), for the benchmark and as a cross-check.
  static bool reference_ops() {
    const char* e = std::getenv("CHATTERBOX_HIFT_REFERENCE_OPS");
    return e && e[0] == '1';
  }

  // sum_k W_k @ xpad[:, k d : k d + T] + init, W as taps [k, Cout, Cin].
  static at::Tensor conv_taps(const at::Tensor& xpad, const at::Tensor& taps, const at::Tensor& init, int64_t dil,
                              int64_t T) {
    at::Tensor out = at::addmm(init, taps[0], xpad.narrow(1, 0, T));
    for (int64_t k = 1; k < taps.size(0); ++k) out.addmm_(taps[k], xpad.narrow(1, k * dil, T));
    return out;
  }
  static at::Tensor to_taps(const at::Tensor& w) { return w.permute({2, 0, 1}).contiguous(); }

  at::Tensor resblock_fast(const ResW& r, at::Tensor x) const {  // x [C, T]
    const int64_t pad1 = (r.k - 1) / 2, T = x.size(1);
    for (size_t i = 0; i < r.dil.size(); ++i) {
      const int64_t d = r.dil[i];
      at::Tensor xt = kernels::snake_padded(x.unsqueeze(0), r.a1[i], r.inv1[i], pad1 * d)[0];
      xt = conv_taps(xt, r.t1[i], r.b1[i].unsqueeze(1), d, T);
      xt = kernels::snake_padded(xt.unsqueeze(0), r.a2[i], r.inv2[i], pad1)[0];
      x = conv_taps(xt, r.t2[i], x + r.b2[i].unsqueeze(1), 1, T);  // residual folded into the init
    }
    return x;
  }

  at::Tensor resblock_ref(const ResW& r, at::Tensor x) const {  // x [1, C, T]
    const int64_t pad1 = (r.k - 1) / 2;
    for (size_t i = 0; i < r.dil.size(); ++i) {
      const int64_t d = r.dil[i];
      auto snake = [](const at::Tensor& v, const at::Tensor& a) {
        at::Tensor al = a.view({1, -1, 1});
        return v + (1.0 / (al + 1e-9)) * at::pow(at::sin(v * al), 2);
      };
      at::Tensor xt = snake(x, r.a1[i]);
      xt = at::conv1d(xt, r.w1[i], r.b1[i], at::IntArrayRef{1}, at::IntArrayRef{pad1 * d}, at::IntArrayRef{d});
      xt = snake(xt, r.a2[i]);
      xt = at::conv1d(xt, r.w2[i], r.b2[i], at::IntArrayRef{1}, at::IntArrayRef{pad1});
      x = xt + x;
    }
    return x;
  }

  // ConvTranspose1d as Z = W^T x (one GEMM) and an overlap-add of the k taps.
  at::Tensor conv_transpose_fast(const at::Tensor& x, int i) const {  // x [Cin, T]
    const int u = cfg.upsample_rates[i], k = cfg.upsample_kernel_sizes[i], p = (k - u) / 2;
    const int64_t T = x.size(1), Cout = up_b[i].size(0);
    at::Tensor z = at::mm(up_t[i], x).view({k, Cout, T});
    at::Tensor full = at::zeros({Cout, (T - 1) * u + k}, x.options());
    for (int kk = 0; kk < k; ++kk) full.slice(1, kk, kk + (T - 1) * u + 1, u).add_(z[kk]);
    return full.narrow(1, p, u * T).add_(up_b[i].unsqueeze(1));
  }

  at::Tensor decode_window(const at::Tensor& mel_ct, const at::Tensor& src_padded, at::Tensor* post_out) const {
    const HiftConfig& c = cfg;
    const int N = c.istft_n_fft, hop = c.istft_hop, K = N / 2 + 1;
    const int n_up = static_cast<int>(c.upsample_rates.size());
    const int nk = static_cast<int>(c.resblock_kernel_sizes.size());
    const bool ref = reference_ops();
    at::Tensor s_stft = at::conv1d(src_padded.reshape({1, 1, -1}), stft_basis, {}, hop);  // [1, 2K, F]
    at::Tensor x;
    if (ref) {
      x = at::conv1d(mel_ct.unsqueeze(0), pre_w, pre_b, 1, 3);
    } else {
      x = conv_taps(at::constant_pad_nd(mel_ct, {3, 3}), pre_t, pre_b.unsqueeze(1), 1, mel_ct.size(1));
    }
    for (int i = 0; i < n_up; ++i) {
      at::leaky_relu_(x, c.lrelu_slope);
      const int u = c.upsample_rates[i], k = c.upsample_kernel_sizes[i];
      x = ref ? at::conv_transpose1d(x, up_w[i], up_b[i], u, (k - u) / 2) : conv_transpose_fast(x, i);
      if (i == n_up - 1)
        x = ref ? at::reflection_pad1d(x, {1, 0}) : at::reflection_pad1d(x.unsqueeze(0), {1, 0}).squeeze(0);
      const int dr = down_rates[i];
      at::Tensor si = at::conv1d(s_stft, sd_w[i], sd_b[i], dr, dr == 1 ? 0 : dr / 2);
      if (ref) {
        x = x + resblock_ref(src_rb[i], si);
        at::Tensor xs = resblock_ref(rb[i * nk], x);
        for (int j = 1; j < nk; ++j) xs = xs + resblock_ref(rb[i * nk + j], x);
        x = xs / nk;
      } else {
        x.add_(resblock_fast(src_rb[i], si[0]));
        at::Tensor xs = resblock_fast(rb[i * nk], x);
        for (int j = 1; j < nk; ++j) xs.add_(resblock_fast(rb[i * nk + j], x));
        x = xs.div_(nk);
      }
    }
    at::leaky_relu_(x, 0.01);
    if (ref) {
      x = at::conv1d(x, post_w, post_b, 1, 3)[0];  // [2K, F]
    } else {
      x = conv_taps(at::constant_pad_nd(x, {3, 3}), post_t, post_b.unsqueeze(1), 1, x.size(1));
    }
    if (post_out) *post_out = x;
    const int64_t F = x.size(1);
    at::Tensor mag = at::exp(x.narrow(0, 0, K)).clamp_max_(100.0);
    at::Tensor ph = at::sin(x.narrow(0, K, K));
    at::Tensor spec = at::cat({mag * at::cos(ph), mag * at::sin(ph)}, 0);  // [2K, F]
    at::Tensor frames = at::mm(istft_basis, spec);  // [N, F], windowed
    // Overlap-add with hop: out[hop q + r] = sum_m frames[hop m + r, q - m].
    const int R = N / hop;
    at::Tensor ola = at::zeros({F + R - 1, hop}, at::kFloat);
    for (int m = 0; m < R; ++m) ola.narrow(0, m, F).add_(frames.narrow(0, hop * m, hop).t());
    at::Tensor y = ola.reshape({-1});  // padded positions [0, hop (F - 1) + N)
    const int64_t len = hop * (F - 1);
    // Window envelope sum_f w^2[p - hop f] at the kept positions [N/2, N/2 + len):
    // constant inside, smaller within N of either end.
    at::Tensor env = at::empty({len}, at::kFloat);
    float* ep = env.data_ptr<float>();
    for (int64_t n = 0; n < len; ++n) {
      const int64_t p = n + N / 2;
      if (n >= N && n + N < len) {
        ep[n] = ep[n - hop];
        continue;
      }
      double e = 0;
      for (int64_t f = std::max<int64_t>(0, ceildiv(p - N + 1, hop)); f <= std::min<int64_t>(F - 1, p / hop); ++f)
        e += win2[p - hop * f];
      ep[n] = static_cast<float>(e);
    }
    at::Tensor audio = y.narrow(0, N / 2, len).div_(env);
    return audio.clamp_(-c.audio_limit, c.audio_limit);
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
  im.mod = std::make_shared<HiftMod>(im.cfg);
  load_module(*im.mod, ck);
  for (auto& p : im.mod->parameters()) im.nparams += p.numel();
  im.prepare();
  return m;
}

std::shared_ptr<HiftModel> HiftModel::random(const HiftConfig& config, uint64_t seed) {
  c10::InferenceMode guard;
  std::shared_ptr<HiftModel> m(new HiftModel());
  Impl& im = *m->impl_;
  im.cfg = config;
  im.mod = std::make_shared<HiftMod>(im.cfg);
  auto gen = at::make_generator<at::CPUGeneratorImpl>(seed);
  for (auto& p : im.mod->named_parameters()) {
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
  im.prepare();
  return m;
}

const HiftConfig& HiftModel::config() const { return impl_->cfg; }
const MelFormat& HiftModel::mel_format() const { return impl_->mel; }
int64_t HiftModel::num_parameters() const { return impl_->nparams; }
const HiftModel::Field& HiftModel::field() const { return impl_->field; }

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
// torch reflect padding of a 1-D signal by `pad` on both sides.
at::Tensor reflect_pad(const at::Tensor& s, int64_t pad) {
  return at::reflection_pad1d(s.reshape({1, 1, -1}), {pad, pad}).reshape({-1});
}
}  // namespace

at::Tensor HiftModel::f0(const at::Tensor& mel) const {
  c10::InferenceMode guard;
  check_mel(mel, impl_->cfg.f0_in_channels, "f0");
  std::vector<at::Tensor> out;
  for (int64_t b = 0; b < mel.size(0); ++b) out.push_back(impl_->f0_window(mel[b].to(at::kFloat)));
  return at::stack(out);
}

at::Tensor HiftModel::f0_window(const at::Tensor& mel_ct) const {
  c10::InferenceMode guard;
  return impl_->f0_window(mel_ct);
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

at::Tensor HiftModel::decode_window(const at::Tensor& mel_ct, const at::Tensor& source_padded,
                                    at::Tensor* conv_post_out) const {
  c10::InferenceMode guard;
  return impl_->decode_window(mel_ct, source_padded, conv_post_out);
}

HiftModel::Decoded HiftModel::decode(const at::Tensor& mel, const at::Tensor& source) const {
  c10::InferenceMode guard;
  check_mel(mel, impl_->cfg.in_channels, "decode");
  const int64_t B = mel.size(0), T = mel.size(2);
  at::Tensor src = source.reshape({source.size(0), -1}).to(at::kFloat);
  if (src.size(0) != B || src.size(1) != T * impl_->spf)
    throw ModelError("HiFT decode: source " + shape_str(source.sizes()) + " does not match mel " +
                     shape_str(mel.sizes()) + " (expected [B, 1, " + std::to_string(T * impl_->spf) + "])");
  std::vector<at::Tensor> audio, post;
  for (int64_t b = 0; b < B; ++b) {
    at::Tensor p;
    audio.push_back(impl_->decode_window(mel[b].to(at::kFloat).contiguous(),
                                         reflect_pad(src[b], impl_->cfg.istft_n_fft / 2), &p));
    post.push_back(p);
  }
  return {at::stack(audio), at::stack(post)};
}

at::Tensor HiftModel::inference(const at::Tensor& mel, const SourceDraws& draws, at::Tensor* source_out) const {
  c10::InferenceMode guard;
  check_mel(mel, impl_->cfg.in_channels, "inference");
  at::Tensor s = source_from_f0(f0(mel), draws);
  if (source_out) *source_out = s;
  return decode(mel, s).audio;
}

at::Tensor trim_fade(int sampling_rate) {
  const int64_t n = sampling_rate / 50;
  at::Tensor f = at::zeros({2 * n}, at::kFloat);
  // torch.linspace(pi, 0, n) in float32, then (cos + 1) / 2 in float32.
  at::Tensor lin = at::linspace(kPi, 0.0, n, at::kFloat);
  f.narrow(0, n, n).copy_((at::cos(lin) + 1) / 2);
  return f;
}

// ---- HiftVocoder (exact streaming) -------------------------------------------------
//
// Dependencies of output frame t (480 samples), from HiftModel::field():
//  - mel frames [t - mel_left, t + mel_right] through conv_pre/ups/resblocks;
//  - source samples [480 t - src_left, 480 t + 479 + src_right] through the
//    source STFT, source_downs and source_resblocks;
//  - the source at sample s depends on the carried phase accumulator and on
//    F0 of frame s / 480, and F0 of frame u on mel frames [u - 5, u + 5].
// So with n frames fed, F0 is final for frames < n - 5, the source for
// samples < 480 (n - 5), and frame t is final once t + mel_right < n and
// 480 t + 479 + src_right < 480 (n - 5). Each step recomputes decode on the
// window [t0 - left, n), where left covers the mel and source reach and the
// STFT frames at the window start; outputs near the window's edges are wrong
// (zero padding) and never emitted. The source is committed (phase state
// advanced) only over frames with final F0; the frames after are filled with
// a provisional source from a copy of the state. drain() runs the last
// window to the true end (reflection pads at the utterance end included).

struct HiftVocoder::State {
  at::Tensor mel;  // [80, kept] channel-major, column 0 = frame mel_off
  int64_t mel_off = 0;
  int64_t n = 0;    // frames fed
  at::Tensor src;  // committed source, element 0 = sample src_off
  int64_t src_off = 0;
  int64_t fc = 0;  // frames whose source is committed
  SourceState sst;
  int64_t e = 0;   // frames emitted
  int64_t samples = 0;
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
int64_t HiftVocoder::samples_out() const { return st_->samples; }
int64_t HiftVocoder::frames_in() const { return st_->n; }

void HiftVocoder::reset() {
  st_ = std::make_unique<State>();
  st_->mel = at::empty({model_->config().in_channels, 0}, at::kFloat);
  st_->src = at::empty({0}, at::kFloat);
  st_->sst = model_->initial_state();
  st_->draws = opts_.draws;
  if (st_->draws.mode == SourceDraws::Mode::Random) st_->draws.seed = opts_.draws.seed + utterance_;
}

at::Tensor HiftVocoder::feed(const at::Tensor& frames) {
  c10::InferenceMode guard;
  const int64_t C = model_->config().in_channels;
  if (frames.dim() != 2 || frames.size(1) != C)
    throw ModelError("hift: expected mel frames [T, " + std::to_string(C) + "], got " + shape_str(frames.sizes()));
  if (frames.size(0) == 0) return at::empty({0}, at::kFloat);
  st_->mel = at::cat({st_->mel, frames.to(at::kFloat).t()}, 1);
  st_->n += frames.size(0);
  return step(false);
}

at::Tensor HiftVocoder::drain() {
  c10::InferenceMode guard;
  at::Tensor out = step(true);
  ++utterance_;
  reset();
  return out;
}

at::Tensor HiftVocoder::step(bool final) {
  State& s = *st_;
  const auto& fld = model_->field();
  const int64_t spf = model_->config().samples_per_frame();
  const int64_t pad = model_->config().istft_n_fft / 2;
  const int64_t n = s.n;
  at::Tensor none = at::empty({0}, at::kFloat);
  if (n == 0) return none;
  const int64_t e1 = final ? n : std::min(n, std::max(s.e, n - lookahead_));
  if (e1 <= s.e) return none;
  const int64_t F = final ? n : std::max<int64_t>(s.fc, n - fld.f0_radius);  // frames with final F0

  // 1. F0 of frames [fc, n) from a window starting f0_radius frames earlier.
  const int64_t w0 = std::max<int64_t>(0, s.fc - fld.f0_radius);
  at::Tensor f0 = model_->f0_window(s.mel.narrow(1, w0 - s.mel_off, n - w0)).narrow(0, s.fc - w0, n - s.fc);
  // 2. Commit the source over frames with final F0; 3. provisional after.
  if (F > s.fc) {
    at::Tensor add = model_->source_chunk(f0.narrow(0, 0, F - s.fc), s.sst, s.draws);
    s.src = at::cat({s.src, add});
  }
  at::Tensor prov;
  if (n > F) {
    SourceState tmp = s.sst;
    prov = model_->source_chunk(f0.narrow(0, F - s.fc, n - F), tmp, s.draws);
  }
  s.fc = F;

  // 4. Decode window [a, n).
  const int64_t left = std::max(fld.mel_left, ceildiv(fld.src_left + pad, spf));
  const int64_t a = std::max<int64_t>(0, s.e - left);
  at::Tensor mid = s.src.narrow(0, a * spf - s.src_off, F * spf - a * spf);
  if (prov.defined()) mid = at::cat({mid, prov});
  at::Tensor lpad = a == 0 ? mid.narrow(0, 1, pad).flip(0) : s.src.narrow(0, a * spf - pad - s.src_off, pad);
  at::Tensor rpad = mid.narrow(0, mid.size(0) - 1 - pad, pad).flip(0);
  at::Tensor audio = model_->decode_window(s.mel.narrow(1, a - s.mel_off, n - a).contiguous(),
                                           at::cat({lpad, mid, rpad}));
  at::Tensor out = audio.narrow(0, (s.e - a) * spf, (e1 - s.e) * spf).clone();

  // 5. S3Token2Wav's fade on the utterance's first samples.
  if (opts_.trim_fade) {
    at::Tensor fade = trim_fade(model_->config().sampling_rate);
    const int64_t s0 = s.e * spf, s1 = e1 * spf;
    const int64_t f1 = std::min<int64_t>(s1, fade.numel());
    if (f1 > s0) out.narrow(0, 0, f1 - s0).mul_(fade.narrow(0, s0, f1 - s0));
  }
  s.e = e1;
  s.samples += out.numel();

  // 6. Drop what no later window needs.
  const int64_t next_a = std::max<int64_t>(0, s.e - left);
  const int64_t keep_mel = std::min(next_a, std::max<int64_t>(0, s.fc - fld.f0_radius));
  if (keep_mel > s.mel_off) {
    s.mel = s.mel.narrow(1, keep_mel - s.mel_off, s.mel.size(1) - (keep_mel - s.mel_off));
    s.mel_off = keep_mel;
  }
  const int64_t keep_src = std::max<int64_t>(0, next_a * spf - pad);
  if (keep_src > s.src_off) {
    s.src = s.src.narrow(0, keep_src - s.src_off, s.src.size(0) - (keep_src - s.src_off));
    s.src_off = keep_src;
  }
  return out;
}

at::Tensor HiftVocoder::forward(const at::Tensor& mel) {
  c10::InferenceMode guard;
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
