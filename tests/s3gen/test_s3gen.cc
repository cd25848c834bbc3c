#define BOOST_TEST_MODULE s3gen_flow
#include <boost/test/unit_test.hpp>

#include "elements/s3gen/flow/s3gen_flow.h"
#include "tests/fixtures.h"
#include "tests/test_util.h"
#include "tests/tensor_compare.h"

#include <ATen/ATen.h>
#include <nlohmann/json.hpp>

#include <cstdio>
#include <fstream>
#include <sstream>
#include <iostream>
#include <map>
using chatterbox::test::contains;
using chatterbox::test::error_of;

using namespace chatterbox;
using chatterbox::test::fixture;
using chatterbox::test::max_abs_diff;

namespace {

const std::string kFlow = "s3gen/flow_tiny.safetensors";

struct Tiny {
  Checkpoint ck = Checkpoint::open(fixture(kFlow));
  S3GenFlow flow = S3GenFlow::load(ck);
  at::Tensor g(const std::string& n) const { return ck.get("test." + n); }
  at::Tensor raw(const std::string& n) const { return ck.get_raw("test." + n); }
};

const Tiny& tiny() {
  static Tiny t;
  return t;
}

// Max abs error, printed so the log documents the margin to the tolerance.
double report(const std::string& what, const at::Tensor& got, const at::Tensor& want) {
  BOOST_REQUIRE_MESSAGE(got.sizes() == want.sizes(), what << ": shape " << got.sizes() << " vs " << want.sizes());
  const double d = max_abs_diff(got, want);
  std::cout << "  " << what << ": max abs " << d << " (max |ref| " << want.abs().max().item<double>() << ")\n";
  return d;
}


std::string tmp_path(const std::string& name) { return "/tmp/s3gen_test_" + std::to_string(::getpid()) + "_" + name; }

}  // namespace

BOOST_AUTO_TEST_CASE(fixture_config_and_prefix) {
  const auto& t = tiny();
  BOOST_TEST(t.flow.prefix() == "");
  const auto& c = t.flow.config();
  BOOST_TEST(c.input_size == 64);
  BOOST_TEST(c.encoder_heads == 2);
  BOOST_TEST(c.encoder_blocks == 2);
  BOOST_TEST(c.encoder_up_blocks == 4);
  BOOST_TEST(c.estimator_channels.size() == 1u);
  BOOST_TEST(c.estimator_channels[0] == 32);
  BOOST_TEST(c.attention_head_dim == 16);
  BOOST_TEST(c.num_heads == 2);
  BOOST_TEST(c.num_mid_blocks == 2);
  BOOST_TEST(c.n_timesteps == 10);
  BOOST_TEST(c.cfg_rate == 0.7);
  // Built-in default = the published model.
  S3GenFlowConfig real;
  BOOST_TEST(real.input_size == 512);
  BOOST_TEST(real.encoder_linear_units == 2048);
  BOOST_TEST(real.num_mid_blocks == 12);
}

BOOST_AUTO_TEST_CASE(encoder_mu_spks_cond_and_time_grid) {
  const auto& t = tiny();
  S3GenEncoded enc = t.flow.encode(t.raw("token"), t.raw("prompt_token"), t.g("prompt_feat"), t.g("embedding"), true);
  BOOST_TEST(report("mu", enc.mu, t.g("mu")) <= 2.5e-5);
  BOOST_TEST(report("spks", enc.spks, t.g("spks")) <= 1e-5);
  BOOST_TEST(report("cond", enc.cond, t.g("cond")) == 0.0);
  BOOST_TEST(report("mask", enc.mask, t.g("mask")) == 0.0);
  BOOST_TEST(enc.prompt_frames == 40);
  // 1 - cos(pi t / 2) in float32, here and in the reference: a few ulps of 1.
  BOOST_TEST(report("t_span", t.flow.t_span(10), t.g("t_span")) <= 8 * std::ldexp(1.0, -24));
}

BOOST_AUTO_TEST_CASE(estimator_from_stored_inputs) {
  const auto& t = tiny();
  for (auto [step, tol] : {std::pair<const char*, double>{"est_step0", 3e-5}, {"est_step5", 5e-5}}) {
    const std::string p = std::string(step) + ".";
    at::Tensor out = t.flow.estimator(t.g(p + "x"), t.g(p + "mask"), t.g(p + "mu"), t.g(p + "t"), t.g(p + "spks"),
                                      t.g(p + "cond"));
    BOOST_TEST(report(p + "out", out, t.g(p + "out")) <= tol);
  }
}

