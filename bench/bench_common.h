// Shared pieces of the benchmark programs (bench_api, bench_element): the
// three workloads, their random-weight model files, realistic mel inputs,
// timing and memory probes, the tiny option parser. Header-only on purpose:
// each program is one translation unit.
#pragma once

#include "elements/mel/features/mel_extractor.h"
#include "elements/vocoder/hift/hift.h"
#include "elements/vocoder/vocos/vocos.h"
#include "gst-plugins/core/checkpoint.h"

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <dlfcn.h>
#include <nlohmann/json.hpp>
#include <sys/resource.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <map>
#include <stdexcept>
#include <string>
#include <vector>

namespace bench {

using Clock = std::chrono::steady_clock;
inline double ms_since(Clock::time_point a) {
  return std::chrono::duration<double, std::milli>(Clock::now() - a).count();
}

// --opt value pairs; flags without value are not used by these programs.
struct Args {
  std::map<std::string, std::string> kv;
  Args(int argc, char** argv, int first) {
    for (int i = first; i < argc; ++i) {
      std::string k = argv[i];
      if (k.rfind("--", 0) != 0 || i + 1 >= argc) throw std::runtime_error("bad argument '" + k + "' (want --key value)");
      kv[k.substr(2)] = argv[++i];
    }
  }
  std::string str(const std::string& k, const std::string& def) const {
    auto it = kv.find(k);
    return it == kv.end() ? def : it->second;
  }
  double num(const std::string& k, double def) const {
    auto it = kv.find(k);
    return it == kv.end() ? def : std::atof(it->second.c_str());
  }
};

// The three workloads at full size.
//  vocos-s3gen: Vocos trained on S3Gen mels (80 mels, hop 480, n_fft 1920, "same").
//  vocos-24k:   charactr/vocos-mel-24khz layout (100 mels, hop 256, n_fft 1024, "center").
//  hift:        Chatterbox's HiFT (S3Token2Wav.mel2wav, base 512).
inline bool is_vocos(const std::string& w) { return w == "vocos-s3gen" || w == "vocos-24k"; }
inline chatterbox::VocosConfig vocos_config(const std::string& w) {
  if (w == "vocos-s3gen") return chatterbox::VocosConfig::s3gen(512, 1536, 8);
  if (w == "vocos-24k") return chatterbox::VocosConfig::mel_24khz();
  throw std::runtime_error("unknown Vocos workload '" + w + "' (vocos-s3gen, vocos-24k)");
}
inline chatterbox::MelFormat mel_format(const std::string& w) {
  if (is_vocos(w)) return vocos_config(w).mel;
  if (w == "hift") return chatterbox::MelFormat::s3gen();
  throw std::runtime_error("unknown workload '" + w + "' (vocos-s3gen, vocos-24k, hift)");
}
inline std::string model_file(const std::string& dir, const std::string& w) { return dir + "/" + w + ".safetensors"; }

// A speech-like test signal: voiced stretches (9 harmonics of an F0 gliding
// between 90 and 220 Hz with vibrato, a formant-ish spectral tilt) separated
// by short noise bursts and pauses, so the mels have both voiced and unvoiced
// frames (HiFT's source module switches on F0). Deterministic.
inline at::Tensor synthetic_audio(double seconds, int sr) {
  const int64_t n = static_cast<int64_t>(std::llround(seconds * sr));
  std::vector<float> x(n);
  uint64_t s = 0x9E3779B97F4A7C15ull;
  auto uni = [&] {  // xorshift64*
    s ^= s >> 12, s ^= s << 25, s ^= s >> 27;
    return ((s * 2685821657736338717ull) >> 11) * (1.0 / 9007199254740992.0);
  };
  double phase = 0;
  for (int64_t i = 0; i < n; ++i) {
    const double t = static_cast<double>(i) / sr;
    const double seg = std::fmod(t, 1.3);  // 1.0 s voiced, 0.15 s noise, 0.15 s pause
    const double f0 = 155 + 65 * std::sin(2 * M_PI * 0.37 * t) + 4 * std::sin(2 * M_PI * 5.5 * t);
    phase += 2 * M_PI * f0 / sr;
    double v = 0;
    if (seg < 1.0) {
      for (int h = 1; h <= 9; ++h) v += std::sin(h * phase) / (h * (1 + 0.3 * h));
      v *= 0.25 * std::sin(M_PI * seg);  // syllable envelope
    } else if (seg < 1.15) {
      v = 0.05 * (2 * uni() - 1);
    }
    x[i] = static_cast<float>(v + 1e-4 * (2 * uni() - 1));
  }
  return at::from_blob(x.data(), {n}, at::kFloat).clone();
}

// Log-mel frames [T, n_mels] of `seconds` of the test signal in the
// workload's own feature layout (our MelExtractor, i.e. what the mel element
// would send).
inline at::Tensor mel_input(const std::string& w, double seconds) {
  chatterbox::MelFormat f = mel_format(w);
  chatterbox::mel::MelExtractor ex(f);
  return ex.compute(synthetic_audio(seconds, f.rate)).contiguous();
}

// Peak resident set size of this process (kB): VmHWM, else ru_maxrss.
inline long peak_rss_kb() {
  std::ifstream st("/proc/self/status");
  std::string line;
  while (std::getline(st, line))
    if (line.rfind("VmHWM:", 0) == 0) return std::atol(line.c_str() + 6);
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return u.ru_maxrss;
}

// Threads for a workload, process-wide. Debian's LibTorch runs GEMMs in
// OpenBLAS's own pthread pool and elementwise ops in libgomp's; "N threads"
// here means both pools sized N (run.sh also exports OPENBLAS_NUM_THREADS and
// OMP_NUM_THREADS = N), so a 1-thread figure really uses one core. Vocos
// additionally gets VocosLoadOptions.threads = N (its own policy: BLAS pool N,
// its elementwise ops on the calling thread); HiFT's kernels follow the
// OpenBLAS pool size (compute_threads()), as in hiftdec.
inline void set_threads(int n) {
  if (n <= 0) return;
  at::set_num_threads(n);
  if (auto f = reinterpret_cast<void (*)(int)>(dlsym(RTLD_DEFAULT, "openblas_set_num_threads"))) f(n);
}

inline bool cuda_built() {
#ifdef CHATTERBOX_WITH_CUDA
  return true;
#else
  return false;
#endif
}

// ---- random-weight model files --------------------------------------------

// HiFTGenerator state dict (weight norm folded: plain `weight`), names as in
// resemble-ai/chatterbox hifigan.py without the `mel2wav.` prefix. HiftModel
// has no state_dict(), so the names and shapes are spelled out here; a wrong
// one makes HiftModel::load fail naming the tensor, so this cannot drift
// silently. Fan-in scaled normal weights keep activations O(1).
inline std::map<std::string, at::Tensor> hift_random_state(const chatterbox::hift::HiftConfig& c, uint64_t seed) {
  auto gen = at::make_generator<at::CPUGeneratorImpl>(seed);
  std::map<std::string, at::Tensor> sd;
  auto w = [&](const std::string& name, std::vector<int64_t> shape, int64_t fan) {
    sd[name] = at::empty(shape, at::kFloat).normal_(0.0, 1.0 / std::sqrt(static_cast<double>(fan)), gen);
  };
  auto b = [&](const std::string& name, int64_t n) { sd[name] = at::empty({n}, at::kFloat).normal_(0.0, 0.01, gen); };
  auto conv = [&](const std::string& p, int64_t out, int64_t in, int64_t k) {
    w(p + ".weight", {out, in, k}, in * k);
    b(p + ".bias", out);
  };
  auto resblock = [&](const std::string& p, int64_t ch, int k, const std::vector<int>& dil) {
    for (size_t i = 0; i < dil.size(); ++i) {
      conv(p + ".convs1." + std::to_string(i), ch, ch, k);
      conv(p + ".convs2." + std::to_string(i), ch, ch, k);
      sd[p + ".activations1." + std::to_string(i) + ".alpha"] = at::ones({ch});
      sd[p + ".activations2." + std::to_string(i) + ".alpha"] = at::ones({ch});
    }
  };
  const int n_up = static_cast<int>(c.upsample_rates.size());
  const int64_t nfft2 = c.istft_n_fft + 2;
  conv("conv_pre", c.base_channels, c.in_channels, 7);
  for (int i = 0; i < n_up; ++i) {
    const int64_t cin = c.base_channels >> i, cout = c.base_channels >> (i + 1);
    const int k = c.upsample_kernel_sizes[i];
    w("ups." + std::to_string(i) + ".weight", {cin, cout, k}, cin * k / c.upsample_rates[i]);
    b("ups." + std::to_string(i) + ".bias", cout);
  }
  // source_downs[i] stride: cumprod([1] + upsample_rates[::-1][:-1]) reversed.
  std::vector<int> rates{1};
  for (int i = n_up - 1; i >= 1; --i) rates.push_back(c.upsample_rates[i]);
  std::vector<int> cum(n_up);
  for (int i = 0, p = 1; i < n_up; ++i) cum[i] = (p *= rates[i]);
  for (int i = 0; i < n_up; ++i) {
    const int u = cum[n_up - 1 - i];
    const int64_t ch = c.base_channels >> (i + 1);
    conv("source_downs." + std::to_string(i), ch, nfft2, u == 1 ? 1 : 2 * u);
    resblock("source_resblocks." + std::to_string(i), ch, c.source_resblock_kernel_sizes[i],
             c.source_resblock_dilation_sizes[i]);
  }
  for (int i = 0; i < n_up; ++i)
    for (size_t j = 0; j < c.resblock_kernel_sizes.size(); ++j)
      resblock("resblocks." + std::to_string(i * c.resblock_kernel_sizes.size() + j), c.base_channels >> (i + 1),
               c.resblock_kernel_sizes[j], c.resblock_dilation_sizes[j]);
  // conv_post gives log-magnitudes: small weights keep exp() near 1, so the
  // audio stays inside +-audio_limit instead of clipping everywhere (a
  // clipped output would hide the streaming error the bench measures).
  conv("conv_post", nfft2, c.base_channels >> n_up, 7);
  sd["conv_post.weight"].mul_(0.1);
  for (int k = 0; k < 5; ++k)
    conv("f0_predictor.condnet." + std::to_string(2 * k), c.f0_cond_channels,
         k == 0 ? c.f0_in_channels : c.f0_cond_channels, 3);
  w("f0_predictor.classifier.weight", {c.f0_num_class, c.f0_cond_channels}, c.f0_cond_channels);
  b("f0_predictor.classifier.bias", c.f0_num_class);
  w("m_source.l_linear.weight", {1, c.n_sines()}, c.n_sines());
  b("m_source.l_linear.bias", 1);
  return sd;
}

// Writes the three model files (same seed: same weights every run).
inline void write_models(const std::string& dir) {
  for (const char* w : {"vocos-s3gen", "vocos-24k"}) {
    auto voc = chatterbox::VocosVocoder::random(vocos_config(w), 1234);
    chatterbox::write_safetensors(model_file(dir, w), voc->state_dict(),
                                  {{"config", voc->config().to_json().dump()}});
  }
  const auto hc = chatterbox::hift::HiftConfig::chatterbox();
  chatterbox::write_safetensors(model_file(dir, "hift"), hift_random_state(hc, 1234),
                                {{"config", hc.to_json().dump()}});
}

inline std::unique_ptr<chatterbox::StreamingVocoder> load_vocoder(const std::string& dir, const std::string& w,
                                                                  int threads, const std::string& device = "cpu") {
  if (is_vocos(w)) {
    chatterbox::VocosLoadOptions o;
    o.threads = threads;
    o.device = device;
    return chatterbox::VocosVocoder::load(model_file(dir, w), o);
  }
  if (device != "cpu") throw std::runtime_error("HiFT runs on the CPU only");
  chatterbox::hift::HiftVocoderOptions o;
  o.draws = chatterbox::hift::SourceDraws::deterministic();
  return std::make_unique<chatterbox::hift::HiftVocoder>(chatterbox::hift::HiftModel::load(model_file(dir, w)), o);
}

inline double median(std::vector<double> v) {
  if (v.empty()) return NAN;
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

}  // namespace bench
