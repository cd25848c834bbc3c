// The quality metrics (bench/quality) and the chatterbox-quality tool:
// STOI against the published algorithm's known properties, exact values of
// the other metrics on constructed cases, and the tool's output.
#define BOOST_TEST_MODULE quality
#include <boost/test/unit_test.hpp>

#include "bench/quality/metrics.h"
#include "bench/quality/resample.h"
#include "bench/quality/stoi.h"
#include "tests/quality/quality_test_util.h"
#include "tests/test_util.h"

#include <ATen/ATen.h>
#include <nlohmann/json.hpp>

#include <array>
#include <cstdint>
#include <utility>
#include <cmath>
#include <cstdio>
#include <memory>

using namespace chatterbox;
using namespace chatterbox::quality;
using namespace chatterbox::test;

namespace {

double stoi_of(const std::vector<double>& x, const std::vector<double>& y, int rate) { return stoi(x, y, rate).stoi; }

std::vector<double> sine(double hz, int rate, size_t n, double amp = 0.5) {
  std::vector<double> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = amp * std::sin(2.0 * M_PI * hz * static_cast<double>(i) / rate);
  return v;
}

struct Run {
  int rc = -1;
  std::string out;
};
// Runs a shell command, stdout and stderr together.
Run run(const std::string& cmd) {
  Run r;
  FILE* p = popen((cmd + " 2>&1").c_str(), "r");
  BOOST_REQUIRE(p);
  std::array<char, 4096> buf{};
  size_t n;
  while ((n = fread(buf.data(), 1, buf.size(), p)) > 0) r.out.append(buf.data(), n);
  const int st = pclose(p);
  r.rc = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
  return r;
}

std::string tool(const char* env) {
  const char* p = std::getenv(env);
  BOOST_REQUIRE_MESSAGE(p && *p, env << " is not set (run through meson test)");
  return p;
}

void write(const std::string& path, const std::vector<double>& x, int rate) {
  vocos_train::write_wav(path, std::vector<float>(x.begin(), x.end()), rate);
}

}  // namespace

// --- STOI ---------------------------------------------------------------------

BOOST_AUTO_TEST_CASE(stoi_bands_are_the_published_third_octaves) {
  const auto b = stoi_bands();
  BOOST_REQUIRE_EQUAL(b.size(), 15u);
  // 512-point FFT at 10 kHz: 19.53 Hz bins. Band 0: centre 150 Hz, edges
  // 133.6 / 168.4 Hz -> nearest bins 7 (136.7 Hz) and 9 (175.8 Hz).
  BOOST_TEST(b[0].centre_hz == 150.0, boost::test_tools::tolerance(1e-12));
  BOOST_TEST(b[0].lo_bin == 7);
  BOOST_TEST(b[0].hi_bin == 9);
  // Band 14: centre 150 * 2^(14/3) = 3810 Hz, edges 3394 / 4277 Hz -> bins 174, 219.
  BOOST_TEST(b[14].centre_hz == 3810.0, boost::test_tools::tolerance(1e-4));
  BOOST_TEST(b[14].lo_bin == 174);
  BOOST_TEST(b[14].hi_bin == 219);
  for (size_t k = 1; k < b.size(); ++k) BOOST_TEST(b[k].lo_bin == b[k - 1].hi_bin);  // shared edges
}

BOOST_AUTO_TEST_CASE(stoi_of_identical_signals_is_one) {
  const Speech& s = speech();
  const StoiResult r = stoi(s.x, s.x, s.rate);
  BOOST_TEST(std::abs(r.stoi - 1.0) < 1e-9);
  BOOST_TEST(r.frames_kept < r.frames_total);  // the pauses were dropped
  BOOST_TEST(r.frames_kept >= 30);
}

BOOST_AUTO_TEST_CASE(stoi_falls_monotonically_as_white_noise_rises) {
  const Speech& s = speech();
  double prev = 1.0;
  for (double snr : {20.0, 10.0, 5.0, 0.0, -5.0}) {
    const double d = stoi_of(s.x, with_noise(s.x, snr, 7), s.rate);
    BOOST_TEST_MESSAGE("STOI at " << snr << " dB white noise: " << d);
    BOOST_TEST(d < prev);
    prev = d;
  }
  // Mild noise keeps STOI high; -5 dB white noise costs a good part of it
  // (pystoi gives this sentence 0.767 at -5 dB with other noise draws).
  BOOST_TEST(stoi_of(s.x, with_noise(s.x, 20.0, 7), s.rate) > 0.98);
  BOOST_TEST(prev < 0.8);
}

