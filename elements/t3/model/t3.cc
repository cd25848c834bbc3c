#include "elements/t3/model/t3.h"

#include "elements/t3/model/draw.h"
#include "gst-plugins/core/compute_threads.h"
#include "gst-plugins/core/kernels/decode_attention.h"
#include "gst-plugins/core/kernels/rows_gemm.h"
#include "gst-plugins/core/checkpoint.h"

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <c10/core/GradMode.h>
#include <nlohmann/json.hpp>

#include <cmath>
#include <set>

namespace chatterbox::t3 {

using at::Tensor;

// ------------------------------------------------------------------ config ----

T3Config T3Config::from_json_text(const std::string& json_text) {
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(json_text);
  } catch (const std::exception& e) {
    throw ModelError(std::string("T3 config is not valid JSON: ") + e.what());
  }
  T3Config c;
  auto take_i = [](const nlohmann::json& o, const char* k, int64_t& dst) {
    if (o.contains(k) && o[k].is_number()) dst = o[k].get<int64_t>();
  };
  auto take_d = [](const nlohmann::json& o, const char* k, double& dst) {
    if (o.contains(k) && o[k].is_number()) dst = o[k].get<double>();
  };
  auto take_b = [](const nlohmann::json& o, const char* k, bool& dst) {
    if (o.contains(k) && o[k].is_boolean()) dst = o[k].get<bool>();
  };
  if (j.contains("llama")) {
    const auto& l = j["llama"];
    LlamaConfig& L = c.llama;
    take_i(l, "hidden_size", L.hidden_size);
    take_i(l, "num_hidden_layers", L.num_hidden_layers);
    take_i(l, "num_attention_heads", L.num_attention_heads);
    L.num_key_value_heads = L.num_attention_heads;
    take_i(l, "num_key_value_heads", L.num_key_value_heads);
    L.head_dim = L.hidden_size / L.num_attention_heads;
    take_i(l, "head_dim", L.head_dim);
    take_i(l, "intermediate_size", L.intermediate_size);
    take_d(l, "rms_norm_eps", L.rms_norm_eps);
    take_d(l, "rope_theta", L.rope_theta);
    if (l.value("hidden_act", std::string("silu")) != "silu")
      throw ModelError("T3 config: llama.hidden_act '" + l["hidden_act"].get<std::string>() + "' is not supported (silu only)");
    if (l.value("attention_bias", false) || l.value("mlp_bias", false))
      throw ModelError("T3 config: llama attention_bias/mlp_bias are not supported (the T3 backbone has no biases)");
    if (l.contains("rope_scaling") && l["rope_scaling"].is_object()) {
      const auto& r = l["rope_scaling"];
      L.rope_type = r.value("rope_type", r.value("type", std::string("default")));
      take_d(r, "factor", L.rope_factor);
      take_d(r, "low_freq_factor", L.rope_low_freq_factor);
      take_d(r, "high_freq_factor", L.rope_high_freq_factor);
      take_i(r, "original_max_position_embeddings", L.rope_original_max_position_embeddings);
    } else if (l.contains("rope_scaling")) {
      L.rope_type = "default";
    }
    if (L.rope_type != "llama3" && L.rope_type != "default")
      throw ModelError("T3 config: rope_scaling type '" + L.rope_type + "' is not supported (llama3 or none)");
  }
  if (j.contains("t3")) {
    const auto& t = j["t3"];
    take_i(t, "text_tokens_dict_size", c.text_tokens_dict_size);
    take_i(t, "speech_tokens_dict_size", c.speech_tokens_dict_size);
    take_i(t, "start_text_token", c.start_text_token);
    take_i(t, "stop_text_token", c.stop_text_token);
    take_i(t, "start_speech_token", c.start_speech_token);
    take_i(t, "stop_speech_token", c.stop_speech_token);
    take_i(t, "max_text_tokens", c.max_text_tokens);
    take_i(t, "max_speech_tokens", c.max_speech_tokens);
    take_i(t, "speaker_embed_size", c.speaker_embed_size);
    take_i(t, "speech_cond_prompt_len", c.speech_cond_prompt_len);
    take_b(t, "emotion_adv", c.emotion_adv);
    take_b(t, "use_perceiver_resampler", c.use_perceiver_resampler);
    if (t.value("input_pos_emb", std::string("learned")) != "learned")
      throw ModelError("T3 config: input_pos_emb must be 'learned'");
    if (t.value("encoder_type", std::string("voice_encoder")) != "voice_encoder")
      throw ModelError("T3 config: encoder_type must be 'voice_encoder'");
  }
  if (j.contains("perceiver")) {
    const auto& p = j["perceiver"];
    take_i(p, "pre_attention_query_token", c.perceiver_query_tokens);
    take_i(p, "num_attn_heads", c.perceiver_heads);
    int64_t dim = c.llama.hidden_size;
    take_i(p, "embedding_dim", dim);
    if (dim != c.llama.hidden_size)
      throw ModelError("T3 config: perceiver embedding_dim " + std::to_string(dim) + " differs from the hidden size " +
                       std::to_string(c.llama.hidden_size));
  }
  if (j.contains("derived")) take_d(j["derived"], "perceiver_layernorm_eps", c.perceiver_layernorm_eps);
  return c;
}

