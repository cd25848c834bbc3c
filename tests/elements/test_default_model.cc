// The embedded default Vocos (models/vocos-s3gen-small.safetensors): vocosdec
// with no `model` property loads it, and copy-synthesis of fresh speech
// through melspec ! vocosdec stays close to the original in the S3Gen
// log-mel domain (the quality bar of the training issue: L1 <= 0.5).
#define BOOST_TEST_MODULE default_model
#include <boost/test/unit_test.hpp>

#include "elements/mel/features/mel_extractor.h"
#include "tests/elements/gst_test_util.h"

#include <ATen/ATen.h>

#include <cstdio>
#include <cstdlib>
#include <string>

using namespace chatterbox::test;

BOOST_GLOBAL_FIXTURE(GstGlobal);

namespace {
std::string make_speech() {
  // Not one of scripts/corpus_sentences.txt.
  const std::string raw = "default_model_speech_22k.wav", wav = "default_model_speech.wav";
  const std::string cmd = "espeak-ng -v en-us -s 150 -w " + raw +
                          " 'Seven quiet owls watched the harbour lights until morning.' && sox " + raw +
                          " -r 24000 " + wav;
  BOOST_REQUIRE_MESSAGE(std::system(cmd.c_str()) == 0, "espeak-ng and sox are needed (scripts/install-deps.sh)");
  std::remove(raw.c_str());
  return wav;
}
}  // namespace

BOOST_AUTO_TEST_CASE(copy_synthesis_with_the_default_model) {
  const std::string wav = make_speech();
  PipelineResult in = run_pipeline("filesrc location=" + wav +
                                   " ! wavparse ! audioconvert ! audioresample ! "
                                   "audio/x-raw,format=F32LE,channels=1,rate=24000 ! appsink name=out sync=false");
  PipelineResult out = run_pipeline("filesrc location=" + wav +
                                    " ! wavparse ! audioconvert ! audioresample ! melspec ! vocosdec ! "
                                    "appsink name=out sync=false");
  std::remove(wav.c_str());
  BOOST_REQUIRE(in.log.errors.empty());
  BOOST_REQUIRE_MESSAGE(out.log.errors.empty(), "pipeline errors: " << (out.log.errors.empty() ? "" : out.log.errors[0]));
  at::Tensor original = in.out.tensor();
  at::Tensor synth = out.out.tensor();
  const int64_t n = original.numel() / 480 * 480;
  BOOST_REQUIRE(synth.numel() == n);
  BOOST_TEST(at::isfinite(synth).all().item<bool>());
  chatterbox::mel::MelExtractor mel(chatterbox::MelFormat::s3gen());
  const double l1 = (mel.compute(synth) - mel.compute(original.narrow(0, 0, n))).abs().mean().item<double>();
  BOOST_TEST_MESSAGE("default Vocos copy-synthesis log-mel L1: " << l1);
  BOOST_TEST(l1 <= 0.5);
  // Not silence, not clipping.
  const double rms = synth.pow(2).mean().sqrt().item<double>();
  BOOST_TEST(rms > 0.01);
  BOOST_TEST(synth.abs().max().item<double>() < 1.0);
}
