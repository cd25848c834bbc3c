// S3TokenizerV2 (speech_tokenizer_v2_25hz) as Chatterbox wraps it
// (chatterbox/models/s3tokenizer/s3tokenizer.py over xingchensong/S3Tokenizer
// model_v2.py): 16 kHz speech -> speech tokens at 25 Hz, vocabulary 3^8 = 6561.
//
//  - Front end: torch.stft(n_fft 400, hop 160, periodic Hann, center, reflect),
//    last frame dropped (T = L / 160), |X|^2, the 128-band librosa (Slaney)
//    filterbank, log10(clamp(., 1e-10)), max(x, max(x) - 8) over the whole
//    call, (x + 4) / 4.
//  - Encoder (AudioEncoderV2): Conv1d(k3, s2) + GELU twice, then blocks of
//    pre-LN attention with rotary embeddings (head dim 64) plus an FSMN memory
//    (depthwise conv 31 over the values), and a GELU MLP. No final norm.
//  - FSQ: Linear(width -> 8), tanh * 0.999, round to {-1, 0, 1}, digits of a
//    base-3 number.
//  - Mel inputs over 3000 frames (30 s) go through upstream's sliding windows
//    (30 s windows every 26 s, 1 s of tokens dropped at each inner edge).
//
// Weights: the `tokenizer.` part of s3gen.safetensors (or a bare state dict).
// Sizes come from tensor shapes (width, layers, mel bands); no metadata needed.
//
// No GStreamer here: part of libchatterbox.
#pragma once

#include "gst-plugins/core/checkpoint.h"

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <map>
#include <memory>
#include <string>

namespace chatterbox::voice {

struct S3TokenizerConfig {
  int64_t n_mels = 128;
  int64_t n_state = 1280;   // width
  int64_t n_head = 20;      // n_state / 64: upstream's rotary table is fixed to head dim 64
  int64_t n_layer = 6;
  int64_t fsmn_kernel = 31;
  // Fixed by the reference code.
  static constexpr int64_t kRate = 16000, kNfft = 400, kHop = 160;
  static constexpr int64_t kHeadDim = 64;
  static constexpr int64_t kCodebookSize = 6561;  // 3^8
  static constexpr int64_t kFsqDims = 8;
  static constexpr int64_t kWindowFrames = 3000;   // 30 s of mel frames
  static constexpr int64_t kWindowStride = 2600;   // 30 s - 4 s overlap
  static constexpr int64_t kOverlapTokens = 50;    // (4 s / 2) * 25 Hz dropped per inner edge
};

// Intermediate tensors of one encoder call (tests; names as in the fixtures).
using Trace = std::map<std::string, at::Tensor>;

struct S3Tokens {
  at::Tensor tokens;   // [1, N] int64
  at::Tensor log_mel;  // [1, n_mels, T] what the encoder saw (after max_len)
};

class S3Tokenizer {
 public:
  // s3gen.safetensors ("tokenizer." prefix) or a bare tokenizer state dict.
  static S3Tokenizer load(const std::string& path);
  static S3Tokenizer load(const Checkpoint& ckpt);

  S3Tokenizer(S3Tokenizer&&) noexcept;
  S3Tokenizer& operator=(S3Tokenizer&&) noexcept;
  ~S3Tokenizer();

  const S3TokenizerConfig& config() const;
  const std::string& prefix() const;  // "tokenizer." or ""

  // The front-end tables in use: [n_mels, 201] filterbank and the [400]
  // window (the checkpoint's `_mel_filters` / `window` when it holds them, as
  // upstream's non-strict load does; otherwise librosa's / torch's, computed).
  at::Tensor mel_filters() const;
  at::Tensor window() const;

  // wave: 1-D (or [1, L]) float32 at 16 kHz -> [1, n_mels, L / 160].
  at::Tensor log_mel(const at::Tensor& wave) const;
  // One encoder pass (no windowing): mel [1, n_mels, T] -> hidden [1, T', width],
  // T' = ceil(ceil(T / 2) / 2). `trace` receives conv1_out (before GELU),
  // conv2_out, block<i>_out.
  at::Tensor encode(const at::Tensor& mel, Trace* trace = nullptr) const;
  // FSQ on hidden [1, T', width]: project_down output z and the pre-rounding
  // value h = tanh(z) * 0.999, both [1, T', 8].
  at::Tensor fsq_project(const at::Tensor& hidden) const;
  static at::Tensor fsq_h(const at::Tensor& z);
  // h [1, T', 8] -> tokens [1, T'] int64: sum_i (round(h_i) + 1) * 3^i.
  static at::Tensor fsq_tokens(const at::Tensor& h);

  // quantize(): mel [1, n_mels, T] -> tokens [1, N], windowed above 3000 frames.
  at::Tensor quantize(const at::Tensor& mel) const;
  // S3Tokenizer.forward([wave], max_len): the log-mel cut to 4 * max_len
  // frames (max_len <= 0: no cut) after normalisation, then quantize.
  S3Tokens tokenize(const at::Tensor& wave, int64_t max_len = 0) const;

 private:
  struct Impl;
  explicit S3Tokenizer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace chatterbox::voice