BOOST_AUTO_TEST_CASE(stoi_matches_the_reference_implementation_at_10khz) {
  // A voiced-speech-like signal (harmonics of a gliding 120 Hz pitch under
  // 2.5 Hz bursts with pauses) and reproducible uniform noise, both defined
  // sample by sample so the same numbers can be fed to pystoi 0.4.1 (a port
  // of Taal's MATLAB code, tested against it). Its STOI values, computed once
  // with numpy 1.24 / scipy 1.10, are the constants below. At 10 kHz there is
  // no resampling, so every step of the algorithm must agree.
  const int fs = kStoiRate, n = 3 * fs;
  std::vector<double> clean(n), noise(n);
  double acc = 0.0;
  uint32_t state = 12345;
  for (int i = 0; i < n; ++i) {
    const double env = std::pow(std::max(0.0, std::sin(2 * M_PI * 2.5 * i / fs)), 2);
    acc += 120 + 30 * std::sin(2 * M_PI * 0.5 * i / fs);
    const double phase = 2 * M_PI * acc / fs;
    double v = 0.0;
    for (int h = 1; h < 30; ++h) v += std::sin(h * phase) / h;
    clean[i] = env * v;
    state = state * 1664525u + 1013904223u;
    noise[i] = (state >> 8) / 16777216.0 - 0.5;
  }
  BOOST_TEST(std::abs(noise[0] + 0.47959733) < 1e-8);  // the same generator as the reference run
  const std::pair<double, double> pystoi[] = {{0.1, 0.9957289641534471}, {0.3, 0.9749038151812368},
                                              {1.0, 0.852255334142686}};
  for (auto [gain, want] : pystoi) {
    std::vector<double> y(clean);
    for (int i = 0; i < n; ++i) y[i] += gain * noise[i];
    const double d = stoi_of(clean, y, fs);
    BOOST_TEST_MESSAGE("noise gain " << gain << ": STOI " << d << ", pystoi " << want);
    BOOST_TEST(std::abs(d - want) < 1e-9);
  }
}

BOOST_AUTO_TEST_CASE(stoi_of_noise_alone_is_lowest_but_not_zero) {
  // The clipping step bounds the normalised noise envelope by 6.6x the clean
  // one, which correlates it with the speech: the published algorithm gives
  // unrelated noise about 0.4-0.45 (pystoi: 0.450 for this sentence), not 0.
  const Speech& s = speech();
  const double d = stoi_of(s.x, scaled(gaussian_noise(s.x.size(), 3), 0.1), s.rate);
  BOOST_TEST_MESSAGE("STOI of noise alone: " << d);
  BOOST_TEST(d < stoi_of(s.x, with_noise(s.x, -5.0, 7), s.rate));
  BOOST_TEST(d > 0.3);
  BOOST_TEST(d < 0.55);
}

BOOST_AUTO_TEST_CASE(stoi_ignores_overall_gain) {
  const Speech& s = speech();
  const std::vector<double> y = with_noise(s.x, 5.0, 11);
  const double d = stoi_of(s.x, y, s.rate);
  BOOST_TEST(std::abs(stoi_of(s.x, scaled(y, 0.05), s.rate) - d) < 1e-9);   // processed
  BOOST_TEST(std::abs(stoi_of(scaled(s.x, 4.0), y, s.rate) - d) < 1e-9);    // clean
}

BOOST_AUTO_TEST_CASE(stoi_needs_enough_speech_and_equal_lengths) {
  const Speech& s = speech();
  std::vector<double> shortx(s.x.begin(), s.x.begin() + s.rate / 5);
  // Make sure the 0.2 s is not silence.
  const std::vector<double> tone = sine(440.0, s.rate, shortx.size());
  try {
    stoi(tone, tone, s.rate);
    BOOST_FAIL("0.2 s must be refused");
  } catch (const QualityError& e) {
    BOOST_TEST(contains(e.what(), "at least 30"));
  }
  std::vector<double> y(s.x.begin(), s.x.end() - 1);
  BOOST_CHECK_THROW(stoi(s.x, y, s.rate), QualityError);
}

// --- resampling ---------------------------------------------------------------

