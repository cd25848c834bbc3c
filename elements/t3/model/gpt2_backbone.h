// The GPT-2 backbone of Chatterbox-Turbo / -Nano's T3: Hugging Face
// GPT2Model run on inputs_embeds only (T3 never uses its token embedding
// wte): learned absolute positions wpe added to the input, pre-LN blocks
// (LayerNorm, causal multi-head attention, LayerNorm, gelu_new MLP), ln_f.
// Positions continue through the KV cache, so a token fed after a prefill of
// L positions gets wpe[L]. No GStreamer here.
#pragma once

#include "gst-plugins/core/kernels/rows_gemm.h"

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace chatterbox {
class Checkpoint;
}

namespace chatterbox::t3 {

// transformers GPT2Config fields the forward pass depends on.
struct Gpt2Config {
  int64_t n_embd = 1024;
  int64_t n_layer = 24;
  int64_t n_head = 16;
  int64_t n_positions = 8196;  // wpe rows (Chatterbox's configs say 8196)
  int64_t n_inner = 4096;      // MLP width (GPT2Config n_inner None -> 4 n_embd)
  double layer_norm_epsilon = 1e-5;

  int64_t head_dim() const { return n_embd / n_head; }
  // llama_configs.py: GPT2_medium (Turbo) and GPT2_small (Nano).
  static Gpt2Config medium() { return Gpt2Config{}; }
  static Gpt2Config small() { return Gpt2Config{768, 12, 12, 8196, 3072, 1e-5}; }
};

class Gpt2Backbone {
 public:
  // The "tfmr." tensors of a checkpoint (ck already under that prefix).
  // Sizes come from the shapes: n_embd and n_positions from wpe, n_layer by
  // counting h.N blocks, n_inner from mlp.c_fc. Attention heads are not in
  // the shapes: `n_head` <= 0 means head dim 64 (every real GPT-2 size, Turbo
  // and Nano included). ModelError names a missing or misshapen tensor with
  // both shapes; nothing is copied before every tensor has been checked.
  static Gpt2Config inspect(const Checkpoint& ck, int64_t n_head = 0, double layer_norm_epsilon = 1e-5);
  static Gpt2Backbone from_checkpoint(const Checkpoint& ck, const Gpt2Config& config);
  // Random weights of sensible scale (benchmarks), reproducible by seed.
  static Gpt2Backbone random(const Gpt2Config& config, uint64_t seed);

  const Gpt2Config& config() const;
  // The blocks' four linear layers in another weight precision
  // (kernels/rows_gemm.h); everything else shared.
  Gpt2Backbone with_precision(kernels::WeightFormat f) const;
  int64_t weight_bytes() const;  // of those linear layers

  // One pass over a KV cache preallocated for `capacity` positions (at most
  // n_positions); rows of the batch share positions.
  class Session {
   public:
    Session(const Gpt2Backbone& model, int64_t batch, int64_t capacity);
    ~Session();
    Session(Session&&) noexcept;
    Session& operator=(Session&&) noexcept;
    // inputs_embeds [B, S, E] at positions length() .. length()+S-1 (wpe
    // added here); returns last_hidden_state (after ln_f) [B, S, E].
    // `layer_outputs` (optional) receives each block's output before ln_f;
    // `x0` (optional) the input of block 0 (inputs_embeds + wpe).
    at::Tensor forward(const at::Tensor& inputs_embeds, std::vector<at::Tensor>* layer_outputs = nullptr,
                       at::Tensor* x0 = nullptr);
    int64_t length() const;
    int64_t capacity() const;
    void reset();

    // Keys and values of the first `positions` positions (copies), and a
    // fresh session continuing from them: a prompt shared by many calls is
    // run once (causal attention: its keys and values do not depend on what
    // follows).
    struct Prefix {
      std::vector<at::Tensor> k, v;  // per block [B, n_head, positions, d]
      int64_t positions = 0;
    };
    Prefix prefix(int64_t positions) const;
    void restore(const Prefix& p);  // length() becomes p.positions (must fit the capacity and batch)

   private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
  };

  struct Weights;

 private:
  std::shared_ptr<const Weights> w_;
};

// gelu_new (transformers NewGELUActivation): the tanh approximation
// 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))), written out as there.
at::Tensor gelu_new(const at::Tensor& x);

}  // namespace chatterbox::t3
