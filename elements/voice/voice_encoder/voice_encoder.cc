#include "elements/voice/voice_encoder/voice_encoder.h"

#include "elements/voice/audio/librosa_mel.h"
#include "elements/voice/voice_encoder/ve_melspec.h"
#include "gst-plugins/core/compute_threads.h"
#include "gst-plugins/core/module_loader.h"

#include <ATen/ATen.h>
#include <c10/core/InferenceMode.h>
#include <torch/nn/module.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/modules/rnn.h>

#include <algorithm>
#include <cmath>

namespace chatterbox::voice {

namespace {

using Cfg = VoiceEncoderConfig;

struct VoiceEncoderModel : torch::nn::Module {
  explicit VoiceEncoderModel(const Cfg& c) {
    lstm = register_module("lstm", torch::nn::LSTM(torch::nn::LSTMOptions(c.n_mels, c.hidden).num_layers(c.layers).batch_first(true)));
    proj = register_module("proj", torch::nn::Linear(c.hidden, c.embed));
    // Cosine-similarity scale and bias: training-only, kept so the state
    // dict maps one to one.
    similarity_weight = register_parameter("similarity_weight", torch::full({1}, 10.0));
    similarity_bias = register_parameter("similarity_bias", torch::full({1}, -5.0));
  }
  torch::nn::LSTM lstm{nullptr};
  torch::nn::Linear proj{nullptr};
  torch::Tensor similarity_weight, similarity_bias;
};

// get_frame_step(rate=1.3): int(np.round((16000 / 1.3) / 160)) = 77.
int64_t frame_step() {
  return static_cast<int64_t>(std::nearbyint((static_cast<double>(Cfg::kRate) / Cfg::kPartialRate) /
                                             static_cast<double>(Cfg::kPartialFrames)));
}

at::Tensor l2_rows(const at::Tensor& x, const char* what) {
  at::Tensor norm = at::linalg_norm(x, c10::nullopt, at::IntArrayRef{1}, /*keepdim=*/true);
  if ((norm == 0).any().item<bool>())
    throw ModelError(std::string("VoiceEncoder: a ") + what +
                     " is all zeros after the ReLU, so it has no direction (upstream would return NaN)");
  return x / norm;
}

}  // namespace

struct VoiceEncoder::Impl {
  Cfg cfg;
  std::shared_ptr<VoiceEncoderModel> model;
  at::Tensor basis;
  at::ScalarType dtype = at::kFloat;
};

VoiceEncoder::VoiceEncoder(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
VoiceEncoder::VoiceEncoder(VoiceEncoder&&) noexcept = default;
VoiceEncoder& VoiceEncoder::operator=(VoiceEncoder&&) noexcept = default;
VoiceEncoder::~VoiceEncoder() = default;

VoiceEncoder VoiceEncoder::load(const std::string& path, at::ScalarType dtype) {
  return load(Checkpoint::open(path), dtype);
}

VoiceEncoder VoiceEncoder::load(const Checkpoint& ck, at::ScalarType dtype) {
  if (!ck.has("lstm.weight_ih_l0"))
    throw ModelError("checkpoint '" + ck.path() + "' holds no VoiceEncoder: tensor '" + ck.prefix() +
                     "lstm.weight_ih_l0' is missing (expected ve.safetensors)");
  Cfg c;
  const auto ih = ck.get("lstm.weight_ih_l0").sizes().vec();
  if (ih.size() != 2 || ih[0] % 4 != 0)
    throw ModelError("checkpoint '" + ck.path() + "': tensor '" + ck.prefix() + "lstm.weight_ih_l0' has shape " +
                     shape_str(ih) + ", expected [4 * hidden, n_mels]");
  c.hidden = ih[0] / 4;
  c.n_mels = ih[1];
  c.layers = 0;
  while (ck.has("lstm.weight_ih_l" + std::to_string(c.layers))) ++c.layers;
  if (!ck.has("proj.weight"))
    throw ModelError("checkpoint '" + ck.path() + "' has no tensor '" + ck.prefix() + "proj.weight'");
  c.embed = ck.get("proj.weight").size(0);
  auto impl = std::make_unique<Impl>();
  impl->cfg = c;
  impl->model = std::make_shared<VoiceEncoderModel>(c);
  load_module(*impl->model, ck);
  impl->model->eval();
  if (dtype != at::kFloat) impl->model->to(dtype);
  impl->dtype = dtype;
  impl->basis = librosa_mel_f32(Cfg::kRate, 400, c.n_mels, 0.0, 8000.0);
  return VoiceEncoder(std::move(impl));
}

const VoiceEncoderConfig& VoiceEncoder::config() const { return impl_->cfg; }
at::Tensor VoiceEncoder::mel_basis() const { return impl_->basis; }

at::Tensor VoiceEncoder::mel(const at::Tensor& wave_16k) const { return ve_power_mel(wave_16k, impl_->basis); }

at::Tensor VoiceEncoder::partials(const at::Tensor& mel) {
  c10::InferenceMode guard;
  ComputeThreads threads;  // the project thread policy (compute_threads.h)
  const int64_t T = mel.size(0), win = Cfg::kPartialFrames, step = frame_step();
  if (T <= 0) throw ModelError("VoiceEncoder: no mel frames to embed");
  // get_num_wins
  const int64_t span = std::max<int64_t>(T - win + step, 0);
  int64_t n = span / step;
  const int64_t rem = span % step;
  if (n == 0 || static_cast<double>(rem + (win - step)) / static_cast<double>(win) >= Cfg::kMinCoverage) ++n;
  const int64_t target = win + step * (n - 1);
  at::Tensor m = mel.to(at::kFloat);
  if (target > T)
    m = at::cat({m, at::zeros({target - T, m.size(1)}, m.options())}, 0);
  else
    m = m.slice(0, 0, target);
  std::vector<at::Tensor> parts;
  for (int64_t i = 0; i < n; ++i) parts.push_back(m.slice(0, i * step, i * step + win));
  return at::stack(parts);
}

at::Tensor VoiceEncoder::partial_embeds(const at::Tensor& partials, at::Tensor* proj) const {
  c10::InferenceMode guard;
  ComputeThreads threads;  // the project thread policy (compute_threads.h)
  const Cfg& c = impl_->cfg;
  if (partials.dim() != 3 || partials.size(1) != Cfg::kPartialFrames || partials.size(2) != c.n_mels)
    throw ModelError("VoiceEncoder: partials have shape " + shape_str(partials.sizes()) + ", expected [n, " +
                     std::to_string(Cfg::kPartialFrames) + ", " + std::to_string(c.n_mels) + "]");
  auto out = impl_->model->lstm->forward(partials.to(impl_->dtype));
  at::Tensor h_last = std::get<0>(std::get<1>(out))[c.layers - 1];  // h_n of the last layer
  at::Tensor raw = impl_->model->proj->forward(h_last);
  if (proj) *proj = raw;
  return l2_rows(at::relu(raw), "partial embedding");
}

at::Tensor VoiceEncoder::utterance_embed(const at::Tensor& partial_embeds) {
  c10::InferenceMode guard;
  ComputeThreads threads;  // the project thread policy (compute_threads.h)
  return l2_rows(partial_embeds.mean(0, /*keepdim=*/true), "mean of the partial embeddings");
}

at::Tensor VoiceEncoder::embed(const at::Tensor& wave_16k) const {
  c10::InferenceMode guard;
  ComputeThreads threads;  // the project thread policy (compute_threads.h)
  at::Tensor wave = wave_16k.to(at::kFloat).reshape({-1});
  const TrimResult tr = librosa_trim(wave, Cfg::kTrimTopDb);
  return utterance_embed(partial_embeds(partials(mel(wave.slice(0, tr.start, tr.end)))));
}

}  // namespace chatterbox::voice
