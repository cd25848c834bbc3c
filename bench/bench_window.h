// bench_api window: the S3Gen flow's bounded-cost window streaming
// (S3GenStreamerOptions::left_context >= 0) against the whole-utterance
// decode, at Chatterbox's real widths with seeded random weights.
//
//   bench_api window --seconds S --prompt-seconds P --threads N
//                    [--meanflow 0|1] [--settings L:C,L:C,...] [--upstream-chunk C]
//
// For each setting (left-context L tokens, chunk C tokens): wall time of the
// whole stream (tokens pushed one by one), its ratio to the whole decode, the
// time of the first chunk, the work counted per decode, and the mel's
// deviation from the whole decode started from the same z (the streamer's
// prompt and target noise: only the windowing differs). With
// --upstream-chunk, upstream's re-decode-everything rule too. Random weights:
// the deviations describe this architecture, not a trained model's sound.
#pragma once

#include "bench/bench_common.h"
#include "elements/s3gen/flow/s3gen_flow.h"

#include <ATen/CPUGeneratorImpl.h>
#include <c10/core/InferenceMode.h>

#include <iostream>
#include <sstream>

namespace bench {

inline int cmd_window(const Args& a) {
  using nlohmann::json;
  const double seconds = a.num("seconds", 4), prompt_s = a.num("prompt-seconds", 6);
  const int threads = static_cast<int>(a.num("threads", 2));
  const bool meanflow = a.num("meanflow", 0) != 0;
  const int64_t up_chunk = static_cast<int64_t>(a.num("upstream-chunk", 0));
  set_threads(threads);
  c10::InferenceMode guard;
  chatterbox::S3GenFlowConfig cfg;
  cfg.meanflow = meanflow;
  if (meanflow) cfg.n_timesteps = 2;
  chatterbox::S3GenFlow flow = chatterbox::S3GenFlow::random(cfg, 1);
  const int64_t n = static_cast<int64_t>(std::llround(25 * seconds));
  const int64_t p = static_cast<int64_t>(std::llround(25 * prompt_s));
  at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(7);
  at::Tensor tok = at::randint(0, 6561, {1, n}, gen, at::kLong);
  chatterbox::S3GenVoice voice{at::randint(0, 6561, {1, p}, gen, at::kLong), at::randn({1, 2 * p, 80}, gen),
                               at::randn({1, 192}, gen)};
  json out{{"model", meanflow ? "s3gen-flow-meanflow" : "s3gen-flow"}, {"tokens", n}, {"prompt_tokens", p},
           {"threads", threads}, {"steps", cfg.n_timesteps}};

  // The window streamer's z (docs/s3gen-streaming.md): prompt part
  // randn([2P, 80]) from seed ^ 0xD1B54A32D192ED03, target part randn([F, 80])
  // from seed, both transposed; independent of the chunking.
  const uint64_t seed = 5;
  at::Generator pg = at::make_generator<at::CPUGeneratorImpl>(seed ^ 0xD1B54A32D192ED03ull);
  at::Tensor zp = at::randn({1, 2 * p, 80}, pg, at::kFloat).transpose(1, 2);
  at::Generator tg = at::make_generator<at::CPUGeneratorImpl>(seed);
  at::Tensor zt = at::randn({1, 2 * n, 80}, tg, at::kFloat).transpose(1, 2);
  chatterbox::S3GenInferenceOptions wo;
  wo.noise = at::cat({zp, zt}, 2);
  flow.inference(tok.slice(1, 0, 10), voice, wo);  // warm-up
  auto t = Clock::now();
  at::Tensor whole = flow.inference(tok, voice, wo);
  const double whole_ms = ms_since(t);
  out["whole_ms"] = whole_ms;
  out["audio_s"] = whole.size(2) / 50.0;

  auto deviation = [&](const at::Tensor& m) {
    at::Tensor d = (m - whole).to(at::kDouble);
    return json{{"rel_l2", (d.norm() / whole.to(at::kDouble).norm()).item<double>()},
                {"max_abs", d.abs().max().item<double>()}};
  };
  auto run_stream = [&](chatterbox::S3GenStreamerOptions so, int64_t buf) {
    chatterbox::S3GenFlowStreamer st(flow, voice, so);
    std::vector<at::Tensor> parts;
    double first_ms = -1;
    std::vector<double> chunk_ms;
    auto t0 = Clock::now();
    for (int64_t s = 0; s < n; s += buf) {
      auto tc = Clock::now();
      parts.push_back(st.push(tok.slice(1, s, std::min(n, s + buf))));
      if (parts.back().size(2) > 0) {
        chunk_ms.push_back(ms_since(tc));
        if (first_ms < 0) first_ms = ms_since(t0);
      }
    }
    parts.push_back(st.finish());
    const double total = ms_since(t0);
    at::Tensor m = at::cat(parts, 2);
    const auto& w = st.stats();
    std::sort(chunk_ms.begin(), chunk_ms.end());
    json r{{"stream_ms", total},
           {"cost_ratio", total / whole_ms},
           {"first_chunk_ms", first_ms},
           {"chunk_ms_median", chunk_ms.empty() ? 0.0 : chunk_ms[chunk_ms.size() / 2]},
           {"chunk_ms_max", chunk_ms.empty() ? 0.0 : chunk_ms.back()},
           {"decodes", w.decodes},
           {"max_encoder_tokens", w.max_encoder_tokens},
           {"max_decoder_frames", w.max_decoder_frames},
           {"decoder_frames", w.decoder_frames},
           {"frames", m.size(2)},
           {"vs_whole", deviation(m)}};
    return r;
  };
  json rows = json::array();
  std::stringstream ss(a.str("settings", "25:25,50:25,100:25,50:10"));
  std::string item;
  while (std::getline(ss, item, ',')) {
    const auto colon = item.find(':');
    chatterbox::S3GenStreamerOptions so;
    so.left_context = std::stoll(item.substr(0, colon));
    so.chunk_tokens = std::stoll(item.substr(colon + 1));
    so.seed = seed;
    json r = run_stream(so, 1);  // tokens one by one, as T3 emits them
    r["left_context"] = so.left_context;
    r["chunk_tokens"] = so.chunk_tokens;
    so.context_cond = false;
    r["vs_whole_zero_cond"] = run_stream(so, n)["vs_whole"];
    rows.push_back(r);
    std::cerr << item << ": " << r.dump() << "\n";
  }
  out["window"] = rows;
  if (up_chunk > 0) {
    chatterbox::S3GenStreamerOptions so;
    so.seed = seed;
    // Upstream's rule draws other noise (channel-major target, prompt per
    // call): its deviation here is against the same whole decode, so it also
    // holds the noise difference; bench_api flow --stream-chunk publishes the
    // same-noise figure.
    json r = run_stream(so, up_chunk);
    r["chunk_tokens"] = up_chunk;
    out["upstream"] = r;
  }
  out["peak_rss_kb"] = peak_rss_kb();
  std::cout << out.dump() << "\n";
  return 0;
}

}  // namespace bench
