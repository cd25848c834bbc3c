// libFuzzer harness: chatterbox::parse_torch_zip (zip reader + restricted
// unpickler + tensor rebuild) on arbitrary bytes, then every tensor through
// Checkpoint::get.
#include "fuzz/fuzz_common.h"

#include <ATen/ATen.h>

#include <memory>

using namespace chatterbox;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  FUZZ_EXPECT_MODEL_ERROR({
    auto store = std::make_shared<TensorStore>(parse_torch_zip(data, size, "fuzz.pt"));
    Checkpoint ck(store);
    for (const auto& key : ck.keys()) {
      at::Tensor raw = ck.get_raw(key);
      if (raw.numel() > 0) (void)raw.reshape({-1})[0].item<double>();
      FUZZ_EXPECT_MODEL_ERROR((void)ck.get(key));
    }
  });
  return 0;
}
