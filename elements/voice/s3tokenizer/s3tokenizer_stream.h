// Streaming front for S3TokenizerV2: 16 kHz samples in, speech tokens out,
// for the s3tokenizer element (and any other program feeding audio in
// pieces).
//
// The tokenizer is not causal: its log-mel floor is max(x) - 8 over the
// whole call, and every encoder block attends over the whole input. So:
//  - chunk_tokens = 0 (whole utterance): samples are kept until finish(),
//    which runs S3Tokenizer::tokenize() on all of them -- exactly upstream's
//    S3Tokenizer.forward([wave]) (30 s windows beyond 30 s), whatever the
//    sizes of the pieces pushed.
//  - chunk_tokens = N > 0: tokens are decided N at a time (N * 40 ms of
//    audio) by one encoder pass over a window of `context_tokens` tokens of
//    audio before the chunk, the chunk, and `lookahead_tokens` after it. The
//    log-mel floor uses the maximum over everything up to the window's end.
//    Window positions depend only on the stream position, so the output is
//    the same for any sizes of the pieces pushed; it differs from the
//    whole-utterance tokens where the missing context changes a decision
//    (the bench publishes the agreement per setting). Latency:
//    (chunk + lookahead) * 40 ms + 2.5 ms (the last frame's STFT half window).
//
// Token j covers samples [640 j, 640 (j + 1)) (4 mel frames of 160 samples).
//
// No GStreamer here: part of libchatterbox.
#pragma once

#include "elements/voice/s3tokenizer/s3tokenizer.h"

#include <cstdint>
#include <vector>

namespace chatterbox::voice {

struct S3TokenizerStreamOptions {
  int64_t chunk_tokens = 0;      // 0: whole utterance (exact)
  int64_t context_tokens = 100;  // chunked: left context (4 s)
  int64_t lookahead_tokens = 25; // chunked: right context (1 s)
  // One encoder pass takes at most this many tokens (upstream's 30 s window).
  static constexpr int64_t kMaxWindowTokens = 750;
  // Throws ModelError when the settings cannot run (window over 30 s).
  void validate() const;
  // Samples between the first sample of a chunk and the sample whose
  // arrival releases it (chunked); 0 for whole utterances (unbounded).
  int64_t latency_samples() const;
};

class S3TokenizerStream {
 public:
  static constexpr int64_t kSamplesPerToken = 640;  // 16 kHz / 25 Hz
  static constexpr int64_t kHop = 160, kHalfWindow = 200;

  S3TokenizerStream(const S3Tokenizer& tokenizer, S3TokenizerStreamOptions opts);

  // Appends samples; returns the tokens decided by them (chunked mode).
  std::vector<int64_t> push(const float* samples, int64_t n);
  // Ends the utterance: the remaining tokens (all of them for whole
  // utterances). The stream is then empty and ready for the next one.
  // Fewer than 201 samples give no tokens (torch.stft's reflect padding
  // needs more): see too_short().
  std::vector<int64_t> finish();
  // Drops everything (flush).
  void reset();

  int64_t samples() const { return total_; }
  int64_t tokens_out() const { return tokens_out_; }
  // The last finish() dropped a too-short utterance (<= 200 samples).
  bool too_short() const { return too_short_; }
  const S3TokenizerStreamOptions& options() const { return opts_; }

 private:
  // One encoder pass deciding tokens [s, s + count) with the window ending at
  // token `b` (exclusive) and `frames_end` mel frames available in total
  // (end-reflected when the stream has ended).
  std::vector<int64_t> run_window(int64_t s, int64_t count, int64_t b, int64_t frames_end, bool at_end);
  // Sample at absolute index i with torch's reflect padding at the start
  // (and at the end once the stream ended).
  float sample(int64_t i, bool at_end) const;
  void trim();

  const S3Tokenizer& tok_;
  S3TokenizerStreamOptions opts_;
  std::vector<float> audio_;  // samples [base_, total_)
  int64_t base_ = 0;
  int64_t total_ = 0;
  int64_t tokens_out_ = 0;
  int64_t max_frames_ = 0;        // frames included in running_max_
  float running_max_ = -1e30f;    // max of log10(clamp(mel, 1e-10)) so far
  bool too_short_ = false;
};

}  // namespace chatterbox::voice
