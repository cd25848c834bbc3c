// voice= given reference audio on s3genmel and t3: the elements compute
// their half of prepare_conditionals once per file (shared through the
// model cache) and then behave exactly as with the equivalent conds file.
// Links libchatterbox.so, so the model cache inspected here is the plugin's.
#define BOOST_TEST_MODULE voice_elements
#include <boost/test/unit_test.hpp>

#include "elements/voice/audio/audio_file.h"
#include "elements/voice/conditionals/conditionals.h"
#include "gst-plugins/core/checkpoint.h"
#include "gst-plugins/core/model_cache.h"
#include "tests/fixtures.h"
#include "tests/test_util.h"

#include <ATen/ATen.h>
#include <gst/check/gstharness.h>
#include <gst/gst.h>
#include <sndfile.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <string>
#include <vector>

using namespace chatterbox;
using namespace chatterbox::voice;
using chatterbox::test::contains;
using chatterbox::test::fixture;

namespace {

struct GstInit {
  GstInit() { gst_init(nullptr, nullptr); }
};
BOOST_GLOBAL_FIXTURE(GstInit);

std::string tmp(const std::string& name) { return "/tmp/voice_el_" + std::to_string(::getpid()) + "_" + name; }

// An s3gen checkpoint with the tiny flow (and its config) plus the clone
// fixtures' tiny tokenizer and CAMPPlus under their real prefixes; a T3 model
// folder beside it with ve.safetensors.
struct Files {
  std::string dir = tmp("models");
  std::string s3gen = dir + "/s3gen.safetensors";
  std::string t3 = dir + "/t3_cfg.safetensors";
  std::string ve = dir + "/ve.safetensors";
  std::string wav = fixture("clone/ref_24k.wav");
  Files() {
    ::mkdir(dir.c_str(), 0755);
    const Checkpoint flow = Checkpoint::open(fixture("s3gen/flow_tiny.safetensors"));
    std::map<std::string, at::Tensor> w;
    for (const auto& k : flow.keys())
      if (k.rfind("test.", 0) != 0) w[k] = flow.get_raw(k);
    for (const char* f : {"clone/s3tok_tiny.safetensors", "clone/campplus_tiny.safetensors"})
      for (const auto& [k, v] : read_safetensors(fixture(f)).tensors)
        if (k.rfind("test.", 0) != 0) w[k] = v;
    write_safetensors(s3gen, w, {{"config", flow.metadata("config")}});
    BOOST_REQUIRE(::symlink(fixture("t3/t3_tiny.safetensors").c_str(), t3.c_str()) == 0);
    BOOST_REQUIRE(::symlink(fixture("clone/ve_full.safetensors").c_str(), ve.c_str()) == 0);
    BOOST_REQUIRE(::symlink(fixture("t3/tokenizer_tiny.json").c_str(), tokenizer.c_str()) == 0);
  }
  std::string tokenizer = dir + "/tokenizer.json";
  ~Files() {
    for (const auto& p : {s3gen, t3, ve, tokenizer}) std::remove(p.c_str());
    ::rmdir(dir.c_str());
  }
};

const Files& files() {
  static Files f;
  return f;
}

// The library's conditionals for the fixture recording (tiny models).
const VoiceConditionals& library_voice() {
  static VoiceConditionals c =
      VoiceCloner(S3Tokenizer::load(files().s3gen), CAMPPlus::load(files().s3gen), VoiceEncoder::load(files().ve))
          .prepare_conditionals(files().wav);
  return c;
}

std::vector<int32_t> all_ints(GstHarness* h) {
  std::vector<int32_t> out;
  while (GstBuffer* b = gst_harness_try_pull(h)) {
    GstMapInfo m;
    gst_buffer_map(b, &m, GST_MAP_READ);
    const int32_t* p = reinterpret_cast<const int32_t*>(m.data);
    out.insert(out.end(), p, p + m.size / 4);
    gst_buffer_unmap(b, &m);
    gst_buffer_unref(b);
  }
  return out;
}

at::Tensor s3genmel_mel(const std::string& voice, const std::string& model) {
  GstHarness* h = gst_harness_new_parse(("s3genmel seed=1 model=" + model + " voice=" + voice).c_str());
  gst_harness_set_src_caps_str(h, "audio/x-speech-tokens,format=S32LE,codebook=s3-v2-25hz,vocab-size=6561,rate=25");
  at::Tensor tok = Checkpoint::open(fixture("s3gen/flow_tiny.safetensors")).get_raw("test.token").to(at::kInt).contiguous();
  GstBuffer* b = gst_buffer_new_allocate(nullptr, tok.numel() * 4, nullptr);
  gst_buffer_fill(b, 0, tok.data_ptr<int32_t>(), tok.numel() * 4);
  BOOST_REQUIRE(gst_harness_push(h, b) == GST_FLOW_OK);
  BOOST_REQUIRE(gst_harness_push_event(h, gst_event_new_eos()));
  std::vector<int32_t> raw = all_ints(h);  // float32 bits
  gst_harness_teardown(h);
  at::Tensor mel = at::empty({static_cast<int64_t>(raw.size())}, at::kFloat);
  std::memcpy(mel.data_ptr<float>(), raw.data(), raw.size() * 4);
  return mel.reshape({-1, 80});
}

std::vector<int32_t> t3_tokens(const std::string& voice, const std::string& model) {
  GstElement* e = gst_element_factory_make("t3", nullptr);
  BOOST_REQUIRE(e);
  for (const auto& [k, v] : std::map<std::string, std::string>{{"model", model},
                                                                {"tokenizer", fixture("t3/tokenizer_tiny.json")},
                                                                {"voice", voice},
                                                                {"greedy", "true"},
                                                                {"max-tokens", "40"}})
    gst_util_set_object_arg(G_OBJECT(e), k.c_str(), v.c_str());
  GstHarness* h = gst_harness_new_with_element(e, "sink", "src");
  gst_harness_set_src_caps_str(h, "text/x-raw, format=(string)utf8");
  const std::string text = "the little robot counted stones by the river";
  GstBuffer* b = gst_buffer_new_allocate(nullptr, text.size(), nullptr);
  gst_buffer_fill(b, 0, text.data(), text.size());
  BOOST_REQUIRE(gst_harness_push(h, b) == GST_FLOW_OK);
  BOOST_REQUIRE(gst_harness_push_event(h, gst_event_new_eos()));
  std::vector<int32_t> out = all_ints(h);
  gst_harness_teardown(h);
  gst_object_unref(e);
  return out;
}

// The error text of a READY that fails ("" if it succeeds).
std::string ready_error(const std::string& launch) {
  GstElement* e = gst_parse_launch(launch.c_str(), nullptr);
  BOOST_REQUIRE(e);
  GstBus* bus = gst_bus_new();
  gst_element_set_bus(e, bus);
  std::string text;
  if (gst_element_set_state(e, GST_STATE_READY) == GST_STATE_CHANGE_FAILURE) {
    GstMessage* msg = gst_bus_pop_filtered(bus, GST_MESSAGE_ERROR);
    BOOST_REQUIRE(msg);
    GError* err = nullptr;
    gst_message_parse_error(msg, &err, nullptr);
    text = err->message;
    g_error_free(err);
    gst_message_unref(msg);
  }
  gst_element_set_state(e, GST_STATE_NULL);
  gst_object_unref(bus);
  gst_object_unref(e);
  return text;
}

}  // namespace