// ------------------------------------------------------------------- cond ----

T3Cond T3Cond::from_checkpoint(const Checkpoint& ckpt_in, const std::string& prefix) {
  Checkpoint ck = ckpt_in.sub(prefix);
  T3Cond c;
  c.speaker_emb = ck.get("speaker_emb").reshape({1, -1});
  Tensor tok = ck.get_raw("cond_prompt_speech_tokens");
  if (at::isFloatingType(tok.scalar_type()))
    throw ModelError("conds '" + ck.path() + "': '" + prefix + "cond_prompt_speech_tokens' is floating point, expected integer ids");
  c.cond_prompt_speech_tokens = tok.to(at::kLong).reshape({1, -1}).contiguous();
  c.emotion_adv = ck.has("emotion_adv") ? ck.get("emotion_adv").reshape({1, 1, 1}) : at::full({1, 1, 1}, 0.5f);
  return c;
}

T3Cond T3Cond::load(const std::string& path) { return from_checkpoint(Checkpoint::open(path), "t3."); }

T3Cond T3Cond::with_exaggeration(double exaggeration) const {
  T3Cond c = *this;
  c.emotion_adv = at::full({1, 1, 1}, static_cast<float>(exaggeration));
  return c;
}

// ------------------------------------------------------------------ model ----

namespace {
struct Layer {
  Tensor ln1, ln2;   // input_layernorm, post_attention_layernorm [H]
  // nn.Linear layout [out, in]; projections that read the same input are
  // fused into one matrix so a step streams each weight once.
  // Float32, or weight-only quantised (T3Model::with_precision).
  kernels::QuantizedWeight w_qkv;   // [(nh + 2 nkv) d, H]: q_proj | k_proj | v_proj
  kernels::QuantizedWeight w_o;     // [H, nh d]
  kernels::QuantizedWeight w_gu;    // [2 I, H]: gate_proj | up_proj
  kernels::QuantizedWeight w_down;  // [H, I]
};

Tensor rms_norm(const Tensor& x, const Tensor& w, double eps) {
  return x * at::rsqrt(x.pow(2).mean(-1, /*keepdim=*/true) + eps) * w;
}

Tensor rotate_half(const Tensor& x) {
  int64_t h = x.size(-1) / 2;
  return at::cat({-x.narrow(-1, h, h), x.narrow(-1, 0, h)}, -1);
}
}  // namespace

struct T3Model::Impl {
  T3Config cfg;
  std::vector<Layer> layers;
  Tensor norm_w;
  Tensor text_emb, text_pos_emb, speech_emb, speech_pos_emb;
  kernels::QuantizedWeight speech_head;  // [V, H]
  kernels::WeightFormat precision = kernels::WeightFormat::F32;
  // conditioning encoder
  Tensor spkr_w, spkr_b, emo_w;
  Tensor pq, p_ln_w, p_ln_b, p_q_w, p_q_b, p_k_w, p_k_b, p_v_w, p_v_b, p_o_w, p_o_b;
  Tensor inv_freq;  // [d/2]

  void compute_inv_freq() {
    const LlamaConfig& L = cfg.llama;
    Tensor exps = at::arange(0, L.head_dim, 2, at::kLong).to(at::kFloat) / static_cast<double>(L.head_dim);
    Tensor inv = 1.0 / at::pow(L.rope_theta, exps);
    if (L.rope_type == "llama3") {
      double old_ctx = static_cast<double>(L.rope_original_max_position_embeddings);
      double low_wl = old_ctx / L.rope_low_freq_factor, high_wl = old_ctx / L.rope_high_freq_factor;
      Tensor wavelen = at::full_like(inv, 2 * M_PI) / inv;
      Tensor inv_l = at::where(wavelen > low_wl, inv / L.rope_factor, inv);
      Tensor smooth = (old_ctx / wavelen - L.rope_low_freq_factor) / (L.rope_high_freq_factor - L.rope_low_freq_factor);
      Tensor smoothed = (1 - smooth) * inv_l / L.rope_factor + smooth * inv_l;
      Tensor medium = at::logical_and(wavelen >= high_wl, wavelen <= low_wl);
      inv = at::where(medium, smoothed, inv_l);
    }
    inv_freq = inv.contiguous();
  }

  void check_shapes() const {
    const LlamaConfig& L = cfg.llama;
    if (L.hidden_size <= 0 || L.num_attention_heads <= 0 || L.head_dim <= 0 || L.head_dim % 2 ||
        L.num_key_value_heads <= 0 || L.num_attention_heads % L.num_key_value_heads)
      throw ModelError("T3 config: inconsistent attention heads (heads " + std::to_string(L.num_attention_heads) +
                       ", kv heads " + std::to_string(L.num_key_value_heads) + ", head_dim " + std::to_string(L.head_dim) + ")");
    if (!cfg.use_perceiver_resampler)
      throw ModelError("T3 config: use_perceiver_resampler = false is not supported (every Chatterbox T3 uses it)");
    if (cfg.llama.hidden_size % cfg.perceiver_heads)
      throw ModelError("T3 config: hidden size not divisible by the perceiver heads");
  }
};

