#include "elements/watermark/perth/resample_poly.h"

#include "gst-plugins/core/checkpoint.h"

#include <cmath>
#include <numeric>
#include <string>

namespace chatterbox::perth {

namespace {

double sinc(double x) {  // np.sinc
  if (x == 0.0) return 1.0;
  const double y = M_PI * x;
  return std::sin(y) / y;
}

}  // namespace

std::vector<float> resample_poly_filter(int64_t up, int64_t down) {
  const int64_t max_rate = std::max(up, down);
  const double f_c = 1.0 / static_cast<double>(max_rate);
  const int64_t half_len = 10 * max_rate;
  const int64_t numtaps = 2 * half_len + 1;
  // firwin(numtaps, f_c, window=('kaiser', 5.0)), pass_zero, scale
  const double alpha = 0.5 * static_cast<double>(numtaps - 1);
  const double beta = 5.0;
  const double i0b = std::cyl_bessel_i(0.0, beta);
  std::vector<double> h(numtaps);
  double s = 0.0;
  for (int64_t i = 0; i < numtaps; ++i) {
    const double m = static_cast<double>(i) - alpha;
    double v = f_c * sinc(f_c * m);
    // scipy.signal.windows.kaiser(M, beta, sym=True)
    const double r = (static_cast<double>(i) - alpha) / alpha;
    const double w = std::cyl_bessel_i(0.0, beta * std::sqrt(1.0 - r * r)) / i0b;
    v *= w;
    h[i] = v;
    s += v;  // scale_frequency 0: sum(h * cos(0))
  }
  std::vector<float> out(numtaps);
  for (int64_t i = 0; i < numtaps; ++i) {
    const float hf = static_cast<float>(h[i] / s);
    out[i] = hf * static_cast<float>(up);
  }
  return out;
}

std::vector<float> resample_poly(const float* x, int64_t n, int64_t in_rate, int64_t out_rate) {
  if (in_rate <= 0 || out_rate <= 0)
    throw ModelError("polyphase resample: sample rates must be positive (got " + std::to_string(in_rate) + " -> " +
                     std::to_string(out_rate) + " Hz)");
  const int64_t g = std::gcd(in_rate, out_rate);
  const int64_t up = out_rate / g, down = in_rate / g;
  if (up == 1 && down == 1) return std::vector<float>(x, x + n);
  const int64_t n_out = (n * up) / down + ((n * up) % down != 0 ? 1 : 0);
  const std::vector<float> h = resample_poly_filter(up, down);
  const int64_t half_len = 10 * std::max(up, down);
  // scipy pre-pads the filter with n_pre_pad zeros and drops n_pre_remove
  // outputs: output k is full-rate index j = k * down + n_pre_remove * down
  // of (zero-stuffed x) * (padded h); in unpadded terms y[k] = sum_i
  // h[i] * u[k * down + half_len - i], u the zero-stuffed input (u[j] =
  // x[j / up] when j % up == 0).
  const int64_t n_pre_pad = down - half_len % down;
  const int64_t n_pre_remove = (half_len + n_pre_pad) / down;
  const int64_t shift = n_pre_remove * down - n_pre_pad;  // the filter centre: half_len
  const int64_t taps = static_cast<int64_t>(h.size());
  std::vector<float> y(n_out);
  for (int64_t k = 0; k < n_out; ++k) {
    const int64_t j = k * down + shift;  // centre index into the zero-stuffed signal
    double acc = 0.0;
    // taps i with (j - i) % up == 0 and 0 <= (j - i) / up < n
    int64_t i0 = j % up;
    for (int64_t i = i0; i < taps; i += up) {
      const int64_t q = j - i;
      if (q < 0) break;
      const int64_t src = q / up;
      if (src >= n) continue;
      acc += static_cast<double>(h[i]) * static_cast<double>(x[src]);
    }
    y[k] = static_cast<float>(acc);
  }
  return y;
}

}  // namespace chatterbox::perth
