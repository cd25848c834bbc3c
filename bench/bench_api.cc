// The vocoders timed through the model API directly (no GStreamer).
// Each call prints one JSON object on stdout; bench/run_bench.py runs every
// workload in its own child process (so peak memory is per model).
//
//   bench_api models --dir D
//       writes D/{vocos-s3gen,vocos-24k,hift}.safetensors (seeded random
//       weights, "config" metadata) for this program and the elements.
//   bench_api speed --model W --dir D --seconds S --threads N --reps R
//                   [--warmup K] [--stream-chunk C] [--stream-reps R2] [--device cpu|cuda]
//       whole-utterance forward() R times after K warm-ups, then the
//       streaming path (feed() in C-frame chunks + drain(), the element's
//       call pattern) R2 times; peak RSS of the process.
//   bench_api error --model W --dir D --seconds S --chunk C --lookaheads 0,1,2,4,8,-1
//       streamed (C-frame chunks) vs whole-utterance output at each
//       lookahead (-1: the model's default, exact): rel-L2 and max abs.
//       HiFT runs in deterministic mode (no random source draws).
//   bench_api dump --model W --dir D --seconds S --out F
//       F = {"mel": [1, n_mels, T], "audio": [1, samples]} (whole forward):
//       reference_*.py --check F shows the Python reference computes the same.
//   bench_api flow --seconds S --prompt-seconds P ... (bench/bench_flow.h)
//   bench_api window --seconds S --prompt-seconds P --settings L:C,... (bench/bench_window.h)
//       the S3Gen flow (tokens -> mel), full size, whole and streamed.
#include "bench/bench_common.h"
#include "bench/bench_flow.h"
#include "bench/bench_window.h"

#include <ATen/Context.h>
#include <c10/core/InferenceMode.h>

#include <iostream>
#include <optional>
#include <sstream>

using nlohmann::json;
using namespace bench;

