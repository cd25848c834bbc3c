// Voice front end at full size with random weights (the real layouts of
// fixtures/s3gen/keys): cloning a reference (ms per stage of
// prepare_conditionals: resample, tokenizer, CAMPPlus, VoiceEncoder, mel) and
// the S3 tokenizer's real-time factor whole and streamed (S3TokenizerStream,
// the s3tokenizer element's engine). Writes the weights and the reference it
// used so bench/reference_voice.py times upstream's PyTorch on the same ones.
//   bench_voice --keys DIR --ref WAV --work DIR --json OUT [--seconds 10] [--reps 3] [--threads 2]
#include "elements/mel/features/mel_extractor.h"
#include "elements/voice/audio/audio_file.h"
#include "elements/voice/audio/librosa_mel.h"
#include "elements/voice/audio/resample.h"
#include "elements/voice/conditionals/conditionals.h"
#include "elements/voice/s3tokenizer/s3tokenizer_stream.h"
#include "gst-plugins/core/checkpoint.h"
#include "gst-plugins/core/compute_threads.h"
#include "gst-plugins/core/mel_format.h"
#include "gst-plugins/core/torch_f32.h"

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <fstream>
#include <functional>
#include <iostream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

using namespace chatterbox;
using namespace chatterbox::voice;
using Clock = std::chrono::steady_clock;

