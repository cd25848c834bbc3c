// Which Chatterbox model a file or directory holds: the T3 backbone of a
// checkpoint (Llama: Chatterbox and multilingual; GPT-2: Turbo and Nano),
// and the files of a model directory. No GStreamer here.
#pragma once

#include <string>
#include <vector>

namespace chatterbox {
class Checkpoint;
}

namespace chatterbox::t3 {

enum class T3Family { Llama, Gpt2 };

// From the tensor names (the legacy "model.0." wrapper too): GPT-2 blocks
// (tfmr.h.N / tfmr.wpe) or Llama layers (tfmr.layers.N). ModelError naming
// the file when it is neither.
T3Family detect_t3_family(const Checkpoint& ck);
const char* family_name(T3Family f);  // "Llama" / "GPT-2"

enum class ModelDirKind { Chatterbox, Turbo, Nano, Multilingual };
// "Chatterbox" / "Chatterbox-Turbo" / "Chatterbox-Nano" / "Chatterbox Multilingual"
const char* kind_name(ModelDirKind k);

// The files of a model directory, by the T3 checkpoint it holds:
//   Chatterbox:  t3_cfg.safetensors + s3gen.safetensors + tokenizer.json + conds.pt
//   Turbo/Nano:  t3_turbo_v1.safetensors / t3_nano_v1.safetensors + s3gen_meanflow.safetensors
//                + tokenizer (tokenizer.json, or vocab.json + merges.txt) + conds.pt
//   Multilingual: t3_mtl23ls_v3.safetensors and/or t3_mtl23ls_v2.safetensors (V3 when both are
//                there; not a mix) + s3gen.safetensors + grapheme_mtl_merged_expanded_v1.json
//                + conds.pt; Cangjie5_TC.json (Chinese) optional
// vocos.safetensors is optional in all. Paths are set whether or not the file
// exists; `missing` lists, in that order, what the kind needs and the
// directory lacks (a mixed directory, e.g. Turbo's T3 beside the standard
// s3gen.safetensors, shows up there with a hint).
struct ModelDirLayout {
  ModelDirKind kind;
  std::string t3, s3gen, tokenizer, conds, vocos;  // tokenizer: a file or the directory
  bool has_vocos = false;
  struct Missing {
    std::string what;  // the file's path (with the alternative or a hint)
    std::string role;  // "s3gen", "conds", "tokenizer"
  };
  std::vector<Missing> missing;
};
// ModelError when the directory holds no T3 checkpoint, or more than one.
ModelDirLayout inspect_model_dir(const std::string& dir);
// The T3 checkpoint of a directory (the t3 element's `model=DIR`): the one
// of t3_cfg.safetensors, t3_turbo_v1.safetensors, t3_nano_v1.safetensors,
// t3_mtl23ls_v3.safetensors (else t3_mtl23ls_v2.safetensors) present;
// ModelError listing the candidates when none or several are.
std::string t3_checkpoint_in_dir(const std::string& dir);

// The multilingual front end's files (upstream names).
constexpr const char* kMtlVocabFile = "grapheme_mtl_merged_expanded_v1.json";
constexpr const char* kCangjieFile = "Cangjie5_TC.json";

}  // namespace chatterbox::t3