BOOST_AUTO_TEST_CASE(s3genmel_voice_from_audio_equals_the_conds_file) {
  const VoiceConditionals& c = library_voice();
  // 359 prompt frames for 179 tokens (7.19 s is not a multiple of 40 ms): the
  // flow takes 2 per token, so the element uses the first 358.
  BOOST_REQUIRE(c.gen.prompt_feat.size(1) == 359);
  const std::string conds = tmp("gen.safetensors");
  write_safetensors(conds, {{"gen.prompt_token", c.gen.prompt_token},
                            {"gen.prompt_feat", c.gen.prompt_feat.slice(1, 0, 358).contiguous()},
                            {"gen.embedding", c.gen.embedding}});
  at::Tensor from_audio = s3genmel_mel(files().wav, files().s3gen);
  at::Tensor from_conds = s3genmel_mel(conds, files().s3gen);
  std::remove(conds.c_str());
  BOOST_TEST(from_audio.size(0) > 0);
  BOOST_TEST(at::equal(from_audio, from_conds));
  // chatterbox-voice's file keeps upstream's 359 frames; s3genmel takes it
  // the same way.
  const std::string full = tmp("full.safetensors");
  c.save(full);
  at::Tensor from_full = s3genmel_mel(full, files().s3gen);
  std::remove(full.c_str());
  BOOST_TEST(at::equal(from_full, from_conds));
}