BOOST_AUTO_TEST_CASE(output_mel_with_injected_noise) {
  const auto& t = tiny();
  S3GenInferenceOptions o;
  o.noise = t.g("noise");
  at::Tensor mel = t.flow.inference(t.raw("token"), t.raw("prompt_token"), t.g("prompt_feat"), t.g("embedding"), o);
  BOOST_TEST(report("output_mel", mel, t.g("output_mel")) <= 1e-4);
}

BOOST_AUTO_TEST_CASE(streaming_pair_finalize_false_then_true) {
  const auto& t = tiny();
  // call 1: first 17 tokens, finalize=false (last 3 are look-ahead only)
  S3GenEncoded e1 =
      t.flow.encode(t.raw("stream.call1.token"), t.raw("prompt_token"), t.g("prompt_feat"), t.g("embedding"), false);
  BOOST_TEST(report("stream.call1.mu", e1.mu, t.g("stream.call1.mu")) <= 2.5e-5);
  S3GenInferenceOptions o1;
  o1.finalize = false;
  o1.noise = t.g("stream.call1.z");
  at::Tensor m1 = t.flow.inference(t.raw("stream.call1.token"), t.raw("prompt_token"), t.g("prompt_feat"),
                                   t.g("embedding"), o1);
  BOOST_TEST(report("stream.call1.output_mel", m1, t.g("stream.call1.output_mel")) <= 1e-4);
  // call 2: all 30 tokens, finalize=true
  S3GenInferenceOptions o2;
  o2.noise = t.g("stream.call2.z");
  S3GenEncoded e2 = t.flow.encode(t.raw("token"), t.raw("prompt_token"), t.g("prompt_feat"), t.g("embedding"), true);
  BOOST_TEST(report("stream.call2.mu", e2.mu, t.g("stream.call2.mu")) <= 2.5e-5);
  at::Tensor m2 = t.flow.inference(t.raw("token"), t.raw("prompt_token"), t.g("prompt_feat"), t.g("embedding"), o2);
  BOOST_TEST(report("stream.call2.output_mel", m2, t.g("stream.call2.output_mel")) <= 1e-4);
  // How far a streamed mel (call-1 frames, then call-2's new frames) is from
  // the call-2 decode for the same positions: the encoder and decoder see the
  // whole sequence, so early frames move (README: up to 1.45).
  const double drift = max_abs_diff(m1, m2.slice(2, 0, 28));
  std::cout << "  streamed-vs-final drift over the first 28 frames: max abs " << drift << "\n";
  BOOST_TEST(drift > 0.0);
}

BOOST_AUTO_TEST_CASE(seeded_noise_is_deterministic) {
  const auto& t = tiny();
  S3GenInferenceOptions o;
  o.seed = 1234;
  at::Tensor tok = t.raw("token").slice(1, 0, 12);
  at::Tensor a = t.flow.inference(tok, t.raw("prompt_token"), t.g("prompt_feat"), t.g("embedding"), o);
  at::Tensor b = t.flow.inference(tok, t.raw("prompt_token"), t.g("prompt_feat"), t.g("embedding"), o);
  BOOST_TEST(a.size(2) == 24);
  BOOST_TEST(at::equal(a, b));
  o.seed = 1235;
  at::Tensor c = t.flow.inference(tok, t.raw("prompt_token"), t.g("prompt_feat"), t.g("embedding"), o);
  BOOST_TEST(max_abs_diff(a, c) > 1e-3);
}

