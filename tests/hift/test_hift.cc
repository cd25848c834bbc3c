#define BOOST_TEST_MODULE hift
#include <boost/test/unit_test.hpp>

#include "elements/vocoder/hift/hift.h"
#include "elements/vocoder/hift/hift_kernels.h"
#include "gst-plugins/core/kernels/packed_conv.h"
#include "gst-plugins/core/compute_threads.h"
#include "gst-plugins/core/checkpoint.h"
#include "tests/fixtures.h"
#include "tests/test_util.h"
#include "tests/tensor_compare.h"

#include <ATen/ATen.h>
#include <nlohmann/json.hpp>

#include <cstdio>
#include <filesystem>
#include <unistd.h>
#include <fstream>
#include <iostream>
#include <random>
#include <sstream>
#include <thread>
using chatterbox::test::contains;

using namespace chatterbox;
using namespace chatterbox::hift;
using chatterbox::test::fixture;
using chatterbox::test::max_abs_diff;

namespace {

struct Tiny {
  Checkpoint ck = Checkpoint::open(fixture("hift/hift_tiny.safetensors"));
  std::shared_ptr<HiftModel> model = HiftModel::from_checkpoint(ck);
  at::Tensor t(const std::string& name) const { return ck.get("test." + name); }
};
const Tiny& tiny() {
  static Tiny t;
  return t;
}

void report(const std::string& what, double err, double tol) {
  std::cout << "  " << what << ": max abs " << err << " (tolerance " << tol << ")\n";
  BOOST_TEST(err <= tol, what << ": " << err << " > " << tol);
}

// Streamed vs whole: within the tolerance, and bit-identical where the
// packed convolution kernel runs (its sums do not depend on the chunking).
void report_stream(const std::string& what, const at::Tensor& streamed, const at::Tensor& whole) {
  const double err = max_abs_diff(streamed, whole);
  report(what, err, 2e-5);
  if (chatterbox::kernels::packed_conv_available()) BOOST_TEST(err == 0.0, what << ": not bit-identical (" << err << ")");
}

// Streams mel [1, 80, T] through `voc` in the given chunk sizes (cycled).
at::Tensor stream(HiftVocoder& voc, const at::Tensor& mel, const std::vector<int64_t>& sizes) {
  at::Tensor frames = mel[0].t().contiguous();  // [T, 80]
  std::vector<at::Tensor> out;
  int64_t pos = 0, i = 0;
  while (pos < frames.size(0)) {
    int64_t n = std::min<int64_t>(sizes[i++ % sizes.size()], frames.size(0) - pos);
    out.push_back(voc.feed(frames.narrow(0, pos, n)));
    pos += n;
    BOOST_TEST(voc.frames_in() == pos);
  }
  out.push_back(voc.drain());
  return at::cat(out);
}

}  // namespace

BOOST_AUTO_TEST_CASE(config_from_fixture_metadata) {
  const HiftConfig& c = tiny().model->config();
  BOOST_TEST(c.base_channels == 32);
  BOOST_TEST(c.f0_cond_channels == 32);
  BOOST_TEST(c.samples_per_frame() == 480);
  BOOST_TEST(c.n_sines() == 9);
  HiftConfig d = HiftConfig::chatterbox();
  BOOST_TEST(d.base_channels == 512);
  BOOST_TEST(d.f0_cond_channels == 512);
  BOOST_TEST(HiftConfig::from_json(d.to_json()).source_resblock_kernel_sizes == d.source_resblock_kernel_sizes);
}

BOOST_AUTO_TEST_CASE(f0_matches_reference) {
  const Tiny& f = tiny();
  at::Tensor f0 = f.model->f0(f.t("input_mel"));
  at::Tensor ref = f.t("f0");
  BOOST_TEST(f0.sizes() == ref.sizes());
  report("f0 [Hz]", max_abs_diff(f0, ref), 5e-4 * ref.max().item<double>());
}

