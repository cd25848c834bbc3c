#define BOOST_TEST_MODULE mel
#include <boost/test/unit_test.hpp>

#include "elements/mel/features/filterbank.h"
#include "elements/mel/features/mel_extractor.h"
#include "gst-plugins/core/checkpoint.h"
#include "tests/fixtures.h"
#include "tests/mel/table_bound.h"
#include "tests/tensor_compare.h"

#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include <chrono>
#include <cmath>
#include <iostream>
#include <random>
#include <vector>

using namespace chatterbox;
using namespace chatterbox::mel;
using chatterbox::test::bound_ratio;
using chatterbox::test::fixture;
using chatterbox::test::max_abs_diff;
using chatterbox::test::rel_l2;
using chatterbox::test::torchaudio_filterbank_bound;

namespace {

// How far torch.hann_window's float32 evaluation can be from the float64
// formula: its argument n * fl(2 pi / N) carries two roundings of relative
// 2^-24 (|d theta| <= 2^-23 * 2 pi), which 0.5 cos passes on at most halved
// (2^-24 * 2 pi = 3.7e-7); cos's own ulp and the final rounding add <= 2^-24.
const double kHannF32Bound = std::ldexp(1.0, -24) * (2 * M_PI + 1);

// The fixtures README's comparison rules for log-mels (got and expected are
// [T, n_mels]; expected is the float64 reference).
struct MelErrors {
  double rel_frame_max;  // max |exp(got) - exp(exp)| / max over mels of exp(exp) in that frame
  double log_abs_loud;   // max |got - exp| over bins with exp(exp) >= 1e-3 x frame max
  double log_abs_all;    // max |got - exp| over all bins
  double log_rel_l2;     // ||got - exp|| / ||exp||
};

MelErrors mel_errors(const at::Tensor& got, const at::Tensor& expected) {
  at::Tensor g = got.to(at::kDouble), e = expected.to(at::kDouble);
  at::Tensor lin_e = e.exp(), lin_g = g.exp();
  at::Tensor frame_max = std::get<0>(lin_e.max(1, /*keepdim=*/true));  // [T, 1]
  MelErrors r;
  r.rel_frame_max = ((lin_g - lin_e).abs() / frame_max).max().item<double>();
  at::Tensor loud = lin_e >= frame_max * 1e-3;
  r.log_abs_loud = (g - e).abs().masked_select(loud).max().item<double>();
  r.log_abs_all = max_abs_diff(g, e);
  r.log_rel_l2 = rel_l2(g, e);
  return r;
}

void print(const std::string& what, const MelErrors& e) {
  std::cout << what << ": rel-to-frame-max " << e.rel_frame_max << ", log abs (loud bins) " << e.log_abs_loud
            << ", log abs (all) " << e.log_abs_all << ", log rel-L2 " << e.log_rel_l2 << "\n";
}

// [1, n_mels, T] reference -> [T, n_mels]
at::Tensor frame_major(const at::Tensor& ref) { return ref.squeeze(0).t().contiguous(); }

// Feeds `audio` in chunks of the given sizes (cycled), then finishes.
at::Tensor stream(MelStream& s, const at::Tensor& audio, const std::vector<int64_t>& sizes, int64_t* max_buffered) {
  std::vector<at::Tensor> parts;
  const float* x = audio.data_ptr<float>();
  const int64_t n = audio.size(0);
  int64_t pos = 0;
  size_t k = 0;
  *max_buffered = 0;
  while (pos < n) {
    const int64_t c = std::min(sizes[k++ % sizes.size()], n - pos);
    at::Tensor out = s.feed(x + pos, c);
    BOOST_REQUIRE_EQUAL(out.size(1), s.extractor().n_mels());
    parts.push_back(out);
    pos += c;
    *max_buffered = std::max(*max_buffered, s.buffered());
  }
  parts.push_back(s.finish());
  return at::cat(parts, 0);
}

std::vector<int64_t> random_sizes(uint32_t seed, int64_t lo, int64_t hi, int count) {
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int64_t> d(lo, hi);
  std::vector<int64_t> v;
  for (int i = 0; i < count; ++i) v.push_back(d(rng));
  return v;
}

std::string error_of(const MelFormat& f) {
  try {
    MelExtractor ex(f);
  } catch (const ModelError& e) {
    return e.what();
  }
  return "";
}

}  // namespace

