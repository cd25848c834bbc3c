// libFuzzer harness: the Vocos config paths. The input is the metadata
// "config" string of a synthesised checkpoint (valid tensor shapes of the
// tiny_center fixture layout, so the config/shape reconciliation is reached)
// and resolve_vocos_config + validate() + the derived quantities run on it.
#include "elements/vocoder/vocos/vocos.h"
#include "fuzz/fuzz_common.h"

#include <ATen/ATen.h>

#include <memory>
#include <string>

using namespace chatterbox;

namespace {
// Shapes only matter to the resolver; values are zeros.
std::shared_ptr<TensorStore> base_store(bool with_features) {
  auto s = std::make_shared<TensorStore>();
  s->path = "fuzz_vocos.safetensors";
  const int64_t dim = 16, mels = 100, inter = 48, n_fft = 64;
  s->tensors["backbone.embed.weight"] = at::zeros({dim, mels, 7});
  s->tensors["head.out.weight"] = at::zeros({n_fft + 2, dim});
  for (int l = 0; l < 2; ++l) {
    std::string p = "backbone.convnext." + std::to_string(l) + ".";
    s->tensors[p + "dwconv.weight"] = at::zeros({dim, 1, 7});
    s->tensors[p + "pwconv1.weight"] = at::zeros({inter, dim});
  }
  if (with_features) {
    s->tensors["feature_extractor.mel_spec.mel_scale.fb"] = at::zeros({n_fft / 2 + 1, mels});
    s->tensors["feature_extractor.mel_spec.spectrogram.window"] = at::zeros({n_fft});
  }
  return s;
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  // First byte: with or without the feature-extractor buffers.
  auto store = base_store(data[0] & 1);
  store->metadata["config"] = std::string(reinterpret_cast<const char*>(data + 1), size - 1);
  Checkpoint ck(store);
  FUZZ_EXPECT_MODEL_ERROR({
    VocosConfig c = resolve_vocos_config(ck);
    c.validate();
    (void)c.receptive_frames();
    (void)c.trim_samples();
    (void)c.output_samples(100);
    (void)c.exact_lookahead_frames();
    (void)c.to_string();
  });
  return 0;
}
