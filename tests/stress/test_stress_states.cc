// State-change stress: every element through NULL -> PLAYING -> PAUSED ->
// PLAYING -> NULL many times while data flows, flushing seeks in the middle
// of a stream, and EOS in the middle of a frame. After each, the element must
// produce exactly what a fresh pipeline produces (stress_util.h's reference).
#define BOOST_TEST_MODULE stress_states
#include <boost/test/data/monomorphic.hpp>
#include <boost/test/data/test_case.hpp>
#include <boost/test/unit_test.hpp>

#include "elements/mel/features/mel_extractor.h"
#include "tests/stress/stress_util.h"

#include <gst/check/gstharness.h>

using namespace chatterbox::stress;
namespace bdata = boost::unit_test::data;

BOOST_GLOBAL_FIXTURE(GstInit);

namespace {

const char* kS3GenMelCaps =
    "audio/x-mel-spectrogram, format=(string)F32LE, layout=(string)frame-major, log=(string)ln, rate=(int)24000, "
    "n-mels=(int)80, hop-length=(int)480, n-fft=(int)1920, win-length=(int)1920, f-min=(double)0, "
    "f-max=(double)8000, padding=(string)same, power=(int)1, mel-scale=(string)slaney, norm=(string)slaney, "
    "log-floor=(double)1e-05, mag-eps=(double)1e-09";

// How many NULL -> PLAYING -> PAUSED -> PLAYING -> NULL cycles per element
// (the TTS bin loads and runs three models per cycle: fewer).
int cycles_of(const std::string& name) { return name == "chatterboxtts" ? 20 : 50; }

GstBuffer* buffer_of(const void* data, size_t bytes) {
  GstBuffer* b = gst_buffer_new_allocate(nullptr, bytes, nullptr);
  if (bytes) gst_buffer_fill(b, 0, data, bytes);
  return b;
}

Output pull_harness(GstHarness* h) {
  Output o;
  while (GstBuffer* b = gst_harness_try_pull(h)) {
    o.add(b);
    gst_buffer_unref(b);
  }
  return o;
}

// Warnings an element posted on its bus (harness elements get a private bus).
std::vector<std::string> warnings_of(GstBus* bus) {
  BusLog log;
  while (GstMessage* m = gst_bus_pop(bus)) {
    log.take(m);
    gst_message_unref(m);
  }
  return log.warnings;
}

void flush(GstHarness* h) {
  BOOST_REQUIRE(gst_harness_push_event(h, gst_event_new_flush_start()));
  BOOST_REQUIRE(gst_harness_push_event(h, gst_event_new_flush_stop(TRUE)));
  GstSegment seg;
  gst_segment_init(&seg, GST_FORMAT_TIME);
  BOOST_REQUIRE(gst_harness_push_event(h, gst_event_new_segment(&seg)));
}

}  // namespace

// 50 cycles (20 for the TTS bin) with the data running through (the appsink
// queues without limit and passes EOS on at once, so the streaming thread
// never waits for us and each NULL lands wherever the stream happens to be);
// after the 25th and the last, a full run must equal the fresh pipeline's
// output. (With appsink's default wait-on-eos, an EOS arriving while its
// queue holds unpulled buffers waits inside appsink, and a PLAYING -> PAUSED
// at that moment waits for a preroll that never comes: a test artefact.)
BOOST_DATA_TEST_CASE(state_cycles_keep_the_output_exact, bdata::make(case_names()), name) {
  const Case& c = find_case(name);
  const Output& ref = reference(c);
  Pipeline p(c.desc);
  GstElement* sink = gst_bin_get_by_name(GST_BIN(p.pipeline()), "out");
  const int cycles = cycles_of(name);
  for (int i = 1; i <= cycles; ++i) {
    g_object_set(sink, "max-buffers", 0u, "wait-on-eos", FALSE, nullptr);
    for (GstState s : {GST_STATE_PLAYING, GST_STATE_PAUSED, GST_STATE_PLAYING})
      BOOST_REQUIRE_MESSAGE(p.set(s) == GST_STATE_CHANGE_SUCCESS, name << " cycle " << i << ": " << p.last_failure);
    BOOST_REQUIRE(p.set(GST_STATE_NULL) == GST_STATE_CHANGE_SUCCESS);
    p.drain_bus();
    BOOST_REQUIRE_MESSAGE(p.log.errors.empty(), name << " cycle " << i << ": " << p.log.all());
    if (i == cycles / 2 || i == cycles) {
      g_object_set(sink, "max-buffers", 1u, "wait-on-eos", TRUE, nullptr);
      Output o = p.run();
      BOOST_REQUIRE_MESSAGE(p.log.errors.empty(), p.log.all());
      BOOST_TEST(compare(o, ref, c.tolerance).empty(), name << " after " << i << " cycles" << ": " << compare(o, ref, c.tolerance));
    }
  }
  // The only warnings allowed are the documented ones of the fixtures'
  // inputs (t3: ids outside the tiny vocabulary are none; so none at all).
  BOOST_TEST(p.log.warnings.empty(), p.log.all());
  gst_object_unref(sink);
}

