// The GPT-2 T3 (Chatterbox-Turbo / -Nano) against the reference run of
// T3.inference_turbo on the tiny fixture (t3_turbo_tiny.safetensors), and the
// real checkpoints' layouts from their key lists.
//
// Tolerances: the fixture README's recommended float32 bounds, each at least
// 3x (here 5-15x) its measured float32-vs-float64 error: embeds 1e-5 (7.5e-7
// measured), block outputs 6e-5 (6.0e-6), hidden 5e-5 (4.5e-6), prefill
// logits 4e-5 (5.5e-6), step logits 4e-5 (8.1e-6; at this bound the sampled
// candidate sets provably cannot change, README), step hidden 3e-5 (3.0e-6),
// probabilities 5e-6 (3.2e-7), long backbone 5e-5 (4.3e-6).
#define BOOST_TEST_MODULE t3_turbo
#include <boost/test/unit_test.hpp>

#include "elements/t3/model/t3_turbo.h"
#include "gst-plugins/core/checkpoint.h"
#include "tests/fixtures.h"
#include "tests/tensor_compare.h"
#include "tests/test_util.h"

#include <ATen/ATen.h>

#include <fstream>
#include <sstream>

using chatterbox::test::contains;
using chatterbox::test::error_of;
using chatterbox::test::fixture;
using chatterbox::test::max_abs_diff;

using namespace chatterbox;
using namespace chatterbox::t3;

