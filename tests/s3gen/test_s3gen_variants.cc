// The S3Gen flow's variants: Chatterbox-Turbo's mean-flow decoder (against
// tests/s3gen/flow_tiny_meanflow.safetensors, made by running the reference
// with make_meanflow_fixture.py) and reduced precision.
#define BOOST_TEST_MODULE s3gen_variants
#include <boost/test/unit_test.hpp>

#include "elements/s3gen/flow/s3gen_flow.h"
#include "tests/fixtures.h"
#include "tests/tensor_compare.h"
#include "tests/test_util.h"

#include <ATen/ATen.h>
#include <ATen/Context.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>

#include <iostream>

using namespace chatterbox;
using chatterbox::test::contains;
using chatterbox::test::error_of;
using chatterbox::test::fixture;
using chatterbox::test::max_abs_diff;
using chatterbox::test::rel_l2;

namespace {

const char* const kMixer = "decoder.estimator.time_embed_mixer.weight";

double report(const std::string& what, const at::Tensor& got, const at::Tensor& want) {
  BOOST_REQUIRE_MESSAGE(got.sizes() == want.sizes(), what << ": shape " << got.sizes() << " vs " << want.sizes());
  const double d = max_abs_diff(got, want);
  std::cout << "  " << what << ": max abs " << d << ", rel L2 " << rel_l2(got, want) << " (max |ref| "
            << want.abs().max().item<double>() << ")\n";
  return d;
}

// flow_tiny's weights plus a time mixer, with the given config metadata
// (none: shapes decide, as for the published files). prefix "flow." makes
// it look like s3gen_meanflow.safetensors.
Checkpoint turbo_checkpoint(const Checkpoint& tiny, const at::Tensor& mixer, const std::string& config,
                            const std::string& prefix = "") {
  auto store = std::make_shared<TensorStore>();
  store->path = "flow_tiny + time mixer";
  for (const auto& k : tiny.keys())
    if (k.rfind("test.", 0) != 0) store->tensors[prefix + k] = tiny.get_raw(k);
  if (mixer.defined()) store->tensors[prefix + kMixer] = mixer;
  if (!config.empty()) store->metadata["config"] = config;
  return Checkpoint(store);
}

struct Fixtures {
  Checkpoint tiny = Checkpoint::open(fixture("s3gen/flow_tiny.safetensors"));
  Checkpoint mf = Checkpoint::open(S3GEN_TEST_DIR "/flow_tiny_meanflow.safetensors");
  S3GenFlow standard = S3GenFlow::load(tiny);
  S3GenFlow turbo = S3GenFlow::load(turbo_checkpoint(tiny, mf.get(kMixer), mf.metadata("config")));
  at::Tensor t(const std::string& n) const { return tiny.get_raw("test." + n); }
  at::Tensor m(const std::string& n) const { return mf.get_raw("test." + n); }
  at::Tensor mel(const S3GenFlow& f, const S3GenInferenceOptions& o, int64_t tokens = 30) const {
    return f.inference(t("token").slice(1, 0, tokens), t("prompt_token"), t("prompt_feat"), t("embedding"), o);
  }
};

const Fixtures& fx() {
  static Fixtures f;
  return f;
}

}  // namespace

// ------------------------------------------------------------- mean flow --

BOOST_AUTO_TEST_CASE(meanflow_config_and_defaults) {
  const auto& f = fx();
  BOOST_TEST(f.turbo.meanflow());
  BOOST_TEST(!f.standard.meanflow());
  BOOST_TEST(f.turbo.config().n_timesteps == 2);  // S3Token2Wav.flow_inference: 2 if meanflow else 10
  BOOST_TEST(f.standard.config().n_timesteps == 10);
  // Linear grid for mean flow, cosine otherwise.
  BOOST_TEST(at::allclose(f.turbo.t_span(2), at::tensor({0.0f, 0.5f, 1.0f})));
  BOOST_TEST(at::allclose(f.turbo.t_span(4), at::linspace(0, 1, 5)));
  // 1 - cos(pi/4) evaluated in float32 (ATen's cos may differ by an ulp
  // between CPUs): within 2 ulps of the float64 value.
  const float ts = f.standard.t_span(2)[1].item<float>(), want = static_cast<float>(1.0 - std::cos(0.25 * M_PI));
  BOOST_TEST(std::fabs(ts - want) <= 2 * (std::nextafter(want, 1.f) - want));
  // The tree is flow_tiny's plus exactly the mixer.
  auto names = f.turbo.parameter_names();
  BOOST_TEST(names.size() == f.standard.parameter_names().size() + 1);
  BOOST_TEST((std::find(names.begin(), names.end(), kMixer) != names.end()));
}