BOOST_AUTO_TEST_CASE(resampling_keeps_a_tone_and_its_timing) {
  for (auto [from, to, hz] : {std::array<double, 3>{24000, 10000, 1000}, {22050, 24000, 3000}, {16000, 10000, 3500}}) {
    const size_t n = static_cast<size_t>(from);  // 1 s
    const std::vector<double> y = resample(sine(hz, static_cast<int>(from), n), static_cast<int64_t>(from),
                                           static_cast<int64_t>(to));
    BOOST_TEST(y.size() == static_cast<size_t>(std::ceil(n * to / from)));
    const std::vector<double> want = sine(hz, static_cast<int>(to), y.size());
    double err = 0.0;
    for (size_t i = y.size() / 10; i < y.size() * 9 / 10; ++i) err = std::max(err, std::abs(y[i] - want[i]));
    BOOST_TEST_MESSAGE(from << " -> " << to << " Hz, " << hz << " Hz tone: max error " << err);
    BOOST_TEST(err < 2e-3);
  }
  // Above the new Nyquist frequency: removed.
  const std::vector<double> y = resample(sine(6000, 24000, 24000), 24000, 10000);
  double peak = 0.0;
  for (size_t i = 1000; i < 9000; ++i) peak = std::max(peak, std::abs(y[i]));
  BOOST_TEST(peak < 0.01);
  BOOST_CHECK_THROW(resample(y, 0, 10000), std::invalid_argument);
}

// --- the other metrics --------------------------------------------------------

BOOST_AUTO_TEST_CASE(snr_is_exact_for_a_constructed_case) {
  const std::vector<double> r = sine(220.0, 24000, 24000);
  std::vector<double> e = gaussian_noise(r.size(), 5);
  e = scaled(e, std::sqrt(energy(r) / energy(e) / 100.0));  // exactly 20 dB below r
  std::vector<double> t(r);
  for (size_t i = 0; i < t.size(); ++i) t[i] += e[i];
  BOOST_TEST(snr_db(r, t) == 20.0, boost::test_tools::tolerance(1e-9));
  BOOST_TEST(std::isinf(snr_db(r, r)));
  BOOST_TEST(snr_db(r, scaled(r, 0.0)) == 0.0, boost::test_tools::tolerance(1e-12));  // silence: 0 dB

  // SI-SNR: e made zero-mean and orthogonal to r, so the target is exactly r;
  // any gain on the test leaves it unchanged.
  double m = 0.0;
  for (double v : e) m += v;
  m /= static_cast<double>(e.size());
  double rm = 0.0;
  for (double v : r) rm += v;
  rm /= static_cast<double>(r.size());
  std::vector<double> rc(r), ec(e);
  for (auto& v : rc) v -= rm;
  for (auto& v : ec) v -= m;
  double dot = 0.0;
  for (size_t i = 0; i < rc.size(); ++i) dot += ec[i] * rc[i];
  for (size_t i = 0; i < ec.size(); ++i) ec[i] -= dot / energy(rc) * rc[i];
  std::vector<double> t2(rc);
  for (size_t i = 0; i < t2.size(); ++i) t2[i] += ec[i];
  const double want = 10.0 * std::log10(energy(rc) / energy(ec));
  BOOST_TEST(si_snr_db(rc, t2) == want, boost::test_tools::tolerance(1e-9));
  BOOST_TEST(si_snr_db(rc, scaled(t2, -0.3)) == want, boost::test_tools::tolerance(1e-9));
}

BOOST_AUTO_TEST_CASE(mel_metrics_are_zero_for_identical_audio) {
  const Speech& s = speech();
  const std::vector<double> x24 = resample(s.x, s.rate, 24000);
  const at::Tensor m = s3gen_log_mel(x24);
  BOOST_TEST(m.size(1) == 80);
  BOOST_TEST(log_mel_l1(m, m) == 0.0);
  BOOST_TEST(mcd_db(m, m) == 0.0);
  const StftDistance d = multi_resolution_stft(x24, x24);
  BOOST_TEST(d.total() == 0.0);
  BOOST_TEST(spectral_similarity(x24, x24) == 1.0, boost::test_tools::tolerance(1e-12));
}

