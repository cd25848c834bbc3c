// Log-mel features for every layout a MelFormat can describe, whole-utterance
// (MelExtractor) and streaming (MelStream: the same frames as the whole result).
//
// The two layouts in use:
//  - S3Gen ("same"): reflect-pad (n_fft-hop)/2 both sides, STFT center=False,
//    |X| = sqrt(re^2 + im^2 + 1e-9), Slaney mel, ln(max(x, 1e-5)); T = N / hop.
//  - Vocos ("center"): reflect-pad n_fft/2 both sides (torch.stft center=True),
//    |X| with no epsilon, HTK mel without norm, ln(max(x, 1e-7)); T = 1 + N / hop.
//
// Output is frame-major [T, n_mels] like the audio/x-mel-spectrogram caps
// layout (the reference modules return [1, n_mels, T]: transpose to compare).
//
// Short utterances. torch's reflect padding refuses N <= pad (720 samples for
// S3Gen, 512 for Vocos). Here such input is padded by periodic mirroring
// (x[-i] = x[i], x[N-1+i] = x[N-1-i], repeated; what numpy.pad(mode="reflect")
// and so librosa give; a single sample is repeated), so the frame formula
// holds for every N >= 1 and a short utterance at the end of a stream still
// yields its frames. N = 0 gives no frames in both layouts. For N > pad the
// result is exactly torch's.
//
// No GStreamer here: part of libchatterbox.
#pragma once

#include "gst-plugins/core/mel_format.h"

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <memory>
#include <vector>

namespace chatterbox::mel {

class MelExtractor {
 public:
  // Validates every field; an unsupported or inconsistent format is a
  // ModelError listing each problem (e.g. "padding='valid' is not supported").
  explicit MelExtractor(const MelFormat& format);

  const MelFormat& format() const;
  int64_t n_fft() const;
  int64_t hop_length() const;
  int64_t n_mels() const;
  // Reflect padding on each side: (n_fft - hop)/2 ("same") or n_fft/2 ("center").
  int64_t pad() const;

  // Frames for an utterance of n samples: 0 for n = 0, else
  // max(0, 1 + (n + 2*pad - n_fft) / hop) (floor division).
  int64_t num_frames(int64_t n_samples) const;
  // The fewest samples after which MelStream::feed has returned `frames`
  // frames (the rest need finish()): max(pad + 1, (frames-1)*hop + n_fft - pad).
  int64_t samples_for_frames(int64_t frames) const;

  // audio: 1-D float32 (or float64, then computed in float64) -> [T, n_mels]
  // in the same dtype.
  at::Tensor compute(const at::Tensor& audio) const;

  // The padded signal compute() analyses: [N + 2*pad].
  at::Tensor reflect_pad(const at::Tensor& audio) const;
  // Frames 0..n_frames-1 of an already padded signal (frame t starts at
  // t*hop); needs padded.size(0) >= (n_frames-1)*hop + n_fft.
  at::Tensor frames_to_mel(const at::Tensor& padded, int64_t n_frames) const;

  // The filterbank in use as float64 [n_mels, n_fft/2 + 1] and the analysis
  // window [n_fft] (periodic Hann of win_length, centred in n_fft as
  // torch.stft does). Slaney scale (librosa's recipe): mel_filterbank and
  // hann_window in float64. HTK scale (torchaudio's recipe):
  // mel_filterbank_torchaudio_f32 and torch.hann_window in float32, i.e.
  // torchaudio's own numbers. Computation in float32 uses them rounded to float32.
  at::Tensor filterbank() const;
  at::Tensor window() const;

  // The same recipe with other tables: a filterbank [n_mels, n_fft/2 + 1]
  // and an analysis window [win_length] (e.g. the tables a checkpoint ships,
  // or a reference's own float32 evaluation of them); any float dtype. A
  // shape that does not fit the format is a ModelError.
  MelExtractor with_tables(const at::Tensor& filterbank, const at::Tensor& window) const;

 private:
  struct Impl;
  std::shared_ptr<const Impl> impl_;  // immutable: copies share it
};

// Streaming front end for one utterance at a time. feed() returns the frames
// completed by the new samples, finish() the rest (they need the end
// padding), after which the stream is ready for the next utterance. The
// concatenated output equals MelExtractor::compute on the whole utterance
// for any split of the input: the same frames over the same samples, and
// spectra bit-identical; the mel projection GEMM is blocked differently for
// 1 frame than for hundreds, so single values may differ by one float32 ulp
// (measured <= 9.6e-7 in the log domain). State is bounded: at most n_fft samples are
// kept between calls.
class MelStream {
 public:
  explicit MelStream(const MelFormat& format);
  explicit MelStream(MelExtractor extractor);

  // float32 samples -> [t, n_mels] float32 (t may be 0).
  at::Tensor feed(const float* samples, int64_t n);
  at::Tensor feed(const at::Tensor& samples);  // 1-D, converted to float32
  // Remaining frames of the utterance (incl. those over the end padding),
  // then reset().
  at::Tensor finish();
  // Drops the current utterance (nothing is emitted).
  void reset();

  int64_t samples_fed() const { return n_in_; }       // of the current utterance
  int64_t frames_emitted() const { return next_frame_; }
  // Samples held between calls (never more than n_fft).
  int64_t buffered() const { return static_cast<int64_t>(buf_.size()); }
  const MelExtractor& extractor() const { return ex_; }

 private:
  at::Tensor empty() const;

  MelExtractor ex_;
  // Padded-signal samples [buf_start_, buf_start_ + buf_.size()); before the
  // start padding is known (fewer than pad+1 samples) the raw samples.
  std::vector<float> buf_;
  int64_t buf_start_ = 0;
  bool started_ = false;  // start padding written
  int64_t n_in_ = 0;
  int64_t next_frame_ = 0;
};

}  // namespace chatterbox::mel
