// bench_api flow: the S3Gen flow (tokens -> mel) at Chatterbox's real widths
// with seeded random weights, timed through the library API.
//
//   bench_api flow --seconds S --prompt-seconds P --threads N --reps R
//                  [--warmup K] [--meanflow 0|1] [--precision f32|bf16]
//                  [--steps K] [--stream-chunk C] [--stream-reps R2]
//
// Whole-utterance inference of 25*S target tokens after a 25*P-token voice
// prompt (2*25*P prompt mel frames), R times after K warm-ups on a short
// input. With C > 0 also the upstream streaming rule (S3GenFlowStreamer:
// every C tokens all tokens so far are decoded again) over the same tokens,
// R2 times, plus how far its frames are from the whole decode started from
// the same target noise; with a precision other than f32, the deviation from
// float32 weights on the same call. Random weights: the deviations say how
// this architecture behaves, not how a trained model sounds.
#pragma once

#include "bench/bench_common.h"
#include "elements/s3gen/flow/s3gen_flow.h"

#include <ATen/CPUGeneratorImpl.h>
#include <c10/core/InferenceMode.h>

#include <iostream>

namespace bench {

inline int cmd_flow(const Args& a) {
  using nlohmann::json;
  const double seconds = a.num("seconds", 2), prompt_s = a.num("prompt-seconds", 2);
  const int threads = static_cast<int>(a.num("threads", 2)), reps = static_cast<int>(a.num("reps", 2));
  const int warmup = static_cast<int>(a.num("warmup", 1));
  const bool meanflow = a.num("meanflow", 0) != 0;
  const int64_t chunk = static_cast<int64_t>(a.num("stream-chunk", 0));
  const int stream_reps = static_cast<int>(a.num("stream-reps", 1));
  chatterbox::S3GenLoadOptions lo;
  lo.precision = a.str("precision", "f32");
  set_threads(threads);
  c10::InferenceMode guard;

  chatterbox::S3GenFlowConfig cfg;  // the published widths
  cfg.meanflow = meanflow;
  if (meanflow) cfg.n_timesteps = 2;
  const int64_t steps = static_cast<int64_t>(a.num("steps", static_cast<double>(cfg.n_timesteps)));
  const long rss0 = peak_rss_kb();
  auto t0 = Clock::now();
  chatterbox::S3GenFlow flow = chatterbox::S3GenFlow::random(cfg, 1, lo);
  json out{{"model", meanflow ? "s3gen-flow-meanflow" : "s3gen-flow"},
           {"seconds", seconds},
           {"prompt_seconds", prompt_s},
           {"threads", threads},
           {"precision", flow.precision()},
           {"steps", steps},
           {"build_ms", ms_since(t0)},
           {"rss_before_load_kb", rss0},
           {"rss_after_load_kb", peak_rss_kb()}};

  const int64_t n = static_cast<int64_t>(std::llround(25 * seconds));
  const int64_t p = static_cast<int64_t>(std::llround(25 * prompt_s));
  at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(7);
  at::Tensor tok = at::randint(0, 6561, {1, n}, gen, at::kLong);
  chatterbox::S3GenVoice voice{at::randint(0, 6561, {1, p}, gen, at::kLong), at::randn({1, 2 * p, 80}, gen),
                               at::randn({1, 192}, gen)};
  chatterbox::S3GenInferenceOptions o;
  o.n_timesteps = steps;
  o.seed = 5;
  for (int i = 0; i < warmup; ++i) flow.inference(tok.slice(1, 0, std::min<int64_t>(n, 10)), voice, o);
  std::vector<double> whole;
  at::Tensor mel;
  for (int i = 0; i < reps; ++i) {
    auto t = Clock::now();
    mel = flow.inference(tok, voice, o);
    whole.push_back(ms_since(t));
  }
  out["tokens"] = n;
  out["prompt_tokens"] = p;
  out["frames"] = mel.size(2);
  out["audio_s"] = mel.size(2) / 50.0;  // 50 mel frames per second
  out["whole_ms"] = whole;

  if (flow.precision() != "f32") {
    // The same call on float32 weights (same seed, same noise): the cost of
    // the reduced precision on this architecture's activations.
    chatterbox::S3GenFlow f32 = chatterbox::S3GenFlow::random(cfg, 1);
    at::Tensor ref = f32.inference(tok, voice, o);
    at::Tensor d = (mel - ref).to(at::kDouble);
    out["vs_f32"] = {{"max_abs", d.abs().max().item<double>()},
                     {"rel_l2", (d.norm() / ref.to(at::kDouble).norm()).item<double>()},
                     {"max_abs_f32", ref.abs().max().item<double>()}};
  }

  std::vector<double> streamed;
  if (chunk > 0) {
    chatterbox::S3GenStreamerOptions so;
    so.n_timesteps = steps;
    so.seed = 5;
    at::Tensor s_mel, target_noise;
    int64_t decodes = 0;
    for (int i = 0; i < stream_reps; ++i) {
      chatterbox::S3GenFlowStreamer st(flow, voice, so);
      std::vector<at::Tensor> parts;
      decodes = 0;
      auto t = Clock::now();
      for (int64_t s = 0; s < n; s += chunk, ++decodes)
        parts.push_back(st.push(tok.slice(1, s, std::min(n, s + chunk))));
      parts.push_back(st.finish());
      ++decodes;
      streamed.push_back(ms_since(t));
      s_mel = at::cat(parts, 2);
      target_noise = st.target_noise();
    }
    // The whole decode from the streamer's own target noise: what differs is
    // only the missing right context of the early decodes.
    chatterbox::S3GenInferenceOptions wo = o;
    wo.target_noise = target_noise;
    at::Tensor ref = flow.inference(tok, voice, wo);
    at::Tensor d = (s_mel - ref).to(at::kDouble);
    out["stream_chunk_tokens"] = chunk;
    out["stream_decodes"] = decodes;
    out["stream_vs_whole"] = {{"max_abs", d.abs().max().item<double>()},
                              {"rel_l2", (d.norm() / ref.to(at::kDouble).norm()).item<double>()},
                              {"max_abs_whole", ref.abs().max().item<double>()}};
  }
  out["stream_ms"] = streamed;
  out["at_threads"] = at::get_num_threads();
  out["peak_rss_kb"] = peak_rss_kb();
  std::cout << out.dump() << "\n";
  return 0;
}

}  // namespace bench
