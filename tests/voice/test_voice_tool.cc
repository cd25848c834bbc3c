// chatterbox-voice: the tool's voice file round-trips through the loaders the
// elements use (T3Cond::load for t3, S3GenVoice::load for s3genmel) and holds
// exactly what the library computes; errors name what is wrong.
#define BOOST_TEST_MODULE voice_tool
#include <boost/test/unit_test.hpp>

#include "elements/s3gen/flow/s3gen_flow.h"
#include "elements/t3/model/t3.h"
#include "elements/voice/conditionals/conditionals.h"
#include "tests/test_util.h"
#include "tests/voice/voice_test_util.h"

#include <nlohmann/json.hpp>
#include <sys/stat.h>
#include <sys/wait.h>

#include <cstdio>
#include <cstdlib>

using namespace chatterbox;
using namespace chatterbox::test;
using namespace chatterbox::voice;
using chatterbox::t3::T3Cond;

namespace {

// A model folder whose s3gen.safetensors holds the tiny tokenizer and
// CAMPPlus under their real prefixes, and whose ve.safetensors is ve_full.
struct ModelDir {
  std::string dir = tmp_path("models");
  ModelDir() {
    ::mkdir(dir.c_str(), 0755);
    std::map<std::string, at::Tensor> s3gen, ve;
    for (const char* f : {"clone/s3tok_tiny.safetensors", "clone/campplus_tiny.safetensors"})
      for (const auto& [k, v] : read_safetensors(fixture(f)).tensors)
        if (k.compare(0, 5, "test.") != 0) s3gen[k] = v;
    for (const auto& [k, v] : read_safetensors(fixture("clone/ve_full.safetensors")).tensors)
      if (k.compare(0, 5, "test.") != 0) ve[k] = v;
    write_safetensors(dir + "/s3gen.safetensors", s3gen);
    write_safetensors(dir + "/ve.safetensors", ve);
  }
  ~ModelDir() {
    std::remove((dir + "/s3gen.safetensors").c_str());
    std::remove((dir + "/ve.safetensors").c_str());
    ::rmdir(dir.c_str());
  }
};

const ModelDir& models() {
  static ModelDir m;
  return m;
}

struct Run {
  int rc;
  std::string out, err;
};

Run run_tool(const std::string& args) {
  const std::string o = tmp_path("stdout"), e = tmp_path("stderr");
  const int st = std::system((std::string(VOICE_TOOL) + " " + args + " >" + o + " 2>" + e).c_str());
  Run r{WIFEXITED(st) ? WEXITSTATUS(st) : -1, slurp(o), slurp(e)};
  std::remove(o.c_str());
  std::remove(e.c_str());
  return r;
}

}  // namespace

BOOST_AUTO_TEST_CASE(voice_file_round_trips) {
  const std::string out = tmp_path("voice.safetensors"), wav = fixture("clone/ref_24k.wav");
  Run r = run_tool(wav + " --model-dir " + models().dir + " -o " + out + " --json");
  BOOST_TEST_MESSAGE(r.err);
  BOOST_REQUIRE(r.rc == 0);
  const nlohmann::json j = nlohmann::json::parse(r.out);
  BOOST_TEST(j.at("t3_prompt_tokens").get<int>() == 150);
  BOOST_TEST(j.at("s3gen_prompt_tokens").get<int>() == 179);
  BOOST_TEST(j.at("s3gen_prompt_frames").get<int>() == 359);
  BOOST_TEST(j.at("variant").get<std::string>() == "original");

  // What the library computes from the same folder and file.
  const VoiceConditionals want = VoiceCloner::load_dir(models().dir).prepare_conditionals(wav);
  const T3Cond t3 = T3Cond::load(out);
  BOOST_TEST(at::equal(t3.speaker_emb, want.speaker_emb));
  BOOST_TEST(at::equal(t3.cond_prompt_speech_tokens, want.cond_prompt_speech_tokens));
  BOOST_TEST(at::equal(t3.emotion_adv, want.emotion_adv));
  const S3GenVoice gen = S3GenVoice::load(out);
  BOOST_TEST(at::equal(gen.prompt_token, want.gen.prompt_token));
  BOOST_TEST(at::equal(gen.prompt_feat, want.gen.prompt_feat));
  BOOST_TEST(at::equal(gen.embedding, want.gen.embedding));
  // ... which is the reference's voice: tokens identical (the README rule;
  // no near-ties in this set), the floats within the conditionals suite's bounds.
  const Checkpoint ref = Checkpoint::open(fixture("clone/embed_ref_tiny.safetensors"));
  BOOST_TEST(at::equal(t3.cond_prompt_speech_tokens, ref.get_raw("test.t3.cond_prompt_speech_tokens")));
  BOOST_TEST(at::equal(gen.prompt_token, ref.get_raw("test.s3gen.prompt_token")));
  BOOST_TEST(max_abs_diff(t3.speaker_emb, ref.get("test.t3.speaker_emb")) <= 1e-6);
  // Every stored tensor and the metadata.
  const TensorStore s = read_safetensors(out);
  BOOST_TEST(s.tensors.size() == 7u);
  BOOST_TEST(s.metadata.at("variant") == "original");
  BOOST_TEST(s.tensors.at("gen.prompt_token_len").item<int64_t>() == 179);
  std::remove(out.c_str());
}