namespace {

// Cos/sin tables [S, d] for positions [past, past + S) (float32 angles, as transformers).
std::pair<Tensor, Tensor> rope_tables(const Tensor& inv_freq, int64_t past, int64_t S) {
  Tensor pos = at::arange(past, past + S, at::kLong).to(at::kFloat);
  Tensor freqs = pos.unsqueeze(1) * inv_freq.unsqueeze(0);
  Tensor emb = at::cat({freqs, freqs}, -1);
  return {emb.cos(), emb.sin()};
}

}  // namespace

// ---------------------------------------------------------------- backbone ----

struct BackboneSession::Impl {
  std::shared_ptr<const T3Model::Impl> m;
  int64_t batch, cap, len = 0;
  std::vector<Tensor> k_cache, v_cache;  // per layer [B, nkv, cap, d] (keys after RoPE)

  Tensor forward(const Tensor& x_in, std::vector<Tensor>* layer_outputs) {
    c10::NoGradGuard ng;
    const LlamaConfig& L = m->cfg.llama;
    if (x_in.dim() != 3 || x_in.size(0) != batch || x_in.size(2) != L.hidden_size)
      throw ModelError("T3 backbone: inputs_embeds has shape " + shape_str(x_in.sizes()) + ", expected [" +
                       std::to_string(batch) + ", S, " + std::to_string(L.hidden_size) + "]");
    const int64_t B = batch, S = x_in.size(1), nh = L.num_attention_heads, nkv = L.num_key_value_heads,
                  d = L.head_dim, I = L.intermediate_size;
    if (len + S > cap)
      throw ModelError("T3 backbone: KV cache full (" + std::to_string(len) + " + " + std::to_string(S) +
                       " positions > capacity " + std::to_string(cap) + ")");
    const int64_t T = len + S;
    Tensor x = x_in.to(at::kFloat).contiguous();
    auto [cos, sin] = rope_tables(m->inv_freq, len, S);
    Tensor mask;
    if (S > 1) {  // query at position len+i sees keys j <= len+i
      Tensor qi = at::arange(len, T, at::kLong).unsqueeze(1), kj = at::arange(0, T, at::kLong).unsqueeze(0);
      mask = at::zeros({S, T}, at::kFloat).masked_fill_(kj > qi, -std::numeric_limits<float>::infinity());
    }
    const double scale = 1.0 / std::sqrt(static_cast<double>(d));
    for (size_t li = 0; li < m->layers.size(); ++li) {
      const Layer& ly = m->layers[li];
      Tensor h = rms_norm(x, ly.ln1, L.rms_norm_eps);
      Tensor qkv = kernels::rows_matmul_t(h, ly.w_qkv);  // [B, S, (nh + 2 nkv) d]
      Tensor q = qkv.narrow(-1, 0, nh * d).view({B, S, nh, d}).transpose(1, 2);
      Tensor k = qkv.narrow(-1, nh * d, nkv * d).view({B, S, nkv, d}).transpose(1, 2);
      Tensor v = qkv.narrow(-1, (nh + nkv) * d, nkv * d).view({B, S, nkv, d}).transpose(1, 2);
      q = q * cos + rotate_half(q) * sin;
      k = k * cos + rotate_half(k) * sin;
      k_cache[li].narrow(2, len, S).copy_(k);
      v_cache[li].narrow(2, len, S).copy_(v);
      Tensor o;
      if (S == 1) {  // a decode step: one query against the cache (kernels/decode_attention.h)
        o = kernels::decode_attention(q.squeeze(2), k_cache[li], v_cache[li], T, scale).reshape({B, 1, nh * d});
      } else {
        Tensor K = k_cache[li].narrow(2, 0, T), V = v_cache[li].narrow(2, 0, T);
        if (nkv != nh) {  // GQA: kv head j serves query heads j*g .. j*g+g-1
          const int64_t g = nh / nkv;
          K = K.unsqueeze(2).expand({B, nkv, g, T, d}).reshape({B, nh, T, d});
          V = V.unsqueeze(2).expand({B, nkv, g, T, d}).reshape({B, nh, T, d});
        }
        Tensor scores = at::matmul(q, K.transpose(-1, -2)).mul_(scale);  // [B, nh, S, T]
        if (mask.defined()) scores.add_(mask);
        o = at::matmul(at::softmax(scores, -1), V).transpose(1, 2).reshape({B, S, nh * d});  // from [B, nh, S, d]
      }
      x = x + kernels::rows_matmul_t(o, ly.w_o);
      Tensor h2 = rms_norm(x, ly.ln2, L.rms_norm_eps);
      Tensor gu = kernels::rows_matmul_t(h2, ly.w_gu);  // [B, S, 2I]
      Tensor a = at::silu(gu.narrow(-1, 0, I)).mul_(gu.narrow(-1, I, I));
      x = x + kernels::rows_matmul_t(a, ly.w_down);
      if (layer_outputs) layer_outputs->push_back(x);
    }
    len = T;
    return rms_norm(x, m->norm_w, L.rms_norm_eps);
  }
};

