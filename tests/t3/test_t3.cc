#define BOOST_TEST_MODULE t3
#include <boost/test/unit_test.hpp>

#include "gst-plugins/core/kernels/rows_gemm.h"
#include "elements/t3/model/t3.h"
#include "gst-plugins/core/checkpoint.h"
#include "tests/fixtures.h"
#include "tests/test_util.h"
#include "tests/tensor_compare.h"

#include <ATen/ATen.h>

#include <cstdio>
#include <functional>
#include <unistd.h>
using chatterbox::test::contains;
using chatterbox::test::error_of;

using namespace chatterbox;
using namespace chatterbox::t3;
using chatterbox::test::fixture;
using chatterbox::test::gemm_error_ratio;
using chatterbox::test::max_abs_diff;

namespace {
struct Fx {
  Checkpoint ck = Checkpoint::open(fixture("t3/t3_tiny.safetensors"));
  T3Model model = T3Model::from_checkpoint(ck);
  T3Cond cond = T3Cond::from_checkpoint(ck, "test.cond.");
  std::vector<int64_t> text_ids = ids(ck.get_raw("test.text_ids"));

  static std::vector<int64_t> ids(const at::Tensor& t) {
    at::Tensor c = t.to(at::kLong).reshape({-1}).contiguous();
    return std::vector<int64_t>(c.data_ptr<int64_t>(), c.data_ptr<int64_t>() + c.numel());
  }
};
Fx& fx() {
  static Fx f;
  return f;
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

BOOST_AUTO_TEST_CASE(config_from_metadata) {
  const T3Config& c = fx().model.config();
  BOOST_TEST(c.llama.hidden_size == 32);
  BOOST_TEST(c.llama.num_hidden_layers == 2);
  BOOST_TEST(c.llama.head_dim == 8);
  BOOST_TEST(c.llama.intermediate_size == 128);
  BOOST_TEST(c.llama.rope_type == "llama3");
  BOOST_TEST(c.text_tokens_dict_size == 704);
  BOOST_TEST(c.cond_len() == 34);
  T3Config d = T3Config::english();
  BOOST_TEST(d.llama.hidden_size == 1024);
  BOOST_TEST(d.llama.num_hidden_layers == 30);
  BOOST_TEST(d.llama.num_attention_heads == 16);
  BOOST_TEST(d.llama.rope_theta == 500000.0);
}

BOOST_AUTO_TEST_CASE(rope_inv_freq) {
  at::Tensor ref = fx().ck.get("test.rope_inv_freq");
  double rel = ((fx().model.rope_inv_freq() - ref).abs() / ref.abs()).max().item<double>();
  BOOST_TEST_MESSAGE("rope_inv_freq: max rel " << rel);
  BOOST_TEST(rel <= 3e-6);
}

BOOST_AUTO_TEST_CASE(conds_file_matches_fixture_inputs) {
  T3Cond c = T3Cond::load(fixture("t3/conds_tiny.safetensors"));
  BOOST_TEST(at::equal(c.speaker_emb, fx().cond.speaker_emb));
  BOOST_TEST(at::equal(c.cond_prompt_speech_tokens, fx().cond.cond_prompt_speech_tokens));
  BOOST_TEST(at::equal(c.emotion_adv, fx().cond.emotion_adv));
  BOOST_TEST(c.cond_prompt_speech_tokens.scalar_type() == at::kLong);
  BOOST_TEST(c.with_exaggeration(0.7).emotion_adv.item<float>() == 0.7f);
}

BOOST_AUTO_TEST_CASE(conditioning_and_prefill) {
  Fx& f = fx();
  CHECK_CLOSE(f.model.cond_embedding(f.cond), f.ck.get("test.cond_emb"), 1e-5);
  at::Tensor x = f.model.prefill_embeds(f.text_ids, f.cond, 0.5);
  CHECK_CLOSE(x, f.ck.get("test.prefill_embeds"), 1e-5);
  // Feed the stored input so each stage is checked on its own.
  std::vector<at::Tensor> layers;
  at::Tensor h = f.model.backbone(f.ck.get("test.prefill_embeds"), &layers);
  CHECK_CLOSE(at::stack(layers), f.ck.get("test.prefill_layer_out"), 5e-5);
  CHECK_CLOSE(h, f.ck.get("test.prefill_hidden"), 5e-5);
  at::Tensor last = f.ck.get("test.prefill_hidden").select(1, 58);
  CHECK_CLOSE(f.model.speech_logits(last), f.ck.get("test.prefill_logits"), 7e-5);
  CHECK_CLOSE(f.model.speech_logits(h.select(1, 58)), f.ck.get("test.prefill_logits"), 7e-5);
  // Without CFG only the conditional row is built.
  at::Tensor x1 = f.model.prefill_embeds(f.text_ids, f.cond, 0.0);
  BOOST_TEST(x1.size(0) == 1);
  BOOST_TEST(at::equal(x1[0], x[0]));
}

BOOST_AUTO_TEST_CASE(backbone_long_positions) {
  Fx& f = fx();
  at::Tensor in = f.ck.get("test.backbone.inputs_embeds");
  at::Tensor ref = f.ck.get("test.backbone.hidden");
  CHECK_CLOSE(f.model.backbone(in), ref, 1e-4);
  // KV cache: 1000 positions at once, then the last 24 one at a time.
  BackboneSession s(f.model, 1, 1024);
  at::Tensor full = s.forward(in.narrow(1, 0, 1000));
  std::vector<at::Tensor> steps{full};
  for (int64_t i = 1000; i < 1024; ++i) steps.push_back(s.forward(in.narrow(1, i, 1)));
  BOOST_TEST(s.length() == 1024);
  at::Tensor inc = at::cat(steps, 1);
  CHECK_CLOSE(inc, ref, 1e-4);
  at::Tensor whole = f.model.backbone(in);
  double e = max_abs_diff(inc.narrow(1, 1000, 24), whole.narrow(1, 1000, 24));
  BOOST_TEST_MESSAGE("incremental vs full, last 24: " << e);
  // Two float32 evaluations of the same hidden states, each within
  // backbone.hidden's float32 error (8.6e-6, README): 2 x 3 x that apart.
  BOOST_TEST(e <= 2 * 3 * 8.6e-6);
  BOOST_TEST(contains(error_of([&] { s.forward(in.narrow(1, 0, 1)); }), "KV cache full"));
}

BOOST_AUTO_TEST_CASE(greedy_decode) {
  Fx& f = fx();
  SamplingOptions o;
  o.greedy = true;
  o.max_new_tokens = 30;
  T3Generator g(f.model, o);
  g.start(f.text_ids, f.cond);
  at::Tensor ref_logits = f.ck.get("test.step_logits"), ref_hidden = f.ck.get("test.step_hidden"),
             ref_in = f.ck.get("test.step_input_embeds");
  std::vector<at::Tensor> logits, hidden, inputs;
  int64_t t;
  while ((t = g.next_token()) >= 0) {
    logits.push_back(g.last_cfg_logits());
    hidden.push_back(g.last_hidden());
    if (g.last_input_embed().defined()) inputs.push_back(g.last_input_embed());
  }
  BOOST_TEST(g.finished());
  std::vector<int64_t> want = Fx::ids(f.ck.get_raw("test.greedy_tokens"));
  BOOST_TEST(g.tokens() == want, boost::test_tools::per_element());
  BOOST_REQUIRE_EQUAL(logits.size(), 20u);
  CHECK_CLOSE(at::stack(logits), ref_logits, 1.5e-4);
  CHECK_CLOSE(at::stack(hidden), ref_hidden, 3e-5);
  BOOST_REQUIRE_EQUAL(inputs.size(), 19u);
  CHECK_CLOSE(at::stack(inputs), ref_in, 1e-6);
  BOOST_TEST(g.next_token() == -1);
  // The one-call loop gives the same, and generate's filter keeps ids < 6561 before the stop.
  BOOST_TEST(f.model.inference(f.text_ids, f.cond, o) == want, boost::test_tools::per_element());
  std::vector<int64_t> kept = drop_invalid_tokens(want);
  std::vector<int64_t> expect;
  for (int64_t x : want)
    if (x < 6561) expect.push_back(x);
  BOOST_TEST(kept == expect, boost::test_tools::per_element());
  BOOST_TEST(kept.size() == 15u);  // 20 minus the stop token and 7632, 7689, 6953, 7958
}

BOOST_AUTO_TEST_CASE(greedy_max_tokens_stops) {
  SamplingOptions o;
  o.greedy = true;
  o.max_new_tokens = 5;
  std::vector<int64_t> t = fx().model.inference(fx().text_ids, fx().cond, o);
  std::vector<int64_t> want = Fx::ids(fx().ck.get_raw("test.greedy_tokens"));
  BOOST_TEST(t == std::vector<int64_t>(want.begin(), want.begin() + 5), boost::test_tools::per_element());
}

BOOST_AUTO_TEST_CASE(sampled_replay) {
  Fx& f = fx();
  Checkpoint s = Checkpoint::open(fixture("t3/t3_tiny_sampled.safetensors"));
  BOOST_TEST(at::equal(s.get_raw("test.text_tokens"), f.ck.get_raw("test.text_tokens")));
  at::Tensor q = s.get("test.sample.q");
  SamplingOptions o;
  o.max_new_tokens = 20;
  o.draws = [&](int64_t step) { return q[step]; };
  T3Generator g(f.model, o);
  g.start(f.text_ids, T3Cond::from_checkpoint(s, "test.cond."));
  std::vector<at::Tensor> logits, probs;
  while (g.next_token() >= 0) {
    logits.push_back(g.last_cfg_logits());
    probs.push_back(g.last_probs());
  }
  BOOST_TEST(g.tokens() == Fx::ids(s.get_raw("test.sample.tokens")), boost::test_tools::per_element());
  BOOST_REQUIRE_EQUAL(probs.size(), 20u);
  CHECK_CLOSE(at::stack(logits), s.get("test.sample.step_logits"), 1.5e-4);
  CHECK_CLOSE(at::stack(probs), s.get("test.sample.step_probs"), 1.5e-5);
  // The same set of candidates survives min_p at every step.
  BOOST_TEST(at::equal(at::stack(probs) > 0, s.get("test.sample.step_probs") > 0));
}

BOOST_AUTO_TEST_CASE(seeded_sampler_is_reproducible) {
  SamplingOptions o;
  o.max_new_tokens = 12;
  o.seed = 7;
  auto a = fx().model.inference(fx().text_ids, fx().cond, o);
  auto b = fx().model.inference(fx().text_ids, fx().cond, o);
  BOOST_TEST(a == b, boost::test_tools::per_element());
  o.seed = 8;
  auto c = fx().model.inference(fx().text_ids, fx().cond, o);
  BOOST_TEST(a != c);
  // Every token drawn is one min_p kept (a removed token has probability 0).
  T3Generator g(fx().model, o);
  g.start(fx().text_ids, fx().cond);
  int64_t t;
  while ((t = g.next_token()) >= 0) BOOST_TEST(g.last_probs()[t].item<float>() > 0.0f);
}

BOOST_AUTO_TEST_CASE(no_cfg_runs_one_row) {
  // cfg_weight 0: the reference combination returns the conditional row; we run it alone.
  SamplingOptions o;
  o.greedy = true;
  o.cfg_weight = 0.0;
  o.max_new_tokens = 4;
  T3Generator g(fx().model, o);
  g.start(fx().text_ids, fx().cond);
  g.next_token();
  BOOST_TEST(g.last_hidden().size(0) == 1);
  at::Tensor ref = fx().ck.get("test.prefill_logits")[0];
  BOOST_TEST(max_abs_diff(g.last_cfg_logits(), ref) <= 7e-5);
}

BOOST_AUTO_TEST_CASE(input_errors_are_named) {
  Fx& f = fx();
  std::vector<int64_t> bad = f.text_ids;
  bad[3] = 704;
  BOOST_TEST(contains(error_of([&] { f.model.prefill_embeds(bad, f.cond); }), "text token #3 = 704"));
  T3Generator g(f.model);
  BOOST_TEST(contains(error_of([&] { g.start(bad, f.cond); }), "outside the text vocabulary"));
  BOOST_TEST(contains(error_of([&] { T3Generator(f.model).next_token(); }), "before start"));
  T3Cond c = f.cond;
  c.speaker_emb = at::zeros({1, 255});
  BOOST_TEST(contains(error_of([&] { f.model.cond_embedding(c); }), "speaker_emb"));
  SamplingOptions o;
  o.max_new_tokens = 5000;
  BOOST_TEST(contains(error_of([&] { T3Generator(f.model, o).start(f.text_ids, f.cond); }), "max_new_tokens"));
  o = SamplingOptions{};
  o.draws = [](int64_t) { return at::ones({10}); };
  T3Generator g2(f.model, o);
  g2.start(f.text_ids, f.cond);
  BOOST_TEST(contains(error_of([&] { g2.next_token(); }), "injected draws"));
}

BOOST_AUTO_TEST_CASE(loading_errors_name_the_tensor) {
  Fx& f = fx();
  std::map<std::string, at::Tensor> keep;
  for (const auto& k : f.ck.keys())
    if (k.rfind("test.", 0) != 0) keep[k] = f.ck.get_raw(k);
  std::map<std::string, std::string> meta{{"config", f.ck.metadata("config")}};
  std::string path = "/tmp/t3_test_" + std::to_string(getpid()) + ".safetensors";

  auto missing = keep;
  missing.erase("tfmr.layers.1.mlp.up_proj.weight");
  write_safetensors(path, missing, meta);
  BOOST_TEST(contains(error_of([&] { T3Model::load(path); }), "tfmr.layers.1.mlp.up_proj.weight"));

  auto misshapen = keep;
  misshapen["cond_enc.perceiver.attn.to_k.weight"] = at::zeros({32, 16});
  write_safetensors(path, misshapen, meta);
  std::string e = error_of([&] { T3Model::load(path); });
  BOOST_TEST(contains(e, "cond_enc.perceiver.attn.to_k.weight"));
  BOOST_TEST(contains(e, "[32, 16]"));

  // No metadata: the built-in (1024-wide) config, which this file does not fit.
  write_safetensors(path, keep, {});
  BOOST_TEST(contains(error_of([&] { T3Model::load(path); }), "tfmr.layers.0"));

  // A multilingual-sized text table (2454 rows) is accepted and sets the vocabulary.
  auto mtl = keep;
  mtl["text_emb.weight"] = at::cat({keep["text_emb.weight"], at::zeros({2454 - 704, 32})}, 0);
  mtl["text_head.weight"] = mtl["text_emb.weight"];
  write_safetensors(path, mtl, meta);
  T3Model m = T3Model::load(path);
  BOOST_TEST(m.config().text_tokens_dict_size == 2454);
  CHECK_CLOSE(m.prefill_embeds(f.text_ids, f.cond), f.ck.get("test.prefill_embeds"), 1e-5);
  std::remove(path.c_str());
}

BOOST_AUTO_TEST_CASE(random_model_runs) {
  T3Config c = fx().model.config();
  T3Model a = T3Model::random(c, 5), b = T3Model::random(c, 5);
  SamplingOptions o;
  o.max_new_tokens = 6;
  o.seed = 1;
  BOOST_TEST(a.inference(fx().text_ids, fx().cond, o) == b.inference(fx().text_ids, fx().cond, o),
             boost::test_tools::per_element());
}

BOOST_AUTO_TEST_CASE(small_rows_kernel_matches_linear) {
  // The decode kernel (W streamed once for the CFG pair; at::linear on the
  // generic path) against the float64 product, including odd sizes that
  // exercise the SIMD tails.
  at::manual_seed(11);
  for (int64_t M : {1, 2, 3, 4, 5})
    for (auto nk : std::vector<std::pair<int64_t, int64_t>>{{33, 1029}, {8194, 32}, {7, 5}, {1024, 4096}}) {
      at::Tensor W = at::randn({nk.first, nk.second}), x = at::randn({M, 1, nk.second});
      at::Tensor got = kernels::rows_matmul_t(x, W);
      BOOST_REQUIRE(got.sizes() == at::IntArrayRef({M, 1, nk.first}));
      // Higham's worst case for any summation order: no CPU's order assumed.
      const double ratio = gemm_error_ratio(got, x, W);
      BOOST_TEST(ratio <= 1.0, "M " << M << " N " << nk.first << " K " << nk.second << ": error / bound " << ratio);
    }
}

BOOST_AUTO_TEST_CASE(conds_pt_loads_like_its_safetensors_twin) {
  // conds.pt (torch.save zip) read through Checkpoint::open: same tensors, same
  // conditioning, and the "gen" part is ignored.
  T3Cond c = T3Cond::load(fixture("t3/conds_tiny.pt"));
  BOOST_TEST(at::equal(c.speaker_emb, fx().cond.speaker_emb));
  BOOST_TEST(at::equal(c.cond_prompt_speech_tokens, fx().cond.cond_prompt_speech_tokens));
  BOOST_TEST(at::equal(c.emotion_adv, fx().cond.emotion_adv));
  CHECK_CLOSE(fx().model.cond_embedding(c), fx().ck.get("test.cond_emb"), 1e-5);
}