BOOST_AUTO_TEST_CASE(turbo_and_exaggeration) {
  const std::string out = tmp_path("turbo.safetensors"), wav = fixture("clone/ref_24k.wav");
  Run r = run_tool(wav + " --model-dir " + models().dir + " --turbo --exaggeration 0.3 -o " + out + " --json");
  BOOST_TEST_MESSAGE(r.err);
  BOOST_REQUIRE(r.rc == 0);
  const nlohmann::json j = nlohmann::json::parse(r.out);
  // 7.19 s < 15 s: the whole 114974-sample 16 kHz signal, 718 frames -> 180 tokens.
  BOOST_TEST(j.at("t3_prompt_tokens").get<int>() == 180);
  BOOST_TEST(j.at("variant").get<std::string>() == "turbo");
  BOOST_TEST(T3Cond::load(out).emotion_adv.item<float>() == 0.3f);
  std::remove(out.c_str());
}

BOOST_AUTO_TEST_CASE(errors_name_the_problem) {
  const std::string wav = fixture("clone/ref_24k.wav"), out = tmp_path("never.safetensors");
  Run r = run_tool(wav + " --model-dir /nonexistent-models -o " + out);
  BOOST_TEST(r.rc == 1);
  BOOST_TEST(contains(r.err, "/nonexistent-models"));
  BOOST_TEST(contains(r.err, "s3gen.safetensors"));
  r = run_tool("/nonexistent/ref.wav --model-dir " + models().dir + " -o " + out);
  BOOST_TEST(r.rc == 1);
  BOOST_TEST(contains(r.err, "/nonexistent/ref.wav"));
  r = run_tool(wav + " --model-dir " + models().dir);
  BOOST_TEST(r.rc == 2);
  BOOST_TEST(contains(r.err, "-o is required"));
  r = run_tool(wav + " --model-dir " + models().dir + " --exaggeration lots -o " + out);
  BOOST_TEST(r.rc == 2);
  r = run_tool(wav + " --frobnicate");
  BOOST_TEST(r.rc == 2);
  BOOST_TEST(contains(r.err, "--frobnicate"));
  struct stat st {};
  BOOST_TEST(::stat(out.c_str(), &st) != 0);  // nothing written on failure
}

// A clipped reference: the voice is written, with a warning on stderr (and
// in --json); one too short: exit 1 with the length needed.
BOOST_AUTO_TEST_CASE(bad_references_warn_or_fail) {
  const std::string wav = fixture("clone/ref_24k.wav"), out = tmp_path("clipped.safetensors");
  const std::string clipped = tmp_path("clipped.wav"), shorty = tmp_path("short.wav");
  BOOST_REQUIRE(std::system(("sox -q " + wav + " " + clipped + " vol 20 2>/dev/null").c_str()) == 0);
  BOOST_REQUIRE(std::system(("sox -q " + wav + " " + shorty + " trim 1 0.02").c_str()) == 0);
  Run r = run_tool(clipped + " --model-dir " + models().dir + " -o " + out + " --json");
  BOOST_TEST(r.rc == 0);
  BOOST_TEST(contains(r.err, "chatterbox-voice: warning: '" + clipped + "'"), r.err);
  BOOST_TEST(contains(r.err, "clipped"), r.err);
  BOOST_TEST(nlohmann::json::parse(r.out).at("warnings").size() == 1u);
  r = run_tool(shorty + " --model-dir " + models().dir + " -o " + out);
  BOOST_TEST(r.rc == 1);
  BOOST_TEST(contains(r.err, "0.020 s long"), r.err);
  BOOST_TEST(contains(r.err, "needs at least"), r.err);
  r = run_tool(wav + " --model-dir " + models().dir + " --turbo -o " + out);  // 7.19 s: fine
  BOOST_TEST(r.rc == 0);
  BOOST_TEST(!contains(r.err, "warning"), r.err);
  for (const auto& p : {out, clipped, shorty}) std::remove(p.c_str());
}
