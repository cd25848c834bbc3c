// chatterbox-quality: compares a test waveform with a reference one and
// prints every metric of bench/quality/metrics.h (text, or --json).
#include "bench/quality/metrics.h"
#include "bench/quality/resample.h"
#include "elements/vocoder/vocos/train/vocos_trainer.h"  // read_wav

#include <ATen/ATen.h>
#include <nlohmann/json.hpp>

#include <cmath>
#include <cstdio>
#include <iostream>
#include <string>
#include <vector>

using namespace chatterbox;
using namespace chatterbox::quality;

namespace {

const char* kUsage = R"(usage: chatterbox-quality [--json] REF.wav TEST.wav

Compares TEST (e.g. a vocoder's copy-synthesis) with REF (the original) and
prints every metric:
  STOI                 Taal et al. 2011 (IEEE TASLP), the published algorithm:
                       10 kHz, 256-sample Hann frames, 50% overlap, 512-point
                       FFT, frames 40 dB below the loudest dropped, 15 third-
                       octave bands from 150 Hz, 30-frame (384 ms) segments,
                       clipping at beta = -15 dB; 0..1, higher is better
  log-mel L1           S3Gen recipe (80 Slaney mels, 24 kHz, n_fft 1920, hop
                       480, ln(max(x, 1e-5))), mean |difference|; lower is better
  MCD                  mel-cepstral distortion, dB: cepstrum = DCT-II (1/K) of
                       the S3Gen ln-mel, c1..c24, frames paired one to one,
                       (10/ln 10) sqrt(2 sum dc^2) averaged; lower is better
  MR-STFT              spectral convergence + log-magnitude L1 averaged over
                       Hann STFTs (512,128), (1024,256), (2048,512); lower is better
  spectral similarity  Pearson correlation of |STFT| (1024, hop 256); 1 = same
  SNR, SI-SNR          dB, sample by sample (phase-sensitive: a vocoder that
                       regenerates phase scores low here even when it sounds right)
  PESQ                 not computed: a faithful ITU-T P.862 (its IRS filters,
                       level and time alignment, Bark-domain disturbance model)
                       can only be trusted when checked against the ITU reference
                       implementation, which is not available here; an
                       unvalidated approximation would give numbers that look
                       like PESQ but are not.

Input: mono WAV (PCM 16/24/32-bit or float 32/64), 8 kHz to 384 kHz. When the
rates differ TEST is resampled to REF's rate; the mel metrics resample both to
24 kHz. The longer signal is trimmed to the shorter one's length (the end is
cut; no delay is searched: compare time-aligned signals such as a vocoder's
copy-synthesis of REF). Exit status: 0 ok, 1 bad input, 2 usage.
)";

struct Input {
  std::vector<double> samples;
  int rate = 0;
};

Input load(const std::string& path) {
  vocos_train::Wav w = vocos_train::read_wav(path);  // throws with the file name
  if (w.channels != 1)
    throw QualityError("'" + path + "' has " + std::to_string(w.channels) +
                       " channels; give a mono file (e.g. sox in.wav -c 1 mono.wav)");
  if (w.rate < 8000 || w.rate > 384000)
    throw QualityError("'" + path + "' is at " + std::to_string(w.rate) +
                       " Hz; the metrics need 8000..384000 Hz (STOI analyses up to 4.3 kHz)");
  return {std::vector<double>(w.samples.begin(), w.samples.end()), w.rate};
}

std::string fmt(double v, int prec) {
  if (std::isinf(v)) return v > 0 ? "inf" : "-inf";
  char b[64];
  std::snprintf(b, sizeof b, "%.*f", prec, v);
  return b;
}

}  // namespace