BOOST_AUTO_TEST_CASE(invalid_tokens_are_dropped) {
  const auto& t = tiny();
  at::Tensor tok = t.raw("token").slice(1, 0, 10);
  at::Tensor dirty = at::cat({tok.slice(1, 0, 4), at::full({1, 2}, 6561, at::kLong), tok.slice(1, 4, 10),
                              at::full({1, 1}, 6562, at::kLong)}, 1);
  S3GenInferenceOptions o;
  o.seed = 7;
  at::Tensor clean = t.flow.inference(tok, t.raw("prompt_token"), t.g("prompt_feat"), t.g("embedding"), o);
  at::Tensor got = t.flow.inference(dirty, t.raw("prompt_token"), t.g("prompt_feat"), t.g("embedding"), o);
  BOOST_TEST(got.size(2) == 20);
  BOOST_TEST(at::equal(clean, got));
  // finalize=false with no more than the look-ahead: nothing to emit yet.
  S3GenInferenceOptions nf;
  nf.finalize = false;
  BOOST_TEST(t.flow.inference(tok.slice(1, 0, 3), t.raw("prompt_token"), t.g("prompt_feat"), t.g("embedding"), nf)
                 .size(2) == 0);
}

BOOST_AUTO_TEST_CASE(prompt_mismatch_is_a_model_error) {
  const auto& t = tiny();
  std::string e = error_of([&] {
    t.flow.inference(t.raw("token"), t.raw("prompt_token"), t.g("prompt_feat").slice(1, 0, 39), t.g("embedding"));
  });
  BOOST_TEST(contains(e, "20 prompt tokens need 40 prompt_feat frames, got 39"), e);
  e = error_of([&] { t.flow.encode(at::full({1, 3}, 7000, at::kLong), t.raw("prompt_token"), t.g("prompt_feat"), t.g("embedding"), true); });
  BOOST_TEST(contains(e, "outside [0, 6561)"), e);
  e = error_of([&] {
    S3GenInferenceOptions o;
    o.noise = at::zeros({1, 80, 50});
    t.flow.inference(t.raw("token"), t.raw("prompt_token"), t.g("prompt_feat"), t.g("embedding"), o);
  });
  BOOST_TEST(contains(e, "noise must be [1, 80, >= 100]"), e);
}

BOOST_AUTO_TEST_CASE(loading_errors_name_the_problem) {
  // Not a flow checkpoint at all.
  std::string e = error_of([] { S3GenFlow::load(fixture("vocos/tiny_center.safetensors")); });
  BOOST_TEST(contains(e, "holds no S3Gen flow"), e);
  BOOST_TEST(contains(e, "flow.input_embedding.weight"), e);

  const auto& t = tiny();
  std::map<std::string, at::Tensor> weights;
  for (const auto& k : t.ck.keys())
    if (k.rfind("test.", 0) != 0) weights["flow." + k] = t.ck.get_raw(k);
  const std::string cfg = t.ck.metadata("config");

  // A missing tensor is named with its full key.
  {
    auto w = weights;
    w.erase("flow.encoder.up_layer.conv.weight");
    const std::string p = tmp_path("missing.safetensors");
    write_safetensors(p, w, {{"config", cfg}});
    e = error_of([&] { S3GenFlow::load(p); });
    std::remove(p.c_str());
    BOOST_TEST(contains(e, "flow.encoder.up_layer.conv.weight"), e);
  }
  // A misshapen tensor names both shapes.
  {
    auto w = weights;
    w["flow.encoder_proj.weight"] = at::zeros({80, 65});
    const std::string p = tmp_path("shape.safetensors");
    write_safetensors(p, w, {{"config", cfg}});
    e = error_of([&] { S3GenFlow::load(p); });
    std::remove(p.c_str());
    BOOST_TEST(contains(e, "flow.encoder_proj.weight"), e);
  }
  // "flow." prefix is detected, and without metadata the widths come from the
  // tensor shapes (the encoder is fully determined by them).
  {
    const std::string p = tmp_path("prefixed.safetensors");
    write_safetensors(p, weights, {});
    S3GenFlow f = S3GenFlow::load(p);
    std::remove(p.c_str());
    BOOST_TEST(f.prefix() == "flow.");
    BOOST_TEST(f.config().encoder_heads == 2);
    BOOST_TEST(f.config().encoder_linear_units == 128);
    BOOST_TEST(f.config().encoder_blocks == 2);
    BOOST_TEST(f.config().n_blocks == 1);
    BOOST_TEST(f.config().num_mid_blocks == 2);
    at::Tensor mu = f.mu(t.raw("token"), t.raw("prompt_token"), t.g("prompt_feat"), t.g("embedding"));
    BOOST_TEST(report("mu (prefixed, inferred config)", mu, t.g("mu")) <= 2.5e-5);
  }
}

