// Compiled with -O3 -fno-math-errno so the loops vectorize (target_clones
// picks the AVX-512 / AVX2 body at load time on CPUs that have them), and
// -ffp-contract=off so a vectorised body and its scalar tail round alike
// (an element's result must not depend on where a chunk boundary falls).
#include "elements/vocoder/hift/hift_kernels.h"

#include "gst-plugins/core/kernels/kernel_pool.h"
#include "gst-plugins/core/compute_threads.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#endif

namespace chatterbox::hift::kernels {

namespace {

// sin(t) for float t: reduce by the nearest multiple of pi in double (exact
// enough for |t| < 1e6), then an odd Taylor polynomial to t^13 on
// [-pi/2, pi/2] (truncation < 7e-10) in float. The sign (-1)^k is dropped:
// Snake only uses sin^2. Error against sinf: a few 1e-8 absolute.
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
__attribute__((target_clones("avx512f", "avx2", "default")))
#endif
void snake_row(const float* __restrict x, float* __restrict y, int64_t n, float a, float inv) {
  const double inv_pi = 0.318309886183790671538;
  const double pi_d = 3.14159265358979323846;
  for (int64_t i = 0; i < n; ++i) {
    const float v = x[i];
    const double t = static_cast<double>(v * a);
    const double k = std::nearbyint(t * inv_pi);
    const float r = static_cast<float>(t - k * pi_d);
    const float r2 = r * r;
    float s = 1.6059043836821613e-10f;
    s = s * r2 - 2.5052108385441720e-08f;
    s = s * r2 + 2.7557319223985893e-06f;
    s = s * r2 - 1.9841269841269841e-04f;
    s = s * r2 + 8.3333333333333333e-03f;
    s = s * r2 - 1.6666666666666667e-01f;
    s = r + r * r2 * s;
    y[i] = v + inv * (s * s);
  }
}

}  // namespace

void snake_into(const at::Tensor& x_in, at::Tensor dst, const at::Tensor& a_in, const at::Tensor& inv_in) {
  at::Tensor x = x_in.contiguous();
  at::Tensor a = a_in.contiguous(), inv = inv_in.contiguous();
  const int64_t C = x.size(0), T = x.size(1);
  TORCH_CHECK(dst.scalar_type() == at::kFloat && x.scalar_type() == at::kFloat && dst.size(0) == C &&
                  dst.size(1) == T && (T <= 1 || dst.stride(1) == 1),
              "snake_into: mismatched tensors");
  const int64_t ld = dst.stride(0);
  const float* xp = x.data_ptr<float>();
  float* yp = dst.data_ptr<float>();
  const float* ap = a.data_ptr<float>();
  const float* ip = inv.data_ptr<float>();
  const int parts = C * T >= (1 << 16) ? compute_threads() : 1;
  chatterbox::kernels::run_parallel(parts, C, [&](int64_t c0, int64_t c1) {
    for (int64_t c = c0; c < c1; ++c) snake_row(xp + c * T, yp + c * ld, T, ap[c], ip[c]);
  });
}

void elu_into(const at::Tensor& x_in, at::Tensor dst) {
  at::Tensor x = x_in.contiguous();
  const int64_t C = x.size(0), T = x.size(1);
  TORCH_CHECK(dst.scalar_type() == at::kFloat && x.scalar_type() == at::kFloat && dst.size(0) == C &&
                  dst.size(1) == T && (T <= 1 || dst.stride(1) == 1),
              "elu_into: mismatched tensors");
  const float* xp = x.data_ptr<float>();
  float* yp = dst.data_ptr<float>();
  const int64_t ld = dst.stride(0);
  for (int64_t c = 0; c < C; ++c)
    for (int64_t t = 0; t < T; ++t) {
      const float v = xp[c * T + t];
      yp[c * ld + t] = v > 0.f ? v : std::expm1(v);
    }
}

at::Tensor istft_spec(const at::Tensor& post_in, int64_t K) {
  at::Tensor post = post_in.contiguous();
  const int64_t m = post.size(1);
  at::Tensor spec = at::empty({2 * K, m}, at::kFloat);
  const float* lp = post.data_ptr<float>();
  float* sp = spec.data_ptr<float>();
  for (int64_t k = 0; k < K; ++k)
    for (int64_t t = 0; t < m; ++t) {
      const float mag = std::min(std::exp(lp[k * m + t]), 100.f);
      const float ph = std::sin(lp[(K + k) * m + t]);
      sp[k * m + t] = mag * std::cos(ph);
      sp[(K + k) * m + t] = mag * std::sin(ph);
    }
  return spec;
}

}  // namespace chatterbox::hift::kernels
