// T3 with the GPT-2 backbone: Chatterbox-Turbo (GPT2_medium) and
// Chatterbox-Nano (GPT2_small), as ChatterboxTurboTTS.from_local builds it and
// generate runs T3.inference_turbo. Compared with the Llama T3 (t3.h): no
// perceiver, no emotion row, no CFG, no position embeddings of T3's own
// (GPT-2 adds its learned wpe), the start token once, a speech head with a
// bias, and the logits processors Temperature -> TopK -> TopP ->
// RepetitionPenalty. No GStreamer here.
#pragma once

#include "elements/t3/model/gpt2_backbone.h"
#include "elements/t3/model/t3.h"  // T3Cond

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

struct T3TurboConfig {
  Gpt2Config gpt2;
  int64_t text_tokens_dict_size = 50276;  // 50257 GPT-2 tokens + 19 tags
  int64_t speech_tokens_dict_size = 6563;
  int64_t start_speech_token = 6561;
  int64_t stop_speech_token = 6562;
  int64_t speaker_embed_size = 256;

  static T3TurboConfig turbo() { return T3TurboConfig{}; }
  static T3TurboConfig nano() {
    T3TurboConfig c;
    c.gpt2 = Gpt2Config::small();
    return c;
  }
};

// Decoding settings; defaults are ChatterboxTurboTTS.generate's.
struct TurboSamplingOptions {
  double temperature = 0.8;
  int64_t top_k = 1000;  // 0: off
  double top_p = 0.95;   // 1: off
  double repetition_penalty = 1.2;
  // Most tokens drawn, a final stop token included: inference_turbo draws one
  // from the prefill and at most max_gen_len (1000) more.
  int64_t max_new_tokens = 1001;
  bool greedy = false;  // argmax of the processed distribution
  // Sampling is torch.multinomial(p, 1) on CPU: argmax(p / q), q ~ Exp(1) per
  // vocabulary entry, drawn from a generator seeded with `seed` (seed s draws
  // what torch.manual_seed(s) then inference_turbo draws).
  uint64_t seed = 0;
  // Replaces the generator when set: q ([V] float, > 0) for step i.
  std::function<at::Tensor(int64_t step)> draws;
};

class T3TurboModel {
 public:
  // t3_turbo_v1.safetensors / t3_nano_v1.safetensors (sizes from the shapes;
  // no metadata needed), a {"model": [state_dict]} torch checkpoint (keys
  // under "model.0."), or a fixture whose metadata "config" gives gpt2.n_head.
  static T3TurboModel load(const std::string& path);
  static T3TurboModel from_checkpoint(const Checkpoint& ckpt);
  // The config the checkpoint holds, every tensor's presence and shape
  // checked, without copying any weights.
  static T3TurboConfig inspect(const Checkpoint& ckpt);
  // Random weights of sensible scale (benchmarks: T3TurboConfig::turbo() is
  // the full 24 x 1024 model, nano() 12 x 768), reproducible by seed.
  static T3TurboModel random(const T3TurboConfig& config, uint64_t seed);

  const T3TurboConfig& config() const;
  // The same model with the backbone's linear layers and the speech head in
  // another weight precision ("f32", "bf16", "int8": weight-only, per-row
  // scales; kernels/rows_gemm.h); embeddings and norms shared.
  T3TurboModel with_precision(const std::string& precision) const;
  const char* precision() const;
  int64_t decode_weight_bytes() const;  // read per decode step
  const Gpt2Backbone& backbone_model() const;