BOOST_AUTO_TEST_CASE(conds_voice_loads_and_drives_the_flow) {
  const auto& t = tiny();
  S3GenVoice v = S3GenVoice::load(fixture("t3/conds_tiny.safetensors"));
  BOOST_TEST(v.prompt_token.sizes() == at::IntArrayRef({1, 250}));
  BOOST_TEST(v.prompt_feat.sizes() == at::IntArrayRef({1, 500, 80}));
  BOOST_TEST(v.embedding.sizes() == at::IntArrayRef({1, 192}));
  S3GenVoice vpt = S3GenVoice::load(fixture("t3/conds_tiny.pt"));
  BOOST_TEST(at::equal(v.prompt_token, vpt.prompt_token));
  BOOST_TEST(at::equal(v.prompt_feat, vpt.prompt_feat));
  BOOST_TEST(at::equal(v.embedding, vpt.embedding));
  S3GenInferenceOptions o;
  o.seed = 3;
  at::Tensor mel = t.flow.inference(t.raw("token").slice(1, 0, 8), v, o);
  BOOST_TEST(mel.sizes() == at::IntArrayRef({1, 80, 16}));
  BOOST_TEST(mel.isfinite().all().item<bool>());
  // A conds file without the gen.* entries is named.
  std::string e = error_of([] { S3GenVoice::load(fixture(kFlow)); });
  BOOST_TEST(contains(e, "gen.prompt_token"), e);
}

BOOST_AUTO_TEST_CASE(streamer_emits_only_new_frames) {
  const auto& t = tiny();
  S3GenVoice v{t.raw("prompt_token"), t.g("prompt_feat"), t.g("embedding")};
  S3GenStreamerOptions so;
  so.seed = 11;
  S3GenFlowStreamer st(t.flow, v, so);
  at::Tensor tok = t.raw("token");
  std::vector<at::Tensor> chunks;
  // 2 tokens: all look-ahead, nothing yet.
  chunks.push_back(st.push(tok.slice(1, 0, 2)));
  BOOST_TEST(chunks.back().size(2) == 0);
  for (int64_t s = 2; s < 30; s += 7) {
    chunks.push_back(st.push(tok.slice(1, s, std::min<int64_t>(s + 7, 30))));
    BOOST_TEST(st.emitted_frames() == 2 * (st.tokens() - 3));
  }
  chunks.push_back(st.finish());
  BOOST_TEST(chunks.back().size(2) == 6);
  BOOST_TEST(st.emitted_frames() == 60);
  BOOST_CHECK_THROW(st.push(tok.slice(1, 0, 1)), ModelError);
  at::Tensor streamed = at::cat(chunks, 2);
  BOOST_TEST(streamed.size(2) == 60);

  // The whole-utterance decode from the same target noise: the last chunk
  // is decoded over all tokens, so only the earlier frames drift.
  S3GenInferenceOptions o;
  o.target_noise = st.target_noise();
  o.seed = 99;
  at::Tensor whole = t.flow.inference(tok, v, o);
  const double drift = max_abs_diff(streamed, whole);
  const double tail = max_abs_diff(streamed.slice(2, 54), whole.slice(2, 54));
  std::cout << "  streamer (chunks of 7 tokens) vs whole utterance: max abs " << drift << ", last chunk " << tail
            << ", rel L2 " << chatterbox::test::rel_l2(streamed, whole) << "\n";
  BOOST_TEST(std::isfinite(drift));

  // reset() starts over with the same seed: same first chunk.
  st.reset();
  at::Tensor again = st.push(tok.slice(1, 0, 9));
  BOOST_TEST(again.size(2) == 12);
  BOOST_TEST(at::equal(again, at::cat({chunks[0], chunks[1]}, 2)));
}

