#include "elements/voice/xvector/kaldi_fbank.h"

#include "gst-plugins/core/compute_threads.h"
#include "gst-plugins/core/checkpoint.h"
#include "gst-plugins/core/torch_f32.h"

#include <ATen/ATen.h>
#include <c10/core/InferenceMode.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

namespace chatterbox::voice {

namespace {

struct Sizes {
  int64_t window_size, window_shift, padded;
};

Sizes sizes_of(const KaldiFbankOptions& o) {
  // int(sample_frequency * frame_length * 0.001), as torchaudio truncates.
  Sizes s;
  s.window_size = static_cast<int64_t>(static_cast<double>(o.rate) * o.frame_length_ms * 0.001);
  s.window_shift = static_cast<int64_t>(static_cast<double>(o.rate) * o.frame_shift_ms * 0.001);
  s.padded = 1;
  while (s.padded < s.window_size) s.padded *= 2;  // round_to_power_of_two
  return s;
}

double mel_scale_scalar(double f) { return 1127.0 * std::log(1.0 + f / 700.0); }

}  // namespace

at::Tensor kaldi_povey_window(int64_t window_size) {
  // torch.hann_window(N, periodic=False).pow(0.85): ATen's pow with a
  // non-special scalar exponent is pow(w, float(0.85)) per element.
  const std::vector<float> hann = f32::hann_window(window_size, /*periodic=*/false);
  at::Tensor w = at::empty({window_size}, at::kFloat);
  float* p = w.data_ptr<float>();
  for (int64_t i = 0; i < window_size; ++i) p[i] = f32::pow(hann[i], 0.85f);
  return w;
}

at::Tensor kaldi_mel_banks(const KaldiFbankOptions& o, int64_t padded) {
  // torchaudio get_mel_banks (vtln_warp 1): the scalars are Python floats,
  // the tensors float32; each step below is the float op the reference does.
  const double nyquist = 0.5 * static_cast<double>(o.rate);
  const double high = o.high_freq <= 0.0 ? o.high_freq + nyquist : o.high_freq;
  if (!(o.low_freq >= 0.0 && o.low_freq < nyquist && high > o.low_freq && high <= nyquist))
    throw ModelError("kaldi fbank: bad frequency range low_freq=" + std::to_string(o.low_freq) +
                     " high_freq=" + std::to_string(high) + " at " + std::to_string(o.rate) + " Hz");
  const int64_t n_bins = o.num_mel_bins, n_fft_bins = padded / 2;
  const double fft_bin_width = static_cast<double>(o.rate) / static_cast<double>(padded);
  const double mel_low = mel_scale_scalar(o.low_freq), mel_high = mel_scale_scalar(high);
  const float delta = f32::round((mel_high - mel_low) / static_cast<double>(n_bins + 1));
  const float low = f32::round(mel_low);
  std::vector<float> mel(n_fft_bins);
  for (int64_t k = 0; k < n_fft_bins; ++k) {
    // mel_scale(fft_bin_width * arange): 1127 * log(1 + f / 700)
    const float f = f32::round(fft_bin_width) * static_cast<float>(k);
    const float q = f / 700.0f;
    const float r = 1.0f + q;
    const float l = f32::round(std::log(static_cast<double>(r)));
    mel[k] = 1127.0f * l;
  }
  at::Tensor banks = at::zeros({n_bins, n_fft_bins + 1}, at::kFloat);  // + the zero Nyquist column
  float* b = banks.data_ptr<float>();
  for (int64_t i = 0; i < n_bins; ++i) {
    const float fi = static_cast<float>(i);
    const float left = low + fi * delta;
    const float center = low + (fi + 1.0f) * delta;
    const float right = low + (fi + 2.0f) * delta;
    for (int64_t k = 0; k < n_fft_bins; ++k) {
      const float up = (mel[k] - left) / (center - left);
      const float down = (right - mel[k]) / (right - center);
      b[i * (n_fft_bins + 1) + k] = std::max(0.0f, std::min(up, down));
    }
  }
  return banks;
}

at::Tensor kaldi_fbank(const at::Tensor& wave_in, const KaldiFbankOptions& o) {
  c10::InferenceMode guard;
  ComputeThreads threads;  // the project thread policy (compute_threads.h)
  const Sizes s = sizes_of(o);
  // float32 as the reference; float64 input is computed in float64 (tests'
  // exact references) with the same float32 tables and floor.
  const at::ScalarType dt = wave_in.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
  at::Tensor wave = wave_in.to(dt).reshape({-1}).contiguous();
  const int64_t n = wave.size(0);
  if (n < s.window_size) return at::zeros({0, o.num_mel_bins}, dt);
  const int64_t frames = 1 + (n - s.window_size) / s.window_shift;  // snip_edges
  at::Tensor x = wave.as_strided({frames, s.window_size}, {s.window_shift, 1});
  x = x - x.mean(1, /*keepdim=*/true);  // remove_dc_offset
  // Pre-emphasis: x[j] - 0.97 x[j-1], x[-1] = x[0] (replicate padding).
  at::Tensor prev = at::cat({x.slice(1, 0, 1), x.slice(1, 0, s.window_size - 1)}, 1);
  x = x - prev * o.preemphasis;
  x = x * kaldi_povey_window(s.window_size).to(dt).unsqueeze(0);
  x = at::constant_pad_nd(x, {0, s.padded - s.window_size}, 0.0);
  at::Tensor power = at::abs(at::fft_rfft(x));
  power = power * power;  // .pow(2.0)
  at::Tensor mel = at::mm(power, kaldi_mel_banks(o, s.padded).to(dt).t());
  return at::clamp_min(mel, std::numeric_limits<float>::epsilon()).log();
}

}  // namespace chatterbox::voice
