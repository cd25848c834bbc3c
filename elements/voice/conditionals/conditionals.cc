#include "elements/voice/conditionals/conditionals.h"

#include "elements/mel/features/mel_extractor.h"
#include "elements/voice/audio/audio_file.h"
#include "elements/voice/audio/librosa_mel.h"
#include "elements/voice/audio/loudness.h"
#include "elements/voice/audio/resample.h"
#include "gst-plugins/core/compute_threads.h"
#include "gst-plugins/core/checkpoint.h"
#include "gst-plugins/core/mel_format.h"
#include "gst-plugins/core/torch_f32.h"

#include <ATen/ATen.h>
#include <c10/core/InferenceMode.h>

#include <sys/stat.h>

#include <cmath>
#include <cstdio>
#include <limits>
#include <vector>

namespace chatterbox::voice {

namespace {

// The shortest reference the original variant takes: one 40 ms S3 token
// with its 25 ms fbank frame, measured with chatterbox-voice on trimmed
// clips: 0.01 s fails in the tokenizer (<= 200 samples), 0.02 s in CAMPPlus
// (< 400 samples), 0.03 s gives no S3Gen prompt token, 0.05 s gives one.
constexpr double kMinOriginalSeconds = 0.05;
// Under this a warning: upstream conditions T3 on 6 s and S3Gen on 10 s.
constexpr double kShortReferenceSeconds = 2.0;

bool is_file(const std::string& p) {
  struct stat st {};
  return ::stat(p.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

// S3Gen's mel_spectrogram (matcha's, as the MelExtractor S3Gen layout) with
// the tables it multiplies by: librosa's float32 filterbank and
// torch.hann_window(1920) in float32, both CPU-independent (librosa_mel.h,
// torch_f32.h).
mel::MelExtractor s3gen_mel() {
  const MelFormat f = MelFormat::s3gen();
  const std::vector<float> w = f32::hann_window(f.win_length, true);
  at::Tensor win = at::from_blob(const_cast<float*>(w.data()), {f.win_length}, at::kFloat).clone();
  return mel::MelExtractor(f).with_tables(librosa_mel_f32(f.rate, f.n_fft, f.n_mels, f.f_min, f.f_max), win);
}

}  // namespace

VariantSpec VariantSpec::of(Variant v) {
  if (v == Variant::Turbo) return {15 * kS3Rate, 375};
  return {6 * kS3Rate, 150};
}

std::map<std::string, at::Tensor> VoiceConditionals::tensors() const {
  return {{"t3.speaker_emb", speaker_emb},
          {"t3.cond_prompt_speech_tokens", cond_prompt_speech_tokens},
          {"t3.emotion_adv", emotion_adv},
          {"gen.prompt_token", gen.prompt_token},
          {"gen.prompt_token_len", gen.prompt_token_len},
          {"gen.prompt_feat", gen.prompt_feat},
          {"gen.embedding", gen.embedding}};
}

void VoiceConditionals::save(const std::string& path, const std::map<std::string, std::string>& metadata) const {
  std::map<std::string, at::Tensor> t;
  for (auto& [k, v] : tensors()) t[k] = v.contiguous();
  write_safetensors(path, t, metadata);
}

struct VoiceCloner::Impl {
  S3Tokenizer tokenizer;
  CAMPPlus campplus;
  VoiceEncoder ve;
  Impl(S3Tokenizer t, CAMPPlus c, VoiceEncoder v) : tokenizer(std::move(t)), campplus(std::move(c)), ve(std::move(v)) {}
};

VoiceCloner::VoiceCloner(S3Tokenizer tokenizer, CAMPPlus campplus, VoiceEncoder ve)
    : impl_(std::make_unique<Impl>(std::move(tokenizer), std::move(campplus), std::move(ve))) {}
VoiceCloner::VoiceCloner(VoiceCloner&&) noexcept = default;
VoiceCloner& VoiceCloner::operator=(VoiceCloner&&) noexcept = default;
VoiceCloner::~VoiceCloner() = default;

VoiceCloner VoiceCloner::load(const std::string& s3gen_path, const std::string& ve_path) {
  const Checkpoint s3gen = Checkpoint::open(s3gen_path);
  return VoiceCloner(S3Tokenizer::load(s3gen), CAMPPlus::load(s3gen), VoiceEncoder::load(ve_path));
}

VoiceCloner VoiceCloner::load_dir(const std::string& dir, Variant variant) {
  const std::string ve = dir + "/ve.safetensors";
  std::string s3gen = dir + "/s3gen.safetensors";
  if (variant == Variant::Turbo && is_file(dir + "/s3gen_meanflow.safetensors")) s3gen = dir + "/s3gen_meanflow.safetensors";
  for (const auto& p : {s3gen, ve})
    if (!is_file(p))
      throw ModelError("model folder '" + dir + "' has no '" + p.substr(dir.size() + 1) +
                       "' (the voice front end needs s3gen.safetensors" +
                       (variant == Variant::Turbo ? std::string(" or s3gen_meanflow.safetensors") : std::string()) +
                       " and ve.safetensors)");
  return load(s3gen, ve);
}

const S3Tokenizer& VoiceCloner::tokenizer() const { return impl_->tokenizer; }
const CAMPPlus& VoiceCloner::campplus() const { return impl_->campplus; }
const VoiceEncoder& VoiceCloner::voice_encoder() const { return impl_->ve; }

S3GenRef embed_ref(const S3Tokenizer& tokenizer, const CAMPPlus& campplus, const at::Tensor& wave_in, int64_t rate,
                   Trace* trace) {
  c10::InferenceMode guard;
  ComputeThreads threads;  // the project thread policy (compute_threads.h)
  static const mel::MelExtractor mel = s3gen_mel();
  auto keep = [&](const std::string& k, const at::Tensor& v) {
    if (trace) (*trace)[k] = v;
  };
  const at::Tensor wave = wave_in.to(at::kFloat).reshape({-1});
  const at::Tensor wave_24 = rate == kS3GenRate ? wave : resample_sinc(wave, rate, kS3GenRate);
  S3GenRef r;
  r.prompt_feat = mel.compute(wave_24).unsqueeze(0);  // [1, F, 80]
  const at::Tensor wave_16 = rate == kS3Rate ? wave : resample_sinc(wave, rate, kS3Rate);
  keep("s3gen.wave_16k", wave_16);
  r.embedding = campplus.embed(wave_16);
  at::Tensor tokens = tokenizer.tokenize(wave_16).tokens;
  keep("s3gen.tokens_before_truncation", tokens);
  // mel_len must be 2 * token_len; upstream cuts the tokens to frames // 2
  // when it is not (the input is not a multiple of 40 ms).
  const int64_t frames = r.prompt_feat.size(1);
  if (frames != 2 * tokens.size(1)) tokens = tokens.slice(1, 0, std::min(tokens.size(1), frames / 2));
  r.prompt_token = tokens.contiguous();
  r.prompt_token_len = at::full({1}, tokens.size(1), at::kLong);
  return r;
}

std::vector<std::string> reference_warnings(const at::Tensor& wave_in, int64_t rate) {
  std::vector<std::string> out;
  const at::Tensor wave = wave_in.to(at::kFloat).reshape({-1});
  const int64_t n = wave.size(0);
  if (n == 0) return out;
  char buf[256];
  const double seconds = static_cast<double>(n) / static_cast<double>(rate);
  if (seconds < kShortReferenceSeconds) {
    std::snprintf(buf, sizeof buf,
                  "the reference is only %.2f s long: the voice is measured from very little speech (Chatterbox "
                  "conditions on up to 6 s for T3 and 10 s for S3Gen; 5-10 s clone best)",
                  seconds);
    out.emplace_back(buf);
  }
  const at::Tensor mag = wave.abs();
  const double peak = mag.max().item<double>();
  if (!(peak >= 1e-3)) {
    std::snprintf(buf, sizeof buf,
                  "the reference is silent (peak %.1f dBFS, below -60 dBFS): a voice measured from it is "
                  "meaningless; record speech at a normal level",
                  peak > 0 ? 20.0 * std::log10(peak) : -std::numeric_limits<double>::infinity());
    out.emplace_back(buf);
    return out;
  }
  const int64_t full = (mag >= 0.999).sum().item<int64_t>();
  if (full >= 10 && static_cast<double>(full) >= 1e-3 * static_cast<double>(n)) {
    std::snprintf(buf, sizeof buf,
                  "the reference is clipped: %lld of its %lld samples (%.2f %%) are at full scale; the distortion "
                  "becomes part of the cloned voice (record with less gain)",
                  static_cast<long long>(full), static_cast<long long>(n), 100.0 * full / n);
    out.emplace_back(buf);
  }
  return out;
}

double min_reference_seconds(Variant v) { return v == Variant::Turbo ? 5.0 : kMinOriginalSeconds; }

at::Tensor prepare_reference(const at::Tensor& wave_24k_in, const CloneOptions& opts) {
  at::Tensor wave_24k = wave_24k_in.to(at::kFloat).reshape({-1});
  const double seconds = static_cast<double>(wave_24k.size(0)) / kS3GenRate;
  char buf[256];
  if (opts.variant != Variant::Turbo) {
    if (seconds < kMinOriginalSeconds) {
      std::snprintf(buf, sizeof buf,
                    "the reference is %.3f s long; Chatterbox needs at least %.2f s of reference audio (5-10 s "
                    "of speech clone best)",
                    seconds, kMinOriginalSeconds);
      throw ModelError(buf);
    }
    return wave_24k;
  }
  if (!(seconds > 5.0)) {
    std::snprintf(buf, sizeof buf, "the reference is %.3f s long; Chatterbox-Turbo needs more than 5 s of reference audio",
                  seconds);
    throw ModelError(buf);
  }
  return opts.norm_loudness ? normalize_loudness(wave_24k, kS3GenRate, -27.0) : wave_24k;
}

S3GenRef s3gen_conditionals(const S3Tokenizer& tokenizer, const CAMPPlus& campplus, const at::Tensor& wave_24k,
                            Trace* trace) {
  const at::Tensor w = wave_24k.reshape({-1});
  return embed_ref(tokenizer, campplus, w.slice(0, 0, std::min(kDecCondSamples, w.size(0))), kS3GenRate, trace);
}

T3Voice t3_conditionals(const S3Tokenizer& tokenizer, const VoiceEncoder& ve, const at::Tensor& wave_24k,
                        const CloneOptions& opts, Trace* trace) {
  c10::InferenceMode guard;
  ComputeThreads threads;  // the project thread policy (compute_threads.h)
  const VariantSpec spec = VariantSpec::of(opts.variant);
  const at::Tensor ref_16k = resample_soxr_hq(wave_24k, kS3GenRate, kS3Rate);
  if (trace) (*trace)["resample.wave_16k"] = ref_16k;
  T3Voice v;
  const at::Tensor prompt_wave = ref_16k.slice(0, 0, std::min(spec.enc_cond_samples, ref_16k.size(0)));
  v.cond_prompt_speech_tokens = tokenizer.tokenize(prompt_wave, spec.prompt_tokens).tokens.contiguous();
  v.speaker_emb = ve.embed(ref_16k);  // [1, 256]; upstream's mean over one row is a no-op
  // exaggeration * torch.ones(1, 1, 1): a float32 product.
  v.emotion_adv = at::full({1, 1, 1}, static_cast<float>(opts.exaggeration), at::kFloat);
  return v;
}

S3GenRef VoiceCloner::embed_ref(const at::Tensor& wave, int64_t rate, Trace* trace) const {
  return voice::embed_ref(impl_->tokenizer, impl_->campplus, wave, rate, trace);
}

VoiceConditionals VoiceCloner::prepare_conditionals(const at::Tensor& wave_24k_in, const CloneOptions& opts,
                                                    Trace* trace) const {
  const at::Tensor wave_24k = prepare_reference(wave_24k_in, opts);
  // Upstream's order: the 16 kHz resample first, then embed_ref, then the
  // T3 prompt and the VoiceEncoder (each stage is independent of the order).
  T3Voice t3 = t3_conditionals(impl_->tokenizer, impl_->ve, wave_24k, opts, trace);
  VoiceConditionals c;
  c.warnings = reference_warnings(wave_24k_in, kS3GenRate);
  c.gen = s3gen_conditionals(impl_->tokenizer, impl_->campplus, wave_24k, trace);
  c.speaker_emb = t3.speaker_emb;
  c.cond_prompt_speech_tokens = t3.cond_prompt_speech_tokens;
  c.emotion_adv = t3.emotion_adv;
  return c;
}

VoiceConditionals VoiceCloner::prepare_conditionals(const std::string& path, const CloneOptions& opts,
                                                    Trace* trace) const {
  at::Tensor wave = load_audio(path, kS3GenRate);
  if (trace) (*trace)["load.wave_24k"] = wave;
  return prepare_conditionals(wave, opts, trace);
}

}  // namespace chatterbox::voice