// ---------------------------------------------------------------- filterbanks

BOOST_AUTO_TEST_CASE(s3gen_filterbank_and_window) {
  MelExtractor ex(MelFormat::s3gen());
  auto ck = Checkpoint::open(fixture("vocos/mel_s3gen.safetensors"));
  at::Tensor basis = ck.get("test.mel_basis", {80, 961});  // torchaudio in float64, rounded to float32
  at::Tensor fb = ex.filterbank();
  BOOST_REQUIRE_EQUAL(fb.size(0), 80);
  BOOST_REQUIRE_EQUAL(fb.size(1), 961);
  // Ours in float64 vs a float32 rounding of the same float64 formula: half an
  // ulp of float32 (2^-24 relative) plus a little for the scale's own rounding.
  const double d = max_abs_diff(fb, basis);
  const double peak = basis.abs().max().item<double>();
  std::cout << "s3gen basis vs vocos/mel_s3gen: max abs " << d << " (peak " << peak << ")\n";
  BOOST_TEST(d <= 1e-7 * peak);
  // Rounded to float32 it is the stored basis up to 1 ulp (README: 330 of
  // 76880 entries differ by 1 ulp between independent float64 derivations).
  at::Tensor ulp_diff = (fb.to(at::kFloat) != basis).sum();
  std::cout << "  entries differing after float32 rounding: " << ulp_diff.item<int64_t>() << "\n";
  BOOST_TEST(ulp_diff.item<int64_t>() <= 1000);

  // hift/mel_s3gen holds torchaudio's float32 evaluation, 8.8e-8 from the
  // float64 formula (README): 3x that.
  auto hk = Checkpoint::open(fixture("hift/mel_s3gen.safetensors"));
  const double dh = max_abs_diff(fb, hk.get("test.mel_basis", {80, 961}));
  std::cout << "s3gen basis vs hift/mel_s3gen (float32 evaluation): max abs " << dh << "\n";
  BOOST_TEST(dh <= 3 * 8.8e-8);

  // The stored window is torch.hann_window's float32 evaluation, ours the
  // float64 formula: kHannF32Bound apart.
  at::Tensor win = ck.get("test.window", {1920});
  const double dw = max_abs_diff(ex.window(), win);
  std::cout << "s3gen window: max abs " << dw << "\n";
  BOOST_TEST(dw <= kHannF32Bound);
}

BOOST_AUTO_TEST_CASE(vocos_filterbank_and_window) {
  MelExtractor ex(MelFormat::vocos());
  auto ck = Checkpoint::open(fixture("vocos/mel_vocos.safetensors"));
  at::Tensor fb = ck.get("test.mel_fb", {513, 100});  // [n_freqs, n_mels], torchaudio float32 (AVX2 Sleef pow)
  BOOST_REQUIRE_EQUAL(ex.filterbank().size(0), 100);
  BOOST_REQUIRE_EQUAL(ex.filterbank().size(1), 513);
  // Same float32 arithmetic; the reference's pow may differ from ours by an
  // ulp, which tests/mel/table_bound.h propagates to each entry.
  at::Tensor bound = torchaudio_filterbank_bound(24000, 1024, 100, 0.0, 12000.0, MelScale::Htk, MelNorm::None);
  const double d = max_abs_diff(ex.filterbank().t(), fb);
  const double ratio = bound_ratio(ex.filterbank(), fb.t(), bound);
  std::cout << "vocos filterbank (torchaudio float32 arithmetic) vs stored: max abs " << d
            << ", worst entry at " << ratio << " of its one-ulp bound (largest bound "
            << bound.max().item<double>() << ")\n";
  BOOST_TEST(ratio <= 1.0);
  // The float64 formula differs from torchaudio's float32 numbers by float32
  // rounding of the mel edges (README: the expected mels use the float32 ones).
  const double d64 = max_abs_diff(
      mel_filterbank(24000, 1024, 100, 0.0, 12000.0, MelScale::Htk, MelNorm::None).t(), fb);
  std::cout << "  float64 HTK formula vs stored: max abs " << d64 << "\n";
  BOOST_TEST(d64 <= 5e-5);
  // And torchaudio's float32 Slaney evaluation is hift/mel_s3gen's basis,
  // within the same one-ulp (exp) analysis.
  auto hk = Checkpoint::open(fixture("hift/mel_s3gen.safetensors"));
  at::Tensor slaney = mel_filterbank_torchaudio_f32(24000, 1920, 80, 0.0, 8000.0, MelScale::Slaney, MelNorm::Slaney);
  at::Tensor stored_slaney = hk.get("test.mel_basis", {80, 961});
  const double rs = bound_ratio(
      slaney, stored_slaney,
      torchaudio_filterbank_bound(24000, 1920, 80, 0.0, 8000.0, MelScale::Slaney, MelNorm::Slaney));
  std::cout << "  torchaudio float32 slaney vs hift/mel_s3gen basis: max abs " << max_abs_diff(slaney, stored_slaney)
            << ", " << rs << " of the bound\n";
  BOOST_TEST(rs <= 1.0);
  // torch.hann_window in float32: ours differs only where the reference's
  // cos does by its ulp (<= 2^-24 below 1), halved by the 0.5 factor, the
  // final rounding then within half an ulp: <= 2^-24.
  const double dw = max_abs_diff(ex.window(), ck.get("test.window", {1024}));
  std::cout << "vocos window: max abs " << dw << "\n";
  BOOST_TEST(dw <= std::ldexp(1.0, -24));
  // The float64 periodic Hann is within float32 evaluation error of it.
  BOOST_TEST(max_abs_diff(hann_window(1024), ck.get("test.window", {1024})) <= kHannF32Bound);
}

