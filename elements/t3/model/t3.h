// T3: Chatterbox's text-token -> speech-token model (Llama backbone, learned
// position embeddings, speaker/prompt/emotion conditioning) and its decoding
// loop, as ChatterboxTTS.generate runs T3.inference. No GStreamer here.
//
// Tensors are float32 on the CPU unless said otherwise; token ids are int64.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace chatterbox {
class Checkpoint;
}

namespace chatterbox::t3 {

// The Llama backbone settings T3 uses (transformers LlamaConfig fields).
struct LlamaConfig {
  int64_t hidden_size = 1024;
  int64_t num_hidden_layers = 30;
  int64_t num_attention_heads = 16;
  int64_t num_key_value_heads = 16;
  int64_t head_dim = 64;
  int64_t intermediate_size = 4096;
  double rms_norm_eps = 1e-5;
  double rope_theta = 500000.0;
  // rope_scaling; rope_type "llama3" or "default" (none).
  std::string rope_type = "llama3";
  double rope_factor = 8.0;
  double rope_low_freq_factor = 1.0;
  double rope_high_freq_factor = 4.0;
  int64_t rope_original_max_position_embeddings = 8192;
};

struct T3Config {
  LlamaConfig llama;  // default: Llama_520M
  int64_t text_tokens_dict_size = 704;
  int64_t speech_tokens_dict_size = 8194;
  int64_t start_text_token = 255;
  int64_t stop_text_token = 0;
  int64_t start_speech_token = 6561;
  int64_t stop_speech_token = 6562;
  int64_t max_text_tokens = 2048;    // text_pos_emb rows = max_text_tokens + 2
  int64_t max_speech_tokens = 4096;  // speech_pos_emb rows = max_speech_tokens + 4
  int64_t speaker_embed_size = 256;
  int64_t speech_cond_prompt_len = 150;
  bool emotion_adv = true;
  bool use_perceiver_resampler = true;
  int64_t perceiver_query_tokens = 32;
  int64_t perceiver_heads = 4;
  double perceiver_layernorm_eps = 1e-5;

  // The real English model (T3Config.english_only() + Llama_520M).
  static T3Config english() { return T3Config{}; }
  // From a fixture's metadata "config" JSON text ({"llama": {...}, "t3": {...},
  // "perceiver": {...}}); fields that are absent keep the defaults.
  static T3Config from_json_text(const std::string& json_text);

  int64_t cond_len() const { return 1 + (use_perceiver_resampler ? perceiver_query_tokens : 0) + (emotion_adv ? 1 : 0); }
};

// T3Cond: the voice. speaker_emb [1, 256]; cond_prompt_speech_tokens int64
// [1, N]; emotion_adv [1, 1, 1] (the exaggeration).
struct T3Cond {
  at::Tensor speaker_emb;
  at::Tensor cond_prompt_speech_tokens;
  at::Tensor emotion_adv;

  // From a conds file (conds.pt or its safetensors flattening): tensors
  // "t3.speaker_emb", "t3.cond_prompt_speech_tokens", "t3.emotion_adv".
  static T3Cond load(const std::string& path);
  static T3Cond from_checkpoint(const Checkpoint& ckpt, const std::string& prefix = "t3.");
  // A copy with emotion_adv set to `exaggeration` (ChatterboxTTS.generate does
  // this when the requested exaggeration differs).
  T3Cond with_exaggeration(double exaggeration) const;
};

// Decoding settings; defaults are ChatterboxTTS.generate's.
struct SamplingOptions {
  double temperature = 0.8;
  double cfg_weight = 0.5;  // > 0: batch of two rows (cond, uncond); 0: the conditional row only
  double repetition_penalty = 1.2;
  double min_p = 0.05;
  double top_p = 1.0;
  int64_t max_new_tokens = 1000;
  // Greedy: the argmax of the processed distribution (deterministic).
  bool greedy = false;
  // Sampling is torch.multinomial(p, 1) on CPU: argmax(p / q), q ~ Exp(1)
  // per vocabulary entry, drawn from a generator seeded with `seed`.
  uint64_t seed = 0;
  // Replaces the generator when set: returns q ([V] float, > 0) for step i.
  std::function<at::Tensor(int64_t step)> draws;
};

// One backbone pass over a KV cache preallocated for `capacity` positions;
// rows of the batch share positions (no padding).
class T3Model;
class BackboneSession {
 public:
  BackboneSession(const T3Model& model, int64_t batch, int64_t capacity);
  ~BackboneSession();
  BackboneSession(BackboneSession&&) noexcept;
  BackboneSession& operator=(BackboneSession&&) noexcept;
  // inputs_embeds [B, S, H] at positions length() .. length()+S-1; returns the
  // final-normed hidden states [B, S, H]. `layer_outputs` (optional) receives
  // each decoder layer's output before the final norm.
  at::Tensor forward(const at::Tensor& inputs_embeds, std::vector<at::Tensor>* layer_outputs = nullptr);
  int64_t length() const;
  int64_t capacity() const;
  void reset();