BOOST_AUTO_TEST_CASE(source_from_stored_f0) {
  const Tiny& f = tiny();
  at::Tensor s = f.model->source_from_f0(f.t("f0"));
  BOOST_TEST(s.sizes() == f.t("source").sizes());
  report("source from stored f0", max_abs_diff(s, f.t("source")), 2.5e-3);
}

BOOST_AUTO_TEST_CASE(decode_from_stored_source) {
  const Tiny& f = tiny();
  auto d = f.model->decode(f.t("input_mel"), f.t("source"));
  BOOST_TEST(d.conv_post_out.sizes() == f.t("conv_post_out").sizes());
  report("conv_post_out", max_abs_diff(d.conv_post_out, f.t("conv_post_out")), 5e-5);
  BOOST_TEST(d.audio.sizes() == f.t("output_audio").sizes());
  report("decode audio", max_abs_diff(d.audio, f.t("output_audio")), 2e-5);
}

BOOST_AUTO_TEST_CASE(end_to_end_and_trim_fade) {
  const Tiny& f = tiny();
  at::Tensor src;
  at::Tensor audio = f.model->inference(f.t("input_mel"), SourceDraws::deterministic(), &src);
  BOOST_TEST(audio.size(1) == 480 * 166);
  report("end-to-end source", max_abs_diff(src, f.t("source")), 2.5e-3);
  report("end-to-end audio", max_abs_diff(audio, f.t("output_audio")), 1.5e-3);
  // Same float32 steps as the reference (torch_f32.h); only its cos may
  // differ by an ulp (<= 2^-24), which c + 1 in [0, 2] can turn into one
  // rounding step of 2^-22, halved by / 2: <= 2^-23, and 2x that.
  report("trim_fade", max_abs_diff(trim_fade(24000), f.t("trim_fade")), std::ldexp(1.0, -22));
  HiftVocoder voc(f.model);  // trim fade on by default, as S3Token2Wav
  report("end-to-end trim-faded", max_abs_diff(voc.forward(f.t("input_mel")), f.t("output_audio_trim_faded")), 1.5e-3);
  HiftVocoderOptions o;
  o.trim_fade = false;
  HiftVocoder raw(f.model, o);
  BOOST_TEST(at::equal(raw.forward(f.t("input_mel")), audio));
}

BOOST_AUTO_TEST_CASE(reference_chunked_calls) {
  // The reference's own chunked calls (cache_source), rebuilt from the stages.
  const Tiny& f = tiny();
  at::Tensor mel = f.t("input_mel");
  at::Tensor m1 = mel.narrow(2, 0, 100);
  at::Tensor s1;
  at::Tensor a1 = f.model->inference(m1, SourceDraws::deterministic(), &s1);
  report("chunk1 audio", max_abs_diff(a1, f.t("chunk1_audio")), 1.5e-3);
  report("chunk1 source", max_abs_diff(s1, f.t("chunk1_source")), 2.5e-3);
  // chunk2: mel[92:], its fresh source with the first 3840 samples replaced.
  at::Tensor m2 = mel.narrow(2, 92, 74);
  at::Tensor s2 = f.model->source_from_f0(f.model->f0(m2)).clone();  // (inference tensors are read-only outside)
  s2.narrow(2, 0, 3840).copy_(f.t("chunk1_source").narrow(2, 48000 - 3840, 3840));
  report("chunk2 source", max_abs_diff(s2, f.t("chunk2_source")), 2.5e-3);
  report("chunk2 audio from stored cache", max_abs_diff(f.model->decode(m2, s2).audio, f.t("chunk2_audio")), 1.5e-3);
  at::Tensor sp = f.model->source_from_f0(f.model->f0(mel)).clone();
  sp.narrow(2, 0, 48000).copy_(f.t("chunk1_source"));
  report("chunk2 prefix audio", max_abs_diff(f.model->decode(mel, sp).audio, f.t("chunk2_prefix_audio")), 1.5e-3);
}

