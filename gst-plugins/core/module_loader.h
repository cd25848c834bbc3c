// Fills a torch::nn::Module's parameters and buffers from a Checkpoint, by
// state-dict name, so module trees that mirror the reference load one to one.
#pragma once

#include "gst-plugins/core/checkpoint.h"

#include <set>
#include <string>

namespace torch::nn {
class Module;
}

namespace chatterbox {

struct LoadOptions {
  // Names (relative to the checkpoint prefix) that may be absent; they keep
  // the module's own value (e.g. non-persistent buffers such as windows).
  std::set<std::string> optional;
};

// Copies every parameter and buffer of `module` from `ckpt` (under its prefix),
// checking shapes; throws ModelError naming the first missing or misshapen
// tensor. Keys of the checkpoint that the module does not use are ignored.
void load_module(torch::nn::Module& module, const Checkpoint& ckpt, const LoadOptions& opts = {});

}  // namespace chatterbox
