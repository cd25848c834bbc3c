// embed_ref / prepare_conditionals against fixtures/clone/embed_ref_tiny
// (the reference run on ref_24k.wav with the tiny tokenizer, tiny CAMPPlus
// and real-size VoiceEncoder of the other clone fixtures). Bounds: the clone
// README's recommended tolerances (10x the larger float32-vs-float64 error of
// its public and hidden sets), or derived as stated beside each check.
#define BOOST_TEST_MODULE voice_conditionals
#include <boost/test/unit_test.hpp>

#include "elements/voice/audio/audio_file.h"
#include "elements/voice/audio/loudness.h"
#include "elements/voice/audio/resample.h"
#include "elements/voice/conditionals/conditionals.h"
#include "elements/voice/voice_encoder/ve_melspec.h"
#include "tests/test_util.h"
#include "tests/voice/voice_test_util.h"

#include <sndfile.h>

#include <cmath>
#include <cstdio>
#include <vector>

using namespace chatterbox;
using namespace chatterbox::test;
using namespace chatterbox::voice;

namespace {

struct Fixture {
  Checkpoint ck = Checkpoint::open(fixture("clone/embed_ref_tiny.safetensors"));
  VoiceCloner cloner{S3Tokenizer::load(fixture("clone/s3tok_tiny.safetensors")),
                     CAMPPlus::load(fixture("clone/campplus_tiny.safetensors")),
                     VoiceEncoder::load(fixture("clone/ve_full.safetensors"))};
  std::string wav = fixture("clone/ref_24k.wav");
  at::Tensor g(const std::string& n) const { return ck.get("test." + n); }
  at::Tensor raw(const std::string& n) const { return ck.get_raw("test." + n); }
};

const Fixture& fx() {
  static Fixture f;
  return f;
}

}  // namespace

BOOST_AUTO_TEST_CASE(load_is_exact) {
  Audio a = read_audio_mono(fx().wav);
  BOOST_TEST(a.rate == 24000);
  // librosa.load of 24 kHz int16 PCM at sr=24000: int16 / 32768, no resampling.
  BOOST_TEST(at::equal(load_audio(fx().wav, 24000), fx().g("load.wave_24k")));
  BOOST_TEST(contains(error_of([] { read_audio_mono("/nonexistent/ref.wav"); }), "/nonexistent/ref.wav"));
}

// libsoxr 0.1.3 called as python-soxr calls it: the same library and engine
// (cr32s, single-precision SSE on every x86-64 CPU), so the same bits.
BOOST_AUTO_TEST_CASE(soxr_resample_is_bit_identical) {
  at::Tensor y = resample_soxr_hq(fx().g("load.wave_24k"), 24000, 16000);
  BOOST_TEST(y.size(0) == 114974);
  BOOST_TEST(report("resample.wave_16k", y, fx().g("resample.wave_16k")) == 0.0);
  // fix_length: ceil(n * 2/3) samples for any n.
  for (int64_t n : {1, 2, 3, 1000, 72001})
    BOOST_TEST(resample_soxr_hq(at::zeros({n}), 24000, 16000).size(0) == (2 * n + 2) / 3);
  BOOST_TEST(at::equal(resample_soxr_hq(fx().g("load.wave_24k"), 24000, 24000), fx().g("load.wave_24k")));
}

BOOST_AUTO_TEST_CASE(torchaudio_resampler) {
  int64_t width = 0;
  at::Tensor k = sinc_resample_kernel(24000, 16000, &width);
  BOOST_TEST(width == 10);
  // Computed in float64 and rounded once, as torchaudio does: sin/cos of
  // double arguments are within an ulp of double on any libm, far below
  // float32's rounding, so the float32 kernel matches to within one ulp of
  // its largest tap (0.66: 6e-8).
  BOOST_TEST(report("resample_kernel", k, fx().g("s3gen.resample_kernel")) <= 6e-8);
  at::Tensor y = resample_sinc(fx().g("s3gen.ref_wave_24k"), 24000, 16000);
  BOOST_TEST(report("s3gen.wave_16k", y, fx().g("s3gen.wave_16k")) <= 2e-6);  // 10x 2.0e-7
}

