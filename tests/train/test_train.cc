#define BOOST_TEST_MODULE train
#include <boost/test/unit_test.hpp>

#include "elements/vocoder/vocos/train/adamw.h"
#include "elements/vocoder/vocos/train/discriminators.h"
#include "elements/vocoder/vocos/train/vocos_trainer.h"
#include "elements/vocoder/vocos/vocos.h"
#include "gst-plugins/core/checkpoint.h"
#include "tests/fixtures.h"

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <nlohmann/json.hpp>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <unistd.h>

using namespace chatterbox;
using namespace chatterbox::vocos_train;
namespace fs = std::filesystem;

namespace {

struct TempDir {
  fs::path path;
  TempDir() {
    static int n = 0;
    path = fs::temp_directory_path() / ("vocos_train_test_" + std::to_string(getpid()) + "_" + std::to_string(n++));
    fs::create_directories(path);
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
  std::string operator/(const std::string& s) const { return (path / s).string(); }
};

// Voiced-speech-like test signal: a gliding F0 with 1/k harmonics shaped by
// two moving formants, syllable-rate amplitude modulation and a noise burst
// (fricative) every 0.4 s. Deterministic, no external tools.
std::vector<float> speechlike(double seconds, double f0a, double f0b, uint32_t seed) {
  const int sr = 24000;
  const int64_t n = static_cast<int64_t>(seconds * sr);
  std::vector<float> x(n);
  double phase = 0;
  uint32_t s = seed;
  for (int64_t i = 0; i < n; ++i) {
    const double t = static_cast<double>(i) / sr;
    const double f0 = f0a + (f0b - f0a) * (0.5 - 0.5 * std::cos(2 * M_PI * t / seconds)) + 8 * std::sin(2 * M_PI * 5 * t);
    phase += 2 * M_PI * f0 / sr;
    const double fm1 = 500 + 300 * std::sin(2 * M_PI * 1.3 * t), fm2 = 1500 + 600 * std::sin(2 * M_PI * 0.9 * t + 1);
    double v = 0;
    for (int k = 1; k * f0 < 7500; ++k) {
      const double f = k * f0;
      const double env = std::exp(-std::pow((f - fm1) / 250, 2)) + 0.5 * std::exp(-std::pow((f - fm2) / 350, 2)) + 0.05;
      v += env / k * std::sin(k * phase);
    }
    const double am = 0.6 + 0.4 * std::sin(2 * M_PI * 3 * t);
    s = s * 1664525u + 1013904223u;
    const double noise = (static_cast<double>(s >> 8) / (1 << 24) - 0.5);
    const bool burst = std::fmod(t, 0.4) < 0.06;
    x[i] = static_cast<float>(burst ? 0.3 * noise : 0.25 * am * v + 0.002 * noise);
  }
  return x;
}

// Writes the training wavs and a list file; returns the list path.
std::string make_data(const TempDir& d) {
  write_wav(d / "a.wav", speechlike(1.6, 110, 150, 1), 24000);
  write_wav(d / "b.wav", speechlike(1.4, 190, 260, 2), 24000);
  write_wav(d / "c.wav", speechlike(1.2, 140, 100, 3), 24000);
  std::ofstream(d / "train.list") << "a.wav\nb.wav\n# comment\nc.wav\n";
  return d / "train.list";
}

TrainOptions tiny(const std::string& data, const std::string& out) {
  TrainOptions o;
  o.config = VocosConfig::s3gen(32, 64, 2);
  o.data = data;
  o.out_dir = out;
  o.steps = 30;
  o.batch = 4;
  o.segment_frames = 16;
  o.lr = 3e-3;
  o.warmup = 3;
  o.seed = 7;
  o.checkpoint_every = 0;
  o.quiet = true;
  return o;
}

// The discriminators at test size: the reference's periods and windows, narrow convs.
DiscriminatorConfig tiny_disc() {
  DiscriminatorConfig c;
  c.mpd_channels = {4, 8, 16, 16, 16};
  c.mrd_channels = 4;
  return c;
}

TrainOptions tiny_gan(const std::string& data, const std::string& out) {
  TrainOptions o = tiny(data, out);
  o.gan = true;
  o.disc = tiny_disc();
  o.steps = 10;
  o.pretrain_mel_steps = 2;
  return o;
}

at::Tensor segments(int64_t n, int64_t samples, uint32_t seed) {
  std::vector<at::Tensor> rows;
  for (int64_t i = 0; i < n; ++i) {
    auto x = speechlike(static_cast<double>(samples) / 24000, 120 + 40 * i, 180 + 30 * i, seed + i);
    rows.push_back(at::from_blob(x.data(), {samples}, at::kFloat).clone());
  }
  return at::stack(rows);
}

double mean_loss(const std::vector<StepLog>& log, size_t from, size_t to) {
  double s = 0;
  for (size_t i = from; i < to; ++i) s += log[i].loss;
  return s / (to - from);
}

}  // namespace

BOOST_AUTO_TEST_CASE(wav_round_trip_and_list) {
  TempDir d;
  std::vector<float> x{0.0f, 0.5f, -0.5f, 0.25f, 1.0f, -1.0f};
  write_wav(d / "x.wav", x, 24000);
  Wav w = read_wav(d / "x.wav");
  BOOST_TEST(w.rate == 24000);
  BOOST_TEST(w.channels == 1);
  BOOST_REQUIRE(w.samples.size() == x.size());
  for (size_t i = 0; i < x.size(); ++i) BOOST_TEST(std::abs(w.samples[i] - x[i]) < 1.0 / 32000);
  auto files = list_wavs(make_data(d));
  BOOST_TEST(files.size() == 3u);
  BOOST_TEST(fs::path(files[1]).filename() == "b.wav");
  BOOST_TEST(list_wavs(d.path.string()).size() == 4u);  // folder: every *.wav
}

BOOST_AUTO_TEST_CASE(loss_falls_model_loads_and_resume_is_exact) {
  TempDir d;
  const std::string list = make_data(d);

  // Uninterrupted run.
  TrainOptions a = tiny(list, d / "run_a");
  a.eval_list = list;
  TrainResult ra = train(a);
  BOOST_REQUIRE(ra.log.size() == 30u);
  const double first = mean_loss(ra.log, 0, 5), last = mean_loss(ra.log, 25, 30);
  BOOST_TEST_MESSAGE("loss first 5 steps " << first << ", last 5 " << last << ", mel " << ra.log.front().mel
                                           << " -> " << ra.log.back().mel << " (" << ra.seconds << " s)");
  BOOST_TEST(last < 0.75 * first);
  BOOST_TEST(ra.log.back().mel < 0.8 * ra.log.front().mel);

  // The model file loads in the inference library with the S3Gen layout, and
  // its fast forward gives what the training forward gave (same eval number).
  auto voc = VocosVocoder::load(ra.model_path);
  BOOST_TEST((voc->mel_format() == MelFormat::s3gen()));
  BOOST_TEST(voc->config().dim == 32);
  BOOST_TEST(voc->config().num_layers == 2);
  BOOST_TEST(voc->config().padding == "same");
  BOOST_REQUIRE(!ra.eval.empty());
  const double e = copy_synthesis_mel_l1(*voc, list_wavs(list));
  BOOST_TEST_MESSAGE("copy-synthesis log-mel L1 " << e << " (training forward " << ra.eval.back().second << ")");
  BOOST_TEST(std::abs(e - ra.eval.back().second) < 1e-3 * std::max(1.0, e));
  Checkpoint ck = Checkpoint::open(ra.model_path);
  BOOST_TEST(ck.config().at("mel").at("n_mels").get<int>() == 80);
  BOOST_TEST(ck.metadata("trained_steps") == "30");

  // Interrupted at step 12 (same schedule), then resumed to 30.
  TrainOptions b = tiny(list, d / "run_b");
  b.stop_at = 12;
  TrainResult rb1 = train(b);
  BOOST_REQUIRE(rb1.end_step == 12);
  TrainOptions b2 = tiny(list, d / "unused");
  b2.resume = d / "run_b";
  b2.seed = 999;  // the checkpoint's seed wins
  TrainResult rb2 = train(b2);
  BOOST_REQUIRE(rb2.first_step == 12);
  BOOST_REQUIRE(rb2.log.size() == 18u);
  for (size_t i = 0; i < 12; ++i) BOOST_TEST(rb1.log[i].loss == ra.log[i].loss);
  double worst = 0;
  for (size_t i = 0; i < rb2.log.size(); ++i) {
    BOOST_TEST(rb2.log[i].step == ra.log[12 + i].step);
    worst = std::max(worst, std::abs(rb2.log[i].loss - ra.log[12 + i].loss) / ra.log[12 + i].loss);
  }
  BOOST_TEST_MESSAGE("resume: worst relative loss difference " << worst);
  BOOST_TEST(worst <= 1e-6);
}

BOOST_AUTO_TEST_CASE(teacher_hift_targets) {
  TempDir d;
  const std::string list = make_data(d);
  TrainOptions plain = tiny(list, d / "plain");
  plain.steps = 4;
  TrainOptions t = plain;
  t.out_dir = d / "teacher";
  t.teacher = "hift";
  t.teacher_model = chatterbox::test::fixture("hift/hift_tiny.safetensors");
  TrainResult rp = train(plain), rt = train(t);
  BOOST_REQUIRE(rt.log.size() == 4u);
  for (const auto& l : rt.log) BOOST_TEST(std::isfinite(l.loss));
  // Same weights and segments, different targets (the teacher's audio).
  BOOST_TEST(rt.log[0].loss != rp.log[0].loss);
  BOOST_TEST((VocosVocoder::load(rt.model_path)->mel_format() == MelFormat::s3gen()));

  TrainOptions missing = t;
  missing.teacher_model.clear();
  BOOST_CHECK_THROW(train(missing), std::invalid_argument);
}

BOOST_AUTO_TEST_CASE(refusals) {
  TempDir d;
  const std::string list = make_data(d);
  TrainOptions g = tiny_gan(list, d / "gan");
  g.disc.fft_sizes = {16384};  // half the window does not fit a 7680-sample segment
  try {
    train(g);
    BOOST_FAIL("an MRD window longer than the segment was accepted");
  } catch (const std::invalid_argument& e) {
    BOOST_TEST(std::string(e.what()).find("MRD window 16384") != std::string::npos);
  }
  g = tiny_gan(list, d / "gan");
  g.disc.mpd_channels = {4, 8};
  BOOST_CHECK_THROW(train(g), std::invalid_argument);
  write_wav(d / "sr16.wav", std::vector<float>(16000, 0.1f), 16000);
  TrainOptions r = tiny(d / "sr16.wav", d / "sr");
  std::ofstream(d / "sr.list") << "sr16.wav\n";
  r.data = d / "sr.list";
  try {
    train(r);
    BOOST_FAIL("a 16 kHz wav was accepted");
  } catch (const ModelError& e) {
    BOOST_TEST(std::string(e.what()).find("16000 Hz") != std::string::npos);
    BOOST_TEST(std::string(e.what()).find("24000 Hz") != std::string::npos);
  }
}

// The discriminators on a fixed batch: a few AdamW updates of the hinge loss
// separate real from generated audio; the generator's terms reach only the
// generated audio, never the discriminators' weights.
BOOST_AUTO_TEST_CASE(discriminators_learn_on_a_fixed_batch) {
  Discriminators disc(tiny_disc());
  disc->init(3);
  const at::Tensor real = segments(2, 7680, 11);
  at::Tensor fake = (0.6 * real + 0.05 * at::randn(real.sizes(), at::make_generator<at::CPUGeneratorImpl>(5))).detach();
  AdamW opt(*disc, 0.8, 0.9, 1e-8, 0.01);
  // An untrained MPD's scores are ~1e-3 (six shrinking layers), so its hinge
  // loss leaves 2 slowly; 40 updates at 1e-2 take ~2 s at these widths.
  std::vector<double> total, mpd, mrd;
  for (int t = 1; t <= 40; ++t) {
    DiscLoss l = disc->discriminator_loss(real, fake, 0.1);
    opt.zero_grad();
    l.total.backward();
    opt.step(1e-2, t);
    total.push_back(l.total.item<double>());
    mpd.push_back(l.mpd.item<double>());
    mrd.push_back(l.mrd.item<double>());
    BOOST_TEST(std::isfinite(total.back()));
  }
  auto last5 = [](const std::vector<double>& v) { return (v[35] + v[36] + v[37] + v[38] + v[39]) / 5; };
  BOOST_TEST_MESSAGE("discriminator loss " << total.front() << " -> " << last5(total) << " (mpd " << mpd.front()
                                           << " -> " << last5(mpd) << ", mrd " << mrd.front() << " -> " << last5(mrd)
                                           << ")");
  BOOST_TEST(total.front() > 2.1);  // hinge at an untrained discriminator: about 2 (mpd) + 0.1 * 2 (mrd)
  BOOST_TEST(last5(total) < 0.8 * total.front());
  BOOST_TEST(last5(mpd) < 0.85 * mpd.front());
  BOOST_TEST(last5(mrd) < 0.4 * mrd.front());

  opt.zero_grad();
  at::Tensor gen = fake.clone().requires_grad_(true);
  GenAdvLoss g = disc->generator_loss(real, gen);
  (g.adv_mpd + g.adv_mrd + g.fm_mpd + g.fm_mrd).backward();
  BOOST_TEST(gen.grad().abs().sum().item<double>() > 0);
  BOOST_TEST(opt.grad_norm() == 0.0);
  for (const auto& p : disc->parameters()) BOOST_TEST(p.requires_grad());
}

// --gan through train(): mel-only for pretrain_mel_steps, then both losses
// finite; the model file is the generator alone and loads in the inference
// library (vocosdec's loader); resuming mid-run equals the uninterrupted run.
BOOST_AUTO_TEST_CASE(gan_training_model_and_exact_resume) {
  TempDir d;
  const std::string list = make_data(d);
  TrainResult ra = train(tiny_gan(list, d / "gan_a"));
  BOOST_REQUIRE(ra.log.size() == 10u);
  for (const auto& l : ra.log) {
    BOOST_TEST(l.gan == (l.step >= 2));
    BOOST_TEST(std::isfinite(l.loss));
    BOOST_TEST(std::isfinite(l.d_loss));
    if (l.gan) {
      BOOST_TEST(l.d_loss > 0);
      BOOST_TEST(l.fm_mpd > 0);
      BOOST_TEST(l.fm_mrd > 0);
      BOOST_TEST(std::isfinite(l.adv_mpd + l.adv_mrd));
      // The generator's total is the recipe's sum of its terms.
      const double expect = 45 * l.mel + l.sc + l.mag + l.adv_mpd + 0.1 * l.adv_mrd + l.fm_mpd + 0.1 * l.fm_mrd;
      BOOST_TEST(std::abs(l.loss - expect) < 1e-4 * expect);
    } else {
      BOOST_TEST(l.d_loss == 0);
    }
  }
  BOOST_TEST_MESSAGE("GAN: D loss " << ra.log[2].d_loss << " -> " << ra.log.back().d_loss << ", G loss "
                                    << ra.log[2].loss << " -> " << ra.log.back().loss << " (" << ra.seconds << " s)");

  auto voc = VocosVocoder::load(ra.model_path);
  BOOST_TEST((voc->mel_format() == MelFormat::s3gen()));
  BOOST_TEST(voc->config().dim == 32);
  BOOST_TEST(std::isfinite(copy_synthesis_mel_l1(*voc, list_wavs(list))));
  for (const auto& k : Checkpoint::open(ra.model_path).keys())
    BOOST_TEST((k.rfind("backbone.", 0) == 0 || k.rfind("head.", 0) == 0), "model file holds " << k);
  Checkpoint ck = Checkpoint::open(ra.checkpoint_path);
  BOOST_TEST(ck.has("multiperioddisc.discriminators.4.convs.0.weight_v"));
  BOOST_TEST(ck.has("optim.exp_avg.multiresddisc.discriminators.2.conv_post.weight_g"));

  TrainOptions b = tiny_gan(list, d / "gan_b");
  b.stop_at = 5;
  TrainResult rb1 = train(b);
  BOOST_REQUIRE(rb1.end_step == 5);
  TrainOptions b2 = tiny_gan(list, d / "unused");
  b2.resume = d / "gan_b";
  b2.disc.mrd_channels = 8;  // ignored: the checkpoint's discriminators are used
  TrainResult rb2 = train(b2);
  BOOST_REQUIRE(rb2.log.size() == 5u);
  for (size_t i = 0; i < 5; ++i) BOOST_TEST(rb1.log[i].loss == ra.log[i].loss);
  double worst = 0;
  for (size_t i = 0; i < rb2.log.size(); ++i) {
    const StepLog &r = rb2.log[i], &u = ra.log[5 + i];
    BOOST_TEST(r.step == u.step);
    worst = std::max({worst, std::abs(r.loss - u.loss) / u.loss, std::abs(r.d_loss - u.d_loss) / u.d_loss,
                      std::abs(r.fm_mpd - u.fm_mpd) / u.fm_mpd});
  }
  BOOST_TEST_MESSAGE("GAN resume: worst relative difference " << worst);
  BOOST_TEST(worst <= 1e-6);
}
