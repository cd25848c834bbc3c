// Vocos vocoder (gemelo-ai/vocos: VocosBackbone + ISTFTHead) as a plain C++
// library: loading (fixture safetensors with a "config" JSON, or the public
// charactr/vocos-mel-24khz layout pytorch_model.bin + config.yaml), whole-
// utterance inference and exact streaming. No GStreamer, no torch::nn in this
// header (the module tree lives in vocos.cc).
#pragma once

#include "gst-plugins/core/mel_format.h"
#include "gst-plugins/core/vocoder.h"

#include <ATen/core/Tensor.h>
#include <nlohmann/json_fwd.hpp>

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <utility>

namespace chatterbox {

class Checkpoint;

struct VocosConfig {
  // Backbone (VocosBackbone).
  int input_channels = 100;  // = mel.n_mels
  int dim = 512;
  int intermediate_dim = 1536;
  int num_layers = 8;
  double layer_norm_eps = 1e-6;
  // Head (ISTFTHead): win_length is always n_fft there.
  int n_fft = 1024;
  int hop_length = 256;
  int win_length = 1024;
  std::string padding = "center";  // "center" | "same"
  double mag_clip_max = 100.0;
  int sample_rate = 24000;
  // The features the model was trained on, and whether they came from a
  // Vocos MelSpectrogramFeatures front end (config or checkpoint buffers).
  MelFormat mel = MelFormat::vocos();
  bool mel_spectrogram_features = true;

  // charactr/vocos-mel-24khz (the published checkpoint): the defaults above.
  static VocosConfig mel_24khz();
  // A Vocos trained on Chatterbox S3Gen mels (80 mels, hop 480, n_fft 1920,
  // "same" padding): the layout of the tiny_s3gen_same fixture, at full size
  // by default.
  static VocosConfig s3gen(int dim = 512, int intermediate_dim = 1536, int num_layers = 8);

  // Frames each side that one backbone output frame depends on: 3 for the
  // embedding conv and 3 per ConvNeXt depthwise conv (kernel 7).
  int64_t receptive_frames() const { return 3 * (1 + static_cast<int64_t>(num_layers)); }
  // Samples the iSTFT trims at the start (and end) of the overlap-add:
  // (win - hop) / 2 for "same", n_fft / 2 for "center".
  int64_t trim_samples() const;
  // Whole-utterance output length for T frames: T*hop ("same"),
  // (T-1)*hop ("center"); 0 when T is too short to give any sample.
  int64_t output_samples(int64_t frames) const;
  // Smallest lookahead (frames) for which streaming is exact: every sample it
  // emits depends only on backbone frames whose full receptive field has
  // arrived.
  int64_t exact_lookahead_frames() const;

  // Throws ModelError when the values cannot describe a working model.
  void validate() const;
  nlohmann::json to_json() const;  // the fixture "config" layout (+ "mel")
  std::string to_string() const;
};

// Reads the model configuration that `path` (file or directory) describes,
// reconciled with the tensor shapes of `ckpt` (see vocos_config.cc for the
// precedence). Exposed for tests and tools; load() uses it.
VocosConfig resolve_vocos_config(const Checkpoint& ckpt, const std::string& config_yaml_path = "");
// A Lightning-style Vocos config.yaml (feature_extractor / backbone / head
// sections, optionally under model.init_args) as the flat config JSON.
nlohmann::json vocos_yaml_to_json(const std::string& yaml_path);

struct VocosLoadOptions {
  std::string device = "cpu";  // "cpu", "cuda", "cuda:1"
  // > 0: threads for the heavy math (process-wide): with a pthread OpenBLAS
  // (Debian's LibTorch) openblas_set_num_threads, and our elementwise ops
  // then run on the calling thread alone (two thread pools spinning against
  // each other on few cores cost 2-10x); otherwise at::set_num_threads.
  // 0: leave the settings as they are.
  int threads = 0;
};

// Applies VocosLoadOptions::threads (process-wide; 0 leaves the settings).
// load() does it; a user handed an already loaded (shared) model calls it.
void set_vocos_threads(int threads);

// The immutable part of a Vocos: configuration, weights (module tree and the
// packed fast-path copies) and device. Nothing writes to it after loading, so
// any number of VocosVocoder instances, in any threads, may run on one model
// at once (the element shares one per model file through ModelCache).
class VocosModel {
 public:
  // `path`: a checkpoint file (safetensors or torch zip), or a directory with
  // pytorch_model.bin (or model.safetensors) and optionally config.yaml.
  // Throws ModelError (file, tensor, what to do) on any problem.
  static std::shared_ptr<const VocosModel> load(const std::string& path, const VocosLoadOptions& opts = {});
  // Seeded random weights of sensible scale (benchmarks, tests); the same
  // seed gives the same weights.
  static std::shared_ptr<const VocosModel> random(const VocosConfig& cfg, uint64_t seed,
                                                  const VocosLoadOptions& opts = {});
  ~VocosModel();
  VocosModel(const VocosModel&) = delete;
  VocosModel& operator=(const VocosModel&) = delete;