BOOST_AUTO_TEST_CASE(meanflow_output_matches_reference_for_1_2_4_steps) {
  const auto& f = fx();
  for (int steps : {1, 2, 4}) {
    S3GenInferenceOptions o;
    o.noise = f.m("mf.noise");
    o.n_timesteps = steps;
    const std::string name = "mf" + std::to_string(steps) + ".output_mel";
    BOOST_TEST(report(name, f.mel(f.turbo, o), f.m(name)) <= 1e-4);
  }
  // The default is the 2-step run; steps change the result.
  S3GenInferenceOptions o;
  o.noise = f.m("mf.noise");
  at::Tensor dflt = f.mel(f.turbo, o);
  BOOST_TEST(max_abs_diff(dflt, f.m("mf2.output_mel")) <= 1e-4);
  BOOST_TEST(max_abs_diff(dflt, f.m("mf4.output_mel")) > 1e-2);
}

BOOST_AUTO_TEST_CASE(meanflow_estimator_calls_match_reference) {
  const auto& f = fx();
  for (const char* call : {"est0", "est1"}) {
    const std::string p = std::string("mf2.") + call + ".";
    at::Tensor out = f.turbo.estimator(f.m(p + "x"), at::ones({1, 1, 100}), f.m("mf2.est.mu"), f.m(p + "t"),
                                       f.m("mf2.est.spks"), f.t("cond"), f.m(p + "r"));
    BOOST_TEST(report(p + "out", out, f.m(p + "out")) <= 3e-5);
  }
  // r is part of the model: the same call with another end time differs.
  at::Tensor other = f.turbo.estimator(f.m("mf2.est0.x"), at::ones({1, 1, 100}), f.m("mf2.est.mu"),
                                       f.m("mf2.est0.t"), f.m("mf2.est.spks"), f.t("cond"), at::full({1}, 0.25f));
  BOOST_TEST(max_abs_diff(other, f.m("mf2.est0.out")) > 1e-3);
  std::string e = error_of([&] {
    f.turbo.estimator(f.m("mf2.est0.x"), at::ones({1, 1, 100}), f.m("mf2.est.mu"), f.m("mf2.est0.t"),
                      f.m("mf2.est.spks"), f.t("cond"));
  });
  BOOST_TEST(contains(e, "needs the end time r"), e);
}

BOOST_AUTO_TEST_CASE(diagonal_mixer_reduces_to_the_standard_estimator) {
  // intmeanflow.py initialises the mixer to [I, 0]: the embedding of t
  // passes through and r is ignored, so the mean-flow estimator equals the
  // standard one at t for any r; [0, I] makes it the standard one at r.
  const auto& f = fx();
  const int64_t D = 128;
  at::Tensor eye = at::eye(D), zero = at::zeros({D, D});
  S3GenFlow diag_t = S3GenFlow::load(turbo_checkpoint(f.tiny, at::cat({eye, zero}, 1), f.mf.metadata("config")));
  S3GenFlow diag_r = S3GenFlow::load(turbo_checkpoint(f.tiny, at::cat({zero, eye}, 1), f.mf.metadata("config")));
  const std::string p = "est_step5.";
  auto std_at = [&](const at::Tensor& time) {
    return f.standard.estimator(f.t(p + "x"), f.t(p + "mask"), f.t(p + "mu"), time, f.t(p + "spks"), f.t(p + "cond"));
  };
  auto mf = [&](const S3GenFlow& m, const at::Tensor& r) {
    return m.estimator(f.t(p + "x"), f.t(p + "mask"), f.t(p + "mu"), f.t(p + "t"), f.t(p + "spks"), f.t(p + "cond"), r);
  };
  // Both sides are float32 evaluations of the same estimator call, each
  // within the README's float32-vs-float64 error of est_step5 (4.5e-6) of the
  // exact value, whatever GEMM kernels run: 2 x 3 x 4.5e-6 apart at most.
  // (1e-6 held on one Intel machine and failed at 2.6e-6 on a Zen 5, where
  // OpenBLAS sums the time-mixer GEMM in another order.)
  const double kBound = 2 * 3 * 4.5e-6;
  const at::Tensor t = f.t(p + "t"), r = at::full({2}, 0.8f);
  BOOST_TEST(report("[I,0] mixer, r = 0.8 vs standard at t", mf(diag_t, r), std_at(t)) <= kBound);
  BOOST_TEST(report("[0,I] mixer, r = 0.8 vs standard at r", mf(diag_r, r), std_at(r)) <= kBound);
  BOOST_TEST(max_abs_diff(std_at(t), std_at(r)) > 1e-3);  // the two times do differ
}

BOOST_AUTO_TEST_CASE(meanflow_ignores_cfg_and_is_deterministic) {
  const auto& f = fx();
  S3GenInferenceOptions o;
  o.seed = 21;
  at::Tensor a = f.mel(f.turbo, o, 12);
  BOOST_TEST(a.sizes() == at::IntArrayRef({1, 80, 24}));
  BOOST_TEST(at::equal(a, f.mel(f.turbo, o, 12)));
  o.cfg_rate = 0.0;  // upstream's basic_euler has no guidance term at all
  BOOST_TEST(at::equal(a, f.mel(f.turbo, o, 12)));
  o.seed = 22;
  BOOST_TEST(max_abs_diff(a, f.mel(f.turbo, o, 12)) > 1e-3);
  // The streamer drives the same solver: finalize=false trims the look-ahead.
  S3GenFlowStreamer st(f.turbo, S3GenVoice{f.t("prompt_token"), f.t("prompt_feat"), f.t("embedding")});
  BOOST_TEST(st.push(f.t("token").slice(1, 0, 10)).size(2) == 14);
  BOOST_TEST(st.finish().size(2) == 6);
}

