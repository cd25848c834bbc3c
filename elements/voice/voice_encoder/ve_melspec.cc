#include "elements/voice/voice_encoder/ve_melspec.h"

#include "elements/mel/features/filterbank.h"
#include "gst-plugins/core/compute_threads.h"
#include "gst-plugins/core/checkpoint.h"

#include <ATen/ATen.h>
#include <c10/core/InferenceMode.h>

#include <algorithm>
#include <cmath>
#include <vector>

namespace chatterbox::voice {

namespace {
constexpr int64_t kTrimFrame = 2048, kTrimHop = 512;  // librosa.effects.trim defaults
constexpr int64_t kNfft = 400, kHop = 160;
}  // namespace

TrimResult librosa_trim(const at::Tensor& wave_in, double top_db) {
  at::Tensor wave = wave_in.to(at::kFloat).reshape({-1}).contiguous();
  const int64_t n = wave.size(0);
  const float* x = wave.data_ptr<float>();
  const int64_t frames = 1 + n / kTrimHop, half = kTrimFrame / 2;
  // Mean square of each centred frame, in double: librosa sums in float32,
  // whose error (<= 1.2e-4 relative, Higham's bound for 2048 terms) is far
  // below the distance of any decision to the threshold that matters.
  std::vector<double> power(frames);
  double peak = 0.0;
  for (int64_t t = 0; t < frames; ++t) {
    double acc = 0.0;
    const int64_t lo = std::max<int64_t>(0, t * kTrimHop - half), hi = std::min<int64_t>(n, t * kTrimHop + half);
    for (int64_t i = lo; i < hi; ++i) acc += static_cast<double>(x[i]) * x[i];
    power[t] = acc / static_cast<double>(kTrimFrame);
    peak = std::max(peak, power[t]);
  }
  // amplitude_to_db(rms, ref=max, amin=1e-5, top_db=None) = 10 log10 of the
  // powers floored at amin^2 = 1e-10, relative to the peak's.
  TrimResult r;
  r.frame_db = at::empty({frames}, at::kDouble);
  double* db = r.frame_db.data_ptr<double>();
  const double ref_db = 10.0 * std::log10(std::max(1e-10, peak));
  int64_t first = -1, last = -1;
  for (int64_t t = 0; t < frames; ++t) {
    db[t] = 10.0 * std::log10(std::max(1e-10, power[t])) - ref_db;
    if (db[t] > -top_db) {
      if (first < 0) first = t;
      last = t;
    }
  }
  if (first >= 0) {
    r.start = first * kTrimHop;
    r.end = std::min(n, (last + 1) * kTrimHop);
  }
  return r;
}

at::Tensor ve_power_mel(const at::Tensor& wave_in, const at::Tensor& mel_basis) {
  c10::InferenceMode guard;
  ComputeThreads threads;  // the project thread policy (compute_threads.h)
  at::Tensor wave = wave_in.to(at::kFloat).reshape({-1});
  if (wave.size(0) <= kNfft / 2)
    throw ModelError("VoiceEncoder: the (trimmed) audio has " + std::to_string(wave.size(0)) + " samples; at least " +
                     std::to_string(kNfft / 2 + 1) + " are needed (librosa.stft's reflect padding)");
  // librosa.stft: float64 window times the float32 frames, float64 FFT,
  // spectrum stored as complex64.
  at::Tensor spec = at::stft(wave.to(at::kDouble), kNfft, kHop, kNfft, mel::hann_window(kNfft, true), /*center=*/true,
                             "reflect", /*normalized=*/false, /*onesided=*/true, /*return_complex=*/true)
                        .to(at::kComplexFloat);
  at::Tensor mag = at::abs(spec);
  mag = mag * mag;  // spec_magnitudes **= 2
  return at::matmul(mel_basis.to(at::kFloat), mag).t().contiguous();
}

}  // namespace chatterbox::voice