BOOST_AUTO_TEST_CASE(s3genmel_computes_a_recording_once) {
  const std::string launch = "s3genmel model=" + files().s3gen + " voice=" + files().wav;
  GstElement* a = gst_parse_launch(launch.c_str(), nullptr);
  BOOST_REQUIRE(gst_element_set_state(a, GST_STATE_READY) == GST_STATE_CHANGE_SUCCESS);
  const uint64_t loads = ModelCache::global().loads();
  GstElement* b = gst_parse_launch(launch.c_str(), nullptr);
  BOOST_REQUIRE(gst_element_set_state(b, GST_STATE_READY) == GST_STATE_CHANGE_SUCCESS);
  BOOST_TEST(ModelCache::global().loads() == loads);  // flow and voice both shared
  int voices = 0;
  for (const auto& e : ModelCache::global().entries())
    if (contains(e.key, "voice-s3gen")) {
      ++voices;
      BOOST_TEST(e.users == 2);
    }
  BOOST_TEST(voices == 1);
  for (GstElement* e : {a, b}) {
    gst_element_set_state(e, GST_STATE_NULL);
    gst_object_unref(e);
  }
}

BOOST_AUTO_TEST_CASE(t3_voice_from_audio_equals_the_conds_file) {
  const VoiceConditionals& c = library_voice();
  const std::string conds = tmp("t3.safetensors");
  write_safetensors(conds, {{"t3.speaker_emb", c.speaker_emb},
                            {"t3.cond_prompt_speech_tokens", c.cond_prompt_speech_tokens},
                            {"t3.emotion_adv", c.emotion_adv}});
  std::vector<int32_t> from_audio = t3_tokens(files().wav, files().t3);
  std::vector<int32_t> from_conds = t3_tokens(conds, files().t3);
  std::remove(conds.c_str());
  BOOST_TEST(!from_audio.empty());
  BOOST_TEST(from_audio == from_conds, boost::test_tools::per_element());
}

// chatterboxtts hands voice= to both: a recording gives the same audio as
// the voice file chatterbox-voice would write for it.
std::vector<int32_t> tts_samples(const std::string& voice) {
  GstHarness* h = gst_harness_new_parse(("chatterboxtts model-dir=" + files().dir + " voice=" + voice +
                                         " greedy=true vocoder=hift hift-model=" + fixture("hift/hift_tiny.safetensors"))
                                            .c_str());
  gst_harness_set_src_caps_str(h, "text/x-raw,format=utf8");
  const std::string text = "the little robot counted stones by the river";
  GstBuffer* in = gst_buffer_new_allocate(nullptr, text.size(), nullptr);
  gst_buffer_fill(in, 0, text.data(), text.size());
  BOOST_REQUIRE(gst_harness_push(h, in) == GST_FLOW_OK);
  BOOST_REQUIRE(gst_harness_push_event(h, gst_event_new_eos()));
  std::vector<int32_t> out = all_ints(h);
  gst_harness_teardown(h);
  return out;
}

BOOST_AUTO_TEST_CASE(tts_bin_voice_from_audio) {
  const VoiceConditionals& c = library_voice();
  const std::string conds = tmp("all.safetensors");
  c.save(conds);  // upstream's content (2P + 1 prompt frames)
  std::vector<int32_t> from_audio = tts_samples(files().wav), from_conds = tts_samples(conds);
  std::remove(conds.c_str());
  BOOST_TEST(!from_audio.empty());
  BOOST_TEST((from_audio == from_conds));
}

BOOST_AUTO_TEST_CASE(errors_name_the_missing_piece) {
  // The flow-only fixture has no tokenizer to read the recording with.
  std::string e = ready_error("s3genmel model=" + fixture("s3gen/flow_tiny.safetensors") + " voice=" + files().wav);
  BOOST_TEST(contains(e, files().wav), e);
  BOOST_TEST(contains(e, "holds no S3 tokenizer"), e);
  // A t3 folder without ve.safetensors.
  const std::string dir = tmp("no_ve");
  ::mkdir(dir.c_str(), 0755);
  const std::string t3 = dir + "/t3_cfg.safetensors", s3gen = dir + "/s3gen.safetensors";
  BOOST_REQUIRE(::symlink(fixture("t3/t3_tiny.safetensors").c_str(), t3.c_str()) == 0);
  BOOST_REQUIRE(::symlink(files().s3gen.c_str(), s3gen.c_str()) == 0);
  e = ready_error("t3 model=" + t3 + " tokenizer=" + fixture("t3/tokenizer_tiny.json") + " voice=" + files().wav);
  BOOST_TEST(contains(e, "ve.safetensors"), e);
  std::remove(t3.c_str());
  std::remove(s3gen.c_str());
  ::rmdir(dir.c_str());
  // Not audio and not a tensor file: the conds loader's error.
  const std::string junk = tmp("junk.bin");
  FILE* f = std::fopen(junk.c_str(), "wb");
  std::fputs("not a voice", f);
  std::fclose(f);
  e = ready_error("s3genmel model=" + files().s3gen + " voice=" + junk);
  BOOST_TEST(contains(e, junk), e);
  std::remove(junk.c_str());
}

