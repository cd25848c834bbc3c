// The vocoders timed through their GStreamer elements:
//   appsrc (mel frames) ! vocosdec|hiftdec ! appsink
// Needs GST_PLUGIN_PATH to hold libgstchatterbox.so and the model files that
// `bench_api models` writes. One JSON object on stdout per call.
//
//   bench_element throughput --model W --dir D --seconds S --threads N --reps R
//                            [--warmup K] [--chunk C] [--chunk-frames F]
//       all mel pushed at once in C-frame buffers (the element's chunk-frames
//       F: -1, its default, gathers 50 frames per model call off a live
//       pipeline; 1 vocodes each buffer as it comes, as on a live one); time from the first push
//       to EOS at the appsink (compare with bench_api speed's stream_ms: the
//       same feed pattern without GStreamer, i.e. the element's overhead).
//   bench_element latency --model W --dir D --threads N --lookaheads 0,1,-1
//                         [--reps R] [--seconds S] [--frames-per-buffer F]
//       a live source: F mel frames per buffer pushed at real-time pace (one
//       frame every hop/sr seconds); first-audio latency = time from pushing
//       the first mel frame to the first audio buffer at the appsink (the
//       run stops there: pipeline back to READY, which flushes).
//       lookahead -1: the element's default (exact streaming).
#include "bench/bench_common.h"

#include <gst/app/gstappsink.h>
#include <gst/app/gstappsrc.h>
#include <gst/gst.h>

#include <condition_variable>
#include <iostream>
#include <mutex>
#include <sstream>
#include <thread>

using nlohmann::json;
using namespace bench;

namespace {

struct Sink {
  std::mutex m;
  std::condition_variable cv;
  bool eos = false, got_first = false;
  Clock::time_point first;
  int64_t samples = 0;
  void clear() {
    std::lock_guard<std::mutex> l(m);
    eos = got_first = false;
    samples = 0;
  }
};

GstFlowReturn on_sample(GstAppSink* sink, gpointer data) {
  auto* s = static_cast<Sink*>(data);
  auto now = Clock::now();
  GstSample* smp = gst_app_sink_pull_sample(sink);
  if (!smp) return GST_FLOW_ERROR;
  const gsize bytes = gst_buffer_get_size(gst_sample_get_buffer(smp));
  gst_sample_unref(smp);
  std::lock_guard<std::mutex> l(s->m);
  if (!s->got_first && bytes > 0) s->got_first = true, s->first = now;
  s->samples += static_cast<int64_t>(bytes / sizeof(float));
  s->cv.notify_all();
  return GST_FLOW_OK;
}
void on_eos(GstAppSink*, gpointer data) {
  auto* s = static_cast<Sink*>(data);
  std::lock_guard<std::mutex> l(s->m);
  s->eos = true;
  s->cv.notify_all();
}

struct Pipe {
  GstElement* pipeline = nullptr;
  GstElement* src = nullptr;
  GstElement* voc = nullptr;
  GstElement* sink = nullptr;
  Sink state;
  chatterbox::MelFormat fmt;
  double frame_s = 0;