BOOST_AUTO_TEST_CASE(mel_scales) {
  // Slaney: linear 200/3 Hz per mel below 1 kHz (= 15 mel), 27 mels per factor 6.4 above.
  BOOST_TEST(std::fabs(hz_to_mel(1000.0, MelScale::Slaney) - 15.0) < 1e-12);
  BOOST_TEST(std::fabs(hz_to_mel(6400.0, MelScale::Slaney) - 42.0) < 1e-12);
  BOOST_TEST(std::fabs(hz_to_mel(500.0, MelScale::Slaney) - 7.5) < 1e-12);
  // HTK: 1000 Hz is about 1000 mel.
  BOOST_TEST(std::fabs(hz_to_mel(1000.0, MelScale::Htk) - 999.9855) < 1e-3);
  for (double hz : {0.0, 123.0, 999.0, 1000.0, 4321.0, 12000.0})
    for (MelScale s : {MelScale::Slaney, MelScale::Htk})
      BOOST_TEST(std::fabs(mel_to_hz(hz_to_mel(hz, s), s) - hz) < 1e-9 * std::max(1.0, hz));
  // Periodic vs symmetric Hann.
  at::Tensor p = hann_window(4, true), q = hann_window(5, false);
  std::vector<double> ep{0.0, 0.5, 1.0, 0.5}, eq{0.0, 0.5, 1.0, 0.5, 0.0};
  for (int i = 0; i < 4; ++i) BOOST_TEST(std::fabs(p[i].item<double>() - ep[i]) < 1e-15);
  for (int i = 0; i < 5; ++i) BOOST_TEST(std::fabs(q[i].item<double>() - eq[i]) < 1e-15);
}

// ---------------------------------------------------------------- parity

BOOST_AUTO_TEST_CASE(s3gen_mel_parity) {
  MelExtractor ex(MelFormat::s3gen());
  auto ck = Checkpoint::open(fixture("vocos/mel_s3gen.safetensors"));
  at::Tensor audio = ck.get("test.audio", {1, 164372}).squeeze(0);
  at::Tensor expected = frame_major(ck.get_raw("test.mel_f64"));  // [342, 80]
  at::Tensor got = ex.compute(audio);
  BOOST_REQUIRE_EQUAL(got.scalar_type(), at::kFloat);
  BOOST_REQUIRE_EQUAL(got.size(0), 342);
  BOOST_REQUIRE_EQUAL(got.size(1), 80);
  MelErrors e = mel_errors(got, expected);
  print("s3gen float32 vs mel_f64", e);
  BOOST_TEST(e.rel_frame_max <= 7e-6);
  BOOST_TEST(e.log_abs_loud <= 2e-4);
  BOOST_TEST(e.log_abs_all <= 8e-4);
  BOOST_TEST(e.log_rel_l2 <= 6e-6);
  // Reference's own float32 output, for orientation (README: measured 6.3e-7 / 7.4e-5).
  print("  (reference float32 vs mel_f64)", mel_errors(frame_major(ck.get("test.mel")), expected));

  // In float64 the only difference left is the float32 rounding of the
  // reference's basis (~6e-8 relative): the recipe itself must match exactly.
  MelErrors e64 = mel_errors(ex.compute(audio.to(at::kDouble)), expected);
  print("s3gen float64 vs mel_f64", e64);
  BOOST_TEST(e64.rel_frame_max <= 2e-7);
  BOOST_TEST(e64.log_abs_loud <= 2e-6);
}