BOOST_AUTO_TEST_CASE(injected_noise_reproduces_reference) {
  Checkpoint ck = Checkpoint::open(fixture("hift/hift_tiny_injected_noise.safetensors"));
  auto model = HiftModel::from_checkpoint(ck);
  at::Tensor mel = ck.get("test.input_mel");
  SourceDraws d = SourceDraws::injected(ck.get("test.rand.0"), ck.get("test.rand.1"));
  at::Tensor f0 = model->f0(mel);
  report("injected: f0", max_abs_diff(f0, ck.get("test.f0")), 5e-4 * ck.get("test.f0").max().item<double>());
  report("injected: source from stored f0", max_abs_diff(model->source_from_f0(ck.get("test.f0"), d), ck.get("test.source")),
         2.5e-3);
  at::Tensor src;
  at::Tensor audio = model->inference(mel, d, &src);
  report("injected: end-to-end audio", max_abs_diff(audio, ck.get("test.output_audio")), 1.5e-3);
  report("injected: decode from stored source",
         max_abs_diff(model->decode(mel, ck.get("test.source")).audio, ck.get("test.output_audio")), 2e-5);
  // Streaming with injected draws equals the whole run.
  HiftVocoderOptions o;
  o.draws = d;
  o.trim_fade = false;
  HiftVocoder voc(model, o);
  report_stream("injected: streamed (7-frame chunks) vs whole", stream(voc, mel, {7}), audio[0]);
  // Too few recorded draws is an error, not garbage.
  SourceDraws shortd = SourceDraws::injected(ck.get("test.rand.0"), ck.get("test.rand.1").narrow(2, 0, 1000));
  BOOST_CHECK_THROW(model->inference(mel, shortd), ModelError);
}

BOOST_AUTO_TEST_CASE(receptive_field_and_lookahead) {
  const Tiny& f = tiny();
  HiftVocoder voc(f.model);
  const auto& fld = f.model->field();
  std::cout << "  field: mel -" << fld.mel_left << "/+" << fld.mel_right << " frames, source -" << fld.src_left
            << "/+" << fld.src_right << " samples; default lookahead " << voc.default_lookahead_frames()
            << " frames\n";
  BOOST_TEST(fld.f0_radius == 5);
  BOOST_TEST(voc.default_lookahead_frames() >= fld.mel_right);
  BOOST_TEST(voc.default_lookahead_frames() == voc.lookahead_frames());
}

BOOST_AUTO_TEST_CASE(streaming_equals_whole_utterance) {
  const Tiny& f = tiny();
  at::Tensor mel = f.t("input_mel");
  HiftVocoder whole_v(f.model);
  at::Tensor whole = whole_v.forward(mel)[0];
  std::mt19937 rng(7);
  std::vector<int64_t> rnd;
  for (int i = 0; i < 64; ++i) rnd.push_back(std::uniform_int_distribution<int>(0, 23)(rng));  // 0 = empty feed
  rnd[0] = 2;
  std::vector<std::pair<std::string, std::vector<int64_t>>> chunkings{
      {"1", {1}}, {"3", {3}}, {"17", {17}}, {"random 0..23", rnd}, {"all at once", {1000}}};
  HiftVocoder voc(f.model);
  for (auto& [label, sizes] : chunkings) {
    at::Tensor s = stream(voc, mel, sizes);
    BOOST_TEST(s.numel() == 480 * 166);
    BOOST_TEST(voc.samples_out() == 0);  // drain resets
    report_stream("streamed (" + label + ") vs whole", s, whole);
  }
  // The vocoder is reusable after drain and after reset.
  at::Tensor frames = mel[0].t();
  voc.feed(frames.narrow(0, 0, 50));
  voc.reset();
  BOOST_TEST(voc.samples_out() == 0);
  BOOST_TEST(voc.frames_in() == 0);
  report_stream("streamed after reset", stream(voc, mel, {5}), whole);
}

