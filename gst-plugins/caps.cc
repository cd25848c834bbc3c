#include "gst-plugins/caps.h"

#include <cmath>
#include <sstream>

namespace chatterbox {

GstCaps* mel_format_to_caps(const MelFormat& f) {
  return gst_caps_new_simple(CHATTERBOX_MEL_MEDIA_TYPE,
      "format", G_TYPE_STRING, "F32LE",
      "layout", G_TYPE_STRING, "frame-major",
      "log", G_TYPE_STRING, "ln",
      "rate", G_TYPE_INT, f.rate,
      "n-mels", G_TYPE_INT, f.n_mels,
      "hop-length", G_TYPE_INT, f.hop_length,
      "n-fft", G_TYPE_INT, f.n_fft,
      "win-length", G_TYPE_INT, f.win_length,
      "f-min", G_TYPE_DOUBLE, f.f_min,
      "f-max", G_TYPE_DOUBLE, f.f_max,
      "padding", G_TYPE_STRING, f.padding.c_str(),
      "power", G_TYPE_INT, f.power,
      "mel-scale", G_TYPE_STRING, f.mel_scale.c_str(),
      "norm", G_TYPE_STRING, f.norm.c_str(),
      "log-floor", G_TYPE_DOUBLE, f.log_floor,
      "mag-eps", G_TYPE_DOUBLE, f.mag_eps,
      nullptr);
}

namespace {
bool get_int(const GstStructure* s, const char* k, int* v, std::string* why) {
  if (gst_structure_get_int(s, k, v)) return true;
  *why = std::string("mel caps lack an integer field '") + k + "'";
  return false;
}
bool get_double(const GstStructure* s, const char* k, double* v, std::string* why) {
  if (gst_structure_get_double(s, k, v)) {
    // "1e705" parses to infinity, which GStreamer's serialiser does not write
    // back as a number: no feature recipe has a non-finite parameter.
    if (std::isfinite(*v)) return true;
    *why = std::string("mel caps field '") + k + "' is not a finite number";
    return false;
  }
  int i = 0;
  if (gst_structure_get_int(s, k, &i)) {  // accept "f-max=8000" written as an int
    *v = i;
    return true;
  }
  *why = std::string("mel caps lack a number field '") + k + "'";
  return false;
}
bool get_string(const GstStructure* s, const char* k, std::string* v, std::string* why) {
  const char* x = gst_structure_get_string(s, k);
  if (x) {
    *v = x;
    return true;
  }
  *why = std::string("mel caps lack a string field '") + k + "'";
  return false;
}
}  // namespace

bool mel_format_from_caps(const GstCaps* caps, MelFormat* out, std::string* why) {
  if (!caps || gst_caps_get_size(caps) < 1) {
    *why = "no caps";
    return false;
  }
  const GstStructure* s = gst_caps_get_structure(caps, 0);
  if (!gst_structure_has_name(s, CHATTERBOX_MEL_MEDIA_TYPE)) {
    *why = std::string("expected ") + CHATTERBOX_MEL_MEDIA_TYPE + ", got " + gst_structure_get_name(s);
    return false;
  }
  std::string fmt, layout, log;
  if (!get_string(s, "format", &fmt, why)) return false;
  if (fmt != "F32LE") {
    *why = "mel caps format must be F32LE, got " + fmt;
    return false;
  }
  if (get_string(s, "layout", &layout, why) && layout != "frame-major") {
    *why = "mel caps layout must be frame-major, got " + layout;
    return false;
  }
  if (get_string(s, "log", &log, why) && log != "ln") {
    *why = "mel caps log must be ln (natural log), got " + log;
    return false;
  }
  MelFormat f;
  return get_int(s, "rate", &f.rate, why) && get_int(s, "n-mels", &f.n_mels, why) &&
         get_int(s, "hop-length", &f.hop_length, why) && get_int(s, "n-fft", &f.n_fft, why) &&
         get_int(s, "win-length", &f.win_length, why) && get_double(s, "f-min", &f.f_min, why) &&
         get_double(s, "f-max", &f.f_max, why) && get_string(s, "padding", &f.padding, why) &&
         get_int(s, "power", &f.power, why) && get_string(s, "mel-scale", &f.mel_scale, why) &&
         get_string(s, "norm", &f.norm, why) && get_double(s, "log-floor", &f.log_floor, why) &&
         get_double(s, "mag-eps", &f.mag_eps, why) && (*out = f, true);
}

std::string explain_caps_mismatch(const GstCaps* want, const GstCaps* offered, const char* subject) {
  std::string out;
  if (want && !gst_caps_is_empty(want) && offered && !gst_caps_is_empty(offered) &&
      !gst_caps_can_intersect(want, offered)) {
    // Name each field whose offered values exclude the wanted ones.
    const GstStructure* w = gst_caps_get_structure(want, 0);
    std::ostringstream os;
    for (guint i = 0; i < gst_caps_get_size(offered); ++i) {
      const GstStructure* o = gst_caps_get_structure(offered, i);
      if (!gst_structure_has_name(o, gst_structure_get_name(w))) {
        os << (os.tellp() > 0 ? "; " : "") << "upstream offers " << gst_structure_get_name(o) << ", not "
           << gst_structure_get_name(w);
        continue;
      }
      for (gint n = 0; n < gst_structure_n_fields(w); ++n) {
        const char* field = gst_structure_nth_field_name(w, n);
        const GValue* ov = gst_structure_get_value(o, field);
        if (!ov) continue;
        GValue dummy = G_VALUE_INIT;
        if (gst_value_intersect(&dummy, gst_structure_get_value(w, field), ov)) {
          g_value_unset(&dummy);
          continue;
        }
        gchar* wv = gst_value_serialize(gst_structure_get_value(w, field));
        gchar* gv = gst_value_serialize(ov);
        os << (os.tellp() > 0 ? "; " : "") << subject << " expects " << field << "=" << wv << ", upstream offers " << gv;
        g_free(wv);
        g_free(gv);
      }
    }
    out = os.str();
    if (out.empty()) out = std::string("upstream caps do not intersect what the ") + subject + " expects";
  }
  return out;
}

std::string explain_mel_caps_mismatch(const MelFormat& expected, const GstCaps* offered) {
  GstCaps* want = mel_format_to_caps(expected);
  std::string out = explain_caps_mismatch(want, offered, "model");
  gst_caps_unref(want);
  return out;
}

GstCaps* query_upstream_caps(GstPad* sinkpad) {
  GstQuery* q = gst_query_new_caps(nullptr);
  GstCaps* result = nullptr;
  if (gst_pad_peer_query(sinkpad, q)) {
    GstCaps* caps = nullptr;
    gst_query_parse_caps_result(q, &caps);
    if (caps && !gst_caps_is_any(caps)) result = gst_caps_ref(caps);
  }
  gst_query_unref(q);
  return result;
}

gboolean accept_caps_within_template(GstPad* pad, GstQuery* query) {
  GstCaps* caps;
  gst_query_parse_accept_caps(query, &caps);
  GstCaps* templ = gst_pad_get_pad_template_caps(pad);
  gst_query_set_accept_caps_result(query, gst_caps_is_subset(caps, templ));
  gst_caps_unref(templ);
  return TRUE;
}

GstCaps* audio_caps(int rate) {
  return gst_caps_new_simple("audio/x-raw", "format", G_TYPE_STRING, "F32LE", "layout", G_TYPE_STRING,
                             "interleaved", "channels", G_TYPE_INT, 1, "rate", G_TYPE_INT, rate, nullptr);
}

bool answer_caps_query(GstQuery* query, GstCaps* caps) {
  GstCaps* filter;
  gst_query_parse_caps(query, &filter);
  bool excluded = false;
  if (filter) {
    GstCaps* both = gst_caps_intersect_full(filter, caps, GST_CAPS_INTERSECT_FIRST);
    excluded = gst_caps_is_empty(both) && !gst_caps_is_empty(caps);
    gst_caps_unref(caps);
    caps = both;
  }
  gst_query_set_caps_result(query, caps);
  gst_caps_unref(caps);
  return excluded;
}

gboolean answer_latency_query(GstPad* sinkpad, GstQuery* query, GstClockTime ours, bool bounded) {
  if (!gst_pad_peer_query(sinkpad, query)) return FALSE;
  gboolean live;
  GstClockTime min, max;
  gst_query_parse_latency(query, &live, &min, &max);
  max = bounded && GST_CLOCK_TIME_IS_VALID(max) ? max + ours : GST_CLOCK_TIME_NONE;
  gst_query_set_latency(query, live, min + ours, max);
  return TRUE;
}

}  // namespace chatterbox
