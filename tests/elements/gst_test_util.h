// Helpers for the element-level suites: they drive the built plugin through
// GStreamer only (GstHarness for single elements, gst_parse_launch pipelines
// with appsrc/appsink for real negotiation), and collect what came out —
// samples, buffer timing, bus ERROR/WARNING texts.
#pragma once

#include "gst-plugins/core/checkpoint.h"
#include "tests/fixtures.h"
#include "tests/test_util.h"

#include <ATen/ATen.h>
#include <gst/app/gstappsink.h>
#include <gst/app/gstappsrc.h>
#include <gst/check/gstharness.h>
#include <gst/gst.h>

#include <chrono>
#include <cstdint>
#include <cstring>
#include <functional>
#include <mutex>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

namespace chatterbox::test {

// gst_init once per process; fails loudly when the plugin was not found on
// GST_PLUGIN_PATH_1_0 (the meson test environment sets it).
struct GstGlobal {
  GstGlobal() {
    gst_init(nullptr, nullptr);
    for (const char* f : {"vocosdec", "hiftdec", "chatterboxvocoder", "melspec"}) {
      GstElementFactory* fac = gst_element_factory_find(f);
      if (!fac)
        throw std::runtime_error(std::string("element '") + f +
                                 "' not found: run through `meson test` (GST_PLUGIN_PATH_1_0 must hold the built plugin)");
      gst_object_unref(fac);
    }
  }
};


// --- fixture tensors ------------------------------------------------------------
inline at::Tensor fixture_tensor(const std::string& file, const std::string& name) {
  return Checkpoint::open(fixture(file)).get_raw(name);
}
// [1, n_mels, T] (the reference layout) -> [T, n_mels] float32 (the caps layout).
inline at::Tensor frame_major(const at::Tensor& mel) { return mel[0].t().to(at::kFloat).contiguous(); }

inline at::Tensor to_tensor(const std::vector<float>& v) {
  return at::from_blob(const_cast<float*>(v.data()), {static_cast<int64_t>(v.size())}, at::kFloat).clone();
}

// --- buffers --------------------------------------------------------------------
inline GstBuffer* make_buffer(const void* data, size_t bytes, GstClockTime pts = GST_CLOCK_TIME_NONE,
                              bool discont = false) {
  GstBuffer* b = gst_buffer_new_allocate(nullptr, bytes, nullptr);
  if (bytes) gst_buffer_fill(b, 0, data, bytes);
  GST_BUFFER_PTS(b) = pts;
  if (discont) GST_BUFFER_FLAG_SET(b, GST_BUFFER_FLAG_DISCONT);
  return b;
}

struct BufInfo {
  GstClockTime pts, duration;
  guint64 offset, offset_end;
  bool discont;
  size_t bytes;
};

// What an element produced: float samples (or mel values) concatenated, plus
// per-buffer metadata.
struct Collected {
  std::vector<float> values;
  std::vector<BufInfo> bufs;
  GstCaps* caps = nullptr;  // last caps seen (pipelines)
  Collected() = default;
  Collected(const Collected&) = delete;
  Collected& operator=(const Collected&) = delete;
  Collected(Collected&& o) noexcept : values(std::move(o.values)), bufs(std::move(o.bufs)), caps(o.caps) { o.caps = nullptr; }
  Collected& operator=(Collected&& o) noexcept {
    values = std::move(o.values);
    bufs = std::move(o.bufs);
    std::swap(caps, o.caps);
    return *this;
  }
  ~Collected() {
    if (caps) gst_caps_unref(caps);
  }
  void add(GstBuffer* b) {
    GstMapInfo m;
    if (!gst_buffer_map(b, &m, GST_MAP_READ)) throw std::runtime_error("cannot map output buffer");
    const size_t n = m.size / sizeof(float);
    const size_t at0 = values.size();
    values.resize(at0 + n);
    if (n) std::memcpy(values.data() + at0, m.data, n * sizeof(float));
    bufs.push_back({GST_BUFFER_PTS(b), GST_BUFFER_DURATION(b), GST_BUFFER_OFFSET(b), GST_BUFFER_OFFSET_END(b),
                    GST_BUFFER_FLAG_IS_SET(b, GST_BUFFER_FLAG_DISCONT), m.size});
    gst_buffer_unmap(b, &m);
  }
  at::Tensor tensor() const { return to_tensor(values); }
};

// Every buffer starts where the previous one ended (1 ns rounding allowed).
inline std::string pts_gaps(const Collected& c) {
  std::string out;
  for (size_t i = 1; i < c.bufs.size(); ++i) {
    const auto& a = c.bufs[i - 1];
    const auto& b = c.bufs[i];
    if (!GST_CLOCK_TIME_IS_VALID(b.pts) || !GST_CLOCK_TIME_IS_VALID(a.pts) || !GST_CLOCK_TIME_IS_VALID(a.duration)) {
      out += "buffer " + std::to_string(i) + " lacks a timestamp; ";
      continue;
    }
    const gint64 d = static_cast<gint64>(b.pts) - static_cast<gint64>(a.pts + a.duration);
    if (d < -1 || d > 1) out += "gap of " + std::to_string(d) + " ns before buffer " + std::to_string(i) + "; ";
  }
  return out;
}

// --- bus messages ---------------------------------------------------------------
struct BusLog {
  std::vector<std::string> errors, warnings;
  bool eos = false;
  std::string all() const {
    std::string s;
    for (auto& e : errors) s += "ERROR: " + e + "\n";
    for (auto& w : warnings) s += "WARNING: " + w + "\n";
    return s;
  }
  // Returns true for EOS / ERROR (the run is over).
  bool take(GstMessage* msg) {
    GError* err = nullptr;
    gchar* dbg = nullptr;
    bool done = false;
    switch (GST_MESSAGE_TYPE(msg)) {
      case GST_MESSAGE_ERROR:
        gst_message_parse_error(msg, &err, &dbg);
        errors.push_back(text(msg, err, dbg));
        done = true;
        break;
      case GST_MESSAGE_WARNING:
        gst_message_parse_warning(msg, &err, &dbg);
        warnings.push_back(text(msg, err, dbg));
        break;
      case GST_MESSAGE_EOS:
        eos = true;
        done = true;
        break;
      default:
        break;
    }
    if (err) g_error_free(err);
    g_free(dbg);
    return done;
  }
  // Every pending message (no waiting).
  void pop_all(GstBus* bus) {
    while (GstMessage* m = gst_bus_pop_filtered(
               bus, static_cast<GstMessageType>(GST_MESSAGE_ERROR | GST_MESSAGE_WARNING | GST_MESSAGE_EOS))) {
      take(m);
      gst_message_unref(m);
    }
  }

