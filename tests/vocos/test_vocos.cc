#define BOOST_TEST_MODULE vocos
#include <boost/test/unit_test.hpp>

#include "elements/vocoder/vocos/vocos.h"
#include "gst-plugins/core/kernels/packed_gemm.h"
#include "gst-plugins/core/checkpoint.h"
#include "tests/fixtures.h"
#include "tests/test_util.h"
#include "tests/tensor_compare.h"

#include <ATen/ATen.h>
#include <nlohmann/json.hpp>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <algorithm>
#include <cmath>
#include <random>
#include <sstream>
#include <unistd.h>
using chatterbox::test::contains;

using namespace chatterbox;
using chatterbox::test::fixture;
using chatterbox::test::gemm_error_ratio;
using chatterbox::test::max_abs_diff;
using chatterbox::test::rel_l2;
namespace fs = std::filesystem;

namespace {

const char* kSame = "vocos/tiny_s3gen_same.safetensors";
const char* kCenter = "vocos/tiny_center.safetensors";


// A scratch directory removed at exit of the test case.
struct TempDir {
  fs::path path;
  TempDir() {
    static int n = 0;
    path = fs::temp_directory_path() / ("vocos_test_" + std::to_string(getpid()) + "_" + std::to_string(n++));
    fs::create_directories(path);
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
  std::string operator/(const std::string& name) const { return (path / name).string(); }
};

std::string load_error(const std::string& path) {
  try {
    VocosVocoder::load(path);
  } catch (const ModelError& e) {
    return e.what();
  }
  return "";
}

// Every tensor of a fixture (stored dtype), for rewriting variants of it.
std::map<std::string, at::Tensor> tensors_of(const Checkpoint& ck) {
  std::map<std::string, at::Tensor> m;
  for (const auto& k : ck.keys()) m[k] = ck.get_raw(k);
  return m;
}

struct Tol {
  double max_abs, rel;
};
Tol tolerance(const Checkpoint& ck, const std::string& what) {
  auto j = nlohmann::json::parse(ck.metadata("tolerance"));
  return {j.at(what).at("recommended_max_abs").get<double>(), j.at(what).at("recommended_rel_l2").get<double>()};
}

void check_close(const std::string& label, const at::Tensor& got, const at::Tensor& expected, Tol tol) {
  BOOST_TEST_REQUIRE(got.sizes() == expected.sizes(), label << ": shape " << shape_str(got.sizes()) << " vs "
                                                            << shape_str(expected.sizes()));
  double ma = max_abs_diff(got, expected), rl = rel_l2(got, expected);
  BOOST_TEST_MESSAGE(label << ": max abs " << ma << " (tol " << tol.max_abs << "), rel-L2 " << rl << " (tol "
                           << tol.rel << ")");
  BOOST_TEST(ma <= tol.max_abs, label << ": max abs " << ma << " > " << tol.max_abs);
  BOOST_TEST(rl <= tol.rel, label << ": rel-L2 " << rl << " > " << tol.rel);
}

void parity(const char* file) {
  Checkpoint ck = Checkpoint::open(fixture(file));
  auto voc = VocosVocoder::load(fixture(file));
  for (std::string set : {"test", "test2"}) {
    std::string l = std::string(file) + " " + set;
    at::Tensor mel = ck.get(set + ".input_mel");
    at::Tensor bb = voc->backbone(mel);
    check_close(l + " backbone_out", bb, ck.get_raw(set + ".backbone_out"), tolerance(ck, "backbone_out"));
    auto [mag, phase] = voc->head_mag_phase(bb);
    check_close(l + " head_mag", mag, ck.get_raw(set + ".head_mag"), tolerance(ck, "head_mag"));
    check_close(l + " head_phase", phase, ck.get_raw(set + ".head_phase"), tolerance(ck, "head_phase"));
    at::Tensor expected = ck.get_raw(set + ".output_audio");
    at::Tensor audio = voc->forward(mel);
    BOOST_TEST(audio.size(1) == voc->config().output_samples(mel.size(2)));
    check_close(l + " output_audio", audio, expected, tolerance(ck, "output_audio"));
    // The reference-order baseline on the same weights meets the same bar.
    check_close(l + " output_audio (reference order)", voc->forward_reference(mel), expected,
                tolerance(ck, "output_audio"));
  }
}

// Feeds `frames` [T, n_mels] in chunks of the given sizes (cycled), checking
// the emission count after each feed; returns the concatenated output.
at::Tensor stream(VocosVocoder& v, const at::Tensor& frames, const std::vector<int64_t>& sizes) {
  std::vector<at::Tensor> parts;
  const int64_t T = frames.size(0), k = v.lookahead_frames();
  // Context kept: 6 frames per layer (3 each side) plus the time frames whose
  // samples are not all out.
  const int64_t bound = 2 * v.config().receptive_frames() + k +
                        (v.config().n_fft + v.config().hop_length - 1) / v.config().hop_length + 1;
  int64_t pos = 0, i = 0, emitted = 0;
  int64_t max_buffered = 0;
  while (pos < T) {
    int64_t n = std::min(sizes[i++ % sizes.size()], T - pos);
    at::Tensor out = v.feed(frames.narrow(0, pos, n));
    pos += n;
    emitted += out.numel();
    BOOST_TEST_REQUIRE(out.dim() == 1);
    // Exactly what an utterance `k` frames shorter gives, as soon as possible.
    BOOST_TEST_REQUIRE(emitted == v.config().output_samples(pos - k));
    BOOST_TEST_REQUIRE(v.samples_out() == emitted);
    BOOST_TEST_REQUIRE(v.frames_in() == pos);
    max_buffered = std::max(max_buffered, v.buffered_frames());
    parts.push_back(out);
  }
  // Context is bounded by the receptive field and lookahead, not the length.
  BOOST_TEST(max_buffered <= bound, "kept " << max_buffered << " frames of context, bound " << bound);
  at::Tensor tail = v.drain();
  BOOST_TEST(v.frames_in() == 0);
  BOOST_TEST(v.samples_out() == 0);
  parts.push_back(tail);
  return at::cat(parts, 0);
}

void streaming_equals_whole(const char* file) {
  Checkpoint ck = Checkpoint::open(fixture(file));
  auto voc = VocosVocoder::load(fixture(file));
  BOOST_TEST(voc->lookahead_frames() == voc->default_lookahead_frames());
  BOOST_TEST(voc->default_lookahead_frames() == voc->config().exact_lookahead_frames());
  for (std::string set : {"test", "test2"}) {
    at::Tensor mel = ck.get(set + ".input_mel").select(0, 0);  // [n_mels, T]
    at::Tensor frames = mel.t().contiguous();                  // [T, n_mels]
    at::Tensor whole = voc->forward(mel.unsqueeze(0)).select(0, 0);
    std::mt19937 rng(42);
    std::vector<int64_t> random_sizes;
    for (int i = 0; i < 64; ++i) random_sizes.push_back(1 + rng() % 19);
    std::vector<std::vector<int64_t>> chunkings = {{1}, {7}, random_sizes, {1000}, {2, 1, 30}};
    for (const auto& sizes : chunkings) {
      at::Tensor got = stream(*voc, frames, sizes);
      BOOST_TEST_REQUIRE(got.numel() == whole.numel(), file << " " << set << ": streamed " << got.numel()
                                                             << " samples, whole " << whole.numel());
      double rl = rel_l2(got, whole), ma = max_abs_diff(got, whole);
      BOOST_TEST_MESSAGE(file << " " << set << " chunk " << sizes[0] << ": rel-L2 " << rl << " max abs " << ma);
      BOOST_TEST(rl <= 1e-5, file << " " << set << " chunks of " << sizes[0] << ": rel-L2 " << rl);
      // And against the float64 expected audio at the fixture's tolerance.
      if (set == "test")
        check_close(std::string(file) + " streamed", got.unsqueeze(0), ck.get_raw("test.output_audio"),
                    tolerance(ck, "output_audio"));
    }
  }
}

}  // namespace

BOOST_AUTO_TEST_CASE(config_from_fixture_metadata) {
  auto same = VocosVocoder::load(fixture(kSame));
  const VocosConfig& c = same->config();
  BOOST_TEST(c.input_channels == 80);
  BOOST_TEST(c.dim == 64);
  BOOST_TEST(c.intermediate_dim == 192);
  BOOST_TEST(c.num_layers == 3);
  BOOST_TEST(c.n_fft == 1920);
  BOOST_TEST(c.hop_length == 480);
  BOOST_TEST(c.padding == "same");
  BOOST_TEST(c.layer_norm_eps == 1e-6);
  BOOST_TEST((same->mel_format() == MelFormat::s3gen()), same->mel_format().to_string());
  BOOST_TEST(c.output_samples(104) == 49920);
  BOOST_TEST(same->sample_rate() == 24000);
  BOOST_TEST(std::string(same->name()) == "vocos");

  auto center = VocosVocoder::load(fixture(kCenter));
  BOOST_TEST(center->config().padding == "center");
  BOOST_TEST(center->config().hop_length == 256);
  BOOST_TEST(center->config().num_layers == 2);
  BOOST_TEST((center->mel_format() == MelFormat::vocos()), center->mel_format().to_string());
  BOOST_TEST(center->config().output_samples(157) == 39936);
  BOOST_TEST(center->config().output_samples(1) == 0);
}

BOOST_AUTO_TEST_CASE(parity_s3gen_same) { parity(kSame); }
BOOST_AUTO_TEST_CASE(parity_center) { parity(kCenter); }

BOOST_AUTO_TEST_CASE(streaming_equals_whole_same) { streaming_equals_whole(kSame); }
BOOST_AUTO_TEST_CASE(streaming_equals_whole_center) { streaming_equals_whole(kCenter); }

BOOST_AUTO_TEST_CASE(streaming_is_exact_down_to_the_default_lookahead) {
  // The default is the smallest exact lookahead: every sample emitted depends
  // only on frames whose whole receptive field has arrived, so the stream
  // matches the whole run to rounding, far below the 1e-5 requirement.
  for (const char* file : {kSame, kCenter}) {
    Checkpoint ck = Checkpoint::open(fixture(file));
    auto voc = VocosVocoder::load(fixture(file));
    at::Tensor mel = ck.get("test.input_mel");
    at::Tensor whole = voc->forward(mel).select(0, 0);
    at::Tensor got = stream(*voc, mel.select(0, 0).t().contiguous(), {3});
    // Two float32 evaluations (packed kernel or BLAS over other row counts)
    // of the same exact output, each within the README's measured float32
    // error of it (8.3e-7 max abs, 1.4e-6 rel-L2): 2 x 3 x that apart.
    BOOST_TEST(max_abs_diff(got, whole) <= 2 * 3 * 8.3e-7, file);
    BOOST_TEST(rel_l2(got, whole) <= 2 * 3 * 1.4e-6, file);
  }
}

BOOST_AUTO_TEST_CASE(reduced_lookahead_has_the_right_length) {
  for (const char* file : {kSame, kCenter}) {
    Checkpoint ck = Checkpoint::open(fixture(file));
    auto voc = VocosVocoder::load(fixture(file));
    at::Tensor mel = ck.get("test.input_mel");
    at::Tensor whole = voc->forward(mel).select(0, 0);
    at::Tensor frames = mel.select(0, 0).t().contiguous();
    const int64_t d = voc->default_lookahead_frames();
    for (int64_t k : {int64_t(0), int64_t(1), d / 2, d - 1, d + 5}) {
      voc->set_lookahead_frames(k);
      BOOST_TEST(voc->lookahead_frames() == k);
      at::Tensor got = stream(*voc, frames, {1, 4, 9});  // also checks emission = output_samples(N - k)
      BOOST_TEST_REQUIRE(got.numel() == whole.numel(), file << " lookahead " << k);
      BOOST_TEST(at::isfinite(got).all().item<bool>());
      double rl = rel_l2(got, whole);
      BOOST_TEST_MESSAGE(file << " lookahead " << k << ": rel-L2 vs whole " << rl);
      if (k >= d) BOOST_TEST(rl <= 1e-5);
      // The default is the smallest exact lookahead: one frame less is
      // approximate (1.3e-5 here, from the receptive field's last frame),
      // above anything rounding can do: the exact stream stays within
      // 2 x 3 x 1.4e-6 (twice the README's float32 rel-L2, 3x margin).
      if (k == d - 1) BOOST_TEST(rl > 2 * 3 * 1.4e-6);
    }
    BOOST_CHECK_THROW(voc->set_lookahead_frames(-1), std::invalid_argument);
  }
}

BOOST_AUTO_TEST_CASE(reset_and_consecutive_utterances) {
  Checkpoint ck = Checkpoint::open(fixture(kCenter));
  auto voc = VocosVocoder::load(fixture(kCenter));
  at::Tensor frames = ck.get("test.input_mel").select(0, 0).t().contiguous();
  at::Tensor whole = voc->forward(ck.get("test.input_mel")).select(0, 0);
  // A half-fed utterance dropped by reset() leaves no trace.
  voc->feed(frames.narrow(0, 0, 50));
  voc->reset();
  BOOST_TEST(voc->frames_in() == 0);
  BOOST_TEST(voc->buffered_frames() == 0);
  at::Tensor a = stream(*voc, frames, {11});
  at::Tensor b = stream(*voc, frames, {5});  // drain() reset for the next utterance
  BOOST_TEST(rel_l2(a, whole) <= 1e-5);
  BOOST_TEST(rel_l2(b, whole) <= 1e-5);
  // Empty feeds and an empty drain.
  BOOST_TEST(voc->feed(at::empty({0, 100})).numel() == 0);
  BOOST_TEST(voc->drain().numel() == 0);
  // A single frame of "center" padding gives no sample (the reference fails).
  voc->feed(frames.narrow(0, 0, 1));
  BOOST_TEST(voc->drain().numel() == 0);
  BOOST_CHECK_THROW(voc->feed(at::zeros({3, 80})), std::invalid_argument);
  BOOST_CHECK_THROW(voc->forward(at::zeros({1, 80, 10})), std::invalid_argument);
}

BOOST_AUTO_TEST_CASE(loading_errors_name_the_problem) {
  TempDir dir;
  Checkpoint ck = Checkpoint::open(fixture(kSame));
  std::map<std::string, std::string> meta = {{"config", ck.metadata("config")}};

  // Missing tensor.
  {
    auto t = tensors_of(ck);
    t.erase("backbone.convnext.1.pwconv2.bias");
    write_safetensors(dir / "missing.safetensors", t, meta);
    std::string e = load_error(dir / "missing.safetensors");
    BOOST_TEST(contains(e, "backbone.convnext.1.pwconv2.bias"), e);
  }
  // Wrong rank.
  {
    auto t = tensors_of(ck);
    t["backbone.convnext.0.norm.weight"] = at::ones({64, 1});
    write_safetensors(dir / "rank.safetensors", t, meta);
    std::string e = load_error(dir / "rank.safetensors");
    BOOST_TEST(contains(e, "backbone.convnext.0.norm.weight"), e);
  }
  {
    auto t = tensors_of(ck);
    t["backbone.embed.weight"] = at::ones({64, 80});
    write_safetensors(dir / "rank2.safetensors", t, meta);
    std::string e = load_error(dir / "rank2.safetensors");
    BOOST_TEST(contains(e, "backbone.embed.weight"), e);
  }
  // Config that does not belong to the weights.
  {
    auto cfg = nlohmann::json::parse(ck.metadata("config"));
    cfg["dim"] = 32;
    write_safetensors(dir / "cfg.safetensors", tensors_of(ck), {{"config", cfg.dump()}});
    std::string e = load_error(dir / "cfg.safetensors");
    BOOST_TEST(contains(e, "backbone.embed.weight"), e);
    BOOST_TEST(contains(e, "dim=32"), e);
  }
  // Damaged values.
  {
    auto t = tensors_of(ck);
    t["head.out.bias"] = t["head.out.bias"].clone();
    t["head.out.bias"][3] = std::nan("");
    write_safetensors(dir / "nan.safetensors", t, meta);
    std::string e = load_error(dir / "nan.safetensors");
    BOOST_TEST(contains(e, "head.out.bias"), e);
  }
  // Non-existent file and directory without weights.
  std::string e = load_error(dir / "nope.safetensors");
  BOOST_TEST(contains(e, "nope.safetensors"), e);
  BOOST_TEST(contains(e, "does not exist"), e);
  e = load_error(dir.path.string());
  BOOST_TEST(contains(e, "pytorch_model.bin"), e);
  // Devices.
  VocosLoadOptions bad;
  bad.device = "tpu";
  BOOST_CHECK_THROW(VocosVocoder::load(fixture(kSame), bad), ModelError);
  if (!at::hasCUDA()) {
    bad.device = "cuda";
    try {
      VocosVocoder::load(fixture(kSame), bad);
      BOOST_FAIL("cuda without CUDA must fail");
    } catch (const ModelError& err) {
      BOOST_TEST(contains(err.what(), "CUDA"), err.what());
    }
  }
}

BOOST_AUTO_TEST_CASE(explicit_mel_format_in_config) {
  TempDir dir;
  Checkpoint ck = Checkpoint::open(fixture(kSame));
  auto cfg = nlohmann::json::parse(ck.metadata("config"));
  cfg["mel"] = {{"f_max", 7600.0}, {"log_floor", 1e-7}};
  write_safetensors(dir / "m.safetensors", tensors_of(ck), {{"config", cfg.dump()}});
  auto voc = VocosVocoder::load(dir / "m.safetensors");
  MelFormat want = MelFormat::s3gen();
  want.f_max = 7600.0;
  want.log_floor = 1e-7;
  BOOST_TEST((voc->mel_format() == want), voc->mel_format().to_string());
  // A "mel" that contradicts the network is refused.
  cfg["mel"] = {{"n_mels", 100}};
  write_safetensors(dir / "bad.safetensors", tensors_of(ck), {{"config", cfg.dump()}});
  std::string e = load_error(dir / "bad.safetensors");
  BOOST_TEST(contains(e, "n_mels 100"), e);
}

BOOST_AUTO_TEST_CASE(random_model_round_trip) {
  TempDir dir;
  VocosConfig c = VocosConfig::s3gen(48, 96, 2);
  auto a = VocosVocoder::random(c, 7);
  auto b = VocosVocoder::random(c, 7);
  auto other = VocosVocoder::random(c, 8);
  at::Tensor mel = at::randn({2, 80, 30}) * 2.0 - 5.0;
  at::Tensor ya = a->forward(mel);
  BOOST_TEST(ya.size(0) == 2);
  BOOST_TEST(ya.size(1) == 30 * 480);
  BOOST_TEST(at::isfinite(ya).all().item<bool>());
  BOOST_TEST(ya.abs().max().item<double>() > 1e-4);
  BOOST_TEST(at::equal(ya, b->forward(mel)));
  BOOST_TEST(!at::equal(ya, other->forward(mel)));
  BOOST_TEST((a->mel_format() == MelFormat::s3gen()));
  // The fast path and the reference operation order agree on random weights.
  BOOST_TEST(rel_l2(ya, a->forward_reference(mel)) <= 1e-5);
  // Saved under the reference names with the config JSON, it loads back.
  write_safetensors(dir / "r.safetensors", a->state_dict(), {{"config", a->config().to_json().dump()}});
  auto re = VocosVocoder::load(dir / "r.safetensors");
  BOOST_TEST(re->config().to_string() == c.to_string());
  BOOST_TEST(at::equal(re->forward(mel), ya));
}

BOOST_AUTO_TEST_CASE(charactr_layout_checkpoint_with_config_yaml) {
  // A checkpoint with exactly the key set and shapes of charactr/vocos-mel-24khz
  // (from the fixture key list), random values, in the HF directory layout.
  TempDir dir;
  std::ifstream tsv(fixture("vocos/vocos_mel_24khz_keys.tsv"));
  std::string line;
  std::getline(tsv, line);  // header
  std::map<std::string, at::Tensor> t;
  at::manual_seed(3);
  while (std::getline(tsv, line)) {
    std::istringstream ls(line);
    std::string name, dtype, shape_s;
    std::getline(ls, name, '\t');
    std::getline(ls, dtype, '\t');
    std::getline(ls, shape_s, '\t');
    std::vector<int64_t> shape;
    std::istringstream ss(shape_s);
    for (std::string d; std::getline(ss, d, ',');) shape.push_back(std::stoll(d));
    at::Tensor v = at::randn(shape);
    auto ends = [&](const std::string& s) { return name.size() >= s.size() && name.substr(name.size() - s.size()) == s; };
    if (ends("window")) v = at::hann_window(shape[0], true);
    else if (ends(".fb")) v = v.abs() * 0.01;
    else if (ends("gamma")) v = v * 0.1;
    else if (ends(".bias")) v = v * 0.02;
    else if (shape.size() == 1) v = 1.0 + v * 0.1;
    else v = v / std::sqrt(static_cast<double>(shape[1] * (shape.size() == 3 ? shape[2] : 1)));
    t[name] = v;
  }
  BOOST_TEST_REQUIRE(t.size() == 83u);
  write_safetensors(dir / "pytorch_model.bin", t);
  {
    std::ofstream y(dir / "config.yaml");
    y << "feature_extractor:\n"
         "  class_path: vocos.feature_extractors.MelSpectrogramFeatures\n"
         "  init_args:\n"
         "    sample_rate: 24000\n"
         "    n_fft: 1024\n"
         "    hop_length: 256\n"
         "    n_mels: 100\n"
         "    padding: center\n"
         "\n"
         "backbone:\n"
         "  class_path: vocos.models.VocosBackbone\n"
         "  init_args:\n"
         "    input_channels: 100\n"
         "    dim: 512\n"
         "    intermediate_dim: 1536\n"
         "    num_layers: 8\n"
         "\n"
         "head:\n"
         "  class_path: vocos.heads.ISTFTHead\n"
         "  init_args:\n"
         "    dim: 512\n"
         "    n_fft: 1024\n"
         "    hop_length: 256\n"
         "    padding: center\n";
  }
  VocosLoadOptions two;
  two.threads = 2;
  auto voc = VocosVocoder::load(dir.path.string(), two);
  BOOST_TEST(voc->device() == "cpu");
  const VocosConfig& c = voc->config();
  BOOST_TEST(c.dim == 512);
  BOOST_TEST(c.intermediate_dim == 1536);
  BOOST_TEST(c.num_layers == 8);
  BOOST_TEST(c.hop_length == 256);
  BOOST_TEST(c.padding == "center");
  BOOST_TEST((voc->mel_format() == MelFormat::vocos()), voc->mel_format().to_string());
  BOOST_TEST(voc->default_lookahead_frames() == 3 * 9 - 1 + 2);
  // Every key of the published checkpoint but the front-end buffers is a weight of ours.
  auto sd = voc->state_dict();
  BOOST_TEST(sd.size() == 81u);
  for (const auto& kv : sd) BOOST_TEST(t.count(kv.first) == 1u, kv.first);
  at::Tensor mel = at::randn({1, 100, 20}) - 4.0;
  at::Tensor y = voc->forward(mel);
  BOOST_TEST(y.size(1) == 19 * 256);
  BOOST_TEST(at::isfinite(y).all().item<bool>());
  // Streaming at full size, one frame at a time.
  at::Tensor s = stream(*voc, mel.select(0, 0).t().contiguous(), {1});
  BOOST_TEST(rel_l2(s, y.select(0, 0)) <= 1e-5);

  // The file alone (config.yaml beside it is found) and without any config
  // (shapes + the front-end buffers) give the same configuration.
  BOOST_TEST(VocosVocoder::load(dir / "pytorch_model.bin")->config().to_string() == c.to_string());
  fs::remove(dir / "config.yaml");
  auto inferred = VocosVocoder::load(dir.path.string());
  BOOST_TEST(inferred->config().to_string() == c.to_string());

  // A config.yaml that contradicts the weights, or names another head, is refused.
  {
    std::ofstream y(dir / "config.yaml");
    y << "backbone:\n  class_path: vocos.models.VocosBackbone\n  init_args:\n    input_channels: 100\n"
         "    dim: 512\n    intermediate_dim: 1536\n    num_layers: 6\n"
         "head:\n  class_path: vocos.heads.ISTFTHead\n  init_args:\n    dim: 512\n    n_fft: 1024\n"
         "    hop_length: 256\n    padding: center\n";
  }
  std::string e = load_error(dir.path.string());
  BOOST_TEST(contains(e, "num_layers=6"), e);
  {
    std::ofstream y(dir / "config.yaml");
    y << "backbone:\n  class_path: vocos.models.VocosBackbone\n  init_args:\n    input_channels: 100\n"
         "    dim: 512\n    intermediate_dim: 1536\n    num_layers: 8\n"
         "head:\n  class_path: vocos.heads.IMDCTCosHead\n  init_args:\n    dim: 512\n    mdct_frame_len: 512\n";
  }
  e = load_error(dir.path.string());
  BOOST_TEST(contains(e, "IMDCTCosHead"), e);
}

// Streaming's few-frame GEMMs run on weights packed at load
// (kernels/packed_gemm.h) where the CPU path has AVX2 or AVX-512; whole
// utterances use BLAS. The suite runs again with CHATTERBOX_CPU=generic
// (vocos-generic) for the BLAS-only path. Bound: Higham's worst case for any
// summation order (tests/tensor_compare.h), so no CPU's order is assumed.
// The AVX2 and AVX-512 bodies sum in the same order: identical bits.
BOOST_AUTO_TEST_CASE(packed_small_gemm_matches_float64) {
  using kernels::CpuPath;
  if (!kernels::packed_gemm_available()) {
    BOOST_TEST_MESSAGE("packed GEMM not used on this CPU path (" << kernels::cpu_description() << "): BLAS only");
    return;
  }
  const bool both = kernels::detected_cpu_path() >= CpuPath::Avx512;
  at::manual_seed(11);
  for (int64_t M : {1, 2, 6, 7, 12, 13, 25, 32})
    for (int64_t N : {1, 15, 16, 17, 33, 512, 1922})
      for (int64_t K : {1, 5, 63, 64, 65, 560, 1536}) {
        at::Tensor w = at::randn({N, K}), x = at::randn({M, K}), b = at::randn({N});
        kernels::PackedLinear p = kernels::pack_linear(w);
        at::Tensor out = at::empty({M, N});
        out.copy_(b.expand({M, N}));
        kernels::packed_gemm_accumulate(p, x.data_ptr<float>(), K, M, out.data_ptr<float>(), N);
        const double ratio = gemm_error_ratio(out, x, w, b);
        BOOST_TEST(ratio <= 1.0, "M " << M << " N " << N << " K " << K << ": error / worst-case bound " << ratio);
        if (both) {
          at::Tensor narrow = at::empty({M, N});
          narrow.copy_(b.expand({M, N}));
          kernels::packed_gemm_accumulate_on(CpuPath::Avx2, p, x.data_ptr<float>(), K, M, narrow.data_ptr<float>(), N);
          at::Tensor wide = at::empty({M, N});
          wide.copy_(b.expand({M, N}));
          kernels::packed_gemm_accumulate_on(CpuPath::Avx512, p, x.data_ptr<float>(), K, M, wide.data_ptr<float>(), N);
          BOOST_TEST(at::equal(narrow, wide), "M " << M << " N " << N << " K " << K << ": AVX2 and AVX-512 differ");
        }
      }
}

BOOST_AUTO_TEST_CASE(full_width_streaming_equals_whole) {
  // Real widths (dim 512, intermediate 1536; two layers to stay quick) fed in
  // 10-frame chunks: the packed GEMMs' sums over 1536 terms stay as close to
  // the whole-utterance (BLAS) output as the fixtures' tolerance.
  auto voc = VocosVocoder::random(VocosConfig::s3gen(512, 1536, 2), 5);
  at::manual_seed(5);
  at::Tensor mel = at::randn({1, 80, 120}) - 4.0;
  at::Tensor whole = voc->forward(mel);
  at::Tensor streamed = stream(*voc, mel.select(0, 0).t().contiguous(), {10});
  BOOST_TEST_REQUIRE(streamed.numel() == whole.numel());
  const double err = rel_l2(streamed.unsqueeze(0), whole);
  std::cout << "  full width, 10-frame chunks: streamed vs whole rel-L2 " << err << "\n";
  BOOST_TEST(err <= 1e-5);
}
