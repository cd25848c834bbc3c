// libFuzzer harness: chatterbox::parse_safetensors on arbitrary bytes, then
// every tensor through Checkpoint::get (float conversion, weight-norm
// folding) and the metadata config through Checkpoint::config().
#include "fuzz/fuzz_common.h"

#include <ATen/ATen.h>
#include <nlohmann/json.hpp>

#include <memory>

using namespace chatterbox;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  FUZZ_EXPECT_MODEL_ERROR({
    auto store = std::make_shared<TensorStore>(parse_safetensors(data, size, "fuzz.safetensors"));
    Checkpoint ck(store);
    for (const auto& key : ck.keys()) {
      at::Tensor raw = ck.get_raw(key);
      if (raw.numel() > 0) (void)raw.reshape({-1})[0].item<double>();  // touch the first element
      FUZZ_EXPECT_MODEL_ERROR((void)ck.get(key));
    }
    // Weight-norm folding of whatever x.weight_g/_v pairs the input names.
    for (const auto& key : ck.keys()) {
      const std::string g = "weight_g";
      if (key.size() > g.size() && key.compare(key.size() - g.size(), g.size(), g) == 0)
        FUZZ_EXPECT_MODEL_ERROR((void)ck.get(key.substr(0, key.size() - 2)));
    }
    FUZZ_EXPECT_MODEL_ERROR((void)ck.config());
  });
  return 0;
}