BOOST_AUTO_TEST_CASE(embed_ref_stages) {
  const auto& f = fx();
  const at::Tensor wave16 = f.g("s3gen.wave_16k")[0];
  BOOST_TEST(report("xvector_fbank given wave_16k", CAMPPlus::features(wave16).unsqueeze(0),
                    f.g("s3gen.xvector_fbank")) <= 6e-3);  // 10x 5.8e-4
  BOOST_TEST(report("embedding given wave_16k", f.cloner.campplus().embed(wave16), f.g("s3gen.embedding")) <=
             5e-3);  // 10x 4.5e-4
  S3Tokens tok = f.cloner.tokenizer().tokenize(wave16);
  BOOST_TEST(report("tok_log_mel given wave_16k", tok.log_mel, f.g("s3gen.tok_log_mel")) <= 4e-4);  // 10x 3.7e-5
  at::Tensor h = S3Tokenizer::fsq_h(f.cloner.tokenizer().fsq_project(f.cloner.tokenizer().encode(tok.log_mel)));
  BOOST_TEST(report("tok_fsq_h given wave_16k", h, f.g("s3gen.tok_fsq_h")) <= 2e-4);  // 10x 1.6e-5 (fsq_h from wave)
  BOOST_TEST(token_mismatches("tokens_before_truncation", tok.tokens, f.raw("s3gen.tokens_before_truncation"),
                              f.g("s3gen.tok_fsq_h")) == 0);
  // prompt_feat: the S3Gen mel of the clip (exact input).
  S3GenRef r = f.cloner.embed_ref(f.g("s3gen.ref_wave_24k")[0], 24000);
  BOOST_TEST(report("prompt_feat", r.prompt_feat, f.g("s3gen.prompt_feat")) <= 1.5e-3);  // 10x 1.3e-4
  // 359 mel frames != 2 * 180 tokens: cut to 179.
  BOOST_TEST(r.prompt_token.size(1) == 179);
  BOOST_TEST(r.prompt_token_len.item<int64_t>() == f.raw("s3gen.prompt_token_len").item<int64_t>());
}

BOOST_AUTO_TEST_CASE(t3_prompt_and_voice_encoder_stages) {
  const auto& f = fx();
  S3Tokens p = f.cloner.tokenizer().tokenize(f.g("t3.prompt_wave_16k")[0], 150);
  BOOST_TEST(report("t3.prompt_log_mel", p.log_mel, f.g("t3.prompt_log_mel")) <= 4e-4);  // 10x 3.7e-5
  at::Tensor h = S3Tokenizer::fsq_h(f.cloner.tokenizer().fsq_project(f.cloner.tokenizer().encode(p.log_mel)));
  BOOST_TEST(report("t3.prompt_fsq_h", h, f.g("t3.prompt_fsq_h")) <= 2e-4);  // 10x 1.6e-5
  BOOST_TEST(token_mismatches("t3 prompt tokens", p.tokens, f.raw("t3.cond_prompt_speech_tokens"),
                              f.g("t3.prompt_fsq_h")) == 0);
  // VoiceEncoder on the whole soxr 16 kHz reference: trim keeps [0, 111104).
  const at::Tensor ref16 = f.g("resample.wave_16k");
  TrimResult tr = librosa_trim(ref16);
  at::Tensor idx = f.raw("t3.ve.trim_index");
  BOOST_TEST(tr.start == idx[0].item<int64_t>());
  BOOST_TEST(tr.end == idx[1].item<int64_t>());
  const VoiceEncoder& ve = f.cloner.voice_encoder();
  at::Tensor parts = VoiceEncoder::partials(ve.mel(f.g("t3.ve.wave_trimmed")));
  // Partials are slices of the mel: its bound, 2e-6 x max |mel| (10x 1.9e-7).
  const double peak = f.g("t3.ve.partials").abs().max().item<double>();
  BOOST_TEST(report("t3.ve.partials", parts, f.g("t3.ve.partials")) <= 2e-6 * peak);
  BOOST_TEST(report("t3.ve.partial_embeds", ve.partial_embeds(f.g("t3.ve.partials")), f.g("t3.ve.partial_embeds")) <=
             2e-6);  // 10x 1.4e-7
  BOOST_TEST(report("t3.speaker_emb given wave_16k", ve.embed(ref16), f.g("t3.speaker_emb")) <= 1e-6);  // 10x 4.9e-8
}

