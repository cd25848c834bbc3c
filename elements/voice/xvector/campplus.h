// CAMPPlus x-vector (chatterbox/models/s3gen/xvector.py, from 3D-Speaker via
// FunASR): the 192-dim speaker embedding S3Gen conditions on.
//
//   kaldi fbank (80 bins) minus its time mean
//   -> FCM head: Conv2d 3x3 + BN + ReLU, two stages of 2 BasicResBlocks
//      (stride 2 over frequency), Conv2d stride (2, 1) + BN + ReLU,
//      reshaped to channels * freq/8 rows
//   -> TDNN (k5, stride 2, pad 2) + BN + ReLU
//   -> three CAM dense blocks (12, 24, 16 layers; kernel 3; dilation 1, 2, 2),
//      each followed by a transit layer (BN, ReLU, 1x1 conv halving channels)
//   -> BN + ReLU, statistics pooling (mean ++ unbiased std over time)
//   -> dense 1x1 conv + BatchNorm without affine.
// BatchNorm in eval mode (running statistics). Widths (growth rate, bn_size,
// init channels, FCM channels, embedding size, layers per block) come from
// tensor shapes; kernel sizes and dilations are fixed in the reference code.
//
// Weights: the `speaker_encoder.` part of s3gen.safetensors (or bare).
//
// No GStreamer here: part of libchatterbox.
#pragma once

#include "gst-plugins/core/checkpoint.h"

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace chatterbox::voice {

struct CAMPPlusConfig {
  int64_t feat_dim = 80;
  int64_t m_channels = 32;      // FCM head width
  int64_t init_channels = 128;
  int64_t growth_rate = 32;
  int64_t bn_size = 4;
  int64_t embedding_size = 192;
  std::vector<int64_t> block_layers = {12, 24, 16};
  // Fixed in the reference code.
  static constexpr int64_t kKernel = 3;
  static constexpr int64_t kDilations[3] = {1, 2, 2};
  static constexpr int64_t kSegLen = 100;  // CAM segment pooling
};

class CAMPPlus {
 public:
  // s3gen.safetensors ("speaker_encoder." prefix) or a bare state dict.
  // dtype: the type the model computes in (float32; float64 for tests that
  // need the exact result of the same arithmetic).
  static CAMPPlus load(const std::string& path, at::ScalarType dtype = at::kFloat);
  static CAMPPlus load(const Checkpoint& ckpt, at::ScalarType dtype = at::kFloat);

  CAMPPlus(CAMPPlus&&) noexcept;
  CAMPPlus& operator=(CAMPPlus&&) noexcept;
  ~CAMPPlus();

  const CAMPPlusConfig& config() const;
  const std::string& prefix() const;

  // extract_feature: kaldi fbank of a 16 kHz wave minus its mean over time,
  // [T, feat_dim] (float64 for a float64 wave).
  static at::Tensor features(const at::Tensor& wave_16k);
  // forward: features [T, feat_dim] (or [1, T, feat_dim]) -> [1, embedding]
  // in the model's dtype.
  // `trace` receives fcm_out and xvector_<stage>_out for tdnn, block1..3,
  // transit1..3, out_nonlinear, stats.
  at::Tensor forward(const at::Tensor& feats, std::map<std::string, at::Tensor>* trace = nullptr) const;
  // inference([wave]): features then forward.
  at::Tensor embed(const at::Tensor& wave_16k) const;

 private:
  struct Impl;
  explicit CAMPPlus(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace chatterbox::voice