int main(int argc, char** argv) {
  // Small tensors: on a busy machine a second intra-op thread costs more in
  // OpenMP hand-offs than it saves (10x slower measured at load 8 on 2 cores).
  at::set_num_threads(1);
  bool json = false;
  std::vector<std::string> files;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--json") json = true;
    else if (a == "-h" || a == "--help") { std::cout << kUsage; return 0; }
    else if (!a.empty() && a[0] == '-') { std::cerr << "chatterbox-quality: unknown option " << a << "\n" << kUsage; return 2; }
    else files.push_back(a);
  }
  if (files.size() != 2) {
    std::cerr << kUsage;
    return 2;
  }
  try {
    Input ref = load(files[0]), test = load(files[1]);
    std::vector<std::string> notes;
    if (test.rate != ref.rate) {
      notes.push_back("test resampled from " + std::to_string(test.rate) + " to " + std::to_string(ref.rate) + " Hz");
      test.samples = resample(test.samples, test.rate, ref.rate);
    }
    if (ref.samples.size() != test.samples.size())
      notes.push_back("trimmed to the shorter signal: " + std::to_string(ref.samples.size()) + " reference vs " +
                      std::to_string(test.samples.size()) + " test samples");
    const Report r = compare(ref.samples, test.samples, ref.rate);
    const double secs = static_cast<double>(r.samples) / static_cast<double>(r.rate);
    if (json) {
      nlohmann::json j = {
          {"reference", files[0]}, {"test", files[1]}, {"rate", r.rate}, {"samples", r.samples},
          {"seconds", secs}, {"reference_samples", r.ref_samples}, {"test_samples", r.test_samples},
          {"stoi", r.stoi ? nlohmann::json(r.stoi->stoi) : nlohmann::json(nullptr)},
          {"log_mel_l1", r.log_mel_l1}, {"mcd_db", r.mcd_db},
          {"mr_stft", {{"total", r.mr_stft.total()}, {"spectral_convergence", r.mr_stft.spectral_convergence},
                       {"log_magnitude", r.mr_stft.log_magnitude}}},
          {"spectral_similarity", r.spectral_similarity},
          {"snr_db", std::isfinite(r.snr_db) ? nlohmann::json(r.snr_db) : nlohmann::json("inf")},
          {"si_snr_db", std::isfinite(r.si_snr_db) ? nlohmann::json(r.si_snr_db) : nlohmann::json("inf")},
          {"pesq", nullptr}, {"notes", notes}};
      if (r.stoi) j["stoi_frames"] = {{"total", r.stoi->frames_total}, {"speech", r.stoi->frames_kept},
                                      {"segments", r.stoi->segments}};
      else j["stoi_error"] = r.stoi_error;
      std::cout << j.dump(2) << "\n";
      return 0;
    }
    std::cout << "reference " << files[0] << "\ntest      " << files[1] << "\ncompared  " << fmt(secs, 3) << " s at "
              << r.rate << " Hz\n";
    for (const auto& n : notes) std::cout << "note      " << n << "\n";
    auto row = [](const std::string& name, const std::string& value, const std::string& hint) {
      std::printf("%-22s %12s   %s\n", name.c_str(), value.c_str(), hint.c_str());
    };
    row("STOI", r.stoi ? fmt(r.stoi->stoi, 4) : "n/a",
        r.stoi ? "0..1, higher is better (Taal 2011)" : r.stoi_error);
    row("log-mel L1", fmt(r.log_mel_l1, 4), "lower is better (S3Gen recipe)");
    row("MCD", fmt(r.mcd_db, 3) + " dB", "lower is better (c1..c24 of DCT of ln mel)");
    row("MR-STFT", fmt(r.mr_stft.total(), 4),
        "lower is better (SC " + fmt(r.mr_stft.spectral_convergence, 4) + " + log-mag " +
            fmt(r.mr_stft.log_magnitude, 4) + ")");
    row("spectral similarity", fmt(r.spectral_similarity, 4), "-1..1, higher is better (|STFT| correlation)");
    row("SNR", fmt(r.snr_db, 2) + " dB", "higher is better (sample-exact)");
    row("SI-SNR", fmt(r.si_snr_db, 2) + " dB", "higher is better (sample-exact, scale-invariant)");
    row("PESQ", "n/a", "not implemented: no ITU-T P.862 reference here to validate against (see --help)");
    return 0;
  } catch (const std::exception& e) {
    std::cerr << "chatterbox-quality: " << e.what() << "\n";
    return 1;
  }
}
