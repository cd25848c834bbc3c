// Bounded-cost window streaming of the S3Gen flow (S3GenStreamerOptions::
// left_context >= 0): work per chunk does not grow with the utterance, the
// output does not depend on how tokens are buffered, a window covering
// everything is the whole-utterance decode, chunk edges are seamless, and the
// mean-flow decoder streams the same way.
#define BOOST_TEST_MODULE s3gen_window
#include <boost/test/unit_test.hpp>

#include "elements/s3gen/flow/s3gen_flow.h"
#include "tests/fixtures.h"
#include "tests/tensor_compare.h"

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>

#include <algorithm>
#include <iostream>
#include <map>
#include <vector>

using namespace chatterbox;
using chatterbox::test::fixture;
using chatterbox::test::max_abs_diff;

namespace {

struct Tiny {
  Checkpoint ck = Checkpoint::open(fixture("s3gen/flow_tiny.safetensors"));
  S3GenFlow flow = S3GenFlow::load(ck);
  S3GenVoice voice{ck.get_raw("test.prompt_token"), ck.get("test.prompt_feat"), ck.get("test.embedding")};
};
const Tiny& tiny() {
  static Tiny t;
  return t;
}

// The mean-flow (Turbo) layout at the tiny widths: flow_tiny plus the
// meanflow fixture's time mixer.
struct TinyTurbo {
  S3GenFlow flow;
  static S3GenFlow make() {
    Checkpoint ck = Checkpoint::open(fixture("s3gen/flow_tiny.safetensors"));
    Checkpoint mf = Checkpoint::open(S3GEN_TEST_DIR "/flow_tiny_meanflow.safetensors");
    std::map<std::string, at::Tensor> w;
    for (const auto& k : ck.keys())
      if (k.rfind("test.", 0) != 0) w[k] = ck.get_raw(k);
    w["decoder.estimator.time_embed_mixer.weight"] = mf.get("decoder.estimator.time_embed_mixer.weight");
    const std::string path = "/tmp/s3gen_window_turbo_" + std::to_string(::getpid()) + ".safetensors";
    write_safetensors(path, w, {{"config", mf.metadata("config")}});
    S3GenFlow f = S3GenFlow::load(path);
    std::remove(path.c_str());
    return f;
  }
  TinyTurbo() : flow(make()) {}
};
const TinyTurbo& turbo() {
  static TinyTurbo t;
  return t;
}

// n random valid token ids (seeded).
at::Tensor random_tokens(int64_t n, uint64_t seed) {
  at::Generator g = at::make_generator<at::CPUGeneratorImpl>(seed);
  return at::randint(0, 6561, {1, n}, g, at::kLong);
}

S3GenStreamerOptions window_opts(int64_t left, int64_t chunk, uint64_t seed = 5) {
  S3GenStreamerOptions o;
  o.left_context = left;
  o.chunk_tokens = chunk;
  o.seed = seed;
  return o;
}

// Streams `tok` in buffers of `buf` tokens; returns the whole mel.
at::Tensor stream(S3GenFlowStreamer& st, const at::Tensor& tok, int64_t buf) {
  std::vector<at::Tensor> out;
  for (int64_t s = 0; s < tok.size(1); s += buf) out.push_back(st.push(tok.slice(1, s, std::min(s + buf, tok.size(1)))));
  out.push_back(st.finish());
  return at::cat(out, 2);
}

// Per-frame step size: L2 over the mel bins of mel[:, :, f] - mel[:, :, f-1].
std::vector<double> frame_steps(const at::Tensor& mel) {
  at::Tensor d = (mel.slice(2, 1) - mel.slice(2, 0, -1)).pow(2).sum(1).sqrt().reshape({-1}).to(at::kDouble).contiguous();
  return std::vector<double>(d.data_ptr<double>(), d.data_ptr<double>() + d.numel());
}

}  // namespace

