// S3TokenizerV2: module tree (names mirror the reference state dict under
// `tokenizer.`), front end, encoder, FSQ and the long-audio windows.
#include "elements/voice/s3tokenizer/s3tokenizer.h"

#include "elements/voice/audio/librosa_mel.h"
#include "gst-plugins/core/compute_threads.h"
#include "gst-plugins/core/module_loader.h"
#include "gst-plugins/core/torch_f32.h"

#include <ATen/ATen.h>
#include <c10/core/InferenceMode.h>
#include <torch/nn/module.h>
#include <torch/nn/modules/conv.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/modules/normalization.h>

#include <algorithm>
#include <cmath>
#include <set>
#include <vector>

namespace chatterbox::voice {

namespace {

using Cfg = S3TokenizerConfig;

struct Node : torch::nn::Module {};

// FSMNMultiHeadAttention: query/value/out with bias, key without; the FSMN
// memory is a depthwise conv over the values.
struct FsmnAttention : torch::nn::Module {
  FsmnAttention(int64_t n_state, int64_t kernel) {
    query = register_module("query", torch::nn::Linear(n_state, n_state));
    key = register_module("key", torch::nn::Linear(torch::nn::LinearOptions(n_state, n_state).bias(false)));
    value = register_module("value", torch::nn::Linear(n_state, n_state));
    out = register_module("out", torch::nn::Linear(n_state, n_state));
    fsmn_block = register_module(
        "fsmn_block",
        torch::nn::Conv1d(torch::nn::Conv1dOptions(n_state, n_state, kernel).groups(n_state).bias(false)));
    left = (kernel - 1) / 2;
    right = kernel - 1 - left;
  }
  torch::nn::Linear query{nullptr}, key{nullptr}, value{nullptr}, out{nullptr};
  torch::nn::Conv1d fsmn_block{nullptr};
  int64_t left = 15, right = 15;
};

struct ResidualAttentionBlock : torch::nn::Module {
  ResidualAttentionBlock(int64_t n_state, int64_t kernel) {
    attn = register_module("attn", std::make_shared<FsmnAttention>(n_state, kernel));
    attn_ln = register_module("attn_ln", torch::nn::LayerNorm(torch::nn::LayerNormOptions({n_state}).eps(1e-6)));
    mlp = register_module("mlp", std::make_shared<Node>());
    mlp0 = mlp->register_module("0", torch::nn::Linear(n_state, 4 * n_state));
    mlp2 = mlp->register_module("2", torch::nn::Linear(4 * n_state, n_state));
    mlp_ln = register_module("mlp_ln", torch::nn::LayerNorm(torch::nn::LayerNormOptions({n_state}).eps(1e-5)));
  }
  std::shared_ptr<FsmnAttention> attn;
  torch::nn::LayerNorm attn_ln{nullptr}, mlp_ln{nullptr};
  std::shared_ptr<Node> mlp;
  torch::nn::Linear mlp0{nullptr}, mlp2{nullptr};
};

struct AudioEncoderV2 : torch::nn::Module {
  explicit AudioEncoderV2(const Cfg& c) {
    conv1 = register_module("conv1", torch::nn::Conv1d(torch::nn::Conv1dOptions(c.n_mels, c.n_state, 3).stride(2).padding(1)));
    conv2 = register_module("conv2", torch::nn::Conv1d(torch::nn::Conv1dOptions(c.n_state, c.n_state, 3).stride(2).padding(1)));
    blocks_node = register_module("blocks", std::make_shared<Node>());
    for (int64_t i = 0; i < c.n_layer; ++i)
      blocks.push_back(blocks_node->register_module(std::to_string(i), std::make_shared<ResidualAttentionBlock>(c.n_state, c.fsmn_kernel)));
  }
  torch::nn::Conv1d conv1{nullptr}, conv2{nullptr};
  std::shared_ptr<Node> blocks_node;
  std::vector<std::shared_ptr<ResidualAttentionBlock>> blocks;
};

struct S3TokenizerModel : torch::nn::Module {
  explicit S3TokenizerModel(const Cfg& c) {
    encoder = register_module("encoder", std::make_shared<AudioEncoderV2>(c));
    quantizer = register_module("quantizer", std::make_shared<Node>());
    codebook = quantizer->register_module("_codebook", std::make_shared<Node>());
    project_down = codebook->register_module("project_down", torch::nn::Linear(c.n_state, Cfg::kFsqDims));
  }
  std::shared_ptr<AudioEncoderV2> encoder;
  std::shared_ptr<Node> quantizer, codebook;
  torch::nn::Linear project_down{nullptr};
};

// precompute_freqs_cis(64, 2048) as torch evaluates it in float32, step by
// step in IEEE float (torch_f32.h: ATen's pow/cos/sin differ by an ulp
// between CPU capabilities): freqs_j = reciprocal(10000 ** (2j / 64)),
// angle = float(t) * freqs_j, then cos/sin of the float angle, repeated over
// both halves of the head (torch.cat((freqs_cis, freqs_cis), -1)).
void rotary_tables(int64_t positions, at::Tensor& cos_out, at::Tensor& sin_out) {
  constexpr int64_t kHalf = Cfg::kHeadDim / 2;
  float freqs[kHalf];
  for (int64_t j = 0; j < kHalf; ++j) {
    const float e = static_cast<float>(2 * j) / static_cast<float>(Cfg::kHeadDim);
    freqs[j] = 1.0f / f32::pow(10000.0f, e);
  }
  cos_out = at::empty({positions, Cfg::kHeadDim}, at::kFloat);
  sin_out = at::empty({positions, Cfg::kHeadDim}, at::kFloat);
  float* c = cos_out.data_ptr<float>();
  float* s = sin_out.data_ptr<float>();
  for (int64_t t = 0; t < positions; ++t)
    for (int64_t j = 0; j < kHalf; ++j) {
      const float angle = static_cast<float>(t) * freqs[j];
      const float cv = f32::round(std::cos(static_cast<double>(angle)));
      const float sv = f32::round(std::sin(static_cast<double>(angle)));
      c[t * Cfg::kHeadDim + j] = c[t * Cfg::kHeadDim + j + kHalf] = cv;
      s[t * Cfg::kHeadDim + j] = s[t * Cfg::kHeadDim + j + kHalf] = sv;
    }
}

constexpr int64_t kRotaryPositions = 2048;  // upstream's table: 2048 tokens per encoder call

int64_t count_indexed(const Checkpoint& ck, const std::string& stem) {
  int64_t n = 0;
  for (const auto& k : ck.keys()) {
    if (k.compare(0, stem.size(), stem) != 0) continue;
    const size_t dot = k.find('.', stem.size());
    if (dot == std::string::npos) continue;
    const std::string idx = k.substr(stem.size(), dot - stem.size());
    if (idx.empty() || idx.find_first_not_of("0123456789") != std::string::npos) continue;
    n = std::max<int64_t>(n, std::stoll(idx) + 1);
  }
  return n;
}

Cfg infer_config(const Checkpoint& ck) {
  Cfg c;
  const auto conv1 = ck.get("encoder.conv1.weight").sizes().vec();
  if (conv1.size() != 3 || conv1[2] != 3)
    throw ModelError("checkpoint '" + ck.path() + "': tensor '" + ck.prefix() + "encoder.conv1.weight' has shape " +
                     shape_str(conv1) + ", expected [width, n_mels, 3]");
  c.n_state = conv1[0];
  c.n_mels = conv1[1];
  if (c.n_state % Cfg::kHeadDim != 0)
    throw ModelError("checkpoint '" + ck.path() + "': tokenizer width " + std::to_string(c.n_state) + " (from '" +
                     ck.prefix() + "encoder.conv1.weight') is not a multiple of 64, the head size upstream's rotary "
                     "table fixes");
  c.n_head = c.n_state / Cfg::kHeadDim;
  c.n_layer = count_indexed(ck, "encoder.blocks.");
  if (c.n_layer == 0)
    throw ModelError("checkpoint '" + ck.path() + "' has no tensor '" + ck.prefix() +
                     "encoder.blocks.0.attn.query.weight': no encoder blocks");
  const auto fsmn = ck.get("encoder.blocks.0.attn.fsmn_block.weight").sizes().vec();
  if (fsmn.size() != 3)
    throw ModelError("checkpoint '" + ck.path() + "': tensor '" + ck.prefix() +
                     "encoder.blocks.0.attn.fsmn_block.weight' has shape " + shape_str(fsmn) + ", expected [" +
                     std::to_string(c.n_state) + ", 1, kernel]");
  c.fsmn_kernel = fsmn[2];
  return c;
}

}  // namespace

struct S3Tokenizer::Impl {
  Cfg cfg;
  std::string prefix;
  std::shared_ptr<S3TokenizerModel> model;
  at::Tensor filters;   // [n_mels, 201] float32
  at::Tensor window;    // [400] float32
  at::Tensor rot_cos, rot_sin;  // [2048, 64]