namespace {

// `wave` (24 kHz) as a 16-bit WAV.
std::string write_wav24(const std::string& name, const at::Tensor& wave) {
  const std::string path = tmp(name);
  SF_INFO info{};
  info.samplerate = 24000;
  info.channels = 1;
  info.format = SF_FORMAT_WAV | SF_FORMAT_PCM_16;
  SNDFILE* f = sf_open(path.c_str(), SFM_WRITE, &info);
  BOOST_REQUIRE(f);
  at::Tensor w = wave.to(at::kFloat).contiguous();
  BOOST_REQUIRE(sf_writef_float(f, w.data_ptr<float>(), w.numel()) == w.numel());
  sf_close(f);
  return path;
}

// Warnings and errors posted while `launch` goes to READY.
struct Messages {
  bool ready = false;
  std::vector<std::string> warnings, errors;
};
Messages ready_messages(const std::string& launch) {
  GstElement* e = gst_parse_launch(launch.c_str(), nullptr);
  BOOST_REQUIRE(e);
  GstBus* bus = gst_bus_new();
  gst_element_set_bus(e, bus);
  Messages m;
  m.ready = gst_element_set_state(e, GST_STATE_READY) == GST_STATE_CHANGE_SUCCESS;
  while (GstMessage* msg = gst_bus_pop(bus)) {
    GError* err = nullptr;
    if (GST_MESSAGE_TYPE(msg) == GST_MESSAGE_WARNING) {
      gst_message_parse_warning(msg, &err, nullptr);
      m.warnings.push_back(err->message);
    } else if (GST_MESSAGE_TYPE(msg) == GST_MESSAGE_ERROR) {
      gst_message_parse_error(msg, &err, nullptr);
      m.errors.push_back(err->message);
    }
    if (err) g_error_free(err);
    gst_message_unref(msg);
  }
  gst_element_set_state(e, GST_STATE_NULL);
  gst_object_unref(bus);
  gst_object_unref(e);
  return m;
}

}  // namespace

// Bad references on the elements: clipped or silent -> a warning naming the
// file (the voice is still made); too short -> an error saying the length
// needed; unreadable -> an error naming it.
BOOST_AUTO_TEST_CASE(bad_references) {
  const at::Tensor wave = load_audio(files().wav, 24000);
  const std::string clipped = write_wav24("clipped.wav", at::clamp(wave * 20.0, -1.0, 1.0));
  const std::string silent = write_wav24("silent.wav", wave * 1e-3);
  const std::string shorty = write_wav24("short.wav", wave.slice(0, 24000, 24000 + 480));  // 0.02 s
  for (const auto& [file, what] : std::vector<std::pair<std::string, std::string>>{{clipped, "clipped"},
                                                                                   {silent, "silent"}}) {
    Messages m = ready_messages("s3genmel model=" + files().s3gen + " voice=" + file);
    BOOST_TEST(m.ready);
    BOOST_REQUIRE(m.warnings.size() == 1u);
    BOOST_TEST(contains(m.warnings[0], what), m.warnings[0]);
    BOOST_TEST(contains(m.warnings[0], file), m.warnings[0]);
    m = ready_messages("t3 model=" + files().t3 + " tokenizer=" + files().tokenizer + " voice=" + file);
    BOOST_TEST(m.ready);
    BOOST_REQUIRE(m.warnings.size() == 1u);
    BOOST_TEST(contains(m.warnings[0], what), m.warnings[0]);
  }
  for (const std::string& launch : {"s3genmel model=" + files().s3gen + " voice=" + shorty,
                                    "t3 model=" + files().t3 + " tokenizer=" + files().tokenizer + " voice=" + shorty}) {
    Messages m = ready_messages(launch);
    BOOST_TEST(!m.ready);
    BOOST_REQUIRE(m.errors.size() == 1u);
    BOOST_TEST(contains(m.errors[0], shorty), m.errors[0]);
    BOOST_TEST(contains(m.errors[0], "0.020 s long"), m.errors[0]);
    BOOST_TEST(contains(m.errors[0], "needs at least"), m.errors[0]);
  }
  // A WAV header with nothing readable after it.
  const std::string broken = tmp("broken.wav");
  FILE* f = std::fopen(broken.c_str(), "wb");
  std::fputs("RIFF\x24\x00\x00\x00WAVEfmt ", f);
  std::fclose(f);
  Messages m = ready_messages("s3genmel model=" + files().s3gen + " voice=" + broken);
  BOOST_TEST(!m.ready);
  BOOST_REQUIRE(!m.errors.empty());
  BOOST_TEST(contains(m.errors[0], broken), m.errors[0]);
  for (const auto& p : {clipped, silent, shorty, broken}) std::remove(p.c_str());
}

