// Perth implicit watermark (resemble-ai/Perth, perth_net_implicit): the
// model library behind `perthmark` and `perthdetect`. No GStreamer here: part
// of libchatterbox.
//
// Upstream's PerthImplicitWatermarker, step by step:
//   apply_watermark(x, rate):
//     x32 = librosa.resample(x, rate -> 32000, soxr_hq)
//     X = torch.stft(x32, n_fft 2048, hop 320, win 2048, periodic Hann, center,
//                    reflect pad); mag = |X|, phase = angle(X)
//     m = (20 log10(max(mag, 1e-9)) + 180) / 195          (normalised dB)
//     mask[t] = sum_f m[f, t] > 0.05 * max_t' sum_f m[f, t']  (whole utterance)
//     m[:128] += encoder(m[:128]) * mask                   (bins 0-2 kHz)
//     y32 = torch.istft(10^((195 m - 180) / 20 clipped at 10^10) e^{i phase})
//           (no length: (T - 1) * 320 samples, T = 1 + n32 / 320)
//     y = librosa.resample(y32, 32000 -> rate, soxr_hq)
//   get_watermark(y, rate):
//     y32 = librosa.resample(y, rate -> 32000, polyphase)  (scipy resample_poly)
//     decoder(m(y32)) clipped to [0, 1] (and rounded unless round=False)
//
// The encoder: Conv1d 128->H k1, 5 x Conv1d H->H k7, Conv1d H->128 k1, every
// conv but the last followed by LeakyReLU(0.01). The decoder: three such
// stacks ending in 2 channels (attention logit, mark) on the subband
// linearly resampled to int(T * 1.25), T and int(T * 0.75) frames; each
// branch's two channels are averaged over the mask (nearest-resampled),
// the three marks are weighted by the softmax of the three attention means.
#pragma once

#include "gst-plugins/core/checkpoint.h"

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace chatterbox::perth {

// hparams.yaml (perth/perth_net/pretrained/implicit/hparams.yaml): the fields
// that change the model's math. Defaults are the shipped file's.
struct PerthConfig {
  int64_t sample_rate = 32000;
  int64_t n_fft = 2048;
  int64_t hop_size = 320;
  int64_t window_size = 2048;
  double stft_magnitude_min = 1e-9;
  double max_wmark_freq = 2000.0;
  int64_t hidden_size = 256;  // taken from the weights' shapes
  std::string window_fn = "hann";

  // compute_subband_freq: int(round(nfreq * max_wmark_freq / (sample_rate / 2))).
  int64_t subband() const;
  int64_t n_freq() const { return n_fft / 2 + 1; }
};

// Reads hparams.yaml; ModelError naming the file and field on anything we
// cannot honour (a window other than hann, a hop not dividing the frame).
PerthConfig read_hparams(const std::string& path);

// One conv stack: 1x1, 5 x k7, 1x1 (last without activation).
struct ConvStack {
  std::vector<at::Tensor> weight, bias;  // 7 layers
  at::Tensor forward(const at::Tensor& x) const;  // [B, C, T] -> [B, C', T]
  // Frames of context the stack needs on each side of a frame (15).
  static constexpr int64_t kContext = 15;
};

// STFT magnitude (normalised dB) and phase of a 32 kHz signal.
struct MagPhase {
  at::Tensor mag;    // [n_freq, T] float32
  at::Tensor phase;  // [n_freq, T] float32
};

class PerthNet {
 public:
  // `path`: upstream's perth_net_*.pth.tar (torch.save {"model": state_dict,
  // "step": n}, read by our restricted unpickler) or a safetensors file with
  // the same names (with or without the "model." prefix). hparams.yaml beside
  // the file is read when present. Throws ModelError naming the file and the
  // missing or misshapen tensor.
  static std::shared_ptr<const PerthNet> load(const std::string& path);
  PerthNet(const Checkpoint& ck, PerthConfig cfg);

  const PerthConfig& config() const { return cfg_; }
  const std::string& path() const { return path_; }
  int64_t step() const { return step_; }  // the checkpoint's "step", -1 if absent

  // --- the pieces (32 kHz domain)
  MagPhase magphase(const at::Tensor& wave32) const;                // torchaudio Spectrogram + cx_to_magphase
  // torch.stft's frames of an already padded signal (complex [n_freq, T]).
  at::Tensor stft_frames(const at::Tensor& padded) const;
  MagPhase to_magphase(const at::Tensor& spec) const;                // cx_to_magphase
  at::Tensor to_complex(const at::Tensor& mag, const at::Tensor& phase) const;  // magphase_to_cx
  at::Tensor frame_sums(const at::Tensor& mag) const { return mag.sum(0); }  // [T]
  // encoder.layers(mag[:subband]) for [subband, T] (no mask applied).
  at::Tensor encoder_raw(const at::Tensor& sub_mag) const;
  // magphase_to_cx + torch.istft; length < 0: upstream's (T - 1) * hop.
  at::Tensor synthesize(const at::Tensor& mag, const at::Tensor& phase, int64_t length = -1) const;
  // Decoder.forward on a [n_freq, T] magnitude (upstream's value before
  // clipping and rounding). NaN when no frame passes the mask (silence).
  double decode(const at::Tensor& mag) const;

  // --- upstream's two calls
  // Watermarked 32 kHz signal, upstream's length ((T - 1) * hop).
  at::Tensor embed32(const at::Tensor& wave32, at::Tensor* mask_out = nullptr, at::Tensor* residual_out = nullptr) const;
  // apply_watermark(x, rate): upstream's samples, upstream's length.
  at::Tensor apply_watermark(const at::Tensor& wave, int64_t rate) const;
  // get_watermark(y, rate, round=False) before clipping: NaN on silence.
  double detect_raw(const at::Tensor& wave, int64_t rate) const;
  // Clipped to [0, 1] as upstream returns it; 0 on silence.
  double detect(const at::Tensor& wave, int64_t rate) const;

  const at::Tensor& window() const { return window_; }

 private:
  PerthConfig cfg_;
  std::string path_;
  int64_t step_ = -1;
  ConvStack encoder_, slow_, normal_, fast_;
  at::Tensor window_;  // torch.hann_window(window_size) float32
};

// The mask upstream computes: frame_sums > 0.05 * max (float32) as float;
// `running_max` is the whole utterance's loudest frame sum (stream mode: the
// loudest so far).
at::Tensor magmask(const at::Tensor& frame_sums, float running_max);

}  // namespace chatterbox::perth
