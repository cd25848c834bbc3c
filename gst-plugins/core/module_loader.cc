#include "gst-plugins/core/module_loader.h"

#include <torch/nn/module.h>
#include <torch/types.h>

namespace chatterbox {

void load_module(torch::nn::Module& module, const Checkpoint& ckpt, const LoadOptions& opts) {
  torch::NoGradGuard no_grad;
  auto fill = [&](const std::string& name, torch::Tensor& dst) {
    if (opts.optional.count(name) && !ckpt.has(name)) return;
    at::Tensor src = dst.is_floating_point() ? ckpt.get(name, dst.sizes().vec()) : ckpt.get_raw(name);
    if (!dst.is_floating_point() && src.sizes() != dst.sizes())
      throw ModelError("checkpoint '" + ckpt.path() + "': tensor '" + ckpt.prefix() + name + "' has shape " +
                       shape_str(src.sizes()) + ", the model expects " + shape_str(dst.sizes()));
    dst.copy_(src);
  };
  for (auto& p : module.named_parameters(/*recurse=*/true)) fill(p.key(), p.value());
  for (auto& b : module.named_buffers(/*recurse=*/true)) fill(b.key(), b.value());
}

}  // namespace chatterbox
