#include "elements/t3/model/gpt2_backbone.h"

#include "gst-plugins/core/checkpoint.h"
#include "gst-plugins/core/kernels/decode_attention.h"
#include "gst-plugins/core/kernels/rows_gemm.h"

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <c10/core/GradMode.h>

#include <cmath>
#include <limits>

namespace chatterbox::t3 {

using at::Tensor;

namespace {
// One block. Weights in nn.Linear layout [out, in] (the checkpoint's Conv1D
// stores [in, out]; transposed once at load) so decode steps run the rows
// kernel, which streams each weight once.
struct Block {
  Tensor ln1_w, ln1_b, ln2_w, ln2_b;
  // Float32, or weight-only quantised (Gpt2Backbone::with_precision).
  kernels::QuantizedWeight w_qkv;   // attn.c_attn: [3E, E], columns q | k | v of the stored matrix
  kernels::QuantizedWeight w_o;     // attn.c_proj: [E, E]
  kernels::QuantizedWeight w_fc;    // mlp.c_fc: [I, E]
  kernels::QuantizedWeight w_proj;  // mlp.c_proj: [E, I]
  Tensor b_qkv, b_o, b_fc, b_proj;
};

// y = x W^T + b: the rows kernel for a few rows (decode), BLAS otherwise.
Tensor affine(const Tensor& x, const kernels::QuantizedWeight& w, const Tensor& b) {
  return kernels::rows_matmul_t(x, w).add_(b);
}

std::string key_of(const Checkpoint& ck, const std::string& name) { return ck.prefix() + name; }

// Shape check without copying the data (a real Turbo file is 1.9 GB).
void expect(const Checkpoint& ck, const std::string& name, const std::vector<int64_t>& shape) {
  Tensor t = ck.get_raw(name);  // ModelError naming the key when absent
  bool ok = static_cast<int64_t>(shape.size()) == t.dim();
  for (size_t i = 0; ok && i < shape.size(); ++i) ok = shape[i] < 0 || shape[i] == t.size(static_cast<int64_t>(i));
  if (!ok)
    throw ModelError("checkpoint '" + ck.path() + "': tensor '" + key_of(ck, name) + "' has shape " +
                     shape_str(t.sizes()) + ", the model expects " + shape_str(shape));
  if (!t.is_floating_point())
    throw ModelError("checkpoint '" + ck.path() + "': tensor '" + key_of(ck, name) + "' is not a floating-point tensor");
}

// The block tensors and their shapes, [in, out] as stored.
std::vector<std::pair<std::string, std::vector<int64_t>>> block_tensors(int64_t E, int64_t I) {
  return {{"ln_1.weight", {E}},           {"ln_1.bias", {E}},
          {"attn.c_attn.weight", {E, 3 * E}}, {"attn.c_attn.bias", {3 * E}},
          {"attn.c_proj.weight", {E, E}},   {"attn.c_proj.bias", {E}},
          {"ln_2.weight", {E}},           {"ln_2.bias", {E}},
          {"mlp.c_fc.weight", {E, I}},      {"mlp.c_fc.bias", {I}},
          {"mlp.c_proj.weight", {I, E}},    {"mlp.c_proj.bias", {E}}};
}
}  // namespace

struct Gpt2Backbone::Weights {
  Gpt2Config cfg;
  std::vector<Block> blocks;
  Tensor wpe;  // [n_positions, E]
  Tensor lnf_w, lnf_b;
};

Tensor gelu_new(const Tensor& x) {
  const double c = std::sqrt(2.0 / M_PI);
  return 0.5 * x * (1.0 + at::tanh(c * (x + 0.044715 * at::pow(x, 3.0))));
}

// ---------------------------------------------------------------- loading ----

Gpt2Config Gpt2Backbone::inspect(const Checkpoint& ck, int64_t n_head, double layer_norm_epsilon) {
  Gpt2Config c;
  Tensor wpe = ck.get_raw("wpe.weight");
  if (wpe.dim() != 2)
    throw ModelError("checkpoint '" + ck.path() + "': tensor '" + key_of(ck, "wpe.weight") + "' has shape " +
                     shape_str(wpe.sizes()) + ", the model expects [n_positions, n_embd]");
  c.n_positions = wpe.size(0);
  c.n_embd = wpe.size(1);
  const int64_t E = c.n_embd;
  // Blocks h.0 .. h.(n-1): the highest index named decides n, so a missing
  // block in the middle is reported by name rather than silently cutting
  // the model short.
  int64_t highest = -1;
  for (const std::string& k : ck.keys()) {
    if (k.rfind("h.", 0) != 0) continue;
    size_t dot = k.find('.', 2);
    try {
      highest = std::max<int64_t>(highest, std::stoll(k.substr(2, dot - 2)));
    } catch (const std::exception&) {
    }
  }
  if (highest < 0)
    throw ModelError("checkpoint '" + ck.path() + "' has no GPT-2 blocks (no tensor '" + key_of(ck, "h.0.ln_1.weight") + "')");
  c.n_layer = highest + 1;
  Tensor fc = ck.get_raw("h.0.mlp.c_fc.weight");
  if (fc.dim() != 2)
    throw ModelError("checkpoint '" + ck.path() + "': tensor '" + key_of(ck, "h.0.mlp.c_fc.weight") + "' has shape " +
                     shape_str(fc.sizes()) + ", the model expects [" + std::to_string(E) + ", n_inner]");
  c.n_inner = fc.size(1);
  if (n_head <= 0) {
    if (E % 64)
      throw ModelError("checkpoint '" + ck.path() + "': GPT-2 width " + std::to_string(E) +
                       " is not a multiple of 64, so the attention heads cannot be inferred (head dim 64); give "
                       "them in a 'config' metadata entry (gpt2.n_head)");
    n_head = E / 64;
  }
  if (E % n_head)
    throw ModelError("checkpoint '" + ck.path() + "': GPT-2 width " + std::to_string(E) + " is not divisible by " +
                     std::to_string(n_head) + " heads");
  c.n_head = n_head;
  c.layer_norm_epsilon = layer_norm_epsilon;
  for (int64_t i = 0; i < c.n_layer; ++i) {
    Checkpoint b = ck.sub("h." + std::to_string(i) + ".");
    for (const auto& [name, shape] : block_tensors(E, c.n_inner)) expect(b, name, shape);
  }
  expect(ck, "ln_f.weight", {E});
  expect(ck, "ln_f.bias", {E});
  // wte is in the checkpoint (T3 loads strictly) but never used: T3 feeds
  // inputs_embeds, and from_local deletes it after loading. Not required.
  if (ck.has("wte.weight")) expect(ck, "wte.weight", {-1, E});
  return c;
}

Gpt2Backbone Gpt2Backbone::from_checkpoint(const Checkpoint& ck, const Gpt2Config& config) {
  c10::NoGradGuard ng;
  const Gpt2Config c = inspect(ck, config.n_head, config.layer_norm_epsilon);
  if (c.n_embd != config.n_embd || c.n_layer != config.n_layer || c.n_inner != config.n_inner ||
      c.n_positions != config.n_positions)
    throw ModelError("checkpoint '" + ck.path() + "': GPT-2 sizes from the shapes (n_embd " + std::to_string(c.n_embd) +
                     ", n_layer " + std::to_string(c.n_layer) + ", n_inner " + std::to_string(c.n_inner) +
                     ", n_positions " + std::to_string(c.n_positions) + ") differ from its config (" +
                     std::to_string(config.n_embd) + ", " + std::to_string(config.n_layer) + ", " +
                     std::to_string(config.n_inner) + ", " + std::to_string(config.n_positions) + ")");
  auto w = std::make_shared<Weights>();
  w->cfg = c;
  // Conv1D [in, out] -> [out, in], once.
  auto linear_w = [](const Checkpoint& b, const std::string& name) {
    return kernels::float_weight(b.get(name).t().contiguous());
  };
  for (int64_t i = 0; i < c.n_layer; ++i) {
    Checkpoint b = ck.sub("h." + std::to_string(i) + ".");
    Block k;
    k.ln1_w = b.get("ln_1.weight");
    k.ln1_b = b.get("ln_1.bias");
    k.w_qkv = linear_w(b, "attn.c_attn.weight");
    k.b_qkv = b.get("attn.c_attn.bias");
    k.w_o = linear_w(b, "attn.c_proj.weight");
    k.b_o = b.get("attn.c_proj.bias");
    k.ln2_w = b.get("ln_2.weight");
    k.ln2_b = b.get("ln_2.bias");
    k.w_fc = linear_w(b, "mlp.c_fc.weight");
    k.b_fc = b.get("mlp.c_fc.bias");
    k.w_proj = linear_w(b, "mlp.c_proj.weight");
    k.b_proj = b.get("mlp.c_proj.bias");
    w->blocks.push_back(std::move(k));
  }
  w->wpe = ck.get("wpe.weight");
  w->lnf_w = ck.get("ln_f.weight");
  w->lnf_b = ck.get("ln_f.bias");
  Gpt2Backbone g;
  g.w_ = w;
  return g;
}

Gpt2Backbone Gpt2Backbone::random(const Gpt2Config& c, uint64_t seed) {
  c10::NoGradGuard ng;
  if (c.n_embd <= 0 || c.n_head <= 0 || c.n_embd % c.n_head || c.n_layer <= 0 || c.n_inner <= 0 || c.n_positions <= 0)
    throw ModelError("GPT-2 config: inconsistent sizes (n_embd " + std::to_string(c.n_embd) + ", n_head " +
                     std::to_string(c.n_head) + ", n_layer " + std::to_string(c.n_layer) + ")");
  at::Generator gen = at::detail::createCPUGenerator(seed);
  auto normal = [&](std::vector<int64_t> shape, double std) { return at::normal(0.0, std, shape, gen).contiguous(); };
  auto lin = [&](int64_t out, int64_t in) { return normal({out, in}, 1.0 / std::sqrt(static_cast<double>(in))); };
  auto ln_w = [&](int64_t n) { return (1.0 + normal({n}, 0.1)).contiguous(); };
  const int64_t E = c.n_embd, I = c.n_inner;
  auto w = std::make_shared<Weights>();
  w->cfg = c;
  for (int64_t i = 0; i < c.n_layer; ++i) {
    Block k;
    k.ln1_w = ln_w(E), k.ln1_b = normal({E}, 0.05);
    k.w_qkv = kernels::float_weight(lin(3 * E, E)), k.b_qkv = normal({3 * E}, 0.02);
    k.w_o = kernels::float_weight(lin(E, E)), k.b_o = normal({E}, 0.02);
    k.ln2_w = ln_w(E), k.ln2_b = normal({E}, 0.05);
    k.w_fc = kernels::float_weight(lin(I, E)), k.b_fc = normal({I}, 0.02);
    k.w_proj = kernels::float_weight(lin(E, I)), k.b_proj = normal({E}, 0.02);
    w->blocks.push_back(std::move(k));
  }
  w->wpe = normal({c.n_positions, E}, 0.2);
  w->lnf_w = ln_w(E);
  w->lnf_b = normal({E}, 0.05);
  Gpt2Backbone g;
  g.w_ = w;
  return g;
}

const Gpt2Config& Gpt2Backbone::config() const { return w_->cfg; }

Gpt2Backbone Gpt2Backbone::with_precision(kernels::WeightFormat f) const {
  auto w = std::make_shared<Weights>(*w_);  // shares every tensor
  for (Block& k : w->blocks)
    for (kernels::QuantizedWeight* q : {&k.w_qkv, &k.w_o, &k.w_fc, &k.w_proj}) *q = kernels::quantize_weight(dequantize(*q), f);
  Gpt2Backbone g;
  g.w_ = w;
  return g;
}

int64_t Gpt2Backbone::weight_bytes() const {
  int64_t b = 0;
  for (const Block& k : w_->blocks) b += k.w_qkv.bytes() + k.w_o.bytes() + k.w_fc.bytes() + k.w_proj.bytes();
  return b;
}

// ---------------------------------------------------------------- forward ----

struct Gpt2Backbone::Session::Impl {
  std::shared_ptr<const Weights> w;
  int64_t batch, cap, len = 0;
  std::vector<Tensor> k_cache, v_cache;  // per block [B, n_head, cap, d]

