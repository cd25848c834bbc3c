// VoiceEncoder (chatterbox/models/voice_encoder/voice_encoder.py, from
// Real-Time-Voice-Cloning): the 256-dim speaker embedding T3 conditions on.
//
// embeds_from_wavs([wave], 16000) as prepare_conditionals calls it:
// librosa.effects.trim(top_db=20), the 40-band power mel, partials of 160
// frames every 77 (rate 1.3: round(16000 / 1.3 / 160)) covering at least 80 %
// of the last one (the mel zero-padded or cut to fit), a 3-layer LSTM(40 ->
// 256) over each partial, proj(h_n of the last layer), ReLU, L2 norm; the
// mean of the partial embeddings, L2-normalised again.
//
// Weights: ve.safetensors (no prefix). Sizes from tensor shapes.
//
// No GStreamer here: part of libchatterbox.
#pragma once

#include "gst-plugins/core/checkpoint.h"

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <memory>
#include <string>

namespace chatterbox::voice {

struct VoiceEncoderConfig {
  int64_t n_mels = 40;
  int64_t hidden = 256;
  int64_t layers = 3;
  int64_t embed = 256;
  // VoiceEncConfig values the code fixes.
  static constexpr int64_t kRate = 16000, kPartialFrames = 160;
  static constexpr double kTrimTopDb = 20.0, kPartialRate = 1.3, kMinCoverage = 0.8;
};

class VoiceEncoder {
 public:
  // dtype: the LSTM's compute type (float32; float64 for exact references in tests).
  static VoiceEncoder load(const std::string& path, at::ScalarType dtype = at::kFloat);
  static VoiceEncoder load(const Checkpoint& ckpt, at::ScalarType dtype = at::kFloat);

  VoiceEncoder(VoiceEncoder&&) noexcept;
  VoiceEncoder& operator=(VoiceEncoder&&) noexcept;
  ~VoiceEncoder();

  const VoiceEncoderConfig& config() const;
  // librosa's 40-band filterbank [n_mels, 201] float32.
  at::Tensor mel_basis() const;
  // Power mel [T, n_mels] of a 16 kHz wave (no trimming).
  at::Tensor mel(const at::Tensor& wave_16k) const;
  // stride_as_partials: mel [T, n_mels] -> [n, 160, n_mels].
  static at::Tensor partials(const at::Tensor& mel);
  // forward: partials [n, 160, n_mels] -> L2-normalised [n, embed];
  // `proj` (optional) receives the projection before the ReLU.
  at::Tensor partial_embeds(const at::Tensor& partials, at::Tensor* proj = nullptr) const;
  // Mean of partial embeddings, L2-normalised: [1, embed].
  static at::Tensor utterance_embed(const at::Tensor& partial_embeds);
  // embeds_from_wavs([wave], 16000): trim, mel, partials, embed -> [1, embed].
  at::Tensor embed(const at::Tensor& wave_16k) const;

 private:
  struct Impl;
  explicit VoiceEncoder(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace chatterbox::voice
