// T3 with weight-only quantised decode GEMMs (t3 precision=bf16|int8), both
// backbones, on the tiny fixtures: the quantised model shares everything but
// the linear weights, reads the expected number of bytes, and its logits stay
// within the quantisation's own error of the float32 model's. That error is
// set by the weights' rounding (bf16: 2^-8 relative; int8: half a step of
// each row's max / 127), deterministic and 1000x any float32 summation-order
// effect, so its bounds (3x the values measured here) do not move between
// CPUs. The accuracy cost on full-size weights (per-step logits, greedy
// agreement, top-p sets) is measured by the bench (bench/results).
#define BOOST_TEST_MODULE t3_precision
#include <boost/test/unit_test.hpp>

#include "elements/t3/model/t3.h"
#include "elements/t3/model/t3_turbo.h"
#include "gst-plugins/core/checkpoint.h"
#include "tests/fixtures.h"
#include "tests/tensor_compare.h"
#include "tests/test_util.h"

#include <ATen/ATen.h>

#include <iostream>

using namespace chatterbox;
using namespace chatterbox::t3;
using chatterbox::test::contains;
using chatterbox::test::error_of;
using chatterbox::test::fixture;
using chatterbox::test::rel_l2;

namespace {

std::vector<int64_t> ids(const at::Tensor& t) {
  at::Tensor c = t.to(at::kLong).reshape({-1}).contiguous();
  return std::vector<int64_t>(c.data_ptr<int64_t>(), c.data_ptr<int64_t>() + c.numel());
}

// Greedy tokens of both, and how many lead the same way.
size_t common_prefix(const std::vector<int64_t>& a, const std::vector<int64_t>& b) {
  size_t i = 0;
  while (i < a.size() && i < b.size() && a[i] == b[i]) ++i;
  return i;
}

// Bounds on the rel-L2 of the last prefill position's logits (3x measured).
struct Bound {
  const char* precision;
  double llama, gpt2;
};
const Bound kBounds[] = {{"bf16", 3 * 0.0054, 3 * 0.0053}, {"int8", 3 * 0.019, 3 * 0.016}};

}  // namespace

BOOST_AUTO_TEST_CASE(llama_t3_in_each_precision) {
  Checkpoint ck = Checkpoint::open(fixture("t3/t3_tiny.safetensors"));
  T3Model f32 = T3Model::from_checkpoint(ck);
  T3Cond cond = T3Cond::from_checkpoint(ck, "test.cond.");
  const std::vector<int64_t> text = ids(ck.get_raw("test.text_ids"));
  at::Tensor x = f32.prefill_embeds(text, cond);
  auto last_logits = [&](const T3Model& m) {
    at::Tensor h = m.backbone(x);
    return m.speech_logits(h.select(1, h.size(1) - 1));
  };
  at::Tensor ref = last_logits(f32);
  BOOST_TEST(std::string(f32.precision()) == "f32");
  BOOST_TEST(at::equal(last_logits(f32.with_precision("f32")), ref));
  SamplingOptions greedy;
  greedy.greedy = true;
  greedy.max_new_tokens = 40;
  const std::vector<int64_t> ref_tokens = f32.inference(text, cond, greedy);
  for (const Bound& b : kBounds) {
    T3Model q = f32.with_precision(b.precision);
    BOOST_TEST(std::string(q.precision()) == b.precision);
    const double ratio = static_cast<double>(q.decode_weight_bytes()) / f32.decode_weight_bytes();
    // bf16: 2 of 4 bytes; int8: 1 byte a weight + a 4-byte scale and a
    // 4-byte code sum a row of K weights, (K + 8) / 4K: 0.31 at the tiny
    // models' K = 32, 0.252 at 1024.
    BOOST_TEST(ratio <= (std::string(b.precision) == "bf16" ? 0.5 : 0.32), b.precision << ": bytes ratio " << ratio);
    const double e = rel_l2(last_logits(q), ref);
    const std::vector<int64_t> tokens = q.inference(text, cond, greedy);
    std::cout << "llama " << b.precision << ": prefill logits rel-L2 " << e << ", greedy tokens agreeing "
              << common_prefix(tokens, ref_tokens) << " of " << ref_tokens.size() << "\n";
    BOOST_TEST(e <= b.llama, b.precision);
    BOOST_TEST(e > 0.0);  // it really ran quantised
    // Shared: the conditioning is the float32 model's.
    BOOST_TEST(at::equal(q.cond_embedding(cond), f32.cond_embedding(cond)));
  }
  BOOST_TEST(contains(error_of([&] { f32.with_precision("int4"); }), "unknown weight precision 'int4'"));
  BOOST_TEST(contains(error_of([&] { f32.with_precision("int8").with_precision("bf16"); }), "from the float32 model"));
}

BOOST_AUTO_TEST_CASE(gpt2_t3_in_each_precision) {
  Checkpoint ck = Checkpoint::open(fixture("t3_turbo/t3_turbo_tiny.safetensors"));
  T3TurboModel f32 = T3TurboModel::from_checkpoint(ck);
  T3Cond cond = T3Cond::from_checkpoint(ck, "test.cond.");
  const std::vector<int64_t> text = ids(ck.get_raw("test.text_tokens"));
  at::Tensor x = f32.prefill_embeds(text, cond);
  auto last_logits = [&](const T3TurboModel& m) {
    at::Tensor h = m.backbone(x);
    return m.speech_logits(h.select(1, h.size(1) - 1));
  };
  at::Tensor ref = last_logits(f32);
  BOOST_TEST(at::equal(last_logits(f32.with_precision("f32")), ref));
  TurboSamplingOptions greedy;
  greedy.greedy = true;
  greedy.max_new_tokens = 40;
  const std::vector<int64_t> ref_tokens = f32.inference(text, cond, greedy);
  for (const Bound& b : kBounds) {
    T3TurboModel q = f32.with_precision(b.precision);
    BOOST_TEST(std::string(q.precision()) == b.precision);
    const double ratio = static_cast<double>(q.decode_weight_bytes()) / f32.decode_weight_bytes();
    // bf16: 2 of 4 bytes; int8: 1 byte a weight + a 4-byte scale a row of
    // K weights, (K + 4) / 4K: 0.28 at the tiny models' K = 32, 0.251 at 1024.
    BOOST_TEST(ratio <= (std::string(b.precision) == "bf16" ? 0.5 : 0.29), b.precision << ": bytes ratio " << ratio);
    const double e = rel_l2(last_logits(q), ref);
    const std::vector<int64_t> tokens = q.inference(text, cond, greedy);
    std::cout << "gpt2 " << b.precision << ": prefill logits rel-L2 " << e << ", greedy tokens agreeing "
              << common_prefix(tokens, ref_tokens) << " of " << ref_tokens.size() << "\n";
    BOOST_TEST(e <= b.gpt2, b.precision);
    BOOST_TEST(e > 0.0);
  }
}