BOOST_AUTO_TEST_CASE(output_timing_and_lengths) {
  const Tiny& f = tiny();
  at::Tensor frames = f.t("input_mel")[0].t().contiguous();
  for (int64_t L : {int64_t(-1), int64_t(0), int64_t(3), int64_t(10)}) {
    HiftVocoderOptions o;
    o.lookahead_frames = L;
    HiftVocoder voc(f.model, o);
    const int64_t la = voc.lookahead_frames();
    int64_t total = 0;
    for (int64_t n = 1; n <= 40; ++n) {
      total += voc.feed(frames.narrow(0, n - 1, 1)).numel();
      BOOST_TEST(total == 480 * std::max<int64_t>(0, n - la), "lookahead " << la << " after " << n << " frames");
      BOOST_TEST(voc.samples_out() == total);
    }
    total += voc.drain().numel();
    BOOST_TEST(total == 480 * 40);
  }
  // A reduced lookahead still gives exactly 480 T samples, and is close.
  HiftVocoderOptions o;
  o.lookahead_frames = 2;
  HiftVocoder low(f.model, o);
  HiftVocoder ref(f.model);
  at::Tensor a = stream(low, f.t("input_mel"), {4});
  at::Tensor b = ref.forward(f.t("input_mel"))[0];
  BOOST_TEST(a.numel() == b.numel());
  std::cout << "  lookahead 2 frames vs exact: max abs " << max_abs_diff(a, b) << "\n";
  BOOST_TEST(at::isfinite(a).all().item<bool>());
  // Tiny utterances: 1 and 2 frames.
  for (int64_t T : {1, 2}) {
    HiftVocoder v(f.model);
    at::Tensor m = f.t("input_mel").narrow(2, 60, T);
    at::Tensor s = stream(v, m, {1});
    BOOST_TEST(s.numel() == 480 * T);
    report_stream("T=" + std::to_string(T) + " streamed vs whole", s, HiftVocoder(f.model).forward(m)[0]);
  }
}

BOOST_AUTO_TEST_CASE(random_mode_streams_consistently) {
  const Tiny& f = tiny();
  HiftVocoderOptions o;
  o.draws = SourceDraws::random(42);
  HiftVocoder a(f.model, o), b(f.model, o);
  at::Tensor mel = f.t("input_mel");
  at::Tensor whole = a.forward(mel)[0];
  at::Tensor s = stream(b, mel, {5, 1, 9});
  report_stream("random mode: streamed vs whole (same draws)", s, whole);
  HiftVocoder det(f.model);
  at::Tensor d = det.forward(mel)[0];
  BOOST_TEST(max_abs_diff(whole, d) > 1e-4);  // the draws do something
  // The next utterance uses fresh draws.
  at::Tensor again = a.forward(mel)[0];
  BOOST_TEST(max_abs_diff(again, whole) > 1e-4);
}

// The incremental layers carry state across feed() calls; these cases would
// show any state bug (a lost or doubled column, a stale buffer after reset or
// drain, a provisional flush leaking into the committed state).
BOOST_AUTO_TEST_CASE(streaming_state_survives_any_split) {
  const Tiny& f = tiny();
  at::Tensor mel = f.t("input_mel");
  HiftVocoderOptions o;
  o.draws = SourceDraws::random(11);  // seeded noise and phases, trim fade on
  HiftVocoder whole_v(f.model, o), voc(f.model, o);
  // Utterance n uses seed + n in both, so each split is compared with the
  // whole run of the same utterance index.
  std::mt19937 rng(3);
  for (int trial = 0; trial < 6; ++trial) {
    at::Tensor whole = whole_v.forward(mel)[0];
    std::vector<int64_t> sizes;
    for (int i = 0; i < 40; ++i) sizes.push_back(std::uniform_int_distribution<int>(0, 2 + 9 * (trial % 3))(rng));
    sizes[0] = 1;
    at::Tensor s = stream(voc, mel, sizes);
    BOOST_TEST(s.numel() == whole.numel());
    report_stream("seeded, random split " + std::to_string(trial) + " vs whole", s, whole);
  }
  // Two vocoders on one model, fed interleaved, do not see each other's state.
  HiftVocoder a(f.model), b(f.model), ref(f.model);
  at::Tensor other = (mel.flip(2) * 0.5).contiguous();
  at::Tensor fa = mel[0].t().contiguous(), fb = other[0].t().contiguous();
  std::vector<at::Tensor> oa, ob;
  for (int64_t p = 0; p < fa.size(0); p += 4) {
    oa.push_back(a.feed(fa.narrow(0, p, std::min<int64_t>(4, fa.size(0) - p))));
    ob.push_back(b.feed(fb.narrow(0, p, std::min<int64_t>(4, fb.size(0) - p))));
  }
  oa.push_back(a.drain());
  ob.push_back(b.drain());
  report_stream("interleaved vocoder A vs whole", at::cat(oa), ref.forward(mel)[0]);
  report_stream("interleaved vocoder B vs whole", at::cat(ob), ref.forward(other)[0]);
}

