// Perth model library against upstream's own run (tests/perth/README.md):
// every stage, the end-to-end mark and detection, the streaming embedder,
// loading (upstream's torch.save checkpoint through the restricted
// unpickler, safetensors, clear errors).
#define BOOST_TEST_MODULE perth
#include <boost/test/unit_test.hpp>

#include "elements/voice/audio/resample.h"
#include "elements/watermark/perth/perth.h"
#include "elements/watermark/perth/perth_stream.h"
#include "elements/watermark/perth/resample_poly.h"
#include "gst-plugins/core/checkpoint.h"
#include "tests/tensor_compare.h"

#include <ATen/ATen.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>

using namespace chatterbox;
using namespace chatterbox::perth;
using chatterbox::test::max_abs_diff;

namespace {

const std::string kDir = PERTH_TEST_DIR;
const std::string kWeights = kDir + "/perth_net_000800.pth.tar";

// 10x the float32-vs-float64 differences of the reference (README.md)
constexpr double kTolConf = 2e-6, kTolSignal = 4e-6, kTolResidual = 1e-6;

const TensorStore& fx() {
  static TensorStore s = read_safetensors(kDir + "/perth_tiny.safetensors");
  return s;
}
at::Tensor T(const std::string& k) { return fx().tensors.at("test." + k); }
double D(const std::string& k) { return T(k).item<double>(); }
const std::shared_ptr<const PerthNet>& net() {
  static std::shared_ptr<const PerthNet> n = PerthNet::load(kWeights);
  return n;
}

std::vector<float> run_embedder(PerthEmbedder& e, const at::Tensor& wave, int64_t chunk) {
  std::vector<float> out;
  const float* x = wave.data_ptr<float>();
  const int64_t n = wave.size(0);
  for (int64_t i = 0; i < n; i += chunk) e.push(x + i, std::min(chunk, n - i), out);
  e.finish(out);
  return out;
}

at::Tensor vec(std::vector<float>& v) {
  return at::from_blob(v.data(), {static_cast<int64_t>(v.size())}, at::kFloat).clone();
}

}  // namespace

BOOST_AUTO_TEST_CASE(loads_upstream_checkpoint) {
  const PerthNet& n = *net();
  BOOST_TEST(n.config().hidden_size == 32);
  BOOST_TEST(n.config().subband() == 128);
  BOOST_TEST(n.step() == 800);
  // the shipped hparams: subband 0-2 kHz at 32 kHz / n_fft 2048
  PerthConfig c;
  BOOST_TEST(c.subband() == 128);
}

BOOST_AUTO_TEST_CASE(soxr_resample_matches_reference) {
  at::Tensor w32 = voice::resample_soxr_hq(T("wave_24k"), 24000, 32000);
  BOOST_TEST(w32.size(0) == T("wave_32k").size(0));
  BOOST_TEST(max_abs_diff(w32, T("wave_32k")) == 0.0);  // same libsoxr, same call sequence
}

BOOST_AUTO_TEST_CASE(stages_match_reference) {
  const PerthNet& n = *net();
  MagPhase mp = n.magphase(T("wave_32k"));
  BOOST_TEST(mp.mag.size(1) == 321);
  const at::Tensor mask_ref = T("mask");
  const at::Tensor sums = mp.mag.sum(0);
  const at::Tensor mask = magmask(sums, sums.max().item<float>());
  BOOST_TEST(at::equal(mask, mask_ref));
  // the magnitude where the mask keeps the frame (README: the silent frames are rounding noise)
  const at::Tensor keep = mask_ref.to(at::kBool);
  const double dmag = max_abs_diff(mp.mag.slice(0, 0, 128).index({at::indexing::Slice(), keep}),
                                   T("mag_subband").index({at::indexing::Slice(), keep}));
  std::cout << "mag (masked frames) max abs " << dmag << "\n";
  BOOST_TEST(dmag <= 6.3e-4);  // 10x float32 vs float64 in these frames (6.3e-5, README)
  at::Tensor m_out, r_out;
  at::Tensor wm = n.embed32(T("wave_32k"), &m_out, &r_out);
  const double dres = max_abs_diff(r_out, T("residual"));
  const double dwm = max_abs_diff(wm, T("wm_32k"));
  std::cout << "residual max abs " << dres << ", wm_32k max abs " << dwm << "\n";
  BOOST_TEST(wm.size(0) == T("wm_32k").size(0));
  BOOST_TEST(dres <= kTolResidual);
  BOOST_TEST(dwm <= kTolSignal);
}

