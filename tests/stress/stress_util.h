// Shared by the stress suites: input files made once per process, one real
// pipeline per element under test (file source -> element -> appsink, tiny
// fixture models), and a runner that collects every output byte and bus
// message. Everything is deterministic: the same pipeline gives the same
// bytes on every run, which is what the suites compare against.
#pragma once

#include "gst-plugins/core/checkpoint.h"
#include "tests/fixtures.h"
#include "tests/test_util.h"

#include <ATen/ATen.h>
#include <glib/gstdio.h>
#include <gst/app/gstappsink.h>
#include <gst/gst.h>

#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <map>
#include <mutex>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

namespace chatterbox::stress {

using chatterbox::test::contains;
using chatterbox::test::fixture;

struct GstInit {
  GstInit() {
    gst_init(nullptr, nullptr);
    for (const char* f : {"melspec", "vocosdec", "hiftdec", "s3genmel", "t3", "chatterboxvocoder", "chatterboxtts"}) {
      GstElementFactory* fac = gst_element_factory_find(f);
      if (!fac) throw std::runtime_error(std::string("element '") + f + "' not found: run through `meson test`");
      gst_object_unref(fac);
    }
  }
};

// --- inputs ---------------------------------------------------------------------

// A speech-like test signal: a voiced harmonic series with a gliding pitch
// and a syllable-rate envelope, with noise bursts between "syllables".
inline std::vector<float> speech_like(int64_t n, int rate, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> noise(0.f, 1.f);
  std::vector<float> out(n);
  double phase = 0;
  for (int64_t i = 0; i < n; ++i) {
    const double t = static_cast<double>(i) / rate;
    const double f0 = 120 + 40 * std::sin(2 * M_PI * 0.7 * t);
    phase += 2 * M_PI * f0 / rate;
    const double env = 0.5 + 0.5 * std::sin(2 * M_PI * 4 * t);  // ~4 syllables per second
    double v = 0;
    for (int h = 1; h <= 8; ++h) v += std::sin(h * phase) / h;
    out[i] = static_cast<float>(0.15 * env * v + 0.02 * (1 - env) * noise(rng));
  }
  return out;
}

inline void write_wav16(const std::string& path, const std::vector<float>& x, int rate) {
  std::ofstream f(path, std::ios::binary);
  auto u32 = [&](uint32_t v) { f.write(reinterpret_cast<const char*>(&v), 4); };
  auto u16 = [&](uint16_t v) { f.write(reinterpret_cast<const char*>(&v), 2); };
  const uint32_t bytes = static_cast<uint32_t>(x.size() * 2);
  f.write("RIFF", 4);
  u32(36 + bytes);
  f.write("WAVEfmt ", 8);
  u32(16);
  u16(1);  // PCM
  u16(1);  // mono
  u32(rate);
  u32(rate * 2);
  u16(2);
  u16(16);
  f.write("data", 4);
  u32(bytes);
  for (float v : x) {
    const float c = std::max(-1.f, std::min(1.f, v));
    u16(static_cast<uint16_t>(static_cast<int16_t>(std::lround(c * 32767))));
  }
}

// Every file the pipelines read, written once into a temporary directory.
struct Inputs {
  std::string dir, wav, tokens, text, s3gen_voice, tts_dir;
  static const Inputs& get() {
    static Inputs in;
    return in;
  }
  ~Inputs() {
    for (const char* f : {"t3_cfg.safetensors", "tokenizer.json", "conds.pt", "s3gen.safetensors"})
      std::remove((tts_dir + "/" + f).c_str());
    g_rmdir(tts_dir.c_str());
    for (const std::string& f : {wav, tokens, text, s3gen_voice}) std::remove(f.c_str());
    // Files a suite added (e.g. model_cache's copies) go with the directory.
    if (GDir* d = g_dir_open(dir.c_str(), 0, nullptr)) {
      while (const gchar* name = g_dir_read_name(d)) std::remove((dir + "/" + name).c_str());
      g_dir_close(d);
    }
    g_rmdir(dir.c_str());
  }