BOOST_AUTO_TEST_CASE(discont_mid_stream_starts_a_clean_utterance) {
  // What the element does on DISCONT: drain() the current utterance (it ends
  // where it is), then feed the next one. Both must equal their whole runs.
  const Tiny& f = tiny();
  at::Tensor mel = f.t("input_mel");
  HiftVocoderOptions o;
  o.draws = SourceDraws::random(5);
  HiftVocoder whole_v(f.model, o), voc(f.model, o);
  at::Tensor first = mel.narrow(2, 0, 37).contiguous(), second = mel.narrow(2, 50, 116).contiguous();
  at::Tensor w1 = whole_v.forward(first)[0], w2 = whole_v.forward(second)[0];
  at::Tensor s1 = stream(voc, first, {3, 1, 8});
  at::Tensor s2 = stream(voc, second, {1, 6, 2});
  BOOST_TEST(s1.numel() == 480 * 37);
  BOOST_TEST(s2.numel() == 480 * 116);
  report_stream("DISCONT: first (cut) utterance vs whole", s1, w1);
  report_stream("DISCONT: next utterance vs whole", s2, w2);
  // reset() (flush) mid-utterance forgets everything but the utterance count
  // (the flushed utterance's draws are not reused).
  voc.feed(second[0].t().narrow(0, 0, 30).contiguous());
  voc.reset();
  at::Tensor s3 = stream(voc, first, {5});
  report_stream("after flush mid-utterance vs whole", s3, whole_v.forward(first)[0]);
}

BOOST_AUTO_TEST_CASE(reduced_lookahead_leaves_the_committed_state_exact) {
  // Below the default lookahead, feed() finishes a copy of the layers to emit
  // early samples. Switching back to the default lookahead mid-utterance, the
  // samples emitted from then on are final ones: exact iff the copy never
  // touched the committed state.
  const Tiny& f = tiny();
  at::Tensor mel = f.t("input_mel");
  at::Tensor whole = HiftVocoder(f.model).forward(mel)[0];
  at::Tensor frames = mel[0].t().contiguous();
  for (int64_t la : {0, 1, 5}) {
    HiftVocoderOptions o;
    o.lookahead_frames = la;
    HiftVocoder voc(f.model, o);
    std::vector<at::Tensor> out;
    for (int64_t p = 0; p < 60; ++p) out.push_back(voc.feed(frames.narrow(0, p, 1)));
    const int64_t early = voc.samples_out();
    BOOST_TEST(early == 480 * (60 - la));
    voc.set_lookahead_frames(-1);
    for (int64_t p = 60; p < frames.size(0); p += 7)
      out.push_back(voc.feed(frames.narrow(0, p, std::min<int64_t>(7, frames.size(0) - p))));
    out.push_back(voc.drain());
    at::Tensor s = at::cat(out);
    BOOST_TEST(s.numel() == whole.numel());
    const double before = max_abs_diff(s.narrow(0, 0, early), whole.narrow(0, 0, early));
    std::cout << "  lookahead " << la << ": early samples max abs " << before << "\n";
    BOOST_TEST(before > 1e-4, "lookahead " << la << " should emit provisional samples");
    report_stream("lookahead " + std::to_string(la) + " then default: later samples vs whole",
                  s.narrow(0, early, s.numel() - early), whole.narrow(0, early, whole.numel() - early));
  }
}

