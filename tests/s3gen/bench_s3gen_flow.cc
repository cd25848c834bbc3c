// Times the full-size S3Gen flow (published widths, seeded random weights) on
// CPU: bench_s3gen_flow [target_tokens=50] [prompt_tokens=0,25,250] [threads=2]
#include "elements/s3gen/flow/s3gen_flow.h"

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/csrc/autograd/profiler_legacy.h>

#include <chrono>
#include <ctime>
#include <cstdio>
#include <cstdlib>
#include <sstream>
#include <string>
#include <vector>

using namespace chatterbox;
using clk = std::chrono::steady_clock;

static double secs(clk::time_point a) { return std::chrono::duration<double>(clk::now() - a).count(); }
// Process CPU seconds (all threads): on a shared, loaded machine wall time
// overstates the cost; cpu / threads is what an idle machine would take.
static double cpu_now() { return static_cast<double>(std::clock()) / CLOCKS_PER_SEC; }

int main(int argc, char** argv) {
  const int64_t n = argc > 1 ? std::atoll(argv[1]) : 50;
  std::vector<int64_t> prompts{0, 25, 250};
  if (argc > 2) {
    prompts.clear();
    std::stringstream ss(argv[2]);
    std::string item;
    while (std::getline(ss, item, ',')) prompts.push_back(std::atoll(item.c_str()));
  }
  const int threads = argc > 3 ? std::atoi(argv[3]) : 2;
  at::set_num_threads(threads);
  at::set_num_interop_threads(1);

  auto t0 = clk::now();
  S3GenFlow flow = S3GenFlow::random(S3GenFlowConfig{}, 1);
  std::printf("full-size flow, random weights: built in %.2f s, %d threads\n", secs(t0), threads);

  at::Tensor tok = at::randint(0, 6561, {1, n}, at::kLong);
  at::Tensor emb = at::randn({1, 192});
  for (int64_t p : prompts) {
    at::Tensor ptok = at::randint(0, 6561, {1, p}, at::kLong);
    at::Tensor pfeat = at::randn({1, 2 * p, 80});
    S3GenInferenceOptions o;
    o.seed = 5;
    flow.inference(tok.slice(1, 0, 5), ptok, pfeat, emb, o);  // warm-up
    auto t1 = clk::now();
    S3GenEncoded enc = flow.encode(tok, ptok, pfeat, emb, true);
    const double t_enc = secs(t1);
    at::Tensor z = at::randn({2, 80, enc.mu.size(2)});
    at::Tensor m2 = at::cat({enc.mask, enc.mask}), mu2 = at::cat({enc.mu, at::zeros_like(enc.mu)});
    at::Tensor s2 = at::cat({enc.spks, at::zeros_like(enc.spks)}), c2 = at::cat({enc.cond, at::zeros_like(enc.cond)});
    if (const char* prof = std::getenv("S3GEN_PROFILE")) {  // chrome trace of one estimator call
      torch::autograd::profiler::RecordProfile guard(prof);
      flow.estimator(z, m2, mu2, at::full({2}, 0.3f), s2, c2);
    }
    auto t2 = clk::now();
    double c2t = cpu_now();
    flow.estimator(z, m2, mu2, at::full({2}, 0.3f), s2, c2);
    const double t_est = secs(t2), c_est = cpu_now() - c2t;
    auto t3 = clk::now();
    double c3 = cpu_now();
    at::Tensor mel = flow.inference(tok, ptok, pfeat, emb, o);
    const double t_all = secs(t3), c_all = cpu_now() - c3;
    const double audio_s = mel.size(2) / 50.0;  // 50 mel frames per second
    std::printf("prompt %4lld + target %lld tokens (T=%lld frames): encoder %.3f s, one CFG estimator call %.3f s, "
                "full inference (10 steps) %.2f s for %.2f s of audio (RTF %.2f); CPU seconds: estimator call %.2f, "
                "inference %.2f\n",
                (long long)p, (long long)n, (long long)enc.mu.size(2), t_enc, t_est, t_all, audio_s, t_all / audio_s,
                c_est, c_all);
  }
  return 0;
}