BackboneSession::BackboneSession(const T3Model& model, int64_t batch, int64_t capacity) : impl_(new Impl) {
  c10::NoGradGuard ng;
  impl_->m = model.impl_;  // keeps the weights alive as long as the session
  const LlamaConfig& L = model.config().llama;
  impl_->batch = batch;
  impl_->cap = capacity;
  for (int64_t i = 0; i < L.num_hidden_layers; ++i) {
    impl_->k_cache.push_back(at::empty({batch, L.num_key_value_heads, capacity, L.head_dim}, at::kFloat));
    impl_->v_cache.push_back(at::empty({batch, L.num_key_value_heads, capacity, L.head_dim}, at::kFloat));
  }
}
BackboneSession::~BackboneSession() = default;
BackboneSession::BackboneSession(BackboneSession&&) noexcept = default;
BackboneSession& BackboneSession::operator=(BackboneSession&&) noexcept = default;
at::Tensor BackboneSession::forward(const at::Tensor& x, std::vector<at::Tensor>* lo) { return impl_->forward(x, lo); }
int64_t BackboneSession::length() const { return impl_->len; }
int64_t BackboneSession::capacity() const { return impl_->cap; }
void BackboneSession::reset() { impl_->len = 0; }

// ------------------------------------------------------------ construction ----

namespace {

std::shared_ptr<T3Model::Impl> build_from_checkpoint(const Checkpoint& ck, const T3Config& cfg_in) {
  c10::NoGradGuard ng;
  auto m = std::make_shared<T3Model::Impl>();
  m->cfg = cfg_in;
  T3Config& cfg = m->cfg;
  // The text table decides the text vocabulary (704 English, 2454 multilingual).
  if (ck.has("text_emb.weight")) cfg.text_tokens_dict_size = ck.get("text_emb.weight").size(0);
  m->check_shapes();
  const LlamaConfig& L = cfg.llama;
  const int64_t H = L.hidden_size, nh = L.num_attention_heads, nkv = L.num_key_value_heads, d = L.head_dim,
                I = L.intermediate_size;
  for (int64_t i = 0; i < L.num_hidden_layers; ++i) {
    Checkpoint lc = ck.sub("tfmr.layers." + std::to_string(i) + ".");
    Layer ly;
    ly.ln1 = lc.get("input_layernorm.weight", {H});
    ly.ln2 = lc.get("post_attention_layernorm.weight", {H});
    ly.w_qkv = kernels::float_weight(at::cat({lc.get("self_attn.q_proj.weight", {nh * d, H}),
                                              lc.get("self_attn.k_proj.weight", {nkv * d, H}),
                                              lc.get("self_attn.v_proj.weight", {nkv * d, H})}, 0));
    ly.w_o = kernels::float_weight(lc.get("self_attn.o_proj.weight", {H, nh * d}));
    ly.w_gu = kernels::float_weight(at::cat({lc.get("mlp.gate_proj.weight", {I, H}), lc.get("mlp.up_proj.weight", {I, H})}, 0));
    ly.w_down = kernels::float_weight(lc.get("mlp.down_proj.weight", {H, I}));
    m->layers.push_back(std::move(ly));
  }
  const std::string extra = "tfmr.layers." + std::to_string(L.num_hidden_layers) + ".input_layernorm.weight";
  if (ck.has(extra))
    throw ModelError("checkpoint '" + ck.path() + "' has more than " + std::to_string(L.num_hidden_layers) +
                     " decoder layers ('" + ck.prefix() + extra + "'); its config does not match");
  m->norm_w = ck.get("tfmr.norm.weight", {H});
  m->text_emb = ck.get("text_emb.weight", {cfg.text_tokens_dict_size, H});
  m->text_pos_emb = ck.get("text_pos_emb.emb.weight", {cfg.max_text_tokens + 2, H});
  m->speech_emb = ck.get("speech_emb.weight", {cfg.speech_tokens_dict_size, H});
  m->speech_pos_emb = ck.get("speech_pos_emb.emb.weight", {cfg.max_speech_tokens + 4, H});
  m->speech_head = kernels::float_weight(ck.get("speech_head.weight", {cfg.speech_tokens_dict_size, H}));
  Checkpoint ce = ck.sub("cond_enc.");
  m->spkr_w = ce.get("spkr_enc.weight", {H, cfg.speaker_embed_size});
  m->spkr_b = ce.get("spkr_enc.bias", {H});
  if (cfg.emotion_adv) m->emo_w = ce.get("emotion_adv_fc.weight", {H, 1});
  Checkpoint pc = ce.sub("perceiver.");
  m->pq = pc.get("pre_attention_query", {1, cfg.perceiver_query_tokens, H});
  m->p_ln_w = pc.get("attn.norm.weight", {H});
  m->p_ln_b = pc.get("attn.norm.bias", {H});
  m->p_q_w = pc.get("attn.to_q.weight", {H, H});
  m->p_q_b = pc.get("attn.to_q.bias", {H});
  m->p_k_w = pc.get("attn.to_k.weight", {H, H});
  m->p_k_b = pc.get("attn.to_k.bias", {H});
  m->p_v_w = pc.get("attn.to_v.weight", {H, H});
  m->p_v_b = pc.get("attn.to_v.bias", {H});
  m->p_o_w = pc.get("attn.proj_out.weight", {H, H});
  m->p_o_b = pc.get("attn.proj_out.bias", {H});
  m->compute_inv_freq();
  return m;
}

}  // namespace

