// chatterbox-server: an OpenAI-compatible speech service on the elements.
//
// A client of the GStreamer plugin (it links GStreamer, never libchatterbox):
// each synthesis is a pipeline
//   appsrc (text/x-raw utf8) ! chatterboxtts model-dir=... voice=... !
//   audioconvert ! audioresample ! audio/x-raw,S16LE,24000,mono ! [encoder] ! appsink
// run on GStreamer's streaming threads; the HTTP and WebSocket sides (libsoup-3)
// run on the one GLib main loop. Weights are shared between pipelines through
// the elements' model cache, so a request after the first loads nothing.
//
// Admission: at most `workers` pipelines run at once; up to `queue` more
// requests wait; beyond that a request is answered 503 with Retry-After. Each
// request has a time limit (from arrival); a client that disconnects has its
// pipeline stopped at once (its socket is watched while the response is
// paused). Every refusal is a 4xx/5xx with OpenAI's error body
//   {"error": {"message", "type", "param", "code"}}.

#include <gio/gio.h>
#include <glib-unix.h>
#include <gst/app/gstappsink.h>
#include <gst/app/gstappsrc.h>
#include <gst/gst.h>
#include <libsoup/soup.h>
#include <sys/socket.h>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <deque>
#include <map>
#include <mutex>
#include <string>
#include <vector>

using json = nlohmann::json;