namespace {
std::vector<int64_t> ids(const at::Tensor& t) {
  at::Tensor c = t.to(at::kLong).reshape({-1}).contiguous();
  return std::vector<int64_t>(c.data_ptr<int64_t>(), c.data_ptr<int64_t>() + c.numel());
}

struct Fx {
  Checkpoint ck = Checkpoint::open(fixture("t3_turbo/t3_turbo_tiny.safetensors"));
  T3TurboModel model = T3TurboModel::from_checkpoint(ck);
  T3Cond cond = T3Cond::from_checkpoint(ck, "test.cond.");
  std::vector<int64_t> text_ids = ids(ck.get_raw("test.text_tokens"));
};
Fx& fx() {
  static Fx f;
  return f;
}

// The fixture's weights (no test.* tensors) in a store the test may edit.
std::shared_ptr<TensorStore> weights_store() {
  auto s = std::make_shared<TensorStore>();
  s->path = "t3_turbo_tiny (edited copy)";
  for (const auto& k : fx().ck.keys())
    if (k.rfind("test.", 0) != 0) s->tensors[k] = fx().ck.get_raw(k);
  s->metadata["config"] = fx().ck.metadata("config");
  return s;
}

// A real checkpoint's layout from its key list: zero-stride placeholders of
// the right shape, no metadata (like the published files).
std::shared_ptr<TensorStore> layout_store(const std::string& tsv, size_t* rows = nullptr) {
  std::ifstream f(fixture(tsv));
  BOOST_REQUIRE(f.good());
  std::string line;
  std::getline(f, line);  // header
  auto store = std::make_shared<TensorStore>();
  store->path = tsv + " (placeholders)";
  size_t n = 0;
  while (std::getline(f, line)) {
    std::stringstream ss(line);
    std::string name, dtype, shape;
    std::getline(ss, name, '\t');
    std::getline(ss, dtype, '\t');
    std::getline(ss, shape, '\t');
    std::vector<int64_t> dims;
    std::stringstream sd(shape.substr(1, shape.size() - 2));
    for (std::string d; std::getline(sd, d, ',');) dims.push_back(std::stoll(d));
    store->tensors[name] = at::zeros({1}).expand(dims);
    ++n;
  }
  if (rows) *rows = n;
  return store;
}

#define CHECK_CLOSE(got, ref, tol)                                                   \
  do {                                                                               \
    at::Tensor g_ = (got), r_ = (ref);                                               \
    BOOST_REQUIRE(g_.sizes() == r_.sizes());                                         \
    double e_ = max_abs_diff(g_, r_);                                                \
    BOOST_TEST_MESSAGE(#ref << ": max abs " << e_ << " (tolerance " << (tol) << ")"); \
    BOOST_TEST(e_ <= (tol), #ref << ": max abs " << e_ << " > " << (tol));           \
  } while (0)
}  // namespace

BOOST_AUTO_TEST_CASE(sizes_from_the_shapes) {
  const T3TurboConfig& c = fx().model.config();
  BOOST_TEST(c.gpt2.n_embd == 64);
  BOOST_TEST(c.gpt2.n_layer == 2);
  BOOST_TEST(c.gpt2.n_head == 4);  // metadata config.gpt2.n_head: head dim 16 at this width
  BOOST_TEST(c.gpt2.n_inner == 256);
  BOOST_TEST(c.gpt2.n_positions == 8196);
  BOOST_TEST(c.text_tokens_dict_size == 576);
  BOOST_TEST(c.speech_tokens_dict_size == 6563);
  BOOST_TEST(c.speaker_embed_size == 256);
}

BOOST_AUTO_TEST_CASE(prefill_stages) {
  Fx& f = fx();
  at::Tensor x = f.model.prefill_embeds(f.text_ids, f.cond);
  BOOST_TEST(x.size(1) == 274);  // 1 + 250 + 22 + 1
  CHECK_CLOSE(x, f.ck.get("test.prefill_embeds"), 1e-5);
  // Each stage on the stored input of the one before.
  std::vector<at::Tensor> layers;
  at::Tensor x0;
  at::Tensor h = f.model.backbone(f.ck.get("test.prefill_embeds"), &layers, &x0);
  CHECK_CLOSE(x0, f.ck.get("test.prefill_x0"), 1e-5);
  CHECK_CLOSE(at::stack(layers), f.ck.get("test.prefill_layer_out"), 6e-5);
  CHECK_CLOSE(h, f.ck.get("test.prefill_hidden"), 5e-5);
  CHECK_CLOSE(f.model.speech_logits(f.ck.get("test.prefill_hidden").select(1, 273)), f.ck.get("test.prefill_logits"), 4e-5);
  CHECK_CLOSE(f.model.speech_logits(h.select(1, 273)), f.ck.get("test.prefill_logits"), 4e-5);
}

BOOST_AUTO_TEST_CASE(backbone_long_positions_and_kv_cache) {
  Fx& f = fx();
  at::Tensor in = f.ck.get("test.backbone.inputs_embeds");
  at::Tensor ref = f.ck.get("test.backbone.hidden");
  at::Tensor whole = f.model.backbone(in);
  CHECK_CLOSE(whole, ref, 5e-5);
  // 1176 positions at once, then the last 24 one at a time: positions
  // continue through the cache.
  Gpt2Backbone::Session s(f.model.backbone_model(), 1, 1200);
  std::vector<at::Tensor> steps{s.forward(in.narrow(1, 0, 1176))};
  for (int64_t i = 1176; i < 1200; ++i) steps.push_back(s.forward(in.narrow(1, i, 1)));
  BOOST_TEST(s.length() == 1200);
  at::Tensor inc = at::cat(steps, 1);
  CHECK_CLOSE(inc, ref, 5e-5);
  // Two float32 evaluations of the same states, each within the README's
  // float32 error of backbone.hidden (4.3e-6): at most 2 x 3 x that apart.
  double e = max_abs_diff(inc.narrow(1, 1176, 24), whole.narrow(1, 1176, 24));
  BOOST_TEST_MESSAGE("incremental vs whole, last 24: " << e);
  BOOST_TEST(e <= 2 * 3 * 4.3e-6);
  BOOST_TEST(contains(error_of([&] { s.forward(in.narrow(1, 0, 1)); }), "KV cache full"));
  BOOST_TEST(contains(error_of([&] { Gpt2Backbone::Session(f.model.backbone_model(), 1, 8197); }), "8196 learned positions"));
}

BOOST_AUTO_TEST_CASE(greedy_decode_matches_the_reference) {
  Fx& f = fx();
  TurboSamplingOptions o;
  o.greedy = true;
  o.max_new_tokens = 41;  // max_gen_len 40, as the reference ran
  T3TurboGenerator g(f.model, o);
  g.start(f.text_ids, f.cond);
  std::vector<at::Tensor> logits, hidden, inputs;
  while (g.next_token() >= 0) {
    logits.push_back(g.last_logits());
    hidden.push_back(g.last_hidden());
    if (g.last_input_embed().defined()) inputs.push_back(g.last_input_embed());
  }
  BOOST_TEST(g.finished());
  BOOST_TEST(g.tokens() == ids(f.ck.get_raw("test.greedy.tokens")), boost::test_tools::per_element());
  BOOST_REQUIRE_EQUAL(logits.size(), 22u);
  CHECK_CLOSE(at::stack(logits), f.ck.get("test.greedy.step_logits"), 4e-5);
  CHECK_CLOSE(at::stack(hidden), f.ck.get("test.greedy.step_hidden"), 3e-5);
  BOOST_REQUIRE_EQUAL(inputs.size(), 21u);
  BOOST_TEST(at::equal(at::stack(inputs), f.ck.get("test.greedy.step_input_embeds")));  // embedding rows: exact
  BOOST_TEST(g.next_token() == -1);
  // inference_turbo returns the tokens without the final stop token.
  BOOST_TEST(f.model.inference(f.text_ids, f.cond, o) == ids(f.ck.get_raw("test.greedy.tokens_returned")),
             boost::test_tools::per_element());
  // max_new_tokens cuts the same stream.
  o.max_new_tokens = 5;
  std::vector<int64_t> five = f.model.inference(f.text_ids, f.cond, o);
  std::vector<int64_t> want = ids(f.ck.get_raw("test.greedy.tokens"));
  BOOST_TEST(five == std::vector<int64_t>(want.begin(), want.begin() + 5), boost::test_tools::per_element());
}

// The voice prompt's keys and values are reused between utterances of the
// same voice: the greedy fixture decode through a prompt cache matches the
// reference the same way, on the miss (prompt computed) and on the hit
// (prompt restored); another voice misses.
BOOST_AUTO_TEST_CASE(prompt_cache_reuses_the_voice_prompt) {
  Fx& f = fx();
  TurboSamplingOptions o;
  o.greedy = true;
  o.max_new_tokens = 41;
  auto cache = std::make_shared<T3TurboPromptCache>();
  for (int run = 0; run < 2; ++run) {
    BOOST_TEST_CONTEXT("run " << run) {
      T3TurboGenerator g(f.model, o, cache);
      g.start(f.text_ids, f.cond);
      std::vector<at::Tensor> logits;
      while (g.next_token() >= 0) logits.push_back(g.last_logits());
      BOOST_TEST(g.tokens() == ids(f.ck.get_raw("test.greedy.tokens")), boost::test_tools::per_element());
      BOOST_REQUIRE_EQUAL(logits.size(), 22u);
      CHECK_CLOSE(at::stack(logits), f.ck.get("test.greedy.step_logits"), 4e-5);
    }
  }
  BOOST_TEST(cache->misses() == 1);
  BOOST_TEST(cache->hits() == 1);
  // Another voice (other prompt tokens) is computed, not restored.
  T3Cond other = f.cond;
  other.cond_prompt_speech_tokens = (f.cond.cond_prompt_speech_tokens + 1) % 6561;
  T3TurboGenerator g(f.model, o, cache);
  g.start(f.text_ids, other);
  BOOST_TEST(cache->misses() == 2);
  T3TurboGenerator plain(f.model, o);
  plain.start(f.text_ids, other);
  BOOST_TEST(g.next_token() == plain.next_token());
  CHECK_CLOSE(g.last_logits(), plain.last_logits(), 4e-5);
}

BOOST_AUTO_TEST_CASE(sampled_decode_replays_the_recorded_draws) {
  Fx& f = fx();
  at::Tensor q = f.ck.get("test.sample.q");
  TurboSamplingOptions o;
  o.max_new_tokens = 17;  // max_gen_len 16
  o.draws = [&](int64_t step) { return q[step]; };
  T3TurboGenerator g(f.model, o);
  g.start(f.text_ids, f.cond);
  std::vector<at::Tensor> logits, probs;
  while (g.next_token() >= 0) {
    logits.push_back(g.last_logits());
    probs.push_back(g.last_probs());
  }
  BOOST_TEST(g.tokens() == ids(f.ck.get_raw("test.sample.tokens")), boost::test_tools::per_element());
  BOOST_REQUIRE_EQUAL(probs.size(), 17u);
  CHECK_CLOSE(at::stack(logits), f.ck.get("test.sample.step_logits"), 4e-5);
  CHECK_CLOSE(at::stack(probs), f.ck.get("test.sample.step_probs"), 5e-6);
  // The same candidates survive TopK and TopP at every step.
  BOOST_TEST(at::equal(at::stack(probs) > 0, f.ck.get("test.sample.step_probs") > 0));
}

BOOST_AUTO_TEST_CASE(seed_draws_like_torch_manual_seed) {
  // The reference sampled after torch.manual_seed(50296) with the global CPU
  // generator; seed 50296 draws the same Exp(1) values.
  Fx& f = fx();
  TurboSamplingOptions o;
  o.max_new_tokens = 17;
  o.seed = 50296;
  BOOST_TEST(f.model.inference(f.text_ids, f.cond, o) == ids(f.ck.get_raw("test.sample.tokens")),
             boost::test_tools::per_element());
  o.seed = 50297;
  BOOST_TEST(f.model.inference(f.text_ids, f.cond, o) != ids(f.ck.get_raw("test.sample.tokens")));
}

BOOST_AUTO_TEST_CASE(processors_run_in_inference_turbo_order) {
  TurboSamplingOptions o;
  o.temperature = 0.5;
  o.top_k = 3;
  o.top_p = 1.0;
  o.repetition_penalty = 2.0;
  // Temperature doubles; TopK keeps the three largest (ties at the boundary
  // kept); the penalty then acts on the survivors only.
  at::Tensor l = at::tensor({4.0f, -1.0f, 3.0f, 1.0f, 1.0f, -2.0f});
  at::Tensor s = turbo_process_logits(l, {0, 5, 5}, o);
  const float ninf = -std::numeric_limits<float>::infinity();
  at::Tensor want = at::tensor({4.0f, ninf, 6.0f, 2.0f, 2.0f, ninf});
  BOOST_TEST(at::equal(s, want), s);
  // TopP: ascending cumsum <= 1 - p removed, the largest always kept.
  o = TurboSamplingOptions{};
  o.top_k = 0;
  o.temperature = 1.0;
  o.repetition_penalty = 1.0;
  o.top_p = 0.5;
  at::Tensor p = at::log(at::tensor({0.6f, 0.3f, 0.1f}));
  at::Tensor t = turbo_process_logits(p, {}, o);
  BOOST_TEST(std::isfinite(t[0].item<float>()));
  BOOST_TEST(std::isinf(t[1].item<float>()));  // cumsum 0.1, 0.4 <= 0.5: removed
  BOOST_TEST(std::isinf(t[2].item<float>()));
}

BOOST_AUTO_TEST_CASE(a_stop_token_from_the_prefill_is_fed_on) {
  // inference_turbo feeds the prefill's token unconditionally: only a stop
  // token drawn in the loop ends it, and only a final one is removed.
  auto s = weights_store();
  at::Tensor b = s->tensors["speech_head.bias"].clone();
  b[6562] += 100.0f;  // the stop token wins every step
  s->tensors["speech_head.bias"] = b;
  T3TurboModel m = T3TurboModel::from_checkpoint(Checkpoint(s));
  TurboSamplingOptions o;
  o.greedy = true;
  T3TurboGenerator g(m, o);
  g.start(fx().text_ids, fx().cond);
  while (g.next_token() >= 0) {
  }
  BOOST_TEST(g.tokens() == (std::vector<int64_t>{6562, 6562}), boost::test_tools::per_element());
  BOOST_TEST(m.inference(fx().text_ids, fx().cond, o) == std::vector<int64_t>{6562}, boost::test_tools::per_element());
}

BOOST_AUTO_TEST_CASE(input_errors_are_named) {
  Fx& f = fx();
  std::vector<int64_t> bad = f.text_ids;
  bad[3] = 576;
  BOOST_TEST(contains(error_of([&] { f.model.prefill_embeds(bad, f.cond); }), "text token #3 = 576"));
  BOOST_TEST(contains(error_of([&] { T3TurboGenerator(f.model).next_token(); }), "before start"));
  T3Cond c = f.cond;
  c.speaker_emb = at::zeros({1, 255});
  BOOST_TEST(contains(error_of([&] { f.model.cond_embedding(c); }), "speaker_emb"));
  c = f.cond;
  c.cond_prompt_speech_tokens = at::full({1, 3}, 6563, at::kLong);
  BOOST_TEST(contains(error_of([&] { f.model.cond_embedding(c); }), "prompt speech token"));
  TurboSamplingOptions o;
  o.max_new_tokens = 8000;  // 274 + 7999 > 8196 positions
  BOOST_TEST(contains(error_of([&] { T3TurboGenerator(f.model, o).start(f.text_ids, f.cond); }), "8196"));
  o = TurboSamplingOptions{};
  o.draws = [](int64_t) { return at::ones({10}); };
  T3TurboGenerator g(f.model, o);
  g.start(f.text_ids, f.cond);
  BOOST_TEST(contains(error_of([&] { g.next_token(); }), "injected draws"));
  o = TurboSamplingOptions{};
  o.top_k = -1;
  BOOST_TEST(contains(error_of([&] { T3TurboGenerator(f.model, o); }), "top_k"));
  // Without a prompt the conditioning is the speaker row alone.
  c = f.cond;
  c.cond_prompt_speech_tokens = at::zeros({1, 0}, at::kLong);
  BOOST_TEST(f.model.cond_embedding(c).size(1) == 1);
}

BOOST_AUTO_TEST_CASE(loading_errors_name_the_tensor) {
  auto missing = weights_store();
  missing->tensors.erase("tfmr.h.1.mlp.c_fc.bias");
  BOOST_TEST(contains(error_of([&] { T3TurboModel::from_checkpoint(Checkpoint(missing)); }), "tfmr.h.1.mlp.c_fc.bias"));
  auto misshapen = weights_store();
  misshapen->tensors["tfmr.h.0.attn.c_attn.weight"] = at::zeros({192, 64});  // nn.Linear layout, not Conv1D
  std::string e = error_of([&] { T3TurboModel::from_checkpoint(Checkpoint(misshapen)); });
  BOOST_TEST(contains(e, "tfmr.h.0.attn.c_attn.weight"), e);
  BOOST_TEST(contains(e, "[192, 64]"), e);
  BOOST_TEST(contains(e, "[64, 192]"), e);
  auto head = weights_store();
  head->tensors["speech_head.bias"] = at::zeros({6562});
  e = error_of([&] { T3TurboModel::from_checkpoint(Checkpoint(head)); });
  BOOST_TEST(contains(e, "speech_head.bias"), e);
  BOOST_TEST(contains(e, "[6562]"), e);
  BOOST_TEST(contains(e, "[6563]"), e);
  // A block missing in the middle is named, not silently dropped.
  auto gap = weights_store();
  for (const auto& k : fx().ck.keys())
    if (k.rfind("tfmr.h.0.", 0) == 0) gap->tensors.erase(k);
  BOOST_TEST(contains(error_of([&] { T3TurboModel::from_checkpoint(Checkpoint(gap)); }), "tfmr.h.0."));
  // Not a GPT-2 T3 at all: the Llama fixture.
  e = error_of([&] { T3TurboModel::load(fixture("t3/t3_tiny.safetensors")); });
  BOOST_TEST(contains(e, "t3_tiny.safetensors"), e);
  BOOST_TEST(contains(e, "tfmr.wpe.weight"), e);
}

BOOST_AUTO_TEST_CASE(legacy_model_wrapper_loads) {
  // from_local unwraps {"model": [state_dict]}; flattened that is "model.0.".
  auto plain = weights_store();
  auto wrapped = std::make_shared<TensorStore>();
  wrapped->path = "wrapped";
  wrapped->metadata = plain->metadata;
  for (const auto& [k, v] : plain->tensors) wrapped->tensors["model.0." + k] = v;
  T3TurboModel m = T3TurboModel::from_checkpoint(Checkpoint(wrapped));
  BOOST_TEST(at::equal(m.prefill_embeds(fx().text_ids, fx().cond), fx().model.prefill_embeds(fx().text_ids, fx().cond)));
}

BOOST_AUTO_TEST_CASE(real_turbo_and_nano_layouts_load_with_inferred_sizes) {
  struct Want {
    const char* tsv;
    size_t rows;
    int64_t E, layers, heads, inner;
  };
  for (const Want& w : {Want{"t3_turbo/t3_turbo_keys.tsv", 299, 1024, 24, 16, 4096},
                        Want{"t3_turbo/t3_nano_keys.tsv", 155, 768, 12, 12, 3072}}) {
    BOOST_TEST_CONTEXT(w.tsv) {
      size_t rows = 0;
      auto store = layout_store(w.tsv, &rows);
      BOOST_TEST(rows == w.rows);
      // No metadata: the heads come from head dim 64.
      T3TurboModel m = T3TurboModel::from_checkpoint(Checkpoint(store));
      const T3TurboConfig& c = m.config();
      BOOST_TEST(c.gpt2.n_embd == w.E);
      BOOST_TEST(c.gpt2.n_layer == w.layers);
      BOOST_TEST(c.gpt2.n_head == w.heads);
      BOOST_TEST(c.gpt2.n_inner == w.inner);
      BOOST_TEST(c.gpt2.n_positions == 8196);
      BOOST_TEST(c.text_tokens_dict_size == 50276);
      BOOST_TEST(c.speech_tokens_dict_size == 6563);
      BOOST_TEST(c.speaker_embed_size == 256);
      T3Cond cond{at::zeros({1, 256}), at::zeros({1, 3}, at::kLong), at::Tensor()};
      BOOST_TEST(m.prefill_embeds({50257, 50275}, cond).sizes() == at::IntArrayRef({1, 1 + 3 + 2 + 1, w.E}));
      // A missing or misshapen tensor names itself and both shapes.
      auto miss = layout_store(w.tsv);
      miss->tensors.erase("tfmr.h.5.ln_2.bias");
      BOOST_TEST(contains(error_of([&] { T3TurboModel::inspect(Checkpoint(miss)); }), "tfmr.h.5.ln_2.bias"));
      auto bad = layout_store(w.tsv);
      bad->tensors["cond_enc.spkr_enc.bias"] = at::zeros({1}).expand({w.E + 1});
      std::string e = error_of([&] { T3TurboModel::inspect(Checkpoint(bad)); });
      BOOST_TEST(contains(e, "cond_enc.spkr_enc.bias"), e);
      BOOST_TEST(contains(e, "[" + std::to_string(w.E + 1) + "]"), e);
      BOOST_TEST(contains(e, "[" + std::to_string(w.E) + "]"), e);
    }
  }
}

BOOST_AUTO_TEST_CASE(random_models_are_reproducible) {
  T3TurboConfig c = fx().model.config();
  T3TurboModel a = T3TurboModel::random(c, 5), b = T3TurboModel::random(c, 5);
  TurboSamplingOptions o;
  o.max_new_tokens = 6;
  o.seed = 1;
  BOOST_TEST(a.inference(fx().text_ids, fx().cond, o) == b.inference(fx().text_ids, fx().cond, o),
             boost::test_tools::per_element());
  // The full-size configurations a bench builds.
  BOOST_TEST(T3TurboConfig::turbo().gpt2.n_layer == 24);
  BOOST_TEST(T3TurboConfig::turbo().gpt2.n_embd == 1024);
  BOOST_TEST(T3TurboConfig::nano().gpt2.n_layer == 12);
  BOOST_TEST(T3TurboConfig::nano().gpt2.n_embd == 768);
  BOOST_TEST(T3TurboConfig::nano().gpt2.n_head == 12);
}