namespace {

std::map<std::string, std::string> parse(int argc, char** argv) {
  std::map<std::string, std::string> kv;
  for (int i = 1; i + 1 < argc; i += 2) kv[std::string(argv[i]).substr(2)] = argv[i + 1];
  return kv;
}

// Random weights of sensible scale for every row of a key list with `prefix`
// (kept in the name): matrices ~ N(0, 1/fan_in), norm scales ~ 1, biases
// small, BatchNorm variances positive, counters zero. The tokenizer's
// _mel_filters/window are left out, as in the real checkpoint.
std::map<std::string, at::Tensor> synth(const std::string& tsv, const std::string& prefix, uint64_t seed) {
  std::ifstream f(tsv);
  if (!f) throw std::runtime_error("cannot read " + tsv);
  std::string line;
  std::getline(f, line);
  at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(seed);
  std::map<std::string, at::Tensor> out;
  while (std::getline(f, line)) {
    std::istringstream ss(line);
    std::string name, dtype, shape;
    std::getline(ss, name, '\t');
    std::getline(ss, dtype, '\t');
    std::getline(ss, shape, '\t');
    if (name.compare(0, prefix.size(), prefix) != 0) continue;
    if (name == "tokenizer._mel_filters" || name == "tokenizer.window") continue;
    for (char& c : shape)
      if (c == '[' || c == ']' || c == ',') c = ' ';
    std::vector<int64_t> dims;
    std::istringstream ds(shape);
    for (int64_t d; ds >> d;) dims.push_back(d);
    if (dtype == "I64") {
      out[name] = at::zeros(dims, at::kLong);
      continue;
    }
    at::Tensor t = at::randn(dims, gen, at::kFloat);
    if (dims.size() >= 2) {
      int64_t fan_in = 1;
      for (size_t i = 1; i < dims.size(); ++i) fan_in *= dims[i];
      t = t / std::sqrt(static_cast<double>(fan_in));
    } else if (name.find("running_var") != std::string::npos) {
      t = 1.0 + 0.1 * t.abs();
    } else if (name.size() > 7 && name.compare(name.size() - 7, 7, ".weight") == 0) {
      t = 1.0 + 0.05 * t;
    } else {
      t = 0.02 * t;
    }
    out[name] = t.contiguous();
  }
  if (out.empty()) throw std::runtime_error("no rows with prefix '" + prefix + "' in " + tsv);
  return out;
}

struct Timing {
  std::vector<double> ms;
  double median() const {
    std::vector<double> s = ms;
    std::sort(s.begin(), s.end());
    return s.empty() ? 0.0 : s[s.size() / 2];
  }
};

Timing time_it(int reps, const std::function<void()>& fn) {
  fn();  // warm-up (pools, caches, one-time tables)
  Timing t;
  for (int i = 0; i < reps; ++i) {
    const auto a = Clock::now();
    fn();
    t.ms.push_back(std::chrono::duration<double, std::milli>(Clock::now() - a).count());
  }
  return t;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    auto kv = parse(argc, argv);
    const std::string keys = kv.at("keys"), work = kv.at("work"), json_out = kv.at("json"), ref_path = kv.at("ref");
    const double seconds = kv.count("seconds") ? std::stod(kv["seconds"]) : 10.0;
    const int reps = kv.count("reps") ? std::stoi(kv["reps"]) : 3;
    const int threads = kv.count("threads") ? std::stoi(kv["threads"]) : 2;
    set_compute_threads(threads);

    // Weights: s3gen.safetensors's tokenizer + speaker encoder, ve.safetensors.
    const std::string s3gen_path = work + "/s3gen_voice.safetensors", ve_path = work + "/ve.safetensors";
    auto a = Clock::now();
    {
      auto s3 = synth(keys + "/s3gen_keys.tsv", "tokenizer.", 11);
      auto sp = synth(keys + "/s3gen_keys.tsv", "speaker_encoder.", 12);
      s3.insert(sp.begin(), sp.end());
      write_safetensors(s3gen_path, s3, {{"note", "random weights, real layout (bench_voice)"}});
      write_safetensors(ve_path, synth(keys + "/ve_keys.tsv", "", 13), {{"note", "random weights (bench_voice)"}});
    }
    const double synth_ms = std::chrono::duration<double, std::milli>(Clock::now() - a).count();
    const S3Tokenizer tok = S3Tokenizer::load(s3gen_path);
    const CAMPPlus campplus = CAMPPlus::load(s3gen_path);
    const VoiceEncoder ve = VoiceEncoder::load(ve_path);

    // The reference: the file at 24 kHz, looped to `seconds`.
    at::Tensor ref = load_audio(ref_path, 24000);
    const int64_t n24 = static_cast<int64_t>(seconds * 24000);
    ref = ref.repeat({(n24 + ref.size(0) - 1) / ref.size(0)}).slice(0, 0, n24).contiguous();
    write_safetensors(work + "/ref.safetensors", {{"wave_24k", ref}});

    const MelFormat mf = MelFormat::s3gen();
    const std::vector<float> w = f32::hann_window(mf.win_length, true);
    const mel::MelExtractor s3mel = mel::MelExtractor(mf).with_tables(
        librosa_mel_f32(mf.rate, mf.n_fft, mf.n_mels, mf.f_min, mf.f_max),
        at::from_blob(const_cast<float*>(w.data()), {mf.win_length}, at::kFloat).clone());

    // Stages of prepare_conditionals (original variant) on the 10 s reference.
    at::Tensor ref16_soxr = resample_soxr_hq(ref, 24000, 16000);
    at::Tensor ref16_sinc = resample_sinc(ref, 24000, 16000);
    nlohmann::json stages;
    auto row = [&](const std::string& k, const Timing& t) {
      stages[k] = {{"median_ms", t.median()}, {"ms", t.ms}};
      std::cerr << "  " << k << ": " << t.median() << " ms\n";
    };
    row("resample_soxr_24k_16k", time_it(reps, [&] { resample_soxr_hq(ref, 24000, 16000); }));
    row("resample_sinc_24k_16k", time_it(reps, [&] { resample_sinc(ref, 24000, 16000); }));
    row("tokenizer_10s", time_it(reps, [&] { tok.tokenize(ref16_sinc); }));
    row("tokenizer_t3_prompt_6s", time_it(reps, [&] {
          tok.tokenize(ref16_soxr.slice(0, 0, 6 * 16000), 150);
        }));
    row("campplus", time_it(reps, [&] { campplus.embed(ref16_sinc); }));
    row("voice_encoder", time_it(reps, [&] { ve.embed(ref16_soxr); }));
    row("s3gen_mel", time_it(reps, [&] { s3mel.compute(ref); }));
    const VoiceCloner cloner{S3Tokenizer::load(s3gen_path), CAMPPlus::load(s3gen_path), VoiceEncoder::load(ve_path)};
    row("prepare_conditionals_total", time_it(reps, [&] { cloner.prepare_conditionals(ref); }));

    // The tokenizer streamed: 20 ms pieces through S3TokenizerStream.
    const at::Tensor wave16 = ref16_soxr.contiguous();
    const int64_t n16 = wave16.size(0);
    nlohmann::json rtf;
    const std::vector<int64_t> whole_tokens = [&] {
      at::Tensor t = tok.tokenize(wave16).tokens.contiguous();
      return std::vector<int64_t>(t.data_ptr<int64_t>(), t.data_ptr<int64_t>() + t.numel());
    }();
    {
      const Timing t = time_it(reps, [&] { tok.tokenize(wave16); });
      rtf["whole"] = {{"median_ms", t.median()}, {"rtf", t.median() / 1000.0 / seconds}};
      std::cerr << "  tokenizer whole: RTF " << t.median() / 1000.0 / seconds << "\n";
    }
    struct Setting {
      int64_t chunk, context, lookahead;
    };
    for (Setting s : {Setting{25, 100, 25}, Setting{50, 100, 25}, Setting{10, 50, 10}}) {
      S3TokenizerStreamOptions o;
      o.chunk_tokens = s.chunk;
      o.context_tokens = s.context;
      o.lookahead_tokens = s.lookahead;
      std::vector<int64_t> got;
      auto run = [&] {
        S3TokenizerStream st(tok, o);
        got.clear();
        const float* p = wave16.data_ptr<float>();
        for (int64_t i = 0; i < n16; i += 320) {
          auto r = st.push(p + i, std::min<int64_t>(320, n16 - i));
          got.insert(got.end(), r.begin(), r.end());
        }
        auto r = st.finish();
        got.insert(got.end(), r.begin(), r.end());
      };
      const Timing t = time_it(reps, run);
      size_t same = 0;
      for (size_t i = 0; i < std::min(got.size(), whole_tokens.size()); ++i) same += got[i] == whole_tokens[i];
      const std::string key = "chunk" + std::to_string(s.chunk) + "_context" + std::to_string(s.context) +
                              "_lookahead" + std::to_string(s.lookahead);
      rtf[key] = {{"median_ms", t.median()},
                  {"rtf", t.median() / 1000.0 / seconds},
                  {"latency_ms", o.latency_samples() / 16.0},
                  {"agreement_with_whole_random_weights", static_cast<double>(same) / whole_tokens.size()}};
      std::cerr << "  tokenizer " << key << ": RTF " << t.median() / 1000.0 / seconds << "\n";
    }

    nlohmann::json j;
    j["threads"] = threads;
    j["reps"] = reps;
    j["reference_seconds"] = seconds;
    j["synth_weights_ms"] = synth_ms;
    j["tokenizer_config"] = {{"width", tok.config().n_state}, {"layers", tok.config().n_layer},
                             {"heads", tok.config().n_head}};
    j["campplus_config"] = {{"growth_rate", campplus.config().growth_rate},
                            {"init_channels", campplus.config().init_channels}};
    j["stages"] = stages;
    {
      at::Tensor t = tok.tokenize(ref16_sinc).tokens.contiguous();
      j["tokens_10s"] = std::vector<int64_t>(t.data_ptr<int64_t>(), t.data_ptr<int64_t>() + t.numel());
    }
    j["tokenizer_rtf"] = rtf;
    j["weights"] = {{"s3gen", s3gen_path}, {"ve", ve_path}, {"ref", work + "/ref.safetensors"}};
    std::ofstream(json_out) << j.dump(2) << "\n";
  } catch (const std::exception& e) {
    std::cerr << "bench_voice: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