BOOST_AUTO_TEST_CASE(vocos_mel_parity) {
  MelExtractor ex(MelFormat::vocos());
  auto ck = Checkpoint::open(fixture("vocos/mel_vocos.safetensors"));
  at::Tensor audio = ck.get("test.audio", {1, 164372}).squeeze(0);
  at::Tensor expected = frame_major(ck.get_raw("test.mel_f64"));  // [643, 100]
  // The recipe, in float64 with the reference's own tables: equal to
  // float64 rounding.
  MelExtractor ref_tables = ex.with_tables(ck.get("test.mel_fb", {513, 100}).t(), ck.get("test.window", {1024}));
  MelErrors recipe = mel_errors(ref_tables.compute(audio.to(at::kDouble)), expected);
  print("vocos float64, reference tables, vs mel_f64", recipe);
  BOOST_TEST(recipe.rel_frame_max <= 1e-12);
  BOOST_TEST(recipe.log_abs_loud <= 1e-10);

  // Our float32 computation against our float64 one (same tables): the
  // README's float32 criteria. Only the two frame-relative ones apply: the
  // empty bands above 11 kHz are float32 rounding noise (README).
  at::Tensor got = ex.compute(audio);
  BOOST_REQUIRE_EQUAL(got.size(0), 643);
  BOOST_REQUIRE_EQUAL(got.size(1), 100);
  at::Tensor ours64 = ex.compute(audio.to(at::kDouble));
  MelErrors e32 = mel_errors(got, ours64);
  print("vocos float32 vs our float64", e32);
  BOOST_TEST(e32.rel_frame_max <= 6e-6);
  BOOST_TEST(e32.log_abs_loud <= 6e-4);

  // Against the reference: the float32 error plus what our tables' last bits
  // (vocos_filterbank_and_window: within one ulp of pow) do to the mel,
  // computed exactly in float64 (the same on every CPU).
  MelErrors tables = mel_errors(ours64, expected);
  MelErrors e = mel_errors(got, expected);
  print("vocos float32 vs mel_f64", e);
  print("  (our tables vs the reference's, float64)", tables);
  print("  (reference float32 vs mel_f64)", mel_errors(frame_major(ck.get("test.mel")), expected));
  BOOST_TEST(e.rel_frame_max <= 6e-6 + tables.rel_frame_max);
  BOOST_TEST(e.log_abs_loud <= 6e-4 + tables.log_abs_loud);
  BOOST_TEST(tables.rel_frame_max <= 1e-4);  // 1-ulp tables stay far below a wrong formula (3.3e-5 for float64 ones)
}

BOOST_AUTO_TEST_CASE(hift_mel_parity) {
  MelExtractor ex(MelFormat::s3gen());
  auto ck = Checkpoint::open(fixture("hift/mel_s3gen.safetensors"));
  at::Tensor audio = ck.get("test.wave_24k", {1, 80051}).squeeze(0);
  at::Tensor expected = frame_major(ck.get("test.output_mel", {1, 80, 166}));
  at::Tensor got = ex.compute(audio);
  BOOST_REQUIRE_EQUAL(got.size(0), 166);
  const double d = max_abs_diff(got, expected);
  std::cout << "hift output_mel: max abs " << d << "\n";
  BOOST_TEST(d <= 1e-3);
}

// ---------------------------------------------------------------- streaming