// A flushing seek to the start while the streaming thread is mid-stream (it
// is blocked handing us the next buffer), twice, then to the end: what
// follows the last seek equals the fresh pipeline's output.
BOOST_DATA_TEST_CASE(flushing_seek_mid_stream_restarts_exactly, bdata::make(case_names()), name) {
  const Case& c = find_case(name);
  const Output& ref = reference(c);
  Pipeline p(c.desc);
  BOOST_REQUIRE(p.set(GST_STATE_PLAYING) == GST_STATE_CHANGE_SUCCESS);
  for (int seek = 0; seek < 2; ++seek) {
    Output before;
    BOOST_REQUIRE_MESSAGE(p.pull(before), name << ": no output before seek " << seek);
    BOOST_REQUIRE_MESSAGE(p.seek_to_start(c.seek_format), name << ": seek refused");
  }
  Output after;
  p.pull_to_eos(after);
  p.set(GST_STATE_NULL);
  p.drain_bus();
  BOOST_TEST(p.log.errors.empty(), p.log.all());
  BOOST_TEST(compare(after, ref, c.tolerance).empty(), name << ": " << compare(after, ref, c.tolerance));
}

// The same, with the flush injected right at the element under test through
// a harness (FLUSH_START / FLUSH_STOP / SEGMENT between two buffers of one
// utterance): the half utterance is forgotten, the next stream is exact.
BOOST_AUTO_TEST_CASE(vocoders_forget_the_flushed_half_utterance) {
  at::Tensor mel = chatterbox::Checkpoint::open(fixture("vocos/tiny_s3gen_same.safetensors"))
                       .get("test.input_mel")[0]
                       .t()
                       .contiguous();  // [T, 80]
  const size_t bytes = mel.numel() * 4;
  for (const std::string factory : {"vocosdec", "hiftdec"}) {
    const std::string model =
        fixture(factory == "vocosdec" ? "vocos/tiny_s3gen_same.safetensors" : "hift/hift_tiny.safetensors");
    auto run = [&](bool with_flush) {
      GstHarness* h = gst_harness_new_parse((factory + " model=" + model).c_str());
      gst_harness_set_src_caps_str(h, kS3GenMelCaps);
      if (with_flush) {
        BOOST_REQUIRE(gst_harness_push(h, buffer_of(mel.data_ptr<float>(), bytes / 2 + 12)) == GST_FLOW_OK);
        pull_harness(h);
        flush(h);
      }
      BOOST_REQUIRE(gst_harness_push(h, buffer_of(mel.data_ptr<float>(), bytes)) == GST_FLOW_OK);
      BOOST_REQUIRE(gst_harness_push_event(h, gst_event_new_eos()));
      Output o = pull_harness(h);
      gst_harness_teardown(h);
      return o;
    };
    Output fresh = run(false), flushed = run(true);
    BOOST_TEST(fresh.bytes.size() == static_cast<size_t>(mel.size(0)) * 480 * 4, factory);
    BOOST_TEST(compare(flushed, fresh, 1e-6).empty(), factory << ": " << compare(flushed, fresh, 1e-6));
  }
}

