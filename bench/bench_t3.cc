// T3 (text -> speech tokens) at full size with seeded random weights, and the
// whole text-to-audio path through the libraries. One JSON object on stdout.
//
//   bench_t3 decode --family original|turbo|nano --precision f32|bf16|int8
//                   --threads N [--tokens K] [--text-tokens T] [--reps R]
//                   [--weights FILE]  (every command: load FILE instead of
//                   random weights, e.g. reference_t3.py --make-weights)
//       prefill time (voice prompt + T text tokens; the CFG pair for the
//       original model), decode ms per token (median of K steps, R runs),
//       weight bytes read per token and their rate, peak RSS.
//   bench_t3 accuracy --family F --precision bf16|int8 [--steps S]
//       the quantised model against float32 on the float32 model's sampled
//       trajectory (the quantised one is forced onto it): per-step logit
//       rel-L2, argmax agreement, Jaccard overlap of the candidate sets that
//       survive min-p / top-k+top-p; and free-running greedy decodes: steps
//       until the first different token.
//   bench_t3 e2e --family F --precision P --threads N [--text-tokens T]
//       text ids -> T3 tokens -> S3Gen flow (standard 10-step CFG for the
//       original model, 2-step mean flow for Turbo/Nano) -> Vocos (S3Gen
//       layout) -> 24 kHz audio: ms per stage, real-time factor, time to
//       first audio (T3 and the flow decode an utterance whole by default),
//       peak RSS.
//   bench_t3 live --family F --precision P --threads N [--text-tokens T]
//                 [--tokens K] [--stream-left L] [--stream-chunk C]
//       the same path live: T3 tokens one by one into the window-streamed
//       flow (S3GenFlowStreamer left_context L, chunk C; 50 / 25 by default)
//       and the streaming Vocos: time to first audio after the text, RTF,
//       the underruns a real-time sink starting at the first sample would
//       hear (count, total and longest gap), peak RSS.
#include "bench/bench_common.h"
#include "elements/s3gen/flow/s3gen_flow.h"
#include "elements/t3/model/t3.h"
#include "elements/t3/model/t3_turbo.h"
#include "gst-plugins/core/compute_threads.h"
#include "gst-plugins/core/kernels/cpu_path.h"

#include <ATen/CPUGeneratorImpl.h>
#include <c10/core/InferenceMode.h>

#include <algorithm>
#include <optional>
#include <type_traits>
#include <iostream>
#include <set>

using nlohmann::json;
using namespace bench;
using namespace chatterbox::t3;

