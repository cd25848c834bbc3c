// HiFT (HiFTNet: neural source filter + iSTFTNet), the vocoder Chatterbox's
// S3Gen ships (`S3Token2Wav.mel2wav`, resemble-ai/chatterbox
// src/chatterbox/models/s3gen/hifigan.py + f0_predictor.py). Model library
// only, no GStreamer.
//
// Pipeline: mel [80, T] -> F0 predictor -> F0 [T] (Hz) -> x480 nearest ->
// sine source (9 harmonics, phase = running sum of f/sr) -> source [480 T];
// decode(mel, source): conv_pre, 3 upsampling stages fused with the source's
// STFT, Snake ResBlocks, conv_post -> log-magnitude/phase -> iSTFT -> audio
// [480 T].
//
// Numeric choices (see hift.cc and hift_kernels.h for the reasoning):
//  - every layer sums in an order that does not depend on how the utterance
//    is chunked: on AVX-512 CPUs our packed convolution kernel (streamed
//    output is bit-identical to whole), elsewhere BLAS with the F0 predictor
//    in float64 rounded to float32 (the sine phase integrates F0 over the
//    whole utterance and would amplify last-bit differences);
//  - the phase accumulator is a double per harmonic, rounded to float32 per
//    sample, exactly what torch's CPU float32 cumsum does.
#pragma once

#include "gst-plugins/core/checkpoint.h"
#include "gst-plugins/core/mel_format.h"
#include "gst-plugins/core/vocoder.h"