T3Model T3Model::from_checkpoint(const Checkpoint& ckpt, const T3Config& config) {
  T3Model t;
  t.impl_ = build_from_checkpoint(ckpt, config);
  return t;
}

T3Model T3Model::from_checkpoint(const Checkpoint& ckpt) {
  T3Config cfg = ckpt.has_metadata("config") ? T3Config::from_json_text(ckpt.metadata("config")) : T3Config::english();
  return from_checkpoint(ckpt, cfg);
}

T3Model T3Model::load(const std::string& path) { return from_checkpoint(Checkpoint::open(path)); }

T3Model T3Model::random(const T3Config& config, uint64_t seed) {
  c10::NoGradGuard ng;
  at::Generator gen = at::detail::createCPUGenerator(seed);
  auto m = std::make_shared<Impl>();
  m->cfg = config;
  m->check_shapes();
  const T3Config& cfg = m->cfg;
  const LlamaConfig& L = cfg.llama;
  const int64_t H = L.hidden_size, nh = L.num_attention_heads, nkv = L.num_key_value_heads, d = L.head_dim,
                I = L.intermediate_size;
  auto normal = [&](std::vector<int64_t> shape, double std) {
    return at::normal(0.0, std, shape, gen).contiguous();
  };
  // Linear weights N(0, 1/fan_in), [out, in].
  auto lin = [&](int64_t out, int64_t in) { return normal({out, in}, 1.0 / std::sqrt(static_cast<double>(in))); };
  auto norm_w = [&](int64_t n) { return 1.0 + normal({n}, 0.1); };
  for (int64_t i = 0; i < L.num_hidden_layers; ++i) {
    Layer ly;
    ly.ln1 = norm_w(H);
    ly.ln2 = norm_w(H);
    ly.w_qkv = kernels::float_weight(lin((nh + 2 * nkv) * d, H));
    ly.w_o = kernels::float_weight(lin(H, nh * d));
    ly.w_gu = kernels::float_weight(lin(2 * I, H));
    ly.w_down = kernels::float_weight(lin(H, I));
    m->layers.push_back(std::move(ly));
  }
  m->norm_w = norm_w(H);
  m->text_emb = normal({cfg.text_tokens_dict_size, H}, 0.5);
  m->text_pos_emb = normal({cfg.max_text_tokens + 2, H}, 0.2);
  m->speech_emb = normal({cfg.speech_tokens_dict_size, H}, 0.5);
  m->speech_pos_emb = normal({cfg.max_speech_tokens + 4, H}, 0.2);
  m->speech_head = kernels::float_weight(lin(cfg.speech_tokens_dict_size, H) * 2.0);
  m->spkr_w = normal({H, cfg.speaker_embed_size}, 8.0 / std::sqrt(static_cast<double>(cfg.speaker_embed_size)));
  m->spkr_b = normal({H}, 0.02);
  m->emo_w = normal({H, 1}, 1.0);
  m->pq = at::rand({1, cfg.perceiver_query_tokens, H}, gen) - 0.5;
  m->p_ln_w = norm_w(H);
  m->p_ln_b = normal({H}, 0.05);
  for (Tensor* w : {&m->p_q_w, &m->p_k_w, &m->p_v_w, &m->p_o_w}) *w = normal({H, H}, 1.0 / std::sqrt(static_cast<double>(H)));
  for (Tensor* b : {&m->p_q_b, &m->p_k_b, &m->p_v_b, &m->p_o_b}) *b = normal({H}, 0.02);
  m->compute_inv_freq();
  T3Model t;
  t.impl_ = m;
  return t;
}

const T3Config& T3Model::config() const { return impl_->cfg; }

T3Model T3Model::with_precision(const std::string& precision) const {
  const kernels::WeightFormat f = kernels::parse_weight_format(precision);
  if (f == impl_->precision) return *this;
  if (impl_->precision != kernels::WeightFormat::F32)
    throw ModelError("T3: quantise from the float32 model (this one is already " +
                     std::string(kernels::weight_format_name(impl_->precision)) + ")");
  auto m = std::make_shared<Impl>(*impl_);  // shares every tensor
  for (Layer& ly : m->layers)
    for (kernels::QuantizedWeight* w : {&ly.w_qkv, &ly.w_o, &ly.w_gu, &ly.w_down})
      *w = kernels::quantize_weight(w->data, f);
  m->speech_head = kernels::quantize_weight(m->speech_head.data, f);
  m->precision = f;
  T3Model t;
  t.impl_ = m;
  return t;
}

const char* T3Model::precision() const { return kernels::weight_format_name(impl_->precision); }

int64_t T3Model::decode_weight_bytes() const {
  int64_t b = impl_->speech_head.bytes();
  for (const Layer& ly : impl_->layers) b += ly.w_qkv.bytes() + ly.w_o.bytes() + ly.w_gu.bytes() + ly.w_down.bytes();
  return b;
}