namespace {

// --weights FILE: load the family's model from a real-layout checkpoint
// (bench/reference_t3.py --make-weights writes one, so the PyTorch reference
// times the same weights) instead of building random ones.
std::string g_weights;

double median(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

// A voice for the family: speaker embedding, a prompt of P speech tokens
// (150 for the original model, 375 for Turbo/Nano), exaggeration 0.5.
T3Cond random_cond(int64_t prompt_tokens, uint64_t seed) {
  at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(seed);
  T3Cond c;
  c.speaker_emb = at::randn({1, 256}, gen);
  c.speaker_emb = c.speaker_emb / c.speaker_emb.norm();
  c.cond_prompt_speech_tokens = at::randint(0, 6561, {1, prompt_tokens}, gen, at::kLong);
  c.emotion_adv = at::full({1, 1, 1}, 0.5);
  return c;
}

std::vector<int64_t> random_text(int64_t n, int64_t vocab, uint64_t seed) {
  at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(seed);
  at::Tensor t = at::randint(1, vocab - 1, {n}, gen, at::kLong);
  return std::vector<int64_t>(t.data_ptr<int64_t>(), t.data_ptr<int64_t>() + n);
}

// Both families behind one face: model, generator type, options.
struct Original {
  using Model = T3Model;
  using Gen = T3Generator;
  using Opts = SamplingOptions;
  static constexpr int64_t kPrompt = 150;
  // Speaker, the Perceiver's 32 latents for the prompt, emotion, then
  // start-of-text + text + end-of-text, then the start-of-speech token.
  static int64_t prefill_positions(int64_t text_n) { return 1 + 32 + 1 + (text_n + 2) + 1; }
  static Model make() { return g_weights.empty() ? T3Model::random(T3Config::english(), 1234) : T3Model::load(g_weights); }
  static int64_t text_vocab(const Model& m) { return m.config().text_tokens_dict_size; }
  static const at::Tensor& logits(const Gen& g) { return g.last_cfg_logits(); }
};
template <class G2>
struct Gpt2Family {
  using Model = T3TurboModel;
  using Gen = T3TurboGenerator;
  using Opts = TurboSamplingOptions;
  static constexpr int64_t kPrompt = 375;
  // Speaker, the whole prompt, the text (no start/end tokens), start of speech.
  static int64_t prefill_positions(int64_t text_n) { return 1 + kPrompt + text_n + 1; }
  static Model make() {
    return g_weights.empty() ? T3TurboModel::random(G2::config(), 1234) : T3TurboModel::load(g_weights);
  }
  static int64_t text_vocab(const Model& m) { return m.config().text_tokens_dict_size; }
  static const at::Tensor& logits(const Gen& g) { return g.last_logits(); }
};
struct TurboCfg {
  static T3TurboConfig config() { return T3TurboConfig::turbo(); }
};
struct NanoCfg {
  static T3TurboConfig config() { return T3TurboConfig::nano(); }
};

template <class F>
json decode(const Args& a) {
  const std::string precision = a.str("precision", "f32");
  const int threads = static_cast<int>(a.num("threads", 2));
  const int64_t tokens = static_cast<int64_t>(a.num("tokens", 30)), text_n = static_cast<int64_t>(a.num("text-tokens", 60));
  const int reps = static_cast<int>(a.num("reps", 2));
  set_threads(threads);
  auto t0 = Clock::now();
  const typename F::Model model = F::make().with_precision(precision);
  json out{{"build_ms", ms_since(t0)}, {"precision", model.precision()}, {"threads", threads}};
  const T3Cond cond = random_cond(F::kPrompt, 3);
  const std::vector<int64_t> text = random_text(text_n, F::text_vocab(model), 4);
  std::vector<double> prefill, step;
  int64_t produced = 0;
  for (int r = 0; r < reps; ++r) {
    typename F::Opts o;
    o.seed = 11 + r;
    o.max_new_tokens = tokens + 1;
    typename F::Gen g(model, o);
    auto tp = Clock::now();
    g.start(text, cond);
    prefill.push_back(ms_since(tp));
    for (int64_t i = 0; i < tokens; ++i) {
      auto ts = Clock::now();
      if (g.next_token() < 0) break;
      if (i > 0) step.push_back(ms_since(ts));  // step 0 only samples from the prefill's logits
      ++produced;
    }
  }
  const double ms = median(step);
  const double bytes = static_cast<double>(model.decode_weight_bytes());
  out["prefill_positions"] = F::prefill_positions(text_n);
  out["prefill_ms"] = prefill;
  out["ms_per_token"] = ms;
  out["ms_per_token_all"] = step;
  out["tokens_per_run"] = produced / std::max(1, reps);
  out["weight_mib_per_token"] = bytes / 1048576.0;
  out["weights_gbps"] = ms > 0 ? bytes / (ms * 1e-3) / 1e9 : 0;
  out["t3_s_per_audio_s"] = ms * 25 / 1000.0;  // 25 tokens per second of speech
  out["peak_rss_kb"] = peak_rss_kb();
  return out;
}

// Candidate set of a distribution: entries with probability > 0.
std::set<int64_t> support(const at::Tensor& p) {
  at::Tensor idx = (p > 0).nonzero().reshape({-1}).to(at::kLong).contiguous();
  return std::set<int64_t>(idx.data_ptr<int64_t>(), idx.data_ptr<int64_t>() + idx.numel());
}

template <class F>
json accuracy(const Args& a) {
  const std::string precision = a.str("precision", "int8");
  const int64_t steps = static_cast<int64_t>(a.num("steps", 100));
  set_threads(static_cast<int>(a.num("threads", 2)));
  const typename F::Model f32 = F::make();
  const typename F::Model q = f32.with_precision(precision);
  const T3Cond cond = random_cond(F::kPrompt, 3);
  const std::vector<int64_t> text = random_text(60, F::text_vocab(f32), 4);
  // The float32 model's sampled run, its logits and candidate sets per step.
  typename F::Opts o;
  o.seed = 21;
  o.max_new_tokens = steps;
  typename F::Gen gf(f32, o);
  gf.start(text, cond);
  std::vector<at::Tensor> logits_f, probs_f;
  std::vector<int64_t> traj;
  for (int64_t i = 0; i < steps; ++i) {
    const int64_t t = gf.next_token();
    if (t < 0) break;
    traj.push_back(t);
    logits_f.push_back(F::logits(gf).clone());
    probs_f.push_back(gf.last_probs().clone());
  }
  // The quantised model forced onto that trajectory: the draw q is tiny for
  // the float32 model's token, so argmax(p / q) picks it whenever the
  // quantised distribution keeps it (p > 0).
  typename F::Opts oq = o;
  oq.draws = [&](int64_t step) {
    at::Tensor d = at::ones({f32.config().speech_tokens_dict_size});
    if (step < static_cast<int64_t>(traj.size())) d[traj[step]] = 1e-30f;
    return d;
  };
  typename F::Gen gq(q, oq);
  gq.start(text, cond);
  std::vector<double> rel, jaccard;
  int64_t argmax_equal = 0, forced_off = -1, n = 0;
  for (size_t i = 0; i < traj.size(); ++i) {
    const int64_t t = gq.next_token();
    if (t < 0) break;
    const at::Tensor& lq = F::logits(gq);
    rel.push_back(((lq - logits_f[i]).norm() / logits_f[i].norm()).item<double>());
    argmax_equal += lq.argmax().item<int64_t>() == logits_f[i].argmax().item<int64_t>();
    const std::set<int64_t> a_set = support(probs_f[i]), b_set = support(gq.last_probs());
    std::vector<int64_t> both;
    std::set_intersection(a_set.begin(), a_set.end(), b_set.begin(), b_set.end(), std::back_inserter(both));
    jaccard.push_back(static_cast<double>(both.size()) / (a_set.size() + b_set.size() - both.size()));
    ++n;
    if (t != traj[i]) {  // the quantised distribution dropped the token: the trajectories part
      forced_off = static_cast<int64_t>(i);
      break;
    }
  }
  // Free-running greedy decodes of both.
  typename F::Opts og;
  og.greedy = true;
  og.max_new_tokens = steps;
  const std::vector<int64_t> gfree = f32.inference(text, cond, og), gq_free = q.inference(text, cond, og);
  int64_t same = 0;
  while (same < static_cast<int64_t>(std::min(gfree.size(), gq_free.size())) && gfree[same] == gq_free[same]) ++same;
  double mean_rel = 0, mean_j = 0, max_rel = 0;
  for (double r : rel) mean_rel += r / rel.size(), max_rel = std::max(max_rel, r);
  for (double j : jaccard) mean_j += j / jaccard.size();
  return json{{"precision", precision},
              {"steps_compared", n},
              {"logits_rel_l2_mean", mean_rel},
              {"logits_rel_l2_max", max_rel},
              {"argmax_agreement", n ? static_cast<double>(argmax_equal) / n : 0.0},
              {"candidate_set_jaccard_mean", mean_j},
              {"forced_trajectory_lost_at", forced_off},
              {"greedy_steps", gfree.size()},
              {"greedy_first_difference", same}};
}

template <class F>
json e2e(const Args& a, bool meanflow) {
  const std::string precision = a.str("precision", "f32");
  const int threads = static_cast<int>(a.num("threads", 2));
  const int64_t text_n = static_cast<int64_t>(a.num("text-tokens", 60)), tokens = static_cast<int64_t>(a.num("tokens", 100));
  set_threads(threads);
  const typename F::Model t3 = F::make().with_precision(precision);
  chatterbox::S3GenFlowConfig fc;
  fc.meanflow = meanflow;
  if (meanflow) fc.n_timesteps = 2;
  chatterbox::S3GenFlow flow = chatterbox::S3GenFlow::random(fc, 1);
  auto voc = chatterbox::VocosVocoder::random(chatterbox::VocosConfig::s3gen(512, 1536, 8), 5);
  const T3Cond cond = random_cond(F::kPrompt, 3);
  const std::vector<int64_t> text = random_text(text_n, F::text_vocab(t3), 4);
  at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(7);
  const int64_t p = 150;  // 6 s S3Gen voice prompt
  chatterbox::S3GenVoice voice{at::randint(0, 6561, {1, p}, gen, at::kLong), at::randn({1, 2 * p, 80}, gen),
                               at::randn({1, 192}, gen)};
  json out{{"precision", t3.precision()}, {"threads", threads}, {"meanflow", meanflow}};
  const auto t0 = Clock::now();
  // T3: a fixed number of tokens (random weights would stop anywhere).
  typename F::Opts o;
  o.seed = 9;
  o.max_new_tokens = tokens + 1;
  typename F::Gen g(t3, o);
  g.start(text, cond);
  const double prefill_ms = ms_since(t0);
  std::vector<int64_t> toks;
  while (static_cast<int64_t>(toks.size()) < tokens) {
    int64_t t = g.next_token();
    if (t < 0) break;
    toks.push_back(t % 6561);  // keep the count fixed: a stop or special id becomes an ordinary token
  }
  const double t3_ms = ms_since(t0);
  const auto t1 = Clock::now();
  chatterbox::S3GenInferenceOptions io;
  io.seed = 5;
  at::Tensor mel = flow.inference(at::tensor(toks, at::kLong).unsqueeze(0), voice, io);
  const double flow_ms = ms_since(t1);
  const auto t2 = Clock::now();
  at::Tensor audio = voc->forward(mel);
  const double voc_ms = ms_since(t2);
  const double total = ms_since(t0), audio_s = audio.numel() / 24000.0;
  // Time to first audio with whole-utterance T3 and flow (the element
  // defaults): everything but the vocoder's remaining frames; the vocoder
  // emits its first samples after its lookahead (29 frames of 20 ms).
  const double vocoder_first_ms = voc_ms * std::min(1.0, 30.0 / std::max<int64_t>(1, mel.size(2)));
  out["tokens"] = toks.size();
  out["audio_s"] = audio_s;
  out["t3_prefill_ms"] = prefill_ms;
  out["t3_ms"] = t3_ms;
  out["t3_ms_per_token"] = (t3_ms - prefill_ms) / std::max<size_t>(1, toks.size());
  out["flow_ms"] = flow_ms;
  out["vocoder_ms"] = voc_ms;
  out["total_ms"] = total;
  out["rtf"] = total / 1000.0 / audio_s;  // < 1: faster than real time
  out["time_to_first_audio_ms"] = t3_ms + flow_ms + vocoder_first_ms;
  out["peak_rss_kb"] = peak_rss_kb();
  return out;
}

// A real-time sink that starts playing when the first samples arrive and
// pauses (an underrun) whenever the next buffer is not there at its playback
// time, resuming when it arrives. arrivals: (ms after the text, samples).
json playback(const std::vector<std::pair<double, int64_t>>& arrivals, double sr) {
  double play = -1, gap_total = 0, gap_max = 0;
  int underruns = 0;
  for (const auto& [ms, k] : arrivals) {
    if (play < 0) play = ms;
    if (ms > play + 0.5) {  // 0.5 ms: timer noise, not an audible gap
      underruns++;
      gap_total += ms - play;
      gap_max = std::max(gap_max, ms - play);
      play = ms;
    }
    play += 1000.0 * k / sr;
  }
  return json{{"underruns", underruns}, {"underrun_total_ms", gap_total}, {"underrun_max_ms", gap_max}};
}

// Text -> T3 tokens one by one -> window-streamed flow -> streaming Vocos,
// as t3 ! s3genmel chunk-tokens=C left-context=L ! vocosdec run: when each
// audio buffer would leave, and what a real-time sink would hear.
template <class F>
json e2e_live(const Args& a, bool meanflow) {
  const std::string precision = a.str("precision", "f32");
  const int threads = static_cast<int>(a.num("threads", 2));
  const int64_t text_n = static_cast<int64_t>(a.num("text-tokens", 60)), tokens = static_cast<int64_t>(a.num("tokens", 100));
  set_threads(threads);
  const typename F::Model t3 = F::make().with_precision(precision);
  chatterbox::S3GenFlowConfig fc;
  fc.meanflow = meanflow;
  if (meanflow) fc.n_timesteps = 2;
  chatterbox::S3GenFlow flow = chatterbox::S3GenFlow::random(fc, 1);
  auto voc = chatterbox::VocosVocoder::random(chatterbox::VocosConfig::s3gen(512, 1536, 8), 5);
  const T3Cond cond = random_cond(F::kPrompt, 3);
  const std::vector<int64_t> text = random_text(text_n, F::text_vocab(t3), 4);
  at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(7);
  const int64_t p = 150;  // 6 s S3Gen voice prompt
  chatterbox::S3GenVoice voice{at::randint(0, 6561, {1, p}, gen, at::kLong), at::randn({1, 2 * p, 80}, gen),
                               at::randn({1, 192}, gen)};
  chatterbox::S3GenStreamerOptions so;
  so.left_context = static_cast<int64_t>(a.num("stream-left", 50));
  so.chunk_tokens = static_cast<int64_t>(a.num("stream-chunk", 25));
  so.seed = 5;
  so.append_silence_on_finish = meanflow;
  chatterbox::S3GenFlowStreamer st(flow, voice, so);
  json out{{"precision", t3.precision()}, {"threads", threads}, {"meanflow", meanflow},
           {"left_context", so.left_context}, {"chunk_tokens", so.chunk_tokens}, {"vocoder_lookahead_frames", voc->lookahead_frames()}};
  std::vector<std::pair<double, int64_t>> arrivals;
  double t3_ms = 0, flow_ms = 0, voc_ms = 0;
  int64_t samples = 0;
  auto t0 = Clock::now();  // reset when the text arrives (below)
  auto vocode = [&](const at::Tensor& mel) {  // mel [1, 80, k]
    if (mel.size(2) == 0) return;
    auto tv = Clock::now();
    at::Tensor y = voc->feed(mel[0].transpose(0, 1).contiguous());
    voc_ms += ms_since(tv);
    if (y.numel() > 0) arrivals.emplace_back(ms_since(t0), y.numel());
    samples += y.numel();
  };
  typename F::Opts o;
  o.seed = 9;
  o.max_new_tokens = tokens + 1;
  // --warm-voice 1 (Turbo, Nano): a voice agent's later sentences. An earlier
  // sentence in the same voice ran before the clock starts, so the t3
  // element's prompt cache holds the voice prompt's keys and values.
  const bool warm = a.num("warm-voice", 0) != 0;
  std::optional<typename F::Gen> gen_slot;
  if constexpr (std::is_same_v<typename F::Gen, T3TurboGenerator>) {
    auto cache = std::make_shared<chatterbox::t3::T3TurboPromptCache>();
    if (warm) T3TurboGenerator(t3, o, cache).start(random_text(text_n, F::text_vocab(t3), 5), cond);
    gen_slot.emplace(t3, o, cache);
  } else {
    gen_slot.emplace(t3, o);
  }
  out["warm_voice"] = warm && std::is_same_v<typename F::Gen, T3TurboGenerator>;
  typename F::Gen& g = *gen_slot;
  t0 = Clock::now();  // the text arrives
  g.start(text, cond);
  const double prefill_ms = ms_since(t0);
  t3_ms = prefill_ms;
  for (int64_t i = 0; i < tokens; ++i) {
    auto tt = Clock::now();
    int64_t tk = g.next_token();
    t3_ms += ms_since(tt);
    if (tk < 0) break;
    auto tf = Clock::now();
    at::Tensor mel = st.push(at::tensor({tk % 6561}, at::kLong));
    flow_ms += ms_since(tf);
    vocode(mel);
  }
  auto tf = Clock::now();
  at::Tensor last = st.finish();
  flow_ms += ms_since(tf);
  vocode(last);
  auto tv = Clock::now();
  at::Tensor rest = voc->drain();
  voc_ms += ms_since(tv);
  if (rest.numel() > 0) arrivals.emplace_back(ms_since(t0), rest.numel());
  samples += rest.numel();
  const double total = ms_since(t0), audio_s = samples / 24000.0;
  out["tokens"] = st.tokens();
  out["audio_s"] = audio_s;
  out["t3_prefill_ms"] = prefill_ms;
  out["t3_ms"] = t3_ms;
  out["t3_ms_per_token"] = (t3_ms - prefill_ms) / std::max<int64_t>(1, st.tokens());
  out["flow_ms"] = flow_ms;
  out["vocoder_ms"] = voc_ms;
  out["total_ms"] = total;
  out["rtf"] = total / 1000.0 / audio_s;
  out["time_to_first_audio_ms"] = arrivals.empty() ? -1.0 : arrivals.front().first;
  out["flow_decodes"] = st.stats().decodes;
  out["playback"] = playback(arrivals, 24000.0);
  out["peak_rss_kb"] = peak_rss_kb();
  return out;
}

template <class F>
json run(const std::string& cmd, const Args& a, bool meanflow) {
  if (cmd == "live") return e2e_live<F>(a, meanflow);
  if (cmd == "decode") return decode<F>(a);
  if (cmd == "accuracy") return accuracy<F>(a);
  if (cmd == "e2e") return e2e<F>(a, meanflow);
  throw std::runtime_error("unknown command " + cmd + " (decode, accuracy, e2e)");
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::cerr << "usage: bench_t3 decode|accuracy|e2e --family original|turbo|nano [options]\n";
    return 2;
  }
  try {
    const std::string cmd = argv[1];
    Args a(argc, argv, 2);
    c10::InferenceMode guard;
    const std::string family = a.str("family", "original");
    g_weights = a.str("weights", "");
    json out;
    if (family == "original")
      out = run<Original>(cmd, a, false);
    else if (family == "turbo")
      out = run<Gpt2Family<TurboCfg>>(cmd, a, true);
    else if (family == "nano")
      out = run<Gpt2Family<NanoCfg>>(cmd, a, true);
    else
      throw std::runtime_error("unknown family " + family);
    out["family"] = family;
    out["command"] = cmd;
    out["cpu"] = chatterbox::kernels::cpu_description();
    std::cout << out.dump() << std::endl;
  } catch (const std::exception& e) {
    std::cerr << "bench_t3: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
