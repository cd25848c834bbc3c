// Bad inputs that must end in a clear error (ModelError with an actionable
// message, or a refused caps with a reason), never a crash:
//  - replays of every input a fuzzer ever failed on (tests/robustness/inputs/
//    <harness>/, run through the harness code itself, fuzz/fuzz_<harness>.cc:
//    a finding there aborts this process);
//  - targeted cases behind the rows of docs/robustness.md that no other suite
//    covers.
#define BOOST_TEST_MODULE robustness
#include <boost/test/unit_test.hpp>

#include "elements/s3gen/flow/s3gen_flow.h"
#include "elements/t3/model/text_frontend.h"
#include "elements/vocoder/hift/hift.h"
#include "elements/vocoder/vocos/vocos.h"
#include "gst-plugins/core/checkpoint.h"
#ifdef CHATTERBOX_ROBUSTNESS_CAPS
#include "gst-plugins/caps.h"
#endif

#include <ATen/ATen.h>
#include <nlohmann/json.hpp>

#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <sstream>
#include <unistd.h>
#include "tests/test_util.h"

using chatterbox::test::contains;

using namespace chatterbox;
namespace fs = std::filesystem;

#define REPLAY(h) extern "C" int replay_##h(const uint8_t* data, size_t size);
REPLAY(safetensors)
REPLAY(torch_zip)
REPLAY(vocos_config)
REPLAY(vocos_yaml)
REPLAY(hift_config)
REPLAY(s3gen_config)
REPLAY(tokenizer)
#ifdef CHATTERBOX_ROBUSTNESS_CAPS
REPLAY(caps)
extern "C" int replay_init_caps(int*, char***);
#endif

