// Reference audio -> a voice: S3Gen.embed_ref and
// ChatterboxTTS.prepare_conditionals (chatterbox/models/s3gen/s3gen.py,
// tts.py, tts_turbo.py), producing the content of upstream's Conditionals:
//   gen.prompt_token [1, P] int64, gen.prompt_token_len [1] int64,
//   gen.prompt_feat [1, F, 80] (S3Gen log-mel of the first 10 s at 24 kHz),
//   gen.embedding [1, 192] (CAMPPlus x-vector),
//   t3.speaker_emb [1, 256] (VoiceEncoder), t3.cond_prompt_speech_tokens
//   [1, plen] int64, t3.emotion_adv [1, 1, 1] (the exaggeration).
//
// The call sequence, as upstream:
//   wave_24k = librosa.load(path, sr=24000)            (libsndfile + soxr HQ)
//   [Turbo: > 5 s required; scaled to -27 LUFS]
//   ref_16k = librosa.resample(wave_24k, 24000, 16000)  (soxr HQ)
//   gen = embed_ref(wave_24k[:10 s], 24000):
//     prompt_feat = S3Gen mel (librosa filterbank, torch Hann window)
//     wave_16k = torchaudio Resample(24000, 16000)      (sinc/Hann; not soxr)
//     embedding = CAMPPlus(wave_16k); tokens = S3Tokenizer(wave_16k)
//     tokens cut to frames // 2 when frames != 2 * tokens
//   t3 prompt = S3Tokenizer(ref_16k[:6 s | 15 s], max_len=150 | 375)
//   speaker_emb = VoiceEncoder(ref_16k) (the whole reference)
//
// No GStreamer here: part of libchatterbox.
#pragma once