  Pipe(const std::string& w, const std::string& dir, int threads, bool live) {
    fmt = mel_format(w);
    frame_s = static_cast<double>(fmt.hop_length) / fmt.rate;
    pipeline = gst_pipeline_new("bench");
    src = gst_element_factory_make("appsrc", "src");
    voc = gst_element_factory_make(is_vocos(w) ? "vocosdec" : "hiftdec", "voc");
    sink = gst_element_factory_make("appsink", "sink");
    if (!pipeline || !src || !voc || !sink)
      throw std::runtime_error(std::string("cannot create elements (") + (voc ? "appsrc/appsink" : "vocosdec/hiftdec") +
                               "): is GST_PLUGIN_PATH set to the folder of libgstchatterbox.so?");
    g_object_set(voc, "model", model_file(dir, w).c_str(), "threads", threads, nullptr);
    if (!is_vocos(w)) g_object_set(voc, "deterministic", TRUE, nullptr);
    g_object_set(src, "format", GST_FORMAT_TIME, "is-live", live ? TRUE : FALSE, "max-bytes", (guint64)0,
                 "block", FALSE, nullptr);
    g_object_set(sink, "sync", FALSE, "emit-signals", FALSE, nullptr);
    GstAppSinkCallbacks cb{};
    cb.eos = on_eos;
    cb.new_sample = on_sample;
    gst_app_sink_set_callbacks(GST_APP_SINK(sink), &cb, &state, nullptr);
    gst_bin_add_many(GST_BIN(pipeline), src, voc, sink, nullptr);
    if (!gst_element_link_many(src, voc, sink, nullptr)) throw std::runtime_error("cannot link appsrc ! vocoder ! appsink");
    // READY loads the model; its feature layout is then the sink pad's caps.
    if (gst_element_set_state(pipeline, GST_STATE_READY) == GST_STATE_CHANGE_FAILURE)
      throw std::runtime_error("pipeline refused READY (model load failed?)");
    GstPad* pad = gst_element_get_static_pad(voc, "sink");
    GstCaps* caps = gst_caps_fixate(gst_pad_query_caps(pad, nullptr));
    gst_object_unref(pad);
    gst_app_src_set_caps(GST_APP_SRC(src), caps);
    gst_caps_unref(caps);
  }
  ~Pipe() {
    gst_element_set_state(pipeline, GST_STATE_NULL);
    gst_object_unref(pipeline);
  }
  void play() {
    state.clear();
    if (gst_element_set_state(pipeline, GST_STATE_PLAYING) == GST_STATE_CHANGE_FAILURE)
      throw std::runtime_error("pipeline refused PLAYING");
  }
  void stop() { gst_element_set_state(pipeline, GST_STATE_READY); }
  void push(const at::Tensor& mel_tc, int64_t first, int64_t n) {
    const size_t bytes = static_cast<size_t>(n * mel_tc.size(1)) * sizeof(float);
    GstBuffer* b = gst_buffer_new_allocate(nullptr, bytes, nullptr);
    gst_buffer_fill(b, 0, mel_tc.data_ptr<float>() + first * mel_tc.size(1), bytes);
    GST_BUFFER_PTS(b) = static_cast<GstClockTime>(first * frame_s * GST_SECOND);
    GST_BUFFER_DURATION(b) = static_cast<GstClockTime>(n * frame_s * GST_SECOND);
    if (gst_app_src_push_buffer(GST_APP_SRC(src), b) != GST_FLOW_OK) throw std::runtime_error("push refused");
  }
  // Waits for EOS at the sink; an error on the bus is fatal.
  void wait_eos(double timeout_s) {
    GstBus* bus = gst_element_get_bus(pipeline);
    auto deadline = Clock::now() + std::chrono::duration<double>(timeout_s);
    for (;;) {
      {
        std::unique_lock<std::mutex> l(state.m);
        if (state.cv.wait_for(l, std::chrono::milliseconds(20), [&] { return state.eos; })) break;
      }
      if (GstMessage* msg = gst_bus_pop_filtered(bus, GST_MESSAGE_ERROR)) {
        GError* err = nullptr;
        gchar* dbg = nullptr;
        gst_message_parse_error(msg, &err, &dbg);
        std::string what = std::string(err->message) + (dbg ? std::string(" (") + dbg + ")" : "");
        g_clear_error(&err);
        g_free(dbg);
        gst_message_unref(msg);
        gst_object_unref(bus);
        throw std::runtime_error("pipeline error: " + what);
      }
      if (Clock::now() > deadline) {
        gst_object_unref(bus);
        throw std::runtime_error("timed out waiting for EOS");
      }
    }
    gst_object_unref(bus);
  }
};

std::vector<int64_t> parse_list(const std::string& s) {
  std::vector<int64_t> v;
  std::stringstream ss(s);
  std::string item;
  while (std::getline(ss, item, ',')) v.push_back(std::atoll(item.c_str()));
  return v;
}

int cmd_throughput(const Args& a) {
  const std::string w = a.str("model", ""), dir = a.str("dir", "");
  const double seconds = a.num("seconds", 10);
  const int threads = static_cast<int>(a.num("threads", 2)), reps = static_cast<int>(a.num("reps", 5));
  const int warmup = static_cast<int>(a.num("warmup", 1));
  const int64_t chunk = static_cast<int64_t>(a.num("chunk", 10));
  const int chunk_frames = static_cast<int>(a.num("chunk-frames", -1));
  set_threads(threads);
  at::Tensor mel_tc = mel_input(w, seconds);
  const int64_t T = mel_tc.size(0);
  Pipe p(w, dir, threads, /*live=*/false);
  g_object_set(p.voc, "chunk-frames", chunk_frames, nullptr);
  std::vector<double> times;
  int64_t samples = 0;
  // Warm-up runs push at most 2 s of the input (they only prime pools and caches).
  const int64_t warm_frames = std::min<int64_t>(T, static_cast<int64_t>(2.0 / p.frame_s) + 1);
  for (int r = 0; r < warmup + reps; ++r) {
    const int64_t n = r < warmup ? warm_frames : T;
    p.play();
    auto t0 = Clock::now();
    for (int64_t f = 0; f < n; f += chunk) p.push(mel_tc, f, std::min(chunk, n - f));
    gst_app_src_end_of_stream(GST_APP_SRC(p.src));
    p.wait_eos(600);
    const double ms = ms_since(t0);
    samples = p.state.samples;
    p.stop();
    if (r >= warmup) times.push_back(ms);
  }
  json out{{"model", w},      {"seconds", seconds}, {"threads", threads},  {"frames", T},
           {"chunk", chunk},  {"chunk_frames", chunk_frames}, {"samples", samples}, {"audio_s", static_cast<double>(samples) / p.fmt.rate},
           {"element_ms", times}, {"peak_rss_kb", peak_rss_kb()}};
  std::cout << out.dump() << "\n";
  return 0;
}

int cmd_latency(const Args& a) {
  const std::string w = a.str("model", ""), dir = a.str("dir", "");
  const int threads = static_cast<int>(a.num("threads", 2)), reps = static_cast<int>(a.num("reps", 3));
  const double seconds = a.num("seconds", 1.5);
  const int64_t fpb = static_cast<int64_t>(a.num("frames-per-buffer", 1));
  set_threads(threads);
  at::Tensor mel_tc = mel_input(w, seconds);
  const int64_t T = mel_tc.size(0);
  Pipe p(w, dir, threads, /*live=*/true);
  // One live run: pushes at real-time pace until the first audio arrives
  // (then flushes: later output is not needed, and a vocoder slower than
  // real time would otherwise take long to drain its backlog). Returns the
  // first-audio time (ms after the first push) and frames pushed by then.
  auto live_run = [&](double* first_ms, double* frames_in) {
    p.play();
    const auto t0 = Clock::now();
    *first_ms = -1;
    *frames_in = -1;
    for (int64_t f = 0; f < T && *first_ms < 0; f += fpb) {
      const int64_t n = std::min(fpb, T - f);
      // Wait for the frame's due time, watching for the first audio meanwhile.
      const auto due = t0 + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(f * p.frame_s));
      {
        std::unique_lock<std::mutex> l(p.state.m);
        p.state.cv.wait_until(l, due, [&] { return p.state.got_first; });
        if (p.state.got_first) {
          *first_ms = std::chrono::duration<double, std::milli>(p.state.first - t0).count();
          *frames_in = static_cast<double>(f);
          break;
        }
      }
      p.push(mel_tc, f, n);
    }
    if (*first_ms < 0) {  // all frames in: wait for the first audio (or EOS after drain)
      std::unique_lock<std::mutex> l(p.state.m);
      if (!p.state.got_first) {
        l.unlock();
        gst_app_src_end_of_stream(GST_APP_SRC(p.src));
        p.wait_eos(300);
        l.lock();
      }
      if (p.state.got_first) {
        *first_ms = std::chrono::duration<double, std::milli>(p.state.first - t0).count();
        *frames_in = static_cast<double>(T);
      }
    }
    p.stop();
  };
  double w1, w2;
  live_run(&w1, &w2);  // warm-up (default lookahead)
  json rows = json::array();
  for (int64_t la : parse_list(a.str("lookaheads", "0,1,2,4,8,-1"))) {
    g_object_set(p.voc, "lookahead", static_cast<gint>(la), nullptr);
    std::vector<double> first_ms, frames_at_first;
    for (int r = 0; r < reps; ++r) {
      double fa, fi;
      live_run(&fa, &fi);
      first_ms.push_back(fa);
      frames_at_first.push_back(fi);
    }
    rows.push_back({{"lookahead", la}, {"first_audio_ms", first_ms}, {"frames_pushed_at_first_audio", frames_at_first}});
  }
  json out{{"model", w},
           {"threads", threads},
           {"frames_per_buffer", fpb},
           {"frame_ms", 1000.0 * p.frame_s},
           {"seconds", seconds},
           {"rows", rows}};
  std::cout << out.dump() << "\n";
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  gst_init(&argc, &argv);
  if (argc < 2) {
    std::cerr << "usage: bench_element throughput|latency --key value ... (see bench/bench_element.cc)\n";
    return 2;
  }
  try {
    const std::string cmd = argv[1];
    Args a(argc, argv, 2);
    if (cmd == "throughput") return cmd_throughput(a);
    if (cmd == "latency") return cmd_latency(a);
    std::cerr << "unknown command '" << cmd << "'\n";
    return 2;
  } catch (const std::exception& e) {
    std::cerr << "bench_element: " << e.what() << "\n";
    return 1;
  }
}