BOOST_AUTO_TEST_CASE(estimator_padding_mask_hides_padded_frames) {
  // Causal convs look only backwards and padded keys get a -1e10 score bias,
  // so garbage after the mask's end must not change the valid frames.
  const auto& t = tiny();
  const std::string p = "est_step5.";
  at::Tensor x = t.g(p + "x"), mu = t.g(p + "mu"), cond = t.g(p + "cond"), tt = t.g(p + "t"), spks = t.g(p + "spks");
  const int64_t T = 70;
  at::Tensor ref = t.flow.estimator(x.slice(2, 0, T), t.g(p + "mask").slice(2, 0, T), mu.slice(2, 0, T), tt, spks,
                                    cond.slice(2, 0, T));
  at::Tensor mask = at::ones({2, 1, 100});
  mask.slice(2, T).zero_();
  at::Tensor noisy = x.clone();
  noisy.slice(2, T).normal_(0, 10);
  at::Tensor out = t.flow.estimator(noisy, mask, mu, tt, spks, cond);
  // Two float32 runs (70 and 100 frames: other GEMM shapes) of the same
  // exact values, each within est_step5's float32 error (4.5e-6, README).
  BOOST_TEST(report("masked estimator, valid frames", out.slice(2, 0, T), ref) <= 2 * 3 * 4.5e-6);
  BOOST_TEST(out.slice(2, T).abs().max().item<double>() == 0.0);
}

BOOST_AUTO_TEST_CASE(real_checkpoint_layout_loads_with_inferred_config) {
  // Every flow.* row of the published s3gen.safetensors key list, as
  // zero-stride placeholders of the right shape (no metadata, like the real
  // file), plus a non-flow tensor that must be ignored.
  std::ifstream tsv(fixture("s3gen/keys/s3gen_keys.tsv"));
  std::string line;
  std::getline(tsv, line);  // header
  auto store = std::make_shared<TensorStore>();
  store->path = "s3gen_keys.tsv (placeholders)";
  size_t flow_rows = 0;
  while (std::getline(tsv, line)) {
    std::stringstream ss(line);
    std::string name, dtype, shape;
    std::getline(ss, name, '\t');
    std::getline(ss, dtype, '\t');
    std::getline(ss, shape, '\t');
    if (name.rfind("flow.", 0) != 0 && name != "mel2wav.conv_pre.bias") continue;
    flow_rows += name.rfind("flow.", 0) == 0;
    std::vector<int64_t> dims;
    std::stringstream sd(shape.substr(1, shape.size() - 2));
    for (std::string d; std::getline(sd, d, ',');) dims.push_back(std::stoll(d));
    store->tensors[name] = at::zeros({1}).expand(dims);
  }
  BOOST_TEST(flow_rows == 1121u);
  S3GenFlow f = S3GenFlow::load(Checkpoint(store));
  BOOST_TEST(f.prefix() == "flow.");
  const S3GenFlowConfig& c = f.config();
  S3GenFlowConfig real;
  BOOST_TEST(c.input_size == real.input_size);
  BOOST_TEST(c.encoder_heads == real.encoder_heads);
  BOOST_TEST(c.encoder_linear_units == real.encoder_linear_units);
  BOOST_TEST(c.encoder_blocks == real.encoder_blocks);
  BOOST_TEST(c.encoder_up_blocks == real.encoder_up_blocks);
  BOOST_TEST(c.estimator_channels == real.estimator_channels);
  BOOST_TEST(c.attention_head_dim == real.attention_head_dim);
  BOOST_TEST(c.n_blocks == real.n_blocks);
  BOOST_TEST(c.num_mid_blocks == real.num_mid_blocks);
  BOOST_TEST(c.pre_lookahead_len == 3);
  // The module tree holds exactly the checkpoint's flow tensors.
  BOOST_TEST(f.parameter_names().size() == flow_rows);
  BOOST_TEST(!f.meanflow());
  BOOST_TEST(c.n_timesteps == 10);

  // Chatterbox-Turbo's s3gen_meanflow.safetensors is S3Gen(meanflow=True)
  // loaded strictly: the same tree plus ConditionalDecoder's time mixer,
  // Linear(2 * 4 * channels[0], 4 * channels[0], bias=False).
  store->tensors["flow.decoder.estimator.time_embed_mixer.weight"] = at::zeros({1}).expand({1024, 2048});
  S3GenFlow turbo = S3GenFlow::load(Checkpoint(store));
  BOOST_TEST(turbo.meanflow());
  BOOST_TEST(turbo.config().n_timesteps == 2);
  BOOST_TEST(turbo.parameter_names().size() == flow_rows + 1);
}
