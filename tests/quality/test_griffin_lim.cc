// Griffin-Lim from a log-mel (elements/mel/features/griffin_lim.h): the
// filterbank inversion reproduces the mel, the iterations bring the output's
// mel close to the input mel, the spectral error of plain Griffin-Lim never
// rises (Griffin & Lim 1984's theorem), lengths follow the layout.
#include <boost/test/unit_test.hpp>

#include "bench/quality/resample.h"
#include "elements/mel/features/griffin_lim.h"
#include "tests/quality/quality_test_util.h"
#include "tests/test_util.h"

#include <ATen/ATen.h>

using namespace chatterbox;
using namespace chatterbox::test;

namespace {

at::Tensor speech_24k() {
  const Speech& s = speech();
  const std::vector<double> x = quality::resample(s.x, s.rate, 24000);
  return at::tensor(x, at::kDouble).to(at::kFloat);
}

double mel_l1(const at::Tensor& a, const at::Tensor& b) {
  const int64_t t = std::min(a.size(0), b.size(0));
  return (a.narrow(0, 0, t) - b.narrow(0, 0, t)).abs().mean().item<double>();
}

// |STFT| of y in the extractor's own framing (what Griffin-Lim matches).
at::Tensor magnitude_of(const mel::MelExtractor& ex, const at::Tensor& y, int64_t frames) {
  at::Tensor fr = ex.reflect_pad(y).unfold(0, ex.n_fft(), ex.hop_length()).narrow(0, 0, frames);
  return at::fft_rfft(fr * ex.window().to(at::kFloat), ex.n_fft(), -1).abs();
}

}  // namespace

BOOST_AUTO_TEST_CASE(filterbank_inversion_reproduces_the_mel) {
  const mel::MelExtractor ex(MelFormat::s3gen());
  const at::Tensor m = ex.compute(speech_24k());
  const at::Tensor s = mel::mel_to_magnitude(ex, m);
  BOOST_TEST(s.size(0) == m.size(0));
  BOOST_TEST(s.size(1) == 961);
  BOOST_TEST(s.min().item<double>() >= 0.0);
  const at::Tensor back = at::matmul(s.to(at::kDouble), ex.filterbank().t()).clamp_min(1e-5).log();
  const double err = mel_l1(back.to(at::kFloat), m);
  BOOST_TEST_MESSAGE("log-mel L1 of the inverted magnitude: " << err);
  BOOST_TEST(err < 0.01);
  // No mel band reaches above f_max = 8 kHz (bin 640): nothing is invented there.
  BOOST_TEST(s.narrow(1, 641, 320).abs().max().item<double>() == 0.0);
  // Fewer updates leave more error: the solver is doing the work.
  BOOST_TEST(mel_l1(at::matmul(mel::mel_to_magnitude(ex, m, 0).to(at::kDouble), ex.filterbank().t())
                        .clamp_min(1e-5).log().to(at::kFloat), m) > err);
}

BOOST_AUTO_TEST_CASE(iterations_bring_the_mel_of_the_output_to_the_input) {
  const mel::MelExtractor ex(MelFormat::s3gen());
  const at::Tensor m = ex.compute(speech_24k());
  mel::GriffinLimOptions o;
  o.iterations = 0;
  const at::Tensor y0 = mel::griffin_lim_from_mel(ex, m, o);
  o.iterations = 32;
  const at::Tensor y32 = mel::griffin_lim_from_mel(ex, m, o);
  BOOST_TEST(y32.size(0) == m.size(0) * 480);
  BOOST_TEST(at::isfinite(y32).all().item<bool>());
  const double e0 = mel_l1(ex.compute(y0), m), e32 = mel_l1(ex.compute(y32), m);
  BOOST_TEST_MESSAGE("log-mel L1 after 0 / 32 iterations: " << e0 << " / " << e32);
  BOOST_TEST(e32 < 0.25);
  BOOST_TEST(e32 < 0.5 * e0);
  // Deterministic for a seed; another seed is another start.
  BOOST_TEST(at::equal(y32, mel::griffin_lim_from_mel(ex, m, o)));
  o.seed = 1;
  BOOST_TEST(!at::equal(y32, mel::griffin_lim_from_mel(ex, m, o)));
}

BOOST_AUTO_TEST_CASE(plain_griffin_lim_never_increases_the_spectral_error) {
  const mel::MelExtractor ex(MelFormat::s3gen());
  const at::Tensor x = speech_24k();
  const at::Tensor m = ex.compute(x);
  const at::Tensor target = mel::mel_to_magnitude(ex, m);
  mel::GriffinLimOptions o;
  o.momentum = 0.0;
  double prev = 1e300;
  for (int it : {0, 1, 2, 4, 8, 16}) {
    o.iterations = it;
    const at::Tensor y = mel::griffin_lim(ex, target, o);
    const double err = (magnitude_of(ex, y, m.size(0)) - target).norm().item<double>() / target.norm().item<double>();
    BOOST_TEST_MESSAGE(it << " iterations: relative spectral error " << err);
    BOOST_TEST(err <= prev * (1 + 1e-5));  // float32 rounding only
    prev = err;
  }
}

BOOST_AUTO_TEST_CASE(lengths_follow_the_layout_and_bad_input_is_refused) {
  // "center" (Vocos layout): T frames -> (T-1)*hop samples.
  const mel::MelExtractor vx(MelFormat::vocos());
  const at::Tensor x = speech_24k().narrow(0, 0, 24000);
  const at::Tensor m = vx.compute(x);
  mel::GriffinLimOptions o;
  o.iterations = 4;
  o.random_init = false;
  const at::Tensor y = mel::griffin_lim_from_mel(vx, m, o);
  BOOST_TEST(y.size(0) == (m.size(0) - 1) * 256);
  BOOST_TEST(mel_l1(vx.compute(y), m) < mel_l1(vx.compute(at::zeros_like(y)), m));

  const mel::MelExtractor ex(MelFormat::s3gen());
  BOOST_TEST(contains(error_of([&] { mel::mel_to_magnitude(ex, at::zeros({10, 100})); }), "[frames, 80]"));
  BOOST_TEST(contains(error_of([&] { mel::griffin_lim(ex, at::zeros({10, 80})); }), "961"));
  BOOST_TEST(contains(error_of([&] { mel::mel_to_magnitude(ex, at::full({3, 80}, NAN)); }), "NaN"));
  BOOST_TEST(mel::griffin_lim_from_mel(ex, at::zeros({0, 80})).size(0) == 0);
}
