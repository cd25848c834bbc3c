#define BOOST_TEST_MODULE checkpoint
#include <boost/test/unit_test.hpp>

#include "gst-plugins/core/checkpoint.h"
#include "tests/fixtures.h"
#include "tests/tensor_compare.h"
#include "tests/test_util.h"

#include <ATen/ATen.h>
#include <nlohmann/json.hpp>

#include <cstdio>
#include <fstream>
#include <sstream>
using chatterbox::test::contains;
using chatterbox::test::slurp;

using namespace chatterbox;
using chatterbox::test::fixture;

namespace {
// A safetensors image from a header string and a body.
std::string image(const std::string& header, const std::string& body) {
  std::string out(8, '\0');
  uint64_t n = header.size();
  for (int i = 0; i < 8; ++i) out[i] = static_cast<char>((n >> (8 * i)) & 0xff);
  return out + header + body;
}
TensorStore parse(const std::string& img) {
  return parse_safetensors(reinterpret_cast<const uint8_t*>(img.data()), img.size(), "mem");
}
std::string error_of(const std::string& img) {
  try {
    parse(img);
  } catch (const ModelError& e) {
    return e.what();
  }
  return "";
}
}  // namespace

BOOST_AUTO_TEST_CASE(reads_fixture_with_metadata) {
  Checkpoint ck = Checkpoint::open(fixture("vocos/tiny_center.safetensors"));
  at::Tensor w = ck.get("backbone.embed.weight", {64, 100, 7});
  BOOST_TEST(w.scalar_type() == at::kFloat);
  nlohmann::json cfg = ck.config();
  BOOST_TEST(!cfg.empty());
  BOOST_TEST(ck.get("test.output_audio").numel() > 0);  // F64 converted to F32
  BOOST_TEST(ck.get_raw("test.output_audio").scalar_type() == at::kDouble);
}

BOOST_AUTO_TEST_CASE(prefix_and_shape_errors_name_the_tensor) {
  Checkpoint ck = Checkpoint::open(fixture("vocos/tiny_center.safetensors"));
  Checkpoint bb = ck.sub("backbone.");
  BOOST_TEST(bb.has("embed.bias"));
  try {
    bb.get("embed.weight", {512, 100, 7});
    BOOST_FAIL("shape mismatch not detected");
  } catch (const ModelError& e) {
    BOOST_TEST(contains(e.what(), "backbone.embed.weight"));
    BOOST_TEST(contains(e.what(), "[64, 100, 7]"));
    BOOST_TEST(contains(e.what(), "[512, 100, 7]"));
  }
  try {
    bb.get("convnext.9.gamma");
    BOOST_FAIL("missing key not detected");
  } catch (const ModelError& e) {
    BOOST_TEST(contains(e.what(), "backbone.convnext.9.gamma"));
  }
}

BOOST_AUTO_TEST_CASE(weight_norm_folding) {
  Checkpoint ck = Checkpoint::open(fixture("hift/hift_tiny.safetensors"));
  BOOST_TEST(ck.has("conv_pre.weight"));
  at::Tensor g = ck.get("conv_pre.parametrizations.weight.original0");
  at::Tensor v = ck.get("conv_pre.parametrizations.weight.original1");
  at::Tensor w = ck.get("conv_pre.weight");
  // Against g v / ||v|| in float64. The folded float32 weight carries the
  // error of a float32 sum of n = Cin x k squares (Higham: gamma_n relative,
  // halved by the square root) and ~4 roundings of the products: a bound
  // for any summation order, relative to |w|.
  at::Tensor gd = g.to(at::kDouble), vd = v.to(at::kDouble);
  at::Tensor expect = gd * vd / vd.pow(2).sum({1, 2}, true).sqrt();
  const double rel = chatterbox::test::gamma_f32(v.size(1) * v.size(2)) / 2 + 4 * std::ldexp(1.0, -24);
  BOOST_TEST(((w.to(at::kDouble) - expect).abs() / (expect.abs() + 1e-300)).max().item<double>() <= rel);
  // Legacy weight_g / weight_v names fold the same way.
  auto store = std::make_shared<TensorStore>();
  store->path = "legacy";
  store->tensors["m.weight_g"] = g;
  store->tensors["m.weight_v"] = v;
  Checkpoint legacy(store);
  BOOST_TEST((legacy.get("m.weight") - w).abs().max().item<double>() < 1e-6);
}

BOOST_AUTO_TEST_CASE(roundtrip_write_read) {
  std::string path = "roundtrip_test.safetensors";
  std::map<std::string, at::Tensor> t{{"a", at::arange(6, at::kFloat).reshape({2, 3})},
                                      {"b", at::tensor({1, 2, 3}, at::kLong)}};
  write_safetensors(path, t, {{"config", "{\"x\": 1}"}});
  Checkpoint ck = Checkpoint::open(path);
  BOOST_TEST(at::equal(ck.get("a"), t["a"]));
  BOOST_TEST(at::equal(ck.get_raw("b"), t["b"]));
  BOOST_TEST(ck.config()["x"].get<int>() == 1);
  std::remove(path.c_str());
}

BOOST_AUTO_TEST_CASE(corrupt_files_are_clear_errors) {
  const std::string body(16, '\0');
  const std::string good = R"({"x":{"dtype":"F32","shape":[2,2],"data_offsets":[0,16]}})";
  BOOST_TEST(parse(image(good, body)).tensors.at("x").numel() == 4);

  BOOST_TEST(contains(error_of("abc"), "8-byte"));
  std::string trunc = image(good, body);
  BOOST_TEST(contains(error_of(trunc.substr(0, 20)), "runs past the end"));
  BOOST_TEST(contains(error_of(trunc.substr(0, trunc.size() - 4)), "outside"));
  BOOST_TEST(contains(error_of(image("{not json", body)), "not JSON"));
  BOOST_TEST(contains(error_of(image(R"({"x":{"dtype":"Q7","shape":[4],"data_offsets":[0,16]}})", body)), "unsupported dtype"));
  BOOST_TEST(contains(error_of(image(R"({"x":{"dtype":"F32","shape":[3],"data_offsets":[0,16]}})", body)), "needs 12 bytes"));
  BOOST_TEST(contains(error_of(image(R"({"x":{"dtype":"F32","shape":[4],"data_offsets":[8,24]}})", body)), "outside"));
  BOOST_TEST(contains(error_of(image(R"({"x":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                                     R"("y":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})", body)), "overlap"));
  BOOST_TEST(contains(error_of(image(R"({"x":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}})", body)), "negative"));
  BOOST_TEST(contains(error_of(image(R"({"x":{"dtype":"F32","shape":[2],"data_offsets":[8,0]}})", body)), "outside"));
  BOOST_TEST(contains(error_of(image(R"([1,2])", body)), "not a JSON object"));
  BOOST_TEST(contains(error_of(image(R"({"x":{"dtype":"F32"}})", body)), "lacks"));
  // Every truncation of a real file is an error, never a crash.
  std::string real = slurp(fixture("vocos/mel_vocos.safetensors"));
  for (size_t cut : {size_t(0), size_t(7), size_t(9), size_t(100), real.size() / 2, real.size() - 1})
    BOOST_TEST(!error_of(real.substr(0, cut)).empty());
}

BOOST_AUTO_TEST_CASE(missing_file_names_the_path) {
  try {
    Checkpoint::open("/nonexistent/model.safetensors");
    BOOST_FAIL("no error");
  } catch (const ModelError& e) {
    BOOST_TEST(contains(e.what(), "/nonexistent/model.safetensors"));
  }
}