  const VocosConfig& config() const;
  std::string device() const;
  // Weights under the reference state-dict names (CPU, float32 copies).
  std::map<std::string, at::Tensor> state_dict() const;
  // Address of the first packed weight's data: two models give the same
  // address exactly when they are one set of weights in memory (tests of
  // sharing).
  const void* weights_data() const;

  // Library-internal (the type is defined in vocos.cc).
  struct Impl;
  Impl& impl() const { return *impl_; }

 private:
  explicit VocosModel(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

class VocosVocoder : public StreamingVocoder {
 public:
  // A vocoder with its own streaming state on a (possibly shared) model.
  explicit VocosVocoder(std::shared_ptr<const VocosModel> model);
  // VocosModel::load / random plus a vocoder on it (a private model).
  static std::unique_ptr<VocosVocoder> load(const std::string& path, const VocosLoadOptions& opts = {});
  static std::unique_ptr<VocosVocoder> random(const VocosConfig& cfg, uint64_t seed,
                                              const VocosLoadOptions& opts = {});
  ~VocosVocoder() override;
  VocosVocoder(const VocosVocoder&) = delete;
  VocosVocoder& operator=(const VocosVocoder&) = delete;

  const std::shared_ptr<const VocosModel>& model() const;
  const VocosConfig& config() const;
  std::string device() const;
  // Weights under the reference state-dict names (CPU, float32), e.g. to save
  // a random model with write_safetensors.
  std::map<std::string, at::Tensor> state_dict() const;

  // StreamingVocoder. One utterance stream per instance: an instance is used
  // by one thread at a time (instances sharing a model are independent).
  // The default lookahead is exact_lookahead_frames(): the smallest for which
  // streamed output equals the whole-utterance output (to float rounding).
  const MelFormat& mel_format() const override;
  const char* name() const override { return "vocos"; }
  int64_t default_lookahead_frames() const override;
  int64_t lookahead_frames() const override;
  void set_lookahead_frames(int64_t frames) override;  // >= 0
  at::Tensor feed(const at::Tensor& frames) override;  // [T, n_mels] -> [S]
  at::Tensor drain() override;
  void reset() override;
  int64_t samples_out() const override;
  int64_t frames_in() const override;
  at::Tensor forward(const at::Tensor& mel) override;  // [B, n_mels, T] -> [B, samples]

  // Frames currently kept as streaming context (layer inputs and time frames
  // awaiting overlap-add): bounded by 2*receptive_frames() + lookahead +
  // ceil(n_fft/hop) + 1, whatever the utterance length.
  int64_t buffered_frames() const;

  // Intermediate outputs (float32, on the input's device):
  // backbone(mel [B, n_mels, T]) -> [B, T, dim] (after the final LayerNorm);
  at::Tensor backbone(const at::Tensor& mel) const;
  // head_mag_phase([B, T, dim]) -> {min(exp(m), clip), p}, each [B, n_fft/2+1, T].
  std::pair<at::Tensor, at::Tensor> head_mag_phase(const at::Tensor& backbone_out) const;
  // The reference's operation order (channels-first convs, transposes,
  // separate gamma, torch.istft / fold) on the same weights: the baseline the
  // fast path is timed and checked against.
  at::Tensor forward_reference(const at::Tensor& mel) const;

 private:
  struct Impl;
  explicit VocosVocoder(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace chatterbox
