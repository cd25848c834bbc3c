#include "elements/t3/model/t3_turbo.h"

#include "gst-plugins/core/checkpoint.h"
#include "elements/t3/model/draw.h"
#include "gst-plugins/core/compute_threads.h"
#include "gst-plugins/core/kernels/rows_gemm.h"

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <c10/core/GradMode.h>
#include <nlohmann/json.hpp>

#include <cmath>
#include <limits>
#include <optional>

namespace chatterbox::t3 {

using at::Tensor;

struct T3TurboModel::Impl {
  T3TurboConfig cfg;
  Gpt2Backbone tfmr;
  Tensor text_emb, speech_emb;          // [V_text, E], [V_speech, E]
  kernels::QuantizedWeight speech_head_w;  // [V_speech, E]
  Tensor speech_head_b;                   // [V_speech]
  kernels::WeightFormat precision = kernels::WeightFormat::F32;
  Tensor spkr_w, spkr_b;                // cond_enc.spkr_enc: [E, 256], [E]
};

// ------------------------------------------------------------- loading ----

namespace {

// Upstream's from_local: `if "model" in state: state = state["model"][0]`,
// the legacy training-checkpoint wrapper; our torch reader joins it as
// "model.0.<name>".
Checkpoint unwrap(const Checkpoint& ck) {
  if (!ck.has("speech_head.weight") && ck.has("model.0.speech_head.weight")) return ck.sub("model.0.");
  return ck;
}

void expect_shape(const Checkpoint& ck, const std::string& name, const std::vector<int64_t>& shape) {
  Tensor t = ck.get_raw(name);
  bool ok = static_cast<int64_t>(shape.size()) == t.dim();
  for (size_t i = 0; ok && i < shape.size(); ++i) ok = shape[i] < 0 || shape[i] == t.size(static_cast<int64_t>(i));
  if (!ok)
    throw ModelError("checkpoint '" + ck.path() + "': tensor '" + ck.prefix() + name + "' has shape " +
                     shape_str(t.sizes()) + ", the model expects " + shape_str(shape));
  if (!t.is_floating_point())
    throw ModelError("checkpoint '" + ck.path() + "': tensor '" + ck.prefix() + name + "' is not a floating-point tensor");
}

int64_t rows_of(const Checkpoint& ck, const std::string& name) {
  Tensor t = ck.get_raw(name);
  if (t.dim() != 2)
    throw ModelError("checkpoint '" + ck.path() + "': tensor '" + ck.prefix() + name + "' has shape " +
                     shape_str(t.sizes()) + ", the model expects a matrix [rows, n_embd]");
  return t.size(0);
}

// What a fixture's metadata "config" ({"gpt2": GPT2Config, "t3": T3Config})
// says beyond the shapes: the heads (not in any shape), the LayerNorm eps,
// the activation, and T3 flags this model does not implement.
struct MetaConfig {
  int64_t n_head = 0;
  double eps = 1e-5;
  bool perceiver_or_emotion = false;
};
MetaConfig read_meta(const Checkpoint& ck, T3TurboConfig& c) {
  MetaConfig m;
  if (!ck.has_metadata("config")) return m;
  nlohmann::json j = ck.config();
  if (j.contains("gpt2") && j["gpt2"].is_object()) {
    const auto& g = j["gpt2"];
    if (g.contains("n_head") && g["n_head"].is_number_integer()) m.n_head = g["n_head"].get<int64_t>();
    if (g.contains("layer_norm_epsilon") && g["layer_norm_epsilon"].is_number())
      m.eps = g["layer_norm_epsilon"].get<double>();
    const std::string act = g.value("activation_function", std::string("gelu_new"));
    if (act != "gelu_new")
      throw ModelError("checkpoint '" + ck.path() + "': config gpt2.activation_function '" + act +
                       "' is not supported (gelu_new only)");
    if (g.contains("n_inner") && !g["n_inner"].is_null() && !g["n_inner"].is_number_integer())
      throw ModelError("checkpoint '" + ck.path() + "': config gpt2.n_inner is neither null nor an integer");
  }
  if (j.contains("t3") && j["t3"].is_object()) {
    const auto& t = j["t3"];
    m.perceiver_or_emotion = t.value("use_perceiver_resampler", false) || t.value("emotion_adv", false);
    if (t.contains("start_speech_token") && t["start_speech_token"].is_number_integer())
      c.start_speech_token = t["start_speech_token"].get<int64_t>();
    if (t.contains("stop_speech_token") && t["stop_speech_token"].is_number_integer())
      c.stop_speech_token = t["stop_speech_token"].get<int64_t>();
  }
  return m;
}

}  // namespace

T3TurboConfig T3TurboModel::inspect(const Checkpoint& ckpt) {
  Checkpoint ck = unwrap(ckpt);
  T3TurboConfig c;
  MetaConfig meta = read_meta(ck, c);
  c.gpt2 = Gpt2Backbone::inspect(ck.sub("tfmr."), meta.n_head, meta.eps);
  const int64_t E = c.gpt2.n_embd;
  c.text_tokens_dict_size = rows_of(ck, "text_emb.weight");
  c.speech_tokens_dict_size = rows_of(ck, "speech_emb.weight");
  Tensor spk = ck.get_raw("cond_enc.spkr_enc.weight");
  if (spk.dim() != 2)
    throw ModelError("checkpoint '" + ck.path() + "': tensor '" + ck.prefix() + "cond_enc.spkr_enc.weight' has shape " +
                     shape_str(spk.sizes()) + ", the model expects [" + std::to_string(E) + ", 256]");
  c.speaker_embed_size = spk.size(1);
  expect_shape(ck, "cond_enc.spkr_enc.weight", {E, c.speaker_embed_size});
  expect_shape(ck, "cond_enc.spkr_enc.bias", {E});
  expect_shape(ck, "text_emb.weight", {c.text_tokens_dict_size, E});
  expect_shape(ck, "speech_emb.weight", {c.speech_tokens_dict_size, E});
  expect_shape(ck, "speech_head.weight", {c.speech_tokens_dict_size, E});
  expect_shape(ck, "speech_head.bias", {c.speech_tokens_dict_size});
  if (ck.has("text_head.weight")) expect_shape(ck, "text_head.weight", {c.text_tokens_dict_size, E});  // unused
  if (c.stop_speech_token >= c.speech_tokens_dict_size || c.start_speech_token >= c.speech_tokens_dict_size)
    throw ModelError("checkpoint '" + ck.path() + "': the speech vocabulary (" + std::to_string(c.speech_tokens_dict_size) +
                     " rows of speech_emb.weight) lacks the start/stop tokens " + std::to_string(c.start_speech_token) +
                     "/" + std::to_string(c.stop_speech_token));
  // Checked after the tensors, so a Llama T3 fixture is reported by its
  // missing GPT-2 tensors first.
  if (meta.perceiver_or_emotion)
    throw ModelError("checkpoint '" + ck.path() + "': config t3 asks for a perceiver or emotion_adv, which the "
                     "GPT-2 (Turbo) T3 does not have");
  return c;
}

T3TurboModel T3TurboModel::from_checkpoint(const Checkpoint& ckpt) {
  c10::NoGradGuard ng;
  const T3TurboConfig cfg = inspect(ckpt);  // every shape checked before anything is copied
  Checkpoint ck = unwrap(ckpt);
  auto m = std::make_shared<Impl>();
  m->cfg = cfg;
  m->tfmr = Gpt2Backbone::from_checkpoint(ck.sub("tfmr."), cfg.gpt2);
  m->text_emb = ck.get("text_emb.weight");
  m->speech_emb = ck.get("speech_emb.weight");
  m->speech_head_w = kernels::float_weight(ck.get("speech_head.weight"));
  m->speech_head_b = ck.get("speech_head.bias");
  m->spkr_w = ck.get("cond_enc.spkr_enc.weight");
  m->spkr_b = ck.get("cond_enc.spkr_enc.bias");
  T3TurboModel t;
  t.impl_ = m;
  return t;
}

T3TurboModel T3TurboModel::load(const std::string& path) { return from_checkpoint(Checkpoint::open(path)); }

T3TurboModel T3TurboModel::random(const T3TurboConfig& cfg, uint64_t seed) {
  c10::NoGradGuard ng;
  auto m = std::make_shared<Impl>();
  m->cfg = cfg;
  m->tfmr = Gpt2Backbone::random(cfg.gpt2, seed);
  at::Generator gen = at::detail::createCPUGenerator(seed + 1);
  auto normal = [&](std::vector<int64_t> shape, double std) { return at::normal(0.0, std, shape, gen).contiguous(); };
  const int64_t E = cfg.gpt2.n_embd;
  m->text_emb = normal({cfg.text_tokens_dict_size, E}, 0.5);
  m->speech_emb = normal({cfg.speech_tokens_dict_size, E}, 0.5);
  m->speech_head_w = kernels::float_weight(normal({cfg.speech_tokens_dict_size, E}, 2.0 / std::sqrt(static_cast<double>(E))));
  m->speech_head_b = normal({cfg.speech_tokens_dict_size}, 0.02);
  m->spkr_w = normal({E, cfg.speaker_embed_size}, 8.0 / std::sqrt(static_cast<double>(cfg.speaker_embed_size)));
  m->spkr_b = normal({E}, 0.02);
  T3TurboModel t;
  t.impl_ = m;
  return t;
}

const T3TurboConfig& T3TurboModel::config() const { return impl_->cfg; }
const Gpt2Backbone& T3TurboModel::backbone_model() const { return impl_->tfmr; }

T3TurboModel T3TurboModel::with_precision(const std::string& precision) const {
  const kernels::WeightFormat f = kernels::parse_weight_format(precision);
  if (f == impl_->precision) return *this;
  if (impl_->precision != kernels::WeightFormat::F32)
    throw ModelError("T3 Turbo: quantise from the float32 model (this one is already " +
                     std::string(kernels::weight_format_name(impl_->precision)) + ")");
  auto m = std::make_shared<Impl>(*impl_);
  m->tfmr = impl_->tfmr.with_precision(f);
  m->speech_head_w = kernels::quantize_weight(impl_->speech_head_w.data, f);
  m->precision = f;
  T3TurboModel t(*this);
  t.impl_ = m;
  return t;
}

const char* T3TurboModel::precision() const { return kernels::weight_format_name(impl_->precision); }
int64_t T3TurboModel::decode_weight_bytes() const { return impl_->tfmr.weight_bytes() + impl_->speech_head_w.bytes(); }

// -------------------------------------------------------------- stages ----

namespace {

Tensor cond_embedding_impl(const T3TurboModel::Impl& m, const T3Cond& c) {
  const T3TurboConfig& cfg = m.cfg;
  if (!c.speaker_emb.defined() || c.speaker_emb.numel() != cfg.speaker_embed_size)
    throw ModelError("T3 conditioning: speaker_emb must hold " + std::to_string(cfg.speaker_embed_size) + " values");
  Tensor spk = at::linear(c.speaker_emb.to(at::kFloat).reshape({1, cfg.speaker_embed_size}), m.spkr_w, m.spkr_b)
                   .unsqueeze(1);  // [1, 1, E]
  if (!c.cond_prompt_speech_tokens.defined() || c.cond_prompt_speech_tokens.numel() == 0) return spk;
  // The raw embeddings of the prompt: no perceiver, no position embedding
  // (GPT-2's wpe covers the whole prefill).
  Tensor toks = c.cond_prompt_speech_tokens.to(at::kLong).reshape({-1});
  if (toks.min().item<int64_t>() < 0 || toks.max().item<int64_t>() >= cfg.speech_tokens_dict_size)
    throw ModelError("T3 conditioning: a prompt speech token is outside [0, " +
                     std::to_string(cfg.speech_tokens_dict_size) + ")");
  return at::cat({spk, m.speech_emb.index_select(0, toks).unsqueeze(0)}, 1);
}

// cond_emb: cond_embedding_impl of the voice (computed once by the caller).
Tensor prefill_embeds_impl(const T3TurboModel::Impl& m, const std::vector<int64_t>& text_ids, const Tensor& cond_emb) {
  const T3TurboConfig& cfg = m.cfg;
  for (size_t i = 0; i < text_ids.size(); ++i)
    if (text_ids[i] < 0 || text_ids[i] >= cfg.text_tokens_dict_size)
      throw ModelError("T3: text token #" + std::to_string(i) + " = " + std::to_string(text_ids[i]) +
                       " is outside the text vocabulary [0, " + std::to_string(cfg.text_tokens_dict_size) +
                       "); was the text encoded with this model's tokenizer?");
  std::vector<Tensor> parts{cond_emb};
  if (!text_ids.empty())
    parts.push_back(m.text_emb.index_select(0, at::tensor(text_ids, at::kLong)).unsqueeze(0));
  parts.push_back(m.speech_emb[cfg.start_speech_token].view({1, 1, -1}));  // once (no second BOS)
  return at::cat(parts, 1).contiguous();
}

}  // namespace

at::Tensor T3TurboModel::cond_embedding(const T3Cond& cond) const {
  c10::NoGradGuard ng;
  return cond_embedding_impl(*impl_, cond);
}

at::Tensor T3TurboModel::prefill_embeds(const std::vector<int64_t>& text_ids, const T3Cond& cond) const {
  c10::NoGradGuard ng;
  return prefill_embeds_impl(*impl_, text_ids, cond_embedding_impl(*impl_, cond));
}

at::Tensor T3TurboModel::backbone(const at::Tensor& inputs_embeds, std::vector<at::Tensor>* layer_outputs,
                                  at::Tensor* x0) const {
  Gpt2Backbone::Session s(impl_->tfmr, inputs_embeds.size(0), inputs_embeds.size(1));
  return s.forward(inputs_embeds, layer_outputs, x0);
}

at::Tensor T3TurboModel::speech_logits(const at::Tensor& hidden) const {
  c10::NoGradGuard ng;
  return kernels::rows_matmul_t(hidden, impl_->speech_head_w).add_(impl_->speech_head_b);
}

at::Tensor T3TurboModel::speech_input_embed(int64_t token) const {
  if (token < 0 || token >= impl_->cfg.speech_tokens_dict_size)
    throw ModelError("T3: speech token " + std::to_string(token) + " is outside the speech vocabulary");
  return impl_->speech_emb[token];
}

std::vector<int64_t> T3TurboModel::inference(const std::vector<int64_t>& text_ids, const T3Cond& cond,
                                             const TurboSamplingOptions& opts) const {
  T3TurboGenerator g(*this, opts);
  g.start(text_ids, cond);
  while (g.next_token() >= 0) {
  }
  std::vector<int64_t> out = g.tokens();
  if (!out.empty() && out.back() == impl_->cfg.stop_speech_token) out.pop_back();
  return out;
}

// ---------------------------------------------------------- processors ----

at::Tensor turbo_process_logits(const at::Tensor& logits, const std::vector<int64_t>& history,
                                const TurboSamplingOptions& o) {
  c10::NoGradGuard ng;
  const float ninf = -std::numeric_limits<float>::infinity();
  Tensor s = logits.to(at::kFloat).reshape({-1});
  if (o.temperature > 0 && o.temperature != 1.0) s = s / o.temperature;
  if (o.top_k > 0) {
    const int64_t k = std::min<int64_t>(o.top_k, s.numel());
    Tensor kth = std::get<0>(at::topk(s, k)).select(0, k - 1);
    s = s.masked_fill(s < kth, ninf);
  }
  if (o.top_p < 1.0) {
    auto sorted = at::sort(s, /*dim=*/-1, /*descending=*/false);
    Tensor cum = at::softmax(std::get<0>(sorted), -1).cumsum(-1);
    Tensor remove = cum <= (1 - o.top_p);
    remove[-1] = false;
    s = s.masked_fill(at::empty_like(remove).scatter_(0, std::get<1>(sorted), remove), ninf);
  }
  if (o.repetition_penalty != 1.0 && !history.empty()) {
    Tensor idx = at::tensor(history, at::kLong);
    Tensor v = s.index_select(0, idx);
    v = at::where(v < 0, v * o.repetition_penalty, v / o.repetition_penalty);
    s = s.index_put({idx}, v);  // repeated ids write the same value
  }
  return s;
}

// ------------------------------------------------------------ generator ----

struct T3TurboPromptCache::Impl {
  std::optional<T3TurboModel> model;  // the weights the entry was computed with (kept alive with it)
  Tensor cond_emb;              // [1, P, E] the conditioning embeddings it holds
  Gpt2Backbone::Session::Prefix prefix;
  int64_t hits = 0, misses = 0;
};
T3TurboPromptCache::T3TurboPromptCache() : impl_(new Impl) {}
T3TurboPromptCache::~T3TurboPromptCache() = default;
int64_t T3TurboPromptCache::hits() const { return impl_->hits; }
int64_t T3TurboPromptCache::misses() const { return impl_->misses; }
void T3TurboPromptCache::clear() {
  const int64_t h = impl_->hits, m = impl_->misses;
  *impl_ = Impl{};
  impl_->hits = h;
  impl_->misses = m;
}

struct T3TurboGenerator::Impl {
  T3TurboModel model;
  TurboSamplingOptions opts;
  std::shared_ptr<T3TurboPromptCache> cache;
  std::unique_ptr<Gpt2Backbone::Session> session;
  at::Generator gen;
  Tensor logits, hidden, probs, input_embed;
  std::vector<int64_t> tokens;
  int64_t pending = -1;
  bool started = false, done = false;
};

T3TurboGenerator::T3TurboGenerator(const T3TurboModel& model, TurboSamplingOptions opts) : impl_(new Impl) {
  impl_->model = model;
  impl_->opts = std::move(opts);
  impl_->gen = at::detail::createCPUGenerator(impl_->opts.seed);
  const TurboSamplingOptions& o = impl_->opts;
  if (o.temperature <= 0) throw ModelError("T3 sampling: temperature must be > 0 (use greedy for argmax decoding)");
  if (o.repetition_penalty <= 0) throw ModelError("T3 sampling: repetition_penalty must be > 0");
  if (o.top_p <= 0 || o.top_p > 1) throw ModelError("T3 sampling: top_p must be in (0, 1]");
  if (o.top_k < 0) throw ModelError("T3 sampling: top_k must be >= 0");
  if (o.max_new_tokens <= 0) throw ModelError("T3 sampling: max_new_tokens must be > 0");
}
T3TurboGenerator::T3TurboGenerator(const T3TurboModel& model, TurboSamplingOptions opts,
                                   std::shared_ptr<T3TurboPromptCache> cache)
    : T3TurboGenerator(model, std::move(opts)) {
  impl_->cache = std::move(cache);
}
T3TurboGenerator::~T3TurboGenerator() = default;
T3TurboGenerator::T3TurboGenerator(T3TurboGenerator&&) noexcept = default;
T3TurboGenerator& T3TurboGenerator::operator=(T3TurboGenerator&&) noexcept = default;

namespace {
Tensor head(const T3TurboModel::Impl& m, const Tensor& hidden) {
  Tensor l = kernels::rows_matmul_t(hidden, m.speech_head_w).add_(m.speech_head_b).reshape({-1});
  // A checkpoint with NaN/Inf weights would otherwise sample garbage silently.
  if (!at::isfinite(l).all().item<bool>())
    throw ModelError("T3: the speech head produced non-finite logits (NaN or Inf in the model's weights?)");
  return l;
}
}  // namespace

void T3TurboGenerator::start(const std::vector<int64_t>& text_ids, const T3Cond& cond) {
  c10::NoGradGuard ng;
  ComputeThreads threads;  // one OpenMP thread; GEMMs: our pool and OpenBLAS's (compute_threads.h)
  Impl& g = *impl_;
  const T3TurboModel::Impl& m = g.model.impl();
  const Tensor cond_emb = cond_embedding_impl(m, cond);
  Tensor x = prefill_embeds_impl(m, text_ids, cond_emb);
  const int64_t positions = x.size(1) + g.opts.max_new_tokens - 1;  // the last token is never fed
  if (positions > m.cfg.gpt2.n_positions)
    throw ModelError("T3: voice prompt, text and max_new_tokens need " + std::to_string(positions) +
                     " positions, more than GPT-2's " + std::to_string(m.cfg.gpt2.n_positions) +
                     "; use a shorter text or lower max_new_tokens");
  g.session = std::make_unique<Gpt2Backbone::Session>(m.tfmr, 1, positions);
  Tensor h;
  if (g.cache) {
    // The conditioning rows first (from the cache when they are the cached
    // ones), then text and start token continue the same KV cache.
    T3TurboPromptCache::Impl& c = g.cache->impl();
    const int64_t P = cond_emb.size(1);
    // at::equal is false for other sizes too.
    const bool hit = c.model && &c.model->impl() == &m && c.cond_emb.defined() && at::equal(c.cond_emb, cond_emb);
    if (hit) {
      g.session->restore(c.prefix);
      ++c.hits;
    } else {
      g.session->forward(cond_emb);
      c.model = g.model;
      c.cond_emb = cond_emb;
      c.prefix = g.session->prefix(P);
      ++c.misses;
    }
    h = g.session->forward(x.narrow(1, P, x.size(1) - P));
  } else {
    h = g.session->forward(x);
  }
  g.hidden = h[0][h.size(1) - 1].contiguous();
  g.logits = head(m, g.hidden);
  g.tokens.clear();
  g.pending = -1;
  g.input_embed = Tensor();
  g.started = true;
  g.done = false;
}

int64_t T3TurboGenerator::next_token() {
  c10::NoGradGuard ng;
  ComputeThreads threads;  // one OpenMP thread; GEMMs: our pool and OpenBLAS's (compute_threads.h)
  Impl& g = *impl_;
  if (!g.started) throw ModelError("T3TurboGenerator: next_token() before start()");
  if (g.done) return -1;
  const T3TurboModel::Impl& m = g.model.impl();
  const TurboSamplingOptions& o = g.opts;
  const int64_t step = static_cast<int64_t>(g.tokens.size());
  if (g.pending >= 0) {  // feed the previous token; GPT-2 adds its position
    g.input_embed = g.model.speech_input_embed(g.pending);
    g.hidden = g.session->forward(g.input_embed.view({1, 1, -1}))[0][0].contiguous();
    g.logits = head(m, g.hidden);
    g.pending = -1;
  }
  // The penalty's history: the start token at step 0, then the drawn tokens.
  const std::vector<int64_t> history = step == 0 ? std::vector<int64_t>{m.cfg.start_speech_token} : g.tokens;
  Tensor s = turbo_process_logits(g.logits, history, o);
  if (step > 0 && at::isinf(s).all().item<bool>()) {  // upstream breaks ("All logits are -inf")
    g.done = true;
    return -1;
  }
  g.probs = at::softmax(s, -1);
  const int64_t tok = draw_token(g.probs, o.greedy, o.draws, step, g.gen);
  g.tokens.push_back(tok);
  // The prefill's token is fed whatever it is; only a later stop token ends.
  if ((step > 0 && tok == m.cfg.stop_speech_token) || static_cast<int64_t>(g.tokens.size()) >= o.max_new_tokens)
    g.done = true;
  else
    g.pending = tok;
  return tok;
}

bool T3TurboGenerator::finished() const { return impl_->done; }
const std::vector<int64_t>& T3TurboGenerator::tokens() const { return impl_->tokens; }
const at::Tensor& T3TurboGenerator::last_hidden() const { return impl_->hidden; }
const at::Tensor& T3TurboGenerator::last_logits() const { return impl_->logits; }
const at::Tensor& T3TurboGenerator::last_probs() const { return impl_->probs; }
const at::Tensor& T3TurboGenerator::last_input_embed() const { return impl_->input_embed; }

}  // namespace chatterbox::t3