 private:
  Inputs() {
    char tmpl[] = "/tmp/chatterbox-stress-XXXXXX";
    dir = mkdtemp(tmpl);
    wav = dir + "/speech.wav";
    write_wav16(wav, speech_like(48000, 24000, 7), 24000);  // 2 s
    // The flow fixture's tokens (raw S32LE) and its prompt as a voice file.
    Checkpoint flow = Checkpoint::open(fixture("s3gen/flow_tiny.safetensors"));
    at::Tensor tok = flow.get_raw("test.token").to(at::kInt).contiguous();
    tokens = dir + "/tokens.s32";
    std::ofstream(tokens, std::ios::binary)
        .write(reinterpret_cast<const char*>(tok.data_ptr<int32_t>()), tok.numel() * 4);
    s3gen_voice = dir + "/voice.safetensors";
    write_safetensors(s3gen_voice, {{"gen.prompt_token", flow.get_raw("test.prompt_token")},
                                    {"gen.prompt_token_len", flow.get_raw("test.prompt_token_len")},
                                    {"gen.prompt_feat", flow.get("test.prompt_feat")},
                                    {"gen.embedding", flow.get("test.embedding")}});
    text = dir + "/text.txt";
    // The tiny T3's greedy decode of this sentence stops by itself (20 tokens).
    std::ofstream(text) << "the little robot counted stones by the river";
    // A Chatterbox-style model directory of the tiny fixtures.
    tts_dir = dir + "/model";
    mkdir_or_throw(tts_dir);
    link("t3/t3_tiny.safetensors", "t3_cfg.safetensors");
    link("t3/tokenizer_tiny.json", "tokenizer.json");
    link("t3/conds_tiny.pt", "conds.pt");
    link("s3gen/flow_tiny.safetensors", "s3gen.safetensors");
  }
  static void mkdir_or_throw(const std::string& d) {
    if (!g_file_test(d.c_str(), G_FILE_TEST_IS_DIR) && g_mkdir(d.c_str(), 0700) != 0)
      throw std::runtime_error("cannot create " + d);
  }
  void link(const std::string& from, const std::string& to) const {
    const std::string dst = tts_dir + "/" + to;
    if (symlink(fixture(from).c_str(), dst.c_str()) != 0) throw std::runtime_error("cannot link " + dst);
  }
};

// --- the pipelines under test -----------------------------------------------------

struct Case {
  std::string name;      // element under test
  std::string desc;      // gst-launch description ending in "appsink name=out"
  GstFormat seek_format;  // what its source seeks in
  double tolerance;      // max abs difference between runs that must agree (0: bytes)
};

inline const std::vector<Case>& cases() {
  static const std::vector<Case> all = [] {
    const Inputs& in = Inputs::get();
    const std::string audio = "filesrc location=" + in.wav + " ! wavparse ! audioconvert ! ";
    const std::string tokens = "filesrc location=" + in.tokens + " blocksize=24 ! " +
                               "audio/x-speech-tokens,format=S32LE,codebook=s3-v2-25hz,vocab-size=6561,rate=25 ! ";
    const std::string text = "filesrc location=" + in.text + " ! text/x-raw,format=utf8 ! ";
    const std::string vocos = fixture("vocos/tiny_s3gen_same.safetensors");
    const std::string hift = fixture("hift/hift_tiny.safetensors");
    const std::string s3gen = "s3genmel model=" + fixture("s3gen/flow_tiny.safetensors") + " voice=" + in.s3gen_voice;
    const std::string t3 = "t3 model=" + fixture("t3/t3_tiny.safetensors") +
                           " tokenizer=" + fixture("t3/tokenizer_tiny.json") +
                           " voice=" + fixture("t3/conds_tiny.safetensors") + " greedy=true";
    const std::string sink = " ! appsink name=out";
    return std::vector<Case>{
        {"melspec", audio + "melspec" + sink, GST_FORMAT_TIME, 1e-5},
        {"vocosdec", audio + "melspec ! vocosdec model=" + vocos + sink, GST_FORMAT_TIME, 1e-5},
        {"hiftdec", audio + "melspec ! hiftdec deterministic=true model=" + hift + sink, GST_FORMAT_TIME, 1e-5},
        {"chatterboxvocoder", audio + "melspec ! chatterboxvocoder vocoder=hift hift-model=" + hift + sink,
         GST_FORMAT_TIME, 1e-5},
        {"s3genmel", tokens + s3gen + sink, GST_FORMAT_BYTES, 1e-5},
        {"s3genmel-chunked", tokens + s3gen + " chunk-tokens=6" + sink, GST_FORMAT_BYTES, 1e-5},
        {"t3", text + t3 + " tokens-per-buffer=1" + sink, GST_FORMAT_BYTES, 0},
        // The tiny model directory has no Perth model: watermark=false says
        // so (otherwise the bin warns once per pipeline, and these cases
        // require a silent bus).
        {"chatterboxtts", text + "chatterboxtts greedy=true vocoder=vocos watermark=false model-dir=" + in.tts_dir +
                              " vocos-model=" + vocos + sink,
         GST_FORMAT_BYTES, 1e-5},
    };
  }();
  return all;
}

inline std::vector<std::string> case_names() {
  std::vector<std::string> n;
  for (const auto& c : cases()) n.push_back(c.name);
  return n;
}

inline const Case& find_case(const std::string& name) {
  for (const auto& c : cases())
    if (c.name == name) return c;
  throw std::runtime_error("no case " + name);
}

// --- running ---------------------------------------------------------------------

struct Output {
  std::vector<uint8_t> bytes;
  std::vector<GstClockTime> pts, duration;
  void clear() {
    bytes.clear();
    pts.clear();
    duration.clear();
  }
  void add(GstBuffer* b) {
    GstMapInfo m;
    if (!gst_buffer_map(b, &m, GST_MAP_READ)) throw std::runtime_error("cannot map an output buffer");
    bytes.insert(bytes.end(), m.data, m.data + m.size);
    gst_buffer_unmap(b, &m);
    pts.push_back(GST_BUFFER_PTS(b));
    duration.push_back(GST_BUFFER_DURATION(b));
  }
};

// "" when `a` and `b` agree (same length; bytes equal, or floats within tol),
// else what differs.
inline std::string compare(const Output& a, const Output& b, double tol) {
  if (a.bytes.size() != b.bytes.size())
    return "lengths differ: " + std::to_string(a.bytes.size()) + " vs " + std::to_string(b.bytes.size()) + " bytes";
  if (a.bytes.empty()) return "no output";
  if (tol == 0) return a.bytes == b.bytes ? "" : "bytes differ";
  const size_t n = a.bytes.size() / 4;
  std::vector<float> x(n), y(n);
  std::memcpy(x.data(), a.bytes.data(), n * 4);
  std::memcpy(y.data(), b.bytes.data(), n * 4);
  double worst = 0;
  size_t at = 0;
  for (size_t i = 0; i < n; ++i) {
    const double d = std::fabs(static_cast<double>(x[i]) - y[i]);
    if (!(d <= worst)) {  // NaN counts as worst
      worst = std::isnan(d) ? INFINITY : d;
      at = i;
    }
  }
  if (worst <= tol) return "";
  return "max abs difference " + std::to_string(worst) + " at value " + std::to_string(at);
}

struct BusLog {
  std::vector<std::string> errors, warnings;
  bool eos = false;
  int latency_messages = 0;
  std::string all() const {
    std::string s;
    for (auto& e : errors) s += "ERROR: " + e + "\n";
    for (auto& w : warnings) s += "WARNING: " + w + "\n";
    return s;
  }
  void take(GstMessage* msg) {
    GError* err = nullptr;
    gchar* dbg = nullptr;
    std::string src = GST_MESSAGE_SRC(msg) ? GST_OBJECT_NAME(GST_MESSAGE_SRC(msg)) : "?";
    switch (GST_MESSAGE_TYPE(msg)) {
      case GST_MESSAGE_ERROR:
        gst_message_parse_error(msg, &err, &dbg);
        errors.push_back(src + ": " + (err ? err->message : "") + (dbg ? std::string(" | ") + dbg : ""));
        break;
      case GST_MESSAGE_WARNING:
        gst_message_parse_warning(msg, &err, &dbg);
        warnings.push_back(src + ": " + (err ? err->message : "") + (dbg ? std::string(" | ") + dbg : ""));
        break;
      case GST_MESSAGE_EOS: eos = true; break;
      case GST_MESSAGE_LATENCY: ++latency_messages; break;
      default: break;
    }
    if (err) g_error_free(err);
    g_free(dbg);
  }
};

// One pipeline from a description, its appsink pulled by the calling thread
// (max-buffers=1: the streaming thread blocks until we pull, so "mid-stream"
// is a point the test chooses, not a race).
class Pipeline {
 public:
  explicit Pipeline(const std::string& desc) {
    GError* err = nullptr;
    pipe_ = gst_parse_launch(desc.c_str(), &err);
    if (!pipe_ || err) {
      std::string m = err ? err->message : "?";
      if (err) g_error_free(err);
      if (pipe_) gst_object_unref(pipe_);
      throw std::runtime_error("cannot parse '" + desc + "': " + m);
    }
    sink_ = gst_bin_get_by_name(GST_BIN(pipe_), "out");
    if (!sink_) throw std::runtime_error("no appsink named out in '" + desc + "'");
    g_object_set(sink_, "sync", FALSE, "max-buffers", 1u, "drop", FALSE, nullptr);
    bus_ = gst_element_get_bus(pipe_);
  }
  ~Pipeline() {
    gst_element_set_state(pipe_, GST_STATE_NULL);
    gst_object_unref(bus_);
    gst_object_unref(sink_);
    gst_object_unref(pipe_);
  }
  Pipeline(const Pipeline&) = delete;
  Pipeline& operator=(const Pipeline&) = delete;

