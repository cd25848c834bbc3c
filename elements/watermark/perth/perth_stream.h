// Perth embedding as a stream of samples (what `perthmark` runs). No
// GStreamer here: part of libchatterbox.
//
// Two modes, both giving exactly as many samples out as came in:
//  - Utterance (exact): holds the utterance and at finish() runs upstream's
//    apply_watermark on it. Upstream's output is (T - 1) * 320 samples at
//    32 kHz resampled back, i.e. up to ~10 ms + a resampler rounding short of
//    the input; those last input samples are appended unmarked, so the
//    output is upstream's over the common length, then the input's tail.
//  - Stream: both soxr resamplers run as streams (their output does not
//    depend on how the input is chunked), the STFT frames are made as soon as
//    their samples are in, the encoder runs on blocks of frames with the 15
//    frames of context its five k7 convs need on each side (so its output
//    is the whole-utterance output), and the iSTFT is an overlap-add that
//    releases every sample no later frame touches. The one difference from
//    the exact mark is the mask: it compares each frame with the loudest
//    frame *so far* (including the look-ahead), not the utterance's
//    loudest, so quiet frames before the loudest one may be marked where
//    upstream leaves them alone. Latency: see latency_samples_32k().
#pragma once

#include "elements/watermark/perth/perth.h"

#include <cstdint>
#include <memory>
#include <vector>

namespace chatterbox::perth {

class PerthEmbedder {
 public:
  enum class Mode { Utterance, Stream };
  PerthEmbedder(std::shared_ptr<const PerthNet> net, int64_t rate, Mode mode, int64_t block_frames = 10);
  ~PerthEmbedder();
  PerthEmbedder(const PerthEmbedder&) = delete;
  PerthEmbedder& operator=(const PerthEmbedder&) = delete;

  // Appends the samples that are final to `out`.
  void push(const float* x, int64_t n, std::vector<float>& out);
  // Ends the utterance: appends the rest (total out == total in) and resets.
  void finish(std::vector<float>& out);
  // Drops the utterance (flush).
  void reset();

  int64_t pending_input() const { return n_in_ - n_out_; }  // samples held (input rate)
  // Stream mode's look-ahead in 32 kHz samples (STFT + encoder context +
  // block), not counting the two resamplers' own delay.
  int64_t latency_samples_32k() const;
  // Stream mode's whole delay in seconds: the look-ahead plus both
  // resamplers' delays (soxr_delay); 0 in utterance mode.
  double latency_seconds() const;
  // Frames marked so far in this utterance and those the running mask let in.
  int64_t frames_done() const { return t_next_; }
  Mode mode() const { return mode_; }
  int64_t rate() const { return rate_; }

 private:
  void feed_in32(const float* x, int64_t n);    // after the input resampler
  void process(bool final, std::vector<float>& out);
  void emit32(const float* y, int64_t n, std::vector<float>& out);
  void emit_rate(const float* y, int64_t n, std::vector<float>& out);
  void finish_stream(std::vector<float>& out);

  std::shared_ptr<const PerthNet> net_;
  int64_t rate_;
  Mode mode_;
  int64_t block_;
  struct Soxr;
  std::unique_ptr<Soxr> in_rs_, out_rs_;

  // totals of the utterance
  int64_t n_in_ = 0, n_out_ = 0;
  std::vector<float> held_;          // utterance mode: the input; stream mode: its recent tail
  int64_t held_base_ = 0;            // absolute input index of held_[0]
  // stream state (32 kHz domain)
  std::vector<float> x32_;           // input at 32 kHz, x32_[0] is sample x32_base_
  int64_t x32_base_ = 0, n32_ = 0;   // n32_: samples available (absolute count)
  std::vector<float> head32_;        // the first n_fft / 2 + 1 samples (reflect padding at the start)
  int64_t t_next_ = 0;               // next frame to mark
  float running_max_ = 0.f;
  std::vector<double> ola_, env_;    // overlap-add in padded coordinates; ola_[0] is p = ola_base_
  int64_t ola_base_ = 0;
  int64_t emitted32_ = 0;            // 32 kHz samples released to the output resampler
  int64_t out_rate_total_ = 0;       // samples the output resampler produced
};

}  // namespace chatterbox::perth