// The whole call from the file. The load is exact and the soxr signal
// bit-identical (above), so the T3 side and prompt_feat see the reference's
// inputs and keep their "given" bounds. The S3Gen tokens and x-vector see our
// torchaudio-resampled signal (within 2e-6 of the reference's): the tokens
// keep the near-tie rule; the x-vector has no end-to-end README row, and its
// sensitivity to its input is large in quiet frames (log energies near the
// float32-eps floor), so its bound is derived from the reference's own
// end-to-end float32 error e64, measured here: the same chain (torchaudio
// resampler, fbank, CAMPPlus) in float64 from the exact clip, exact to ~1e-14.
// Ours and the reference's each carry e64 of rounding: |ours - ref| <= 2 e64,
// with 3x margin: 6 e64.
BOOST_AUTO_TEST_CASE(prepare_conditionals_end_to_end) {
  const auto& f = fx();
  Trace tr;
  VoiceConditionals c = f.cloner.prepare_conditionals(f.wav, {}, &tr);
  BOOST_TEST(report("end-to-end s3gen.wave_16k", tr.at("s3gen.wave_16k").unsqueeze(0), f.g("s3gen.wave_16k")) <= 2e-6);
  BOOST_TEST(token_mismatches("gen.prompt_token", c.gen.prompt_token, f.raw("s3gen.prompt_token"),
                              f.g("s3gen.tok_fsq_h").slice(1, 0, 179)) == 0);
  BOOST_TEST(at::equal(c.gen.prompt_token_len, f.raw("s3gen.prompt_token_len")));
  BOOST_TEST(report("gen.prompt_feat", c.gen.prompt_feat, f.g("s3gen.prompt_feat")) <= 1.5e-3);
  const CAMPPlus campplus64 = CAMPPlus::load(fixture("clone/campplus_tiny.safetensors"), at::kDouble);
  const at::Tensor clip64 = f.g("s3gen.ref_wave_24k")[0].to(at::kDouble);
  const at::Tensor emb64 = campplus64.embed(resample_sinc(clip64, 24000, 16000));
  const double e64 = max_abs_diff(f.g("s3gen.embedding"), emb64);
  std::cout << "  gen.embedding: reference float32 vs float64 end to end " << e64 << "\n";
  BOOST_TEST(report("gen.embedding", c.gen.embedding, f.g("s3gen.embedding")) <= 6 * e64);
  // ... and it is CAMPPlus of our own 16 kHz signal, as upstream computes it.
  BOOST_TEST(at::equal(c.gen.embedding, f.cloner.campplus().embed(tr.at("s3gen.wave_16k"))));
  BOOST_TEST(token_mismatches("t3.cond_prompt_speech_tokens", c.cond_prompt_speech_tokens,
                              f.raw("t3.cond_prompt_speech_tokens"), f.g("t3.prompt_fsq_h")) == 0);
  BOOST_TEST(report("t3.speaker_emb", c.speaker_emb, f.g("t3.speaker_emb")) <= 1e-6);
  BOOST_TEST(at::equal(c.emotion_adv, f.g("t3.emotion_adv")));
  // Layout and dtypes of upstream's Conditionals.
  auto t = c.tensors();
  BOOST_TEST(t.size() == 7u);
  BOOST_TEST(t.at("gen.prompt_token").scalar_type() == at::kLong);
  BOOST_TEST(t.at("gen.prompt_token_len").scalar_type() == at::kLong);
  BOOST_TEST(t.at("t3.cond_prompt_speech_tokens").scalar_type() == at::kLong);
  BOOST_TEST(t.at("gen.prompt_feat").sizes() == (std::vector<int64_t>{1, 359, 80}));
  BOOST_TEST(t.at("t3.emotion_adv").sizes() == (std::vector<int64_t>{1, 1, 1}));
  // Another exaggeration only changes emotion_adv.
  CloneOptions o;
  o.exaggeration = 0.7;
  VoiceConditionals c7 = f.cloner.prepare_conditionals(f.g("load.wave_24k"), o);
  BOOST_TEST(c7.emotion_adv.item<float>() == 0.7f);
  BOOST_TEST(at::equal(c7.cond_prompt_speech_tokens, c.cond_prompt_speech_tokens));
}

