// libFuzzer harness: S3GenFlowConfig::from_json + validate() on the input as a
// checkpoint's metadata "config" (Checkpoint::config() parses it).
#include "elements/s3gen/flow/s3gen_flow.h"
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
    S3GenFlowConfig c = S3GenFlowConfig::from_json(j);
    c.validate();
  });
  return 0;
}
