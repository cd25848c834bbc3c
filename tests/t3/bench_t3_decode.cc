// Per-token T3 decode time at full width (Llama_520M: 30 layers, hidden 1024,
// CFG batch of 2) with random weights.
// Usage: bench_t3_decode [threads=2] [tokens=30] [text_tokens=60]
#include "elements/t3/model/t3.h"

#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>

using namespace chatterbox::t3;
using Clock = std::chrono::steady_clock;

static double ms_since(Clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
}

int main(int argc, char** argv) {
  int threads = argc > 1 ? std::atoi(argv[1]) : 2;
  int tokens = argc > 2 ? std::atoi(argv[2]) : 30;
  int n_text = argc > 3 ? std::atoi(argv[3]) : 60;
  at::set_num_threads(threads);
  auto t0 = Clock::now();
  T3Model model = T3Model::random(T3Config::english(), 1234);
  std::printf("random Llama_520M T3 built in %.0f ms (%d threads)\n", ms_since(t0), threads);

  T3Cond cond;
  cond.speaker_emb = at::rand({1, 256});
  cond.speaker_emb /= cond.speaker_emb.norm();
  cond.cond_prompt_speech_tokens = at::randint(0, 6561, {1, 150}, at::kLong);
  cond.emotion_adv = at::full({1, 1, 1}, 0.5f);
  std::vector<int64_t> text(n_text);
  for (int i = 0; i < n_text; ++i) text[i] = 3 + (i * 37) % 250;

  SamplingOptions o;
  o.max_new_tokens = tokens;
  o.seed = 1;
  T3Generator g(model, o);
  t0 = Clock::now();
  g.start(text, cond);
  double prefill = ms_since(t0);
  g.next_token();  // first token: no backbone pass
  std::vector<double> per;
  while (!g.finished()) {
    auto t = Clock::now();
    if (g.next_token() < 0) break;
    per.push_back(ms_since(t));
  }
  std::sort(per.begin(), per.end());
  double sum = 0;
  for (double x : per) sum += x;
  std::printf("prefill (%lld positions, batch 2): %.1f ms\n",
              static_cast<long long>(model.config().cond_len() + n_text + 4), prefill);
  if (!per.empty())
    std::printf("decode: %zu tokens, mean %.1f ms/token, median %.1f, min %.1f, max %.1f (batch 2: cond + uncond)\n",
                per.size(), sum / per.size(), per[per.size() / 2], per.front(), per.back());
  return 0;
}