 private:
  friend class T3Generator;
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

class T3Model {
 public:
  // t3_cfg.safetensors (no metadata: built-in default config, text vocabulary
  // inferred from text_emb, e.g. 2454 rows for the multilingual file) or a
  // fixture with a metadata "config". ModelError names a missing/misshapen tensor.
  static T3Model load(const std::string& path);
  static T3Model from_checkpoint(const Checkpoint& ckpt);
  static T3Model from_checkpoint(const Checkpoint& ckpt, const T3Config& config);
  // Random weights of sensible scale (for benchmarks), reproducible by seed.
  static T3Model random(const T3Config& config, uint64_t seed);

  const T3Config& config() const;

  // The same model with the backbone's linear layers and the speech head in
  // another weight precision: "f32" (this model), "bf16" or "int8"
  // (weight-only, per-output-row scales; kernels/rows_gemm.h). Decode steps
  // then read 2x / 4x fewer bytes; the other tensors are shared. A ModelError
  // for an unknown name.
  T3Model with_precision(const std::string& precision) const;
  const char* precision() const;
  // Bytes of the weights a decode step reads (backbone linears + head).
  int64_t decode_weight_bytes() const;

  // ---- stages (each usable on its own; used by the tests) ----
  // prepare_conditioning: [1, cond_len, H].
  at::Tensor cond_embedding(const T3Cond& cond) const;
  // The whole prefill input [B, cond_len + T + 2 + 2, H] for text ids (without
  // the 255/0 padding, which is added here): B = 2 (cond, uncond) when
  // cfg_weight > 0, else 1.
  at::Tensor prefill_embeds(const std::vector<int64_t>& text_ids, const T3Cond& cond, double cfg_weight = 0.5) const;
  // The backbone alone on a fresh cache: final-normed hidden [B, S, H].
  at::Tensor backbone(const at::Tensor& inputs_embeds, std::vector<at::Tensor>* layer_outputs = nullptr) const;
  // speech_head: [..., H] -> [..., speech vocab].
  at::Tensor speech_logits(const at::Tensor& hidden) const;
  // llama3-scaled RoPE inverse frequencies [head_dim / 2].
  at::Tensor rope_inv_freq() const;
  // speech_emb(token) + speech_pos_emb(position): [H].
  at::Tensor speech_input_embed(int64_t token, int64_t position) const;

  // The whole loop: what T3.inference returns (row 0 of the CFG-combined
  // stream, stop token included when emitted).
  std::vector<int64_t> inference(const std::vector<int64_t>& text_ids, const T3Cond& cond,
                                 const SamplingOptions& opts = {}) const;

  struct Impl;
  const Impl& impl() const { return *impl_; }

 private:
  friend class BackboneSession;
  std::shared_ptr<const Impl> impl_;
};

// Step-by-step decoding, so a caller can forward each token as soon as it is
// drawn. next_token() draws from the logits of the previous step; the token is
// fed through the backbone at the start of the following call (so the caller
// gets it before that pass runs).
class T3Generator {
 public:
  T3Generator(const T3Model& model, SamplingOptions opts = {});
  ~T3Generator();
  T3Generator(T3Generator&&) noexcept;
  T3Generator& operator=(T3Generator&&) noexcept;

  // Prefill: conditioning, text (ids without padding; validated against the
  // text vocabulary), two start embeddings.
  void start(const std::vector<int64_t>& text_ids, const T3Cond& cond);
  // The next token of the CFG-combined stream, or -1 once finished (the stop
  // token was returned, or max_new_tokens were produced).
  int64_t next_token();
  bool finished() const;
  const std::vector<int64_t>& tokens() const;  // produced so far (stop token included)

  // Introspection of the last next_token() call (tests, debugging):
  const at::Tensor& last_hidden() const;      // [B, H] final-normed hidden that gave the logits
  const at::Tensor& last_cfg_logits() const;  // [V] CFG-combined logits (before the penalty)
  const at::Tensor& last_probs() const;       // [V] the distribution sampled from
  const at::Tensor& last_input_embed() const; // [H] the embedding fed at the start of the call (undefined at step 0)

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// What ChatterboxTTS.generate keeps of T3's output: everything after a start
// token 6561 (if any), before a stop token 6562 (if any), only ids < 6561.
std::vector<int64_t> drop_invalid_tokens(const std::vector<int64_t>& tokens, int64_t start_speech_token = 6561,
                                         int64_t stop_speech_token = 6562);

}  // namespace chatterbox::t3
