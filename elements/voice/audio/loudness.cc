#include "elements/voice/audio/loudness.h"

#include "gst-plugins/core/checkpoint.h"

#include <ATen/ATen.h>
#include <ebur128.h>

#include <cmath>
#include <limits>

namespace chatterbox::voice {

double integrated_loudness(const at::Tensor& wave_in, int64_t rate) {
  at::Tensor wave = wave_in.to(at::kFloat).reshape({-1}).contiguous();
  ebur128_state* st = ebur128_init(1, static_cast<unsigned long>(rate), EBUR128_MODE_I);
  if (!st) throw ModelError("loudness: libebur128 could not start a meter at " + std::to_string(rate) + " Hz");
  double lufs = -std::numeric_limits<double>::infinity();
  const int add = ebur128_add_frames_float(st, wave.data_ptr<float>(), static_cast<size_t>(wave.size(0)));
  const int rc = add == EBUR128_SUCCESS ? ebur128_loudness_global(st, &lufs) : add;
  ebur128_destroy(&st);
  if (rc != EBUR128_SUCCESS) throw ModelError("loudness: libebur128 failed (error " + std::to_string(rc) + ")");
  return lufs;
}

at::Tensor normalize_loudness(const at::Tensor& wave_in, int64_t rate, double target_lufs) {
  at::Tensor wave = wave_in.to(at::kFloat).reshape({-1});
  const double gain = std::pow(10.0, (target_lufs - integrated_loudness(wave, rate)) / 20.0);
  if (!std::isfinite(gain) || gain <= 0.0) return wave;
  return wave * static_cast<float>(gain);  // numpy: float32 array * Python float -> float32
}

}  // namespace chatterbox::voice