  Tensor forward(const Tensor& x_in, std::vector<Tensor>* layer_outputs, Tensor* x0_out) {
    c10::NoGradGuard ng;
    const Gpt2Config& c = w->cfg;
    const int64_t E = c.n_embd, nh = c.n_head, d = c.head_dim();
    if (x_in.dim() != 3 || x_in.size(0) != batch || x_in.size(2) != E)
      throw ModelError("GPT-2 backbone: inputs_embeds has shape " + shape_str(x_in.sizes()) + ", expected [" +
                       std::to_string(batch) + ", S, " + std::to_string(E) + "]");
    const int64_t B = batch, S = x_in.size(1);
    if (len + S > cap)
      throw ModelError("GPT-2 backbone: KV cache full (" + std::to_string(len) + " + " + std::to_string(S) +
                       " positions > capacity " + std::to_string(cap) + ")");
    const int64_t T = len + S;
    // Learned absolute positions continue after the cached ones.
    Tensor x = x_in.to(at::kFloat) + w->wpe.narrow(0, len, S);
    if (x0_out) *x0_out = x;
    Tensor mask;
    if (S > 1) {  // the query at position len+i sees keys j <= len+i
      Tensor qi = at::arange(len, T, at::kLong).unsqueeze(1), kj = at::arange(0, T, at::kLong).unsqueeze(0);
      mask = at::zeros({S, T}, at::kFloat).masked_fill_(kj > qi, -std::numeric_limits<float>::infinity());
    }
    const double sqrt_d = std::sqrt(static_cast<double>(d));
    for (size_t li = 0; li < w->blocks.size(); ++li) {
      const Block& k = w->blocks[li];
      Tensor a = at::layer_norm(x, {E}, k.ln1_w, k.ln1_b, c.layer_norm_epsilon);
      Tensor qkv = affine(a, k.w_qkv, k.b_qkv);  // [B, S, 3E]
      Tensor q = qkv.narrow(-1, 0, E).view({B, S, nh, d}).transpose(1, 2);
      k_cache[li].narrow(2, len, S).copy_(qkv.narrow(-1, E, E).view({B, S, nh, d}).transpose(1, 2));
      v_cache[li].narrow(2, len, S).copy_(qkv.narrow(-1, 2 * E, E).view({B, S, nh, d}).transpose(1, 2));
      Tensor o;
      if (S == 1) {  // a decode step: one query against the cache (kernels/decode_attention.h)
        o = kernels::decode_attention(q.squeeze(2), k_cache[li], v_cache[li], T, 1.0 / sqrt_d).reshape({B, 1, E});
      } else {
        Tensor K = k_cache[li].narrow(2, 0, T), V = v_cache[li].narrow(2, 0, T);
        Tensor scores = at::matmul(q, K.transpose(-1, -2)).div_(sqrt_d);  // [B, nh, S, T]
        if (mask.defined()) scores.add_(mask);
        o = at::matmul(at::softmax(scores, -1), V).transpose(1, 2).reshape({B, S, E});
      }
      Tensor h = x + affine(o, k.w_o, k.b_o);
      Tensor m = gelu_new(affine(at::layer_norm(h, {E}, k.ln2_w, k.ln2_b, c.layer_norm_epsilon), k.w_fc, k.b_fc));
      x = h + affine(m, k.w_proj, k.b_proj);
      if (layer_outputs) layer_outputs->push_back(x);
    }
    len = T;
    return at::layer_norm(x, {E}, w->lnf_w, w->lnf_b, c.layer_norm_epsilon);
  }
};

Gpt2Backbone::Session::Session(const Gpt2Backbone& model, int64_t batch, int64_t capacity) : impl_(new Impl) {
  const Gpt2Config& c = model.config();
  if (capacity > c.n_positions)
    throw ModelError("GPT-2 backbone: " + std::to_string(capacity) + " positions exceed its " +
                     std::to_string(c.n_positions) + " learned positions (voice prompt + text + generated tokens); "
                     "use a shorter text or lower max-tokens");
  if (batch <= 0 || capacity <= 0) throw ModelError("GPT-2 backbone: batch and capacity must be positive");
  impl_->w = model.w_;  // keeps the weights alive as long as the session
  impl_->batch = batch;
  impl_->cap = capacity;
  for (int64_t i = 0; i < c.n_layer; ++i) {
    impl_->k_cache.push_back(at::empty({batch, c.n_head, capacity, c.head_dim()}, at::kFloat));
    impl_->v_cache.push_back(at::empty({batch, c.n_head, capacity, c.head_dim()}, at::kFloat));
  }
}
Gpt2Backbone::Session::~Session() = default;
Gpt2Backbone::Session::Session(Session&&) noexcept = default;
Gpt2Backbone::Session& Gpt2Backbone::Session::operator=(Session&&) noexcept = default;
at::Tensor Gpt2Backbone::Session::forward(const at::Tensor& x, std::vector<at::Tensor>* lo, at::Tensor* x0) {
  return impl_->forward(x, lo, x0);
}
int64_t Gpt2Backbone::Session::length() const { return impl_->len; }
int64_t Gpt2Backbone::Session::capacity() const { return impl_->cap; }
void Gpt2Backbone::Session::reset() { impl_->len = 0; }

Gpt2Backbone::Session::Prefix Gpt2Backbone::Session::prefix(int64_t positions) const {
  if (positions < 0 || positions > impl_->len)
    throw ModelError("GPT-2 backbone: prefix of " + std::to_string(positions) + " positions, only " +
                     std::to_string(impl_->len) + " computed");
  Prefix p;
  p.positions = positions;
  for (size_t i = 0; i < impl_->k_cache.size(); ++i) {
    p.k.push_back(impl_->k_cache[i].narrow(2, 0, positions).clone());
    p.v.push_back(impl_->v_cache[i].narrow(2, 0, positions).clone());
  }
  return p;
}

void Gpt2Backbone::Session::restore(const Prefix& p) {
  if (p.k.size() != impl_->k_cache.size() || p.positions > impl_->cap ||
      (p.positions > 0 && p.k[0].size(0) != impl_->batch))
    throw ModelError("GPT-2 backbone: a prefix of " + std::to_string(p.positions) +
                     " positions does not fit this session (capacity " + std::to_string(impl_->cap) + ")");
  for (size_t i = 0; i < impl_->k_cache.size(); ++i) {
    impl_->k_cache[i].narrow(2, 0, p.positions).copy_(p.k[i]);
    impl_->v_cache[i].narrow(2, 0, p.positions).copy_(p.v[i]);
  }
  impl_->len = p.positions;
}

}  // namespace chatterbox::t3
