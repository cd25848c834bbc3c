// bench_api window: the S3Gen flow's bounded-cost window streaming
// (S3GenStreamerOptions::left_context >= 0) against the whole-utterance
// decode, at Chatterbox's real widths with seeded random weights.
//
//   bench_api window --seconds S --prompt-seconds P --threads N
//                    [--meanflow 0|1] [--settings L:C,L:C,...] [--upstream-chunk C]
//                    [--weights FILE] [--inputs FILE] [--vocos FILE|random]
//
// For each setting (left-context L tokens, chunk C tokens): wall time of the
// whole stream (tokens pushed one by one), its ratio to the whole decode, the
// time of the first chunk, the work counted per decode, and the mel's
// deviation from the whole decode started from the same z (the streamer's
// prompt and target noise: only the windowing differs). With
// --upstream-chunk, upstream's re-decode-everything rule too. Random weights:
// the deviations describe this architecture, not a trained model's sound.
//
// --weights / --inputs: the checkpoint and the inputs (token, gen.* voice,
// noise z, upstream.whole_mel) bench/reference_flow_stream.py wrote, so this
// run does upstream's PyTorch run's math: the whole decode starts from the
// file's z and is compared with upstream's whole mel ("vs_upstream_whole":
// float32 rounding when the weight mapping is right). Without them: seeded
// random weights and inputs as before.
//
// Audio: every streamed mel and the whole mel are vocoded (whole-utterance
// Vocos, S3Gen layout: the embedded default model unless --vocos names
// another file or "random" for a full-size seeded random one) and compared
// with bench/quality's metrics, the whole decode's audio as reference
// ("audio_vs_whole": STOI, MCD, multi-resolution STFT, spectral similarity,
// SI-SNR, log-mel L1).
#pragma once

#include "bench/bench_common.h"
#include "bench/quality/metrics.h"
#include "elements/s3gen/flow/s3gen_flow.h"

#include <ATen/CPUGeneratorImpl.h>
#include <c10/core/InferenceMode.h>

#include <iostream>
#include <memory>
#include <optional>
#include <sstream>

#ifndef BENCH_DEFAULT_VOCOS
#define BENCH_DEFAULT_VOCOS "models/vocos-s3gen-small.safetensors"
#endif

