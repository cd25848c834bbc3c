// The complete description of a log-mel feature layout: every field that
// changes the meaning of a number. Carried in `audio/x-mel-spectrogram` caps;
// models state the layout they expect, and a mismatch is explained in words.
//
// No GStreamer here (caps conversion lives in gst-plugins/caps.h).
#pragma once

#include <nlohmann/json_fwd.hpp>

#include <string>

namespace chatterbox {

struct MelFormat {
  int rate = 24000;         // audio sample rate (Hz)
  int n_mels = 80;
  int hop_length = 480;
  int n_fft = 1920;
  int win_length = 1920;
  double f_min = 0.0;
  double f_max = 8000.0;
  // Frame placement. "center": torch.stft(center=True), T = 1 + N/hop, frame t
  // centred on sample t*hop. "same": reflect-pad (n_fft-hop)/2 both sides,
  // center=False, T = N/hop, frame t covers samples [t*hop, (t+1)*hop).
  std::string padding = "same";
  int power = 1;                 // 1: magnitude, 2: power
  std::string mel_scale = "slaney";  // "slaney" | "htk"
  std::string norm = "slaney";       // "slaney" | "none"
  double log_floor = 1e-5;           // ln(max(x, floor))
  double mag_eps = 1e-9;             // sqrt(re^2 + im^2 + eps) (S3Gen); 0 = plain |X|

  // Chatterbox S3Gen (s3gen/utils/mel.py): 80 mels, hop 480, n_fft 1920, 0-8 kHz.
  static MelFormat s3gen();
  // Vocos MelSpectrogramFeatures (charactr/vocos-mel-24khz): 100 mels, hop 256.
  static MelFormat vocos();

  // Samples of audio per frame and the frame rate.
  double frame_duration_s() const { return static_cast<double>(hop_length) / rate; }

  bool operator==(const MelFormat& o) const;
  bool operator!=(const MelFormat& o) const { return !(*this == o); }

  // "" when `offered` can feed a model that expects *this; otherwise one
  // sentence per differing field, e.g. "model expects n-mels=100, upstream
  // offers 80".
  std::string mismatch(const MelFormat& offered) const;

  std::string to_string() const;  // "n-mels=80 rate=24000 hop-length=480 ..."
  nlohmann::json to_json() const;
  // Missing keys keep the defaults of `base`.
  static MelFormat from_json(const nlohmann::json& j, const MelFormat& base);
};

}  // namespace chatterbox
