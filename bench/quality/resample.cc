#include "bench/quality/resample.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <stdexcept>

namespace chatterbox::quality {

namespace {

// Zeroth-order modified Bessel function of the first kind (power series; the
// terms fall fast for the arguments a Kaiser window with beta 5 needs).
double bessel_i0(double x) {
  double sum = 1.0, term = 1.0;
  const double q = x * x / 4.0;
  for (int k = 1; k < 200 && term > 1e-17 * sum; ++k) {
    term *= q / (static_cast<double>(k) * k);
    sum += term;
  }
  return sum;
}

double sinc(double x) { return x == 0.0 ? 1.0 : std::sin(M_PI * x) / (M_PI * x); }

}  // namespace

std::vector<double> resample(const std::vector<double>& x, int64_t from_rate, int64_t to_rate) {
  if (from_rate <= 0 || to_rate <= 0)
    throw std::invalid_argument("resample: rates must be positive (got " + std::to_string(from_rate) + " -> " +
                                std::to_string(to_rate) + " Hz)");
  if (from_rate == to_rate || x.empty()) return x;
  const int64_t g = std::gcd(from_rate, to_rate);
  const int64_t p = to_rate / g, q = from_rate / g;  // up by p, down by q
  const int64_t pq = std::max(p, q);
  if (pq > 1000000)
    throw std::invalid_argument("resample: " + std::to_string(from_rate) + " -> " + std::to_string(to_rate) +
                                " Hz reduces to " + std::to_string(p) + "/" + std::to_string(q) +
                                ", too fine a ratio; resample with sox first");
  const int64_t half = 10 * pq;
  const double fc = 0.5 / static_cast<double>(pq);
  const double beta = 5.0, i0_beta = bessel_i0(beta);
  std::vector<double> h(static_cast<size_t>(2 * half + 1));
  double sum = 0.0;
  for (int64_t k = -half; k <= half; ++k) {
    const double r = static_cast<double>(k) / static_cast<double>(half);
    const double kaiser = bessel_i0(beta * std::sqrt(std::max(0.0, 1.0 - r * r))) / i0_beta;
    const double v = 2.0 * fc * sinc(2.0 * fc * static_cast<double>(k)) * kaiser;
    h[static_cast<size_t>(k + half)] = v;
    sum += v;
  }
  for (double& v : h) v *= static_cast<double>(p) / sum;  // unit gain after inserting p-1 zeros

  const int64_t n = static_cast<int64_t>(x.size());
  const int64_t n_out = (n * p + q - 1) / q;
  std::vector<double> y(static_cast<size_t>(n_out));
  for (int64_t m = 0; m < n_out; ++m) {
    const int64_t t = m * q;  // output m in upsampled time
    // Inputs n with |t - n p| <= half.
    int64_t lo = t - half <= 0 ? 0 : (t - half + p - 1) / p;
    int64_t hi = std::min(n - 1, (t + half) / p);
    double acc = 0.0;
    for (int64_t i = lo; i <= hi; ++i) acc += x[static_cast<size_t>(i)] * h[static_cast<size_t>(t - i * p + half)];
    y[static_cast<size_t>(m)] = acc;
  }
  return y;
}

}  // namespace chatterbox::quality