BOOST_AUTO_TEST_CASE(apply_watermark_matches_reference) {
  at::Tensor y = net()->apply_watermark(T("wave_24k"), 24000);
  BOOST_TEST(y.size(0) == T("marked_24k").size(0));  // upstream's length: 129 short
  const double d = max_abs_diff(y, T("marked_24k"));
  std::cout << "marked_24k max abs " << d << "\n";
  BOOST_TEST(d <= kTolSignal);
}

BOOST_AUTO_TEST_CASE(polyphase_matches_scipy) {
  at::Tensor m = T("marked_24k").contiguous();
  std::vector<float> y = resample_poly(m.data_ptr<float>(), m.size(0), 24000, 32000);
  BOOST_TEST(static_cast<int64_t>(y.size()) == T("poly_marked_32k").size(0));
  const double d = max_abs_diff(vec(y), T("poly_marked_32k"));
  std::cout << "polyphase max abs " << d << "\n";
  // scipy sums 27 float32 products in float32 (we sum in float64): a few ulps of 0.7
  BOOST_TEST(d <= 1e-6);
}

BOOST_AUTO_TEST_CASE(detection_matches_reference_and_separates) {
  const PerthNet& n = *net();
  const double cm = n.detect_raw(T("marked_24k"), 24000), cu = n.detect_raw(T("wave_24k"), 24000);
  const double c32m = n.decode(n.magphase(T("wm_32k")).mag), c32u = n.decode(n.magphase(T("wave_32k")).mag);
  std::cout << "confidence marked " << cm << " (ref " << D("conf_marked") << "), unmarked " << cu << " (ref "
            << D("conf_unmarked") << "); at 32 kHz " << c32m << " / " << c32u << "\n";
  BOOST_TEST(std::abs(std::clamp(cm, 0.0, 1.0) - D("conf_marked")) <= kTolConf);
  BOOST_TEST(std::abs(std::clamp(cu, 0.0, 1.0) - D("conf_unmarked")) <= kTolConf);
  BOOST_TEST(std::abs(c32m - D("conf32_marked")) <= kTolConf);
  BOOST_TEST(std::abs(c32u - D("conf32_unmarked")) <= kTolConf);
  BOOST_TEST(n.detect(T("marked_24k"), 24000) >= 0.5);
  BOOST_TEST(n.detect(T("wave_24k"), 24000) < 0.5);
  // digital silence: no frame passes the mask -> NaN raw, 0 clipped
  at::Tensor z = at::zeros({24000}, at::kFloat);
  BOOST_TEST(std::isnan(n.detect_raw(z, 24000)));
  BOOST_TEST(n.detect(z, 24000) == 0.0);
}

BOOST_AUTO_TEST_CASE(utterance_embedder_is_upstream_then_input_tail) {
  const at::Tensor wave = T("wave_24k").contiguous();
  for (int64_t chunk : {480, 7001}) {
    PerthEmbedder e(net(), 24000, PerthEmbedder::Mode::Utterance);
    std::vector<float> out = run_embedder(e, wave, chunk);
    BOOST_TEST(static_cast<int64_t>(out.size()) == wave.size(0));
    at::Tensor o = vec(out);
    const int64_t nref = T("marked_24k").size(0);
    BOOST_TEST(max_abs_diff(o.slice(0, 0, nref), T("marked_24k")) <= kTolSignal);
    BOOST_TEST(max_abs_diff(o.slice(0, nref), wave.slice(0, nref)) == 0.0);
  }
}

