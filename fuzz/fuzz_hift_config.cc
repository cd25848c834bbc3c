// libFuzzer harness: HiftConfig::from_json on the input as a checkpoint's
// metadata "config" (Checkpoint::config() parses and range-checks it), then
// the derived sizes the model computes from it.
#include "elements/vocoder/hift/hift.h"
#include "fuzz/fuzz_common.h"

#include <nlohmann/json.hpp>

#include <memory>

using namespace chatterbox;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  // The way a config reaches the model: the checkpoint's metadata "config"
  // string, parsed and range-checked by Checkpoint::config().
  auto store = std::make_shared<TensorStore>();
  store->path = "fuzz.safetensors";
  store->metadata["config"] = std::string(reinterpret_cast<const char*>(data), size);
  const Checkpoint ck(store);
  FUZZ_EXPECT_MODEL_ERROR({
    const nlohmann::json j = ck.config();
    hift::HiftConfig c = hift::HiftConfig::from_json(j);
    (void)c.samples_per_frame();
    (void)c.n_sines();
    (void)c.to_json().dump();
  });
  return 0;
}
