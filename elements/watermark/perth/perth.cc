#include "elements/watermark/perth/perth.h"

#include "elements/voice/audio/resample.h"
#include "elements/watermark/perth/resample_poly.h"
#include "gst-plugins/core/compute_threads.h"
#include "gst-plugins/core/torch_f32.h"

#include <ATen/ATen.h>
#include <c10/core/InferenceMode.h>
#include <yaml-cpp/yaml.h>

#include <cmath>
#include <filesystem>
#include <limits>

namespace chatterbox::perth {

int64_t PerthConfig::subband() const {
  const double nfreq = static_cast<double>(n_freq());
  const double topfreq = static_cast<double>(sample_rate) / 2.0;
  // Python's round(): half to even; std::nearbyint under the default mode does the same.
  return static_cast<int64_t>(std::nearbyint(nfreq * max_wmark_freq / topfreq));
}

PerthConfig read_hparams(const std::string& path) {
  PerthConfig c;
  YAML::Node y;
  try {
    y = YAML::LoadFile(path);
  } catch (const std::exception& e) {
    throw ModelError("Perth hparams '" + path + "' could not be read: " + e.what());
  }
  auto get_i = [&](const char* k, int64_t& v) {
    if (y[k]) v = y[k].as<int64_t>();
  };
  try {
    get_i("sample_rate", c.sample_rate);
    get_i("n_fft", c.n_fft);
    get_i("hop_size", c.hop_size);
    get_i("window_size", c.window_size);
    get_i("hidden_size", c.hidden_size);
    if (y["stft_magnitude_min"]) c.stft_magnitude_min = y["stft_magnitude_min"].as<double>();
    if (y["max_wmark_freq"]) c.max_wmark_freq = y["max_wmark_freq"].as<double>();
    if (y["window_fn"]) c.window_fn = y["window_fn"].as<std::string>();
  } catch (const std::exception& e) {
    throw ModelError("Perth hparams '" + path + "': a field has the wrong type (" + e.what() + ")");
  }
  if (c.window_fn != "hann")
    throw ModelError("Perth hparams '" + path + "': window_fn '" + c.window_fn +
                     "' is not supported (only the shipped 'hann')");
  if (c.sample_rate <= 0 || c.hop_size <= 0 || c.n_fft <= 0 || c.window_size != c.n_fft ||
      c.stft_magnitude_min <= 0.0)
    throw ModelError("Perth hparams '" + path +
                     "': sample_rate, hop_size and n_fft must be positive, window_size equal to n_fft and "
                     "stft_magnitude_min positive");
  return c;
}

at::Tensor ConvStack::forward(const at::Tensor& x_in) const {
  at::Tensor x = x_in;
  for (size_t i = 0; i < weight.size(); ++i) {
    const int64_t k = weight[i].size(2);
    x = at::conv1d(x, weight[i], bias[i], {1}, {(k - 1) / 2});
    if (i + 1 < weight.size()) x = at::leaky_relu(x, 0.01);
  }
  return x;
}

namespace {

ConvStack load_stack(const Checkpoint& ck, const std::string& prefix, int64_t in, int64_t hidden, int64_t out) {
  ConvStack s;
  for (int64_t i = 0; i < 7; ++i) {
    const int64_t ci = i == 0 ? in : hidden;
    const int64_t co = i == 6 ? out : hidden;
    const int64_t k = (i == 0 || i == 6) ? 1 : 7;
    const std::string name = prefix + "." + std::to_string(i) + ".conv.";
    s.weight.push_back(ck.get(name + "weight", {co, ci, k}));
    s.bias.push_back(ck.get(name + "bias", {co}));
  }
  return s;
}

double min_level_db(const PerthConfig& c) { return 20.0 * std::log10(c.stft_magnitude_min); }

}  // namespace

at::Tensor magmask(const at::Tensor& frame_sums, float running_max) {
  // upstream: s.max(dim=1).values * p in float32, then s > thresh
  const float thresh = running_max * 0.05f;
  return frame_sums.gt(thresh).to(at::kFloat);
}

std::shared_ptr<const PerthNet> PerthNet::load(const std::string& path) {
  namespace fs = std::filesystem;
  if (!fs::exists(path))
    throw ModelError("Perth watermark model '" + path + "' does not exist (expected perth_net_250000.pth.tar from "
                     "the resemble-perth package, or a safetensors file with the same tensors)");
  PerthConfig cfg;
  const fs::path hp = fs::path(path).parent_path() / "hparams.yaml";
  if (fs::exists(hp)) cfg = read_hparams(hp.string());
  Checkpoint ck = Checkpoint::open(path);
  auto net = std::make_shared<PerthNet>(ck, cfg);
  return net;
}

PerthNet::PerthNet(const Checkpoint& ck_in, PerthConfig cfg) : cfg_(std::move(cfg)), path_(ck_in.path()) {
  Checkpoint ck = ck_in;
  if (!ck.has("encoder.layers.0.conv.weight") && ck.has("model.encoder.layers.0.conv.weight")) {
    const auto& md = ck.store().metadata;
    if (auto it = md.find("step"); it != md.end()) {
      try {
        step_ = std::stoll(it->second);
      } catch (const std::exception&) {
        step_ = -1;
      }
    }
    ck = ck.sub("model.");
  }
  if (!ck.has("encoder.layers.0.conv.weight"))
    throw ModelError("'" + ck_in.path() +
                     "' is not a Perth implicit watermark model: tensor 'model.encoder.layers.0.conv.weight' (or "
                     "'encoder.layers.0.conv.weight') is missing");
  const at::Tensor w0 = ck.get("encoder.layers.0.conv.weight");
  if (w0.dim() != 3)
    throw ModelError("'" + ck_in.path() + "': tensor '" + ck.prefix() + "encoder.layers.0.conv.weight' has shape " +
                     shape_str(w0.sizes()) + ", expected [hidden, subband, 1]");
  const int64_t sub = cfg_.subband();
  if (w0.size(1) != sub)
    throw ModelError("'" + ck_in.path() + "': tensor '" + ck.prefix() + "encoder.layers.0.conv.weight' has " +
                     std::to_string(w0.size(1)) + " input channels, but the hparams (n_fft " +
                     std::to_string(cfg_.n_fft) + ", sample_rate " + std::to_string(cfg_.sample_rate) +
                     ", max_wmark_freq " + std::to_string(cfg_.max_wmark_freq) + ") give a subband of " +
                     std::to_string(sub) + " bins");
  cfg_.hidden_size = w0.size(0);
  const int64_t h = cfg_.hidden_size;
  encoder_ = load_stack(ck, "encoder.layers", sub, h, sub);
  slow_ = load_stack(ck, "decoder.slow_layers", sub, h, 2);
  normal_ = load_stack(ck, "decoder.normal_layers", sub, h, 2);
  fast_ = load_stack(ck, "decoder.fast_layers", sub, h, 2);
  const std::vector<float> w = f32::hann_window(cfg_.window_size, true);
  window_ = at::from_blob(const_cast<float*>(w.data()), {cfg_.window_size}, at::kFloat).clone();
}

at::Tensor PerthNet::stft_frames(const at::Tensor& padded) const {
  return at::stft(padded, cfg_.n_fft, cfg_.hop_size, cfg_.window_size, window_, /*normalized=*/false,
                  /*onesided=*/true, /*return_complex=*/true);
}

MagPhase PerthNet::to_magphase(const at::Tensor& spec) const {
  MagPhase mp;
  mp.phase = at::angle(spec);
  at::Tensor mag = at::abs(spec);
  mag = at::mul(at::log10(at::clamp_min(mag, cfg_.stft_magnitude_min)), 20);
  const double mdb = min_level_db(cfg_);
  mp.mag = at::div(at::sub(mag, mdb), -mdb + 15.0);
  return mp;
}

MagPhase PerthNet::magphase(const at::Tensor& wave32) const {
  c10::InferenceMode guard;
  at::Tensor x = wave32.to(at::kFloat).reshape({-1}).contiguous();
  const int64_t half = cfg_.n_fft / 2;
  if (x.size(0) <= half)
    throw ModelError("Perth: a signal of " + std::to_string(x.size(0)) + " samples at " +
                     std::to_string(cfg_.sample_rate) + " Hz is too short for its STFT (reflect padding needs more than " +
                     std::to_string(half) + ")");
  // torch.stft(center=True, pad_mode="reflect"): F.pad reflect, then frames.
  const at::Tensor padded = at::reflection_pad1d(x.view({1, 1, -1}), {half, half}).view({-1});
  return to_magphase(stft_frames(padded));
}

at::Tensor PerthNet::encoder_raw(const at::Tensor& sub_mag) const {
  c10::InferenceMode guard;
  return encoder_.forward(sub_mag.unsqueeze(0)).squeeze(0);
}

at::Tensor PerthNet::to_complex(const at::Tensor& mag, const at::Tensor& phase) const {
  const double mdb = min_level_db(cfg_);
  at::Tensor m = at::add(at::mul(mag, -mdb + 15.0), mdb);                 // denormalize_spectrogram
  m = at::pow(10.0, at::clamp_max(at::div(m, 20), 10));                  // 10 ** ((m / 20).clip(max=10))
  at::Tensor ph = at::exp(at::mul(phase, c10::Scalar(c10::complex<double>(0.0, 1.0))));  // exp(1j * phase)
  return at::mul(m, ph);
}

at::Tensor PerthNet::synthesize(const at::Tensor& mag, const at::Tensor& phase, int64_t length) const {
  c10::InferenceMode guard;
  c10::optional<int64_t> len;
  if (length >= 0) len = length;
  return at::istft(to_complex(mag, phase), cfg_.n_fft, cfg_.hop_size, cfg_.window_size, window_, /*center=*/true,
                   /*normalized=*/false, /*onesided=*/true, len, /*return_complex=*/false);
}

double PerthNet::decode(const at::Tensor& mag_in) const {
  c10::InferenceMode guard;
  const at::Tensor mag = mag_in.unsqueeze(0);  // [1, F, T]
  const at::Tensor s = mag.sum(1);             // [1, T]
  at::Tensor mask = s.gt(at::mul(s.amax(1, true), 0.05)).to(at::kFloat).unsqueeze(1);  // [1, 1, T]
  const int64_t sub = cfg_.subband();
  const at::Tensor subband = mag.slice(1, 0, sub).contiguous();
  const int64_t T = subband.size(2);
  auto masked_mean = [](const at::Tensor& x, const at::Tensor& m) { return at::div(at::mul(x, m).sum(2), m.sum(2)); };
  auto branch = [&](const ConvStack& st, const at::Tensor& in, at::Tensor& attn, at::Tensor& wm) {
    const at::Tensor out = st.forward(in);
    const at::Tensor a = out.slice(1, 0, 1), w = out.slice(1, 1, 2);
    const at::Tensor m = at::upsample_nearest1d(mask, at::IntArrayRef{w.size(2)}, c10::optional<double>());
    wm = masked_mean(w, m);
    attn = masked_mean(a, m);
  };
  at::Tensor sa, sw, na, nw, fa, fw;
  branch(slow_, at::upsample_linear1d(subband, at::IntArrayRef{static_cast<int64_t>(static_cast<double>(T) * 1.25)}, true, c10::optional<double>()),
         sa, sw);
  branch(normal_, subband, na, nw);
  branch(fast_, at::upsample_linear1d(subband, at::IntArrayRef{static_cast<int64_t>(static_cast<double>(T) * 0.75)}, true, c10::optional<double>()),
         fa, fw);
  at::Tensor attn = at::softmax(at::cat({sa, na, fa}, 1), 1);
  at::Tensor wm = at::mul(at::cat({sw, nw, fw}, 1), attn).sum(1);
  return wm.item<double>();
}

at::Tensor PerthNet::embed32(const at::Tensor& wave32, at::Tensor* mask_out, at::Tensor* residual_out) const {
  c10::InferenceMode guard;
  ComputeThreads threads;
  MagPhase mp = magphase(wave32);
  const at::Tensor sums = mp.mag.sum(0);
  const at::Tensor mask = magmask(sums, sums.max().item<float>());
  const int64_t sub = cfg_.subband();
  at::Tensor mag = mp.mag.clone();
  const at::Tensor res = at::mul(encoder_raw(mag.slice(0, 0, sub)), mask.unsqueeze(0));
  mag.slice(0, 0, sub).add_(res);
  if (mask_out) *mask_out = mask;
  if (residual_out) *residual_out = res;
  return synthesize(mag, mp.phase);
}

at::Tensor PerthNet::apply_watermark(const at::Tensor& wave, int64_t rate) const {
  c10::InferenceMode guard;
  const at::Tensor x = wave.to(at::kFloat).reshape({-1}).contiguous();
  const bool change = rate != cfg_.sample_rate;
  const at::Tensor x32 = change ? voice::resample_soxr_hq(x, rate, cfg_.sample_rate) : x;
  const at::Tensor y32 = embed32(x32);
  return change ? voice::resample_soxr_hq(y32, cfg_.sample_rate, rate) : y32;
}

double PerthNet::detect_raw(const at::Tensor& wave, int64_t rate) const {
  c10::InferenceMode guard;
  ComputeThreads threads;
  at::Tensor x = wave.to(at::kFloat).reshape({-1}).contiguous();
  if (rate != cfg_.sample_rate) {
    std::vector<float> y = resample_poly(x.data_ptr<float>(), x.size(0), rate, cfg_.sample_rate);
    x = at::from_blob(y.data(), {static_cast<int64_t>(y.size())}, at::kFloat).clone();
  }
  return decode(magphase(x).mag);
}

double PerthNet::detect(const at::Tensor& wave, int64_t rate) const {
  const double c = detect_raw(wave, rate);
  if (std::isnan(c)) return 0.0;
  return std::clamp(c, 0.0, 1.0);
}

}  // namespace chatterbox::perth