BOOST_AUTO_TEST_CASE(streaming_equals_whole) {
  auto ck = Checkpoint::open(fixture("vocos/mel_vocos.safetensors"));
  at::Tensor audio = ck.get("test.audio", {1, 164372}).squeeze(0).contiguous();
  for (const MelFormat& fmt : {MelFormat::s3gen(), MelFormat::vocos()}) {
    MelExtractor ex(fmt);
    MelStream s(ex);
    at::Tensor whole = ex.compute(audio);
    std::vector<std::vector<int64_t>> chunkings = {
        {1}, {fmt.hop_length}, {fmt.n_fft}, {7}, {100000}, {164372}, {ex.pad(), 1, ex.pad() + 1},
        random_sizes(1, 1, 3000, 200), random_sizes(2, 1, 50, 2000)};
    for (const auto& sizes : chunkings) {
      int64_t max_buf = 0;
      at::Tensor got = stream(s, audio, sizes, &max_buf);
      BOOST_REQUIRE_EQUAL(got.size(0), whole.size(0));
      const double d = max_abs_diff(got, whole);
      if (d != 0.0)
        std::cout << fmt.padding << " chunk " << sizes[0] << "...: stream vs whole max abs " << d << "\n";
      // Same samples in the same frames: only batch-dependent FFT/GEMM
      // blocking could differ, at float32 rounding level.
      BOOST_TEST(d <= 1e-5);
      BOOST_TEST(max_buf <= fmt.n_fft);
      BOOST_TEST(s.samples_fed() == 0);  // finish() reset the stream
    }
  }
}

BOOST_AUTO_TEST_CASE(frames_arrive_as_soon_as_complete) {
  for (const MelFormat& fmt : {MelFormat::s3gen(), MelFormat::vocos()}) {
    MelExtractor ex(fmt);
    MelStream s(ex);
    at::Tensor audio = at::randn({20000}, at::kFloat) * 0.1;
    const float* x = audio.data_ptr<float>();
    int64_t frames = 0;
    for (int64_t i = 0; i < 20000; ++i) {
      frames += s.feed(x + i, 1).size(0);
      // After i+1 samples exactly the frames whose samples are all known are out.
      int64_t expect = 0;
      while (ex.samples_for_frames(expect + 1) <= i + 1) ++expect;
      BOOST_REQUIRE_EQUAL(frames, expect);
    }
    frames += s.finish().size(0);
    BOOST_TEST(frames == ex.num_frames(20000));
  }
  MelExtractor s3(MelFormat::s3gen()), vc(MelFormat::vocos());
  // S3Gen: frame t ends at padded t*480 + 1920, i.e. audio sample 480 t + 1200.
  BOOST_TEST(s3.samples_for_frames(1) == 1200);
  BOOST_TEST(s3.samples_for_frames(2) == 1680);
  // Vocos: frame 0 needs the start reflection x[1..512] (513 samples).
  BOOST_TEST(vc.samples_for_frames(1) == 513);
  BOOST_TEST(vc.samples_for_frames(2) == 768);
}

BOOST_AUTO_TEST_CASE(frame_counts) {
  MelExtractor s3(MelFormat::s3gen()), vc(MelFormat::vocos());
  for (int64_t n : {0, 1, 2, 100, 255, 256, 257, 479, 480, 481, 512, 513, 719, 720, 721, 959, 960, 961, 1000, 24000,
                    24001, 80051}) {
    at::Tensor audio = at::randn({n}, at::kFloat) * 0.1;
    const int64_t e_s3 = n / 480;
    const int64_t e_vc = n == 0 ? 0 : 1 + n / 256;
    BOOST_TEST(s3.num_frames(n) == e_s3, "s3gen N=" << n);
    BOOST_TEST(vc.num_frames(n) == e_vc, "vocos N=" << n);
    at::Tensor a = s3.compute(audio), b = vc.compute(audio);
    BOOST_TEST(a.size(0) == e_s3, "s3gen compute N=" << n);
    BOOST_TEST(b.size(0) == e_vc, "vocos compute N=" << n);
    BOOST_TEST(a.size(1) == 80);
    BOOST_TEST(b.size(1) == 100);
    // Streaming agrees for short and long alike (incl. N <= pad).
    for (MelExtractor* ex : {&s3, &vc}) {
      MelStream s(*ex);
      int64_t max_buf = 0;
      at::Tensor st = n == 0 ? s.finish() : stream(s, audio, {37}, &max_buf);
      at::Tensor wh = ex->compute(audio);
      BOOST_REQUIRE_EQUAL(st.size(0), wh.size(0));
      if (wh.size(0) > 0) BOOST_TEST(max_abs_diff(st, wh) <= 1e-5, "stream N=" << n);
    }
  }
}

