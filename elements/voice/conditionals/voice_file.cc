#include "elements/voice/conditionals/voice_file.h"

#include "elements/voice/audio/audio_file.h"
#include "gst-plugins/core/model_cache.h"

#include <sndfile.h>

#include <cstdio>
#include <cstring>
#include <sstream>

namespace chatterbox::voice {

namespace {

std::string variant_name(Variant v) { return v == Variant::Turbo ? "turbo" : "original"; }

// The models, shared with every other user of the same files.
std::shared_ptr<const S3Tokenizer> tokenizer_of(const std::string& path) {
  return ModelCache::global().get<S3Tokenizer>(ModelCache::make_key("s3tokenizer", {path}), [&] {
    return std::make_shared<const S3Tokenizer>(S3Tokenizer::load(path));
  });
}
std::shared_ptr<const CAMPPlus> campplus_of(const std::string& path) {
  return ModelCache::global().get<CAMPPlus>(ModelCache::make_key("campplus", {path}),
                                            [&] { return std::make_shared<const CAMPPlus>(CAMPPlus::load(path)); });
}
std::shared_ptr<const VoiceEncoder> ve_of(const std::string& path) {
  return ModelCache::global().get<VoiceEncoder>(ModelCache::make_key("voice-encoder", {path}), [&] {
    return std::make_shared<const VoiceEncoder>(VoiceEncoder::load(path));
  });
}

}  // namespace

bool is_reference_audio(const std::string& path) {
  unsigned char head[9] = {0};
  FILE* f = std::fopen(path.c_str(), "rb");
  if (!f) return false;
  const size_t n = std::fread(head, 1, sizeof head, f);
  std::fclose(f);
  if (n >= 4 && std::memcmp(head, "PK\x03\x04", 4) == 0) return false;  // torch zip (conds.pt)
  if (n == 9 && head[8] == '{') return false;                          // safetensors: u64 length, then JSON
  SF_INFO info{};
  SNDFILE* s = sf_open(path.c_str(), SFM_READ, &info);
  if (!s) return false;
  sf_close(s);
  return true;
}

std::shared_ptr<const S3GenRef> cached_s3gen_voice(const std::string& audio, const std::string& s3gen_checkpoint,
                                                   Variant variant) {
  const std::string key = ModelCache::make_key("voice-s3gen", {audio, s3gen_checkpoint}, "cpu",
                                               "variant=" + variant_name(variant));
  return ModelCache::global().get<S3GenRef>(key, [&] {
    CloneOptions o;
    o.variant = variant;
    const auto tokenizer = tokenizer_of(s3gen_checkpoint);
    const auto campplus = campplus_of(s3gen_checkpoint);
    const at::Tensor loaded = load_audio(audio, kS3GenRate);
    S3GenRef r = s3gen_conditionals(*tokenizer, *campplus, prepare_reference(loaded, o));
    r.warnings = reference_warnings(loaded, kS3GenRate);
    return std::make_shared<const S3GenRef>(std::move(r));
  });
}

std::shared_ptr<const T3Voice> cached_t3_voice(const std::string& audio, const std::string& s3gen_checkpoint,
                                               const std::string& ve_checkpoint, const CloneOptions& opts) {
  std::ostringstream options;
  options << "variant=" << variant_name(opts.variant) << ",exaggeration=" << opts.exaggeration
          << ",norm_loudness=" << opts.norm_loudness;
  const std::string key = ModelCache::make_key("voice-t3", {audio, s3gen_checkpoint, ve_checkpoint}, "cpu", options.str());
  return ModelCache::global().get<T3Voice>(key, [&] {
    const auto tokenizer = tokenizer_of(s3gen_checkpoint);
    const auto ve = ve_of(ve_checkpoint);
    const at::Tensor loaded = load_audio(audio, kS3GenRate);
    T3Voice v = t3_conditionals(*tokenizer, *ve, prepare_reference(loaded, opts), opts);
    v.warnings = reference_warnings(loaded, kS3GenRate);
    return std::make_shared<const T3Voice>(std::move(v));
  });
}

}  // namespace chatterbox::voice