namespace bench {

// The metrics of bench/quality for `test` audio against `ref` (24 kHz).
inline nlohmann::json audio_metrics(const at::Tensor& ref, const at::Tensor& test) {
  auto vec = [](const at::Tensor& a) {
    at::Tensor d = a.reshape({-1}).to(at::kDouble).contiguous();
    return std::vector<double>(d.data_ptr<double>(), d.data_ptr<double>() + d.numel());
  };
  const chatterbox::quality::Report r = chatterbox::quality::compare(vec(ref), vec(test), 24000);
  auto finite = [](double x) { return std::isfinite(x) ? nlohmann::json(x) : nlohmann::json(nullptr); };
  nlohmann::json j{{"stoi", r.stoi ? nlohmann::json(r.stoi->stoi) : nlohmann::json(nullptr)},
                   {"mcd_db", r.mcd_db},
                   {"mr_stft", r.mr_stft.total()},
                   {"spectral_similarity", r.spectral_similarity},
                   {"si_snr_db", finite(r.si_snr_db)},
                   {"log_mel_l1", r.log_mel_l1},
                   {"samples", r.samples}};
  if (!r.stoi) j["stoi_error"] = r.stoi_error;
  return j;
}

inline int cmd_window(const Args& a) {
  using nlohmann::json;
  const double seconds = a.num("seconds", 4), prompt_s = a.num("prompt-seconds", 6);
  const int threads = static_cast<int>(a.num("threads", 2));
  const bool meanflow = a.num("meanflow", 0) != 0;
  const int64_t up_chunk = static_cast<int64_t>(a.num("upstream-chunk", 0));
  set_threads(threads);
  c10::InferenceMode guard;
  const std::string weights = a.str("weights", ""), inputs = a.str("inputs", "");
  chatterbox::S3GenFlowConfig cfg;
  cfg.meanflow = meanflow;
  if (meanflow) cfg.n_timesteps = 2;
  chatterbox::S3GenFlow flow = weights.empty() ? chatterbox::S3GenFlow::random(cfg, 1) : chatterbox::S3GenFlow::load(weights);
  cfg = flow.config();
  int64_t n = static_cast<int64_t>(std::llround(25 * seconds));
  int64_t p = static_cast<int64_t>(std::llround(25 * prompt_s));
  at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(7);
  at::Tensor tok = at::randint(0, 6561, {1, n}, gen, at::kLong);
  chatterbox::S3GenVoice voice{at::randint(0, 6561, {1, p}, gen, at::kLong), at::randn({1, 2 * p, 80}, gen),
                               at::randn({1, 192}, gen)};
  std::optional<chatterbox::Checkpoint> in;
  if (!inputs.empty()) {
    in = chatterbox::Checkpoint::open(inputs);
    tok = in->get_raw("token").to(at::kLong);
    voice = chatterbox::S3GenVoice::from_checkpoint(*in, "gen.");
    n = tok.size(1);
    p = voice.prompt_token.size(1);
  }
  json out{{"model", cfg.meanflow ? "s3gen-flow-meanflow" : "s3gen-flow"}, {"tokens", n}, {"prompt_tokens", p},
           {"threads", threads}, {"steps", cfg.n_timesteps},
           {"weights", weights.empty() ? "seeded random (S3GenFlow::random, seed 1)" : weights}};

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
  if (in) {
    // The reference draws the same z with torch's CPU generator (the same
    // code as LibTorch's): the window rows then differ from the whole decode
    // by the windowing only, and the whole decode is upstream's.
    at::Tensor fz = in->get("noise");
    out["inputs_noise_vs_window_noise_max_abs"] =
        fz.sizes() == wo.noise.sizes() ? (fz - wo.noise).abs().max().item<double>() : -1.0;
    wo.noise = fz;
  }
  // The vocoder for the audio metrics (loaded before anything is timed; it
  // leaves the thread settings as they are).
  const std::string vocos = a.str("vocos", BENCH_DEFAULT_VOCOS);
  chatterbox::VocosLoadOptions vo;
  std::unique_ptr<chatterbox::VocosVocoder> voc =
      vocos == "random" ? chatterbox::VocosVocoder::random(chatterbox::VocosConfig::s3gen(512, 1536, 8), 5, vo)
                        : chatterbox::VocosVocoder::load(vocos, vo);
  out["vocos"] = vocos == "random" ? "full-size seeded random (dim 512, 8 layers)" : vocos;
  auto vocode = [&](const at::Tensor& mel) { return voc->forward(mel.contiguous()); };
  flow.inference(tok.slice(1, 0, 10), voice, wo);  // warm-up
  auto t = Clock::now();
  at::Tensor whole = flow.inference(tok, voice, wo);
  const double whole_ms = ms_since(t);
  out["whole_ms"] = whole_ms;
  out["audio_s"] = whole.size(2) / 50.0;

  auto deviation_from = [](const at::Tensor& m, const at::Tensor& ref) {
    at::Tensor d = (m - ref).to(at::kDouble);
    return json{{"rel_l2", (d.norm() / ref.to(at::kDouble).norm()).item<double>()},
                {"max_abs", d.abs().max().item<double>()}};
  };
  auto deviation = [&](const at::Tensor& m) { return deviation_from(m, whole); };
  if (in && in->has("upstream.whole_mel")) out["vs_upstream_whole"] = deviation_from(whole, in->get("upstream.whole_mel"));

  // The reference every streamed mel's audio is compared with.
  const at::Tensor whole_audio = vocode(whole);

  // `rule_whole`: upstream's rule draws its own target noise, so it is also
  // compared with a whole decode from that target noise (the prompt part
  // from z; the rule redraws it per call, as upstream): the same figure
  // reference_flow_stream.py gives for upstream's rule ("rule_vs_whole").
  auto run_stream = [&](chatterbox::S3GenStreamerOptions so, int64_t buf, bool rule_whole = false) {
    const bool window = so.left_context >= 0;
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
    // Only the full-length runs (not the one-push zero-cond check) are heard.
    if (buf == 1 && window) r["audio_vs_whole"] = audio_metrics(whole_audio, vocode(m));
    if (rule_whole) {
      chatterbox::S3GenInferenceOptions ro;
      ro.noise = at::cat({wo.noise.slice(2, 0, 2 * p), st.target_noise().slice(2, 0, 2 * n)}, 2);
      at::Tensor w2 = flow.inference(tok, voice, ro);
      r["vs_whole_same_target_noise"] = deviation_from(m, w2);
      r["audio_vs_whole"] = audio_metrics(vocode(w2), vocode(m));
    }
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
    // call): "vs_whole" (against the same whole decode) also holds the noise
    // difference, "vs_whole_same_target_noise" and its audio metrics not.
    json r = run_stream(so, up_chunk, true);
    r["chunk_tokens"] = up_chunk;
    out["upstream"] = r;
  }
  out["peak_rss_kb"] = peak_rss_kb();
  std::cout << out.dump() << "\n";
  return 0;
}

}  // namespace bench