BOOST_AUTO_TEST_CASE(mcd_has_the_documented_cepstrum) {
  const Speech& s = speech();
  const at::Tensor a = s3gen_log_mel(resample(s.x, s.rate, 24000)).to(at::kDouble);
  // A constant log gain moves only c0, which MCD leaves out; log-mel L1 sees it.
  BOOST_TEST(mcd_db(a, a + 0.7) < 1e-9);
  BOOST_TEST(log_mel_l1(a, a + 0.7) == 0.7, boost::test_tools::tolerance(1e-9));
  // delta * cos(pi * 3 * (k + 1/2) / 80) added to every frame is c3 += delta/2
  // and nothing else: MCD = (10 / ln 10) sqrt(2 (delta/2)^2) = (10 / ln 10) delta / sqrt(2).
  const double delta = 0.4;
  at::Tensor k = at::arange(80, at::kDouble);
  at::Tensor ripple = (k + 0.5).mul(M_PI * 3.0 / 80.0).cos().mul(delta);
  BOOST_TEST(mcd_db(a, a + ripple) == 10.0 / std::log(10.0) * delta / std::sqrt(2.0),
             boost::test_tools::tolerance(1e-9));
  // Beyond c24 the distortion is not counted.
  at::Tensor high = (k + 0.5).mul(M_PI * 30.0 / 80.0).cos().mul(delta);
  BOOST_TEST(mcd_db(a, a + high) < 1e-9);
  BOOST_TEST(std::abs(mel_cepstrum(a + high, 30)[0][30].item<double>() - mel_cepstrum(a, 30)[0][30].item<double>() -
                      delta / 2) < 1e-9);
}

BOOST_AUTO_TEST_CASE(spectral_distances_grow_with_noise_and_ignore_what_they_should) {
  const Speech& s = speech();
  const std::vector<double>& x = s.x;
  double prev_sim = 1.0, prev_mr = 0.0, prev_l1 = 0.0;
  for (double snr : {30.0, 10.0, 0.0}) {
    const std::vector<double> y = with_noise(x, snr, 13);
    const double sim = spectral_similarity(x, y), mr = multi_resolution_stft(x, y).total();
    const double l1 = log_mel_l1(s3gen_log_mel(resample(x, s.rate, 24000)), s3gen_log_mel(resample(y, s.rate, 24000)));
    BOOST_TEST_MESSAGE(snr << " dB: spectral similarity " << sim << ", MR-STFT " << mr << ", log-mel L1 " << l1);
    BOOST_TEST(sim < prev_sim);
    BOOST_TEST(mr > prev_mr);
    BOOST_TEST(l1 > prev_l1);
    prev_sim = sim, prev_mr = mr, prev_l1 = l1;
  }
  // Correlation of magnitudes does not care about gain; spectral convergence does.
  BOOST_TEST(spectral_similarity(x, scaled(x, 0.25)) == 1.0, boost::test_tools::tolerance(1e-12));
  // (1e-6: the 1e-7 power floor of near-silent bins)
  BOOST_TEST(multi_resolution_stft(x, scaled(x, 0.5)).spectral_convergence == 0.5, boost::test_tools::tolerance(1e-6));
}

BOOST_AUTO_TEST_CASE(compare_trims_to_the_shorter_signal) {
  const Speech& s = speech();
  std::vector<double> y(s.x.begin(), s.x.end() - 1000);
  const Report r = compare(s.x, y, s.rate);
  BOOST_TEST(r.samples == static_cast<int64_t>(y.size()));
  BOOST_TEST(r.ref_samples == static_cast<int64_t>(s.x.size()));
  BOOST_REQUIRE(r.stoi.has_value());
  BOOST_TEST(std::abs(r.stoi->stoi - 1.0) < 1e-9);
  BOOST_TEST(std::isinf(r.snr_db));
  BOOST_TEST(r.log_mel_l1 < 1e-6);
}

// --- the tools ----------------------------------------------------------------

BOOST_AUTO_TEST_CASE(chatterbox_quality_prints_every_metric) {
  const Speech& s = speech();
  const std::string bin = tool("CHATTERBOX_QUALITY_BIN");
  write("quality_noisy.wav", with_noise(s.x, 5.0, 17), s.rate);
  Run r = run(bin + " " + s.path + " quality_noisy.wav");
  BOOST_TEST_MESSAGE(r.out);
  BOOST_TEST(r.rc == 0);
  for (const char* name : {"STOI", "log-mel L1", "MCD", "MR-STFT", "spectral similarity", "SNR", "SI-SNR", "PESQ"})
    BOOST_TEST(contains(r.out, std::string("\n") + name + " "), name);

  // --json: the same numbers as the library on the same files.
  r = run(bin + " --json " + s.path + " quality_noisy.wav");
  BOOST_REQUIRE(r.rc == 0);
  const nlohmann::json j = nlohmann::json::parse(r.out);
  vocos_train::Wav a = vocos_train::read_wav(s.path), b = vocos_train::read_wav("quality_noisy.wav");
  const Report want = compare(std::vector<double>(a.samples.begin(), a.samples.end()),
                              std::vector<double>(b.samples.begin(), b.samples.end()), a.rate);
  BOOST_TEST(j.at("stoi").get<double>() == want.stoi->stoi, boost::test_tools::tolerance(1e-12));
  BOOST_TEST(j.at("log_mel_l1").get<double>() == want.log_mel_l1, boost::test_tools::tolerance(1e-12));
  BOOST_TEST(j.at("mcd_db").get<double>() == want.mcd_db, boost::test_tools::tolerance(1e-12));
  BOOST_TEST(j.at("mr_stft").at("total").get<double>() == want.mr_stft.total(), boost::test_tools::tolerance(1e-12));
  BOOST_TEST(j.at("spectral_similarity").get<double>() == want.spectral_similarity, boost::test_tools::tolerance(1e-12));
  BOOST_TEST(j.at("snr_db").get<double>() == want.snr_db, boost::test_tools::tolerance(1e-12));
  BOOST_TEST(j.at("si_snr_db").get<double>() == want.si_snr_db, boost::test_tools::tolerance(1e-12));
  BOOST_TEST(j.at("pesq").is_null());
  BOOST_TEST(want.stoi->stoi > 0.5);
  BOOST_TEST(want.stoi->stoi < 0.95);
  std::remove("quality_noisy.wav");
}