// EOS in the middle of a frame does what docs/robustness.md says, and the
// element is clean for the next stream (after a flush) - nothing of the
// partial frame leaks into it.
BOOST_AUTO_TEST_CASE(eos_mid_frame_is_documented_and_leaves_no_trace) {
  at::Tensor mel = chatterbox::Checkpoint::open(fixture("vocos/tiny_s3gen_same.safetensors"))
                       .get("test.input_mel")[0]
                       .t()
                       .contiguous();
  const size_t frame = 80 * 4, bytes = mel.numel() * 4;
  GstHarness* h = gst_harness_new_parse(("vocosdec model=" + fixture("vocos/tiny_s3gen_same.safetensors")).c_str());
  GstBus* bus = gst_bus_new();
  gst_element_set_bus(h->element, bus);
  gst_harness_set_src_caps_str(h, kS3GenMelCaps);
  // 10 frames and 7 floats of the 11th, then EOS: the 10 frames are vocoded
  // whole (10 * 480 samples), the 28 bytes dropped with one warning.
  BOOST_REQUIRE(gst_harness_push(h, buffer_of(mel.data_ptr<float>(), 10 * frame + 28)) == GST_FLOW_OK);
  BOOST_REQUIRE(gst_harness_push_event(h, gst_event_new_eos()));
  Output first = pull_harness(h);
  BOOST_TEST(first.bytes.size() == 10u * 480 * 4);
  std::vector<std::string> w = warnings_of(bus);
  BOOST_TEST_REQUIRE(w.size() == 1u);
  BOOST_TEST(contains(w[0], "28 trailing bytes"), w[0]);
  flush(h);
  BOOST_REQUIRE(gst_harness_push(h, buffer_of(mel.data_ptr<float>(), bytes)) == GST_FLOW_OK);
  BOOST_REQUIRE(gst_harness_push_event(h, gst_event_new_eos()));
  Output second = pull_harness(h);
  gst_element_set_bus(h->element, nullptr);
  gst_harness_teardown(h);
  gst_object_unref(bus);

  GstHarness* fresh = gst_harness_new_parse(("vocosdec model=" + fixture("vocos/tiny_s3gen_same.safetensors")).c_str());
  gst_harness_set_src_caps_str(fresh, kS3GenMelCaps);
  BOOST_REQUIRE(gst_harness_push(fresh, buffer_of(mel.data_ptr<float>(), bytes)) == GST_FLOW_OK);
  BOOST_REQUIRE(gst_harness_push_event(fresh, gst_event_new_eos()));
  Output expected = pull_harness(fresh);
  gst_harness_teardown(fresh);
  BOOST_TEST(compare(second, expected, 1e-6).empty(), compare(second, expected, 1e-6));
}

// melspec: audio whose length is not a whole number of hops. At EOS the
// remaining samples are analysed with the end padding, exactly as the
// whole-utterance extractor does (num_frames(n) frames in all).
BOOST_AUTO_TEST_CASE(melspec_eos_mid_hop_gives_the_whole_utterance_frames) {
  const std::vector<float> audio = speech_like(24000 + 333, 24000, 3);
  chatterbox::mel::MelExtractor ex(chatterbox::MelFormat::s3gen());
  at::Tensor expected = ex.compute(at::from_blob(const_cast<float*>(audio.data()),
                                                 {static_cast<int64_t>(audio.size())}, at::kFloat));
  GstHarness* h = gst_harness_new_parse("melspec preset=s3gen");
  gst_harness_set_src_caps_str(h, "audio/x-raw,format=F32LE,layout=interleaved,rate=24000,channels=1");
  gst_harness_set_sink_caps_str(h, kS3GenMelCaps);
  for (size_t pos = 0; pos < audio.size(); pos += 1000) {
    const size_t n = std::min<size_t>(1000, audio.size() - pos);
    BOOST_REQUIRE(gst_harness_push(h, buffer_of(audio.data() + pos, n * 4)) == GST_FLOW_OK);
  }
  BOOST_REQUIRE(gst_harness_push_event(h, gst_event_new_eos()));
  Output o = pull_harness(h);
  gst_harness_teardown(h);
  BOOST_TEST_REQUIRE(expected.size(0) == ex.num_frames(static_cast<int64_t>(audio.size())));
  BOOST_TEST_REQUIRE(o.bytes.size() == static_cast<size_t>(expected.numel()) * 4);
  Output e;
  e.bytes.resize(expected.numel() * 4);
  std::memcpy(e.bytes.data(), expected.contiguous().data_ptr<float>(), e.bytes.size());
  BOOST_TEST(compare(o, e, 1e-5).empty(), compare(o, e, 1e-5));
}

// s3genmel: a buffer ending in a partial S32 token. The whole tokens count,
// the stray bytes are ignored with a warning, and the mel equals the run
// without them.
BOOST_AUTO_TEST_CASE(s3genmel_partial_token_at_eos_is_ignored_with_a_warning) {
  const Inputs& in = Inputs::get();
  const std::string tokens = chatterbox::test::slurp(in.tokens);
  const std::string launch =
      "s3genmel model=" + fixture("s3gen/flow_tiny.safetensors") + " voice=" + in.s3gen_voice;
  auto run = [&](const std::string& data, std::vector<std::string>* warnings) {
    GstHarness* h = gst_harness_new_parse(launch.c_str());
    GstBus* bus = gst_bus_new();
    gst_element_set_bus(h->element, bus);
    gst_harness_set_src_caps_str(h, "audio/x-speech-tokens,format=S32LE,codebook=s3-v2-25hz,vocab-size=6561,rate=25");
    BOOST_REQUIRE(gst_harness_push(h, buffer_of(data.data(), data.size())) == GST_FLOW_OK);
    BOOST_REQUIRE(gst_harness_push_event(h, gst_event_new_eos()));
    Output o = pull_harness(h);
    if (warnings) *warnings = warnings_of(bus);
    gst_element_set_bus(h->element, nullptr);
    gst_harness_teardown(h);
    gst_object_unref(bus);
    return o;
  };
  std::vector<std::string> w;
  Output clean = run(tokens, nullptr);
  Output ragged = run(tokens + std::string("\x01\x02\x03", 3), &w);
  BOOST_TEST(compare(ragged, clean, 0).empty(), compare(ragged, clean, 0));
  BOOST_TEST_REQUIRE(w.size() >= 1u);
  BOOST_TEST(contains(w[0], "3 trailing bytes"), w[0]);
}

