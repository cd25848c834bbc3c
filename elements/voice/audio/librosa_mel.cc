#include "elements/voice/audio/librosa_mel.h"

#include "elements/mel/features/filterbank.h"

#include <ATen/ATen.h>

#include <vector>

namespace chatterbox::voice {

at::Tensor librosa_mel_f32(int64_t rate, int64_t n_fft, int64_t n_mels, double f_min, double f_max) {
  using mel::MelNorm;
  using mel::MelScale;
  // First rounding: the unnormalised triangle (float64) stored as float32.
  const at::Tensor tri = mel::mel_filterbank(rate, n_fft, n_mels, f_min, f_max, MelScale::Slaney, MelNorm::None)
                             .to(at::kFloat)
                             .contiguous();
  // Band edges as librosa.mel_frequencies gives them (np.linspace in mel:
  // start + i * step, the last point exactly the end), then mel_to_hz.
  const int64_t n_edges = n_mels + 2;
  const double m_lo = mel::hz_to_mel(f_min, MelScale::Slaney), m_hi = mel::hz_to_mel(f_max, MelScale::Slaney);
  const double step = (m_hi - m_lo) / static_cast<double>(n_edges - 1);
  std::vector<double> edge(n_edges);
  for (int64_t i = 0; i < n_edges; ++i) edge[i] = mel::mel_to_hz(m_lo + static_cast<double>(i) * step, MelScale::Slaney);
  edge[n_edges - 1] = mel::mel_to_hz(m_hi, MelScale::Slaney);

  // Second rounding: weights *= enorm computes float32 * float64 in float64.
  at::Tensor out = at::empty_like(tri);
  const float* t = tri.data_ptr<float>();
  float* o = out.data_ptr<float>();
  const int64_t n_freqs = tri.size(1);
  for (int64_t i = 0; i < n_mels; ++i) {
    const double enorm = 2.0 / (edge[i + 2] - edge[i]);
    for (int64_t k = 0; k < n_freqs; ++k)
      o[i * n_freqs + k] = static_cast<float>(static_cast<double>(t[i * n_freqs + k]) * enorm);
  }
  return out;
}

}  // namespace chatterbox::voice
