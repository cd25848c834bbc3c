#include "bench/quality/metrics.h"

#include "bench/quality/resample.h"
#include "elements/mel/features/mel_extractor.h"
#include "gst-plugins/core/checkpoint.h"  // shape_str

#include <ATen/ATen.h>
#include <c10/core/InferenceMode.h>

#include <algorithm>
#include <cmath>
#include <limits>

namespace chatterbox::quality {

namespace {

at::Tensor as_tensor(const std::vector<double>& x) {
  return at::from_blob(const_cast<double*>(x.data()), {static_cast<int64_t>(x.size())}, at::kDouble);
}

void require_same_length(const char* what, const std::vector<double>& a, const std::vector<double>& b) {
  if (a.size() != b.size())
    throw QualityError(std::string(what) + ": signals differ in length (" + std::to_string(a.size()) + " vs " +
                       std::to_string(b.size()) + " samples)");
}

double ratio_db(double num, double den) {
  if (den == 0.0) return num == 0.0 ? 0.0 : std::numeric_limits<double>::infinity();
  return 10.0 * std::log10(num / den);
}

// |STFT| [T, n_fft/2 + 1] of x, Hann (periodic), centre reflect-padded
// (torch.stft center=True; zero-padded instead when x is too short to reflect).
at::Tensor stft_magnitude(const at::Tensor& x, int64_t n_fft, int64_t hop, double power_floor) {
  const int64_t pad = n_fft / 2;
  at::Tensor xp = x.size(0) > pad ? at::reflection_pad1d(x.view({1, 1, -1}), {pad, pad}).view({-1})
                                  : at::constant_pad_nd(x, {pad, pad}, 0.0);
  at::Tensor frames = xp.unfold(0, n_fft, hop);
  at::Tensor win = at::hann_window(n_fft, /*periodic=*/true, at::kDouble);
  at::Tensor power = at::fft_rfft(frames * win, n_fft, -1).abs().pow(2);
  return power.clamp_min(power_floor).sqrt();
}

}  // namespace

double snr_db(const std::vector<double>& ref, const std::vector<double>& test) {
  require_same_length("SNR", ref, test);
  double s = 0.0, e = 0.0;
  for (size_t i = 0; i < ref.size(); ++i) {
    s += ref[i] * ref[i];
    e += (ref[i] - test[i]) * (ref[i] - test[i]);
  }
  return ratio_db(s, e);
}

double si_snr_db(const std::vector<double>& ref, const std::vector<double>& test) {
  require_same_length("SI-SNR", ref, test);
  const size_t n = ref.size();
  if (n == 0) return 0.0;
  double mr = 0.0, mt = 0.0;
  for (size_t i = 0; i < n; ++i) mr += ref[i], mt += test[i];
  mr /= static_cast<double>(n);
  mt /= static_cast<double>(n);
  double rt = 0.0, rr = 0.0;
  for (size_t i = 0; i < n; ++i) rt += (test[i] - mt) * (ref[i] - mr), rr += (ref[i] - mr) * (ref[i] - mr);
  if (rr == 0.0) return 0.0;  // a constant reference has no target to project on
  const double a = rt / rr;
  double s = 0.0, e = 0.0;
  for (size_t i = 0; i < n; ++i) {
    const double target = a * (ref[i] - mr), rest = (test[i] - mt) - target;
    s += target * target;
    e += rest * rest;
  }
  return ratio_db(s, e);
}

double log_mel_l1(const at::Tensor& ref_mel, const at::Tensor& test_mel) {
  const int64_t t = std::min(ref_mel.size(0), test_mel.size(0));
  if (t == 0 || ref_mel.size(1) != test_mel.size(1))
    throw QualityError("log-mel L1: need frames of equal width (got " + shape_str(ref_mel.sizes()) + " and " +
                       shape_str(test_mel.sizes()) + ")");
  return (ref_mel.narrow(0, 0, t).to(at::kDouble) - test_mel.narrow(0, 0, t).to(at::kDouble)).abs().mean()
      .item<double>();
}

at::Tensor mel_cepstrum(const at::Tensor& log_mel, int order) {
  const int64_t k = log_mel.size(1);
  if (order < 1 || order >= k)
    throw QualityError("mel cepstrum: order must be in 1.." + std::to_string(k - 1) + ", got " +
                       std::to_string(order));
  // DCT-II basis scaled by 1/K: [K, order + 1].
  at::Tensor basis = at::empty({k, order + 1}, at::kDouble);
  auto b = basis.accessor<double, 2>();
  for (int64_t i = 0; i < k; ++i)
    for (int m = 0; m <= order; ++m)
      b[i][m] = std::cos(M_PI * m * (static_cast<double>(i) + 0.5) / static_cast<double>(k)) / static_cast<double>(k);
  return at::matmul(log_mel.to(at::kDouble), basis);
}

double mcd_db(const at::Tensor& ref_mel, const at::Tensor& test_mel, int order) {
  const int64_t t = std::min(ref_mel.size(0), test_mel.size(0));
  if (t == 0) throw QualityError("MCD: no frames to compare");
  at::Tensor d = mel_cepstrum(ref_mel.narrow(0, 0, t), order) - mel_cepstrum(test_mel.narrow(0, 0, t), order);
  at::Tensor per_frame = d.narrow(1, 1, order).pow(2).sum(1).mul(2.0).sqrt().mul(10.0 / std::log(10.0));
  return per_frame.mean().item<double>();
}

at::Tensor s3gen_log_mel(const std::vector<double>& audio_24k) {
  static const mel::MelExtractor ex(MelFormat::s3gen());
  return ex.compute(as_tensor(audio_24k).to(at::kFloat));
}

StftDistance multi_resolution_stft(const std::vector<double>& ref, const std::vector<double>& test) {
  require_same_length("multi-resolution STFT", ref, test);
  c10::InferenceMode guard;
  static const int64_t res[3][2] = {{512, 128}, {1024, 256}, {2048, 512}};
  StftDistance d;
  const at::Tensor r = as_tensor(ref), t = as_tensor(test);
  for (const auto& nh : res) {
    at::Tensor a = stft_magnitude(r, nh[0], nh[1], 1e-7), b = stft_magnitude(t, nh[0], nh[1], 1e-7);
    d.spectral_convergence += ((a - b).norm() / a.norm()).item<double>();
    d.log_magnitude += (a.log() - b.log()).abs().mean().item<double>();
  }
  d.spectral_convergence /= 3.0;
  d.log_magnitude /= 3.0;
  return d;
}

double spectral_similarity(const std::vector<double>& ref, const std::vector<double>& test) {
  require_same_length("spectral similarity", ref, test);
  c10::InferenceMode guard;
  at::Tensor a = stft_magnitude(as_tensor(ref), 1024, 256, 0.0).flatten();
  at::Tensor b = stft_magnitude(as_tensor(test), 1024, 256, 0.0).flatten();
  a = a - a.mean();
  b = b - b.mean();
  const double den = (a.norm() * b.norm()).item<double>();
  return den > 0.0 ? ((a * b).sum().item<double>() / den) : 0.0;
}

Report compare(std::vector<double> ref, std::vector<double> test, int64_t rate) {
  c10::InferenceMode guard;
  Report r;
  r.rate = rate;
  r.ref_samples = static_cast<int64_t>(ref.size());
  r.test_samples = static_cast<int64_t>(test.size());
  const size_t n = std::min(ref.size(), test.size());
  ref.resize(n);
  test.resize(n);
  r.samples = static_cast<int64_t>(n);
  if (n == 0) throw QualityError("nothing to compare: a signal is empty");
  try {
    r.stoi = stoi(ref, test, rate);
  } catch (const QualityError& e) {
    r.stoi_error = e.what();
  }
  const std::vector<double> ref24 = resample(ref, rate, 24000), test24 = resample(test, rate, 24000);
  const at::Tensor mr = s3gen_log_mel(ref24), mt = s3gen_log_mel(test24);
  r.log_mel_l1 = log_mel_l1(mr, mt);
  r.mcd_db = mcd_db(mr, mt);
  r.mr_stft = multi_resolution_stft(ref, test);
  r.spectral_similarity = spectral_similarity(ref, test);
  r.snr_db = snr_db(ref, test);
  r.si_snr_db = si_snr_db(ref, test);
  return r;
}

}  // namespace chatterbox::quality