BOOST_AUTO_TEST_CASE(meanflow_detection_and_mismatches) {
  const auto& f = fx();
  const at::Tensor mixer = f.mf.get(kMixer);
  // Without metadata (the published s3gen_meanflow.safetensors has none) the
  // mixer tensor alone marks the Turbo flow.
  S3GenFlow bare = S3GenFlow::load(turbo_checkpoint(f.tiny, mixer, "", "flow."));
  BOOST_TEST(bare.prefix() == "flow.");
  BOOST_TEST(bare.meanflow());
  BOOST_TEST(bare.config().n_timesteps == 2);
  // Config and tensors must agree.
  std::string e = error_of([&] { S3GenFlow::load(turbo_checkpoint(f.tiny, mixer, f.tiny.metadata("config"))); });
  BOOST_TEST(contains(e, "time_embed_mixer"), e);
  BOOST_TEST(contains(e, "meanflow=false"), e);
  e = error_of([&] { S3GenFlow::load(turbo_checkpoint(f.tiny, at::Tensor(), f.mf.metadata("config"))); });
  BOOST_TEST(contains(e, "meanflow=true"), e);
  BOOST_TEST(contains(e, "time_embed_mixer.weight' is missing"), e);
  e = error_of([&] { S3GenFlow::load(turbo_checkpoint(f.tiny, mixer.slice(1, 0, 128), f.mf.metadata("config"))); });
  BOOST_TEST(contains(e, kMixer), e);
  nlohmann::json cfg = nlohmann::json::parse(f.mf.metadata("config"));
  cfg["inference"]["meanflow"] = false;
  e = error_of([&] { S3GenFlowConfig::from_json(cfg); });
  BOOST_TEST(contains(e, "disagree"), e);
}

// ------------------------------------------------------------- precision --

BOOST_AUTO_TEST_CASE(bf16_is_close_to_f32) {
  // bf16 keeps 8 mantissa bits (relative step 2^-8 = 0.4 %); through the
  // encoder and 10 (or 2) estimator calls the mel moves by a few percent of
  // its range. That error is bf16 rounding, 1000x any float32 summation-order
  // effect, so it does not move between CPUs. Bounds: 3x the values measured
  // (rel L2 0.0094 and 0.0078, max abs 0.063 and 0.049 of a range of +-5.4).
  const auto& f = fx();
  S3GenLoadOptions bf16;
  bf16.precision = "bf16";
  S3GenFlow standard = S3GenFlow::load(f.tiny, bf16);
  S3GenFlow turbo = S3GenFlow::load(turbo_checkpoint(f.tiny, f.mf.get(kMixer), f.mf.metadata("config")), bf16);
  BOOST_TEST(standard.precision() == "bf16");
  S3GenInferenceOptions o;
  o.noise = f.t("noise");
  at::Tensor ref = f.mel(f.standard, o), got = f.mel(standard, o);
  BOOST_TEST(got.scalar_type() == at::kFloat);
  report("bf16 vs f32, standard (10 steps, CFG)", got, ref);
  BOOST_TEST(rel_l2(got, ref) <= 0.03);
  BOOST_TEST(max_abs_diff(got, ref) <= 0.2);
  BOOST_TEST(max_abs_diff(got, ref) > 1e-3);  // it really ran in bf16 (float32 noise is ~1e-5)
  o.noise = f.m("mf.noise");
  ref = f.mel(f.turbo, o);
  got = f.mel(turbo, o);
  report("bf16 vs f32, mean flow (2 steps)", got, ref);
  BOOST_TEST(rel_l2(got, ref) <= 0.025);
  BOOST_TEST(max_abs_diff(got, ref) <= 0.15);
}

BOOST_AUTO_TEST_CASE(unsupported_precision_and_device_are_refused_at_load) {
  const auto& f = fx();
  S3GenLoadOptions o;
  o.precision = "f8";
  std::string e = error_of([&] { S3GenFlow::load(f.tiny, o); });
  BOOST_TEST(contains(e, "unknown precision 'f8' (use f32, bf16 or f16)"), e);
  // LibTorch 1.13's CPU kernels have no float16 GEMM: refused at load with
  // the failing operation named, never at the first utterance.
  o.precision = "f16";
  e = error_of([&] { S3GenFlow::load(f.tiny, o); });
  BOOST_TEST(contains(e, "precision 'f16' is not supported on device 'cpu'"), e);
  BOOST_TEST(contains(e, "Half"), e);
  o.precision = "f32";
  o.device = "tpu";
  e = error_of([&] { S3GenFlow::load(f.tiny, o); });
  BOOST_TEST(contains(e, "device 'tpu'"), e);
  if (!at::hasCUDA()) {
    o.device = "cuda";
    e = error_of([&] { S3GenFlow::load(f.tiny, o); });
    BOOST_TEST(contains(e, "CUDA is not available"), e);
  }
}