BOOST_AUTO_TEST_CASE(chatterbox_quality_resamples_trims_and_refuses_clearly) {
  const Speech& s = speech();
  const std::string bin = tool("CHATTERBOX_QUALITY_BIN");
  // Same speech at 24 kHz, 0.1 s shorter: resampled back, trimmed, near-perfect.
  std::vector<double> y = resample(s.x, s.rate, 24000);
  y.resize(y.size() - 2400);
  write("quality_24k.wav", y, 24000);
  Run r = run(bin + " " + s.path + " quality_24k.wav");
  BOOST_TEST_MESSAGE(r.out);
  BOOST_TEST(r.rc == 0);
  BOOST_TEST(contains(r.out, "resampled from 24000 to 22050 Hz"));
  BOOST_TEST(contains(r.out, "trimmed to the shorter signal"));
  r = run(bin + " --json " + s.path + " quality_24k.wav");
  BOOST_REQUIRE(r.rc == 0);
  BOOST_TEST(nlohmann::json::parse(r.out).at("stoi").get<double>() > 0.99);

  // Stereo and too-low rates are refused with a reason; bad usage is status 2.
  std::system(("sox " + s.path + " -c 2 quality_stereo.wav").c_str());
  r = run(bin + " " + s.path + " quality_stereo.wav");
  BOOST_TEST(r.rc == 1);
  BOOST_TEST(contains(r.out, "mono"));
  write("quality_4k.wav", resample(s.x, s.rate, 4000), 4000);
  r = run(bin + " quality_4k.wav " + s.path);
  BOOST_TEST(r.rc == 1);
  BOOST_TEST(contains(r.out, "8000..384000 Hz"));
  r = run(bin + " " + s.path + " missing.wav");
  BOOST_TEST(r.rc == 1);
  BOOST_TEST(contains(r.out, "missing.wav"));
  BOOST_TEST(run(bin + " " + s.path).rc == 2);
  r = run(bin + " --help");
  BOOST_TEST(r.rc == 0);
  BOOST_TEST(contains(r.out, "P.862"));
  for (const char* f : {"quality_24k.wav", "quality_stereo.wav", "quality_4k.wav"}) std::remove(f);
}

BOOST_AUTO_TEST_CASE(chatterbox_griffinlim_resynthesises_a_file) {
  const Speech& s = speech();
  const Run r = run(tool("CHATTERBOX_GRIFFINLIM_BIN") + " --iterations 8 " + s.path + " quality_gl.wav");
  BOOST_TEST_MESSAGE(r.out);
  BOOST_REQUIRE(r.rc == 0);
  vocos_train::Wav w = vocos_train::read_wav("quality_gl.wav");
  BOOST_TEST(w.rate == 24000);
  const size_t n24 = resample(s.x, s.rate, 24000).size();
  BOOST_TEST(w.samples.size() == n24 / 480 * 480);
  const Report q = compare(resample(s.x, s.rate, 24000), std::vector<double>(w.samples.begin(), w.samples.end()),
                           24000);
  BOOST_TEST_MESSAGE("Griffin-Lim (8 iterations) STOI " << q.stoi->stoi << ", log-mel L1 " << q.log_mel_l1);
  BOOST_TEST(q.stoi->stoi > 0.6);
  BOOST_TEST(q.log_mel_l1 < 0.4);
  std::remove("quality_gl.wav");
}