// ---------------------------------------------------------------- stages ----

namespace {
// Perceiver's AttentionBlock2: x1 + proj_out(MHA(LN x1, LN x2)).
Tensor perceiver_block(const T3Model::Impl& m, const Tensor& x1, const Tensor& x2) {
  const int64_t H = m.cfg.llama.hidden_size, heads = m.cfg.perceiver_heads, hd = H / heads;
  const int64_t B = x1.size(0), Lq = x1.size(1), Lk = x2.size(1);
  Tensor n1 = at::layer_norm(x1, {H}, m.p_ln_w, m.p_ln_b, m.cfg.perceiver_layernorm_eps);
  Tensor n2 = at::layer_norm(x2, {H}, m.p_ln_w, m.p_ln_b, m.cfg.perceiver_layernorm_eps);
  Tensor q = at::linear(n1, m.p_q_w, m.p_q_b).view({B, Lq, heads, hd}).transpose(1, 2);
  Tensor k = at::linear(n2, m.p_k_w, m.p_k_b).view({B, Lk, heads, hd}).transpose(1, 2);
  Tensor v = at::linear(n2, m.p_v_w, m.p_v_b).view({B, Lk, heads, hd}).transpose(1, 2);
  Tensor a = at::softmax(at::matmul(q, k.transpose(-1, -2)) / std::sqrt(static_cast<double>(hd)), -1);
  Tensor o = at::matmul(a, v).transpose(1, 2).reshape({B, Lq, H});
  return x1 + at::linear(o, m.p_o_w, m.p_o_b);
}

Tensor cond_embedding_impl(const T3Model::Impl& m, const T3Cond& c) {
  const T3Config& cfg = m.cfg;
  const int64_t H = cfg.llama.hidden_size;
  if (!c.speaker_emb.defined() || c.speaker_emb.numel() != cfg.speaker_embed_size)
    throw ModelError("T3 conditioning: speaker_emb must hold " + std::to_string(cfg.speaker_embed_size) + " values");
  if (!c.cond_prompt_speech_tokens.defined() || c.cond_prompt_speech_tokens.numel() == 0)
    throw ModelError("T3 conditioning: cond_prompt_speech_tokens is empty; the voice needs a speech prompt");
  Tensor toks = c.cond_prompt_speech_tokens.to(at::kLong).reshape({1, -1});
  const int64_t N = toks.size(1);
  if (N > m.speech_pos_emb.size(0))
    throw ModelError("T3 conditioning: " + std::to_string(N) + " prompt tokens exceed the speech position table");
  if (toks.min().item<int64_t>() < 0 || toks.max().item<int64_t>() >= cfg.speech_tokens_dict_size)
    throw ModelError("T3 conditioning: a prompt speech token is outside [0, " + std::to_string(cfg.speech_tokens_dict_size) + ")");
  Tensor spk = at::linear(c.speaker_emb.to(at::kFloat).reshape({1, cfg.speaker_embed_size}), m.spkr_w, m.spkr_b)
                   .unsqueeze(1);                                      // [1, 1, H]
  Tensor prompt = m.speech_emb.index_select(0, toks[0]) + m.speech_pos_emb.narrow(0, 0, N);  // [N, H]
  prompt = prompt.unsqueeze(0);
  Tensor query = m.pq.expand({1, cfg.perceiver_query_tokens, H});
  Tensor p = perceiver_block(m, query, prompt);
  p = perceiver_block(m, p, p);  // the same block again, self-attention
  std::vector<Tensor> parts{spk, p};
  if (cfg.emotion_adv) {
    Tensor e = c.emotion_adv.defined() ? c.emotion_adv.to(at::kFloat).reshape({1, 1, 1}) : at::full({1, 1, 1}, 0.5f);
    parts.push_back(at::linear(e, m.emo_w));  // [1, 1, H], no bias
  }
  return at::cat(parts, 1);
}

void check_text_ids(const T3Config& cfg, const std::vector<int64_t>& ids) {
  for (size_t i = 0; i < ids.size(); ++i)
    if (ids[i] < 0 || ids[i] >= cfg.text_tokens_dict_size)
      throw ModelError("T3: text token #" + std::to_string(i) + " = " + std::to_string(ids[i]) +
                       " is outside the text vocabulary [0, " + std::to_string(cfg.text_tokens_dict_size) +
                       "); was the text encoded with this model's tokenizer?");
  if (static_cast<int64_t>(ids.size()) + 2 > cfg.max_text_tokens + 2)
    throw ModelError("T3: " + std::to_string(ids.size()) + " text tokens exceed max_text_tokens " +
                     std::to_string(cfg.max_text_tokens) + "; split the text");
}

Tensor prefill_embeds_impl(const T3Model::Impl& m, const std::vector<int64_t>& text_ids, const Tensor& cond_emb,
                           bool cfg_rows) {
  const T3Config& cfg = m.cfg;
  check_text_ids(cfg, text_ids);
  std::vector<int64_t> padded;
  padded.reserve(text_ids.size() + 2);
  padded.push_back(cfg.start_text_token);
  padded.insert(padded.end(), text_ids.begin(), text_ids.end());
  padded.push_back(cfg.stop_text_token);
  const int64_t T = static_cast<int64_t>(padded.size()), B = cfg_rows ? 2 : 1, H = cfg.llama.hidden_size;
  Tensor ids = at::tensor(padded, at::kLong);
  Tensor text = m.text_emb.index_select(0, ids).unsqueeze(0).repeat({B, 1, 1});  // [B, T, H]
  if (cfg_rows) text[1].zero_();  // unconditional row: no text, position embeddings kept
  text = text + m.text_pos_emb.narrow(0, 0, T);
  Tensor start = (m.speech_emb[cfg.start_speech_token] + m.speech_pos_emb[0]).view({1, 1, H}).expand({B, 2, H});
  return at::cat({cond_emb.expand({B, cond_emb.size(1), H}), text, start}, 1).contiguous();
}
}  // namespace