  at::Tensor block_forward(ResidualAttentionBlock& b, const at::Tensor& x_in) const {
    const int64_t T = x_in.size(1), C = cfg.n_state, H = cfg.n_head, D = Cfg::kHeadDim;
    FsmnAttention& a = *b.attn;
    at::Tensor h = b.attn_ln->forward(x_in);
    at::Tensor q = a.query->forward(h).view({1, T, H, D});
    at::Tensor k = a.key->forward(h).view({1, T, H, D});
    at::Tensor v = a.value->forward(h);  // [1, T, C]
    // Rotary (apply_rotary_emb): x * cos + rotate_half(x) * sin, rotate_half
    // = cat(-x[D/2:], x[:D/2]).
    const at::Tensor cs = rot_cos.slice(0, 0, T).view({1, T, 1, D}), sn = rot_sin.slice(0, 0, T).view({1, T, 1, D});
    auto rotate = [&](const at::Tensor& x) {
      at::Tensor r = at::cat({-x.slice(3, D / 2, D), x.slice(3, 0, D / 2)}, 3);
      return x * cs + r * sn;
    };
    q = rotate(q);
    k = rotate(k);
    // FSMN memory: depthwise conv over zero-padded values, plus the values.
    at::Tensor vt = at::constant_pad_nd(v.transpose(1, 2), {a.left, a.right}, 0.0);
    at::Tensor memory = a.fsmn_block->forward(vt).transpose(1, 2) + v;
    // q and k are each scaled by (C / H)^-0.25 (a Python float, so the
    // multiplication is by its float32 rounding).
    const double scale = std::pow(static_cast<double>(C / H), -0.25);
    at::Tensor qh = q.permute({0, 2, 1, 3}) * scale;
    at::Tensor kh = k.permute({0, 2, 3, 1}) * scale;
    at::Tensor vh = v.view({1, T, H, D}).permute({0, 2, 1, 3});
    at::Tensor w = at::softmax(at::matmul(qh, kh), -1);
    at::Tensor wv = at::matmul(w, vh).permute({0, 2, 1, 3}).reshape({1, T, C});
    at::Tensor x = x_in + (a.out->forward(wv) + memory);
    return x + b.mlp2->forward(at::gelu(b.mlp0->forward(b.mlp_ln->forward(x))));
  }
};

S3Tokenizer::S3Tokenizer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
S3Tokenizer::S3Tokenizer(S3Tokenizer&&) noexcept = default;
S3Tokenizer& S3Tokenizer::operator=(S3Tokenizer&&) noexcept = default;
S3Tokenizer::~S3Tokenizer() = default;

S3Tokenizer S3Tokenizer::load(const std::string& path) { return load(Checkpoint::open(path)); }

S3Tokenizer S3Tokenizer::load(const Checkpoint& ckpt) {
  std::string prefix;
  if (ckpt.has("tokenizer.encoder.conv1.weight"))
    prefix = "tokenizer.";
  else if (!ckpt.has("encoder.conv1.weight"))
    throw ModelError("checkpoint '" + ckpt.path() + "' holds no S3 tokenizer: neither '" + ckpt.prefix() +
                     "tokenizer.encoder.conv1.weight' (s3gen.safetensors) nor '" + ckpt.prefix() +
                     "encoder.conv1.weight' (bare tokenizer state dict) is present");
  const Checkpoint ck = ckpt.sub(prefix);
  auto impl = std::make_unique<Impl>();
  impl->prefix = prefix;
  impl->cfg = infer_config(ck);
  impl->model = std::make_shared<S3TokenizerModel>(impl->cfg);
  load_module(*impl->model, ck);
  impl->model->eval();
  const Cfg& c = impl->cfg;
  // Upstream builds these at construction and its non-strict load overwrites
  // them only when the checkpoint has them (the real one does not).
  impl->filters = ck.has("_mel_filters") ? ck.get("_mel_filters", {c.n_mels, Cfg::kNfft / 2 + 1})
                                         : librosa_mel_f32(Cfg::kRate, Cfg::kNfft, c.n_mels, 0.0, Cfg::kRate / 2.0);
  if (ck.has("window")) {
    impl->window = ck.get("window", {Cfg::kNfft});
  } else {
    const std::vector<float> w = f32::hann_window(Cfg::kNfft, true);
    impl->window = at::from_blob(const_cast<float*>(w.data()), {Cfg::kNfft}, at::kFloat).clone();
  }
  rotary_tables(kRotaryPositions, impl->rot_cos, impl->rot_sin);
  return S3Tokenizer(std::move(impl));
}

const S3TokenizerConfig& S3Tokenizer::config() const { return impl_->cfg; }
const std::string& S3Tokenizer::prefix() const { return impl_->prefix; }
at::Tensor S3Tokenizer::mel_filters() const { return impl_->filters; }
at::Tensor S3Tokenizer::window() const { return impl_->window; }

at::Tensor S3Tokenizer::log_mel(const at::Tensor& wave_in) const {
  c10::InferenceMode guard;
  ComputeThreads threads;  // the project thread policy (compute_threads.h)
  at::Tensor wave = wave_in.to(at::kFloat).reshape({-1}).contiguous();
  const int64_t pad = Cfg::kNfft / 2;
  if (wave.size(0) <= pad)
    throw ModelError("S3 tokenizer: the audio has " + std::to_string(wave.size(0)) + " samples; at least " +
                     std::to_string(pad + 1) + " (12.6 ms at 16 kHz) are needed (torch.stft's reflect padding)");
  at::Tensor spec = at::stft(wave, Cfg::kNfft, Cfg::kHop, Cfg::kNfft, impl_->window, /*center=*/true, "reflect",
                             /*normalized=*/false, /*onesided=*/true, /*return_complex=*/true);
  const int64_t frames = spec.size(1) - 1;  // the last frame is dropped
  at::Tensor mag = at::abs(spec.slice(1, 0, frames));
  mag = mag * mag;  // `** 2`
  at::Tensor mel = at::matmul(impl_->filters, mag);
  at::Tensor log_spec = at::clamp_min(mel, 1e-10).log10();
  log_spec = at::maximum(log_spec, log_spec.max() - 8.0);
  return ((log_spec + 4.0) / 4.0).unsqueeze(0);
}

at::Tensor S3Tokenizer::encode(const at::Tensor& mel_in, Trace* trace) const {
  c10::InferenceMode guard;
  ComputeThreads threads;  // the project thread policy (compute_threads.h)
  const Cfg& c = impl_->cfg;
  at::Tensor mel = mel_in.to(at::kFloat);
  if (mel.dim() == 2) mel = mel.unsqueeze(0);
  if (mel.dim() != 3 || mel.size(0) != 1 || mel.size(1) != c.n_mels)
    throw ModelError("S3 tokenizer: the log-mel has shape " + shape_str(mel.sizes()) + ", expected [1, " +
                     std::to_string(c.n_mels) + ", frames]");
  const int64_t T = mel.size(2);
  if (T == 0) return at::zeros({1, 0, c.n_state});
  const int64_t tokens = ((T - 1) / 2 + 1 - 1) / 2 + 1;
  if (tokens > kRotaryPositions)
    throw ModelError("S3 tokenizer: one encoder pass takes at most " + std::to_string(4 * kRotaryPositions) +
                     " mel frames (upstream's rotary table); got " + std::to_string(T) + " (use quantize())");
  AudioEncoderV2& e = *impl_->model->encoder;
  at::Tensor x = e.conv1->forward(mel);
  if (trace) (*trace)["conv1_out"] = x;
  x = e.conv2->forward(at::gelu(x));
  if (trace) (*trace)["conv2_out"] = x;
  x = at::gelu(x).permute({0, 2, 1}).contiguous();
  for (size_t i = 0; i < e.blocks.size(); ++i) {
    x = impl_->block_forward(*e.blocks[i], x);
    if (trace) (*trace)["block" + std::to_string(i) + "_out"] = x;
  }
  return x;
}

at::Tensor S3Tokenizer::fsq_project(const at::Tensor& hidden) const {
  c10::InferenceMode guard;
  ComputeThreads threads;  // the project thread policy (compute_threads.h)
  return impl_->model->project_down->forward(hidden.to(at::kFloat));
}

at::Tensor S3Tokenizer::fsq_h(const at::Tensor& z) {
  c10::InferenceMode guard;
  ComputeThreads threads;  // the project thread policy (compute_threads.h)
  // 0.9990000128746033 is float32(0.999): the product is in float32.
  return at::tanh(z) * 0.9990000128746033;
}

at::Tensor S3Tokenizer::fsq_tokens(const at::Tensor& h_in) {
  c10::InferenceMode guard;
  ComputeThreads threads;  // the project thread policy (compute_threads.h)
  at::Tensor h = h_in.to(at::kFloat);
  if (h.size(-1) != Cfg::kFsqDims)
    throw ModelError("S3 tokenizer FSQ: expected " + std::to_string(Cfg::kFsqDims) + " values per frame, got " +
                     shape_str(h.sizes()));
  // Digits in {0, 1, 2}; torch.round rounds half to even, as nearbyint does.
  at::Tensor digits = (at::round(h) + 1.0).to(at::kLong);
  at::Tensor powers = at::empty({Cfg::kFsqDims}, at::kLong);
  int64_t p = 1;
  for (int64_t i = 0; i < Cfg::kFsqDims; ++i, p *= 3) powers[i] = p;
  return (digits * powers).sum(-1);
}

at::Tensor S3Tokenizer::quantize(const at::Tensor& mel_in) const {
  c10::InferenceMode guard;
  ComputeThreads threads;  // the project thread policy (compute_threads.h)
  at::Tensor mel = mel_in.to(at::kFloat);
  if (mel.dim() == 2) mel = mel.unsqueeze(0);
  auto tokens_of = [&](const at::Tensor& m) { return fsq_tokens(fsq_h(fsq_project(encode(m)))); };
  const int64_t T = mel.size(-1);
  if (T <= Cfg::kWindowFrames) return tokens_of(mel);
  // Upstream's _quantize_mixed_batch: 30 s windows every 26 s, each padded to
  // 3000 frames and masked to its length. The masks make a padded window
  // compute exactly what the window alone computes (zeros before each conv,
  // -1e10 on padded keys, the FSMN input masked), so each runs unpadded here.
  // Merge: drop 2 s of tokens at every inner edge.
  std::vector<at::Tensor> segments;
  for (int64_t start = 0; start < T; start += Cfg::kWindowStride)
    segments.push_back(tokens_of(mel.slice(2, start, std::min(start + Cfg::kWindowFrames, T))));
  std::vector<at::Tensor> kept;
  for (size_t i = 0; i < segments.size(); ++i) {
    const int64_t n = segments[i].size(1);
    const int64_t l = i == 0 ? 0 : Cfg::kOverlapTokens;
    const int64_t r = i + 1 != segments.size() ? n - Cfg::kOverlapTokens : n;
    if (r > l) kept.push_back(segments[i].slice(1, l, r));
  }
  return kept.empty() ? at::zeros({1, 0}, at::kLong) : at::cat(kept, 1);
}

S3Tokens S3Tokenizer::tokenize(const at::Tensor& wave, int64_t max_len) const {
  c10::InferenceMode guard;
  ComputeThreads threads;  // the project thread policy (compute_threads.h)
  S3Tokens out;
  out.log_mel = log_mel(wave);
  if (max_len > 0) out.log_mel = out.log_mel.slice(2, 0, std::min<int64_t>(4 * max_len, out.log_mel.size(2)));
  out.tokens = quantize(out.log_mel);
  return out;
}

}  // namespace chatterbox::voice
