// Full-size HiFT (Chatterbox's config, random weights): whole-utterance time,
// its stage split, and the streaming path at a few chunk sizes (ms per 10
// frames of audio both ways, so the incremental layers' cost per frame can
// be compared with the whole run's). A profiling aid, not a test.
//   bench_hift [seconds] [threads] [chunk,chunk,...]
#include "elements/vocoder/hift/hift.h"
#include "gst-plugins/core/compute_threads.h"

#include <ATen/ATen.h>

#include <chrono>
#include <ctime>
#include <cstdlib>
#include <iostream>
#include <sstream>

using namespace chatterbox;
using namespace chatterbox::hift;

namespace {
double since(std::chrono::steady_clock::time_point t) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count();
}
// Process CPU seconds: with 1 thread a steadier measure of work than wall
// time on a machine shared with other jobs.
double cpu_now() { return static_cast<double>(std::clock()) / CLOCKS_PER_SEC; }
}  // namespace

int main(int argc, char** argv) {
  const double secs = argc > 1 ? std::atof(argv[1]) : 10.0;
  set_compute_threads(argc > 2 ? std::atoi(argv[2]) : 2);
  std::vector<int64_t> chunks{1, 10, 50};
  if (argc > 3) {
    chunks.clear();
    std::stringstream ss(argv[3]);
    for (std::string item; std::getline(ss, item, ',');) chunks.push_back(std::atoll(item.c_str()));
  }
  HiftConfig c = HiftConfig::chatterbox();
  auto model = HiftModel::random(c, 0);
  const int64_t T = static_cast<int64_t>(secs * c.sampling_rate / c.samples_per_frame());
  at::Tensor mel = at::randn({1, 80, T}) - 5;
  HiftVocoder voc(model);
  voc.forward(mel.narrow(2, 0, 20));  // warm-up
  auto t0 = std::chrono::steady_clock::now();
  double c0 = cpu_now();
  at::Tensor whole = voc.forward(mel)[0];
  const double tw = since(t0), cw = cpu_now() - c0;
  std::cout << "whole: " << T << " frames (" << secs << " s audio) in " << tw << " s (cpu " << cw << " s), "
            << secs / tw << "x real time, " << 1e3 * tw / T * 10 << " ms per 10 frames\n";
  auto t1 = std::chrono::steady_clock::now();
  at::Tensor f0 = model->f0(mel);
  auto t2 = std::chrono::steady_clock::now();
  at::Tensor src = model->source_from_f0(f0);
  auto t3 = std::chrono::steady_clock::now();
  model->decode(mel, src);
  std::cout << "stages: f0 (float64) " << std::chrono::duration<double>(t2 - t1).count() << " s, source "
            << std::chrono::duration<double>(t3 - t2).count() << " s, decode " << since(t3) << " s\n";
  at::Tensor frames = mel[0].t().contiguous();
  for (int64_t chunk : chunks) {
    voc.reset();
    std::vector<at::Tensor> out;
    auto t = std::chrono::steady_clock::now();
    double c = cpu_now();
    for (int64_t p = 0; p < T; p += chunk) out.push_back(voc.feed(frames.narrow(0, p, std::min(chunk, T - p))));
    out.push_back(voc.drain());
    const double ts = since(t), cs = cpu_now() - c;
    at::Tensor s = at::cat(out);
    std::cout << "streamed, " << chunk << "-frame chunks: " << ts << " s (cpu " << cs << " s), " << secs / ts
              << "x real time, "
              << 1e3 * ts / T * 10 << " ms per 10 frames; max abs vs whole "
              << (s - whole).abs().max().item<double>() << "\n";
  }
  return 0;
}