BOOST_AUTO_TEST_CASE(work_per_chunk_does_not_grow_with_the_utterance) {
  const auto& t = tiny();
  const int64_t L = 12, C = 6, la = t.flow.config().pre_lookahead_len, r = t.flow.config().token_mel_ratio;
  std::vector<S3GenStreamStats> stats;
  for (int64_t n : {48, 192}) {
    S3GenFlowStreamer st(t.flow, t.voice, window_opts(L, C));
    at::Tensor mel = stream(st, random_tokens(n, 7), 5);
    BOOST_TEST(mel.size(2) == r * n);
    BOOST_TEST(st.emitted_frames() == r * n);
    const auto& s = st.stats();
    std::cout << "  window L=" << L << " C=" << C << ", " << n << " tokens: " << s.decodes << " decodes, max "
              << s.max_encoder_tokens << " encoder tokens / " << s.max_decoder_frames << " CFM frames per decode, "
              << s.decoder_frames << " CFM frames in all\n";
    // Every chunk: L context + C new + la look-ahead tokens, and the frames of
    // context + chunk; the last chunk (no look-ahead) holds the remaining
    // la .. C + la - 1 tokens.
    BOOST_TEST(s.max_encoder_tokens == L + C + la);
    BOOST_TEST(s.max_decoder_frames <= r * (L + C + la - 1));
    BOOST_TEST(s.decodes == (n - la) / C + 1);
    stats.push_back(s);
  }
  // Same bound whatever the length, and total work linear in it.
  BOOST_TEST(stats[0].max_encoder_tokens == stats[1].max_encoder_tokens);
  BOOST_TEST(stats[0].max_decoder_frames == stats[1].max_decoder_frames);
  const double per_token_short = double(stats[0].decoder_frames) / 48, per_token_long = double(stats[1].decoder_frames) / 192;
  BOOST_TEST(per_token_long <= per_token_short * 1.05);

  // Upstream's rule (left_context -1), for contrast: its largest decode grows
  // with the utterance.
  S3GenStreamerOptions up;
  up.seed = 5;
  std::vector<int64_t> up_max;
  for (int64_t n : {48, 192}) {
    S3GenFlowStreamer st(t.flow, t.voice, up);
    stream(st, random_tokens(n, 7), C);
    up_max.push_back(st.stats().max_decoder_frames);
  }
  std::cout << "  upstream rule: largest decode " << up_max[0] << " -> " << up_max[1] << " frames\n";
  BOOST_TEST(up_max[1] > up_max[0] + r * 100);
}

BOOST_AUTO_TEST_CASE(output_does_not_depend_on_buffering) {
  const auto& t = tiny();
  at::Tensor tok = random_tokens(41, 3);
  S3GenFlowStreamer a(t.flow, t.voice, window_opts(10, 4)), b(t.flow, t.voice, window_opts(10, 4));
  at::Tensor one = stream(a, tok, 1), many = stream(b, tok, 17);
  BOOST_TEST(at::equal(one, many));
  // Frames come out as soon as a chunk and its look-ahead are in.
  S3GenFlowStreamer c(t.flow, t.voice, window_opts(10, 4));
  BOOST_TEST(c.push(tok.slice(1, 0, 6)).size(2) == 0);
  BOOST_TEST(c.pending_tokens() == 6);
  BOOST_TEST(c.push(tok.slice(1, 6, 7)).size(2) == 8);  // 4 tokens + 3 look-ahead
  BOOST_TEST(c.pending_tokens() == 3);
  // reset() replays the same utterance bit for bit (same noise draw).
  c.reset();
  BOOST_TEST(at::equal(stream(c, tok, 1), one));
}

BOOST_AUTO_TEST_CASE(a_window_covering_everything_is_the_whole_decode) {
  // One chunk with the whole voice prompt as context is exactly inference()
  // from the same z (the streamer's prompt and target noise).
  const auto& t = tiny();
  at::Tensor tok = random_tokens(30, 9);
  const int64_t P = t.voice.prompt_token.size(1);
  S3GenFlowStreamer st(t.flow, t.voice, window_opts(P, 1000));
  at::Tensor streamed = stream(st, tok, 7);
  BOOST_TEST(st.stats().decodes == 1);
  // z as documented: prompt part randn([2P, 80]) from seed ^
  // 0xD1B54A32D192ED03, target part randn([F, 80]) from seed, transposed.
  at::Generator pg = at::make_generator<at::CPUGeneratorImpl>(5ull ^ 0xD1B54A32D192ED03ull);
  at::Tensor zp = at::randn({1, 2 * P, 80}, pg, at::kFloat).transpose(1, 2);
  S3GenInferenceOptions o;
  o.noise = at::cat({zp, st.target_noise()}, 2);
  at::Tensor whole = t.flow.inference(tok, t.voice, o);
  const double d = max_abs_diff(streamed, whole);
  std::cout << "  single-window stream vs whole decode, same z: max abs " << d << "\n";
  BOOST_TEST(d == 0.0);
}

