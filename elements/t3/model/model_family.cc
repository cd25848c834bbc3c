#include "elements/t3/model/model_family.h"

#include "elements/t3/model/gpt2_tokenizer.h"
#include "gst-plugins/core/checkpoint.h"

#include <filesystem>

namespace chatterbox::t3 {

namespace fs = std::filesystem;

T3Family detect_t3_family(const Checkpoint& ck) {
  for (const char* prefix : {"", "model.0."}) {
    const std::string p = prefix;
    if (ck.has(p + "tfmr.wpe.weight") || ck.has(p + "tfmr.h.0.attn.c_attn.weight")) return T3Family::Gpt2;
    if (ck.has(p + "tfmr.layers.0.self_attn.q_proj.weight") || ck.has(p + "tfmr.norm.weight")) return T3Family::Llama;
  }
  throw ModelError("checkpoint '" + ck.path() + "' is not a T3 model: it has neither GPT-2 blocks ('" + ck.prefix() +
                   "tfmr.wpe.weight', Chatterbox-Turbo/Nano) nor Llama layers ('" + ck.prefix() +
                   "tfmr.layers.0.self_attn.q_proj.weight', Chatterbox)");
}

const char* family_name(T3Family f) { return f == T3Family::Gpt2 ? "GPT-2" : "Llama"; }

const char* kind_name(ModelDirKind k) {
  switch (k) {
    case ModelDirKind::Turbo: return "Chatterbox-Turbo";
    case ModelDirKind::Nano: return "Chatterbox-Nano";
    case ModelDirKind::Multilingual: return "Chatterbox Multilingual";
    default: return "Chatterbox";
  }
}

namespace {
struct Candidate {
  const char* file;
  ModelDirKind kind;
};
// V3 before V2: the first present of the two is the directory's model
// (both in one directory are two versions of one model, not a mix).
constexpr Candidate kT3Files[] = {{"t3_cfg.safetensors", ModelDirKind::Chatterbox},
                                  {"t3_turbo_v1.safetensors", ModelDirKind::Turbo},
                                  {"t3_nano_v1.safetensors", ModelDirKind::Nano},
                                  {"t3_mtl23ls_v3.safetensors", ModelDirKind::Multilingual},
                                  {"t3_mtl23ls_v2.safetensors", ModelDirKind::Multilingual}};

bool is_file(const fs::path& p) {
  std::error_code ec;
  return fs::is_regular_file(p, ec);
}

// The candidates present; ModelError unless exactly one.
const Candidate& the_t3(const std::string& dir) {
  const Candidate* found = nullptr;
  std::string present;
  int n = 0;
  for (const Candidate& c : kT3Files)
    if (is_file(fs::path(dir) / c.file)) {
      if (found && found->kind == ModelDirKind::Multilingual && c.kind == ModelDirKind::Multilingual) continue;  // V3 wins
      present += std::string(present.empty() ? "" : " and ") + c.file + " (" + kind_name(c.kind) + ")";
      found = &c;
      ++n;
    }
  if (n > 1)
    throw ModelError("model directory '" + dir + "' mixes T3 models: " + present +
                     "; keep the files of one model per directory");
  if (!found) {
    const fs::path d(dir);
    throw ModelError("model directory '" + dir + "' holds no T3 checkpoint: no " + (d / kT3Files[0].file).string() +
                     " (Chatterbox), " + (d / kT3Files[1].file).string() + " (Turbo), " +
                     (d / kT3Files[2].file).string() + " (Nano) or " + (d / kT3Files[3].file).string() + " / " +
                     kT3Files[4].file + " (Multilingual V3 / V2)");
  }
  return *found;
}
}  // namespace

std::string t3_checkpoint_in_dir(const std::string& dir) { return (fs::path(dir) / the_t3(dir).file).string(); }

ModelDirLayout inspect_model_dir(const std::string& dir) {
  const Candidate& t3 = the_t3(dir);
  const fs::path d(dir);
  ModelDirLayout L;
  L.kind = t3.kind;
  L.t3 = (d / t3.file).string();
  L.conds = (d / "conds.pt").string();
  L.vocos = (d / "vocos.safetensors").string();
  L.has_vocos = is_file(L.vocos);
  const bool turbo = t3.kind == ModelDirKind::Turbo || t3.kind == ModelDirKind::Nano;
  const char* s3gen = turbo ? "s3gen_meanflow.safetensors" : "s3gen.safetensors";
  const char* other_s3gen = turbo ? "s3gen.safetensors" : "s3gen_meanflow.safetensors";
  L.s3gen = (d / s3gen).string();
  if (!is_file(L.s3gen)) {
    std::string hint;
    if (is_file(d / other_s3gen))
      hint = turbo ? " (s3gen.safetensors is standard Chatterbox's flow; Turbo and Nano need the mean-flow one)"
                   : " (s3gen_meanflow.safetensors is Chatterbox-Turbo's flow; " + std::string(t3.file) +
                         " needs the standard one)";
    L.missing.push_back({L.s3gen + hint, "s3gen"});
  }
  if (turbo) {
    // AutoTokenizer takes the directory: tokenizer.json or the slow layout.
    L.tokenizer = dir;
    if (!Gpt2Tokenizer::dir_has_tokenizer(dir))
      L.missing.push_back({(d / "tokenizer.json").string() + " (or vocab.json + merges.txt)", "tokenizer"});
  } else if (t3.kind == ModelDirKind::Multilingual) {
    L.tokenizer = (d / kMtlVocabFile).string();
    if (!is_file(L.tokenizer)) L.missing.push_back({L.tokenizer, "tokenizer"});
  } else {
    L.tokenizer = (d / "tokenizer.json").string();
    if (!is_file(L.tokenizer)) L.missing.push_back({L.tokenizer, "tokenizer"});
  }
  if (!is_file(L.conds)) L.missing.push_back({L.conds, "conds"});
  return L;
}

}  // namespace chatterbox::t3