// Turbo (not covered by the fixtures): 15 s / 375-token prompt, -27 LUFS,
// references of 5 s or less refused, as tts_turbo.py.
BOOST_AUTO_TEST_CASE(turbo_variant) {
  const auto& f = fx();
  CloneOptions o;
  o.variant = Variant::Turbo;
  const at::Tensor wave = f.g("load.wave_24k");  // 7.19 s
  BOOST_TEST(contains(error_of([&] { f.cloner.prepare_conditionals(wave.slice(0, 0, 5 * 24000), o); }),
                      "more than 5 s"));
  // Loudness: libebur128's gated measure; the normalised wave measures -27.
  const double before = integrated_loudness(wave, 24000);
  const at::Tensor norm = normalize_loudness(wave, 24000, -27.0);
  BOOST_TEST(std::abs(integrated_loudness(norm, 24000) + 27.0) < 1e-3);
  BOOST_TEST(std::abs(norm.abs().max().item<double>() / wave.abs().max().item<double>() -
                      std::pow(10.0, (-27.0 - before) / 20.0)) < 1e-5);
  // Silence: gain not finite, the wave is left as it is.
  BOOST_TEST(at::equal(normalize_loudness(at::zeros({48000}), 24000), at::zeros({48000})));
  // A 14 s reference (the clip twice): 15 s window -> all 14 s, 350 tokens;
  // the original variant would take 150.
  const at::Tensor longer = at::cat({wave, wave}).slice(0, 0, 14 * 24000);
  VoiceConditionals t = f.cloner.prepare_conditionals(longer, o);
  BOOST_TEST(t.cond_prompt_speech_tokens.size(1) == 350);
  BOOST_TEST(f.cloner.prepare_conditionals(longer).cond_prompt_speech_tokens.size(1) == 150);
  // Its T3 prompt is the tokenizer run on the loudness-normalised soxr signal.
  const at::Tensor ref16 = resample_soxr_hq(normalize_loudness(longer, 24000, -27.0), 24000, 16000);
  BOOST_TEST(at::equal(t.cond_prompt_speech_tokens, f.cloner.tokenizer().tokenize(ref16, 375).tokens));
  // The S3Gen side takes the first 10 s: 500 frames, 250 tokens.
  BOOST_TEST(t.gen.prompt_feat.size(1) == 500);
  BOOST_TEST(t.gen.prompt_token.size(1) == 250);
}

BOOST_AUTO_TEST_CASE(model_folder_errors_name_the_file) {
  const std::string e = error_of([] { VoiceCloner::load_dir("/nonexistent-models"); });
  BOOST_TEST(contains(e, "/nonexistent-models"));
  BOOST_TEST(contains(e, "s3gen.safetensors"));
}

namespace {

// A WAV through libsndfile: `channels` copies of `mono` interleaved, as
// 16-bit PCM (what recorders write) at `rate`.
std::string write_wav(const std::string& name, const at::Tensor& mono, int rate, int channels) {
  const std::string path = tmp_path(name);
  SF_INFO info{};
  info.samplerate = rate;
  info.channels = channels;
  info.format = SF_FORMAT_WAV | SF_FORMAT_PCM_16;
  SNDFILE* f = sf_open(path.c_str(), SFM_WRITE, &info);
  BOOST_REQUIRE_MESSAGE(f, sf_strerror(nullptr));
  // int16 = round(x * 32768), clamped: what soundfile reads back as / 32768.
  at::Tensor m = at::clamp(at::round(mono.to(at::kDouble) * 32768.0), -32768, 32767).to(at::kShort).contiguous();
  std::vector<short> inter(static_cast<size_t>(m.numel() * channels));
  for (int64_t i = 0; i < m.numel(); ++i)
    for (int c = 0; c < channels; ++c) inter[static_cast<size_t>(i * channels + c)] = m.data_ptr<int16_t>()[i];
  BOOST_REQUIRE(sf_writef_short(f, inter.data(), m.numel()) == m.numel());
  sf_close(f);
  return path;
}

double cosine(const at::Tensor& a, const at::Tensor& b) {
  at::Tensor x = a.to(at::kDouble).reshape({-1}), y = b.to(at::kDouble).reshape({-1});
  return (x.dot(y) / (x.norm() * y.norm())).item<double>();
}

}  // namespace

// Silent and clipped references are flagged (the elements post them as
// warnings, chatterbox-voice prints them); ordinary speech is not.
BOOST_AUTO_TEST_CASE(silent_and_clipped_references_warn) {
  const at::Tensor wave = fx().g("load.wave_24k");
  BOOST_TEST(reference_warnings(wave).empty());
  auto w = reference_warnings(at::zeros({48000}));
  BOOST_REQUIRE(w.size() == 1u);
  BOOST_TEST(contains(w[0], "silent"), w[0]);
  w = reference_warnings(wave * 1e-4);  // peak ~ -80 dBFS
  BOOST_REQUIRE(w.size() == 1u);
  BOOST_TEST(contains(w[0], "silent"), w[0]);
  w = reference_warnings(at::clamp(wave * 20.0, -1.0, 1.0));
  BOOST_REQUIRE(w.size() == 1u);
  BOOST_TEST(contains(w[0], "clipped"), w[0]);
  // A few full-scale peaks in a long recording are not clipping.
  at::Tensor peaks = wave.clone();
  peaks.slice(0, 1000, 1005).fill_(1.0);
  BOOST_TEST(reference_warnings(peaks).empty());
  // The warnings travel with the conditionals.
  BOOST_TEST(fx().cloner.prepare_conditionals(at::clamp(wave * 20.0, -1.0, 1.0)).warnings.size() == 1u);
}