BOOST_AUTO_TEST_CASE(kernel_threads_do_not_change_results) {
  // A model wide enough for the kernels' thread pool (convolutions of >= 32M
  // multiply-adds): 1 and 2 compute threads, and two vocoders streaming
  // concurrently in their own threads (one gets the pool, the other runs its
  // jobs inline), all give the single-threaded whole run's bits.
  HiftConfig c = HiftConfig::chatterbox();
  c.base_channels = 512;
  c.f0_cond_channels = 64;
  auto model = HiftModel::random(c, 7);
  at::manual_seed(1);
  at::Tensor mel = at::randn({1, 80, 60}) - 5, mel2 = at::randn({1, 80, 45}) - 5;
  const int before = compute_threads();
  set_compute_threads(1);
  at::Tensor w1 = HiftVocoder(model).forward(mel)[0], w2 = HiftVocoder(model).forward(mel2)[0];
  set_compute_threads(2);
  at::Tensor again = HiftVocoder(model).forward(mel)[0];
  at::Tensor s1, s2;
  std::thread t1([&] {
    HiftVocoder v(model);
    s1 = stream(v, mel, {7, 3});
  });
  std::thread t2([&] {
    HiftVocoder v(model);
    s2 = stream(v, mel2, {5});
  });
  t1.join();
  t2.join();
  set_compute_threads(before);
  BOOST_TEST(s1.numel() == w1.numel());
  BOOST_TEST(s2.numel() == w2.numel());
  if (!chatterbox::kernels::packed_conv_available()) {
    // BLAS reorders sums with the thread count, and these random weights
    // amplify that far beyond the fixture's tolerance: finite output only.
    BOOST_TEST((at::isfinite(s1).all().item<bool>() && at::isfinite(s2).all().item<bool>()));
    return;
  }
  BOOST_TEST(max_abs_diff(again, w1) == 0.0);
  report_stream("2 threads, concurrent vocoder 1 vs whole", s1, w1);
  report_stream("2 threads, concurrent vocoder 2 vs whole", s2, w2);
}

BOOST_AUTO_TEST_CASE(load_errors_name_the_problem) {
  auto store = std::make_shared<TensorStore>(tiny().ck.store());
  store->path = "broken.safetensors";
  store->tensors.erase("resblocks.4.convs2.1.parametrizations.weight.original1");
  try {
    HiftModel::from_checkpoint(Checkpoint(store));
    BOOST_FAIL("missing tensor not detected");
  } catch (const ModelError& e) {
    BOOST_TEST(contains(e.what(), "resblocks.4.convs2.1.weight"), e.what());
  }
  auto store2 = std::make_shared<TensorStore>(tiny().ck.store());
  store2->path = "misshapen.safetensors";
  store2->tensors["source_downs.1.weight"] = at::zeros({16, 18, 5});  // tiny: [8, 18, 6]
  try {
    HiftModel::from_checkpoint(Checkpoint(store2));
    BOOST_FAIL("shape mismatch not detected");
  } catch (const ModelError& e) {
    BOOST_TEST(contains(e.what(), "source_downs.1.weight"), e.what());
    BOOST_TEST(contains(e.what(), "[8, 18, 6]"), e.what());
    BOOST_TEST(contains(e.what(), "misshapen.safetensors"), e.what());
  }
  try {
    HiftModel::from_checkpoint(Checkpoint(store2, "flow."));
    BOOST_FAIL("wrong prefix not detected");
  } catch (const ModelError& e) {
    BOOST_TEST(contains(e.what(), "mel2wav."), e.what());
  }
  BOOST_CHECK_THROW(tiny().model->f0(at::zeros({1, 100, 5})), ModelError);
  BOOST_CHECK_THROW(tiny().model->decode(at::zeros({1, 80, 5}), at::zeros({1, 1, 480})), ModelError);
}

