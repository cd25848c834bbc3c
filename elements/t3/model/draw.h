// The token draw both T3 decoding loops share (internal): the argmax of the
// processed distribution when greedy, else torch.multinomial(p, 1) as it
// runs on CPU, argmax(p / q) with q ~ Exp(1) per entry from the generator,
// or q injected by the caller (tests replay a reference's draws).
#pragma once

#include "gst-plugins/core/checkpoint.h"  // ModelError

#include <ATen/ATen.h>

#include <functional>
#include <string>

namespace chatterbox::t3 {

inline int64_t draw_token(const at::Tensor& probs, bool greedy, const std::function<at::Tensor(int64_t)>& draws,
                          int64_t step, at::Generator& gen) {
  if (greedy) return probs.argmax().item<int64_t>();
  at::Tensor q;
  if (draws) {
    q = draws(step).to(at::kFloat).reshape({-1});
    if (q.numel() != probs.numel())
      throw ModelError("T3 sampling: injected draws for step " + std::to_string(step) + " have " +
                       std::to_string(q.numel()) + " values, expected " + std::to_string(probs.numel()));
  } else {
    q = at::empty_like(probs).exponential_(1.0, gen);
  }
  return (probs / q).argmax().item<int64_t>();
}

}  // namespace chatterbox::t3