#include <ATen/core/Tensor.h>
#include <nlohmann/json_fwd.hpp>

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace chatterbox::hift {

namespace detail {
struct Weights;
}

struct HiftConfig {
  int in_channels = 80;
  int base_channels = 512;
  int nb_harmonics = 8;  // harmonics above F0: 9 sines in all
  int sampling_rate = 24000;
  double nsf_alpha = 0.1;    // sine amplitude
  double nsf_sigma = 0.003;  // additive noise std in voiced frames
  double nsf_voiced_threshold = 10.0;
  std::vector<int> upsample_rates{8, 5, 3};
  std::vector<int> upsample_kernel_sizes{16, 11, 7};
  int istft_n_fft = 16;
  int istft_hop = 4;
  std::vector<int> resblock_kernel_sizes{3, 7, 11};
  std::vector<std::vector<int>> resblock_dilation_sizes{{1, 3, 5}, {1, 3, 5}, {1, 3, 5}};
  std::vector<int> source_resblock_kernel_sizes{7, 7, 11};
  std::vector<std::vector<int>> source_resblock_dilation_sizes{{1, 3, 5}, {1, 3, 5}, {1, 3, 5}};
  double lrelu_slope = 0.1;
  double audio_limit = 0.99;
  int f0_in_channels = 80;
  int f0_cond_channels = 512;
  int f0_num_class = 1;

  // Chatterbox's real configuration (S3Token2Wav): the defaults above.
  static HiftConfig chatterbox();
  // The fixture/metadata JSON (HiFTGenerator's constructor arguments plus
  // "f0_predictor": {...}); missing keys keep the defaults. ModelError on
  // values this implementation cannot run (e.g. hop not dividing n_fft).
  static HiftConfig from_json(const nlohmann::json& j);
  nlohmann::json to_json() const;

  int n_sines() const { return nb_harmonics + 1; }
  // Audio samples per mel frame: prod(upsample_rates) * istft hop (480).
  int samples_per_frame() const;
};

// How the source module's random draws are made.
//  - Deterministic: every draw is zero (initial phases 0, no additive noise);
//    this is the fixtures' mode and the default (reproducible output).
//  - Random: initial phases and Gaussian noise from a counter-based generator
//    keyed by (seed, harmonic, absolute sample index), so the draws do not
//    depend on chunking and streaming equals the whole-utterance run.
//  - Injected: recorded draws (reference call order): `phases` [n_sines] (or
//    [1, n_sines, 1]) = Uniform(-pi, pi) sample BEFORE the fundamental's phase
//    is forced to 0, `noise` [n_sines, N] (or [1, n_sines, N]) = randn_like of
//    the sine waves; an utterance longer than N samples is a ModelError.
struct SourceDraws {
  enum class Mode { Deterministic, Random, Injected };
  Mode mode = Mode::Deterministic;
  uint64_t seed = 0;
  at::Tensor phases;
  at::Tensor noise;

  static SourceDraws deterministic() { return {}; }
  static SourceDraws random(uint64_t seed);
  static SourceDraws injected(const at::Tensor& phases, const at::Tensor& noise);
};

// The sine source's running state: per harmonic, the double-precision sum of
// f_h / sr over every sample so far (torch's CPU cumsum accumulator), plus the
// absolute position (for position-keyed draws).
struct SourceState {
  std::vector<double> acc;
  int64_t pos = 0;
};

class HiftModel {
 public:
  ~HiftModel();
  HiftModel(const HiftModel&) = delete;
  HiftModel& operator=(const HiftModel&) = delete;

  // Loads a HiFTGenerator state dict. `prefix` "" = auto: "mel2wav." when the
  // file holds S3Token2Wav keys (s3gen.safetensors), else none. Config: the
  // file's metadata "config" when present, else `config` when given, else
  // Chatterbox's real one. Weight norm is folded at load. ModelError names
  // the file and the first missing/misshapen tensor.
  static std::shared_ptr<HiftModel> load(const std::string& path, const std::string& prefix = "",
                                         const std::optional<HiftConfig>& config = std::nullopt);
  static std::shared_ptr<HiftModel> from_checkpoint(const Checkpoint& ckpt,
                                                    const std::optional<HiftConfig>& config = std::nullopt);

  // Random weights of sensible scale (benchmarks, tests of layout/speed).
  static std::shared_ptr<HiftModel> random(const HiftConfig& config, uint64_t seed);

  const HiftConfig& config() const;
  const MelFormat& mel_format() const;  // MelFormat::s3gen()
  int64_t num_parameters() const;

  // ---- Stages (whole utterance; tensors on CPU, float32, batch B) ----------
  // mel [B, 80, T] -> F0 [B, T] (Hz, >= 0).
  at::Tensor f0(const at::Tensor& mel) const;
  // F0 [B, T] -> source [B, 1, 480 T] (fresh state; one draw set for all B).
  at::Tensor source_from_f0(const at::Tensor& f0, const SourceDraws& draws = {}) const;
  struct Decoded {
    at::Tensor audio;          // [B, 480 T], clamped to +-audio_limit
    at::Tensor conv_post_out;  // [B, 18, 120 T + 1]
  };
  // mel [B, 80, T] + source [B, 1, 480 T] -> audio (HiFTGenerator.decode).
  Decoded decode(const at::Tensor& mel, const at::Tensor& source) const;
  // End to end (HiFTGenerator.inference without cache): audio [B, 480 T];
  // `source_out` receives the source when non-null.
  at::Tensor inference(const at::Tensor& mel, const SourceDraws& draws = {}, at::Tensor* source_out = nullptr) const;

  // ---- Building blocks for streaming ---------------------------------------
  SourceState initial_state() const;
  // Source samples for F0 values `f0` [n] (one per frame, frame-aligned at
  // state.pos), advancing `state`.
  at::Tensor source_chunk(const at::Tensor& f0, SourceState& state, const SourceDraws& draws) const;

  // Receptive field of one output frame (480 samples) of decode, relative to
  // that frame: mel frames [t - mel_left, t + mel_right], source samples
  // [480 t - src_left, 480 t + 479 + src_right]. F0 adds f0_radius frames.
  struct Field {
    int64_t mel_left, mel_right, src_left, src_right, f0_radius;
  };
  const Field& field() const;

 private:
  friend class HiftVocoder;
  HiftModel();
  const detail::Weights& weights() const;  // the prepared layer weights (hift_stream.h)
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// S3Token2Wav's start-of-utterance fade: n_trim = sr/50 zeros then
// (cos(linspace(pi, 0, n_trim)) + 1) / 2; [2 * n_trim] (960 at 24 kHz).
at::Tensor trim_fade(int sampling_rate = 24000);

struct HiftVocoderOptions {
  bool trim_fade = true;  // as S3Token2Wav.inference
  SourceDraws draws;      // per utterance; Random mode uses seed + utterance index
  int64_t lookahead_frames = -1;  // -1: default (exact)
};

// Exact streaming HiFT: for any split of an utterance into feed() calls, the
// concatenated output equals HiftVocoder::forward (whole utterance) within
// float32 rounding at the default lookahead. Every layer runs incrementally
// (each keeps the input it still needs, the sine phase accumulator is carried
// in double), so a frame costs the same streamed as whole; only samples that
// no future frame can change are emitted. A lookahead below the default
// emits the rest from a copy of the layers finished as if the utterance ended
// there (earlier audio, the error published in bench/; each such feed also
// pays for that finish, about default-lookahead frames of work).
class HiftVocoder : public StreamingVocoder {
 public:
  explicit HiftVocoder(std::shared_ptr<const HiftModel> model, HiftVocoderOptions opts = {});
  ~HiftVocoder() override;

  const MelFormat& mel_format() const override;
  const char* name() const override { return "hift"; }
  int64_t default_lookahead_frames() const override;
  int64_t lookahead_frames() const override;
  void set_lookahead_frames(int64_t frames) override;
  at::Tensor feed(const at::Tensor& frames) override;  // [T, 80]
  at::Tensor drain() override;
  void reset() override;
  int64_t samples_out() const override;
  int64_t frames_in() const override;
  // mel [B, 80, T] -> audio [B, 480 T] (inference + trim fade if enabled).
  at::Tensor forward(const at::Tensor& mel) override;

  const HiftModel& model() const;

 private:
  struct Pipe;
  struct State;
  at::Tensor advance(Pipe& p, const at::Tensor& mel_ct, bool at_end) const;
  at::Tensor emit(bool at_end);
  std::shared_ptr<const HiftModel> model_;
  HiftVocoderOptions opts_;
  int64_t lookahead_;
  uint64_t utterance_ = 0;
  std::unique_ptr<State> st_;
};

}  // namespace chatterbox::hift
