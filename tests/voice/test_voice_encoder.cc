// VoiceEncoder against fixtures/clone/ve_full.safetensors (real size, seeded
// weights). Bounds: the clone README's recommended tolerances (10x the
// larger float32-vs-float64 error of its public and hidden sets), or derived
// as stated beside each check.
#define BOOST_TEST_MODULE voice_encoder
#include <boost/test/unit_test.hpp>

#include "elements/voice/audio/librosa_mel.h"
#include "elements/voice/voice_encoder/ve_melspec.h"
#include "elements/voice/voice_encoder/voice_encoder.h"
#include "tests/test_util.h"
#include "tests/voice/voice_test_util.h"

#include <cmath>
#include <cstdio>

using namespace chatterbox;
using namespace chatterbox::test;
using voice::VoiceEncoder;

namespace {

struct Full {
  Checkpoint ck = Checkpoint::open(fixture("clone/ve_full.safetensors"));
  VoiceEncoder ve = VoiceEncoder::load(ck);
  at::Tensor g(const std::string& n) const { return ck.get("test." + n); }
  at::Tensor raw(const std::string& n) const { return ck.get_raw("test." + n); }
};

const Full& full() {
  static Full t;
  return t;
}

}  // namespace

BOOST_AUTO_TEST_CASE(sizes_inferred_from_shapes) {
  const auto& c = full().ve.config();
  BOOST_TEST(c.n_mels == 40);
  BOOST_TEST(c.hidden == 256);
  BOOST_TEST(c.layers == 3);
  BOOST_TEST(c.embed == 256);
}

// librosa's filterbank reproduced with its own float32 roundings
// (librosa_mel.h): CPU-independent, so equal to librosa's bits.
BOOST_AUTO_TEST_CASE(mel_basis_equals_librosa) {
  BOOST_TEST(report("mel_basis", full().ve.mel_basis(), full().g("mel_basis")) == 0.0);
}

// Frame dB: ours sums in float64, librosa in float32, whose mean of 2048
// squares is within gamma_2048 = 1.2e-4 relative of the exact one (Higham,
// any order): 10 log10(1 + 1.2e-4) = 5.3e-4 dB for the frame and as much for
// the loudest frame, plus a few float32 ulps of values <= 100 dB (7.6e-6
// each). The trim decision is then exact: the closest frame is 0.139 dB from
// -20 dB (README), 100x that bound.
BOOST_AUTO_TEST_CASE(trim_indices_identical) {
  const auto& t = full();
  voice::TrimResult tr = voice::librosa_trim(t.g("wave_16k"));
  const double bound = 2 * 10 * std::log10(1 + gamma_f32(2048)) + 4 * 7.7e-6;
  BOOST_TEST(report("trim_frame_db", tr.frame_db, t.g("trim_frame_db")) <= bound);
  at::Tensor idx = t.raw("trim_index");
  BOOST_TEST(tr.start == idx[0].item<int64_t>());
  BOOST_TEST(tr.end == idx[1].item<int64_t>());
  BOOST_TEST(at::equal(t.g("wave_16k").slice(0, tr.start, tr.end), t.g("wave_trimmed")));
  // All-silent input: every frame is at the (equal) peak, nothing is cut.
  voice::TrimResult z = voice::librosa_trim(at::zeros({5000}));
  BOOST_TEST(z.start == 0);
  BOOST_TEST(z.end == 5000);
}

BOOST_AUTO_TEST_CASE(mel_given_trimmed_wave) {
  const auto& t = full();
  at::Tensor mel = t.ve.mel(t.g("wave_trimmed"));
  const double peak = t.g("mel").abs().max().item<double>();
  // 2e-6 x max |mel|: 10x the float32-vs-float64 error (1.9e-7 of the max).
  BOOST_TEST(report("mel", mel, t.g("mel")) <= 2e-6 * peak);
}

