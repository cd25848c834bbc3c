// Speech and noise for the quality suite: a real utterance from espeak-ng
// (at its native 22050 Hz, so every STOI call also exercises the resampler)
// and seeded Gaussian noise.
#pragma once

#include "elements/vocoder/vocos/train/vocos_trainer.h"  // read_wav

#include <boost/test/unit_test.hpp>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <string>
#include <vector>

namespace chatterbox::test {

struct Speech {
  std::vector<double> x;
  int rate = 0;
  std::string path;  // the wav, kept for the tool tests
};

// Not one of scripts/corpus_sentences.txt.
inline const Speech& speech() {
  static const Speech s = [] {
    Speech sp;
    sp.path = "quality_speech.wav";
    const std::string cmd = "espeak-ng -v en-us -s 160 -w " + sp.path +
                            " 'The lighthouse keeper counted nine ships before the storm arrived.'";
    BOOST_REQUIRE_MESSAGE(std::system(cmd.c_str()) == 0, "espeak-ng is needed (scripts/install-deps.sh)");
    vocos_train::Wav w = vocos_train::read_wav(sp.path);
    BOOST_REQUIRE_EQUAL(w.channels, 1);
    sp.x.assign(w.samples.begin(), w.samples.end());
    sp.rate = w.rate;
    return sp;
  }();
  return s;
}

inline std::vector<double> gaussian_noise(size_t n, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<double> g(0.0, 1.0);
  std::vector<double> v(n);
  for (auto& s : v) s = g(rng);
  return v;
}

inline double energy(const std::vector<double>& x) {
  double e = 0.0;
  for (double v : x) e += v * v;
  return e;
}

// x + white noise scaled to the given SNR (dB) over the whole signal.
inline std::vector<double> with_noise(const std::vector<double>& x, double snr_db, uint64_t seed) {
  std::vector<double> n = gaussian_noise(x.size(), seed);
  const double scale = std::sqrt(energy(x) / (energy(n) * std::pow(10.0, snr_db / 10.0)));
  std::vector<double> y(x);
  for (size_t i = 0; i < y.size(); ++i) y[i] += scale * n[i];
  return y;
}

inline std::vector<double> scaled(std::vector<double> x, double g) {
  for (auto& v : x) v *= g;
  return x;
}

}  // namespace chatterbox::test