BOOST_AUTO_TEST_CASE(reflect_padding) {
  // N > pad: torch's reflect (no edge repeat).
  MelFormat f = MelFormat::vocos();
  f.n_fft = 8;
  f.win_length = 8;
  f.hop_length = 2;
  f.n_mels = 2;
  MelExtractor ex(f);  // pad 4
  at::Tensor x = at::arange(1, 7, at::kFloat);  // 1..6
  std::vector<float> e1{5, 4, 3, 2, 1, 2, 3, 4, 5, 6, 5, 4, 3, 2};
  at::Tensor p1 = ex.reflect_pad(x);
  BOOST_REQUIRE_EQUAL(p1.size(0), 14);
  for (int i = 0; i < 14; ++i) BOOST_TEST(p1[i].item<float>() == e1[i]);
  // N <= pad: periodic mirroring, as numpy.pad(mode="reflect"): 1 2 3 2 1 2 3 ...
  at::Tensor y = at::arange(1, 4, at::kFloat);
  std::vector<float> e2{1, 2, 3, 2, 1, 2, 3, 2, 1, 2, 3};
  at::Tensor p2 = ex.reflect_pad(y);
  BOOST_REQUIRE_EQUAL(p2.size(0), 11);
  for (int i = 0; i < 11; ++i) BOOST_TEST(p2[i].item<float>() == e2[i]);
  at::Tensor p3 = ex.reflect_pad(at::full({1}, 0.25f));
  BOOST_TEST(p3.size(0) == 9);
  BOOST_TEST((p3 == 0.25f).all().item<bool>());
  // compute() is frames_to_mel over that padding.
  at::Tensor direct = ex.frames_to_mel(p2, ex.num_frames(3));
  BOOST_TEST(max_abs_diff(direct, ex.compute(y)) == 0.0);
}

BOOST_AUTO_TEST_CASE(stream_reuse_and_reset) {
  MelStream s(MelFormat::s3gen());
  at::Tensor a = at::randn({5000}, at::kFloat) * 0.1, b = at::randn({3000}, at::kFloat) * 0.1;
  s.feed(b.slice(0, 0, 2500));
  s.reset();  // dropped: must not leak into the next utterance
  at::Tensor ra = at::cat({s.feed(a), s.finish()});
  at::Tensor rb = at::cat({s.feed(b), s.finish()});
  BOOST_TEST(max_abs_diff(ra, s.extractor().compute(a)) <= 1e-5);
  BOOST_TEST(max_abs_diff(rb, s.extractor().compute(b)) <= 1e-5);
  BOOST_TEST(s.finish().size(0) == 0);  // nothing fed: no frames
}

// ---------------------------------------------------------------- refusals

BOOST_AUTO_TEST_CASE(invalid_formats_refused) {
  auto expect = [](MelFormat f, const std::string& needle) {
    std::string msg = error_of(f);
    BOOST_TEST(msg.find(needle) != std::string::npos, "'" << needle << "' not in: " << msg);
  };
  MelFormat f = MelFormat::s3gen();
  f.padding = "valid";
  expect(f, "padding='valid' is not supported");
  f = MelFormat::s3gen();
  f.power = 3;
  expect(f, "power=3");
  f = MelFormat::vocos();
  f.mel_scale = "bark";
  expect(f, "mel-scale='bark'");
  f = MelFormat::vocos();
  f.norm = "l2";
  expect(f, "norm='l2'");
  f = MelFormat::s3gen();
  f.win_length = 2048;
  expect(f, "win-length");
  f = MelFormat::vocos();
  f.f_max = 13000;
  expect(f, "Nyquist");
  f = MelFormat::s3gen();
  f.hop_length = 481;
  expect(f, "even difference");
  f = MelFormat::s3gen();
  f.log_floor = 0;
  expect(f, "log-floor");
  f = MelFormat::s3gen();
  f.n_fft = 64;
  f.win_length = 64;
  f.hop_length = 16;
  f.n_mels = 128;
  expect(f, "would always be empty");
  // Several problems are all named.
  f = MelFormat::s3gen();
  f.padding = "x";
  f.power = 0;
  std::string msg = error_of(f);
  BOOST_TEST(msg.find("padding") != std::string::npos);
  BOOST_TEST(msg.find("power") != std::string::npos);

  MelExtractor ex(MelFormat::s3gen());
  BOOST_CHECK_THROW(ex.compute(at::zeros({1, 1000}, at::kFloat)), ModelError);
  BOOST_CHECK_THROW(ex.compute(at::zeros({1000}, at::kInt)), ModelError);
}

