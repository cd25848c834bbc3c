#include "elements/voice/audio/resample.h"

#include "gst-plugins/core/compute_threads.h"
#include "gst-plugins/core/checkpoint.h"

#include <ATen/ATen.h>
#include <c10/core/InferenceMode.h>
#include <soxr.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <vector>

namespace chatterbox::voice {

namespace {

void check_rates(int64_t in_rate, int64_t out_rate, const char* who) {
  if (in_rate <= 0 || out_rate <= 0)
    throw ModelError(std::string(who) + ": sample rates must be positive (got " + std::to_string(in_rate) + " -> " +
                     std::to_string(out_rate) + " Hz)");
}

struct SoxrHandle {
  soxr_t s = nullptr;
  ~SoxrHandle() {
    if (s) soxr_delete(s);
  }
};

}  // namespace

at::Tensor resample_soxr_hq(const at::Tensor& wave_in, int64_t in_rate, int64_t out_rate) {
  check_rates(in_rate, out_rate, "soxr resample");
  at::Tensor wave = wave_in.to(at::kFloat).reshape({-1}).contiguous();
  if (in_rate == out_rate) return wave;
  const int64_t n = wave.size(0);
  // librosa: n_samples = int(np.ceil(y.shape[-1] * ratio)), ratio a float.
  const double ratio = static_cast<double>(out_rate) / static_cast<double>(in_rate);
  const int64_t n_out = static_cast<int64_t>(std::ceil(static_cast<double>(n) * ratio));

  soxr_error_t err = nullptr;
  const soxr_io_spec_t io = soxr_io_spec(SOXR_FLOAT32_I, SOXR_FLOAT32_I);
  const soxr_quality_spec_t q = soxr_quality_spec(SOXR_HQ, 0);
  SoxrHandle h;
  h.s = soxr_create(static_cast<double>(in_rate), static_cast<double>(out_rate), 1, &err, &io, &q, nullptr);
  if (!h.s || err)
    throw ModelError("soxr resample " + std::to_string(in_rate) + " -> " + std::to_string(out_rate) +
                     " Hz: soxr_create failed (" + std::string(err ? err : "unknown error") + ")");
  std::vector<float> out;
  out.reserve(static_cast<size_t>(n_out) + 64);
  const int64_t chunk = 3 * in_rate;  // python-soxr's block: 3 s of input per soxr_process call
  std::vector<float> buf(static_cast<size_t>(std::ceil(static_cast<double>(chunk) * ratio)) + 1024);
  const float* x = wave.data_ptr<float>();
  for (int64_t pos = 0; pos < n;) {
    const size_t ilen = static_cast<size_t>(std::min(chunk, n - pos));
    size_t idone = 0, odone = 0;
    err = soxr_process(h.s, x + pos, ilen, &idone, buf.data(), buf.size(), &odone);
    if (err) throw ModelError("soxr resample: soxr_process failed (" + std::string(err) + ")");
    out.insert(out.end(), buf.begin(), buf.begin() + static_cast<std::ptrdiff_t>(odone));
    pos += static_cast<int64_t>(idone);
    if (idone == 0 && odone == 0) throw ModelError("soxr resample: soxr_process made no progress");
  }
  // Flush: input NULL signals the end; drain until nothing more comes.
  for (;;) {
    size_t odone = 0;
    err = soxr_process(h.s, nullptr, 0, nullptr, buf.data(), buf.size(), &odone);
    if (err) throw ModelError("soxr resample: flushing failed (" + std::string(err) + ")");
    if (odone == 0) break;
    out.insert(out.end(), buf.begin(), buf.begin() + static_cast<std::ptrdiff_t>(odone));
  }
  out.resize(static_cast<size_t>(n_out), 0.0f);  // librosa.util.fix_length
  return at::from_blob(out.data(), {n_out}, at::kFloat).clone();
}

at::Tensor sinc_resample_kernel(int64_t in_rate, int64_t out_rate, int64_t* width_out) {
  check_rates(in_rate, out_rate, "sinc resample");
  constexpr double kLowpassWidth = 6.0, kRolloff = 0.99;
  const int64_t g = std::gcd(in_rate, out_rate);
  const int64_t orig = in_rate / g, neu = out_rate / g;
  const double base = static_cast<double>(std::min(orig, neu)) * kRolloff;
  const int64_t width = static_cast<int64_t>(std::ceil(kLowpassWidth * static_cast<double>(orig) / base));
  const int64_t taps = 2 * width + orig;
  at::Tensor kernel = at::empty({neu, 1, taps}, at::kFloat);
  float* k = kernel.data_ptr<float>();
  const double scale = base / static_cast<double>(orig);
  for (int64_t j = 0; j < neu; ++j) {
    // torchaudio: arange(0, -new, -1) / new is an int64 tensor divided in the
    // default dtype (float32), then added to the float64 idx / orig.
    const double phase = static_cast<double>(static_cast<float>(-j) / static_cast<float>(neu));
    for (int64_t i = 0; i < taps; ++i) {
      double t = (static_cast<double>(i - width) / static_cast<double>(orig) + phase) * base;
      t = std::clamp(t, -kLowpassWidth, kLowpassWidth);
      const double c = std::cos(t * M_PI / kLowpassWidth / 2.0);
      const double window = c * c;
      t *= M_PI;
      const double sinc = t == 0.0 ? 1.0 : std::sin(t) / t;
      k[j * taps + i] = static_cast<float>(sinc * (window * scale));
    }
  }
  if (width_out) *width_out = width;
  return kernel;
}

at::Tensor resample_sinc(const at::Tensor& wave_in, int64_t in_rate, int64_t out_rate) {
  c10::InferenceMode guard;
  ComputeThreads threads;  // the project thread policy (compute_threads.h)
  check_rates(in_rate, out_rate, "sinc resample");
  // float64 input stays float64 (tests' exact references; same float32 kernel).
  const at::ScalarType dt = wave_in.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
  if (in_rate == out_rate) return wave_in.to(dt);
  const int64_t g = std::gcd(in_rate, out_rate), orig = in_rate / g, neu = out_rate / g;
  int64_t width = 0;
  const at::Tensor kernel = sinc_resample_kernel(in_rate, out_rate, &width).to(dt);
  at::Tensor wave = wave_in.to(dt).reshape({1, 1, -1});
  const int64_t n = wave.size(2);
  at::Tensor padded = at::constant_pad_nd(wave, {width, width + orig}, 0.0);
  at::Tensor y = at::conv1d(padded, kernel, {}, {orig});  // [1, new, frames]
  y = y.transpose(1, 2).reshape({-1});
  const int64_t target = (neu * n + orig - 1) / orig;  // ceil(new * n / orig)
  y = y.slice(0, 0, target).contiguous();
  return wave_in.dim() == 1 ? y : y.unsqueeze(0);
}

}  // namespace chatterbox::voice
