// Training a Vocos (VocosBackbone + ISTFTHead) from wav files, in LibTorch:
// the library behind the `vocos-train` tool. Plain C++ header (the module
// tree and the autograd code live in vocos_trainer.cc).
//
// Recipe (gemelo-ai/vocos): random segments of
// `segment_frames` mel frames, input = the model's log-mel (MelExtractor on the
// whole utterance, then sliced, so a segment sees the same features as
// inference), target = the matching audio (or a teacher vocoder's output for
// the same mel); loss = mel_weight * L1(log-mel(generated), log-mel(target))
// with the model's own mel recipe + stft_weight * multi-resolution STFT loss
// (spectral convergence + L1 log magnitude, averaged over resolutions);
// AdamW with linear warm-up then cosine (or exponential) decay. With `gan`,
// the recipe's adversarial part too (discriminators.h): each step first
// updates the discriminators (their own AdamW, same schedule) on the
// generator's current output, then the generator with
// + adv_mpd + mrd_weight * adv_mrd + fm_weight * (fm_mpd + mrd_weight * fm_mrd)
// against the updated discriminators; the first `pretrain_mel_steps` steps
// train the generator without them.
//
// Determinism: the segments of step s come from a generator seeded by
// (seed, s) alone, so a run resumed from a checkpoint draws exactly what an
// uninterrupted run draws; the checkpoint holds the weights, the AdamW
// moments and the step (and with `gan` the discriminators, their moments and
// update count). The model file holds the generator only.
#pragma once

#include "elements/vocoder/vocos/train/discriminators.h"
#include "elements/vocoder/vocos/vocos.h"

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <functional>
#include <string>
#include <utility>
#include <vector>

namespace chatterbox::vocos_train {

// The default model: S3Gen layout at a width that trains on 2 CPU cores.
VocosConfig default_config();

struct TrainOptions {
  VocosConfig config = default_config();
  std::string init_model;  // start from this Vocos checkpoint (its config and weights)
  std::string data;        // list file (one wav per line, relative to the list) or a folder of *.wav
  std::string out_dir = "vocos-train-out";  // checkpoint.safetensors, model.safetensors
  std::string output;      // final model file ("" = out_dir/model.safetensors)
  std::string resume;      // checkpoint file, or a directory holding checkpoint.safetensors

  int64_t steps = 20000;   // total optimizer steps (defines the schedule)
  int64_t stop_at = -1;    // stop (with a checkpoint) after this step; -1 = run to `steps`
  int64_t batch = 8;
  int64_t segment_frames = 32;
  double lr = 5e-4;
  int64_t warmup = 500;
  std::string schedule = "cosine";  // "cosine" | "exp" | "constant"
  double min_lr_ratio = 0.05;       // final lr / lr (cosine and exp)
  double beta1 = 0.8, beta2 = 0.9, adam_eps = 1e-8, weight_decay = 0.01;
  double grad_clip = 0.0;  // global L2 norm; 0 = off
  double mel_weight = 45.0;
  double stft_weight = 1.0;
  std::vector<std::pair<int, int>> stft_resolutions{{512, 128}, {1024, 256}, {2048, 512}};  // (n_fft, hop)
  uint64_t seed = 1;
  int64_t checkpoint_every = 500;
  int64_t log_every = 20;
  int threads = 0;  // > 0: at::set_num_threads
  std::string teacher;        // "" | "hift"
  std::string teacher_model;  // HiFT checkpoint (s3gen.safetensors, or a HiFTGenerator state dict)
  std::string eval_list;      // wav list/folder for copy-synthesis log-mel L1 at each checkpoint
  int64_t eval_files = 16;
  // GAN (the Vocos recipe's discriminators; off by default: on 2 CPU cores a
  // step costs tens of times a mel-only step, see models/README.md).
  bool gan = false;
  int64_t pretrain_mel_steps = 0;  // steps before the discriminators join (reference: pretrain_mel_steps)
  double mrd_weight = 0.1;         // reference mrd_loss_coeff (configs/vocos.yaml)
  double fm_weight = 1.0;          // feature matching (the reference adds it with weight 1)
  DiscriminatorConfig disc;        // ignored when resuming a GAN checkpoint (its shapes are used)
  bool quiet = false;         // no progress lines on stderr
};

struct StepLog {
  int64_t step = 0;  // 0-based index of the optimizer step this loss was computed at
  double loss = 0, mel = 0, sc = 0, mag = 0, lr = 0, grad_norm = 0;  // loss: the generator's total
  bool gan = false;  // the discriminators took part in this step
  double d_loss = 0, d_mpd = 0, d_mrd = 0;  // discriminator hinge loss (before its update)
  double adv_mpd = 0, adv_mrd = 0, fm_mpd = 0, fm_mrd = 0;  // generator terms (unweighted)
};

struct TrainResult {
  std::vector<StepLog> log;  // every step run in this call
  int64_t first_step = 0, end_step = 0;  // [first, end) run here
  std::string model_path;               // the model file written last
  std::string checkpoint_path;
  double seconds = 0;
  std::vector<std::pair<int64_t, double>> eval;  // (step, copy-synthesis log-mel L1)
};

// Runs (or resumes) a training run. Throws ModelError / std::invalid_argument
// with a sentence naming the problem (bad wav, missing teacher, ...).
TrainResult train(const TrainOptions& opts, const std::function<void(const StepLog&)>& on_step = {});

// Mean over files of the mean |log-mel(vocoder(mel)) - mel| (the model's mel
// recipe; the S3Gen one for the default layout), whole utterances: how close
// copy-synthesis comes to the original features.
double copy_synthesis_mel_l1(VocosVocoder& vocoder, const std::vector<std::string>& wavs);

// --- wav I/O (RIFF PCM 16/24/32-bit or IEEE float 32/64) ------------------
struct Wav {
  std::vector<float> samples;  // interleaved
  int rate = 0;
  int channels = 0;
};
Wav read_wav(const std::string& path);
// Mono 16-bit PCM (clipped to [-1, 1]).
void write_wav(const std::string& path, const std::vector<float>& mono, int rate);
// Files named by a list (one per line, '#' comments, relative to the list's
// folder) or every *.wav in a folder (sorted).
std::vector<std::string> list_wavs(const std::string& list_or_dir);

}  // namespace chatterbox::vocos_train
