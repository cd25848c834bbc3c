// vocos-train: trains a Vocos vocoder (default: Chatterbox S3Gen features,
// 80 mels, hop 480, n_fft 1920, 0-8 kHz) from 24 kHz mono wav files, or
// distils one from Chatterbox's HiFT. Writes safetensors that vocosdec loads.
#include "elements/vocoder/vocos/train/vocos_trainer.h"

#include "elements/mel/features/mel_extractor.h"
#include "gst-plugins/core/checkpoint.h"

#include <ATen/ATen.h>

#include <filesystem>

#include <cstdlib>
#include <iostream>
#include <map>
#include <sstream>
#include <string>

using namespace chatterbox;
using namespace chatterbox::vocos_train;

namespace {

const char* kHelp = R"(vocos-train: train a Vocos vocoder (ConvNeXt backbone + iSTFT head) with LibTorch.

Usage: vocos-train --data LIST_OR_DIR [--key value ...]

Data
  --data PATH             list file (one wav per line, relative to the list) or folder of *.wav;
                          24 kHz mono wav (scripts/make-corpus.sh makes a corpus from Debian TTS voices)
  --eval-list PATH        wavs for a copy-synthesis log-mel L1 at every checkpoint (e.g. heldout.list)
  --eval-files N          at most N of them (16)
Model (ignored with --resume / --init: the checkpoint's config is used)
  --layout s3gen|vocos    feature layout: s3gen = 80 mels, hop 480, n_fft 1920, 0-8 kHz (default);
                          vocos = charactr/vocos-mel-24khz (100 mels, hop 256, center)
  --dim N                 backbone width (128)
  --intermediate N        ConvNeXt MLP width (512)
  --layers N              ConvNeXt blocks (6)
  --init PATH             start from an existing Vocos checkpoint (fine-tuning)
Teacher (distillation)
  --teacher hift          targets = HiFT's output for the same mel instead of the recorded audio
  --teacher-model PATH    HiFT weights: Chatterbox's s3gen.safetensors or a HiFTGenerator state dict
Optimisation
  --steps N               total optimizer steps; defines the schedule (20000)
  --stop-at N             stop after step N (checkpoint written), schedule unchanged (run to --steps)
  --batch N               segments per step (8)
  --segment-frames N      mel frames per segment (32 = 0.64 s in the s3gen layout)
  --lr X                  peak learning rate (5e-4)
  --warmup N              linear warm-up steps (500)
  --schedule NAME         cosine | exp | constant after warm-up (cosine)
  --min-lr-ratio X        final lr / peak lr for cosine and exp (0.05)
  --beta1 X --beta2 X     AdamW betas (0.8, 0.9 as the Vocos recipe)
  --weight-decay X        AdamW decoupled weight decay (0.01)
  --grad-clip X           clip the global gradient norm (0 = off)
  --mel-weight X          weight of the L1 log-mel loss (45)
  --stft-weight X         weight of the multi-resolution STFT loss (1)
  --stft-resolutions L    n_fft:hop pairs, comma separated (512:128,1024:256,2048:512)
GAN (the Vocos recipe's adversarial part; off by default: far slower on CPU, see models/README.md)
  --gan                   add multi-period + multi-resolution discriminators (hinge losses, feature
                          matching); they get their own AdamW with the same schedule
  --pretrain-mel-steps N  train without the discriminators for the first N steps (0)
  --mrd-weight X          weight of the multi-resolution discriminator's terms (0.1, configs/vocos.yaml)
  --fm-weight X           weight of feature matching (1)
  --mpd-channels L        the MPD's five conv widths (32,128,512,1024,1024)
  --mrd-channels N        the MRD's conv width (32)
  --mrd-fft-sizes L       the MRD's window lengths (2048,1024,512)
  --mpd-periods L         the MPD's periods (2,3,5,7,11)
  --seed N                seed of the initial weights and of every batch (1); same seed -> same run
  --threads N             intra-op threads (default: LibTorch's)
Output
  --out DIR               checkpoint dir: checkpoint.safetensors (weights + AdamW state + step)
                          and model.safetensors (weights + config), rewritten at each checkpoint
  --output PATH           also write the final model here when the run reaches --steps
  --checkpoint-every N    steps between checkpoints (500)
  --resume PATH           continue from a checkpoint file or --out dir (same seed, same schedule)
  --log-every N           progress line every N steps on stderr (20)
  --quiet                 no progress lines
  --help                  this text
Evaluation (no training)
  --evaluate MODEL        copy-synthesis of every wav in --data through MODEL (VocosVocoder::load):
                          prints the mean log-mel L1 to the original features; with --out DIR also
                          writes DIR/<name>.wav (the resynthesis) to listen to

The model file holds the reference state-dict names and metadata "config" (VocosConfig JSON with
"mel"), so `vocosdec model=PATH` reports the layout it was trained on.
)";

std::vector<int64_t> parse_ints(const std::string& key, const std::string& s) {
  std::vector<int64_t> out;
  std::stringstream ss(s);
  std::string item;
  while (std::getline(ss, item, ',')) {
    size_t used = 0;
    out.push_back(std::stoll(item, &used));
    if (used != item.size()) throw std::invalid_argument("--" + key + ": expected integers, got '" + item + "'");
  }
  if (out.empty()) throw std::invalid_argument("--" + key + ": no value given");
  return out;
}

std::vector<std::pair<int, int>> parse_resolutions(const std::string& s) {
  std::vector<std::pair<int, int>> out;
  std::stringstream ss(s);
  std::string item;
  while (std::getline(ss, item, ',')) {
    const auto c = item.find(':');
    if (c == std::string::npos) throw std::invalid_argument("--stft-resolutions: expected n_fft:hop, got '" + item + "'");
    out.emplace_back(std::stoi(item.substr(0, c)), std::stoi(item.substr(c + 1)));
  }
  if (out.empty()) throw std::invalid_argument("--stft-resolutions: no resolution given");
  return out;
}

// Copy-synthesis of each file: log-mel L1 per file and overall, optional wavs.
int evaluate(const std::string& model, const std::string& data, const std::string& out) {
  auto voc = VocosVocoder::load(model);
  std::cerr << "model " << model << ": " << voc->config().to_string() << "\n";
  if (!out.empty()) std::filesystem::create_directories(out);
  double sum = 0;
  auto files = list_wavs(data);
  for (const auto& f : files) {
    const double e = copy_synthesis_mel_l1(*voc, {f});
    sum += e;
    std::cout << f << "\t" << e << "\n";
    if (!out.empty()) {
      Wav w = read_wav(f);
      mel::MelExtractor ex(voc->mel_format());
      at::Tensor m = ex.compute(at::from_blob(w.samples.data(), {(int64_t)w.samples.size()}, at::kFloat));
      at::Tensor y = voc->forward(m.t().unsqueeze(0)).squeeze(0).contiguous();
      std::vector<float> v(y.data_ptr<float>(), y.data_ptr<float>() + y.numel());
      write_wav((std::filesystem::path(out) / std::filesystem::path(f).filename()).string(), v, voc->config().sample_rate);
    }
  }
  std::cout << "mean copy-synthesis log-mel L1 over " << files.size() << " files: " << sum / files.size() << "\n";
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  std::map<std::string, std::string> kv;
  bool gan = false, quiet = false;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--help" || a == "-h") {
      std::cout << kHelp;
      return 0;
    }
    if (a == "--gan") { gan = true; continue; }
    if (a == "--quiet") { quiet = true; continue; }
    if (a.rfind("--", 0) != 0 || i + 1 >= argc) {
      std::cerr << "vocos-train: expected --key value, got '" << a << "' (see --help)\n";
      return 2;
    }
    kv[a.substr(2)] = argv[++i];
  }
  TrainOptions o;
  int dim = 128, inter = 512, layers = 6;
  std::string layout = "s3gen";
  const bool out_given = kv.count("out") > 0;
  try {
    auto take = [&](const char* k, auto& dst) {
      auto it = kv.find(k);
      if (it == kv.end()) return;
      using T = std::decay_t<decltype(dst)>;
      if constexpr (std::is_same_v<T, std::string>) dst = it->second;
      else if constexpr (std::is_floating_point_v<T>) dst = std::stod(it->second);
      else dst = static_cast<T>(std::stoll(it->second));
      kv.erase(it);
    };
    take("data", o.data); take("eval-list", o.eval_list); take("eval-files", o.eval_files);
    take("layout", layout); take("dim", dim); take("intermediate", inter); take("layers", layers);
    take("init", o.init_model); take("teacher", o.teacher); take("teacher-model", o.teacher_model);
    take("steps", o.steps); take("stop-at", o.stop_at); take("batch", o.batch);
    take("segment-frames", o.segment_frames); take("lr", o.lr); take("warmup", o.warmup);
    take("schedule", o.schedule); take("min-lr-ratio", o.min_lr_ratio); take("beta1", o.beta1);
    take("beta2", o.beta2); take("weight-decay", o.weight_decay); take("grad-clip", o.grad_clip);
    take("mel-weight", o.mel_weight); take("stft-weight", o.stft_weight); take("seed", o.seed);
    take("threads", o.threads); take("out", o.out_dir); take("output", o.output);
    take("checkpoint-every", o.checkpoint_every); take("resume", o.resume); take("log-every", o.log_every);
    take("pretrain-mel-steps", o.pretrain_mel_steps); take("mrd-weight", o.mrd_weight);
    take("fm-weight", o.fm_weight); take("mrd-channels", o.disc.mrd_channels);
    for (auto [key, dst] : {std::pair{"mpd-channels", &o.disc.mpd_channels}, std::pair{"mrd-fft-sizes", &o.disc.fft_sizes},
                            std::pair{"mpd-periods", &o.disc.periods}})
      if (auto it = kv.find(key); it != kv.end()) {
        *dst = parse_ints(key, it->second);
        kv.erase(it);
      }
    if (auto it = kv.find("stft-resolutions"); it != kv.end()) {
      o.stft_resolutions = parse_resolutions(it->second);
      kv.erase(it);
    }
    if (auto it = kv.find("evaluate"); it != kv.end()) {
      const std::string model = it->second;
      kv.erase(it);
      const std::string data = o.data, out = out_given ? o.out_dir : "";
      if (!kv.empty() || data.empty()) {
        std::cerr << "vocos-train: --evaluate MODEL takes --data LIST_OR_DIR and optionally --out DIR\n";
        return 2;
      }
      return evaluate(model, data, out);
    }
    if (!kv.empty()) {
      std::cerr << "vocos-train: unknown option --" << kv.begin()->first << " (see --help)\n";
      return 2;
    }
    if (o.data.empty()) {
      std::cerr << "vocos-train: --data is required (a wav list or folder; see --help)\n";
      return 2;
    }
    if (o.schedule != "cosine" && o.schedule != "exp" && o.schedule != "constant") {
      std::cerr << "vocos-train: --schedule must be cosine, exp or constant\n";
      return 2;
    }
    if (layout == "s3gen") {
      o.config = VocosConfig::s3gen(dim, inter, layers);
    } else if (layout == "vocos") {
      o.config = VocosConfig::mel_24khz();
      o.config.dim = dim;
      o.config.intermediate_dim = inter;
      o.config.num_layers = layers;
    } else {
      std::cerr << "vocos-train: --layout must be s3gen or vocos\n";
      return 2;
    }
    o.quiet = quiet;
    o.gan = gan;
    train(o);
  } catch (const std::exception& e) {
    std::cerr << "vocos-train: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
