// chatterbox-griffinlim: copy-synthesis with no trained model, the floor of
// the quality report: wav -> S3Gen log-mel (the same features melspec gives
// the vocoders) -> Griffin-Lim (elements/mel/features/griffin_lim.h) -> wav.
#include "bench/quality/resample.h"
#include "elements/mel/features/griffin_lim.h"
#include "elements/vocoder/vocos/train/vocos_trainer.h"  // read_wav, write_wav

#include <ATen/ATen.h>

#include <iostream>
#include <string>
#include <vector>

using namespace chatterbox;

namespace {
const char* kUsage = R"(usage: chatterbox-griffinlim [options] IN.wav OUT.wav

Computes the S3Gen log-mel of IN (mono; resampled to 24 kHz when needed) and
turns it back into 24 kHz audio with Griffin-Lim: non-negative least-squares
inversion of the mel filterbank, then phase reconstruction.
  --iterations N   Griffin-Lim iterations (default 32)
  --momentum A     fast Griffin-Lim momentum (default 0.99; 0 = the original algorithm)
  --seed S         seed of the random initial phases (default 0)
  --zero-phase     start from zero phase instead of random phases
OUT is 16-bit PCM, T*480 samples for the T mel frames of IN.
)";
}  // namespace

int main(int argc, char** argv) {
  // Small tensors: on a busy machine a second intra-op thread costs more in
  // OpenMP hand-offs than it saves (10x slower measured at load 8 on 2 cores).
  at::set_num_threads(1);
  mel::GriffinLimOptions o;
  std::vector<std::string> files;
  try {
    for (int i = 1; i < argc; ++i) {
      const std::string a = argv[i];
      auto next = [&]() -> std::string {
        if (i + 1 >= argc) throw std::invalid_argument(a + " needs a value");
        return argv[++i];
      };
      if (a == "-h" || a == "--help") { std::cout << kUsage; return 0; }
      else if (a == "--iterations") o.iterations = std::stoi(next());
      else if (a == "--momentum") o.momentum = std::stod(next());
      else if (a == "--seed") o.seed = std::stoull(next());
      else if (a == "--zero-phase") o.random_init = false;
      else if (!a.empty() && a[0] == '-') throw std::invalid_argument("unknown option " + a);
      else files.push_back(a);
    }
  } catch (const std::exception& e) {
    std::cerr << "chatterbox-griffinlim: " << e.what() << "\n" << kUsage;
    return 2;
  }
  if (files.size() != 2) {
    std::cerr << kUsage;
    return 2;
  }
  try {
    vocos_train::Wav w = vocos_train::read_wav(files[0]);
    if (w.channels != 1) throw std::invalid_argument("'" + files[0] + "' is not mono (sox in.wav -c 1 mono.wav)");
    std::vector<double> x(w.samples.begin(), w.samples.end());
    x = quality::resample(x, w.rate, 24000);
    const mel::MelExtractor ex(MelFormat::s3gen());
    at::Tensor audio = at::tensor(x, at::kDouble).to(at::kFloat);
    at::Tensor y = mel::griffin_lim_from_mel(ex, ex.compute(audio), o).contiguous();
    const float* p = y.data_ptr<float>();
    vocos_train::write_wav(files[1], std::vector<float>(p, p + y.numel()), 24000);
    return 0;
  } catch (const std::exception& e) {
    std::cerr << "chatterbox-griffinlim: " << e.what() << "\n";
    return 1;
  }
}
