// Full-size HiFT (Chatterbox's config, random weights) on 10 s of audio.
//   bench_hift [seconds] [threads]
#include "elements/vocoder/hift/hift.h"

#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include <chrono>
#include <cstdlib>
#include <iostream>

using namespace chatterbox;
using namespace chatterbox::hift;

int main(int argc, char** argv) {
  const double secs = argc > 1 ? std::atof(argv[1]) : 10.0;
  at::set_num_threads(argc > 2 ? std::atoi(argv[2]) : 2);
  HiftConfig c = HiftConfig::chatterbox();
  auto model = HiftModel::random(c, 0);
  const int64_t T = static_cast<int64_t>(secs * c.sampling_rate / c.samples_per_frame());
  at::Tensor mel = at::randn({1, 80, T}) - 5;
  auto run = [&](const char* label) {
    model->inference(mel.narrow(2, 0, 20));  // warm-up
    auto t0 = std::chrono::steady_clock::now();
    at::Tensor a = model->inference(mel);
    double dt = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    std::cout << label << ": " << T << " frames (" << secs << " s audio) in " << dt << " s, RTF " << dt / secs
              << "\n";
    return a;
  };
  at::Tensor fast = run("fast path");
  setenv("CHATTERBOX_HIFT_REFERENCE_OPS", "1", 1);
  at::Tensor ref = run("reference operation order");
  std::cout << "max abs difference: " << (fast - ref).abs().max().item<double>()
            << " (max |audio| " << ref.abs().max().item<double>() << ", rel. L2 "
            << ((fast - ref).norm() / ref.norm()).item<double>() << ")\n";
  // Stage split of the fast path.
  unsetenv("CHATTERBOX_HIFT_REFERENCE_OPS");
  auto t0 = std::chrono::steady_clock::now();
  at::Tensor f0 = model->f0(mel);
  auto t1 = std::chrono::steady_clock::now();
  at::Tensor src = model->source_from_f0(f0);
  auto t2 = std::chrono::steady_clock::now();
  model->decode(mel, src);
  auto t3 = std::chrono::steady_clock::now();
  auto sec = [](auto a, auto b) { return std::chrono::duration<double>(b - a).count(); };
  std::cout << "stages: f0 (float64) " << sec(t0, t1) << " s, source " << sec(t1, t2) << " s, decode " << sec(t2, t3)
            << " s\n";
  return 0;
}