BOOST_AUTO_TEST_CASE(partials_layout) {
  const auto& t = full();
  // Pure indexing of the stored mel: exact. 663 frames -> 7 partials, the
  // last 41 frames dropped.
  at::Tensor p = VoiceEncoder::partials(t.g("mel"));
  BOOST_TEST(at::equal(p, t.g("partials")));
  // Coverage rule: 160 + 77 k frames give k + 1 partials; 83 + 0.8 * 160 = 211
  // frames are needed before a second partial is padded in.
  BOOST_TEST(VoiceEncoder::partials(at::ones({100, 40})).size(0) == 1);
  BOOST_TEST(VoiceEncoder::partials(at::ones({160 + 77, 40})).size(0) == 2);
  BOOST_TEST(VoiceEncoder::partials(at::ones({160 + 77 + 50, 40})).size(0) == 3);  // (50 + 83)/160 = 0.83
  BOOST_TEST(VoiceEncoder::partials(at::ones({160 + 77 + 44, 40})).size(0) == 2);  // (44 + 83)/160 = 0.79
  at::Tensor padded = VoiceEncoder::partials(at::ones({100, 40}));
  BOOST_TEST(padded.slice(1, 100, 160).abs().max().item<float>() == 0.0f);
}

BOOST_AUTO_TEST_CASE(embeddings_given_partials) {
  const auto& t = full();
  at::Tensor proj;
  at::Tensor pe = t.ve.partial_embeds(t.g("partials"), &proj);
  // The pre-ReLU projection has no README row: bounded by 6x the reference's
  // own float32-vs-float64 error, measured here with the same LSTM in float64
  // (exact to ~1e-14): ours and the reference each carry that much rounding,
  // times 3 for margin.
  at::Tensor proj64;
  const VoiceEncoder f64 = VoiceEncoder::load(t.ck, at::kDouble);
  f64.partial_embeds(t.g("partials"), &proj64);
  const double e64 = max_abs_diff(t.g("partial_proj"), proj64);
  std::cout << "  partial_proj: reference float32 vs float64 " << e64 << "\n";
  BOOST_TEST(report("partial_proj", proj, t.g("partial_proj")) <= 6 * e64);
  BOOST_TEST(report("partial_embeds", pe, t.g("partial_embeds")) <= 2e-6);  // 10x 1.4e-7
  BOOST_TEST(report("embed given partials", VoiceEncoder::utterance_embed(pe), t.g("embed")) <= 1e-6);  // 10x 5.2e-8
}

BOOST_AUTO_TEST_CASE(embed_from_wave) {
  const auto& t = full();
  at::Tensor e = t.ve.embed(t.g("wave_16k"));
  BOOST_TEST(report("embed from wave", e, t.g("embed")) <= 1e-6);  // 10x 5.2e-8
  BOOST_TEST(std::abs(e.norm().item<double>() - 1.0) <= 1e-6);
}

// ve_keys.tsv: the real ve.safetensors names and shapes.
BOOST_AUTO_TEST_CASE(real_layout_loads) {
  auto store = synth_store(key_rows("ve_keys.tsv", ""), /*lazy=*/false);
  BOOST_TEST(store->tensors.size() == 16u);
  const std::string path = tmp_path("ve_real.safetensors");
  write_safetensors(path, store->tensors);
  VoiceEncoder ve = VoiceEncoder::load(path);
  std::remove(path.c_str());
  BOOST_TEST(ve.config().hidden == 256);
  BOOST_TEST(ve.config().layers == 3);
  at::Tensor e = ve.embed(at::randn({32000}) * 0.1);
  BOOST_TEST(e.sizes() == (std::vector<int64_t>{1, 256}));
}

BOOST_AUTO_TEST_CASE(missing_or_misshapen_tensor_is_named) {
  const auto& t = full();
  auto copy = [&]() { return std::make_shared<TensorStore>(t.ck.store()); };
  {
    auto s = copy();
    s->tensors.erase("lstm.bias_hh_l2");
    const std::string e = error_of([&] { VoiceEncoder::load(Checkpoint(s)); });
    BOOST_TEST_MESSAGE(e);
    BOOST_TEST(contains(e, "lstm.bias_hh_l2"));
  }
  {
    auto s = copy();
    s->tensors["lstm.weight_hh_l1"] = at::zeros({1024, 255});
    const std::string e = error_of([&] { VoiceEncoder::load(Checkpoint(s)); });
    BOOST_TEST_MESSAGE(e);
    BOOST_TEST(contains(e, "lstm.weight_hh_l1"));
    BOOST_TEST(contains(e, "[1024, 255]"));
    BOOST_TEST(contains(e, "[1024, 256]"));
  }
  BOOST_TEST(contains(error_of([&] { VoiceEncoder::load(Checkpoint(std::make_shared<TensorStore>())); }),
                      "holds no VoiceEncoder"));
  BOOST_TEST(contains(error_of([&] { t.ve.mel(at::zeros({200})); }), "200 samples"));
}