// Other supported combinations build and run (power 2, win < n_fft, f_min > 0).
BOOST_AUTO_TEST_CASE(other_layouts) {
  MelFormat f = MelFormat::vocos();
  f.power = 2;
  f.win_length = 800;
  f.f_min = 30;
  f.mag_eps = 1e-9;
  MelExtractor ex(f);
  at::Tensor w = ex.window();
  BOOST_TEST(w[111].item<double>() == 0.0);  // (1024 - 800)/2 = 112 zeros on the left
  BOOST_TEST(w[112].item<double>() == 0.0);  // the Hann window starts at 0
  BOOST_TEST(w[113].item<double>() > 0.0);
  BOOST_TEST(w[912].item<double>() == 0.0);
  at::Tensor audio = at::randn({10000}, at::kFloat) * 0.1;
  at::Tensor m = ex.compute(audio);
  BOOST_TEST(m.size(0) == 1 + 10000 / 256);
  MelStream s(ex);
  at::Tensor st = at::cat({s.feed(audio), s.finish()});
  BOOST_TEST(max_abs_diff(st, m) <= 1e-5);
  BOOST_TEST(at::isfinite(m).all().item<bool>());

  // No padding ("same" with n_fft == hop) and an odd n_fft ("center", pad 200).
  MelFormat np = MelFormat::s3gen();
  np.n_fft = np.win_length = np.hop_length = 512;
  MelFormat odd = MelFormat::vocos();
  odd.n_fft = odd.win_length = 401;
  odd.hop_length = 100;
  odd.n_mels = 40;
  for (const MelFormat& fmt : {np, odd}) {
    MelExtractor e2(fmt);
    for (int64_t n : {1, 150, 511, 512, 513, 10000}) {
      at::Tensor a = at::randn({n}, at::kFloat) * 0.1;
      at::Tensor whole = e2.compute(a);
      BOOST_TEST(whole.size(0) == (fmt.padding == "same" ? n / 512 : 1 + (n - 1) / 100), fmt.padding << " N=" << n);
      MelStream s2(e2);
      int64_t max_buf = 0;
      at::Tensor st = stream(s2, a, {1, 33, 700}, &max_buf);
      BOOST_REQUIRE_EQUAL(st.size(0), whole.size(0));
      if (whole.size(0) > 0) BOOST_TEST(max_abs_diff(st, whole) <= 1e-5);
      BOOST_TEST(max_buf <= fmt.n_fft);
    }
  }
}

// ---------------------------------------------------------------- timing

BOOST_AUTO_TEST_CASE(timing_10s) {
  // Reported, not asserted (shared CI machines): best of several runs.
  at::Tensor audio = at::randn({240000}, at::kFloat) * 0.1;
  using clock = std::chrono::steady_clock;
  auto ms = [](clock::time_point a, clock::time_point b) { return std::chrono::duration<double, std::milli>(b - a).count(); };
  for (const MelFormat& fmt : {MelFormat::s3gen(), MelFormat::vocos()}) {
    MelExtractor ex(fmt);
    at::Tensor m = ex.compute(audio);  // warm-up
    double whole_ms = 1e30, stream_ms = 1e30;
    int64_t streamed = 0;
    for (int rep = 0; rep < 10; ++rep) {
      auto t0 = clock::now();
      m = ex.compute(audio);
      auto t1 = clock::now();
      MelStream s(ex);
      std::vector<at::Tensor> parts;
      const float* x = audio.data_ptr<float>();
      for (int64_t pos = 0; pos < 240000; pos += 480) parts.push_back(s.feed(x + pos, 480));
      parts.push_back(s.finish());
      auto t2 = clock::now();
      whole_ms = std::min(whole_ms, ms(t0, t1));
      stream_ms = std::min(stream_ms, ms(t1, t2));
      streamed = at::cat(parts).size(0);
    }
    std::cout << fmt.padding << " layout (" << fmt.n_mels << " mels, hop " << fmt.hop_length << "): 10 s of audio -> "
              << m.size(0) << " frames in " << whole_ms << " ms whole, " << stream_ms
              << " ms streamed in 20 ms chunks (best of 10, " << at::get_num_threads() << " threads)\n";
    BOOST_TEST(m.size(0) == ex.num_frames(240000));
    BOOST_TEST(streamed == m.size(0));
  }
}