BOOST_AUTO_TEST_CASE(stream_embedder_deviation) {
  const at::Tensor wave = T("wave_24k").contiguous();
  const int64_t nref = T("marked_24k").size(0);
  const at::Tensor ref = T("marked_24k");
  const at::Tensor mark_ref = ref - wave.slice(0, 0, nref);
  std::vector<float> first;
  for (int64_t chunk : {240, 1000, 4096}) {
    PerthEmbedder e(net(), 24000, PerthEmbedder::Mode::Stream);
    std::vector<float> out = run_embedder(e, wave, chunk);
    BOOST_TEST(static_cast<int64_t>(out.size()) == wave.size(0));
    if (first.empty())
      first = out;
    else  // chunking does not change the stream mode's output beyond rounding
      BOOST_TEST(max_abs_diff(vec(out), vec(first)) <= kTolSignal);  // block sizes change BLAS rounding only
    at::Tensor o = vec(out);
    const double dev = max_abs_diff(o.slice(0, 0, nref), ref);
    const double rel = chatterbox::test::rel_l2(o.slice(0, 0, nref) - wave.slice(0, 0, nref), mark_ref);
    const double conf = net()->detect(o, 24000);
    std::cout << "stream (chunk " << chunk << "): max abs from exact " << dev << ", mark rel-L2 " << rel
              << ", confidence " << conf << " (exact " << D("conf_marked") << ")\n";
    // This clip's loudest frame comes late, so quiet early frames pass the
    // running mask: a bounded deviation in the mark, not in the audio.
    BOOST_TEST(rel < 0.5);
    BOOST_TEST(conf >= 0.5);
  }
  // At 32 kHz (no resamplers) on a clip whose loudest frame is the first
  // voiced one, stream mode is the exact mark.
  at::Tensor w32 = T("wave_32k").clone();
  const int64_t lead = 6400;  // the 0.2 s of digital silence at 32 kHz
  w32.slice(0, lead, lead + 2048).mul_(4.0);  // make the first voiced frames the loudest
  at::Tensor exact = net()->embed32(w32);
  PerthEmbedder e(net(), 32000, PerthEmbedder::Mode::Stream);
  std::vector<float> out = run_embedder(e, w32.contiguous(), 3200);
  at::Tensor o = vec(out);
  const double d = max_abs_diff(o.slice(0, 0, exact.size(0)), exact);
  std::cout << "stream at 32 kHz, loud start: max abs from exact " << d << "\n";
  BOOST_TEST(d <= kTolSignal);
}

BOOST_AUTO_TEST_CASE(safetensors_weights_and_errors) {
  const auto tmp = std::filesystem::temp_directory_path() / "perth_test_weights";
  std::filesystem::create_directories(tmp);
  Checkpoint ck = Checkpoint::open(kWeights);
  std::map<std::string, at::Tensor> plain, broken, missing;
  for (const auto& k : ck.keys()) {
    if (k.rfind("model.", 0) != 0) continue;
    at::Tensor t = ck.get(k);
    plain[k.substr(6)] = t;
    broken[k.substr(6)] = k == "model.decoder.fast_layers.3.conv.weight" ? t.slice(2, 0, 5).contiguous() : t;
    if (k != "model.decoder.slow_layers.6.conv.bias") missing[k.substr(6)] = t;
  }
  write_safetensors((tmp / "perth.safetensors").string(), plain);
  write_safetensors((tmp / "broken.safetensors").string(), broken);
  write_safetensors((tmp / "missing.safetensors").string(), missing);
  auto n2 = PerthNet::load((tmp / "perth.safetensors").string());
  BOOST_TEST(n2->detect(T("marked_24k"), 24000) == net()->detect(T("marked_24k"), 24000));
  auto msg = [](const std::string& p) {
    try {
      PerthNet::load(p);
    } catch (const ModelError& e) {
      return std::string(e.what());
    }
    return std::string();
  };
  const std::string m1 = msg((tmp / "broken.safetensors").string());
  BOOST_TEST(m1.find("decoder.fast_layers.3.conv.weight") != std::string::npos, m1);
  const std::string m2 = msg((tmp / "missing.safetensors").string());
  BOOST_TEST(m2.find("decoder.slow_layers.6.conv.bias") != std::string::npos, m2);
  const std::string m3 = msg((tmp / "nope.pth.tar").string());
  BOOST_TEST(m3.find("does not exist") != std::string::npos, m3);
  // not a Perth model at all
  write_safetensors((tmp / "other.safetensors").string(), {{"x.weight", at::zeros({2, 2})}});
  const std::string m4 = msg((tmp / "other.safetensors").string());
  BOOST_TEST(m4.find("not a Perth") != std::string::npos, m4);
  std::filesystem::remove_all(tmp);
}