BOOST_AUTO_TEST_CASE(chunk_edges_are_seamless) {
  // The step from the last frame of a chunk to the first of the next is no
  // larger than the mel's own frame-to-frame steps: every edge step within
  // the largest step inside the chunks, and edge steps on average within
  // 25 % of the inside ones (the tiny random model's mel moves by ~15 per
  // frame everywhere; a seam would stand out as edges stepping further).
  const auto& t = tiny();
  for (bool meanflow : {false, true}) {
    const S3GenFlow& flow = meanflow ? turbo().flow : t.flow;
    for (auto [L, C] : {std::pair<int64_t, int64_t>{8, 4}, {20, 10}}) {
      S3GenFlowStreamer st(flow, t.voice, window_opts(L, C, 21));
      at::Tensor mel = stream(st, random_tokens(120, 13), 3);
      BOOST_REQUIRE(mel.isfinite().all().item<bool>());
      const std::vector<double> step = frame_steps(mel);  // step[f-1]: frame f-1 -> f
      const int64_t cf = 2 * C;
      double edge_mean = 0, edge_max = 0, inner_mean = 0, inner_max = 0;
      int64_t ne = 0, ni = 0;
      for (int64_t f = 1; f < mel.size(2); ++f) {
        const double d = step[f - 1];
        if (f % cf == 0) {
          edge_mean += d, ++ne, edge_max = std::max(edge_max, d);
        } else {
          inner_mean += d, ++ni, inner_max = std::max(inner_max, d);
        }
      }
      edge_mean /= ne;
      inner_mean /= ni;
      std::cout << "  " << (meanflow ? "mean flow" : "standard") << " L=" << L << " C=" << C << ", " << ne
                << " edges: step at edges mean " << edge_mean << " max " << edge_max << "; inside mean " << inner_mean
                << " max " << inner_max << "\n";
      BOOST_TEST(edge_max <= inner_max);
      BOOST_TEST(edge_mean <= 1.25 * inner_mean);
    }
  }
}

BOOST_AUTO_TEST_CASE(noise_does_not_depend_on_chunking) {
  const auto& t = tiny();
  at::Tensor tok = random_tokens(40, 2);
  S3GenFlowStreamer a(t.flow, t.voice, window_opts(8, 3)), b(t.flow, t.voice, window_opts(8, 11));
  stream(a, tok, 1);
  stream(b, tok, 40);
  at::Generator g = at::make_generator<at::CPUGeneratorImpl>(5);
  at::Tensor z = at::randn({1, 80, 80}, g, at::kFloat).transpose(1, 2);
  BOOST_TEST(at::equal(a.target_noise(), z));
  BOOST_TEST(at::equal(b.target_noise(), z));
}

BOOST_AUTO_TEST_CASE(deviation_from_the_whole_decode_is_reported) {
  // Not a bound (random weights attend everywhere); the numbers land in the
  // log and the bench publishes them for the real sizes.
  const auto& t = tiny();
  at::Tensor tok = random_tokens(60, 17);
  for (auto [L, C] : {std::pair<int64_t, int64_t>{10, 5}, {25, 10}, {50, 25}}) {
    S3GenFlowStreamer st(t.flow, t.voice, window_opts(L, C));
    at::Tensor mel = stream(st, tok, 4);
    at::Generator pg = at::make_generator<at::CPUGeneratorImpl>(5ull ^ 0xD1B54A32D192ED03ull);
    S3GenInferenceOptions o;
    o.noise = at::cat({at::randn({1, 2 * t.voice.prompt_token.size(1), 80}, pg, at::kFloat).transpose(1, 2), st.target_noise()}, 2);
    at::Tensor whole = t.flow.inference(tok, t.voice, o);
    const double rel = chatterbox::test::rel_l2(mel, whole);
    std::cout << "  L=" << L << " C=" << C << ": rel L2 " << rel << ", max abs " << max_abs_diff(mel, whole) << "\n";
    BOOST_TEST(std::isfinite(rel));
    BOOST_TEST(rel > 0.0);
  }
}

BOOST_AUTO_TEST_CASE(bad_settings_are_refused) {
  const auto& t = tiny();
  BOOST_CHECK_THROW(S3GenFlowStreamer(t.flow, t.voice, window_opts(4, 0)), ModelError);
  S3GenFlowStreamer st(t.flow, t.voice, window_opts(0, 3));  // no context at all: still works
  at::Tensor mel = stream(st, random_tokens(10, 1), 2);
  BOOST_TEST(mel.size(2) == 20);
  BOOST_TEST(mel.isfinite().all().item<bool>());
  BOOST_TEST(st.stats().max_encoder_tokens <= 6);
}