namespace {

// mel [T, n_mels] -> [1, n_mels, T] for forward().
at::Tensor batch_of(const at::Tensor& mel_tc) { return mel_tc.t().unsqueeze(0).contiguous(); }

at::Tensor stream(chatterbox::StreamingVocoder& v, const at::Tensor& mel_tc, int64_t chunk) {
  v.reset();
  std::vector<at::Tensor> parts;
  const int64_t T = mel_tc.size(0);
  for (int64_t p = 0; p < T; p += chunk) parts.push_back(v.feed(mel_tc.narrow(0, p, std::min(chunk, T - p))));
  parts.push_back(v.drain());
  return at::cat(parts);
}

int cmd_models(const Args& a) {
  const std::string dir = a.str("dir", "");
  if (dir.empty()) throw std::runtime_error("models: --dir is required");
  auto t0 = Clock::now();
  write_models(dir);
  json out{{"dir", dir}, {"ms", ms_since(t0)}};
  for (const char* w : {"vocos-s3gen", "vocos-24k", "hift"}) {
    std::ifstream f(model_file(dir, w), std::ios::binary | std::ios::ate);
    out["bytes"][w] = static_cast<long long>(f.tellg());
  }
  std::cout << out.dump() << "\n";
  return 0;
}

int cmd_speed(const Args& a) {
  const std::string w = a.str("model", ""), dir = a.str("dir", ""), device = a.str("device", "cpu");
  const double seconds = a.num("seconds", 10);
  const int threads = static_cast<int>(a.num("threads", 2)), reps = static_cast<int>(a.num("reps", 5));
  const int warmup = static_cast<int>(a.num("warmup", 1));
  const int64_t chunk = static_cast<int64_t>(a.num("stream-chunk", 10));
  const int stream_reps = static_cast<int>(a.num("stream-reps", reps));
  json out{{"model", w}, {"seconds", seconds}, {"threads", threads}, {"device", device}};
  if (device != "cpu" && !(cuda_built() && at::hasCUDA())) {
    out["skipped"] = cuda_built() ? "no CUDA device visible" : "library built without CUDA";
    std::cout << out.dump() << "\n";
    return 0;
  }
  set_threads(threads);
  // The elements call the model without an InferenceMode guard; time the
  // API the same way unless asked (--inference-mode 1).
  std::optional<c10::InferenceMode> guard;
  if (a.num("inference-mode", 0) != 0) guard.emplace();
  const long rss0 = peak_rss_kb();
  auto t0 = Clock::now();
  auto voc = load_vocoder(dir, w, threads, device);
  out["load_ms"] = ms_since(t0);
  out["rss_after_load_kb"] = peak_rss_kb();
  out["rss_before_load_kb"] = rss0;
  at::Tensor mel_tc = mel_input(w, seconds);
  at::Tensor mel = batch_of(mel_tc);
  if (device != "cpu") mel = mel.to(at::Device(device));
  const int64_t T = mel_tc.size(0);
  at::Tensor y;
  auto sync = [&] {
    if (device != "cpu") (void)y.sum().item<float>();
  };
  // Warm-up (allocator, thread pools, packed weights) on at most 10 s of the
  // input: a 60 s warm-up would cost a full extra run for nothing.
  const int64_t warm_frames = std::min<int64_t>(T, static_cast<int64_t>(10.0 * T / seconds) + 1);
  for (int i = 0; i < warmup; ++i) y = voc->forward(mel.narrow(2, 0, warm_frames)), sync();
  std::vector<double> whole;
  for (int i = 0; i < reps; ++i) {
    auto t = Clock::now();
    y = voc->forward(mel);
    sync();
    whole.push_back(ms_since(t));
  }
  const int64_t samples = y.size(-1);
  const int sr = mel_format(w).rate;
  std::vector<double> streamed;
  if (device == "cpu") {
    for (int i = 0; i < stream_reps; ++i) {
      auto t = Clock::now();
      at::Tensor s = stream(*voc, mel_tc, chunk);
      streamed.push_back(ms_since(t));
    }
  }
  out["frames"] = T;
  out["samples"] = samples;
  out["audio_s"] = static_cast<double>(samples) / sr;
  out["whole_ms"] = whole;
  out["stream_ms"] = streamed;
  out["stream_chunk"] = chunk;
  out["at_threads"] = at::get_num_threads();
  out["peak_rss_kb"] = peak_rss_kb();
  std::cout << out.dump() << "\n";
  return 0;
}

std::vector<int64_t> parse_list(const std::string& s) {
  std::vector<int64_t> v;
  std::stringstream ss(s);
  std::string item;
  while (std::getline(ss, item, ',')) v.push_back(std::atoll(item.c_str()));
  return v;
}

int cmd_error(const Args& a) {
  const std::string w = a.str("model", ""), dir = a.str("dir", "");
  const double seconds = a.num("seconds", 10);
  const int64_t chunk = static_cast<int64_t>(a.num("chunk", 10));
  const int threads = static_cast<int>(a.num("threads", 2));
  set_threads(threads);
  c10::InferenceMode guard;
  auto voc = load_vocoder(dir, w, threads);
  at::Tensor mel_tc = mel_input(w, seconds);
  at::Tensor whole = voc->forward(batch_of(mel_tc)).reshape({-1});
  json rows = json::array();
  for (int64_t la : parse_list(a.str("lookaheads", "0,1,2,4,8,-1"))) {
    const int64_t used = la < 0 ? voc->default_lookahead_frames() : la;
    voc->set_lookahead_frames(used);
    at::Tensor s = stream(*voc, mel_tc, chunk);
    json r{{"lookahead", la}, {"lookahead_frames", used}, {"samples_stream", s.size(0)},
           {"samples_whole", whole.size(0)}};
    const int64_t n = std::min(s.size(0), whole.size(0));
    at::Tensor d = (s.narrow(0, 0, n) - whole.narrow(0, 0, n)).to(at::kDouble);
    r["max_abs"] = d.abs().max().item<double>();
    r["rel_l2"] = (d.norm() / whole.narrow(0, 0, n).to(at::kDouble).norm()).item<double>();
    rows.push_back(r);
  }
  json out{{"model", w},
           {"seconds", seconds},
           {"chunk", chunk},
           {"default_lookahead", voc->default_lookahead_frames()},
           {"max_abs_whole", whole.abs().max().item<double>()},
           {"rows", rows}};
  std::cout << out.dump() << "\n";
  return 0;
}

int cmd_dump(const Args& a) {
  const std::string w = a.str("model", ""), dir = a.str("dir", ""), path = a.str("out", "");
  if (path.empty()) throw std::runtime_error("dump: --out is required");
  set_threads(static_cast<int>(a.num("threads", 2)));
  c10::InferenceMode guard;
  auto voc = load_vocoder(dir, w, 0);
  at::Tensor mel = batch_of(mel_input(w, a.num("seconds", 1)));
  at::Tensor y = voc->forward(mel).reshape({1, -1}).contiguous();
  chatterbox::write_safetensors(path, {{"mel", mel}, {"audio", y}});
  std::cout << json{{"model", w}, {"out", path}, {"samples", y.size(1)}}.dump() << "\n";
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::cerr << "usage: bench_api models|speed|error --key value ... (see the top of bench/bench_api.cc)\n";
    return 2;
  }
  try {
    const std::string cmd = argv[1];
    Args a(argc, argv, 2);
    if (cmd == "models") return cmd_models(a);
    if (cmd == "speed") return cmd_speed(a);
    if (cmd == "error") return cmd_error(a);
    if (cmd == "dump") return cmd_dump(a);
    if (cmd == "flow") return bench::cmd_flow(a);
    if (cmd == "window") return bench::cmd_window(a);
    std::cerr << "unknown command '" << cmd << "'\n";
    return 2;
  } catch (const std::exception& e) {
    std::cerr << "bench_api: " << e.what() << "\n";
    return 1;
  }
}
