#include "gst-plugins/core/mel_format.h"

#include <nlohmann/json.hpp>

#include <cmath>
#include <sstream>

namespace chatterbox {

MelFormat MelFormat::s3gen() { return MelFormat{}; }

MelFormat MelFormat::vocos() {
  MelFormat f;
  f.rate = 24000;
  f.n_mels = 100;
  f.hop_length = 256;
  f.n_fft = 1024;
  f.win_length = 1024;
  f.f_min = 0.0;
  f.f_max = 12000.0;
  f.padding = "center";
  f.power = 1;
  f.mel_scale = "htk";
  f.norm = "none";
  f.log_floor = 1e-7;
  f.mag_eps = 0.0;
  return f;
}

namespace {
bool same(double a, double b) { return std::fabs(a - b) <= 1e-9 * std::max(1.0, std::fabs(a)); }
template <typename T>
std::string str(T v) {
  std::ostringstream os;
  os << v;
  return os.str();
}
}  // namespace

bool MelFormat::operator==(const MelFormat& o) const { return mismatch(o).empty(); }

std::string MelFormat::mismatch(const MelFormat& offered) const {
  std::string out;
  auto field = [&](const char* name, const std::string& want, const std::string& got, bool equal) {
    if (equal) return;
    if (!out.empty()) out += "; ";
    out += std::string("model expects ") + name + "=" + want + ", upstream offers " + got;
  };
  field("rate", str(rate), str(offered.rate), rate == offered.rate);
  field("n-mels", str(n_mels), str(offered.n_mels), n_mels == offered.n_mels);
  field("hop-length", str(hop_length), str(offered.hop_length), hop_length == offered.hop_length);
  field("n-fft", str(n_fft), str(offered.n_fft), n_fft == offered.n_fft);
  field("win-length", str(win_length), str(offered.win_length), win_length == offered.win_length);
  field("f-min", str(f_min), str(offered.f_min), same(f_min, offered.f_min));
  field("f-max", str(f_max), str(offered.f_max), same(f_max, offered.f_max));
  field("padding", padding, offered.padding, padding == offered.padding);
  field("power", str(power), str(offered.power), power == offered.power);
  field("mel-scale", mel_scale, offered.mel_scale, mel_scale == offered.mel_scale);
  field("norm", norm, offered.norm, norm == offered.norm);
  field("log-floor", str(log_floor), str(offered.log_floor), same(log_floor, offered.log_floor));
  field("mag-eps", str(mag_eps), str(offered.mag_eps), same(mag_eps, offered.mag_eps));
  return out;
}

std::string MelFormat::to_string() const {
  std::ostringstream os;
  os << "rate=" << rate << " n-mels=" << n_mels << " hop-length=" << hop_length << " n-fft=" << n_fft
     << " win-length=" << win_length << " f-min=" << f_min << " f-max=" << f_max << " padding=" << padding
     << " power=" << power << " mel-scale=" << mel_scale << " norm=" << norm << " log-floor=" << log_floor
     << " mag-eps=" << mag_eps;
  return os.str();
}

nlohmann::json MelFormat::to_json() const {
  return {{"rate", rate},           {"n_mels", n_mels},     {"hop_length", hop_length}, {"n_fft", n_fft},
          {"win_length", win_length}, {"f_min", f_min},     {"f_max", f_max},           {"padding", padding},
          {"power", power},         {"mel_scale", mel_scale}, {"norm", norm},           {"log_floor", log_floor},
          {"mag_eps", mag_eps}};
}

MelFormat MelFormat::from_json(const nlohmann::json& j, const MelFormat& base) {
  MelFormat f = base;
  auto get = [&](const char* k, auto& dst) {
    if (j.contains(k) && !j[k].is_null()) dst = j[k].get<std::decay_t<decltype(dst)>>();
  };
  get("rate", f.rate);
  get("sample_rate", f.rate);
  get("n_mels", f.n_mels);
  get("hop_length", f.hop_length);
  get("n_fft", f.n_fft);
  get("win_length", f.win_length);
  get("f_min", f.f_min);
  get("f_max", f.f_max);
  get("padding", f.padding);
  get("power", f.power);
  get("mel_scale", f.mel_scale);
  get("norm", f.norm);
  get("log_floor", f.log_floor);
  get("mag_eps", f.mag_eps);
  return f;
}

}  // namespace chatterbox