// Live voice conversion: a live 16 kHz source through s3tokenizer (chunked)
// ! s3genmel (chunked) ! hiftdec. The pipeline's latency query adds up the
// elements' reports; each output buffer's delay is measured as the clock's
// running time at its arrival minus its PTS (tiny models: the compute is
// small, so the delay is mostly the algorithmic latency).
BOOST_AUTO_TEST_CASE(live_voice_conversion_latency) {
  const std::string launch =
      "audiotestsrc is-live=true wave=sine freq=220 samplesperbuffer=320 num-buffers=200 ! "
      "audio/x-raw,rate=16000,channels=1 ! audioconvert ! audioresample ! "
      "s3tokenizer name=tok chunk-tokens=25 context-tokens=50 lookahead-tokens=10 model=" + files().s3gen +
      " ! s3genmel chunk-tokens=25 model=" + files().s3gen + " voice=" + files().wav +
      " ! hiftdec model=" + fixture("hift/hift_tiny.safetensors") + " ! appsink name=out sync=false";
  GstElement* pipe = gst_parse_launch(launch.c_str(), nullptr);
  BOOST_REQUIRE(pipe);
  GstElement* out = gst_bin_get_by_name(GST_BIN(pipe), "out");
  BOOST_REQUIRE(gst_element_set_state(pipe, GST_STATE_PLAYING) != GST_STATE_CHANGE_FAILURE);
  std::vector<double> delays_ms;
  size_t samples = 0;
  GstClock* clock = nullptr;
  gboolean live = FALSE;
  GstClockTime min = 0, max = 0;
  while (true) {
    GstSample* s = nullptr;
    g_signal_emit_by_name(out, "pull-sample", &s);
    if (!s) break;
    if (!clock) {
      clock = gst_element_get_clock(pipe);
      // The latency the pipeline configured, asked while it plays.
      // (upstream of the sink: a sync=false sink reports itself not live).
      GstQuery* q = gst_query_new_latency();
      GstPad* pad = gst_element_get_static_pad(out, "sink");
      if (gst_pad_peer_query(pad, q)) gst_query_parse_latency(q, &live, &min, &max);
      gst_object_unref(pad);
      gst_query_unref(q);
    }
    GstBuffer* b = gst_sample_get_buffer(s);
    const GstClockTime now = gst_clock_get_time(clock) - gst_element_get_base_time(pipe);
    const GstClockTime rt = gst_segment_to_running_time(gst_sample_get_segment(s), GST_FORMAT_TIME, GST_BUFFER_PTS(b));
    delays_ms.push_back((static_cast<double>(now) - static_cast<double>(rt)) / 1e6);
    samples += gst_buffer_get_size(b) / 4;
    gst_sample_unref(s);
  }
  if (clock) gst_object_unref(clock);
  gst_object_unref(out);
  gst_element_set_state(pipe, GST_STATE_NULL);
  gst_object_unref(pipe);
  BOOST_REQUIRE(!delays_ms.empty());
  // 4 s of input: 100 tokens -> 200 mel frames -> 96000 samples at 24 kHz.
  BOOST_TEST(samples == 96000u);
  std::vector<double> d = delays_ms;
  std::sort(d.begin(), d.end());
  std::cout << "  live conversion: " << d.size() << " buffers, delay min " << d.front() << " ms, median "
            << d[d.size() / 2] << " ms, max " << d.back() << " ms; reported latency min "
            << static_cast<double>(min) / 1e6 << " ms (live " << live << ")\n";
  BOOST_TEST(live);
  // The tokenizer alone holds each chunk (25 + 10) x 40 ms + 2.5 ms.
  BOOST_TEST(static_cast<double>(min) / 1e6 >= 1402.5);
  // Output cannot come before the audio it depends on.
  BOOST_TEST(d.front() >= 0.0);
}
