#include "bench/quality/stoi.h"

#include "bench/quality/resample.h"

#include <ATen/ATen.h>
#include <c10/core/InferenceMode.h>

#include <algorithm>
#include <cfloat>
#include <cmath>
#include <string>

namespace chatterbox::quality {

namespace {

constexpr int kHop = kStoiFrame / 2;
constexpr double kDynRange = 40.0;  // dB
constexpr double kBeta = -15.0;     // dB, lower signal-to-distortion bound

// MATLAB's hanning(n): 0.5 (1 - cos(2 pi k / (n + 1))), k = 1..n (no zeros).
std::vector<double> matlab_hanning(int n) {
  std::vector<double> w(static_cast<size_t>(n));
  for (int k = 1; k <= n; ++k) w[static_cast<size_t>(k - 1)] = 0.5 * (1.0 - std::cos(2.0 * M_PI * k / (n + 1.0)));
  return w;
}

// Frame starts 0, hop, ... < len - frame (MATLAB's 1:K:(length(x)-N)).
int64_t frame_count(int64_t len) { return len > kStoiFrame ? (len - kStoiFrame - 1) / kHop + 1 : 0; }

// Step 2: drops the frames 40 dB below the loudest clean frame from both
// signals and overlap-adds the windowed remaining frames back to back.
void remove_silent_frames(std::vector<double>& x, std::vector<double>& y, StoiResult& r) {
  const std::vector<double> w = matlab_hanning(kStoiFrame);
  const int64_t nf = frame_count(static_cast<int64_t>(x.size()));
  r.frames_total = nf;
  std::vector<double> energy(static_cast<size_t>(nf));
  double emax = -HUGE_VAL;
  for (int64_t j = 0; j < nf; ++j) {
    double s = 0.0;
    for (int k = 0; k < kStoiFrame; ++k) {
      const double v = x[static_cast<size_t>(j * kHop + k)] * w[k];
      s += v * v;
    }
    // The reference's 20 log10(|x w| / sqrt(N)); the eps keeps an all-zero frame finite.
    energy[static_cast<size_t>(j)] = 20.0 * std::log10(std::sqrt(s / kStoiFrame) + DBL_EPSILON);
    emax = std::max(emax, energy[static_cast<size_t>(j)]);
  }
  int64_t kept = 0;
  for (int64_t j = 0; j < nf; ++j) kept += (energy[static_cast<size_t>(j)] - emax + kDynRange) > 0.0;
  r.frames_kept = kept;
  const size_t out_len = kept > 0 ? static_cast<size_t>((kept - 1) * kHop + kStoiFrame) : 0;
  std::vector<double> xs(out_len, 0.0), ys(out_len, 0.0);
  int64_t c = 0;
  for (int64_t j = 0; j < nf; ++j) {
    if (!((energy[static_cast<size_t>(j)] - emax + kDynRange) > 0.0)) continue;
    for (int k = 0; k < kStoiFrame; ++k) {
      xs[static_cast<size_t>(c * kHop + k)] += x[static_cast<size_t>(j * kHop + k)] * w[k];
      ys[static_cast<size_t>(c * kHop + k)] += y[static_cast<size_t>(j * kHop + k)] * w[k];
    }
    ++c;
  }
  x.swap(xs);
  y.swap(ys);
}

// Steps 3-4: [bands, frames] one-third octave envelopes.
at::Tensor band_envelopes(const std::vector<double>& x, const at::Tensor& band_matrix) {
  const int64_t nf = frame_count(static_cast<int64_t>(x.size()));
  if (nf == 0) return at::zeros({kStoiBands, 0}, at::kDouble);
  const std::vector<double> w = matlab_hanning(kStoiFrame);
  at::Tensor sig = at::from_blob(const_cast<double*>(x.data()), {static_cast<int64_t>(x.size())}, at::kDouble);
  at::Tensor win = at::from_blob(const_cast<double*>(w.data()), {kStoiFrame}, at::kDouble);
  at::Tensor frames = sig.unfold(0, kStoiFrame, kHop).narrow(0, 0, nf) * win;  // copies
  at::Tensor power = at::fft_rfft(frames, kStoiFft, -1).abs().pow(2);        // [nf, 257]
  return at::matmul(band_matrix, power.t()).sqrt();                          // [15, nf]
}

at::Tensor band_matrix() {
  at::Tensor h = at::zeros({kStoiBands, kStoiFft / 2 + 1}, at::kDouble);
  for (int i = 0; i < kStoiBands; ++i) {
    const StoiBand b = stoi_bands()[static_cast<size_t>(i)];
    h[i].narrow(0, b.lo_bin, b.hi_bin - b.lo_bin).fill_(1.0);
  }
  return h;
}

}  // namespace

std::vector<StoiBand> stoi_bands() {
  const int n_bins = kStoiFft / 2 + 1;
  auto nearest_bin = [&](double hz) {  // first bin of minimal |f - hz| (MATLAB's min)
    int best = 0;
    double best_d = HUGE_VAL;
    for (int k = 0; k < n_bins; ++k) {
      const double f = static_cast<double>(k) * kStoiRate / kStoiFft, d = (f - hz) * (f - hz);
      if (d < best_d) best_d = d, best = k;
    }
    return best;
  };
  std::vector<StoiBand> bands(kStoiBands);
  for (int k = 0; k < kStoiBands; ++k) {
    bands[static_cast<size_t>(k)].centre_hz = 150.0 * std::pow(2.0, k / 3.0);
    bands[static_cast<size_t>(k)].lo_bin = nearest_bin(150.0 * std::pow(2.0, (2.0 * k - 1.0) / 6.0));
    bands[static_cast<size_t>(k)].hi_bin = nearest_bin(150.0 * std::pow(2.0, (2.0 * k + 1.0) / 6.0));
  }
  return bands;
}

StoiResult stoi(const std::vector<double>& clean, const std::vector<double>& processed, int64_t rate) {
  if (clean.size() != processed.size())
    throw QualityError("STOI: clean and processed signals differ in length (" + std::to_string(clean.size()) +
                       " vs " + std::to_string(processed.size()) + " samples)");
  c10::InferenceMode guard;
  StoiResult r;
  std::vector<double> x = resample(clean, rate, kStoiRate), y = resample(processed, rate, kStoiRate);
  remove_silent_frames(x, y, r);
  static const at::Tensor h = band_matrix();
  at::Tensor X = band_envelopes(x, h), Y = band_envelopes(y, h);
  const int64_t m = X.size(1);
  if (m < kStoiSegment)
    throw QualityError("STOI: only " + std::to_string(m) + " frames of speech remain after removing silent frames; "
                       "the measure needs at least " + std::to_string(kStoiSegment) + " (about 0.4 s of speech)");
  // Step 5 for every segment at once: [15, S, 30] windows over the frames.
  at::Tensor xs = X.unfold(1, kStoiSegment, 1), ys = Y.unfold(1, kStoiSegment, 1);
  r.segments = xs.size(1);
  const double clip = std::pow(10.0, -kBeta / 20.0);
  at::Tensor alpha = (xs.pow(2).sum(-1, true) / (ys.pow(2).sum(-1, true) + DBL_EPSILON)).sqrt();
  at::Tensor yp = at::minimum(ys * alpha, xs * (1.0 + clip));
  at::Tensor xc = xs - xs.mean(-1, true), yc = yp - yp.mean(-1, true);
  at::Tensor corr = (xc * yc).sum(-1) / (xc.norm(2, -1) * yc.norm(2, -1) + DBL_EPSILON);
  r.stoi = corr.mean().item<double>();
  return r;
}

}  // namespace chatterbox::quality