namespace {

std::string slurp(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

// The what() of the ModelError `fn` throws; fails the test when it throws
// nothing or another type.
std::string model_error(const std::function<void()>& fn) {
  try {
    fn();
  } catch (const ModelError& e) {
    return e.what();
  } catch (const std::exception& e) {
    BOOST_ERROR("expected ModelError, got " << typeid(e).name() << ": " << e.what());
    return "";
  }
  BOOST_ERROR("expected ModelError, nothing was thrown");
  return "";
}

Checkpoint with_config(const std::string& config, std::map<std::string, at::Tensor> tensors = {}) {
  auto s = std::make_shared<TensorStore>();
  s->path = "robustness.safetensors";
  s->tensors = std::move(tensors);
  s->metadata["config"] = config;
  return Checkpoint(s);
}

// The tensor shapes of a small Vocos (dim 16, 100 mels, n_fft 64, 1 block).
std::map<std::string, at::Tensor> vocos_shapes() {
  return {{"backbone.embed.weight", at::zeros({16, 100, 7})},
          {"head.out.weight", at::zeros({66, 16})},
          {"backbone.convnext.0.dwconv.weight", at::zeros({16, 1, 7})},
          {"backbone.convnext.0.pwconv1.weight", at::zeros({48, 16})}};
}

std::string temp_file(const std::string& text) {
  std::string p = (fs::temp_directory_path() / ("chatterbox_robustness_" + std::to_string(getpid()) + ".yaml")).string();
  std::ofstream(p, std::ios::binary) << text;
  return p;
}

}  // namespace

BOOST_AUTO_TEST_CASE(fuzz_regressions_replay) {
  const std::map<std::string, int (*)(const uint8_t*, size_t)> replay = {
      {"safetensors", replay_safetensors},   {"torch_zip", replay_torch_zip},
      {"vocos_config", replay_vocos_config}, {"vocos_yaml", replay_vocos_yaml},
      {"hift_config", replay_hift_config},   {"s3gen_config", replay_s3gen_config},
      {"tokenizer", replay_tokenizer},
#ifdef CHATTERBOX_ROBUSTNESS_CAPS
      {"caps", replay_caps},
#endif
  };
#ifdef CHATTERBOX_ROBUSTNESS_CAPS
  replay_init_caps(nullptr, nullptr);
#endif
  const fs::path root = CHATTERBOX_ROBUSTNESS_INPUTS;
  int n = 0;
  for (const auto& dir : fs::directory_iterator(root)) {
    const std::string h = dir.path().filename().string();
    if (!replay.count(h)) {
      BOOST_TEST_MESSAGE("skipping inputs for '" << h << "' (harness not built here)");
      continue;
    }
    for (const auto& f : fs::directory_iterator(dir.path())) {
      const std::string data = slurp(f.path());
      BOOST_TEST_MESSAGE("replaying " << h << "/" << f.path().filename().string());
      replay.at(h)(reinterpret_cast<const uint8_t*>(data.data()), data.size());
      ++n;
    }
  }
  BOOST_TEST(n >= 4);  // the inputs committed with this suite
}

BOOST_AUTO_TEST_CASE(config_numbers_out_of_int_range_are_refused) {
  // json::get<int>() of 3e58 is undefined behaviour; Checkpoint::config()
  // refuses it for every model, naming the field.
  std::string e = model_error([] { (void)with_config(R"({"head": {"hop_length": 3e58}})").config(); });
  BOOST_TEST(contains(e, "config.head.hop_length"));
  BOOST_TEST(contains(e, "out of range"));
  BOOST_TEST(contains(model_error([] { (void)with_config(R"({"n": [1, -1e300]})").config(); }), "config.n[1]"));
  // A literal beyond double range is already a JSON parse error.
  BOOST_TEST(contains(model_error([] { (void)with_config(R"({"n": 1e400})").config(); }), "not JSON"));
  BOOST_TEST(contains(model_error([] { (void)resolve_vocos_config(with_config(R"({"hop_length": 3e58})", vocos_shapes())); }),
                      "out of range"));
  // Ordinary floats pass.
  BOOST_TEST(with_config(R"({"eps": 1e-6, "sr": 24000.0, "neg": -2147483647.0})").config()["sr"].get<double>() == 24000.0);
}

BOOST_AUTO_TEST_CASE(config_nesting_is_bounded) {
  std::string deep = std::string(40, '[') + std::string(40, ']');
  BOOST_TEST(contains(model_error([&] { (void)with_config(deep).config(); }), "nested more than 32"));
}

BOOST_AUTO_TEST_CASE(config_values_of_the_wrong_type_are_model_errors) {
  BOOST_TEST(contains(model_error([] { (void)resolve_vocos_config(with_config(R"({"hop_length": "16"})", vocos_shapes())); }),
                      "wrong type"));
  BOOST_TEST(contains(model_error([] {
                        (void)resolve_vocos_config(with_config(R"({"feature_extractor": 5})", vocos_shapes()));
                      }),
                      "robustness.safetensors"));
  BOOST_TEST(contains(model_error([] { (void)hift::HiftConfig::from_json(nlohmann::json::parse(R"({"upsample_rates": "x"})")); }),
                      "wrong type"));
  BOOST_TEST(!model_error([] { (void)S3GenFlowConfig::from_json(nlohmann::json::parse(R"({"flow": {"input_size": "big"}})")); })
                  .empty());
  BOOST_TEST(contains(model_error([] { (void)with_config("{\"a\": 1").config(); }), "not JSON"));
}

BOOST_AUTO_TEST_CASE(vocos_yaml_that_is_not_a_mapping) {
  // A document that is a scalar or a list: yaml-cpp's BadSubscript used to
  // escape (fuzz/fuzz_vocos_yaml).
  for (const char* doc : {"mo", "- 1\n- 2\n", "", "backbone: 3\n", "model: {init_args: 7}\n"}) {
    std::string p = temp_file(doc);
    std::string e = model_error([&] { (void)vocos_yaml_to_json(p); });
    BOOST_TEST(contains(e, "Vocos config '" + p + "'"), doc);
    std::remove(p.c_str());
  }
  BOOST_TEST(contains(model_error([] { (void)vocos_yaml_to_json("/nonexistent/config.yaml"); }), "not readable YAML"));
}

BOOST_AUTO_TEST_CASE(tokenizer_garbage_is_a_model_error) {
  BOOST_TEST(contains(model_error([] { (void)t3::EnTokenizer::from_json_string("\xff\xfe"); }), "not valid JSON"));
  BOOST_TEST(contains(model_error([] { (void)t3::EnTokenizer::from_json_string("[]"); }), "not a JSON object"));
}

#ifdef CHATTERBOX_ROBUSTNESS_CAPS
BOOST_AUTO_TEST_CASE(mel_caps_refusals_give_a_reason) {
  gst_init(nullptr, nullptr);
  for (const char* s : {"audio/x-mel-spectrogram, rate=(int)24000",
                        "audio/x-mel-spectrogram, rate=(int){ 16000, 24000 }, n-mels=(int)[ 1, 200 ]",
                        "audio/x-raw, rate=(int)24000", "audio/x-mel-spectrogram, n-mels=(string)eighty"}) {
    GstCaps* caps = gst_caps_from_string(s);
    BOOST_REQUIRE(caps);
    MelFormat f;
    std::string why;
    BOOST_TEST(!mel_format_from_caps(caps, &f, &why), s);
    BOOST_TEST(!why.empty(), s);
    gst_caps_unref(caps);
  }
}
#endif
