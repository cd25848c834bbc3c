// Vocos training: a differentiable module tree with the reference state-dict
// names (the inference library's fast path folds and fuses weights and runs
// under no-grad, so training has its own forward), differentiable log-mel and
// multi-resolution STFT losses, AdamW, data sampling, checkpoints.
#include "elements/vocoder/vocos/train/vocos_trainer.h"
#include "elements/vocoder/vocos/train/adamw.h"
#include "elements/vocoder/vocos/train/discriminators.h"
#include "elements/vocoder/vocos/vocos_modules.h"

#include "elements/mel/features/mel_extractor.h"
#include "elements/vocoder/hift/hift.h"
#include "gst-plugins/core/checkpoint.h"
#include "gst-plugins/core/module_loader.h"

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <ATen/Parallel.h>
#include <torch/autograd.h>
#include <torch/nn/module.h>
#include <torch/nn/modules/container/modulelist.h>
#include <torch/nn/modules/conv.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/modules/normalization.h>
#include <torch/types.h>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <memory>
#include <random>
#include <sstream>
#include <stdexcept>

namespace chatterbox::vocos_train {

namespace fs = std::filesystem;
namespace nn = torch::nn;

VocosConfig default_config() { return VocosConfig::s3gen(/*dim=*/128, /*intermediate_dim=*/512, /*num_layers=*/6); }

// --- wav I/O -------------------------------------------------------------------

namespace {

uint32_t rd32(const unsigned char* p) { return p[0] | (p[1] << 8) | (p[2] << 16) | (uint32_t(p[3]) << 24); }
uint16_t rd16(const unsigned char* p) { return static_cast<uint16_t>(p[0] | (p[1] << 8)); }

}  // namespace

Wav read_wav(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw ModelError("cannot open wav file '" + path + "'");
  std::vector<unsigned char> d((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  auto bad = [&](const std::string& why) { return ModelError("wav file '" + path + "': " + why); };
  if (d.size() < 12 || std::memcmp(d.data(), "RIFF", 4) != 0 || std::memcmp(d.data() + 8, "WAVE", 4) != 0)
    throw bad("not a RIFF/WAVE file");
  int fmt = -1, channels = 0, bits = 0;
  uint32_t rate = 0;
  const unsigned char* data = nullptr;
  size_t data_len = 0;
  for (size_t pos = 12; pos + 8 <= d.size();) {
    const uint32_t len = rd32(&d[pos + 4]);
    const size_t body = pos + 8, avail = std::min<size_t>(len, d.size() - body);
    if (std::memcmp(&d[pos], "fmt ", 4) == 0) {
      if (avail < 16) throw bad("short fmt chunk");
      fmt = rd16(&d[body]);
      channels = rd16(&d[body + 2]);
      rate = rd32(&d[body + 4]);
      bits = rd16(&d[body + 14]);
      if (fmt == 0xFFFE && avail >= 26) fmt = rd16(&d[body + 24]);  // WAVE_FORMAT_EXTENSIBLE subformat
    } else if (std::memcmp(&d[pos], "data", 4) == 0) {
      data = &d[body];
      data_len = avail;  // streamed files may claim more than there is
    }
    pos = body + len + (len & 1);
  }
  if (fmt < 0 || !data) throw bad("no fmt or data chunk");
  if (channels <= 0) throw bad("zero channels");
  Wav w;
  w.rate = static_cast<int>(rate);
  w.channels = channels;
  const int bytes = bits / 8;
  if (!((fmt == 1 && (bits == 16 || bits == 24 || bits == 32)) || (fmt == 3 && (bits == 32 || bits == 64))))
    throw bad("unsupported sample format (format tag " + std::to_string(fmt) + ", " + std::to_string(bits) +
              " bits); use PCM 16/24/32-bit or float 32/64 (e.g. sox in.wav -b 16 out.wav)");
  const size_t n = data_len / bytes;
  w.samples.resize(n);
  for (size_t i = 0; i < n; ++i) {
    const unsigned char* p = data + i * bytes;
    float v = 0;
    if (fmt == 1 && bits == 16) v = static_cast<int16_t>(rd16(p)) / 32768.0f;
    else if (fmt == 1 && bits == 24) v = static_cast<float>(static_cast<int32_t>((uint32_t(p[0]) << 8) | (uint32_t(p[1]) << 16) | (uint32_t(p[2]) << 24)) >> 8) / 8388608.0f;
    else if (fmt == 1 && bits == 32) v = static_cast<float>(static_cast<int32_t>(rd32(p)) / 2147483648.0);
    else if (bits == 32) { uint32_t u = rd32(p); std::memcpy(&v, &u, 4); }
    else { uint64_t u = rd32(p) | (uint64_t(rd32(p + 4)) << 32); double x; std::memcpy(&x, &u, 8); v = static_cast<float>(x); }
    w.samples[i] = v;
  }
  return w;
}

void write_wav(const std::string& path, const std::vector<float>& mono, int rate) {
  std::ofstream f(path, std::ios::binary);
  if (!f) throw ModelError("cannot write wav file '" + path + "'");
  auto w32 = [&](uint32_t v) { unsigned char b[4] = {uint8_t(v), uint8_t(v >> 8), uint8_t(v >> 16), uint8_t(v >> 24)}; f.write((char*)b, 4); };
  auto w16 = [&](uint16_t v) { unsigned char b[2] = {uint8_t(v), uint8_t(v >> 8)}; f.write((char*)b, 2); };
  const uint32_t bytes = static_cast<uint32_t>(mono.size() * 2);
  f.write("RIFF", 4); w32(36 + bytes); f.write("WAVE", 4);
  f.write("fmt ", 4); w32(16); w16(1); w16(1); w32(rate); w32(rate * 2); w16(2); w16(16);
  f.write("data", 4); w32(bytes);
  for (float s : mono) {
    const float c = std::max(-1.0f, std::min(1.0f, s));
    w16(static_cast<uint16_t>(static_cast<int16_t>(std::lrint(c * 32767.0f))));
  }
  if (!f) throw ModelError("error writing wav file '" + path + "'");
}

std::vector<std::string> list_wavs(const std::string& src) {
  std::error_code ec;
  std::vector<std::string> out;
  if (fs::is_directory(src, ec)) {
    for (const auto& e : fs::recursive_directory_iterator(src, ec))
      if (e.is_regular_file() && e.path().extension() == ".wav") out.push_back(e.path().string());
    std::sort(out.begin(), out.end());
  } else {
    std::ifstream f(src);
    if (!f) throw ModelError("cannot read data list '" + src + "' (give a list file or a folder of .wav files)");
    const fs::path base = fs::path(src).parent_path();
    std::string line;
    while (std::getline(f, line)) {
      while (!line.empty() && (line.back() == '\r' || line.back() == ' ' || line.back() == '\t')) line.pop_back();
      if (line.empty() || line[0] == '#') continue;
      fs::path p(line);
      out.push_back((p.is_absolute() ? p : base / p).string());
    }
  }
  if (out.empty()) throw ModelError("no wav files in '" + src + "'");
  return out;
}

namespace {

// Mono float samples at the model's rate, or a clear refusal.
at::Tensor load_audio(const std::string& path, int rate) {
  Wav w = read_wav(path);
  if (w.rate != rate)
    throw ModelError("wav file '" + path + "' is " + std::to_string(w.rate) + " Hz; training needs " +
                     std::to_string(rate) + " Hz mono (convert: sox in.wav -r " + std::to_string(rate) +
                     " -c 1 -b 16 out.wav, or build the corpus with scripts/make-corpus.sh)");
  if (w.channels != 1)
    throw ModelError("wav file '" + path + "' has " + std::to_string(w.channels) +
                     " channels; training needs mono (sox in.wav -c 1 out.wav)");
  return at::from_blob(w.samples.data(), {static_cast<int64_t>(w.samples.size())}, at::kFloat).clone();
}

// The module tree and its differentiable forward: shared with the library.
using vocos_modules::Net;

// The Vocos recipe's initialisation: backbone Conv1d/Linear weights
// trunc_normal(std 0.02), biases 0; LayerNorm 1/0; gamma 1/num_layers; the
// head's Linear with torch's default (kaiming-uniform: U(+-1/sqrt(fan_in))).
void init_weights(Net& net, uint64_t seed) {
  torch::NoGradGuard ng;
  at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(seed);
  for (auto& kv : net->named_parameters()) {
    const std::string& name = kv.key();
    at::Tensor& t = kv.value();
    auto ends = [&](const std::string& s) {
      return name.size() >= s.size() && name.compare(name.size() - s.size(), s.size(), s) == 0;
    };
    if (name.rfind("head.out.", 0) == 0) {
      const double b = 1.0 / std::sqrt(static_cast<double>(net->cfg.dim));
      t.copy_(at::rand(t.sizes(), gen, at::TensorOptions().dtype(at::kFloat)).mul_(2 * b).sub_(b));
    } else if (ends("gamma")) {
      t.fill_(1.0 / std::max(1, net->cfg.num_layers));
    } else if (t.dim() == 1) {
      t.fill_(ends(".bias") ? 0.0 : 1.0);  // conv/linear biases 0, LayerNorm weight 1 / bias 0
    } else {
      t.copy_(at::randn(t.sizes(), gen, at::TensorOptions().dtype(at::kFloat)).clamp_(-2.0, 2.0).mul_(0.02));
    }
  }
}

std::map<std::string, at::Tensor> model_tensors(Net& net) {
  std::map<std::string, at::Tensor> out;
  for (const auto& kv : net->named_parameters()) out[kv.key()] = kv.value().detach().clone();
  for (const auto& kv : net->named_buffers()) out[kv.key()] = kv.value().detach().clone();
  return out;
}

// --- losses ------------------------------------------------------------------------

// |STFT| frames of x [B, N]: reflect-pad `pad` each side, frames of n_fft every
// hop, window, real FFT. power = |X|^2 (+ eps); returns [B, T, n_fft/2 + 1].
at::Tensor stft_power(const at::Tensor& x, int64_t n_fft, int64_t hop, const at::Tensor& window, int64_t pad,
                      int64_t n_frames) {
  at::Tensor xp = pad > 0 ? at::reflection_pad1d(x.unsqueeze(1), {pad, pad}).squeeze(1) : x;
  at::Tensor frames = xp.unfold(1, n_fft, hop);
  if (n_frames >= 0) frames = frames.narrow(1, 0, n_frames);
  at::Tensor spec = at::fft_rfft(frames * window, n_fft, -1);
  at::Tensor re = at::real(spec), im = at::imag(spec);
  return re * re + im * im;
}

// The model's log-mel, differentiable, batched: [B, N] -> [B, T, n_mels];
// the same recipe (padding, magnitude epsilon, filterbank, floor) as
// MelExtractor::compute, which runs under inference mode.
struct DiffMel {
  mel::MelExtractor ex;
  MelFormat fmt;
  at::Tensor window, fbt;
  explicit DiffMel(const MelFormat& f) : ex(f), fmt(f) {
    window = ex.window().to(at::kFloat);
    fbt = ex.filterbank().to(at::kFloat).t().contiguous();
  }
  at::Tensor operator()(const at::Tensor& x) const {
    at::Tensor p = stft_power(x, ex.n_fft(), ex.hop_length(), window, ex.pad(), ex.num_frames(x.size(1)));
    at::Tensor mag;
    if (fmt.mag_eps > 0) {
      p = p + fmt.mag_eps;
      mag = fmt.power == 1 ? at::sqrt(p) : p;
    } else {
      // |X| has an infinite slope at 0: a tiny floor keeps the gradient finite
      // without changing any value a log floor of >= 1e-7 can see.
      mag = fmt.power == 1 ? at::sqrt(at::clamp_min(p, 1e-18)) : p;
    }
    return at::log(at::clamp_min(at::matmul(mag, fbt), fmt.log_floor));
  }
};

struct StftLoss {
  std::vector<std::pair<int, int>> res;
  std::vector<at::Tensor> windows;
  explicit StftLoss(std::vector<std::pair<int, int>> r) : res(std::move(r)) {
    for (auto& [n, h] : res) windows.push_back(at::hann_window(n, /*periodic=*/true, at::kFloat));
  }
  // {spectral convergence, log-magnitude L1}, each averaged over resolutions.
  std::pair<at::Tensor, at::Tensor> operator()(const at::Tensor& pred, const at::Tensor& target) const {
    at::Tensor sc = at::zeros({}, at::kFloat), mg = at::zeros({}, at::kFloat);
    for (size_t i = 0; i < res.size(); ++i) {
      const int64_t n = res[i].first, h = res[i].second;
      at::Tensor mp = at::sqrt(at::clamp_min(stft_power(pred, n, h, windows[i], n / 2, -1), 1e-7));
      at::Tensor mt;
      {
        torch::NoGradGuard ng;
        mt = at::sqrt(at::clamp_min(stft_power(target, n, h, windows[i], n / 2, -1), 1e-7));
      }
      sc = sc + at::norm(mt - mp) / at::norm(mt);
      mg = mg + at::mean(at::abs(at::log(mt) - at::log(mp)));
    }
    const double k = 1.0 / std::max<size_t>(1, res.size());
    return {sc * k, mg * k};
  }
};

// --- data --------------------------------------------------------------------------

struct Utterance {
  std::string path;
  at::Tensor audio;   // [N] float32 (the target: original, or the teacher's output)
  at::Tensor mel;     // [T, M] the model's input features of the whole utterance
  bool teacher_done = false;
};

uint64_t splitmix64(uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

std::string fmt_duration(double s) {
  if (!(s >= 0) || s > 1e7) return "?";
  const int64_t t = static_cast<int64_t>(s + 0.5);
  char buf[32];
  if (t >= 3600) std::snprintf(buf, sizeof buf, "%lldh%02lldm", (long long)(t / 3600), (long long)(t / 60 % 60));
  else std::snprintf(buf, sizeof buf, "%lldm%02llds", (long long)(t / 60), (long long)(t % 60));
  return buf;
}

void atomic_write_safetensors(const std::string& path, const std::map<std::string, at::Tensor>& t,
                              const std::map<std::string, std::string>& meta) {
  const std::string tmp = path + ".tmp";
  write_safetensors(tmp, t, meta);
  fs::rename(tmp, path);
}

double lr_at(const TrainOptions& o, int64_t step) {
  if (o.warmup > 0 && step < o.warmup) return o.lr * static_cast<double>(step + 1) / o.warmup;
  const double span = std::max<int64_t>(1, o.steps - o.warmup);
  const double p = std::min(1.0, static_cast<double>(step - o.warmup) / span);
  if (o.schedule == "constant") return o.lr;
  if (o.schedule == "exp") return o.lr * std::pow(o.min_lr_ratio, p);
  return o.lr * (o.min_lr_ratio + (1 - o.min_lr_ratio) * 0.5 * (1 + std::cos(M_PI * p)));
}

nlohmann::json options_json(const TrainOptions& o) {
  nlohmann::json res = nlohmann::json::array();
  for (auto& [n, h] : o.stft_resolutions) res.push_back({n, h});
  return {{"steps", o.steps},        {"batch", o.batch},       {"segment_frames", o.segment_frames},
          {"lr", o.lr},              {"warmup", o.warmup},     {"schedule", o.schedule},
          {"min_lr_ratio", o.min_lr_ratio}, {"beta1", o.beta1}, {"beta2", o.beta2},
          {"adam_eps", o.adam_eps},  {"weight_decay", o.weight_decay}, {"grad_clip", o.grad_clip},
          {"mel_weight", o.mel_weight}, {"stft_weight", o.stft_weight}, {"stft_resolutions", res},
          {"seed", o.seed},          {"teacher", o.teacher},   {"data", o.data},
          {"gan", o.gan},            {"pretrain_mel_steps", o.pretrain_mel_steps},
          {"mrd_weight", o.mrd_weight}, {"fm_weight", o.fm_weight}};
}

// Runs the model over whole utterances (no grad) and compares features.
double eval_mel_l1(Net& net, const std::vector<at::Tensor>& mels, const DiffMel& dm) {
  torch::NoGradGuard ng;
  double sum = 0;
  for (const auto& m : mels) {
    at::Tensor audio = net->forward(m.t().unsqueeze(0));
    at::Tensor back = dm.ex.compute(audio.squeeze(0).contiguous());
    const int64_t T = std::min(back.size(0), m.size(0));
    sum += (back.narrow(0, 0, T) - m.narrow(0, 0, T)).abs().mean().item<double>();
  }
  return mels.empty() ? 0.0 : sum / mels.size();
}

}  // namespace

double copy_synthesis_mel_l1(VocosVocoder& voc, const std::vector<std::string>& wavs) {
  mel::MelExtractor ex(voc.mel_format());
  double sum = 0;
  for (const auto& p : wavs) {
    at::Tensor a = load_audio(p, voc.mel_format().rate);
    at::Tensor m = ex.compute(a);
    at::Tensor out = voc.forward(m.t().unsqueeze(0)).squeeze(0).contiguous();
    at::Tensor back = ex.compute(out);
    const int64_t T = std::min(back.size(0), m.size(0));
    sum += (back.narrow(0, 0, T) - m.narrow(0, 0, T)).abs().mean().item<double>();
  }
  return wavs.empty() ? 0.0 : sum / wavs.size();
}

TrainResult train(const TrainOptions& opts_in, const std::function<void(const StepLog&)>& on_step) {
  TrainOptions o = opts_in;
  if (o.threads > 0) at::set_num_threads(o.threads);
  torch::manual_seed(o.seed);

  // Resume: the checkpoint's config, weights, moments and step.
  Checkpoint resume_ck;
  const bool resuming = !o.resume.empty();
  int64_t start_step = 0;
  int64_t disc_steps = 0;        // discriminator updates so far (its AdamW bias correction)
  bool resume_has_disc = false;  // the checkpoint holds discriminators (a GAN run)
  if (!o.resume.empty()) {
    std::string p = o.resume;
    if (fs::is_directory(p)) p = (fs::path(p) / "checkpoint.safetensors").string();
    resume_ck = Checkpoint::open(p);
    if (!resume_ck.has_metadata("train_state"))
      throw ModelError("'" + p + "' is not a vocos-train checkpoint (no train_state metadata)");
    nlohmann::json st = nlohmann::json::parse(resume_ck.metadata("train_state"));
    start_step = st.at("step").get<int64_t>();
    const uint64_t seed = st.at("seed").get<uint64_t>();
    if (seed != o.seed && !o.quiet)
      std::cerr << "vocos-train: resuming with the checkpoint's seed " << seed << " (not " << o.seed << ")\n";
    o.seed = seed;
    o.config = resolve_vocos_config(resume_ck);
    if (st.contains("discriminators")) {
      resume_has_disc = true;
      o.disc = DiscriminatorConfig::from_json(st.at("discriminators"));
      disc_steps = st.at("disc_steps").get<int64_t>();
    }
    if (resume_has_disc != o.gan && !o.quiet)
      std::cerr << "vocos-train: the checkpoint was " << (resume_has_disc ? "" : "not ")
                << "a GAN run; continuing " << (o.gan ? "with fresh discriminators" : "without them") << "\n";
  } else if (!o.init_model.empty()) {
    o.config = VocosVocoder::load(o.init_model)->config();
  }
  const VocosConfig& cfg = o.config;
  cfg.validate();
  if (o.batch < 1 || o.segment_frames < 2 || o.steps < 1)
    throw std::invalid_argument("batch >= 1, segment-frames >= 2 and steps >= 1 are needed");
  if (o.teacher != "" && o.teacher != "hift")
    throw std::invalid_argument("--teacher: only 'hift' is supported (got '" + o.teacher + "')");
  if (o.teacher == "hift" && o.teacher_model.empty())
    throw std::invalid_argument("--teacher hift needs --teacher-model PATH (s3gen.safetensors or a HiFT state dict)");
  if (o.pretrain_mel_steps < 0 || o.mrd_weight < 0 || o.fm_weight < 0)
    throw std::invalid_argument("pretrain-mel-steps, mrd-weight and fm-weight must not be negative");
  const int64_t stop = o.stop_at >= 0 ? std::min(o.stop_at, o.steps) : o.steps;

  Net net(cfg);
  if (resuming) {
    load_module(*net, resume_ck);
  } else if (!o.init_model.empty()) {
    // Whatever layout the inference library reads (safetensors, torch zip,
    // the published directory layout), by state-dict name.
    torch::NoGradGuard ng;
    auto sd = VocosVocoder::load(o.init_model)->state_dict();
    for (auto& kv : net->named_parameters()) kv.value().copy_(sd.at(kv.key()));
    for (auto& kv : net->named_buffers()) kv.value().copy_(sd.at(kv.key()));
  } else {
    init_weights(net, o.seed);
  }
  net->train();

  // Data.
  DiffMel diff_mel(cfg.mel);
  const auto& ex = diff_mel.ex;
  std::vector<Utterance> utts;
  int64_t skipped = 0;
  const int64_t seg_samples = cfg.output_samples(o.segment_frames);
  for (const auto& p : list_wavs(o.data)) {
    Utterance u;
    u.path = p;
    u.audio = load_audio(p, cfg.sample_rate);
    u.mel = ex.compute(u.audio);
    if (u.mel.size(0) < o.segment_frames || u.audio.size(0) < (u.mel.size(0) - o.segment_frames) * cfg.hop_length + seg_samples) {
      ++skipped;
      continue;
    }
    utts.push_back(std::move(u));
  }
  if (utts.empty())
    throw ModelError("no utterance in '" + o.data + "' is long enough for segments of " +
                     std::to_string(o.segment_frames) + " frames (" + std::to_string(seg_samples) + " samples)");
  for (auto& [n, h] : o.stft_resolutions)
    if (n / 2 >= seg_samples || n <= 0 || h <= 0)
      throw std::invalid_argument("STFT resolution (" + std::to_string(n) + ", " + std::to_string(h) +
                                  ") does not fit segments of " + std::to_string(seg_samples) + " samples");
  const StftLoss stft_loss(o.stft_resolutions);

  std::shared_ptr<hift::HiftModel> teacher;
  if (o.teacher == "hift") {
    teacher = hift::HiftModel::load(o.teacher_model);
    if (teacher->mel_format() != cfg.mel)
      throw ModelError("teacher '" + o.teacher_model + "' takes mels " + teacher->mel_format().to_string() +
                       " but the Vocos being trained takes " + cfg.mel.to_string());
    if (teacher->config().samples_per_frame() != cfg.hop_length)
      throw ModelError("teacher gives " + std::to_string(teacher->config().samples_per_frame()) +
                       " samples per frame, the Vocos hop is " + std::to_string(cfg.hop_length));
  }
  auto target_audio = [&](Utterance& u) -> const at::Tensor& {
    if (teacher && !u.teacher_done) {
      // The teacher's output for the whole utterance's mel, once (deterministic
      // source: no random phases or noise), so the target of a segment is what
      // the teacher says for exactly the features the student gets.
      torch::NoGradGuard ng;
      u.audio = teacher->inference(u.mel.t().unsqueeze(0), hift::SourceDraws::deterministic()).squeeze(0).contiguous();
      u.teacher_done = true;
    }
    return u.audio;
  };

  std::vector<at::Tensor> eval_mels;
  if (!o.eval_list.empty()) {
    auto files = list_wavs(o.eval_list);
    for (size_t i = 0; i < files.size() && static_cast<int64_t>(eval_mels.size()) < o.eval_files; ++i)
      eval_mels.push_back(ex.compute(load_audio(files[i], cfg.sample_rate)));
  }

  // Optimizers (AdamW, torch.optim.AdamW's update): the generator's, and with
  // --gan the discriminators' (same betas, decay and schedule, as the reference).
  AdamW opt(*net, o.beta1, o.beta2, o.adam_eps, o.weight_decay, resuming ? &resume_ck : nullptr);
  Discriminators disc{nullptr};
  std::unique_ptr<AdamW> disc_opt;
  if (o.gan) {
    o.disc.validate(seg_samples);
    disc = Discriminators(o.disc);
    if (resume_has_disc) {
      load_module(*disc, resume_ck);
    } else {
      disc->init(splitmix64(o.seed ^ 0xD15C0D15C0ull));  // the generator's init is the same as without --gan
      disc_steps = 0;
    }
    disc->train();
    disc_opt = std::make_unique<AdamW>(*disc, o.beta1, o.beta2, o.adam_eps, o.weight_decay,
                                       resume_has_disc ? &resume_ck : nullptr);
  }

  fs::create_directories(o.out_dir);
  const std::string ckpt_path = (fs::path(o.out_dir) / "checkpoint.safetensors").string();
  const std::string model_path = (fs::path(o.out_dir) / "model.safetensors").string();
  const std::string config_json = cfg.to_json().dump();
  TrainResult result;
  result.first_step = start_step;
  result.checkpoint_path = ckpt_path;

  auto save = [&](int64_t step_done, bool final) {
    auto t = model_tensors(net);
    std::map<std::string, std::string> meta{{"config", config_json}, {"format", "vocos"},
                                           {"trained_steps", std::to_string(step_done)}};
    atomic_write_safetensors(model_path, t, meta);
    opt.save_to(t);
    nlohmann::json st = {{"step", step_done}, {"seed", o.seed}, {"options", options_json(o)}};
    if (disc) {  // training-only state: the checkpoint has it, the model file does not
      for (const auto& kv : disc->named_parameters()) t[kv.key()] = kv.value().detach().clone();
      disc_opt->save_to(t);
      st["discriminators"] = o.disc.to_json();
      st["disc_steps"] = disc_steps;
    }
    meta["train_state"] = st.dump();
    atomic_write_safetensors(ckpt_path, t, meta);
    result.model_path = model_path;
    if (final && !o.output.empty() && o.output != model_path) {
      auto mt = model_tensors(net);
      fs::path op(o.output);
      if (op.has_parent_path()) fs::create_directories(op.parent_path());
      write_safetensors(o.output, mt, {{"config", config_json}, {"format", "vocos"},
                                       {"trained_steps", std::to_string(step_done)}});
      result.model_path = o.output;
    }
  };

  if (!o.quiet) {
    std::cerr << "vocos-train: " << cfg.to_string() << "\n  " << opt.numel() << " parameters, " << utts.size()
              << " utterances" << (skipped ? " (" + std::to_string(skipped) + " too short, skipped)" : "")
              << ", batch " << o.batch << " x " << o.segment_frames << " frames, steps " << start_step << " -> "
              << stop << " of " << o.steps << (teacher ? ", teacher hift" : "") << "\n";
    if (disc)
      std::cerr << "  GAN: discriminators " << o.disc.to_json().dump() << ", " << disc_opt->numel()
                << " parameters, from step " << o.pretrain_mel_steps << ", mrd weight " << o.mrd_weight
                << ", fm weight " << o.fm_weight << "\n";
  }

  const auto t0 = std::chrono::steady_clock::now();
  auto last = t0;
  int64_t last_step = start_step;
  for (int64_t step = start_step; step < stop; ++step) {
    // Batch of step `step`: from (seed, step) alone.
    std::mt19937_64 rng(splitmix64(o.seed * 0x100000001B3ull ^ splitmix64(static_cast<uint64_t>(step))));
    std::vector<at::Tensor> mels, auds;
    for (int64_t b = 0; b < o.batch; ++b) {
      Utterance& u = utts[rng() % utts.size()];
      const at::Tensor& a = target_audio(u);
      const int64_t max_start = u.mel.size(0) - o.segment_frames;
      const int64_t f0 = static_cast<int64_t>(rng() % static_cast<uint64_t>(max_start + 1));
      mels.push_back(u.mel.narrow(0, f0, o.segment_frames).t());
      // Output sample 0 of a segment sits at its frame 0 (sample f0*hop of the utterance).
      at::Tensor seg = a.narrow(0, std::min(f0 * cfg.hop_length, a.size(0) - seg_samples), seg_samples);
      auds.push_back(seg);
    }
    at::Tensor mel_b = at::stack(mels).contiguous();   // [B, M, T]
    at::Tensor aud_b = at::stack(auds).contiguous();   // [B, S]
    at::Tensor pred = net->forward(mel_b);
    StepLog lg;
    lg.step = step;
    lg.lr = lr_at(o, step);
    lg.gan = disc && step >= o.pretrain_mel_steps;
    if (lg.gan) {
      // The reference's order: the discriminators learn first, on what the
      // generator makes now; the generator then learns against them.
      DiscLoss dl = disc->discriminator_loss(aud_b, pred, o.mrd_weight);
      disc_opt->zero_grad();
      dl.total.backward();
      disc_opt->step(lg.lr, ++disc_steps);
      lg.d_loss = dl.total.item<double>();
      lg.d_mpd = dl.mpd.item<double>();
      lg.d_mrd = dl.mrd.item<double>();
    }
    at::Tensor mel_t;
    {
      torch::NoGradGuard ng;
      mel_t = diff_mel(aud_b);
    }
    at::Tensor mel_l = at::mean(at::abs(diff_mel(pred) - mel_t));
    auto [sc, mg] = stft_loss(pred, aud_b);
    at::Tensor loss = o.mel_weight * mel_l + o.stft_weight * (sc + mg);
    if (lg.gan) {
      GenAdvLoss gl = disc->generator_loss(aud_b, pred);
      loss = loss + gl.adv_mpd + o.mrd_weight * gl.adv_mrd + o.fm_weight * (gl.fm_mpd + o.mrd_weight * gl.fm_mrd);
      lg.adv_mpd = gl.adv_mpd.item<double>();
      lg.adv_mrd = gl.adv_mrd.item<double>();
      lg.fm_mpd = gl.fm_mpd.item<double>();
      lg.fm_mrd = gl.fm_mrd.item<double>();
    }
    opt.zero_grad();
    loss.backward();

    lg.loss = loss.item<double>();
    lg.mel = mel_l.item<double>();
    lg.sc = sc.item<double>();
    lg.mag = mg.item<double>();
    if (!std::isfinite(lg.loss) || !std::isfinite(lg.d_loss))
      throw ModelError("vocos-train: the " + std::string(std::isfinite(lg.loss) ? "discriminator" : "generator") +
                       " loss became " + std::to_string(std::isfinite(lg.loss) ? lg.d_loss : lg.loss) +
                       " at step " + std::to_string(step) + "; lower --lr or set --grad-clip");
    lg.grad_norm = opt.grad_norm();
    opt.step(lg.lr, step + 1, (o.grad_clip > 0 && lg.grad_norm > o.grad_clip) ? o.grad_clip / lg.grad_norm : 1.0);
    result.log.push_back(lg);
    if (on_step) on_step(lg);
    last_step = step + 1;

    const auto now = std::chrono::steady_clock::now();
    const bool ckpt_now = o.checkpoint_every > 0 && (step + 1) % o.checkpoint_every == 0;
    if (!o.quiet && (o.log_every > 0 && ((step + 1) % o.log_every == 0 || step + 1 == stop))) {
      const double dt = std::chrono::duration<double>(now - last).count();
      const double rate = dt > 0 ? (step + 1 - std::max(start_step, step + 1 - o.log_every)) / dt : 0;
      char buf[256];
      std::snprintf(buf, sizeof buf,
                    "step %lld/%lld loss %.4f mel %.4f sc %.4f mag %.4f gnorm %.3g lr %.3g | %.3g steps/s ETA %s",
                    (long long)(step + 1), (long long)o.steps, lg.loss, lg.mel, lg.sc, lg.mag, lg.grad_norm, lg.lr,
                    rate, fmt_duration(rate > 0 ? (stop - step - 1) / rate : -1).c_str());
      std::cerr << buf;
      if (lg.gan)
        std::fprintf(stderr, " | D %.4f (mpd %.4f mrd %.4f) G adv %.4f/%.4f fm %.4f/%.4f", lg.d_loss, lg.d_mpd,
                     lg.d_mrd, lg.adv_mpd, lg.adv_mrd, lg.fm_mpd, lg.fm_mrd);
      std::cerr << std::endl;
      last = now;
    }
    if (ckpt_now && step + 1 < stop) {
      save(step + 1, false);
      if (!eval_mels.empty()) {
        const double e = eval_mel_l1(net, eval_mels, diff_mel);
        result.eval.emplace_back(step + 1, e);
        if (!o.quiet) std::cerr << "eval step " << step + 1 << ": copy-synthesis log-mel L1 " << e << std::endl;
      }
      if (!o.quiet) std::cerr << "checkpoint step " << step + 1 << " -> " << ckpt_path << std::endl;
    }
  }
  save(last_step, last_step >= o.steps);
  if (!eval_mels.empty()) {
    const double e = eval_mel_l1(net, eval_mels, diff_mel);
    result.eval.emplace_back(last_step, e);
    if (!o.quiet) std::cerr << "eval step " << last_step << ": copy-synthesis log-mel L1 " << e << std::endl;
  }
  result.end_step = last_step;
  result.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  if (!o.quiet)
    std::cerr << "vocos-train: step " << last_step << " of " << o.steps << ", model " << result.model_path
              << ", checkpoint " << ckpt_path << std::endl;
  return result;
}

}  // namespace chatterbox::vocos_train
