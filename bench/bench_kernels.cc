// The decode-step GEMM (kernels/rows_gemm.h) against the memory bus: the
// physical limit of decoding a token is reading every weight once, so this
// times the decode GEMMs of a whole T3 backbone (Llama_520M: 30 layers of
// fused qkv, o, fused gate/up and down, plus the speech head: 2.1 GB in
// float32, far beyond any cache) for the CFG pair (2 rows) in every weight
// format, reports the weights' bytes read per second, and measures the
// machine's read bandwidth with a STREAM-like sum over a buffer of the same
// order, at 1 and `threads` threads. One JSON object on stdout.
//
//   bench_kernels [--threads N] [--reps R] [--rows M] [--layers L] [--mib B]
#include "gst-plugins/core/compute_threads.h"
#include "gst-plugins/core/kernels/cpu_path.h"
#include "gst-plugins/core/kernels/kernel_pool.h"
#include "gst-plugins/core/kernels/rows_gemm.h"

#include <ATen/ATen.h>
#include <nlohmann/json.hpp>

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#endif

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <iostream>
#include <map>
#include <string>
#include <vector>

using namespace chatterbox;
using Clock = std::chrono::steady_clock;

namespace {

double seconds_since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

// Sum of n floats with four 8-lane accumulators (AVX2 where the CPU has it):
// enough independent adds to keep the loads, not the adder, the limit.
#if defined(__x86_64__) && defined(__GNUC__)
__attribute__((target("avx2"))) double sum_avx2(const float* x, int64_t n) {
  __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
  int64_t i = 0;
  for (; i + 32 <= n; i += 32) {
    a0 = _mm256_add_ps(a0, _mm256_loadu_ps(x + i));
    a1 = _mm256_add_ps(a1, _mm256_loadu_ps(x + i + 8));
    a2 = _mm256_add_ps(a2, _mm256_loadu_ps(x + i + 16));
    a3 = _mm256_add_ps(a3, _mm256_loadu_ps(x + i + 24));
  }
  alignas(32) float t[8];
  _mm256_store_ps(t, _mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)));
  double s = 0;
  for (float v : t) s += v;
  for (; i < n; ++i) s += x[i];
  return s;
}
#endif
double sum_range(const float* x, int64_t n) {
#if defined(__x86_64__) && defined(__GNUC__)
  if (kernels::cpu_path_at_least(kernels::CpuPath::Avx2)) return sum_avx2(x, n);
#endif
  double s = 0;
  for (int64_t i = 0; i < n; ++i) s += x[i];
  return s;
}

// Read bandwidth: sum a float buffer of `mib` MiB, split over `threads`
// workers of the kernel pool (the same pool the decode kernel uses); best of
// `reps` passes.
double read_gbps(int threads, int64_t mib, int reps) {
  const int64_t n = mib * (1 << 20) / 4;
  std::vector<float> buf(n, 1.0f);
  double best = 1e30;
  std::vector<double> partial(threads);
  for (int r = 0; r < reps; ++r) {
    const auto t0 = Clock::now();
    kernels::run_parallel(threads, threads, [&](int64_t p0, int64_t p1) {
      for (int64_t p = p0; p < p1; ++p) {
        const int64_t a = n * p / threads, b = n * (p + 1) / threads;
        partial[p] = sum_range(buf.data() + a, b - a);
      }
    });
    best = std::min(best, seconds_since(t0));
  }
  volatile double sink = partial[0];
  (void)sink;
  return static_cast<double>(n) * 4 / best / 1e9;
}

}  // namespace

int main(int argc, char** argv) {
  std::map<std::string, std::string> kv;
  for (int i = 1; i + 1 < argc; i += 2) kv[std::string(argv[i]).substr(2)] = argv[i + 1];
  auto num = [&](const char* k, double d) { return kv.count(k) ? std::atof(kv[k].c_str()) : d; };
  const int threads = static_cast<int>(num("threads", 2)), reps = static_cast<int>(num("reps", 20));
  const int64_t rows = static_cast<int64_t>(num("rows", 2)), mib = static_cast<int64_t>(num("mib", 2048));
  const int layers = static_cast<int>(num("layers", 30));
  at::manual_seed(1);
  // Llama_520M's decode GEMMs per layer (fused qkv, o, fused gate/up, down),
  // then the speech head.
  std::vector<std::pair<int64_t, int64_t>> shapes;
  for (int l = 0; l < layers; ++l)
    for (auto s : {std::pair<int64_t, int64_t>{3072, 1024}, {1024, 1024}, {8192, 1024}, {1024, 4096}})
      shapes.push_back(s);
  shapes.push_back({8194, 1024});
  std::vector<at::Tensor> weights;
  for (auto s : shapes) weights.push_back(at::randn({s.first, s.second}) * 0.02);
  nlohmann::json out;
  out["cpu"] = kernels::cpu_description();
  out["rows"] = rows;
  out["layers"] = layers;
  for (int t : {1, threads}) {
    set_compute_threads(t);
    nlohmann::json row;
    row["threads"] = t;
    row["read_gbps"] = read_gbps(t, mib, 3);
    for (auto fmt : {kernels::WeightFormat::F32, kernels::WeightFormat::BF16, kernels::WeightFormat::Int8}) {
      std::vector<kernels::QuantizedWeight> q;
      int64_t bytes = 0;
      for (auto& w : weights) {
        q.push_back(kernels::quantize_weight(w, fmt));
        bytes += q.back().bytes();
      }
      std::vector<at::Tensor> xs;
      for (auto s : shapes) xs.push_back(at::randn({rows, s.second}));
      double best = 1e30;
      for (int r = 0; r < reps; ++r) {
        const auto t0 = Clock::now();
        for (size_t i = 0; i < q.size(); ++i) kernels::rows_matmul_t(xs[i], q[i]);
        best = std::min(best, seconds_since(t0));
      }
      const double gbps = bytes / best / 1e9;
      row[kernels::weight_format_name(fmt)] = {{"weight_mib", bytes / 1048576.0},
                                               {"weights_gbps", gbps},
                                               {"of_read_bandwidth", gbps / row["read_gbps"].get<double>()},
                                               {"per_token_ms", best * 1e3}};
    }
    out["at_threads"].push_back(row);
  }
  std::cout << out.dump() << std::endl;
  return 0;
}