  GstElement* pipeline() const { return pipe_; }
  GstElement* element(const char* factory) const {
    GstIterator* it = gst_bin_iterate_recurse(GST_BIN(pipe_));
    GValue v = G_VALUE_INIT;
    GstElement* found = nullptr;
    while (!found && gst_iterator_next(it, &v) == GST_ITERATOR_OK) {
      GstElement* e = GST_ELEMENT(g_value_get_object(&v));
      GstElementFactory* f = gst_element_get_factory(e);
      if (f && std::strcmp(GST_OBJECT_NAME(f), factory) == 0) found = e;
      g_value_reset(&v);
    }
    g_value_unset(&v);
    gst_iterator_free(it);
    if (!found) throw std::runtime_error(std::string("no ") + factory + " in the pipeline");
    return found;  // owned by the pipeline
  }

  // Sets the state and waits for it (up to 20 s); returns the final result.
  // Before NULL the bus is read (a pipeline going to NULL flushes its bus).
  GstStateChangeReturn set(GstState s) {
    if (s == GST_STATE_NULL) {
      gst_element_set_state(pipe_, GST_STATE_READY);
      drain_bus();
    }
    GstStateChangeReturn r = gst_element_set_state(pipe_, s);
    if (r == GST_STATE_CHANGE_ASYNC) r = gst_element_get_state(pipe_, nullptr, nullptr, 20 * GST_SECOND);
    if (r != GST_STATE_CHANGE_SUCCESS && r != GST_STATE_CHANGE_NO_PREROLL) describe_states(s, r);
    return r;
  }

