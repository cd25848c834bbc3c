// Times the Vocos fast path against the reference operation order on the
// same random full-size weights (dim 512, intermediate 1536, 8 layers).
//
//   bench_vocos [--layout s3gen|vocos] [--frames T] [--threads N] [--reps R]
//               [--chunk C] [--device cpu|cuda]
//
// Defaults: S3Gen layout, T = 500 frames (10 s of 24 kHz audio), 2 threads.
#include "elements/vocoder/vocos/vocos.h"

#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <string>
#include <vector>

using namespace chatterbox;

namespace {
double cpu_s() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return u.ru_utime.tv_sec + u.ru_stime.tv_sec + 1e-6 * (u.ru_utime.tv_usec + u.ru_stime.tv_usec);
}
double g_cpu_ms = 0;  // CPU time (all threads) of the best run: steadier than wall time on a shared machine
// The minimum wall time: the machine may be shared, and noise only adds time.
double best_ms(int reps, const std::function<void()>& fn) {
  double best = 1e300;
  for (int i = 0; i < reps; ++i) {
    double c0 = cpu_s();
    auto a = std::chrono::steady_clock::now();
    fn();
    auto b = std::chrono::steady_clock::now();
    double ms = std::chrono::duration<double, std::milli>(b - a).count();
    if (ms < best) {
      best = ms;
      g_cpu_ms = 1000.0 * (cpu_s() - c0);
    }
  }
  return best;
}
}  // namespace

int main(int argc, char** argv) {
  std::string layout = "s3gen", device = "cpu", only;
  int64_t frames = 500, chunk = 25;
  int threads = 2, reps = 7;
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string k = argv[i], v = argv[i + 1];
    if (k == "--layout") layout = v;
    else if (k == "--frames") frames = std::atoll(v.c_str());
    else if (k == "--threads") threads = std::atoi(v.c_str());
    else if (k == "--reps") reps = std::atoi(v.c_str());
    else if (k == "--chunk") chunk = std::atoll(v.c_str());
    else if (k == "--device") device = v;
    else if (k == "--only") only = v;  // fast: time the fast path alone (for profilers)
    else {
      std::fprintf(stderr, "unknown option %s\n", k.c_str());
      return 2;
    }
  }
  VocosConfig cfg = layout == "vocos" ? VocosConfig::mel_24khz() : VocosConfig::s3gen();
  VocosLoadOptions opts;
  opts.threads = threads;
  opts.device = device;
  auto voc = VocosVocoder::random(cfg, 1234, opts);
  at::manual_seed(0);
  at::Tensor mel = at::randn({1, cfg.input_channels, frames}) * 2.0 - 5.0;
  if (device != "cpu") mel = mel.to(at::Device(device));
  const double audio_s = static_cast<double>(cfg.output_samples(frames)) / cfg.sample_rate;
  std::printf("Vocos %s, %lld frames (%.2f s audio), device %s, %d threads (at::get_num_threads=%d)\n",
              cfg.to_string().c_str(), static_cast<long long>(frames), audio_s, device.c_str(), threads,
              at::get_num_threads());

  at::Tensor fast = voc->forward(mel);
  if (only == "fast") {
    double t = best_ms(reps, [&] { fast = voc->forward(mel); });
    std::printf("fast forward      : %8.1f ms  (RTF %.4f, cpu %.1f ms)\n", t, t / 1000.0 / audio_s, g_cpu_ms);
    return 0;
  }
  at::Tensor ref = voc->forward_reference(mel);  // warm-up
  double rl = ((fast - ref).norm() / ref.norm()).item<double>();
  auto sync = [&] {
    if (device != "cpu") (void)fast.sum().item<float>();
  };
  // Interleaved, so both see the same machine load.
  double t_fast = 1e300, t_ref = 1e300, c_fast = 0, c_ref = 0;
  for (int i = 0; i < reps; ++i) {
    double t = best_ms(1, [&] { fast = voc->forward(mel); sync(); });
    if (t < t_fast) t_fast = t, c_fast = g_cpu_ms;
    t = best_ms(1, [&] { ref = voc->forward_reference(mel); sync(); });
    if (t < t_ref) t_ref = t, c_ref = g_cpu_ms;
  }
  at::Tensor frames_tc = mel.select(0, 0).t().contiguous().to(at::kCPU);
  double t_stream = best_ms(std::max(1, reps / 2), [&] {
    for (int64_t p = 0; p < frames; p += chunk) voc->feed(frames_tc.narrow(0, p, std::min(chunk, frames - p)));
    voc->drain();
  });
  std::printf("fast forward      : %8.1f ms  (RTF %.4f, cpu %.1f ms)\n", t_fast, t_fast / 1000.0 / audio_s, c_fast);
  std::printf("reference order   : %8.1f ms  (RTF %.4f, cpu %.1f ms)  speed-up %.2fx wall, %.2fx cpu\n", t_ref,
              t_ref / 1000.0 / audio_s, c_ref, t_ref / t_fast, c_ref / c_fast);
  std::printf("streaming, %3lld-frame chunks: %8.1f ms  (RTF %.4f, cpu %.1f ms)\n", static_cast<long long>(chunk),
              t_stream, t_stream / 1000.0 / audio_s, g_cpu_ms);
  std::printf("fast vs reference rel-L2: %.3g\n", rl);
  return 0;
}