#include "elements/voice/s3tokenizer/s3tokenizer.h"
#include "elements/voice/voice_encoder/voice_encoder.h"
#include "elements/voice/xvector/campplus.h"

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace chatterbox::voice {

// S3Gen.embed_ref's dict (prompt_feat_len is None upstream: not kept).
struct S3GenRef {
  at::Tensor prompt_token;      // [1, P] int64
  at::Tensor prompt_token_len;  // [1] int64
  at::Tensor prompt_feat;       // [1, F, 80] float32
  at::Tensor embedding;         // [1, 192] float32
  std::vector<std::string> warnings;  // reference_warnings() of the recording it came from
};

struct VoiceConditionals {
  at::Tensor speaker_emb;                // [1, 256] float32
  at::Tensor cond_prompt_speech_tokens;  // [1, plen] int64
  at::Tensor emotion_adv;                // [1, 1, 1] float32
  S3GenRef gen;
  std::vector<std::string> warnings;  // reference_warnings() of the recording

  // The names Conditionals.save gives them in conds.pt, flattened with '.'
  // ("t3.speaker_emb", "gen.prompt_token", ...): what T3Cond::load and
  // S3GenVoice::load read.
  std::map<std::string, at::Tensor> tensors() const;
  // Writes tensors() as safetensors (with `metadata`).
  void save(const std::string& path, const std::map<std::string, std::string>& metadata = {}) const;
};

enum class Variant { Original, Turbo };

struct CloneOptions {
  Variant variant = Variant::Original;
  double exaggeration = 0.5;
  bool norm_loudness = true;  // Turbo only (its prepare_conditionals default)
};

// Per-variant constants of prepare_conditionals.
struct VariantSpec {
  int64_t enc_cond_samples;  // ENC_COND_LEN at 16 kHz: 6 s | 15 s
  int64_t prompt_tokens;     // T3 speech_cond_prompt_len: 150 | 375
  static VariantSpec of(Variant v);
};

constexpr int64_t kS3GenRate = 24000, kS3Rate = 16000;
constexpr int64_t kDecCondSamples = 10 * kS3GenRate;  // DEC_COND_LEN

// The two halves, for users that hold only one model (s3genmel: tokenizer
// and speaker encoder of its s3gen checkpoint; t3: tokenizer and
// VoiceEncoder). Both take the reference at 24 kHz after
// prepare_reference().

// What a user should hear before trusting a voice made from `wave` (at
// `rate`; as loaded, before loudness normalisation), one sentence each: a
// short reference (under 2 s), silence (peak below -60 dBFS: nothing to
// measure a voice from) and
// clipping (at least 0.1 % of the samples, and 10 or more, at |x| >= 0.999 of
// full scale: the distortion becomes part of the voice). Empty when neither.
std::vector<std::string> reference_warnings(const at::Tensor& wave, int64_t rate = kS3GenRate);

// The shortest reference each variant takes, in seconds: Turbo's check
// (more than 5 s, upstream's assert); the original's is what its stages need
// to compute anything (see prepare_reference).
double min_reference_seconds(Variant v);

// Turbo: refuses references of 5 s or less and scales to -27 LUFS (when
// opts.norm_loudness); the original variant returns the wave unchanged.
at::Tensor prepare_reference(const at::Tensor& wave_24k, const CloneOptions& opts);
// S3Gen.embed_ref(ref_wav, ref_sr): 1-D float32 at `rate`. `trace` receives
// the intermediate signals under the fixture's names (s3gen.wave_16k,
// s3gen.tokens_before_truncation).
S3GenRef embed_ref(const S3Tokenizer& tokenizer, const CAMPPlus& campplus, const at::Tensor& wave, int64_t rate,
                   Trace* trace = nullptr);
// embed_ref of the first 10 s (DEC_COND_LEN) of a prepared 24 kHz reference.
S3GenRef s3gen_conditionals(const S3Tokenizer& tokenizer, const CAMPPlus& campplus, const at::Tensor& wave_24k,
                            Trace* trace = nullptr);

// T3Cond's tensors.
struct T3Voice {
  at::Tensor speaker_emb;                // [1, 256] float32
  at::Tensor cond_prompt_speech_tokens;  // [1, plen] int64
  at::Tensor emotion_adv;                // [1, 1, 1] float32
  std::vector<std::string> warnings;     // reference_warnings() of the recording
};
// The T3 half of a prepared 24 kHz reference: the soxr 16 kHz signal's
// prompt tokens (first 6 s | 15 s) and VoiceEncoder embedding (all of it).
// `trace` receives resample.wave_16k.
T3Voice t3_conditionals(const S3Tokenizer& tokenizer, const VoiceEncoder& ve, const at::Tensor& wave_24k,
                        const CloneOptions& opts = {}, Trace* trace = nullptr);

class VoiceCloner {
 public:
  VoiceCloner(S3Tokenizer tokenizer, CAMPPlus campplus, VoiceEncoder ve);
  // s3gen.safetensors (or s3gen_meanflow.safetensors: the same tokenizer and
  // speaker encoder) and ve.safetensors.
  static VoiceCloner load(const std::string& s3gen_path, const std::string& ve_path);
  // A Chatterbox model folder: ve.safetensors and s3gen.safetensors, or for
  // Turbo s3gen_meanflow.safetensors (s3gen.safetensors when absent).
  static VoiceCloner load_dir(const std::string& dir, Variant variant = Variant::Original);

  VoiceCloner(VoiceCloner&&) noexcept;
  VoiceCloner& operator=(VoiceCloner&&) noexcept;
  ~VoiceCloner();

  const S3Tokenizer& tokenizer() const;
  const CAMPPlus& campplus() const;
  const VoiceEncoder& voice_encoder() const;

  // voice::embed_ref with this cloner's models.
  S3GenRef embed_ref(const at::Tensor& wave, int64_t rate, Trace* trace = nullptr) const;
  // prepare_conditionals from a reference already loaded at 24 kHz.
  VoiceConditionals prepare_conditionals(const at::Tensor& wave_24k, const CloneOptions& opts = {},
                                         Trace* trace = nullptr) const;
  // prepare_conditionals(path): the file loaded as librosa.load(path, sr=24000).
  VoiceConditionals prepare_conditionals(const std::string& path, const CloneOptions& opts = {},
                                         Trace* trace = nullptr) const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace chatterbox::voice