  // What each element's state was when a change to `target` did not succeed.
  void describe_states(GstState target, GstStateChangeReturn r) {
    std::string d = std::string("to ") + gst_element_state_get_name(target) + ": " +
                    gst_element_state_change_return_get_name(r) + ";";
    GstIterator* it = gst_bin_iterate_recurse(GST_BIN(pipe_));
    GValue v = G_VALUE_INIT;
    while (gst_iterator_next(it, &v) == GST_ITERATOR_OK) {
      GstElement* e = GST_ELEMENT(g_value_get_object(&v));
      GstState cur, pend;
      GstStateChangeReturn er = gst_element_get_state(e, &cur, &pend, 0);
      d += std::string(" ") + GST_OBJECT_NAME(e) + "=" + gst_element_state_get_name(cur) + "/" +
           gst_element_state_get_name(pend) + "(" + gst_element_state_change_return_get_name(er) + ")";
      g_value_reset(&v);
    }
    g_value_unset(&v);
    gst_iterator_free(it);
    drain_bus();
    last_failure = d + " " + log.all();
  }
  std::string last_failure;

  // Pulls one buffer into `out`; false at EOS (or after 60 s without one).
  bool pull(Output& out) {
    GstSample* s = gst_app_sink_try_pull_sample(GST_APP_SINK(sink_), 60 * GST_SECOND);
    if (!s) return false;
    out.add(gst_sample_get_buffer(s));
    gst_sample_unref(s);
    return true;
  }
  void pull_to_eos(Output& out) {
    while (pull(out)) {
    }
  }
  bool at_eos() const { return gst_app_sink_is_eos(GST_APP_SINK(sink_)); }

  // A flushing seek to the start, in the source's format. Returns when the
  // flush has gone through (the sources seek in the calling thread).
  bool seek_to_start(GstFormat format) {
    return gst_element_seek(pipe_, 1.0, format, static_cast<GstSeekFlags>(GST_SEEK_FLAG_FLUSH | GST_SEEK_FLAG_ACCURATE),
                            GST_SEEK_TYPE_SET, 0, GST_SEEK_TYPE_NONE, -1);
  }

  // Every message posted so far.
  void drain_bus() {
    while (GstMessage* m = gst_bus_pop(bus_)) {
      log.take(m);
      gst_message_unref(m);
    }
  }

  // NULL -> PLAYING, everything to EOS, back to NULL.
  Output run() {
    Output out;
    if (set(GST_STATE_PLAYING) == GST_STATE_CHANGE_FAILURE) {
      drain_bus();
      throw std::runtime_error("cannot play: " + log.all());
    }
    pull_to_eos(out);
    set(GST_STATE_NULL);
    drain_bus();
    return out;
  }

  BusLog log;

 private:
  GstElement* pipe_ = nullptr;
  GstElement* sink_ = nullptr;
  GstBus* bus_ = nullptr;
};

// The output of a fresh pipeline of `c`, computed once per process.
inline const Output& reference(const Case& c) {
  static std::mutex mu;
  static std::map<std::string, Output> done;
  std::lock_guard<std::mutex> lock(mu);
  auto it = done.find(c.name);
  if (it != done.end()) return it->second;
  Pipeline p(c.desc);
  Output out = p.run();
  if (!p.log.errors.empty() || out.bytes.empty())
    throw std::runtime_error("reference run of " + c.name + " failed: " + p.log.all());
  return done.emplace(c.name, std::move(out)).first->second;
}

}  // namespace chatterbox::stress
