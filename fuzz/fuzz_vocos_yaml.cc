// libFuzzer harness: vocos_yaml_to_json (the charactr/vocos config.yaml
// reader) on the fuzzed bytes written to a temporary file, then
// resolve_vocos_config on a synthesised checkpoint without metadata, which
// reconciles that YAML with the tensor shapes.
#include "elements/vocoder/vocos/vocos.h"
#include "fuzz/fuzz_common.h"

#include <ATen/ATen.h>
#include <nlohmann/json.hpp>

#include <cstdio>
#include <fstream>
#include <memory>
#include <string>
#include <unistd.h>

using namespace chatterbox;

namespace {
std::string temp_path() {
  static const std::string p = "/tmp/chatterbox_fuzz_vocos_" + std::to_string(getpid()) + ".yaml";
  return p;
}
Checkpoint shapes_only() {
  auto s = std::make_shared<TensorStore>();
  s->path = "fuzz_vocos.bin";
  s->tensors["backbone.embed.weight"] = at::zeros({16, 100, 7});
  s->tensors["head.out.weight"] = at::zeros({66, 16});
  s->tensors["backbone.convnext.0.dwconv.weight"] = at::zeros({16, 1, 7});
  s->tensors["backbone.convnext.0.pwconv1.weight"] = at::zeros({48, 16});
  return Checkpoint(s);
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string path = temp_path();
  {
    std::ofstream f(path, std::ios::binary | std::ios::trunc);
    f.write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(size));
  }
  static const Checkpoint ck = shapes_only();
  FUZZ_EXPECT_MODEL_ERROR((void)vocos_yaml_to_json(path).size());
  FUZZ_EXPECT_MODEL_ERROR({
    VocosConfig c = resolve_vocos_config(ck, path);
    c.validate();
    (void)c.exact_lookahead_frames();
  });
  return 0;
}