  // ---- stages (each usable on its own; used by the tests) ----
  // T3CondEnc: [spkr_enc(speaker_emb) | speech_emb(prompt tokens)], [1, 1 + N, E].
  at::Tensor cond_embedding(const T3Cond& cond) const;
  // The prefill inputs_embeds [1, 1 + N + T + 1, E]: conditioning, text_emb of
  // the ids (as the tokenizer gives them: no BOS/EOS), speech_emb(start).
  at::Tensor prefill_embeds(const std::vector<int64_t>& text_ids, const T3Cond& cond) const;
  // The backbone alone on a fresh cache (final-normed hidden [B, S, E]).
  at::Tensor backbone(const at::Tensor& inputs_embeds, std::vector<at::Tensor>* layer_outputs = nullptr,
                      at::Tensor* x0 = nullptr) const;
  // speech_head (with bias): [..., E] -> [..., 6563].
  at::Tensor speech_logits(const at::Tensor& hidden) const;
  // speech_emb(token): [E] (GPT-2 adds the position).
  at::Tensor speech_input_embed(int64_t token) const;

  // What T3.inference_turbo returns: every drawn token, a final stop token
  // removed.
  std::vector<int64_t> inference(const std::vector<int64_t>& text_ids, const T3Cond& cond,
                                 const TurboSamplingOptions& opts = {}) const;

  struct Impl;
  const Impl& impl() const { return *impl_; }

 private:
  std::shared_ptr<const Impl> impl_;
};

// Step-by-step inference_turbo, so a caller can forward each token as soon as
// it is drawn (the token is fed through the backbone at the start of the next
// call).
// The voice prompt's keys and values (speaker embedding + prompt speech
// tokens: ~376 of Turbo's prefill positions), kept between utterances: a
// generator given the cache runs the prompt through the backbone only when
// the conditioning differs from the cached one, then the text alone. Causal
// attention makes the result the same as one prefill over prompt + text (up
// to float32 rounding of differently blocked GEMMs). One entry (the last
// voice); not thread-safe: one cache per element or thread.
class T3TurboPromptCache {
 public:
  T3TurboPromptCache();
  ~T3TurboPromptCache();
  int64_t hits() const;    // starts that reused the cached prompt
  int64_t misses() const;  // starts that computed it
  void clear();
  struct Impl;
  Impl& impl() { return *impl_; }

 private:
  std::unique_ptr<Impl> impl_;
};

class T3TurboGenerator {
 public:
  T3TurboGenerator(const T3TurboModel& model, TurboSamplingOptions opts = {});
  // With a prompt cache (shared across this element's utterances).
  T3TurboGenerator(const T3TurboModel& model, TurboSamplingOptions opts, std::shared_ptr<T3TurboPromptCache> cache);
  ~T3TurboGenerator();
  T3TurboGenerator(T3TurboGenerator&&) noexcept;
  T3TurboGenerator& operator=(T3TurboGenerator&&) noexcept;

  // Prefill: conditioning, text ids (validated against the text vocabulary),
  // the start token.
  void start(const std::vector<int64_t>& text_ids, const T3Cond& cond);
  // The next token, or -1 once finished: the stop token was drawn after the
  // first step (the prefill's token is fed whatever it is, as upstream),
  // max_new_tokens were drawn, or every processed logit was -inf.
  int64_t next_token();
  bool finished() const;
  const std::vector<int64_t>& tokens() const;  // drawn so far (stop token included)

  // Introspection of the last next_token() call (tests, debugging):
  const at::Tensor& last_hidden() const;       // [E] last_hidden_state of the newest position
  const at::Tensor& last_logits() const;       // [V] raw speech_head logits given to the processors
  const at::Tensor& last_probs() const;        // [V] the distribution sampled from
  const at::Tensor& last_input_embed() const;  // [E] embedding fed at the start of the call (undefined at step 0)

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// The logits processors of inference_turbo in its order: Temperature, TopK
// (below the k-th largest -> -inf, ties kept), TopP (ascending sort, drop
// where cumsum(softmax) <= 1 - p, the largest always kept), RepetitionPenalty
// over the distinct ids of `history` (< 0: x penalty, else / penalty).
// Each runs only when it changes something, as upstream builds the list.
at::Tensor turbo_process_logits(const at::Tensor& logits, const std::vector<int64_t>& history,
                                const TurboSamplingOptions& opts);

}  // namespace chatterbox::t3
