// S3Gen token-to-mel flow (Chatterbox `CausalMaskedDiffWithXvec`): speech
// tokens (25 Hz, vocabulary 6561) plus a voice prompt -> 80-bin log-mel at
// 50 Hz (2 frames per token), by an upsampling conformer encoder and a
// conditional flow-matching decoder (Euler, cosine time grid, classifier-free
// guidance), or Chatterbox-Turbo's distilled mean-flow decoder (1-2 Euler
// steps over an average-velocity estimator, linear time grid, no guidance).
//
// No GStreamer here: this is part of libchatterbox. The torch::nn module tree
// lives in flow_modules.h (internal).
#pragma once

#include "gst-plugins/core/checkpoint.h"

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace chatterbox {

// Widths of the flow. Defaults are the published Chatterbox S3Gen ones.
struct S3GenFlowConfig {
  // CausalMaskedDiffWithXvec
  int64_t input_size = 512;        // token embedding width
  int64_t output_size = 80;        // mel bins
  int64_t spk_embed_dim = 192;     // CAMPPlus x-vector
  int64_t vocab_size = 6561;       // speech tokens; ids >= this are dropped
  int64_t token_mel_ratio = 2;     // mel frames per token
  int64_t pre_lookahead_len = 3;   // tokens of right context (finalize=false trims them)
  // UpsampleConformerEncoder
  int64_t encoder_output_size = 512;
  int64_t encoder_heads = 8;
  int64_t encoder_linear_units = 2048;
  int64_t encoder_blocks = 6;
  int64_t encoder_up_blocks = 4;   // hard-coded upstream
  int64_t up_stride = 2;           // hard-coded upstream
  // ConditionalDecoder (the CFM estimator)
  int64_t estimator_in_channels = 320;  // x, mu, spks, cond (4 x 80)
  std::vector<int64_t> estimator_channels{256};
  int64_t attention_head_dim = 64;
  int64_t n_blocks = 4;
  int64_t num_mid_blocks = 12;
  int64_t num_heads = 8;
  // Mean flow (Chatterbox-Turbo, `s3gen_meanflow.safetensors`): the estimator
  // also takes the step's end time r, mixed into the time embedding by
  // `decoder.estimator.time_embed_mixer.weight` [4C, 8C]; the solver is plain
  // Euler on a linear grid with one estimator call per step and no CFG
  // (upstream's basic_euler: Turbo was distilled from CFG outputs).
  bool meanflow = false;
  // CausalConditionalCFM inference
  int64_t n_timesteps = 10;        // 2 for mean-flow models (S3Token2Wav.flow_inference)
  double cfg_rate = 0.7;           // unused by mean-flow models
  bool cosine_schedule = true;     // standard models only; mean flow uses a linear grid

  // The fixture metadata layout ({"flow": {...}, "encoder": {...},
  // "estimator": {...}, "cfm": {...}, "inference": {...}}); absent fields keep
  // the defaults (n_timesteps: 2 when "meanflow" is set). Throws ModelError on
  // inconsistent widths.
  static S3GenFlowConfig from_json(const nlohmann::json& j);
  void validate() const;
};

// The speaker / prompt conditioning that S3Gen's `embed_ref` produces and
// `conds.pt` stores under "gen.".
struct S3GenVoice {
  at::Tensor prompt_token;  // [1, P] int64
  at::Tensor prompt_feat;   // [1, 2P, 80] float32 (frames x mel bins)
  at::Tensor embedding;     // [1, 192] float32 x-vector

  // Reads `<prefix>prompt_token`, `prompt_token_len` (optional, trims the
  // tokens), `prompt_feat`, `embedding` (prefix "gen." for conds files).
  static S3GenVoice from_checkpoint(const Checkpoint& ckpt, const std::string& prefix = "gen.");
  // conds.pt or its safetensors flattening.
  static S3GenVoice load(const std::string& path);
};

// Where the flow runs and in which floating-point type. The weights are
// converted once at load; inputs and outputs stay float32 on the CPU.
struct S3GenLoadOptions {
  std::string device = "cpu";     // "cpu", "cuda", "cuda:N" (CUDA LibTorch builds)
  // "f32" (default, the reference), "bf16" or "f16": the encoder and the
  // estimator compute in this type; the ODE state and the time embedding's
  // sinusoid stay float32. A type the device's LibTorch kernels cannot run is
  // refused at load (ModelError naming the failing operation).
  std::string precision = "f32";
};

struct S3GenInferenceOptions {
  bool finalize = true;          // false: the last pre_lookahead_len tokens are right context only
  int64_t n_timesteps = -1;      // <= 0: config
  double cfg_rate = -1.0;        // < 0: config
  // Initial noise z, [1, 80, >= frames] (prompt + target frames; the first
  // `frames` are used). Undefined: drawn from `seed`.
  at::Tensor noise;
  // Stable noise for the target part only ([1, 80, >= target frames]), as
  // upstream's `noised_mels`: z[..., prompt:] = target_noise; the prompt part
  // of z is still drawn from `seed`. Ignored when `noise` is given.
  at::Tensor target_noise;
  uint64_t seed = 0;             // same seed -> same mel
};

// What the encoder hands to the CFM (`CausalMaskedDiffWithXvec.inference`
// up to the decoder call).
struct S3GenEncoded {
  at::Tensor mu;     // [1, 80, T]  encoder_proj(encoder(...)) transposed
  at::Tensor spks;   // [1, 80]     spk_embed_affine_layer(normalize(embedding))
  at::Tensor cond;   // [1, 80, T]  prompt mel in the first prompt_frames, zeros after
  at::Tensor mask;   // [1, 1, T]   ones
  int64_t prompt_frames = 0;
};

class S3GenFlow {
 public:
  // A `flow.`-prefixed s3gen checkpoint or a bare flow state dict (fixture);
  // the prefix is detected. Config from metadata "config" when present, else
  // the defaults with widths inferred from tensor shapes.
  // A mean-flow (Turbo) estimator is recognised by its time_embed_mixer
  // tensor (or "meanflow" in the config metadata).
  static S3GenFlow load(const std::string& path, const S3GenLoadOptions& opts = {});
  static S3GenFlow load(const Checkpoint& ckpt, const S3GenLoadOptions& opts = {});
  // Seeded random weights of the given widths (benchmarks, tests).
  static S3GenFlow random(const S3GenFlowConfig& config, uint64_t seed, const S3GenLoadOptions& opts = {});

  S3GenFlow(S3GenFlow&&) noexcept;
  S3GenFlow& operator=(S3GenFlow&&) noexcept;
  ~S3GenFlow();

  const S3GenFlowConfig& config() const;
  bool meanflow() const { return config().meanflow; }
  const std::string& device() const;     // as given at load
  const std::string& precision() const;  // "f32", "bf16" or "f16"
  // The key prefix the weights were found under ("" or "flow.").
  const std::string& prefix() const;
  // State-dict names (without prefix) of every parameter the model holds.
  std::vector<std::string> parameter_names() const;

  // Encoder half. `token` [1, N] must already hold valid ids; prompt_feat
  // frames must be token_mel_ratio * P (ModelError otherwise).
  S3GenEncoded encode(const at::Tensor& token, const at::Tensor& prompt_token, const at::Tensor& prompt_feat,
                      const at::Tensor& embedding, bool finalize) const;
  at::Tensor mu(const at::Tensor& token, const at::Tensor& prompt_token, const at::Tensor& prompt_feat,
                const at::Tensor& embedding, bool finalize = true) const;

  // One ConditionalDecoder evaluation: x, mu, cond [B, 80, T], mask [B, 1, T],
  // t [B], spks [B, 80] -> velocity [B, 80, T]. r [B] (or [1]): the
  // mean-flow end time, required by mean-flow models and ignored otherwise
  // (as upstream).
  at::Tensor estimator(const at::Tensor& x, const at::Tensor& mask, const at::Tensor& mu, const at::Tensor& t,
                       const at::Tensor& spks, const at::Tensor& cond, const at::Tensor& r = {}) const;
  // Time grid of n steps (n + 1 points): cosine-warped when configured, linear
  // for mean-flow models.
  at::Tensor t_span(int64_t n_timesteps) const;
  // Euler from z [1, 80, T]; returns all T frames. Standard models: classifier-
  // free guidance (one batch of 2 per step). Mean-flow models: one call per
  // step with r = the next grid point; cfg_rate is not used.
  at::Tensor solve(const S3GenEncoded& enc, const at::Tensor& z, int64_t n_timesteps, double cfg_rate) const;

  // Whole call: token [1, N] (or [N]) int64 -> mel [1, 80, frames] of the
  // target part only: token_mel_ratio * N frames, or token_mel_ratio * (N - 3)
  // with finalize = false (empty when N <= 3). Token ids outside
  // [0, vocab_size) are dropped first, as ChatterboxTTS.generate does
  // (`speech_tokens[speech_tokens < 6561]`).
  at::Tensor inference(const at::Tensor& token, const at::Tensor& prompt_token, const at::Tensor& prompt_feat,
                       const at::Tensor& embedding, const S3GenInferenceOptions& opts = {}) const;
  at::Tensor inference(const at::Tensor& token, const S3GenVoice& voice, const S3GenInferenceOptions& opts = {}) const;

  // Valid ids of a token tensor ([N] or [1, N]) as [1, M] int64.
  at::Tensor drop_invalid_tokens(const at::Tensor& token) const;

  struct Impl;

 private:
  explicit S3GenFlow(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

struct S3GenStreamerOptions {
  int64_t n_timesteps = -1;   // <= 0: flow config
  double cfg_rate = -1.0;     // < 0: flow config
  uint64_t seed = 0;
  // Upstream's S3GenStreamer.finish() appends three silence tokens (4299)
  // before the final decode so the last real tokens get quiet right context.
  // Off by default: the finished stream then decodes exactly the tokens given,
  // like the whole-utterance call.
  bool append_silence_on_finish = false;
  int64_t silence_token = 4299;

  // Bounded-cost window mode (left_context >= 0; see docs/s3gen-streaming.md).
  // -1 (default): upstream's rule above, every push re-decodes everything.
  // >= 0: tokens are decoded in chunks of `chunk_tokens` as soon as the
  // chunk's pre_lookahead_len look-ahead tokens have arrived. Each chunk runs
  // the encoder over a fixed window (left_context tokens before the chunk,
  // the chunk, the look-ahead) and the CFM over the frames of the context and
  // the chunk only; the context frames carry the voice prompt's mel (while
  // the context still reaches into the prompt) or the mel already emitted as
  // `cond`, as the flow treats its voice prompt. One noise draw covers the
  // whole utterance (prompt and target frames), so a re-decoded frame starts
  // from the same z every time. Work per chunk is bounded by left_context +
  // chunk_tokens + pre_lookahead_len encoder tokens and
  // token_mel_ratio * (left_context + chunk_tokens) decoder frames.
  int64_t left_context = -1;
  int64_t chunk_tokens = 25;  // window mode only; >= 1
  // Window mode: the context frames' cond is the emitted mel (true) or zero
  // as in the whole-utterance decode (false; the voice prompt's frames keep
  // their prompt mel either way).
  bool context_cond = true;
};

// Work done by a streamer (counted, not timed): what the bounded-cost test
// and the bench read.
struct S3GenStreamStats {
  int64_t decodes = 0;               // encoder + CFM runs
  int64_t encoder_tokens = 0;        // token positions through the encoder, all runs
  int64_t decoder_frames = 0;        // frames through the CFM (per solve; x CFG batch and steps not counted)
  int64_t max_encoder_tokens = 0;    // largest single run
  int64_t max_decoder_frames = 0;
  int64_t last_encoder_tokens = 0;
  int64_t last_decoder_frames = 0;
};

// Token-by-token mel streaming the way upstream's S3GenStreamer (Chatterbox
// PR #528) does it: every push re-decodes ALL tokens received so far with
// finalize = false (the last pre_lookahead_len tokens are context only) and
// returns only the frames not emitted before; finish() decodes once more with
// finalize = true and returns the rest. The target-part noise is drawn once
// and reused (grown as needed) so repeated decodes start from the same z;
// the prompt part is drawn afresh per call, as upstream.
// Because encoder and decoder attend over the whole sequence, frames emitted
// early are not bit-equal to what a later (or whole-utterance) decode gives
// for the same positions; see the report in tests/s3gen.
class S3GenFlowStreamer {
 public:
  S3GenFlowStreamer(const S3GenFlow& flow, S3GenVoice voice, S3GenStreamerOptions opts = {});
  ~S3GenFlowStreamer();
  S3GenFlowStreamer(S3GenFlowStreamer&&) noexcept;

  // Appends tokens ([N] or [1, N]; invalid ids dropped) and returns the new
  // mel frames [1, 80, k], k >= 0.
  at::Tensor push(const at::Tensor& tokens);
  // Final decode; returns the remaining frames. Further pushes throw.
  at::Tensor finish();
  void reset();

  int64_t tokens() const;          // valid tokens received
  int64_t emitted_frames() const;  // frames returned so far
  bool finished() const;
  // The stable target-part noise drawn so far ([1, 80, frames]; diagnostics).
  at::Tensor target_noise() const;
  const S3GenStreamStats& stats() const;
  // Window mode: tokens received but not yet decoded as far as the chunk
  // rule goes (the look-ahead and a partial chunk wait).
  int64_t pending_tokens() const;

 private:
  struct State;
  std::unique_ptr<State> s_;
};

}  // namespace chatterbox