// A byte source may cut a token anywhere (filesrc blocksize=22): its bytes
// are carried to the next buffer, so the mel equals the whole-token run.
// (Each piece used to be read as whole tokens from its own first byte.)
BOOST_AUTO_TEST_CASE(s3genmel_tokens_split_across_buffers_are_reassembled) {
  const Case& c = find_case("s3genmel");
  std::string desc = c.desc;
  desc.replace(desc.find("blocksize=24"), 12, "blocksize=22");
  Pipeline p(desc);
  Output o = p.run();
  BOOST_TEST(p.log.errors.empty(), p.log.all());
  BOOST_TEST(p.log.warnings.empty(), p.log.all());
  BOOST_TEST(compare(o, reference(c), 0).empty(), compare(o, reference(c), 0));
}

// --- bad inputs of the bins --------------------------------------------------------

// chatterboxtts: a model directory missing a file fails READY, and the error
// names the file (from the child that needs it).
BOOST_AUTO_TEST_CASE(chatterboxtts_incomplete_model_dir_fails_ready_naming_the_file) {
  const std::string dir = Inputs::get().dir + "/incomplete";
  g_mkdir(dir.c_str(), 0700);
  // Everything but tokenizer.json.
  const std::string t3 = dir + "/t3_cfg.safetensors", conds = dir + "/conds.pt", s3gen = dir + "/s3gen.safetensors";
  BOOST_REQUIRE(symlink(fixture("t3/t3_tiny.safetensors").c_str(), t3.c_str()) == 0);
  BOOST_REQUIRE(symlink(fixture("t3/conds_tiny.pt").c_str(), conds.c_str()) == 0);
  BOOST_REQUIRE(symlink(fixture("s3gen/flow_tiny.safetensors").c_str(), s3gen.c_str()) == 0);
  Pipeline p("fakesrc num-buffers=0 ! chatterboxtts vocoder=vocos vocos-model=" +
             fixture("vocos/tiny_s3gen_same.safetensors") + " model-dir=" + dir + " ! appsink name=out");
  BOOST_TEST(gst_element_set_state(p.pipeline(), GST_STATE_READY) == GST_STATE_CHANGE_FAILURE);
  p.drain_bus();
  BOOST_TEST_REQUIRE(!p.log.errors.empty());
  BOOST_TEST(contains(p.log.errors[0], dir + "/tokenizer.json"), p.log.all());
  p.set(GST_STATE_NULL);
  for (const std::string& f : {t3, conds, s3gen}) std::remove(f.c_str());
  g_rmdir(dir.c_str());
}

// chatterboxvocoder: an unreadable CHATTERBOX_USE_VOCOS value is not a
// silent choice: a warning naming the value, and the default (Vocos).
BOOST_AUTO_TEST_CASE(chatterboxvocoder_unknown_environment_value_warns_and_uses_vocos) {
  static std::string warned;
  const guint id = g_log_set_handler(nullptr, static_cast<GLogLevelFlags>(G_LOG_LEVEL_WARNING),
                                     [](const gchar*, GLogLevelFlags, const gchar* msg, gpointer) { warned += msg; },
                                     nullptr);
  g_setenv("CHATTERBOX_USE_VOCOS", "maybe", TRUE);
  GstElement* e = GST_ELEMENT(gst_object_ref_sink(gst_element_factory_make("chatterboxvocoder", nullptr)));
  g_unsetenv("CHATTERBOX_USE_VOCOS");
  g_log_remove_handler(nullptr, id);
  GValue v = G_VALUE_INIT;
  g_value_init(&v, g_type_from_name("GstChatterboxVocoderKind"));
  g_object_get_property(G_OBJECT(e), "vocoder", &v);
  GEnumValue* kind = g_enum_get_value(G_ENUM_CLASS(g_type_class_peek(G_VALUE_TYPE(&v))), g_value_get_enum(&v));
  BOOST_TEST(std::string(kind ? kind->value_nick : "?") == "vocos");
  BOOST_TEST(contains(warned, "'maybe'"), warned);
  g_value_unset(&v);
  gst_object_unref(e);
}