// Too short for the model: an error saying the length needed.
BOOST_AUTO_TEST_CASE(too_short_references_are_refused_with_the_length_needed) {
  const at::Tensor wave = fx().g("load.wave_24k");
  std::string e = error_of([&] { fx().cloner.prepare_conditionals(wave.slice(0, 0, 480)); });  // 0.02 s
  BOOST_TEST(contains(e, "0.020 s long"), e);
  BOOST_TEST(contains(e, "at least"), e);
  char need[32];
  std::snprintf(need, sizeof need, "%.2f s", min_reference_seconds(Variant::Original));
  BOOST_TEST(contains(e, need), e);
  // Just long enough: every stage computes.
  const int64_t n = static_cast<int64_t>(std::ceil(min_reference_seconds(Variant::Original) * 24000));
  VoiceConditionals c = fx().cloner.prepare_conditionals(wave.slice(0, 12000, 12000 + n));
  BOOST_TEST(c.gen.prompt_token.size(1) > 0);
  BOOST_TEST(c.cond_prompt_speech_tokens.size(1) > 0);
  // ... with a warning that it is short.
  BOOST_REQUIRE(c.warnings.size() == 1u);
  BOOST_TEST(contains(c.warnings[0], "only 0.05 s long"), c.warnings[0]);
  BOOST_TEST(bool(at::isfinite(c.speaker_emb).all().item<bool>()));
  BOOST_TEST(bool(at::isfinite(c.gen.embedding).all().item<bool>()));
  CloneOptions o;
  o.variant = Variant::Turbo;
  e = error_of([&] { fx().cloner.prepare_conditionals(wave.slice(0, 0, 4 * 24000), o); });
  BOOST_TEST(contains(e, "4.000 s long"), e);
  BOOST_TEST(contains(e, "more than 5 s"), e);
}

// Channels and rate are converted, never misread: a stereo file of the same
// samples gives the same voice; a 48 kHz file gives (within resampling) the
// same voice; an unreadable file is an error naming it.
BOOST_AUTO_TEST_CASE(channels_and_rate_are_converted) {
  const at::Tensor wave = fx().g("load.wave_24k");  // int16 / 32768: exact in 16-bit PCM
  const std::string stereo = write_wav("stereo24.wav", wave, 24000, 2);
  BOOST_TEST(at::equal(load_audio(stereo, 24000), wave));
  const VoiceConditionals mono = fx().cloner.prepare_conditionals(fx().wav);
  const VoiceConditionals st = fx().cloner.prepare_conditionals(stereo);
  BOOST_TEST(at::equal(st.gen.prompt_feat, mono.gen.prompt_feat));
  BOOST_TEST(at::equal(st.speaker_emb, mono.speaker_emb));
  BOOST_TEST(at::equal(st.gen.prompt_token, mono.gen.prompt_token));
  std::remove(stereo.c_str());
  // 48 kHz stereo (soxr up, then librosa.load's soxr down): the same length
  // at 24 kHz, and the same voice to within the two resamplings.
  const std::string hi = write_wav("stereo48.wav", resample_soxr_hq(wave, 24000, 48000), 48000, 2);
  const at::Tensor back = load_audio(hi, 24000);
  BOOST_TEST(back.size(0) == wave.size(0));
  const VoiceConditionals h = fx().cloner.prepare_conditionals(hi);
  std::remove(hi.c_str());
  const double emb = cosine(h.gen.embedding, mono.gen.embedding), spk = cosine(h.speaker_emb, mono.speaker_emb);
  const double same = h.gen.prompt_token.eq(mono.gen.prompt_token).to(at::kDouble).mean().item<double>();
  std::cout << "  48 kHz stereo vs 24 kHz mono: x-vector cosine " << emb << ", VE cosine " << spk
            << ", prompt tokens equal " << same << "\n";
  BOOST_TEST(emb > 0.999);
  BOOST_TEST(spk > 0.999);
  BOOST_TEST(same > 0.9);
  // Not audio: the error names the file.
  const std::string junk = tmp_path("junk.wav");
  FILE* f = std::fopen(junk.c_str(), "wb");
  std::fputs("RIFF....WAVEjunk", f);
  std::fclose(f);
  const std::string e = error_of([&] { fx().cloner.prepare_conditionals(junk); });
  BOOST_TEST(contains(e, junk), e);
  std::remove(junk.c_str());
}
