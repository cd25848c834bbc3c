// CausalMaskedDiffWithXvec.inference and CausalConditionalCFM (Euler + CFG, or
// the mean-flow basic Euler of Chatterbox-Turbo), precision and device,
// config/checkpoint handling, voice conditioning and the mel streamer.
#include "elements/s3gen/flow/flow_modules.h"
#include "gst-plugins/core/compute_threads.h"
#include "gst-plugins/core/module_loader.h"

#include <ATen/CPUGeneratorImpl.h>
#include <ATen/Context.h>
#include <c10/core/InferenceMode.h>
#include <nlohmann/json.hpp>
#include <torch/types.h>

#include <cmath>

namespace chatterbox {

using s3gen::FlowModel;

// ------------------------------------------------------------------ config --

namespace {
template <typename T>
void take(const nlohmann::json& j, const char* key, T& dst) {
  if (j.is_object() && j.contains(key) && !j.at(key).is_null()) dst = j.at(key).get<T>();
}
}  // namespace

S3GenFlowConfig S3GenFlowConfig::from_json(const nlohmann::json& j) {
  S3GenFlowConfig c;
  try {
    if (j.contains("flow")) {
      const auto& f = j.at("flow");
      take(f, "input_size", c.input_size);
      take(f, "output_size", c.output_size);
      take(f, "spk_embed_dim", c.spk_embed_dim);
      take(f, "vocab_size", c.vocab_size);
      take(f, "token_mel_ratio", c.token_mel_ratio);
      take(f, "pre_lookahead_len", c.pre_lookahead_len);
    }
    if (j.contains("encoder")) {
      const auto& e = j.at("encoder");
      take(e, "output_size", c.encoder_output_size);
      take(e, "attention_heads", c.encoder_heads);
      take(e, "linear_units", c.encoder_linear_units);
      take(e, "num_blocks", c.encoder_blocks);
      bool flag = false;
      take(e, "use_cnn_module", flag);
      if (flag) throw ModelError("S3Gen flow config: encoder.use_cnn_module=true is not supported (Chatterbox uses none)");
      take(e, "macaron_style", flag);
      if (flag) throw ModelError("S3Gen flow config: encoder.macaron_style=true is not supported (Chatterbox uses none)");
      std::string s;
      take(e, "pos_enc_layer_type", s);
      if (!s.empty() && s != "rel_pos_espnet")
        throw ModelError("S3Gen flow config: encoder.pos_enc_layer_type '" + s + "' is not supported (rel_pos_espnet only)");
    }
    if (j.contains("encoder_hardcoded")) {
      const auto& h = j.at("encoder_hardcoded");
      take(h, "up_encoders", c.encoder_up_blocks);
      if (h.contains("up_layer")) take(h.at("up_layer"), "stride", c.up_stride);
    }
    if (j.contains("estimator")) {
      const auto& e = j.at("estimator");
      take(e, "in_channels", c.estimator_in_channels);
      take(e, "channels", c.estimator_channels);
      take(e, "attention_head_dim", c.attention_head_dim);
      take(e, "n_blocks", c.n_blocks);
      take(e, "num_mid_blocks", c.num_mid_blocks);
      take(e, "num_heads", c.num_heads);
      take(e, "meanflow", c.meanflow);
      bool causal = true;
      take(e, "causal", causal);
      if (!causal) throw ModelError("S3Gen flow config: only the causal estimator (CausalConv1d blocks) is supported");
    }
    if (j.contains("cfm") && j.at("cfm").contains("cfm_params")) {
      const auto& p = j.at("cfm").at("cfm_params");
      take(p, "inference_cfg_rate", c.cfg_rate);
      std::string sched = "cosine";
      take(p, "t_scheduler", sched);
      c.cosine_schedule = sched == "cosine";
    }
    // Upstream passes meanflow both to the estimator (its mixer) and to the
    // solver (S3Token2Mel.meanflow); the two must agree.
    bool explicit_steps = false;
    if (j.contains("inference")) {
      const auto& inf = j.at("inference");
      if (inf.is_object() && inf.contains("meanflow") && !inf.at("meanflow").is_null()) {
        const bool solver_meanflow = inf.at("meanflow").get<bool>();
        const bool has_estimator_flag = j.contains("estimator") && j.at("estimator").is_object() &&
                                        j.at("estimator").contains("meanflow");
        if (has_estimator_flag && solver_meanflow != c.meanflow)
          throw ModelError("S3Gen flow config: estimator.meanflow and inference.meanflow disagree (the mean-flow "
                           "solver needs the mean-flow estimator and vice versa)");
        c.meanflow = solver_meanflow;
      }
      explicit_steps = inf.is_object() && inf.contains("n_timesteps") && !inf.at("n_timesteps").is_null();
      take(inf, "n_timesteps", c.n_timesteps);
    }
    if (c.meanflow && !explicit_steps) c.n_timesteps = 2;
  } catch (const nlohmann::json::exception& e) {
    throw ModelError(std::string("S3Gen flow config: malformed JSON field: ") + e.what());
  }
  c.validate();
  return c;
}

void S3GenFlowConfig::validate() const {
  auto bad = [](const std::string& what) { throw ModelError("S3Gen flow config: " + what); };
  if (estimator_channels.empty()) bad("estimator channels is empty");
  // Every size must be positive before any arithmetic on them (a zero or
  // negative head count would divide by zero below).
  const std::pair<const char*, int64_t> sizes[] = {
      {"input_size", input_size}, {"output_size", output_size}, {"spk_embed_dim", spk_embed_dim},
      {"vocab_size", vocab_size}, {"token_mel_ratio", token_mel_ratio}, {"encoder output_size", encoder_output_size},
      {"attention_heads", encoder_heads}, {"linear_units", encoder_linear_units}, {"num_blocks", encoder_blocks},
      {"up_blocks", encoder_up_blocks}, {"up stride", up_stride}, {"estimator in_channels", estimator_in_channels},
      {"attention_head_dim", attention_head_dim}, {"n_blocks", n_blocks}, {"num_heads", num_heads}};
  for (const auto& [name, v] : sizes)
    if (v < 1) bad(std::string(name) + " must be >= 1, got " + std::to_string(v));
  for (int64_t ch : estimator_channels)
    if (ch < 1) bad("estimator channels must be >= 1, got " + std::to_string(ch));
  if (pre_lookahead_len < 0) bad("pre_lookahead_len must be >= 0");
  if (num_mid_blocks < 0) bad("num_mid_blocks must be >= 0");
  if (encoder_output_size % encoder_heads != 0) bad("encoder output_size is not divisible by attention_heads");
  if (input_size != encoder_output_size)
    bad("input_size (" + std::to_string(input_size) + ") must equal encoder output_size (" +
        std::to_string(encoder_output_size) + "): up_embed consumes the encoder's own output");
  if (estimator_in_channels != 4 * output_size)
    bad("estimator in_channels (" + std::to_string(estimator_in_channels) + ") must be 4 x output_size (x, mu, spks, cond)");
  if (estimator_in_channels % 2 != 0) bad("estimator in_channels must be even (sinusoidal time embedding)");
  if (token_mel_ratio != up_stride) bad("token_mel_ratio must equal the encoder's upsampling stride");
  if (n_timesteps < 1) bad("n_timesteps must be >= 1");
}

// ------------------------------------------------------------------- model --

namespace s3gen {
FlowModel::FlowModel(const S3GenFlowConfig& c) : cfg(c) {
  input_embedding = register_module("input_embedding", torch::nn::Embedding(c.vocab_size, c.input_size));
  spk_embed_affine_layer = register_module("spk_embed_affine_layer", torch::nn::Linear(c.spk_embed_dim, c.output_size));
  encoder = register_module("encoder", std::make_shared<UpsampleConformerEncoder>(c));
  encoder_proj = register_module("encoder_proj", torch::nn::Linear(c.encoder_output_size, c.output_size));
  decoder = register_module("decoder", std::make_shared<Node>());
  estimator = decoder->register_module("estimator", std::make_shared<ConditionalDecoder>(c));
}
}  // namespace s3gen

struct S3GenFlow::Impl {
  std::shared_ptr<FlowModel> model;
  std::string prefix;
  std::string device_name = "cpu", precision_name = "f32";
  at::Device device{at::kCPU};
  at::ScalarType dtype = at::kFloat;
  // Model-side tensor options (weights' device and dtype).
  at::TensorOptions opts() const { return at::TensorOptions().device(device).dtype(dtype); }
};

S3GenFlow::S3GenFlow(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
S3GenFlow::S3GenFlow(S3GenFlow&&) noexcept = default;
S3GenFlow& S3GenFlow::operator=(S3GenFlow&&) noexcept = default;
S3GenFlow::~S3GenFlow() = default;

const S3GenFlowConfig& S3GenFlow::config() const { return impl_->model->cfg; }
const std::string& S3GenFlow::device() const { return impl_->device_name; }
const std::string& S3GenFlow::precision() const { return impl_->precision_name; }
const std::string& S3GenFlow::prefix() const { return impl_->prefix; }
std::vector<std::string> S3GenFlow::parameter_names() const {
  std::vector<std::string> names;
  for (const auto& p : impl_->model->named_parameters()) names.push_back(p.key());
  return names;
}

namespace {

const char* const kMixer = "decoder.estimator.time_embed_mixer.weight";

// Highest N+1 over keys "<head>N." (0 if none).
int64_t count_indexed(const std::vector<std::string>& keys, const std::string& head) {
  int64_t n = 0;
  for (const auto& k : keys) {
    if (k.compare(0, head.size(), head) != 0) continue;
    size_t end = k.find('.', head.size());
    if (end == std::string::npos) continue;
    const std::string idx = k.substr(head.size(), end - head.size());
    if (idx.empty() || idx.find_first_not_of("0123456789") != std::string::npos) continue;
    n = std::max<int64_t>(n, std::stoll(idx) + 1);
  }
  return n;
}

// Real checkpoints carry no config: start from the published widths and read
// what the tensor shapes tell.
S3GenFlowConfig infer_config(const Checkpoint& ck) {
  S3GenFlowConfig c;
  auto shape = [&](const std::string& name) { return ck.get(name).sizes().vec(); };
  const auto keys = ck.keys();
  auto emb = shape("input_embedding.weight");
  c.vocab_size = emb[0];
  c.input_size = emb[1];
  auto spk = shape("spk_embed_affine_layer.weight");
  c.output_size = spk[0];
  c.spk_embed_dim = spk[1];
  auto pbu = shape("encoder.encoders.0.self_attn.pos_bias_u");
  c.encoder_heads = pbu[0];
  c.encoder_output_size = pbu[0] * pbu[1];
  c.encoder_linear_units = shape("encoder.encoders.0.feed_forward.w_1.weight")[0];
  c.encoder_blocks = count_indexed(keys, "encoder.encoders.");
  c.encoder_up_blocks = count_indexed(keys, "encoder.up_encoders.");
  c.pre_lookahead_len = shape("encoder.pre_lookahead_layer.conv1.weight")[2] - 1;
  c.up_stride = (shape("encoder.up_layer.conv.weight")[2] - 1) / 2;
  c.token_mel_ratio = c.up_stride;
  c.estimator_in_channels = shape("decoder.estimator.time_mlp.linear_1.weight")[1];
  const int64_t n_down = count_indexed(keys, "decoder.estimator.down_blocks.");
  c.estimator_channels.clear();
  for (int64_t i = 0; i < n_down; ++i)
    c.estimator_channels.push_back(
        shape("decoder.estimator.down_blocks." + std::to_string(i) + ".0.res_conv.weight")[0]);
  c.num_mid_blocks = count_indexed(keys, "decoder.estimator.mid_blocks.");
  c.n_blocks = count_indexed(keys, "decoder.estimator.down_blocks.0.1.");
  // heads x head_dim is all the shapes give; keep the published 8 heads.
  const int64_t inner = shape("decoder.estimator.down_blocks.0.1.0.attn1.to_q.weight")[0];
  if (inner % c.num_heads != 0) c.num_heads = 1;
  c.attention_head_dim = inner / c.num_heads;
  // Chatterbox-Turbo's s3gen_meanflow.safetensors: the same tree plus the
  // time mixer; S3Token2Wav.flow_inference then defaults to 2 steps.
  c.meanflow = ck.has(kMixer);
  if (c.meanflow) c.n_timesteps = 2;
  c.validate();
  return c;
}

at::ScalarType parse_precision(const std::string& p) {
  if (p == "f32" || p == "fp32" || p == "float32") return at::kFloat;
  if (p == "bf16" || p == "bfloat16") return at::kBFloat16;
  if (p == "f16" || p == "fp16" || p == "float16") return at::kHalf;
  throw ModelError("S3Gen flow: unknown precision '" + p + "' (use f32, bf16 or f16)");
}

at::Device parse_device(const std::string& s) {
  at::Device d(at::kCPU);
  try {
    d = at::Device(s);
  } catch (const c10::Error&) {
    throw ModelError("S3Gen flow: unknown device '" + s + "' (use \"cpu\" or \"cuda\")");
  }
  if (!d.is_cpu() && !d.is_cuda()) throw ModelError("S3Gen flow: device '" + s + "' is not supported (use cpu or cuda)");
  if (d.is_cuda() && !at::hasCUDA())
    throw ModelError("S3Gen flow: device '" + s + "' requested but CUDA is not available (this LibTorch build has "
                     "no CUDA support or no GPU is visible); use device \"cpu\"");
  return d;
}

// Converts the weights, fuses, and for anything but float32 on the CPU runs
// one tiny encode + estimator call so a dtype the kernels lack fails here,
// with the operation named, rather than at the first utterance.
void finish_model(S3GenFlow::Impl& impl, const S3GenLoadOptions& o) {
  impl.dtype = parse_precision(o.precision);
  impl.device = parse_device(o.device);
  impl.device_name = o.device;
  impl.precision_name = impl.dtype == at::kFloat ? "f32" : impl.dtype == at::kBFloat16 ? "bf16" : "f16";
  FlowModel& m = *impl.model;
  m.eval();
  {
    torch::NoGradGuard ng;
    m.to(impl.device, impl.dtype);
  }
  m.estimator->fuse();
  if (impl.dtype == at::kFloat && impl.device.is_cpu()) return;
  try {
    c10::InferenceMode guard;
    const auto& c = m.cfg;
    at::Tensor h = m.encoder->forward(m.input_embedding(torch::zeros({1, 2}, torch::dtype(torch::kLong).device(impl.device))));
    at::Tensor x = torch::zeros({1, c.output_size, h.size(1)}, impl.opts());
    at::Tensor t = torch::zeros({1}, torch::dtype(torch::kFloat).device(impl.device));
    m.estimator->forward(x, torch::ones({1, 1, h.size(1)}, impl.opts()), x, t,
                         torch::zeros({1, c.output_size}, impl.opts()), x, c.meanflow ? t : at::Tensor());
  } catch (const c10::Error& e) {
    throw ModelError("S3Gen flow: precision '" + impl.precision_name + "' is not supported on device '" +
                     impl.device_name + "' by this LibTorch (" + e.what_without_backtrace() +
                     "); use precision f32" + (impl.device.is_cpu() && impl.dtype == at::kHalf ? " or bf16" : ""));
  }
}

}  // namespace

S3GenFlow S3GenFlow::load(const std::string& path, const S3GenLoadOptions& opts) {
  return load(Checkpoint::open(path), opts);
}

S3GenFlow S3GenFlow::load(const Checkpoint& ckpt, const S3GenLoadOptions& opts) {
  std::string prefix;
  if (ckpt.has("flow.input_embedding.weight"))
    prefix = "flow.";
  else if (!ckpt.has("input_embedding.weight"))
    throw ModelError("checkpoint '" + ckpt.path() + "' holds no S3Gen flow: neither '" + ckpt.prefix() +
                     "flow.input_embedding.weight' (s3gen.safetensors) nor '" + ckpt.prefix() +
                     "input_embedding.weight' (bare flow state dict) is present");
  Checkpoint ck = ckpt.sub(prefix);
  S3GenFlowConfig cfg = ckpt.has_metadata("config") ? S3GenFlowConfig::from_json(ckpt.config()) : infer_config(ck);
  // Running a mean-flow estimator without its mixer (or the reverse) would
  // be a different model from upstream's, never a working one.
  if (ck.has(kMixer) && !cfg.meanflow)
    throw ModelError("checkpoint '" + ckpt.path() + "' holds '" + ck.prefix() + kMixer +
                     "' (a mean-flow / Chatterbox-Turbo estimator) but its config says meanflow=false");
  if (cfg.meanflow && !ck.has(kMixer))
    throw ModelError("checkpoint '" + ckpt.path() + "': the config says meanflow=true (Chatterbox-Turbo) but '" +
                     ck.prefix() + kMixer + "' is missing");
  auto impl = std::make_unique<Impl>();
  impl->prefix = prefix;
  impl->model = std::make_shared<FlowModel>(cfg);
  load_module(*impl->model, ck);
  finish_model(*impl, opts);
  return S3GenFlow(std::move(impl));
}

S3GenFlow S3GenFlow::random(const S3GenFlowConfig& config, uint64_t seed, const S3GenLoadOptions& opts) {
  config.validate();
  c10::InferenceMode guard;
  auto impl = std::make_unique<Impl>();
  impl->model = std::make_shared<FlowModel>(config);
  at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(seed);
  // Fan-in scaled uniform weights keep activations O(1) through the deep
  // estimator; norms near 1, biases near 0 (the values only need to be
  // plausible for timing and self-consistency tests).
  for (auto& p : impl->model->named_parameters()) {
    torch::Tensor& t = p.value();
    torch::NoGradGuard ng;
    if (t.dim() >= 2) {
      const double fan_in = static_cast<double>(t.numel() / t.size(0));
      const double b = 1.0 / std::sqrt(fan_in);
      t.uniform_(-b, b, gen);
    } else if (p.key().size() >= 4 && p.key().compare(p.key().size() - 4, 4, "bias") == 0) {
      t.uniform_(-0.02, 0.02, gen);
    } else {
      t.uniform_(0.9, 1.1, gen);
    }
  }
  finish_model(*impl, opts);
  return S3GenFlow(std::move(impl));
}

// ---------------------------------------------------------------- encoding --

at::Tensor S3GenFlow::drop_invalid_tokens(const at::Tensor& token) const {
  at::Tensor t = token.to(at::kLong).reshape({-1});
  at::Tensor keep = (t >= 0).logical_and_(t < config().vocab_size);
  return t.masked_select(keep).unsqueeze(0);
}

S3GenEncoded S3GenFlow::encode(const at::Tensor& token_in, const at::Tensor& prompt_token_in,
                               const at::Tensor& prompt_feat_in, const at::Tensor& embedding_in, bool finalize) const {
  c10::InferenceMode guard;
  ComputeThreads threads;  // one OpenMP thread here; GEMMs use OpenBLAS's pool (compute_threads.h)
  FlowModel& m = *impl_->model;
  const auto& c = m.cfg;
  at::Tensor token = token_in.to(at::kLong).reshape({1, -1});
  at::Tensor prompt_token = prompt_token_in.defined() ? prompt_token_in.to(at::kLong).reshape({1, -1})
                                                      : torch::zeros({1, 0}, torch::kLong);
  at::Tensor prompt_feat = prompt_feat_in.defined() ? prompt_feat_in.to(at::kFloat) : torch::zeros({1, 0, c.output_size});
  if (prompt_feat.dim() == 2) prompt_feat = prompt_feat.unsqueeze(0);
  if (prompt_feat.dim() != 3 || prompt_feat.size(0) != 1 || prompt_feat.size(2) != c.output_size)
    throw ModelError("S3Gen flow: prompt_feat must be [1, frames, " + std::to_string(c.output_size) + "], got " +
                     shape_str(prompt_feat.sizes()));
  const int64_t P = prompt_token.size(1);
  if (prompt_feat.size(1) != c.token_mel_ratio * P)
    throw ModelError("S3Gen flow: the voice prompt does not line up: " + std::to_string(P) + " prompt tokens need " +
                     std::to_string(c.token_mel_ratio * P) + " prompt_feat frames, got " +
                     std::to_string(prompt_feat.size(1)) + " (re-extract the conditionals, or trim prompt_token to "
                     "frames / " + std::to_string(c.token_mel_ratio) + ")");
  auto out_of_range = [&](const at::Tensor& t) {
    return t.numel() > 0 && (t.min().item<int64_t>() < 0 || t.max().item<int64_t>() >= c.vocab_size);
  };
  if (out_of_range(prompt_token))
    throw ModelError("S3Gen flow: prompt_token holds ids outside [0, " + std::to_string(c.vocab_size) + ")");
  if (out_of_range(token))
    throw ModelError("S3Gen flow: token holds ids outside [0, " + std::to_string(c.vocab_size) +
                     ") (inference() drops them; encode() expects clean ids)");
  at::Tensor embedding = embedding_in.to(at::kFloat).reshape({1, -1});
  if (embedding.size(1) != c.spk_embed_dim)
    throw ModelError("S3Gen flow: speaker embedding must have " + std::to_string(c.spk_embed_dim) + " values, got " +
                     std::to_string(embedding.size(1)));

  S3GenEncoded enc;
  // The model computes in its own dtype on its device; what leaves here is
  // float32 on the CPU.
  const at::TensorOptions mo = impl_->opts();
  auto out = [](const at::Tensor& t) { return t.to(at::kCPU, at::kFloat).contiguous(); };
  // F.normalize(p=2, eps=1e-12), then the affine projection.
  at::Tensor norm = embedding.norm(2, {1}, true).clamp_min(1e-12);
  enc.spks = out(m.spk_embed_affine_layer((embedding / norm).to(mo)));

  at::Tensor all = torch::cat({prompt_token, token}, 1).to(impl_->device);
  at::Tensor h = m.encoder->forward(m.input_embedding(all));  // [1, ratio*(P+N), C]
  if (!finalize) {
    // The last pre_lookahead_len tokens were only right context (the
    // reference with PR #528's mask fix).
    const int64_t keep = std::max<int64_t>(0, h.size(1) - c.pre_lookahead_len * c.token_mel_ratio);
    h = h.slice(1, 0, keep);
  }
  enc.prompt_frames = prompt_feat.size(1);
  const int64_t T = h.size(1);
  enc.mu = out(m.encoder_proj(h).transpose(1, 2));  // [1, 80, T]
  enc.cond = torch::zeros({1, c.output_size, T});
  const int64_t pf = std::min(enc.prompt_frames, T);
  if (pf > 0) enc.cond.slice(2, 0, pf).copy_(prompt_feat.slice(1, 0, pf).transpose(1, 2));
  enc.mask = torch::ones({1, 1, T});
  return enc;
}

at::Tensor S3GenFlow::mu(const at::Tensor& token, const at::Tensor& prompt_token, const at::Tensor& prompt_feat,
                         const at::Tensor& embedding, bool finalize) const {
  return encode(token, prompt_token, prompt_feat, embedding, finalize).mu;
}

// --------------------------------------------------------------------- CFM --

at::Tensor S3GenFlow::estimator(const at::Tensor& x, const at::Tensor& mask, const at::Tensor& mu, const at::Tensor& t,
                                const at::Tensor& spks, const at::Tensor& cond, const at::Tensor& r) const {
  c10::InferenceMode guard;
  ComputeThreads threads;  // one OpenMP thread here; GEMMs use OpenBLAS's pool (compute_threads.h)
  if (meanflow() && !r.defined())
    throw ModelError("S3Gen flow: this is a mean-flow (Turbo) estimator; it needs the end time r");
  const at::TensorOptions mo = impl_->opts(), times = mo.dtype(at::kFloat);
  at::Tensor rr = meanflow() ? r.to(times).reshape({-1}) : at::Tensor();
  return impl_->model->estimator
      ->forward(x.to(mo), mask.to(mo), mu.to(mo), t.to(times).reshape({-1}), spks.to(mo), cond.to(mo), rr)
      .to(at::kCPU, at::kFloat);
}

at::Tensor S3GenFlow::t_span(int64_t n) const {
  c10::InferenceMode guard;
  at::Tensor t = torch::linspace(0, 1, n + 1, torch::kFloat);
  // CausalConditionalCFM.forward: the cosine warp applies only without meanflow.
  if (config().cosine_schedule && !meanflow()) t = 1 - torch::cos(t * 0.5 * M_PI);
  return t;
}

at::Tensor S3GenFlow::solve(const S3GenEncoded& enc, const at::Tensor& z, int64_t n_timesteps, double cfg_rate) const {
  c10::InferenceMode guard;
  ComputeThreads threads;  // one OpenMP thread here; GEMMs use OpenBLAS's pool (compute_threads.h)
  auto& est = *impl_->model->estimator;
  const at::TensorOptions mo = impl_->opts(), f32 = mo.dtype(at::kFloat);
  // The ODE state stays float32 whatever the estimator's dtype.
  at::Tensor x = z.to(f32).contiguous();
  const int64_t T = x.size(2);
  if (enc.mu.size(2) != T) throw ModelError("S3Gen flow: noise has " + std::to_string(T) + " frames, mu has " +
                                            std::to_string(enc.mu.size(2)));
  at::Tensor ts = t_span(n_timesteps).to(f32);
  if (meanflow()) {
    // basic_euler: one conditional call per step, t -> r = next grid point,
    // no guidance (the distilled model already has CFG baked in).
    at::Tensor mask = enc.mask.to(mo), mu = enc.mu.to(mo), spks = enc.spks.to(mo), cond = enc.cond.to(mo);
    for (int64_t i = 0; i < n_timesteps; ++i) {
      at::Tensor t = ts[i].reshape({1}), r = ts[i + 1].reshape({1});
      at::Tensor v = est.forward(x.to(mo), mask, mu, t, spks, cond, r).to(at::kFloat);
      x = x + (r - t) * v;
    }
    return x.to(at::kCPU);
  }
  // Classifier-free guidance as one batch of 2: conditional first, then the
  // same x with mu = spks = cond = 0. Constant halves are built once.
  at::Tensor mask_in = torch::cat({enc.mask, enc.mask}, 0).to(mo);
  at::Tensor mu_in = torch::cat({enc.mu, torch::zeros_like(enc.mu)}, 0).to(mo);
  at::Tensor spks_in = torch::cat({enc.spks, torch::zeros_like(enc.spks)}, 0).to(mo);
  at::Tensor cond_in = torch::cat({enc.cond, torch::zeros_like(enc.cond)}, 0).to(mo);
  const float cfg = static_cast<float>(cfg_rate);
  for (int64_t i = 0; i < n_timesteps; ++i) {
    at::Tensor t = ts[i].reshape({1}), r = ts[i + 1].reshape({1});
    at::Tensor x_in = torch::cat({x, x}, 0).to(mo);
    at::Tensor v = est.forward(x_in, mask_in, mu_in, t.expand({2}), spks_in, cond_in).to(at::kFloat);
    at::Tensor v_cond = v.slice(0, 0, 1), v_unc = v.slice(0, 1, 2);
    at::Tensor dxdt = (1.0f + cfg) * v_cond - cfg * v_unc;
    x = x + (r - t) * dxdt;
  }
  return x.to(at::kCPU);
}

at::Tensor S3GenFlow::inference(const at::Tensor& token_in, const at::Tensor& prompt_token,
                                const at::Tensor& prompt_feat, const at::Tensor& embedding,
                                const S3GenInferenceOptions& opts) const {
  c10::InferenceMode guard;
  ComputeThreads threads;  // one OpenMP thread here; GEMMs use OpenBLAS's pool (compute_threads.h)
  const auto& c = config();
  at::Tensor token = drop_invalid_tokens(token_in);
  const int64_t mel_channels = c.output_size;
  const int64_t n = token.size(1);
  const int64_t target_tokens = opts.finalize ? n : n - c.pre_lookahead_len;
  if (target_tokens <= 0) return torch::zeros({1, mel_channels, 0});

  S3GenEncoded enc = encode(token, prompt_token, prompt_feat, embedding, opts.finalize);
  const int64_t T = enc.mu.size(2);
  at::Tensor z;
  if (opts.noise.defined()) {
    if (opts.noise.dim() != 3 || opts.noise.size(1) != mel_channels || opts.noise.size(2) < T)
      throw ModelError("S3Gen flow: noise must be [1, " + std::to_string(mel_channels) + ", >= " + std::to_string(T) +
                       "], got " + shape_str(opts.noise.sizes()));
    z = opts.noise.to(at::kFloat).slice(2, 0, T);
  } else {
    at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(opts.seed);
    z = torch::randn({1, mel_channels, T}, gen, torch::kFloat);
    if (opts.target_noise.defined()) {
      const int64_t tf = T - enc.prompt_frames;
      if (opts.target_noise.dim() != 3 || opts.target_noise.size(1) != mel_channels || opts.target_noise.size(2) < tf)
        throw ModelError("S3Gen flow: target_noise must be [1, " + std::to_string(mel_channels) + ", >= " +
                         std::to_string(tf) + "], got " + shape_str(opts.target_noise.sizes()));
      z.slice(2, enc.prompt_frames, T).copy_(opts.target_noise.slice(2, 0, tf));
    }
  }
  const int64_t steps = opts.n_timesteps > 0 ? opts.n_timesteps : c.n_timesteps;
  const double cfg = opts.cfg_rate >= 0 ? opts.cfg_rate : c.cfg_rate;
  at::Tensor feat = solve(enc, z, steps, cfg);
  return feat.slice(2, enc.prompt_frames, T).contiguous();
}

at::Tensor S3GenFlow::inference(const at::Tensor& token, const S3GenVoice& voice,
                                const S3GenInferenceOptions& opts) const {
  return inference(token, voice.prompt_token, voice.prompt_feat, voice.embedding, opts);
}

// ------------------------------------------------------------------- voice --

S3GenVoice S3GenVoice::from_checkpoint(const Checkpoint& ckpt, const std::string& prefix) {
  Checkpoint ck = ckpt.sub(prefix);
  for (const char* name : {"prompt_token", "prompt_feat", "embedding"})
    if (!ck.has(name))
      throw ModelError("conditionals '" + ckpt.path() + "': tensor '" + ck.prefix() + name +
                       "' is missing (expected S3Gen's embed_ref dict under '" + prefix + "')");
  S3GenVoice v;
  v.prompt_token = ck.get_raw("prompt_token").to(at::kLong).reshape({1, -1});
  if (ck.has("prompt_token_len")) {
    const int64_t len = ck.get_raw("prompt_token_len").to(at::kLong).reshape({-1})[0].item<int64_t>();
    if (len < 0 || len > v.prompt_token.size(1))
      throw ModelError("conditionals '" + ckpt.path() + "': " + ck.prefix() + "prompt_token_len = " +
                       std::to_string(len) + " but prompt_token has " + std::to_string(v.prompt_token.size(1)));
    v.prompt_token = v.prompt_token.slice(1, 0, len);
  }
  v.prompt_feat = ck.get("prompt_feat");
  if (v.prompt_feat.dim() == 2) v.prompt_feat = v.prompt_feat.unsqueeze(0);
  v.embedding = ck.get("embedding").reshape({1, -1});
  if (v.prompt_feat.dim() != 3 || v.prompt_feat.size(0) != 1)
    throw ModelError("conditionals '" + ckpt.path() + "': " + ck.prefix() + "prompt_feat has shape " +
                     shape_str(v.prompt_feat.sizes()) + ", expected [1, frames, 80]");
  return v;
}

S3GenVoice S3GenVoice::load(const std::string& path) { return from_checkpoint(Checkpoint::open(path), "gen."); }

// ---------------------------------------------------------------- streamer --

struct S3GenFlowStreamer::State {
  const S3GenFlow* flow;
  S3GenVoice voice;
  S3GenStreamerOptions opts;
  std::vector<at::Tensor> tokens;
  int64_t n_tokens = 0;
  int64_t emitted = 0;
  int64_t calls = 0;
  bool finished = false;
  at::Tensor target_noise;  // grows, never redrawn
  at::Generator gen;
  S3GenStreamStats stats;
  // Window mode (opts.left_context >= 0).
  std::vector<int64_t> ids;   // valid tokens of the utterance
  int64_t decoded = 0;        // tokens whose frames were emitted
  at::Tensor prompt_noise;    // [1, 80, 2P], drawn once per utterance
  at::Tensor emitted_tail;    // [1, <= ratio * left_context, 80] last frames emitted (frame-major, as prompt_feat)

  bool window() const { return opts.left_context >= 0; }

  void count(int64_t enc_tokens, int64_t frames) {
    stats.decodes++;
    stats.encoder_tokens += enc_tokens;
    stats.decoder_frames += frames;
    stats.max_encoder_tokens = std::max(stats.max_encoder_tokens, enc_tokens);
    stats.max_decoder_frames = std::max(stats.max_decoder_frames, frames);
    stats.last_encoder_tokens = enc_tokens;
    stats.last_decoder_frames = frames;
  }

  // Decodes utterance tokens [a, b) with the window rule. `last`: b is the
  // end of the utterance (no look-ahead left; the encoder pads with zeros as
  // the whole decode does); otherwise ids[b, b + la) are the look-ahead.
  at::Tensor decode_window(int64_t a, int64_t b, bool last) {
    const auto& c = flow->config();
    const int64_t r = c.token_mel_ratio, la = c.pre_lookahead_len, ch = c.output_size;
    const int64_t P = voice.prompt_token.size(1);
    const int64_t ctx = std::min<int64_t>(opts.left_context, P + a);
    const int64_t ctx_utt = std::min(ctx, a), ctx_prompt = ctx - ctx_utt;
    at::Tensor ctx_tok = torch::cat({voice.prompt_token.slice(1, P - ctx_prompt, P).to(at::kLong),
                                     torch::tensor(std::vector<int64_t>(ids.begin() + (a - ctx_utt), ids.begin() + a),
                                                   torch::kLong).reshape({1, -1})},
                                    1);
    at::Tensor utt_feat = torch::zeros({1, r * ctx_utt, ch});
    if (opts.context_cond && ctx_utt > 0) {
      const int64_t have = emitted_tail.size(1);
      utt_feat = emitted_tail.slice(1, have - r * ctx_utt, have);
    }
    at::Tensor ctx_feat =
        torch::cat({voice.prompt_feat.to(at::kFloat).slice(1, r * (P - ctx_prompt), r * P), utt_feat}, 1);
    const int64_t end = last ? b : b + la;
    at::Tensor tok = torch::tensor(std::vector<int64_t>(ids.begin() + a, ids.begin() + end), torch::kLong).reshape({1, -1});
    S3GenEncoded enc = flow->encode(tok, ctx_tok, ctx_feat, voice.embedding, /*finalize=*/last);
    const int64_t T = enc.mu.size(2);
    at::Tensor z = torch::cat({prompt_noise.slice(2, r * (P - ctx_prompt), r * P),
                               noise_for(r * b).slice(2, r * (a - ctx_utt), r * b)},
                              2);
    if (z.size(2) != T)
      throw ModelError("S3Gen window streamer: internal frame mismatch (" + std::to_string(z.size(2)) + " noise vs " +
                       std::to_string(T) + " mu frames)");
    count(ctx + (end - a), T);
    const int64_t steps = opts.n_timesteps > 0 ? opts.n_timesteps : c.n_timesteps;
    const double cfg = opts.cfg_rate >= 0 ? opts.cfg_rate : c.cfg_rate;
    at::Tensor x = flow->solve(enc, z, steps, cfg);
    at::Tensor fresh = x.slice(2, r * ctx, T).contiguous();  // [1, 80, r * (b - a)]
    const int64_t keep = r * opts.left_context;
    at::Tensor tail = torch::cat({emitted_tail, fresh.transpose(1, 2)}, 1);
    emitted_tail = tail.slice(1, std::max<int64_t>(0, tail.size(1) - keep), tail.size(1)).contiguous();
    decoded = b;
    emitted += fresh.size(2);
    return fresh;
  }

  void start_window() {
    const auto& c = flow->config();
    if (prompt_noise.defined()) return;
    at::Generator pg = at::make_generator<at::CPUGeneratorImpl>(opts.seed ^ 0xD1B54A32D192ED03ull);
    prompt_noise = torch::randn({1, c.token_mel_ratio * voice.prompt_token.size(1), c.output_size}, pg, torch::kFloat)
                       .transpose(1, 2)
                       .contiguous();
    emitted_tail = torch::zeros({1, 0, c.output_size});
  }

  // Every whole chunk whose look-ahead has arrived (or, finishing, the rest).
  at::Tensor run_window(bool finishing) {
    start_window();
    const auto& c = flow->config();
    const int64_t C = opts.chunk_tokens, la = c.pre_lookahead_len;
    const int64_t n = static_cast<int64_t>(ids.size());
    std::vector<at::Tensor> out;
    while (n - decoded >= C + la + (finishing ? 1 : 0)) out.push_back(decode_window(decoded, decoded + C, false));
    if (finishing && n > decoded) out.push_back(decode_window(decoded, n, true));
    if (out.empty()) return torch::zeros({1, c.output_size, 0});
    return out.size() == 1 ? out[0] : torch::cat(out, 2);
  }

  at::Tensor noise_for(int64_t frames) {
    const int64_t ch = flow->config().output_size;
    if (!target_noise.defined()) target_noise = torch::zeros({1, ch, 0});
    if (target_noise.size(2) < frames) {
      const int64_t add = frames - target_noise.size(2);
      // Window mode draws frame by frame ([frames, ch] in memory order), so
      // the noise does not depend on how the utterance was chunked: it is
      // always the prefix of randn([1, F, ch]).transpose(1, 2).
      at::Tensor z = window() ? torch::randn({1, add, ch}, gen, torch::kFloat).transpose(1, 2)
                              : torch::randn({1, ch, add}, gen, torch::kFloat);
      target_noise = torch::cat({target_noise, z}, 2);
    }
    return target_noise;
  }

  at::Tensor decode(bool finalize) {
    const auto& c = flow->config();
    const int64_t ch = c.output_size;
    const int64_t effective = finalize ? n_tokens : n_tokens - c.pre_lookahead_len;
    if (effective <= 0) return torch::zeros({1, ch, 0});
    S3GenInferenceOptions io;
    io.finalize = finalize;
    io.n_timesteps = opts.n_timesteps;
    io.cfg_rate = opts.cfg_rate;
    io.target_noise = noise_for(effective * c.token_mel_ratio);
    // A fresh prompt-part draw per call, like upstream's randn_like(mu).
    io.seed = opts.seed + 0x9E3779B97F4A7C15ull * static_cast<uint64_t>(++calls);
    at::Tensor all = torch::cat(tokens, 1);
    count(all.size(1) + voice.prompt_token.size(1),
          c.token_mel_ratio * (voice.prompt_token.size(1) + effective));
    at::Tensor mel = flow->inference(all, voice, io);
    if (mel.size(2) <= emitted) return torch::zeros({1, ch, 0});
    at::Tensor fresh = mel.slice(2, emitted, mel.size(2)).contiguous();
    emitted = mel.size(2);
    return fresh;
  }
};

S3GenFlowStreamer::S3GenFlowStreamer(const S3GenFlow& flow, S3GenVoice voice, S3GenStreamerOptions opts)
    : s_(std::make_unique<State>()) {
  s_->flow = &flow;
  s_->voice = std::move(voice);
  s_->opts = opts;
  s_->gen = at::make_generator<at::CPUGeneratorImpl>(opts.seed);
  if (opts.left_context >= 0 && opts.chunk_tokens < 1)
    throw ModelError("S3Gen streamer: chunk_tokens must be >= 1 in window mode (left_context >= 0), got " +
                     std::to_string(opts.chunk_tokens));
  const int64_t pf = s_->voice.prompt_feat.dim() == 3 ? s_->voice.prompt_feat.size(1) : -1;
  if (opts.left_context >= 0 && pf != flow.config().token_mel_ratio * s_->voice.prompt_token.size(1))
    throw ModelError("S3Gen streamer: the voice prompt does not line up (" + std::to_string(pf) + " prompt_feat frames for " +
                     std::to_string(s_->voice.prompt_token.size(1)) + " prompt tokens)");
}
S3GenFlowStreamer::~S3GenFlowStreamer() = default;
S3GenFlowStreamer::S3GenFlowStreamer(S3GenFlowStreamer&&) noexcept = default;

at::Tensor S3GenFlowStreamer::push(const at::Tensor& tokens) {
  c10::InferenceMode guard;
  ComputeThreads threads;  // one OpenMP thread here; GEMMs use OpenBLAS's pool (compute_threads.h)
  if (s_->finished) throw ModelError("S3Gen streamer: push() after finish(); call reset() to start a new utterance");
  at::Tensor t = s_->flow->drop_invalid_tokens(tokens);
  if (s_->window()) {
    t = t.contiguous();
    const int64_t* p = t.data_ptr<int64_t>();
    s_->ids.insert(s_->ids.end(), p, p + t.size(1));
    s_->n_tokens += t.size(1);
    return s_->run_window(false);
  }
  if (t.size(1) > 0) {
    s_->tokens.push_back(t);
    s_->n_tokens += t.size(1);
  } else {
    return torch::zeros({1, s_->flow->config().output_size, 0});
  }
  return s_->decode(false);
}

at::Tensor S3GenFlowStreamer::finish() {
  c10::InferenceMode guard;
  ComputeThreads threads;  // one OpenMP thread here; GEMMs use OpenBLAS's pool (compute_threads.h)
  if (s_->finished) return torch::zeros({1, s_->flow->config().output_size, 0});
  s_->finished = true;
  if (s_->opts.append_silence_on_finish) {
    s_->tokens.push_back(torch::full({1, s_->flow->config().pre_lookahead_len}, s_->opts.silence_token, torch::kLong));
    s_->n_tokens += s_->flow->config().pre_lookahead_len;
    if (s_->window()) s_->ids.insert(s_->ids.end(), s_->flow->config().pre_lookahead_len, s_->opts.silence_token);
  }
  if (s_->window()) return s_->run_window(true);
  return s_->decode(true);
}

void S3GenFlowStreamer::reset() {
  s_->tokens.clear();
  s_->n_tokens = 0;
  s_->emitted = 0;
  s_->calls = 0;
  s_->finished = false;
  s_->target_noise = at::Tensor();
  s_->stats = S3GenStreamStats{};
  s_->ids.clear();
  s_->decoded = 0;
  s_->prompt_noise = at::Tensor();
  s_->emitted_tail = at::Tensor();
  s_->gen = at::make_generator<at::CPUGeneratorImpl>(s_->opts.seed);
}

int64_t S3GenFlowStreamer::tokens() const { return s_->n_tokens; }
int64_t S3GenFlowStreamer::emitted_frames() const { return s_->emitted; }
bool S3GenFlowStreamer::finished() const { return s_->finished; }
at::Tensor S3GenFlowStreamer::target_noise() const { return s_->target_noise; }
const S3GenStreamStats& S3GenFlowStreamer::stats() const { return s_->stats; }
int64_t S3GenFlowStreamer::pending_tokens() const {
  return s_->window() ? static_cast<int64_t>(s_->ids.size()) - s_->decoded : 0;
}

}  // namespace chatterbox
