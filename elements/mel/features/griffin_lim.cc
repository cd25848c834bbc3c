#include "elements/mel/features/griffin_lim.h"

#include "gst-plugins/core/checkpoint.h"  // ModelError

#include <ATen/ATen.h>
#include <c10/core/InferenceMode.h>

#include <cmath>
#include <random>
#include <vector>

namespace chatterbox::mel {

namespace {

void check_frames(const char* what, const at::Tensor& t, int64_t width, const char* unit) {
  if (t.dim() != 2 || t.size(1) != width)
    throw ModelError(std::string(what) + ": expected [frames, " + std::to_string(width) + "] (" + unit +
                     "), got shape " + shape_str(t.sizes()));
  if (!at::isfinite(t).all().item<bool>()) throw ModelError(std::string(what) + ": input holds NaN or Inf");
}

// The STFT pair of the extractor's layout, in float32.
struct Stft {
  const MelExtractor& ex;
  at::Tensor win;      // [n_fft]
  at::Tensor win_sq;   // window^2 summed over every frame covering a padded sample, [(T-1)*hop + n_fft]
  int64_t frames = 0;

  Stft(const MelExtractor& e, int64_t t) : ex(e), win(e.window().to(at::kFloat)), frames(t) {
    const int64_t n_fft = ex.n_fft(), hop = ex.hop_length();
    win_sq = at::zeros({(t - 1) * hop + n_fft}, at::kFloat);
    at::Tensor w2 = win * win;
    for (int64_t i = 0; i < t; ++i) win_sq.narrow(0, i * hop, n_fft).add_(w2);
  }

  // Signal -> [T, n_freqs] complex: exactly the frames MelExtractor analyses.
  at::Tensor forward(const at::Tensor& x) const {
    at::Tensor padded = ex.reflect_pad(x);
    at::Tensor fr = padded.unfold(0, ex.n_fft(), ex.hop_length()).narrow(0, 0, frames);
    return at::fft_rfft(fr * win, ex.n_fft(), -1);
  }

  // [T, n_freqs] complex -> the signal whose STFT is closest to it in the
  // least-squares sense (Griffin & Lim's eq. 6: windowed overlap-add divided
  // by the summed squared window), with the analysis padding cut off again.
  at::Tensor inverse(const at::Tensor& spec) const {
    const int64_t n_fft = ex.n_fft(), hop = ex.hop_length(), pad = ex.pad();
    at::Tensor fr = (at::fft_irfft(spec, n_fft, -1) * win).contiguous();
    const int64_t len = (frames - 1) * hop + n_fft;
    std::vector<float> acc(static_cast<size_t>(len), 0.0f);
    const float* f = fr.data_ptr<float>();
    for (int64_t t = 0; t < frames; ++t) {
      float* dst = acc.data() + t * hop;
      const float* src = f + t * n_fft;
      for (int64_t k = 0; k < n_fft; ++k) dst[k] += src[k];
    }
    at::Tensor out = at::empty({len - 2 * pad}, at::kFloat);
    float* o = out.data_ptr<float>();
    const float* ws = win_sq.data_ptr<float>();
    // Where no window reaches (only possible at the ends of a short-window
    // layout) the least-squares estimate is 0.
    for (int64_t i = 0; i < len - 2 * pad; ++i) {
      const float d = ws[i + pad];
      o[i] = d > 1e-8f ? acc[i + pad] / d : 0.0f;
    }
    return out;
  }
};

// spec with its magnitude replaced by `mag` (phase kept; zero bins get phase 0).
at::Tensor with_magnitude(const at::Tensor& spec, const at::Tensor& mag) {
  return spec * (mag / (spec.abs() + 1e-16f));
}

}  // namespace

at::Tensor mel_to_magnitude(const MelExtractor& ex, const at::Tensor& log_mel, int nnls_iterations) {
  check_frames("mel_to_magnitude", log_mel, ex.n_mels(), "mel bands");
  c10::InferenceMode guard;
  const at::Tensor fb = ex.filterbank();            // float64 [n_mels, F]
  const at::Tensor target = log_mel.to(at::kDouble).exp();  // [T, n_mels]: fb . |X|^power
  if (log_mel.size(0) == 0) return at::zeros({0, fb.size(1)}, at::kFloat);
  // Seed: the minimum-norm least-squares solution, clipped to >= 0 and lifted
  // by a small floor so the multiplicative updates below can still raise
  // every bin a band covers (an exact 0 would stay 0 for ever).
  at::Tensor s = at::matmul(target, at::linalg_pinv(fb).t()).clamp_min_(0.0);
  s.add_(1e-6 * std::max(s.max().item<double>(), 1e-12));
  // Lee & Seung's multiplicative updates for min |s fb^T - target|^2, s >= 0:
  // s <- s * (target fb) / (s fb^T fb); each step lowers the error and keeps
  // s non-negative. Bins no band covers get a zero numerator and go to 0.
  const at::Tensor numer = at::matmul(target, fb);  // [T, F]
  const at::Tensor fbt = fb.t().contiguous();
  for (int i = 0; i < nnls_iterations; ++i) {
    at::Tensor denom = at::matmul(at::matmul(s, fbt), fb).add_(1e-30);  // from the old s
    s.mul_(numer).div_(denom);
  }
  if (ex.format().power == 2) s.sqrt_();
  return s.to(at::kFloat);
}

at::Tensor griffin_lim(const MelExtractor& ex, const at::Tensor& magnitude, const GriffinLimOptions& opts) {
  const int64_t n_freqs = ex.n_fft() / 2 + 1;
  check_frames("griffin_lim", magnitude, n_freqs, "FFT bins n_fft/2 + 1");
  if (opts.iterations < 0) throw ModelError("griffin_lim: iterations must be >= 0");
  c10::InferenceMode guard;
  const int64_t t = magnitude.size(0);
  if (t == 0) return at::zeros({0}, at::kFloat);
  const at::Tensor mag = magnitude.to(at::kFloat).contiguous();
  const Stft stft(ex, t);

  at::Tensor phase = at::zeros({t, n_freqs}, at::kFloat);
  if (opts.random_init) {
    std::mt19937_64 rng(opts.seed);
    std::uniform_real_distribution<float> u(-static_cast<float>(M_PI), static_cast<float>(M_PI));
    float* p = phase.data_ptr<float>();
    for (int64_t i = 0; i < phase.numel(); ++i) p[i] = u(rng);
  }
  at::Tensor t_n = at::polar(mag, phase);  // complex64
  at::Tensor c_prev = t_n;
  for (int i = 0; i < opts.iterations; ++i) {
    // c_n = P_consistent(P_magnitude(t_{n-1})), t_n = c_n + a (c_n - c_{n-1}).
    at::Tensor c = stft.forward(stft.inverse(with_magnitude(t_n, mag)));
    t_n = opts.momentum != 0.0 ? c + (c - c_prev) * opts.momentum : c;
    c_prev = c;
  }
  return stft.inverse(with_magnitude(t_n, mag));
}

at::Tensor griffin_lim_from_mel(const MelExtractor& ex, const at::Tensor& log_mel, const GriffinLimOptions& opts) {
  return griffin_lim(ex, mel_to_magnitude(ex, log_mel, opts.nnls_iterations), opts);
}

}  // namespace chatterbox::mel