 private:
  static std::string text(GstMessage* msg, GError* err, gchar* dbg) {
    std::string s = GST_MESSAGE_SRC(msg) ? GST_OBJECT_NAME(GST_MESSAGE_SRC(msg)) : "?";
    s += ": ";
    s += err ? err->message : "";
    if (dbg) s += std::string(" | ") + dbg;
    return s;
  }
};

// --- harness around one element ---------------------------------------------------
// Owns the element (created and configured by the caller, still in NULL) and
// gives it a bus so its ERROR/WARNING messages can be read.
struct Harness {
  GstElement* element;
  GstHarness* h;
  GstBus* bus;
  explicit Harness(GstElement* el) : element(GST_ELEMENT(gst_object_ref_sink(el))) {
    bus = gst_bus_new();
    gst_element_set_bus(element, bus);
    h = gst_harness_new_with_element(element, "sink", "src");
  }
  ~Harness() {
    gst_harness_teardown(h);
    gst_element_set_bus(element, nullptr);
    gst_object_unref(bus);
    gst_object_unref(element);
  }
  Harness(const Harness&) = delete;
  Harness& operator=(const Harness&) = delete;

  void set_caps(GstCaps* caps) { gst_harness_set_src_caps(h, caps); }  // takes caps; asserts acceptance
  GstFlowReturn push(const void* data, size_t bytes, GstClockTime pts = GST_CLOCK_TIME_NONE, bool discont = false) {
    return gst_harness_push(h, make_buffer(data, bytes, pts, discont));
  }
  bool eos() { return gst_harness_push_event(h, gst_event_new_eos()); }
  // Pulls every buffer produced so far (the harness chain is synchronous).
  void pull_into(Collected& c) {
    while (GstBuffer* b = gst_harness_try_pull(h)) {
      c.add(b);
      gst_buffer_unref(b);
    }
  }
  Collected pull_all() {
    Collected c;
    pull_into(c);
    return c;
  }
  BusLog messages() {
    BusLog log;
    log.pop_all(bus);
    return log;
  }
};

inline GstElement* make_element(const char* factory) {
  GstElement* e = gst_element_factory_make(factory, nullptr);
  if (!e) throw std::runtime_error(std::string("cannot create ") + factory);
  return e;
}

// --- pipelines --------------------------------------------------------------------
// Runs `desc` to EOS (or ERROR, or the timeout). An appsink named "out" is
// collected; `before_play` may push into an appsrc (pipeline in NULL,
// elements already created) — appsrc queues the data until it runs.
struct PipelineResult {
  BusLog log;
  Collected out;
  bool timed_out = false;
  GstStateChangeReturn play = GST_STATE_CHANGE_SUCCESS;
};

inline PipelineResult run_pipeline(const std::string& desc,
                                   const std::function<void(GstElement* pipeline)>& before_play = {},
                                   const std::function<void(GstElement* pipeline)>& after_run = {},
                                   double timeout_s = 120) {
  PipelineResult r;
  GError* err = nullptr;
  GstElement* pipe = gst_parse_launch(desc.c_str(), &err);
  if (!pipe || err) {
    std::string m = err ? err->message : "unknown";
    const bool link_error = err && err->domain == GST_PARSE_ERROR && err->code == GST_PARSE_ERROR_LINK;
    if (err) g_error_free(err);
    if (!pipe || !link_error) {
      if (pipe) gst_object_unref(pipe);
      throw std::runtime_error("cannot parse pipeline '" + desc + "': " + m);
    }
    // Elements refused to link (caps): that is the result, with whatever
    // the elements posted while refusing.
    r.log.errors.push_back("parse: " + m);
    r.play = GST_STATE_CHANGE_FAILURE;
    GstBus* bus = gst_element_get_bus(pipe);
    r.log.pop_all(bus);
    gst_object_unref(bus);
    gst_object_unref(pipe);
    return r;
  }
  std::mutex mu;
  if (GstElement* sink = gst_bin_get_by_name(GST_BIN(pipe), "out")) {
    g_object_set(sink, "sync", FALSE, nullptr);
    struct Ctx {
      Collected* out;
      std::mutex* mu;
    };
    static GstAppSinkCallbacks cbs = {};
    cbs.new_sample = [](GstAppSink* s, gpointer user) -> GstFlowReturn {
      auto* ctx = static_cast<Ctx*>(user);
      GstSample* sample = gst_app_sink_pull_sample(s);
      if (!sample) return GST_FLOW_ERROR;
      std::lock_guard<std::mutex> lock(*ctx->mu);
      ctx->out->add(gst_sample_get_buffer(sample));
      if (GstCaps* c = gst_sample_get_caps(sample)) gst_caps_replace(&ctx->out->caps, c);
      gst_sample_unref(sample);
      return GST_FLOW_OK;
    };
    gst_app_sink_set_callbacks(GST_APP_SINK(sink), &cbs, new Ctx{&r.out, &mu},
                               [](gpointer p) { delete static_cast<Ctx*>(p); });
    gst_object_unref(sink);
  }
  if (before_play) before_play(pipe);
  GstBus* bus = gst_element_get_bus(pipe);
  r.play = gst_element_set_state(pipe, GST_STATE_PLAYING);
  if (r.play != GST_STATE_CHANGE_FAILURE) {
    const auto end = std::chrono::steady_clock::now() + std::chrono::duration<double>(timeout_s);
    for (;;) {
      if (std::chrono::steady_clock::now() > end) {
        r.timed_out = true;
        break;
      }
      GstMessage* m = gst_bus_timed_pop_filtered(
          bus, 100 * GST_MSECOND, static_cast<GstMessageType>(GST_MESSAGE_ERROR | GST_MESSAGE_WARNING | GST_MESSAGE_EOS));
      if (!m) continue;
      const bool done = r.log.take(m);
      gst_message_unref(m);
      if (done) break;
    }
  }
  if (after_run) after_run(pipe);
  // Before NULL: a pipeline going to NULL flushes its bus (the ERROR of a
  // failed state change would be lost).
  r.log.pop_all(bus);
  gst_element_set_state(pipe, GST_STATE_NULL);
  r.log.pop_all(bus);
  gst_object_unref(bus);
  gst_object_unref(pipe);
  return r;
}

// Pushes `bytes` of `data` into the appsrc named `name` as buffers of the given
// sizes (the rest in one buffer), then EOS.
inline void feed_appsrc(GstElement* pipe, const char* name, const void* data, size_t bytes,
                        const std::vector<size_t>& sizes = {}, GstClockTime first_pts = GST_CLOCK_TIME_NONE) {
  GstElement* src = gst_bin_get_by_name(GST_BIN(pipe), name);
  if (!src) throw std::runtime_error(std::string("no appsrc named ") + name);
  size_t pos = 0;
  const auto* p = static_cast<const uint8_t*>(data);
  auto push = [&](size_t n) {
    GstBuffer* b = make_buffer(p + pos, n, pos == 0 ? first_pts : GST_CLOCK_TIME_NONE);
    gst_app_src_push_buffer(GST_APP_SRC(src), b);
    pos += n;
  };
  for (size_t s : sizes) {
    if (pos >= bytes) break;
    push(std::min(s, bytes - pos));
  }
  if (pos < bytes) push(bytes - pos);
  gst_app_src_end_of_stream(GST_APP_SRC(src));
  gst_object_unref(src);
}

// Random split of `bytes` into pieces: whole floats, frame-straddling sizes,
// single frames and empty buffers all occur (deterministic for a seed).
inline std::vector<size_t> random_split(size_t bytes, size_t frame_bytes, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<size_t> out;
  size_t left = bytes;
  int i = 0;
  while (left > 0) {
    size_t n;
    switch (i++ % 5) {
      case 0: n = 0; break;                                                       // empty buffer
      case 1: n = frame_bytes; break;                                             // exactly one frame
      case 2: n = 4 * std::uniform_int_distribution<size_t>(1, frame_bytes / 4 - 1)(rng); break;  // part of a frame
      default: n = 4 * std::uniform_int_distribution<size_t>(1, 5 * frame_bytes / 4)(rng); break;  // straddling
    }
    n = std::min(n, left);
    if (i == 1 && n == 0) n = std::min<size_t>(12, left);  // the utterance's first buffer carries data
    out.push_back(n);
    left -= n;
  }
  return out;
}

}  // namespace chatterbox::test