BOOST_AUTO_TEST_CASE(real_layout_checkpoint_loads_via_mel2wav_prefix) {
  // Every mel2wav.* row of s3gen_keys.tsv, random values of the listed shapes,
  // no metadata (like the real s3gen.safetensors), plus a few flow.* rows.
  std::ifstream tsv(fixture("s3gen/keys/s3gen_keys.tsv"));
  std::string line;
  std::getline(tsv, line);  // header
  std::map<std::string, at::Tensor> tensors;
  at::manual_seed(3);
  int rows = 0;
  while (std::getline(tsv, line)) {
    std::stringstream ss(line);
    std::string name, dtype, shape;
    std::getline(ss, name, '\t');
    std::getline(ss, dtype, '\t');
    std::getline(ss, shape, '\t');
    const bool hift = name.rfind("mel2wav.", 0) == 0;
    if (!hift && name.rfind("flow.input_embedding", 0) != 0) continue;
    std::vector<int64_t> dims;
    for (auto j = nlohmann::json::parse(shape); auto& d : j) dims.push_back(d.get<int64_t>());
    at::Tensor t = at::randn(dims) * 0.02;
    if (contains(name, "original0")) t = t.abs() + 0.05;
    if (contains(name, "alpha")) t = at::ones(dims);
    tensors[name] = t;
    rows += hift;
  }
  BOOST_TEST(rows == 328);
  // Per-process name: the hift and hift-blas suites run this same binary in
  // parallel, and the loader maps the file, so a shared name would let one
  // process truncate the file under the other's mapping (SIGBUS).
  std::string path = (std::filesystem::temp_directory_path() /
                      ("hift_real_layout_test_" + std::to_string(getpid()) + ".safetensors")).string();
  write_safetensors(path, tensors);
  auto model = HiftModel::load(path);
  BOOST_TEST(model->config().base_channels == 512);
  BOOST_TEST(model->config().f0_cond_channels == 512);
  BOOST_TEST(model->num_parameters() > 20000000);
  std::cout << "  real layout: " << model->num_parameters() << " parameters\n";
  at::Tensor mel = at::randn({1, 80, 12}) - 5;
  at::Tensor audio = model->inference(mel);
  BOOST_TEST(audio.size(1) == 480 * 12);
  BOOST_TEST(at::isfinite(audio).all().item<bool>());
  auto model2 = HiftModel::load(path, "mel2wav.");
  BOOST_TEST(at::equal(model2->inference(mel), audio));
  std::remove(path.c_str());
}

// Chatterbox Multilingual's generate cuts the vocoded audio after the
// second-to-last token ((N-1) * 960 samples). Why the pipeline does the same
// (the vocoder drops the samples, utterance-end trim-frames) rather than
// dropping the last token's 2 mel frames before the vocoder: the two agree
// only outside the vocoder's right receptive field of the cut (measured
// here: float noise before it, large differences within it).
BOOST_AUTO_TEST_CASE(trim_before_vocoder_vs_after) {
  const Tiny& f = tiny();
  at::Tensor mel = f.t("input_mel");  // [1, 80, T]
  const int64_t T = mel.size(2), kept = T - 2;
  at::Tensor after = f.model->inference(mel, SourceDraws::deterministic()).narrow(1, 0, kept * 480);
  at::Tensor before = f.model->inference(mel.narrow(2, 0, kept), SourceDraws::deterministic());
  BOOST_REQUIRE(before.sizes() == after.sizes());
  const int64_t right = f.model->field().mel_right;
  const int64_t same = (kept - right) * 480;
  const double head = max_abs_diff(before.narrow(1, 0, same), after.narrow(1, 0, same));
  const double tail = max_abs_diff(before.narrow(1, same, kept * 480 - same), after.narrow(1, same, kept * 480 - same));
  std::cout << "  trim before vs after the vocoder: max abs " << head << " before the last " << right
            << " frames, " << tail << " within them (peak |audio| " << after.abs().max().item<double>() << ")\n";
  report("trim before vs after the vocoder, outside the look-ahead", head, 2e-5);
}
