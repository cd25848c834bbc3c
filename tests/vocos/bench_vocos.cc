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

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <string>
#include <vector>

using namespace chatterbox;

namespace {
double median_ms(int reps, const std::function<void()>& fn) {
  std::vector<double> t;
  for (int i = 0; i < reps; ++i) {
    auto a = std::chrono::steady_clock::now();
    fn();
    auto b = std::chrono::steady_clock::now();
    t.push_back(std::chrono::duration<double, std::milli>(b - a).count());
  }
  std::sort(t.begin(), t.end());
  return t[t.size() / 2];
}
}  // namespace

int main(int argc, char** argv) {
  std::string layout = "s3gen", device = "cpu";
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

  at::Tensor fast = voc->forward(mel), ref = voc->forward_reference(mel);  // warm-up
  double rl = ((fast - ref).norm() / ref.norm()).item<double>();
  auto sync = [&] {
    if (device != "cpu") (void)fast.sum().item<float>();
  };
  double t_fast = median_ms(reps, [&] { fast = voc->forward(mel); sync(); });
  double t_ref = median_ms(reps, [&] { ref = voc->forward_reference(mel); sync(); });
  at::Tensor frames_tc = mel.select(0, 0).t().contiguous().to(at::kCPU);
  double t_stream = median_ms(std::max(1, reps / 2), [&] {
    for (int64_t p = 0; p < frames; p += chunk) voc->feed(frames_tc.narrow(0, p, std::min(chunk, frames - p)));
    voc->drain();
  });
  std::printf("fast forward      : %8.1f ms  (RTF %.4f)\n", t_fast, t_fast / 1000.0 / audio_s);
  std::printf("reference order   : %8.1f ms  (RTF %.4f)  speed-up %.2fx\n", t_ref, t_ref / 1000.0 / audio_s,
              t_ref / t_fast);
  std::printf("streaming, %3lld-frame chunks: %8.1f ms  (RTF %.4f)\n", static_cast<long long>(chunk), t_stream,
              t_stream / 1000.0 / audio_s);
  std::printf("fast vs reference rel-L2: %.3g\n", rl);
  return 0;
}