namespace {

const int kSampleRate = 24000;  // chatterboxtts's output rate, and OpenAI's pcm rate

struct ModelConf {
  std::string name, dir;
  std::vector<std::pair<std::string, std::string>> props;  // extra chatterboxtts properties
};

struct Config {
  std::string host = "127.0.0.1";
  int port = 8000;
  std::vector<ModelConf> models;
  std::string voices_dir;
  int workers = 1;
  int queue = 4;
  double timeout_s = 120;
  size_t max_input = 4096;
  size_t max_upload = 20 * 1024 * 1024;
  int retry_after_s = 2;
};

// ---- metrics ----------------------------------------------------------------

struct Histogram {
  std::vector<double> bounds;
  std::vector<uint64_t> counts;  // cumulative at render time
  double sum = 0;
  uint64_t n = 0;
  explicit Histogram(std::vector<double> b) : bounds(std::move(b)), counts(bounds.size(), 0) {}
  void observe(double v) {
    for (size_t i = 0; i < bounds.size(); ++i)
      if (v <= bounds[i]) counts[i]++;
    sum += v;
    n++;
  }
  void render(std::string& out, const char* name, const char* help) const {
    out += std::string("# HELP ") + name + " " + help + "\n# TYPE " + name + " histogram\n";
    char buf[512];
    for (size_t i = 0; i < bounds.size(); ++i) {
      snprintf(buf, sizeof buf, "%s_bucket{le=\"%g\"} %llu\n", name, bounds[i], (unsigned long long)counts[i]);
      out += buf;
    }
    snprintf(buf, sizeof buf, "%s_bucket{le=\"+Inf\"} %llu\n%s_sum %.6f\n%s_count %llu\n", name,
             (unsigned long long)n, name, sum, name, (unsigned long long)n);
    out += buf;
  }
};

struct Metrics {
  std::map<std::pair<std::string, int>, uint64_t> requests;  // (endpoint, status)
  std::map<std::string, uint64_t> errors;                    // by code
  uint64_t cancelled = 0, timeouts = 0, rejected = 0;
  double audio_seconds = 0;
  Histogram ttfb{{0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60}};
  Histogram rtf{{0.1, 0.25, 0.5, 1, 2, 4, 8, 16}};
};

struct Server;

// ---- one synthesis ------------------------------------------------------------

enum class EvKind { Data, Eos };
struct Event {
  EvKind kind;
  GBytes* bytes;
};

struct Job {
  std::atomic<int> refs{1};
  Server* srv = nullptr;
  // Exactly one of these (owned refs, released on the main thread).
  SoupServerMessage* msg = nullptr;
  SoupWebsocketConnection* ws = nullptr;
  std::string endpoint;
  std::string model_dir, voice_path, format, text;
  std::vector<std::pair<std::string, std::string>> props;
  GstElement* pipeline = nullptr;
  GstElement* appsrc = nullptr;
  guint bus_watch = 0;
  guint timeout_id = 0;
  GSource* sock_watch = nullptr;
  gulong finished_id = 0;
  gint64 t_arrive = 0, t_start = 0, t_first = 0;
  std::atomic<uint64_t> samples{0};
  bool queued = false, running = false, headers_sent = false, done = false;
  uint64_t bytes_sent = 0;
  // Streaming thread -> main loop.
  std::mutex mu;
  std::deque<Event> events;
  bool drain_pending = false;
  // WebSocket text not yet sent to the pipeline (waits for a sentence end).
  std::string ws_pending;
};

void job_ref(Job* j) { j->refs.fetch_add(1); }
void job_unref(Job* j) {
  if (j->refs.fetch_sub(1) == 1) {
    for (auto& e : j->events)
      if (e.bytes) g_bytes_unref(e.bytes);
    delete j;
  }
}

std::atomic<int> g_teardowns{0};  // teardown threads still setting a pipeline to NULL

struct Server {
  Config cfg;
  std::vector<Job*> running;  // jobs with a pipeline (for shutdown)
  SoupServer* soup = nullptr;
  GMainLoop* loop = nullptr;
  int active = 0;
  std::deque<Job*> queue;
  Metrics m;
};

// ---- replies --------------------------------------------------------------------

json error_body(const std::string& message, const std::string& type, const std::string& code,
                const char* param = nullptr) {
  json e = {{"message", message}, {"type", type}, {"code", code}};
  e["param"] = param ? json(param) : json(nullptr);
  return json{{"error", e}};
}

void count(Server* s, const std::string& endpoint, int status, const std::string& code = "") {
  s->m.requests[{endpoint, status}]++;
  if (status >= 400) s->m.errors[code.empty() ? std::to_string(status) : code]++;
}

void reply_json(Server* s, SoupServerMessage* msg, const std::string& endpoint, int status, const json& body,
                const std::string& code = "") {
  std::string text = body.dump(-1, ' ', false, json::error_handler_t::replace);
  soup_server_message_set_status(msg, status, nullptr);
  soup_server_message_set_response(msg, "application/json", SOUP_MEMORY_COPY, text.data(), text.size());
  count(s, endpoint, status, code);
}

void reply_error(Server* s, SoupServerMessage* msg, const std::string& endpoint, int status,
                 const std::string& message, const std::string& code, const char* param = nullptr) {
  const char* type = status >= 500 ? "server_error" : "invalid_request_error";
  reply_json(s, msg, endpoint, status, error_body(message, type, code, param), code);
}

// ---- formats ----------------------------------------------------------------------

struct Format {
  const char* name;
  const char* content_type;
  const char* encoder;  // gst-launch fragment after S16LE, or "" for raw
};
// Encoders from Debian 12's GStreamer: opusenc + oggmux (gstreamer1.0-plugins-base),
// flacenc and lamemp3enc (gstreamer1.0-plugins-good). aac needs -bad/-ugly (not used).
const Format kFormats[] = {
    {"wav", "audio/wav", ""},
    {"pcm", "audio/pcm", ""},
    {"opus", "audio/ogg", "opusenc ! oggmux"},
    {"flac", "audio/flac", "flacenc"},
    {"mp3", "audio/mpeg", "lamemp3enc"},
};

const Format* find_format(const std::string& name) {
  for (const auto& f : kFormats)
    if (name == f.name) return &f;
  return nullptr;
}

bool format_available(const Format& f) {
  if (!*f.encoder) return true;
  std::string enc = f.encoder;
  size_t p = 0;
  while (p < enc.size()) {
    size_t q = enc.find(" ! ", p);
    std::string name = enc.substr(p, q == std::string::npos ? std::string::npos : q - p);
    GstElementFactory* fac = gst_element_factory_find(name.c_str());
    if (!fac) return false;
    gst_object_unref(fac);
    if (q == std::string::npos) break;
    p = q + 3;
  }
  return true;
}

// A streaming WAV header: sizes unknown, so 0xFFFFFFFF (what streaming servers send).
std::string wav_header() {
  std::string h(44, '\0');
  auto put32 = [&](size_t o, uint32_t v) { for (int i = 0; i < 4; ++i) h[o + i] = char((v >> (8 * i)) & 0xff); };
  auto put16 = [&](size_t o, uint16_t v) { h[o] = char(v & 0xff); h[o + 1] = char(v >> 8); };
  memcpy(&h[0], "RIFF", 4);
  put32(4, 0xFFFFFFFFu);
  memcpy(&h[8], "WAVEfmt ", 8);
  put32(16, 16);
  put16(20, 1);
  put16(22, 1);
  put32(24, kSampleRate);
  put32(28, kSampleRate * 2);
  put16(32, 2);
  put16(34, 16);
  memcpy(&h[36], "data", 4);
  put32(40, 0xFFFFFFFFu);
  return h;
}

// ---- voices ---------------------------------------------------------------------------

const char* const kVoiceExts[] = {".pt", ".safetensors", ".wav", ".flac", ".ogg"};

bool valid_voice_id(const std::string& id) {
  if (id.empty() || id.size() > 64) return false;
  for (char c : id)
    if (!(g_ascii_isalnum(c) || c == '-' || c == '_')) return false;
  return true;
}

// "" for the model's own conds.pt; nullopt-as-"\x01" when unknown.
bool resolve_voice(const Config& cfg, const std::string& voice, std::string* path) {
  path->clear();
  if (voice.empty() || voice == "default") return true;
  if (!valid_voice_id(voice) || cfg.voices_dir.empty()) return false;
  for (const char* ext : kVoiceExts) {
    std::string p = cfg.voices_dir + "/" + voice + ext;
    if (g_file_test(p.c_str(), G_FILE_TEST_IS_REGULAR)) {
      *path = p;
      return true;
    }
  }
  return false;
}

// What an uploaded voice is, from its bytes: a conds file (safetensors or a
// torch zip) or a recording libsndfile reads. nullptr: neither.
const char* voice_kind(const char* d, size_t n) {
  if (n >= 12 && !memcmp(d, "RIFF", 4) && !memcmp(d + 8, "WAVE", 4)) return ".wav";
  if (n >= 4 && !memcmp(d, "fLaC", 4)) return ".flac";
  if (n >= 4 && !memcmp(d, "OggS", 4)) return ".ogg";
  if (n >= 4 && !memcmp(d, "PK\x03\x04", 4)) return ".pt";
  if (n >= 10) {
    uint64_t hl = 0;
    for (int i = 0; i < 8; ++i) hl |= uint64_t((unsigned char)d[i]) << (8 * i);
    if (hl > 1 && hl + 8 <= n && d[8] == '{') return ".safetensors";
  }
  return nullptr;
}

// ---- job lifecycle (main thread unless noted) ---------------------------------------------

void start_next(Server* s);
void ws_send_error(Job* j, const std::string& message, const std::string& code);

void stop_pipeline(Job* j) {
  if (j->bus_watch) {
    g_source_remove(j->bus_watch);
    j->bus_watch = 0;
  }
  if (!j->pipeline) return;
  // NULL waits for the streaming threads; do it off the main loop.
  GstElement* p = j->pipeline;
  j->pipeline = nullptr;
  if (j->appsrc) {
    gst_object_unref(j->appsrc);
    j->appsrc = nullptr;
  }
  g_teardowns.fetch_add(1);
  GThread* t = g_thread_new("teardown", [](gpointer d) -> gpointer {
    GstElement* p = static_cast<GstElement*>(d);
    gst_element_set_state(p, GST_STATE_NULL);
    gst_object_unref(p);
    g_teardowns.fetch_sub(1);
    return nullptr;
  }, p);
  g_thread_unref(t);
}

// Ends a job: status is what the client was told (or would have been).
// outcome: "ok", "error", "cancelled", "timeout".
void finish_job(Job* j, int status, const std::string& outcome) {
  if (j->done) return;
  j->done = true;
  Server* s = j->srv;
  if (j->timeout_id) {
    g_source_remove(j->timeout_id);
    j->timeout_id = 0;
  }
  if (j->sock_watch) {
    g_source_destroy(j->sock_watch);
    g_source_unref(j->sock_watch);
    j->sock_watch = nullptr;
  }
  stop_pipeline(j);
  if (j->queued) {
    auto it = std::find(s->queue.begin(), s->queue.end(), j);
    if (it != s->queue.end()) s->queue.erase(it);
    j->queued = false;
  }
  if (outcome == "cancelled") s->m.cancelled++;
  if (outcome == "timeout") s->m.timeouts++;
  if (outcome == "ok" && j->t_start) {
    double audio = double(j->samples.load()) / kSampleRate;
    double wall = double(g_get_monotonic_time() - j->t_start) / 1e6;
    s->m.audio_seconds += audio;
    if (audio > 0) s->m.rtf.observe(wall / audio);
  }
  if (j->msg) {
    if (j->finished_id) g_signal_handler_disconnect(j->msg, j->finished_id);
    if (outcome != "cancelled") count(s, j->endpoint, status, outcome == "ok" ? "" : outcome);
    else count(s, j->endpoint, 499, "client_closed");
    g_object_unref(j->msg);
    j->msg = nullptr;
  }
  if (j->ws) {
    count(s, j->endpoint, status, outcome == "ok" ? "" : outcome);
    if (soup_websocket_connection_get_state(j->ws) == SOUP_WEBSOCKET_STATE_OPEN)
      soup_websocket_connection_close(j->ws, outcome == "ok" ? SOUP_WEBSOCKET_CLOSE_NORMAL : 1011, outcome.c_str());
    g_signal_handlers_disconnect_matched(j->ws, G_SIGNAL_MATCH_DATA, 0, 0, nullptr, nullptr, j);
    g_object_unref(j->ws);
    j->ws = nullptr;
  }
  if (j->running) {
    j->running = false;
    s->active--;
    s->running.erase(std::remove(s->running.begin(), s->running.end(), j), s->running.end());
  }
  job_unref(j);  // the admission reference
  start_next(s);
}

// An HTTP job that fails before any audio left: a JSON error; after: the
// connection is cut, so the client sees a truncated chunked body, not a short file.
void fail_http(Job* j, int status, const std::string& message, const std::string& code) {
  if (!j->msg) return;
  if (!j->headers_sent) {
    std::string text = error_body(message, status >= 500 ? "server_error" : "invalid_request_error", code).dump(-1, ' ', false, json::error_handler_t::replace);
    soup_server_message_set_status(j->msg, status, nullptr);
    soup_message_headers_set_encoding(soup_server_message_get_response_headers(j->msg), SOUP_ENCODING_CONTENT_LENGTH);
    soup_server_message_set_response(j->msg, "application/json", SOUP_MEMORY_COPY, text.data(), text.size());
    soup_server_message_unpause(j->msg);
  } else {
    // Shut the socket itself: libsoup then fails the message without
    // writing the terminating chunk (stealing the connection wrote it).
    if (GSocket* sock = soup_server_message_get_socket(j->msg)) g_socket_shutdown(sock, TRUE, TRUE, nullptr);
    soup_server_message_unpause(j->msg);
  }
}

void send_audio(Job* j, const guint8* data, gsize n) {
  Server* s = j->srv;
  if (!j->t_first) {
    j->t_first = g_get_monotonic_time();
    s->m.ttfb.observe(double(j->t_first - j->t_arrive) / 1e6);
  }
  j->bytes_sent += n;
  if (j->msg) {
    SoupMessageBody* body = soup_server_message_get_response_body(j->msg);
    if (!j->headers_sent) {
      j->headers_sent = true;
      const Format* f = find_format(j->format);
      SoupMessageHeaders* h = soup_server_message_get_response_headers(j->msg);
      soup_message_headers_set_encoding(h, SOUP_ENCODING_CHUNKED);
      soup_message_headers_set_content_type(h, f->content_type, nullptr);
      soup_server_message_set_status(j->msg, 200, nullptr);
      soup_message_body_set_accumulate(body, FALSE);
      if (j->format == "wav") {
        std::string hdr = wav_header();
        soup_message_body_append(body, SOUP_MEMORY_COPY, hdr.data(), hdr.size());
      }
    }
    soup_message_body_append(body, SOUP_MEMORY_COPY, data, n);
    soup_server_message_unpause(j->msg);
  } else if (j->ws) {
    if (!j->headers_sent && j->format == "wav") {
      std::string hdr = wav_header();
      soup_websocket_connection_send_binary(j->ws, hdr.data(), hdr.size());
    }
    j->headers_sent = true;
    soup_websocket_connection_send_binary(j->ws, data, n);
  }
}

gboolean drain_events(gpointer d) {
  Job* j = static_cast<Job*>(d);
  std::deque<Event> evs;
  {
    std::lock_guard<std::mutex> lk(j->mu);
    evs.swap(j->events);
    j->drain_pending = false;
  }
  for (auto& e : evs) {
    if (!j->done) {
      if (e.kind == EvKind::Data) {
        gsize n;
        const guint8* p = static_cast<const guint8*>(g_bytes_get_data(e.bytes, &n));
        send_audio(j, p, n);
      } else {
        if (j->msg) {
          if (!j->headers_sent) send_audio(j, nullptr, 0);  // an empty (but well-formed) stream
          soup_message_body_complete(soup_server_message_get_response_body(j->msg));
          soup_server_message_unpause(j->msg);
        } else if (j->ws) {
          json done = {{"type", "done"}, {"audio_seconds", double(j->samples.load()) / kSampleRate}};
          std::string t = done.dump(-1, ' ', false, json::error_handler_t::replace);
          soup_websocket_connection_send_text(j->ws, t.c_str());
        }
        finish_job(j, 200, "ok");
      }
    }
    if (e.bytes) g_bytes_unref(e.bytes);
  }
  return G_SOURCE_REMOVE;
}

// Streaming thread.
void push_event(Job* j, EvKind kind, GBytes* bytes) {
  std::lock_guard<std::mutex> lk(j->mu);
  j->events.push_back({kind, bytes});
  if (!j->drain_pending) {
    j->drain_pending = true;
    job_ref(j);
    g_main_context_invoke_full(nullptr, G_PRIORITY_DEFAULT, drain_events, j,
                               [](gpointer d) { job_unref(static_cast<Job*>(d)); });
  }
}

GstFlowReturn on_new_sample(GstAppSink* sink, gpointer d) {
  Job* j = static_cast<Job*>(d);
  GstSample* sample = gst_app_sink_pull_sample(sink);
  if (!sample) return GST_FLOW_EOS;
  GstBuffer* buf = gst_sample_get_buffer(sample);
  GstMapInfo map;
  if (buf && gst_buffer_map(buf, &map, GST_MAP_READ)) {
    if (map.size) push_event(j, EvKind::Data, g_bytes_new(map.data, map.size));
    gst_buffer_unmap(buf, &map);
  }
  gst_sample_unref(sample);
  return GST_FLOW_OK;
}

void on_eos(GstAppSink*, gpointer d) { push_event(static_cast<Job*>(d), EvKind::Eos, nullptr); }

GstPadProbeReturn count_samples(GstPad*, GstPadProbeInfo* info, gpointer d) {
  Job* j = static_cast<Job*>(d);
  if (GstBuffer* b = GST_PAD_PROBE_INFO_BUFFER(info)) j->samples.fetch_add(gst_buffer_get_size(b) / 2);
  return GST_PAD_PROBE_OK;
}

gboolean on_bus(GstBus*, GstMessage* m, gpointer d) {
  Job* j = static_cast<Job*>(d);
  if (GST_MESSAGE_TYPE(m) == GST_MESSAGE_ERROR && !j->done) {
    GError* err = nullptr;
    gchar* dbg = nullptr;
    gst_message_parse_error(m, &err, &dbg);
    std::string text = std::string(GST_OBJECT_NAME(GST_MESSAGE_SRC(m))) + ": " + (err ? err->message : "error");
    g_printerr("chatterbox-server: pipeline error: %s (%s)\n", text.c_str(), dbg ? dbg : "");
    g_clear_error(&err);
    g_free(dbg);
    j->bus_watch = 0;  // this source is removed by returning FALSE
    if (j->msg) fail_http(j, 500, "synthesis failed: " + text, "synthesis_failed");
    if (j->ws) ws_send_error(j, "synthesis failed: " + text, "synthesis_failed");
    finish_job(j, 500, "error");
    return G_SOURCE_REMOVE;
  }
  return G_SOURCE_CONTINUE;
}

// Builds and starts the job's pipeline; false (and *why) when it cannot be built.
bool build_pipeline(Job* j, std::string* why) {
  const Format* f = find_format(j->format);
  std::string desc = "appsrc name=src format=time caps=text/x-raw,format=utf8 ! chatterboxtts name=tts ! "
                     "audioconvert ! audioresample ! audio/x-raw,format=S16LE,rate=24000,channels=1 ! "
                     "identity name=count";
  if (*f->encoder) desc += std::string(" ! ") + f->encoder;
  desc += " ! appsink name=sink sync=false";
  GError* err = nullptr;
  GstElement* p = gst_parse_launch(desc.c_str(), &err);
  if (!p || err) {
    *why = err ? err->message : "cannot build the pipeline";
    g_clear_error(&err);
    if (p) gst_object_unref(p);
    return false;
  }
  GstElement* tts = gst_bin_get_by_name(GST_BIN(p), "tts");
  g_object_set(tts, "model-dir", j->model_dir.c_str(), nullptr);
  if (!j->voice_path.empty()) g_object_set(tts, "voice", j->voice_path.c_str(), nullptr);
  for (const auto& kv : j->props) gst_util_set_object_arg(G_OBJECT(tts), kv.first.c_str(), kv.second.c_str());
  // Each sentence is its own utterance, so audio leaves after the first
  // sentence rather than after the whole input.
  GstElement* t3 = gst_bin_get_by_name(GST_BIN(tts), "t3");
  if (t3) {
    if (g_object_class_find_property(G_OBJECT_GET_CLASS(t3), "split-sentences"))
      g_object_set(t3, "split-sentences", TRUE, nullptr);
    gst_object_unref(t3);
  }
  gst_object_unref(tts);

  GstElement* src = gst_bin_get_by_name(GST_BIN(p), "src");
  if (j->ws) g_object_set(src, "is-live", TRUE, nullptr);  // incremental text: chatterboxtts streams (auto)
  GstElement* cnt = gst_bin_get_by_name(GST_BIN(p), "count");
  GstPad* pad = gst_element_get_static_pad(cnt, "src");
  job_ref(j);
  gst_pad_add_probe(pad, GST_PAD_PROBE_TYPE_BUFFER, count_samples, j, [](gpointer d) { job_unref(static_cast<Job*>(d)); });
  gst_object_unref(pad);
  gst_object_unref(cnt);
  GstElement* sink = gst_bin_get_by_name(GST_BIN(p), "sink");
  GstAppSinkCallbacks cb = {};
  cb.eos = on_eos;
  cb.new_sample = on_new_sample;
  job_ref(j);
  gst_app_sink_set_callbacks(GST_APP_SINK(sink), &cb, j, [](gpointer d) { job_unref(static_cast<Job*>(d)); });
  gst_object_unref(sink);

  GstBus* bus = gst_element_get_bus(p);
  j->bus_watch = gst_bus_add_watch(bus, on_bus, j);
  gst_object_unref(bus);
  j->pipeline = p;
  j->appsrc = src;
  if (gst_element_set_state(p, GST_STATE_PLAYING) == GST_STATE_CHANGE_FAILURE) {
    // The bus holds the element's own message (e.g. a model directory it refuses).
    GstBus* b = gst_element_get_bus(p);
    GstMessage* m = gst_bus_pop_filtered(b, GST_MESSAGE_ERROR);
    *why = "the pipeline did not start";
    if (m) {
      GError* e = nullptr;
      gst_message_parse_error(m, &e, nullptr);
      if (e) *why = e->message;
      g_clear_error(&e);
      gst_message_unref(m);
    }
    gst_object_unref(b);
    return false;
  }
  return true;
}

void push_text(Job* j, const std::string& text) {
  if (!j->appsrc || text.empty()) return;
  GstBuffer* b = gst_buffer_new_memdup(text.data(), text.size());
  gst_app_src_push_buffer(GST_APP_SRC(j->appsrc), b);
}

void start_job(Job* j) {
  Server* s = j->srv;
  j->queued = false;
  j->running = true;
  s->active++;
  s->running.push_back(j);
  j->t_start = g_get_monotonic_time();
  std::string why;
  if (!build_pipeline(j, &why)) {
    if (j->msg) fail_http(j, 500, "synthesis failed: " + why, "synthesis_failed");
    if (j->ws) ws_send_error(j, "synthesis failed: " + why, "synthesis_failed");
    finish_job(j, 500, "error");
    return;
  }
  if (j->msg) {
    push_text(j, j->text);
    gst_app_src_end_of_stream(GST_APP_SRC(j->appsrc));
  } else if (!j->ws_pending.empty()) {
    // Text that came while the session waited in the queue.
    std::string t;
    t.swap(j->ws_pending);
    push_text(j, t);
  }
}

void start_next(Server* s) {
  while (s->active < s->cfg.workers && !s->queue.empty()) {
    Job* j = s->queue.front();
    s->queue.pop_front();
    start_job(j);
  }
}

gboolean on_timeout(gpointer d) {
  Job* j = static_cast<Job*>(d);
  j->timeout_id = 0;
  char msg[128];
  snprintf(msg, sizeof msg, "synthesis exceeded the time limit of %g s", j->srv->cfg.timeout_s);
  if (j->msg) fail_http(j, 504, msg, "timeout");
  if (j->ws) ws_send_error(j, msg, "timeout");
  finish_job(j, 504, "timeout");
  return G_SOURCE_REMOVE;
}

// Admission: run, queue, or refuse. Takes the job's admission reference.
// false: refused (the caller answers 503).
bool admit(Server* s, Job* j) {
  if (s->active < s->cfg.workers) {
    j->timeout_id = g_timeout_add(guint(s->cfg.timeout_s * 1000), on_timeout, j);
    start_job(j);
    return true;
  }
  if (int(s->queue.size()) < s->cfg.queue) {
    j->timeout_id = g_timeout_add(guint(s->cfg.timeout_s * 1000), on_timeout, j);
    j->queued = true;
    s->queue.push_back(j);
    return true;
  }
  return false;
}

// ---- client disconnect --------------------------------------------------------------------

gboolean on_socket_event(GSocket* sock, GIOCondition cond, gpointer d) {
  Job* j = static_cast<Job*>(d);
  if (j->done) return G_SOURCE_REMOVE;
  char c;
  gssize n = 1;
  if (!(cond & (G_IO_HUP | G_IO_ERR))) n = recv(g_socket_get_fd(sock), &c, 1, MSG_PEEK | MSG_DONTWAIT);
  if (n > 0) {  // a pipelined request: not ours to read; stop watching
    g_source_unref(j->sock_watch);
    j->sock_watch = nullptr;
    return G_SOURCE_REMOVE;
  }
  if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return G_SOURCE_CONTINUE;
  g_source_unref(j->sock_watch);
  j->sock_watch = nullptr;
  g_printerr("chatterbox-server: client closed the connection; stopping its pipeline\n");
  finish_job(j, 499, "cancelled");
  return G_SOURCE_REMOVE;
}

void on_msg_finished(SoupServerMessage*, gpointer d) {
  Job* j = static_cast<Job*>(d);
  if (!j->done) finish_job(j, 499, "cancelled");
}

// ---- handlers -------------------------------------------------------------------------------

const ModelConf* find_model(const Config& cfg, const std::string& name) {
  for (const auto& m : cfg.models)
    if (m.name == name) return &m;
  return nullptr;
}

std::string model_list(const Config& cfg) {
  std::string out;
  for (const auto& m : cfg.models) out += (out.empty() ? "" : ", ") + m.name;
  return out;
}

std::string format_list() {
  std::string out;
  for (const auto& f : kFormats)
    if (format_available(f)) out += (out.empty() ? "" : ", ") + std::string(f.name);
  return out;
}

// Validates an OpenAI speech request (HTTP body or the WebSocket's first
// message) into j; false with (status, message, code, param) otherwise.
struct Refusal {
  int status = 400;
  std::string message, code;
  const char* param = nullptr;
};

bool parse_speech(Server* s, const json& req, Job* j, bool need_input, Refusal* r) {
  if (!req.is_object()) {
    *r = {400, "the request body must be a JSON object", "invalid_json", nullptr};
    return false;
  }
  auto str = [&](const char* key, std::string* out, bool required) -> bool {
    auto it = req.find(key);
    if (it == req.end() || it->is_null()) {
      if (required) *r = {400, std::string("'") + key + "' is required", "missing_field", key};
      return !required;
    }
    if (!it->is_string()) {
      *r = {400, std::string("'") + key + "' must be a string", "invalid_type", key};
      return false;
    }
    *out = it->get<std::string>();
    return true;
  };
  std::string model, voice, fmt = "wav";
  if (!str("model", &model, true)) return false;
  if (need_input && !str("input", &j->text, true)) return false;
  if (!str("voice", &voice, false)) return false;
  if (!str("response_format", &fmt, false)) return false;
  const ModelConf* mc = find_model(s->cfg, model);
  if (!mc) {
    *r = {404, "model '" + model + "' does not exist; configured: " + model_list(s->cfg), "model_not_found", "model"};
    return false;
  }
  if (need_input) {
    if (j->text.find_first_not_of(" \t\r\n") == std::string::npos) {
      *r = {400, "'input' is empty", "empty_input", "input"};
      return false;
    }
    glong chars = g_utf8_validate(j->text.data(), j->text.size(), nullptr) ? g_utf8_strlen(j->text.c_str(), -1) : -1;
    if (chars < 0) {
      *r = {400, "'input' is not valid UTF-8 (or holds a NUL)", "invalid_input", "input"};
      return false;
    }
    if (size_t(chars) > s->cfg.max_input) {
      *r = {400, "'input' has " + std::to_string(chars) + " characters; the limit is " +
                     std::to_string(s->cfg.max_input), "input_too_long", "input"};
      return false;
    }
  }
  if (!resolve_voice(s->cfg, voice, &j->voice_path)) {
    *r = {404, "voice '" + voice + "' does not exist (use 'default' or an id from POST /v1/voices)",
          "voice_not_found", "voice"};
    return false;
  }
  const Format* f = find_format(fmt);
  if (!f || !format_available(*f)) {
    *r = {400, "response_format '" + fmt + "' is not supported; supported: " + format_list(),
          "unsupported_response_format", "response_format"};
    return false;
  }
  auto sp = req.find("speed");
  if (sp != req.end() && !sp->is_null()) {
    if (!sp->is_number()) {
      *r = {400, "'speed' must be a number", "invalid_type", "speed"};
      return false;
    }
    if (std::fabs(sp->get<double>() - 1.0) > 1e-9) {
      *r = {400, "'speed' other than 1.0 is not supported (Chatterbox has no rate control; resample on the client)",
            "unsupported_speed", "speed"};
      return false;
    }
  }
  j->model_dir = mc->dir;
  j->props = mc->props;
  j->format = f->name;
  return true;
}

void handle_speech(SoupServer*, SoupServerMessage* msg, const char*, GHashTable*, gpointer d) {
  Server* s = static_cast<Server*>(d);
  const std::string ep = "/v1/audio/speech";
  if (strcmp(soup_server_message_get_method(msg), "POST") != 0) {
    soup_message_headers_replace(soup_server_message_get_response_headers(msg), "Allow", "POST");
    reply_error(s, msg, ep, 405, "use POST", "method_not_allowed");
    return;
  }
  SoupMessageBody* body = soup_server_message_get_request_body(msg);
  if (body->length > gint64(s->cfg.max_input * 4 + 4096)) {
    reply_error(s, msg, ep, 413, "request body too large", "request_too_large");
    return;
  }
  json req;
  try {
    req = json::parse(std::string(body->data ? body->data : "", body->length));
  } catch (const std::exception& e) {
    reply_error(s, msg, ep, 400, std::string("invalid JSON: ") + e.what(), "invalid_json");
    return;
  }
  Job* j = new Job;
  j->srv = s;
  j->endpoint = ep;
  j->t_arrive = g_get_monotonic_time();
  Refusal r;
  if (!parse_speech(s, req, j, true, &r)) {
    reply_error(s, msg, ep, r.status, r.message, r.code, r.param);
    job_unref(j);
    return;
  }
  if (s->active >= s->cfg.workers && int(s->queue.size()) >= s->cfg.queue) {
    s->m.rejected++;
    soup_message_headers_replace(soup_server_message_get_response_headers(msg), "Retry-After",
                                 std::to_string(s->cfg.retry_after_s).c_str());
    reply_json(s, msg, ep, 503,
               error_body("the server is at capacity (" + std::to_string(s->cfg.workers) + " workers, " +
                              std::to_string(s->cfg.queue) + " queued); retry later",
                          "server_error", "overloaded"),
               "overloaded");
    job_unref(j);
    return;
  }
  j->msg = msg;
  g_object_ref(msg);
  soup_server_message_pause(msg);
  job_ref(j);
  j->finished_id = g_signal_connect_data(msg, "finished", G_CALLBACK(on_msg_finished), j,
                                         [](gpointer d, GClosure*) { job_unref(static_cast<Job*>(d)); },
                                         GConnectFlags(0));
  if (GSocket* sock = soup_server_message_get_socket(msg)) {
    j->sock_watch = g_socket_create_source(sock, GIOCondition(G_IO_IN | G_IO_HUP | G_IO_ERR), nullptr);
    g_source_set_callback(j->sock_watch, G_SOURCE_FUNC(on_socket_event), j, nullptr);
    g_source_attach(j->sock_watch, nullptr);
  }
  admit(s, j);
}

void handle_models(SoupServer*, SoupServerMessage* msg, const char*, GHashTable*, gpointer d) {
  Server* s = static_cast<Server*>(d);
  json data = json::array();
  for (const auto& m : s->cfg.models) data.push_back({{"id", m.name}, {"object", "model"}, {"created", 0}, {"owned_by", "gst-chatterbox"}});
  reply_json(s, msg, "/v1/models", 200, {{"object", "list"}, {"data", data}});
}

void handle_health(SoupServer*, SoupServerMessage* msg, const char*, GHashTable*, gpointer d) {
  Server* s = static_cast<Server*>(d);
  reply_json(s, msg, "/health", 200,
             {{"status", "ok"}, {"workers", s->cfg.workers}, {"active", s->active}, {"queued", s->queue.size()},
              {"queue_capacity", s->cfg.queue}});
}

long rss_bytes() {
  FILE* f = fopen("/proc/self/statm", "r");
  long pages = 0, rss = 0;
  if (f) {
    if (fscanf(f, "%ld %ld", &pages, &rss) != 2) rss = 0;
    fclose(f);
  }
  return rss * sysconf(_SC_PAGESIZE);
}

void handle_metrics(SoupServer*, SoupServerMessage* msg, const char*, GHashTable*, gpointer d) {
  Server* s = static_cast<Server*>(d);
  count(s, "/metrics", 200);
  std::string o;
  char buf[1024];
  o += "# HELP chatterbox_requests_total Requests answered, by endpoint and status (499: the client went away).\n"
       "# TYPE chatterbox_requests_total counter\n";
  for (const auto& kv : s->m.requests) {
    snprintf(buf, sizeof buf, "chatterbox_requests_total{endpoint=\"%s\",code=\"%d\"} %llu\n", kv.first.first.c_str(),
             kv.first.second, (unsigned long long)kv.second);
    o += buf;
  }
  o += "# HELP chatterbox_errors_total Requests that ended in an error, by error code.\n"
       "# TYPE chatterbox_errors_total counter\n";
  for (const auto& kv : s->m.errors) {
    snprintf(buf, sizeof buf, "chatterbox_errors_total{code=\"%s\"} %llu\n", kv.first.c_str(), (unsigned long long)kv.second);
    o += buf;
  }
  snprintf(buf, sizeof buf,
           "# TYPE chatterbox_cancelled_total counter\nchatterbox_cancelled_total %llu\n"
           "# TYPE chatterbox_timeouts_total counter\nchatterbox_timeouts_total %llu\n"
           "# TYPE chatterbox_rejected_total counter\nchatterbox_rejected_total %llu\n",
           (unsigned long long)s->m.cancelled, (unsigned long long)s->m.timeouts, (unsigned long long)s->m.rejected);
  o += buf;
  snprintf(buf, sizeof buf,
           "# HELP chatterbox_queue_depth Requests waiting for a worker.\n# TYPE chatterbox_queue_depth gauge\n"
           "chatterbox_queue_depth %zu\n"
           "# HELP chatterbox_active_workers Pipelines running.\n# TYPE chatterbox_active_workers gauge\n"
           "chatterbox_active_workers %d\n"
           "# TYPE chatterbox_workers gauge\nchatterbox_workers %d\n"
           "# TYPE chatterbox_queue_capacity gauge\nchatterbox_queue_capacity %d\n"
           "# TYPE chatterbox_audio_seconds_total counter\nchatterbox_audio_seconds_total %.3f\n"
           "# TYPE process_resident_memory_bytes gauge\nprocess_resident_memory_bytes %ld\n",
           s->queue.size(), s->active, s->cfg.workers, s->cfg.queue, s->m.audio_seconds, rss_bytes());
  o += buf;
  s->m.ttfb.render(o, "chatterbox_time_to_first_byte_seconds", "From request arrival to the first audio byte.");
  s->m.rtf.render(o, "chatterbox_real_time_factor", "Synthesis wall time over audio duration, per completed request.");
  soup_server_message_set_status(msg, 200, nullptr);
  soup_server_message_set_response(msg, "text/plain; version=0.0.4", SOUP_MEMORY_COPY, o.data(), o.size());
}

void handle_voices(SoupServer*, SoupServerMessage* msg, const char*, GHashTable*, gpointer d) {
  Server* s = static_cast<Server*>(d);
  const std::string ep = "/v1/voices";
  const char* method = soup_server_message_get_method(msg);
  if (!strcmp(method, "GET")) {
    json data = json::array({{{"id", "default"}, {"object", "voice"}}});
    if (GDir* dir = s->cfg.voices_dir.empty() ? nullptr : g_dir_open(s->cfg.voices_dir.c_str(), 0, nullptr)) {
      std::vector<std::string> ids;
      while (const char* n = g_dir_read_name(dir)) {
        std::string name = n;
        for (const char* ext : kVoiceExts)
          if (g_str_has_suffix(n, ext)) {
            std::string id = name.substr(0, name.size() - strlen(ext));
            if (valid_voice_id(id)) ids.push_back(id);
          }
      }
      g_dir_close(dir);
      std::sort(ids.begin(), ids.end());
      for (const auto& id : ids) data.push_back({{"id", id}, {"object", "voice"}});
    }
    reply_json(s, msg, ep, 200, {{"object", "list"}, {"data", data}});
    return;
  }
  if (strcmp(method, "POST") != 0) {
    soup_message_headers_replace(soup_server_message_get_response_headers(msg), "Allow", "GET, POST");
    reply_error(s, msg, ep, 405, "use GET or POST", "method_not_allowed");
    return;
  }
  if (s->cfg.voices_dir.empty()) {
    reply_error(s, msg, ep, 400, "this server has no voices directory (--voices-dir)", "no_voices_dir");
    return;
  }
  SoupMessageHeaders* rh = soup_server_message_get_request_headers(msg);
  SoupMessageBody* body = soup_server_message_get_request_body(msg);
  if (size_t(body->length) > s->cfg.max_upload) {
    reply_error(s, msg, ep, 413, "upload larger than " + std::to_string(s->cfg.max_upload) + " bytes", "request_too_large");
    return;
  }
  GBytes* whole = soup_message_body_flatten(body);
  GBytes* file = nullptr;
  std::string name;
  const char* ctype = soup_message_headers_get_content_type(rh, nullptr);
  if (ctype && !g_ascii_strcasecmp(ctype, "multipart/form-data")) {
    SoupMultipart* mp = soup_multipart_new_from_message(rh, whole);
    if (mp) {
      for (int i = 0; i < soup_multipart_get_length(mp); ++i) {
        SoupMessageHeaders* ph;
        GBytes* pb;
        if (!soup_multipart_get_part(mp, i, &ph, &pb)) continue;
        char* disp = nullptr;
        GHashTable* params = nullptr;
        if (soup_message_headers_get_content_disposition(ph, &disp, &params)) {
          const char* field = static_cast<const char*>(g_hash_table_lookup(params, "name"));
          if (field && !strcmp(field, "file") && !file) file = g_bytes_ref(pb);
          if (field && !strcmp(field, "name")) {
            gsize n;
            const char* p = static_cast<const char*>(g_bytes_get_data(pb, &n));
            name.assign(p, n);
          }
          g_free(disp);
          g_hash_table_destroy(params);
        }
      }
      soup_multipart_free(mp);
    }
    if (!file) {
      g_bytes_unref(whole);
      reply_error(s, msg, ep, 400, "multipart upload without a 'file' part", "missing_field", "file");
      return;
    }
  } else {
    file = g_bytes_ref(whole);
    GHashTable* q = nullptr;
    (void)q;
  }
  g_bytes_unref(whole);
  gsize n;
  const char* data = static_cast<const char*>(g_bytes_get_data(file, &n));
  const char* ext = voice_kind(data, n);
  if (!ext) {
    g_bytes_unref(file);
    reply_error(s, msg, ep, 400,
                "the upload is neither a reference recording (WAV, FLAC, Ogg) nor a conds file (conds.pt, safetensors)",
                "invalid_voice_file", "file");
    return;
  }
  std::string id;
  if (!name.empty()) {
    if (!valid_voice_id(name) || name == "default") {
      g_bytes_unref(file);
      reply_error(s, msg, ep, 400, "'name' must be 1-64 characters of A-Z a-z 0-9 - _ (and not 'default')",
                  "invalid_voice_name", "name");
      return;
    }
    id = name;
  } else {
    gchar* u = g_uuid_string_random();
    id = std::string("voice_") + std::string(u).substr(0, 8) + std::string(u).substr(9, 4);
    g_free(u);
  }
  // Write beside, then rename: a concurrent reader (another instance on the
  // shared directory) never sees half a file. Other extensions of the id go.
  std::string path = s->cfg.voices_dir + "/" + id + ext, tmp = path + ".part";
  GError* err = nullptr;
  bool ok = g_file_set_contents(tmp.c_str(), data, n, &err) && rename(tmp.c_str(), path.c_str()) == 0;
  g_bytes_unref(file);
  if (!ok) {
    std::string why = err ? err->message : g_strerror(errno);
    g_clear_error(&err);
    reply_error(s, msg, ep, 500, "cannot store the voice: " + why, "storage_failed");
    return;
  }
  for (const char* e : kVoiceExts)
    if (strcmp(e, ext) != 0) remove((s->cfg.voices_dir + "/" + id + e).c_str());
  reply_json(s, msg, ep, 201, {{"id", id}, {"object", "voice"}, {"kind", std::string(ext + 1)}, {"bytes", n}});
}

// No exception leaves a handler: whatever escapes is a 500 with the error body.
template <void (*H)(SoupServer*, SoupServerMessage*, const char*, GHashTable*, gpointer)>
void guarded(SoupServer* srv, SoupServerMessage* msg, const char* path, GHashTable* q, gpointer d) {
  try {
    H(srv, msg, path, q, d);
  } catch (const std::exception& e) {
    g_printerr("chatterbox-server: %s %s: internal error: %s\n", soup_server_message_get_method(msg), path, e.what());
    reply_error(static_cast<Server*>(d), msg, path, 500, "internal error", "internal_error");
  }
}

void handle_default(SoupServer*, SoupServerMessage* msg, const char* path, GHashTable*, gpointer d) {
  Server* s = static_cast<Server*>(d);
  reply_error(s, msg, "other", 404, std::string("no such endpoint: ") + path, "not_found");
}

// Refuses an oversized body from its Content-Length, before libsoup reads it.
void on_got_headers(SoupServerMessage* msg, gpointer d) {
  Server* s = static_cast<Server*>(d);
  SoupMessageHeaders* h = soup_server_message_get_request_headers(msg);
  if (soup_message_headers_get_encoding(h) != SOUP_ENCODING_CONTENT_LENGTH) return;
  goffset n = soup_message_headers_get_content_length(h);
  const char* path = g_uri_get_path(soup_server_message_get_uri(msg));
  goffset limit = !strcmp(path, "/v1/voices") ? goffset(s->cfg.max_upload) : goffset(s->cfg.max_input * 4 + 4096);
  if (n > limit) {
    soup_message_headers_replace(soup_server_message_get_response_headers(msg), "Connection", "close");
    reply_error(s, msg, path, 413, "request body of " + std::to_string(n) + " bytes; the limit is " +
                std::to_string(limit), "request_too_large");
  }
}

void on_request_started(SoupServer*, SoupServerMessage* msg, gpointer d) {
  g_signal_connect(msg, "got-headers", G_CALLBACK(on_got_headers), d);
}

// ---- WebSocket: text in as it comes, audio out as it is made ---------------------------------------
//
// First message (text): {"model": ..., "voice": ..., "response_format": "pcm"} (the speech fields
// without input). Then text messages: {"text": "..."} (any number) and {"type": "end"}. Text is
// handed to the pipeline a sentence at a time (at . ! ? ; : or a newline followed by a space);
// "end" sends the rest. Out: binary messages (audio as made), then {"type": "done", ...} and a
// normal close; on a failure {"type": "error", "error": {...}} and close code 1011 (1013 when full).

void ws_send_error(Job* j, const std::string& message, const std::string& code) {
  if (!j->ws || soup_websocket_connection_get_state(j->ws) != SOUP_WEBSOCKET_STATE_OPEN) return;
  json e = error_body(message, "server_error", code);
  e["type"] = "error";
  soup_websocket_connection_send_text(j->ws, e.dump(-1, ' ', false, json::error_handler_t::replace).c_str());
}

size_t sentence_cut(const std::string& t) {
  size_t cut = 0;
  for (size_t i = 0; i + 1 < t.size(); ++i) {
    char c = t[i];
    if ((c == '.' || c == '!' || c == '?' || c == ';' || c == ':' || c == '\n') &&
        (t[i + 1] == ' ' || t[i + 1] == '\n' || t[i + 1] == '\t'))
      cut = i + 1;
  }
  return cut;
}

struct WsSession {
  Server* s;
  Job* job = nullptr;  // set once the config message is accepted
  size_t total_chars = 0;
  bool ended = false;
};

void ws_refuse(SoupWebsocketConnection* c, Server* s, int status, const std::string& message, const std::string& code,
               const char* param, gushort close_code) {
  json e = error_body(message, status >= 500 ? "server_error" : "invalid_request_error", code, param);
  e["type"] = "error";
  soup_websocket_connection_send_text(c, e.dump(-1, ' ', false, json::error_handler_t::replace).c_str());
  soup_websocket_connection_close(c, close_code, code.c_str());
  count(s, "/v1/audio/speech/stream", status, code);
}

void on_ws_message_impl(SoupWebsocketConnection* c, gint type, GBytes* message, gpointer d);
void on_ws_message(SoupWebsocketConnection* c, gint type, GBytes* message, gpointer d) {
  try {
    on_ws_message_impl(c, type, message, d);
  } catch (const std::exception& e) {
    g_printerr("chatterbox-server: WebSocket message: internal error: %s\n", e.what());
    if (soup_websocket_connection_get_state(c) == SOUP_WEBSOCKET_STATE_OPEN)
      soup_websocket_connection_close(c, 1011, "internal error");
  }
}
void on_ws_message_impl(SoupWebsocketConnection* c, gint type, GBytes* message, gpointer d) {
  WsSession* ws = static_cast<WsSession*>(d);
  Server* s = ws->s;
  gsize n;
  const char* p = static_cast<const char*>(g_bytes_get_data(message, &n));
  json m;
  try {
    if (type != SOUP_WEBSOCKET_DATA_TEXT) throw std::runtime_error("binary message");
    m = json::parse(std::string(p, n));
  } catch (const std::exception& e) {
    if (ws->job && !ws->job->done) {
      ws_send_error(ws->job, std::string("invalid message: ") + e.what(), "invalid_json");
      finish_job(ws->job, 400, "error");
    } else if (!ws->job) {
      ws_refuse(c, s, 400, std::string("invalid message: ") + e.what(), "invalid_json", nullptr, 1003);
    }
    return;
  }
  if (!ws->job) {
    Job* j = new Job;
    j->srv = s;
    j->endpoint = "/v1/audio/speech/stream";
    j->t_arrive = g_get_monotonic_time();
    Refusal r;
    if (!parse_speech(s, m, j, false, &r)) {
      job_unref(j);
      ws_refuse(c, s, r.status, r.message, r.code, r.param, 1008);
      return;
    }
    if (s->active >= s->cfg.workers && int(s->queue.size()) >= s->cfg.queue) {
      s->m.rejected++;
      job_unref(j);
      ws_refuse(c, s, 503, "the server is at capacity; retry later", "overloaded", nullptr, 1013);
      return;
    }
    j->ws = c;
    g_object_ref(c);
    ws->job = j;
    job_ref(j);  // the session's reference
    admit(s, j);
    soup_websocket_connection_send_text(c, json{{"type", "ready"}}.dump(-1, ' ', false, json::error_handler_t::replace).c_str());
    return;
  }
  Job* j = ws->job;
  if (j->done || ws->ended) return;
  auto t = m.find("text");
  bool end = (m.value("type", "") == "end") || m.value("end", false);
  if (t != m.end()) {
    if (!t->is_string()) {
      ws_send_error(j, "'text' must be a string", "invalid_type");
      finish_job(j, 400, "error");
      return;
    }
    std::string add = t->get<std::string>();
    ws->total_chars += g_utf8_strlen(add.c_str(), -1);
    if (ws->total_chars > s->cfg.max_input * 16) {
      ws_send_error(j, "the session's text exceeds the limit", "input_too_long");
      finish_job(j, 400, "error");
      return;
    }
    j->ws_pending += add;
  }
  if (end) {
    ws->ended = true;
    if (j->running && j->appsrc) {
      std::string rest;
      rest.swap(j->ws_pending);
      if (rest.find_first_not_of(" \t\r\n") != std::string::npos) push_text(j, rest);
      gst_app_src_end_of_stream(GST_APP_SRC(j->appsrc));
    }
    return;
  }
  if (j->running && j->appsrc) {
    size_t cut = sentence_cut(j->ws_pending);
    if (cut) {
      push_text(j, j->ws_pending.substr(0, cut));
      j->ws_pending.erase(0, cut);
    }
  }
}

void on_ws_closed(SoupWebsocketConnection*, gpointer d) {
  WsSession* ws = static_cast<WsSession*>(d);
  if (ws->job) {
    if (!ws->job->done) finish_job(ws->job, 499, "cancelled");
    job_unref(ws->job);
    ws->job = nullptr;
  }
}

void handle_ws(SoupServer*, SoupServerMessage*, const char*, SoupWebsocketConnection* c, gpointer d) {
  Server* s = static_cast<Server*>(d);
  WsSession* ws = new WsSession{s};
  g_object_ref(c);
  g_signal_connect(c, "message", G_CALLBACK(on_ws_message), ws);
  g_signal_connect_data(c, "closed", G_CALLBACK(on_ws_closed), ws,
                        [](gpointer d, GClosure*) { delete static_cast<WsSession*>(d); }, GConnectFlags(0));
  // The connection holds itself until closed.
  g_signal_connect(c, "closed", G_CALLBACK(+[](SoupWebsocketConnection* c, gpointer) { g_object_unref(c); }), nullptr);
}

// ---- configuration ------------------------------------------------------------------------------------

bool parse_listen(const std::string& v, Config* cfg) {
  size_t colon = v.rfind(':');
  if (colon == std::string::npos) return false;
  cfg->host = v.substr(0, colon);
  if (cfg->host.size() > 1 && cfg->host.front() == '[') cfg->host = cfg->host.substr(1, cfg->host.size() - 2);
  char* end = nullptr;
  long port = strtol(v.c_str() + colon + 1, &end, 10);
  if (*end || port < 0 || port > 65535) return false;
  cfg->port = int(port);
  return !cfg->host.empty();
}

ModelConf* model_named(Config* cfg, const std::string& name) {
  for (auto& m : cfg->models)
    if (m.name == name) return &m;
  cfg->models.push_back({name, "", {}});
  return &cfg->models.back();
}

bool load_config_file(const char* path, Config* cfg, std::string* why) {
  GKeyFile* kf = g_key_file_new();
  GError* err = nullptr;
  if (!g_key_file_load_from_file(kf, path, G_KEY_FILE_NONE, &err)) {
    *why = err->message;
    g_clear_error(&err);
    g_key_file_free(kf);
    return false;
  }
  auto get = [&](const char* group, const char* key, std::string* out) {
    gchar* v = g_key_file_get_string(kf, group, key, nullptr);
    if (v) *out = v;
    g_free(v);
    return v != nullptr;
  };
  std::string v;
  bool ok = true;
  if (get("server", "listen", &v) && !parse_listen(v, cfg)) ok = false, *why = "bad listen: " + v;
  get("server", "voices-dir", &cfg->voices_dir);
  if (get("server", "workers", &v)) cfg->workers = atoi(v.c_str());
  if (get("server", "queue", &v)) cfg->queue = atoi(v.c_str());
  if (get("server", "timeout", &v)) cfg->timeout_s = atof(v.c_str());
  if (get("server", "max-input", &v)) cfg->max_input = strtoul(v.c_str(), nullptr, 10);
  if (get("server", "retry-after", &v)) cfg->retry_after_s = atoi(v.c_str());
  gsize ng = 0;
  gchar** groups = g_key_file_get_groups(kf, &ng);
  for (gsize i = 0; i < ng; ++i) {
    if (!g_str_has_prefix(groups[i], "model ")) continue;
    ModelConf* mc = model_named(cfg, groups[i] + 6);
    gsize nk = 0;
    gchar** keys = g_key_file_get_keys(kf, groups[i], &nk, nullptr);
    for (gsize k = 0; k < nk; ++k) {
      get(groups[i], keys[k], &v);
      if (!strcmp(keys[k], "dir")) mc->dir = v;
      else mc->props.push_back({keys[k], v});
    }
    g_strfreev(keys);
  }
  g_strfreev(groups);
  g_key_file_free(kf);
  return ok;
}

}  // namespace