at::Tensor T3Model::cond_embedding(const T3Cond& cond) const {
  c10::NoGradGuard ng;
  return cond_embedding_impl(*impl_, cond);
}

at::Tensor T3Model::prefill_embeds(const std::vector<int64_t>& text_ids, const T3Cond& cond, double cfg_weight) const {
  c10::NoGradGuard ng;
  return prefill_embeds_impl(*impl_, text_ids, cond_embedding_impl(*impl_, cond), cfg_weight > 0);
}

at::Tensor T3Model::backbone(const at::Tensor& inputs_embeds, std::vector<at::Tensor>* layer_outputs) const {
  BackboneSession s(*this, inputs_embeds.size(0), inputs_embeds.size(1));
  return s.forward(inputs_embeds, layer_outputs);
}

at::Tensor T3Model::speech_logits(const at::Tensor& hidden) const {
  c10::NoGradGuard ng;
  return kernels::rows_matmul_t(hidden, impl_->speech_head);
}

at::Tensor T3Model::rope_inv_freq() const { return impl_->inv_freq; }

at::Tensor T3Model::speech_input_embed(int64_t token, int64_t position) const {
  c10::NoGradGuard ng;
  const T3Config& cfg = impl_->cfg;
  if (token < 0 || token >= cfg.speech_tokens_dict_size)
    throw ModelError("T3: speech token " + std::to_string(token) + " is outside the speech vocabulary");
  if (position < 0 || position >= impl_->speech_pos_emb.size(0))
    throw ModelError("T3: speech position " + std::to_string(position) + " exceeds the speech position table (" +
                     std::to_string(impl_->speech_pos_emb.size(0)) + " rows); lower max_new_tokens");
  return impl_->speech_emb[token] + impl_->speech_pos_emb[position];
}

std::vector<int64_t> T3Model::inference(const std::vector<int64_t>& text_ids, const T3Cond& cond,
                                        const SamplingOptions& opts) const {
  T3Generator g(*this, opts);
  g.start(text_ids, cond);
  while (g.next_token() >= 0) {
  }
  return g.tokens();
}

// -------------------------------------------------------------- generator ----

struct T3Generator::Impl {
  T3Model model;
  SamplingOptions opts;
  std::unique_ptr<BackboneSession> session;
  at::Generator gen;
  int64_t B = 2;
  Tensor logits;       // [B, V] from the last backbone pass
  Tensor hidden;       // [B, H]
  Tensor cfg_logits, probs, input_embed;
  std::vector<int64_t> tokens;
  Tensor seen;         // [V] bool: ids for the repetition penalty (start token included)
  int64_t pending = -1;
  bool started = false, done = false;
};

T3Generator::T3Generator(const T3Model& model, SamplingOptions opts) : impl_(new Impl) {
  impl_->model = model;
  impl_->opts = std::move(opts);
  impl_->gen = at::detail::createCPUGenerator(impl_->opts.seed);
  const SamplingOptions& o = impl_->opts;
  if (o.temperature <= 0) throw ModelError("T3 sampling: temperature must be > 0 (use greedy for argmax decoding)");
  if (o.repetition_penalty <= 0) throw ModelError("T3 sampling: repetition_penalty must be > 0");
  if (o.top_p <= 0 || o.top_p > 1) throw ModelError("T3 sampling: top_p must be in (0, 1]");
  if (o.min_p < 0 || o.min_p > 1) throw ModelError("T3 sampling: min_p must be in [0, 1]");
  if (o.cfg_weight < 0) throw ModelError("T3 sampling: cfg_weight must be >= 0");
  if (o.max_new_tokens <= 0) throw ModelError("T3 sampling: max_new_tokens must be > 0");
}
T3Generator::~T3Generator() = default;
T3Generator::T3Generator(T3Generator&&) noexcept = default;
T3Generator& T3Generator::operator=(T3Generator&&) noexcept = default;

