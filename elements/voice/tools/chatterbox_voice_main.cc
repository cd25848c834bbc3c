// chatterbox-voice: a reference recording -> a voice file for t3 and s3genmel.
//
//   chatterbox-voice REF.wav --model-dir DIR [--turbo] [--exaggeration X] -o voice.safetensors [--json]
//
// Runs ChatterboxTTS.prepare_conditionals (or the Turbo one) with DIR's
// s3gen(.meanflow).safetensors (tokenizer, speaker encoder) and
// ve.safetensors, and writes the conds.pt content flattened with '.'
// (t3.speaker_emb, t3.cond_prompt_speech_tokens, t3.emotion_adv,
// gen.prompt_token, gen.prompt_token_len, gen.prompt_feat, gen.embedding):
// what the elements' voice= property reads. --json prints a summary on stdout.
#include "elements/voice/conditionals/conditionals.h"
#include "gst-plugins/core/checkpoint.h"

#include <ATen/ATen.h>
#include <nlohmann/json.hpp>

#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <string>

namespace {

const char* kUsage =
    "usage: chatterbox-voice REF.wav --model-dir DIR [--turbo] [--exaggeration X] -o voice.safetensors [--json]\n"
    "  REF.wav          reference speech (any format libsndfile reads; Turbo: more than 5 s)\n"
    "  --model-dir DIR  Chatterbox model folder: s3gen.safetensors (Turbo: s3gen_meanflow.safetensors) and ve.safetensors\n"
    "  --turbo          Chatterbox-Turbo conditioning: -27 LUFS, 15 s / 375-token T3 prompt\n"
    "  --exaggeration X emotion exaggeration stored as t3.emotion_adv (default 0.5)\n"
    "  -o FILE          output voice (safetensors; conds.pt's tensors)\n"
    "  --json           print a JSON summary on stdout\n";

int usage_error(const std::string& msg) {
  std::cerr << "chatterbox-voice: " << msg << "\n" << kUsage;
  return 2;
}

nlohmann::json shape_json(const at::Tensor& t) { return t.sizes().vec(); }

}  // namespace

int main(int argc, char** argv) {
  using namespace chatterbox;
  using namespace chatterbox::voice;
  std::string ref, dir, out;
  bool json = false;
  CloneOptions opts;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto value = [&](const char* name) -> std::string {
      if (i + 1 >= argc) throw std::invalid_argument(std::string(name) + " needs a value");
      return argv[++i];
    };
    try {
      if (a == "-h" || a == "--help") {
        std::cout << kUsage;
        return 0;
      } else if (a == "--model-dir") {
        dir = value("--model-dir");
      } else if (a == "-o" || a == "--output") {
        out = value("-o");
      } else if (a == "--turbo") {
        opts.variant = Variant::Turbo;
      } else if (a == "--exaggeration") {
        const std::string v = value("--exaggeration");
        size_t used = 0;
        opts.exaggeration = std::stod(v, &used);
        if (used != v.size()) throw std::invalid_argument("--exaggeration '" + v + "' is not a number");
      } else if (a == "--json") {
        json = true;
      } else if (!a.empty() && a[0] == '-') {
        return usage_error("unknown option '" + a + "'");
      } else if (ref.empty()) {
        ref = a;
      } else {
        return usage_error("more than one reference given ('" + ref + "', '" + a + "')");
      }
    } catch (const std::exception& e) {
      return usage_error(e.what());
    }
  }
  if (ref.empty()) return usage_error("no reference recording given");
  if (dir.empty()) return usage_error("--model-dir is required");
  if (out.empty()) return usage_error("-o is required");
  try {
    const VoiceCloner cloner = VoiceCloner::load_dir(dir, opts.variant);
    const VoiceConditionals c = cloner.prepare_conditionals(ref, opts);
    for (const std::string& w : c.warnings) std::cerr << "chatterbox-voice: warning: '" << ref << "': " << w << "\n";
    const std::string variant = opts.variant == Variant::Turbo ? "turbo" : "original";
    c.save(out, {{"format", "chatterbox conditionals (conds.pt flattened)"},
                 {"reference", ref},
                 {"variant", variant},
                 {"exaggeration", std::to_string(opts.exaggeration)}});
    if (json) {
      nlohmann::json j;
      j["output"] = out;
      j["reference"] = ref;
      j["variant"] = variant;
      j["exaggeration"] = opts.exaggeration;
      j["t3_prompt_tokens"] = c.cond_prompt_speech_tokens.size(1);
      j["s3gen_prompt_tokens"] = c.gen.prompt_token.size(1);
      j["s3gen_prompt_frames"] = c.gen.prompt_feat.size(1);
      j["warnings"] = c.warnings;
      nlohmann::json shapes;
      for (const auto& [k, v] : c.tensors()) shapes[k] = shape_json(v);
      j["tensors"] = shapes;
      std::cout << j.dump(2) << "\n";
    }
  } catch (const ModelError& e) {
    std::cerr << "chatterbox-voice: " << e.what() << "\n";
    return 1;
  } catch (const std::exception& e) {
    std::cerr << "chatterbox-voice: unexpected error: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