int main(int argc, char** argv) {
  gchar* config_file = nullptr;
  gchar* listen = nullptr;
  gchar** models = nullptr;
  gchar** model_props = nullptr;
  gchar* voices_dir = nullptr;
  gint workers = -1, queue = -1, max_input = -1;
  gdouble timeout = -1;
  GOptionEntry entries[] = {
      {"config", 'c', 0, G_OPTION_ARG_FILENAME, &config_file, "Config file (key file: [server], [model NAME]); flags override it", "FILE"},
      {"listen", 'l', 0, G_OPTION_ARG_STRING, &listen, "Address to listen on (default 127.0.0.1:8000; port 0 picks one)", "HOST:PORT"},
      {"model", 'm', 0, G_OPTION_ARG_STRING_ARRAY, &models, "A model: NAME for the API, DIR as chatterboxtts model-dir takes it (repeatable)", "NAME=DIR"},
      {"model-prop", 0, 0, G_OPTION_ARG_STRING_ARRAY, &model_props, "A chatterboxtts property for one model, e.g. chatterbox:vocoder=hift (repeatable)", "NAME:PROP=VALUE"},
      {"voices-dir", 0, 0, G_OPTION_ARG_FILENAME, &voices_dir, "Where uploaded voices are kept (shared between instances)", "DIR"},
      {"workers", 'w', 0, G_OPTION_ARG_INT, &workers, "Pipelines synthesising at once (default 1)", "N"},
      {"queue", 'q', 0, G_OPTION_ARG_INT, &queue, "Requests that may wait for a worker; more get 503 (default 4)", "N"},
      {"timeout", 't', 0, G_OPTION_ARG_DOUBLE, &timeout, "Per-request time limit in seconds, queueing included (default 120)", "S"},
      {"max-input", 0, 0, G_OPTION_ARG_INT, &max_input, "Longest input in characters (default 4096, as OpenAI)", "N"},
      {nullptr, 0, 0, G_OPTION_ARG_NONE, nullptr, nullptr, nullptr}};
  GOptionContext* ctx = g_option_context_new("- an OpenAI-compatible speech service on the chatterbox elements");
  g_option_context_add_main_entries(ctx, entries, nullptr);
  g_option_context_add_group(ctx, gst_init_get_option_group());
  g_option_context_set_description(ctx,
      "Endpoints: POST /v1/audio/speech, GET /v1/models, GET|POST /v1/voices, GET /health, GET /metrics,\n"
      "WebSocket /v1/audio/speech/stream. See README.md (chatterbox-server).\n");
  GError* err = nullptr;
  if (!g_option_context_parse(ctx, &argc, &argv, &err)) {
    g_printerr("chatterbox-server: %s\n", err->message);
    return 2;
  }
  g_option_context_free(ctx);
  gst_init(nullptr, nullptr);

  Server s;
  std::string why;
  if (config_file && !load_config_file(config_file, &s.cfg, &why)) {
    g_printerr("chatterbox-server: config %s: %s\n", config_file, why.c_str());
    return 2;
  }
  if (listen && !parse_listen(listen, &s.cfg)) {
    g_printerr("chatterbox-server: --listen wants HOST:PORT, got '%s'\n", listen);
    return 2;
  }
  for (gchar** m = models; m && *m; ++m) {
    const char* eq = strchr(*m, '=');
    if (!eq || eq == *m || !eq[1]) {
      g_printerr("chatterbox-server: --model wants NAME=DIR, got '%s'\n", *m);
      return 2;
    }
    model_named(&s.cfg, std::string(*m, eq - *m))->dir = eq + 1;
  }
  for (gchar** m = model_props; m && *m; ++m) {
    const char* colon = strchr(*m, ':');
    const char* eq = colon ? strchr(colon, '=') : nullptr;
    if (!colon || !eq) {
      g_printerr("chatterbox-server: --model-prop wants NAME:PROP=VALUE, got '%s'\n", *m);
      return 2;
    }
    model_named(&s.cfg, std::string(*m, colon - *m))->props.push_back({std::string(colon + 1, eq - colon - 1), eq + 1});
  }
  if (voices_dir) s.cfg.voices_dir = voices_dir;
  if (workers >= 0) s.cfg.workers = workers;
  if (queue >= 0) s.cfg.queue = queue;
  if (timeout >= 0) s.cfg.timeout_s = timeout;
  if (max_input >= 0) s.cfg.max_input = size_t(max_input);
  if (s.cfg.models.empty()) {
    g_printerr("chatterbox-server: no model configured (--model NAME=DIR or a [model NAME] group)\n");
    return 2;
  }
  for (const auto& m : s.cfg.models)
    if (m.dir.empty() || !g_file_test(m.dir.c_str(), G_FILE_TEST_IS_DIR)) {
      g_printerr("chatterbox-server: model '%s': '%s' is not a directory\n", m.name.c_str(), m.dir.c_str());
      return 2;
    }
  if (s.cfg.workers < 1 || s.cfg.queue < 0 || s.cfg.timeout_s <= 0) {
    g_printerr("chatterbox-server: --workers must be >= 1, --queue >= 0, --timeout > 0\n");
    return 2;
  }
  if (!s.cfg.voices_dir.empty()) g_mkdir_with_parents(s.cfg.voices_dir.c_str(), 0755);
  if (!gst_element_factory_find("chatterboxtts")) {
    g_printerr("chatterbox-server: the chatterboxtts element is not installed (GST_PLUGIN_PATH?)\n");
    return 2;
  }

  // One chatterboxtts per model held in READY for the server's life: the
  // elements' model cache keeps weights only while some element holds them,
  // so without this every request would load them afresh. It also checks
  // each model directory before the first request.
  std::vector<GstElement*> keepers;
  for (const auto& m : s.cfg.models) {
    GstElement* pipe = gst_pipeline_new(("keep-" + m.name).c_str());
    GstElement* tts = gst_element_factory_make("chatterboxtts", nullptr);
    gst_bin_add(GST_BIN(pipe), tts);
    g_object_set(tts, "model-dir", m.dir.c_str(), nullptr);
    for (const auto& kv : m.props) gst_util_set_object_arg(G_OBJECT(tts), kv.first.c_str(), kv.second.c_str());
    gint64 t0 = g_get_monotonic_time();
    if (gst_element_set_state(pipe, GST_STATE_READY) == GST_STATE_CHANGE_FAILURE) {
      GstBus* b = gst_element_get_bus(pipe);
      GstMessage* msg = gst_bus_pop_filtered(b, GST_MESSAGE_ERROR);
      GError* e = nullptr;
      if (msg) gst_message_parse_error(msg, &e, nullptr);
      g_printerr("chatterbox-server: model '%s' (%s) does not load: %s\n", m.name.c_str(), m.dir.c_str(),
                 e ? e->message : "chatterboxtts refused READY");
      g_clear_error(&e);
      if (msg) gst_message_unref(msg);
      gst_object_unref(b);
      return 2;
    }
    g_printerr("chatterbox-server: model '%s' loaded in %.2f s\n", m.name.c_str(), (g_get_monotonic_time() - t0) / 1e6);
    keepers.push_back(pipe);
  }

  s.soup = soup_server_new("server-header", "chatterbox-server", nullptr);
  g_signal_connect(s.soup, "request-started", G_CALLBACK(on_request_started), &s);
  soup_server_add_handler(s.soup, nullptr, guarded<handle_default>, &s, nullptr);
  soup_server_add_handler(s.soup, "/v1/audio/speech", guarded<handle_speech>, &s, nullptr);
  soup_server_add_handler(s.soup, "/v1/models", guarded<handle_models>, &s, nullptr);
  soup_server_add_handler(s.soup, "/v1/voices", guarded<handle_voices>, &s, nullptr);
  soup_server_add_handler(s.soup, "/health", guarded<handle_health>, &s, nullptr);
  soup_server_add_handler(s.soup, "/metrics", guarded<handle_metrics>, &s, nullptr);
  soup_server_add_websocket_handler(s.soup, "/v1/audio/speech/stream", nullptr, nullptr, handle_ws, &s, nullptr);
  GSocketAddress* addr = g_inet_socket_address_new_from_string(s.cfg.host.c_str(), guint(s.cfg.port));
  if (!addr) {
    g_printerr("chatterbox-server: '%s' is not an IP address\n", s.cfg.host.c_str());
    return 2;
  }
  if (!soup_server_listen(s.soup, addr, SoupServerListenOptions(0), &err)) {
    g_printerr("chatterbox-server: cannot listen on %s:%d: %s\n", s.cfg.host.c_str(), s.cfg.port, err->message);
    return 1;
  }
  g_object_unref(addr);
  for (GSList* u = soup_server_get_uris(s.soup); u; u = u->next) {
    gchar* str = g_uri_to_string(static_cast<GUri*>(u->data));
    printf("chatterbox-server: listening on %s (models: %s; %d workers, queue %d; formats: %s)\n", str,
           model_list(s.cfg).c_str(), s.cfg.workers, s.cfg.queue, format_list().c_str());
    g_free(str);
  }
  fflush(stdout);
  s.loop = g_main_loop_new(nullptr, FALSE);
  auto quit = [](gpointer d) -> gboolean {
    g_main_loop_quit(static_cast<GMainLoop*>(d));
    return G_SOURCE_REMOVE;
  };
  g_unix_signal_add(SIGTERM, quit, s.loop);
  g_unix_signal_add(SIGINT, quit, s.loop);
  g_main_loop_run(s.loop);
  // Shutdown: stop listening, cancel what runs or waits, wait for the
  // pipelines to reach NULL (no streaming thread outlives main).
  g_printerr("chatterbox-server: stopping (%d running, %zu queued)\n", s.active, s.queue.size());
  soup_server_disconnect(s.soup);
  while (!s.queue.empty()) finish_job(s.queue.front(), 503, "cancelled");
  while (!s.running.empty()) finish_job(s.running.front(), 503, "cancelled");
  for (int i = 0; i < 500 && g_teardowns.load() > 0; ++i) g_usleep(10000);
  while (g_main_context_iteration(nullptr, FALSE)) {
  }
  for (GstElement* k : keepers) {
    gst_element_set_state(k, GST_STATE_NULL);
    gst_object_unref(k);
  }
  return 0;
}