void T3Generator::start(const std::vector<int64_t>& text_ids, const T3Cond& cond) {
  c10::NoGradGuard ng;
  ComputeThreads threads;  // one OpenMP thread; GEMMs: our pool and OpenBLAS's (compute_threads.h)
  Impl& g = *impl_;
  const T3Model::Impl& m = g.model.impl();
  const T3Config& cfg = m.cfg;
  if (g.opts.max_new_tokens + 1 > m.speech_pos_emb.size(0))
    throw ModelError("T3 sampling: max_new_tokens " + std::to_string(g.opts.max_new_tokens) +
                     " exceeds the speech position table (" + std::to_string(m.speech_pos_emb.size(0) - 1) + ")");
  g.B = g.opts.cfg_weight > 0 ? 2 : 1;
  Tensor x = prefill_embeds_impl(m, text_ids, cond_embedding_impl(m, cond), g.B == 2);
  g.session = std::make_unique<BackboneSession>(g.model, g.B, x.size(1) + g.opts.max_new_tokens);
  Tensor h = g.session->forward(x);
  g.hidden = h.select(1, h.size(1) - 1).contiguous();
  g.logits = kernels::rows_matmul_t(g.hidden, m.speech_head);
  g.tokens.clear();
  g.seen = at::zeros({cfg.speech_tokens_dict_size}, at::kBool);
  g.seen[cfg.start_speech_token] = true;
  g.pending = -1;
  g.input_embed = Tensor();
  g.started = true;
  g.done = false;
}

int64_t T3Generator::next_token() {
  c10::NoGradGuard ng;
  ComputeThreads threads;  // one OpenMP thread; GEMMs: our pool and OpenBLAS's (compute_threads.h)
  Impl& g = *impl_;
  if (!g.started) throw ModelError("T3Generator: next_token() before start()");
  if (g.done) return -1;
  const T3Model::Impl& m = g.model.impl();
  const T3Config& cfg = m.cfg;
  const SamplingOptions& o = g.opts;
  const int64_t step = static_cast<int64_t>(g.tokens.size());
  if (g.pending >= 0) {  // feed the previous token: speech position = its index + 1
    g.input_embed = g.model.speech_input_embed(g.pending, step);
    Tensor x = g.input_embed.view({1, 1, -1}).expand({g.B, 1, g.input_embed.size(0)});
    g.hidden = g.session->forward(x).select(1, 0).contiguous();
    g.logits = kernels::rows_matmul_t(g.hidden, m.speech_head);
    g.pending = -1;
  }
  Tensor l = g.B == 2 ? g.logits[0] + o.cfg_weight * (g.logits[0] - g.logits[1]) : g.logits[0].clone();
  g.cfg_logits = l;
  // Repetition penalty over the distinct ids generated so far (start token included).
  Tensor pen = at::where(l < 0, l * o.repetition_penalty, l / o.repetition_penalty);
  Tensor s = at::where(g.seen, pen, l);
  if (o.temperature != 1.0) s = s / o.temperature;
  const float ninf = -std::numeric_limits<float>::infinity();
  if (o.min_p > 0) {
    Tensor p = at::softmax(s, -1);
    s = s.masked_fill(p < o.min_p * p.max(), ninf);
  }
  if (o.top_p < 1.0) {  // transformers TopPLogitsWarper: ascending sort, drop cumsum <= 1 - top_p, keep the top
    auto sorted = at::sort(s, /*dim=*/-1, /*descending=*/false);
    Tensor cum = at::softmax(std::get<0>(sorted), -1).cumsum(-1);
    Tensor remove = cum <= (1 - o.top_p);
    remove[-1] = false;
    s = s.masked_fill(at::empty_like(remove).scatter_(0, std::get<1>(sorted), remove), ninf);
  }
  g.probs = at::softmax(s, -1);
  const int64_t tok = draw_token(g.probs, o.greedy, o.draws, step, g.gen);
  g.tokens.push_back(tok);
  g.seen[tok] = true;
  if (tok == cfg.stop_speech_token || static_cast<int64_t>(g.tokens.size()) >= o.max_new_tokens)
    g.done = true;  // the reference's last extra pass only produces discarded logits
  else
    g.pending = tok;
  return tok;
}

bool T3Generator::finished() const { return impl_->done; }
const std::vector<int64_t>& T3Generator::tokens() const { return impl_->tokens; }
const at::Tensor& T3Generator::last_hidden() const { return impl_->hidden; }
const at::Tensor& T3Generator::last_cfg_logits() const { return impl_->cfg_logits; }
const at::Tensor& T3Generator::last_probs() const { return impl_->probs; }
const at::Tensor& T3Generator::last_input_embed() const { return impl_->input_embed; }

std::vector<int64_t> drop_invalid_tokens(const std::vector<int64_t>& tokens, int64_t start_speech_token,
                                         int64_t stop_speech_token) {
  size_t begin = 0, end = tokens.size();
  for (size_t i = 0; i < tokens.size(); ++i)
    if (tokens[i] == start_speech_token) {
      begin = i + 1;
      break;
    }
  for (size_t i = begin; i < tokens.size(); ++i)
    if (tokens[i] == stop_speech_token) {
      end = i;
      break;
    }
  std::vector<int64_t> out;
  for (size_t i = begin; i < end; ++i)
    if (tokens[i] >= 0 && tokens[i] < start_speech_token) out.push_back(tokens[i]);
  return out;
}

}  // namespace chatterbox::t3
