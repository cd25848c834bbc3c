#include "elements/voice/audio/audio_file.h"

#include "elements/voice/audio/resample.h"
#include "gst-plugins/core/checkpoint.h"

#include <ATen/ATen.h>
#include <sndfile.h>

#include <vector>

namespace chatterbox::voice {

Audio read_audio_mono(const std::string& path) {
  SF_INFO info{};
  SNDFILE* f = sf_open(path.c_str(), SFM_READ, &info);
  if (!f) throw ModelError("audio file '" + path + "' cannot be read: " + sf_strerror(nullptr));
  const int64_t ch = info.channels, frames = info.frames;
  if (ch <= 0 || frames <= 0 || info.samplerate <= 0) {
    sf_close(f);
    throw ModelError("audio file '" + path + "' holds no samples");
  }
  std::vector<float> inter(static_cast<size_t>(frames * ch));
  const sf_count_t got = sf_readf_float(f, inter.data(), frames);
  sf_close(f);
  if (got <= 0) throw ModelError("audio file '" + path + "': no samples could be decoded");
  at::Tensor mono = at::empty({got}, at::kFloat);
  float* m = mono.data_ptr<float>();
  for (sf_count_t i = 0; i < got; ++i) {
    // np.mean over channels in float32: the sum in order, then / channels.
    float acc = 0.0f;
    for (int64_t c = 0; c < ch; ++c) acc += inter[static_cast<size_t>(i * ch + c)];
    m[i] = ch == 1 ? acc : acc / static_cast<float>(ch);
  }
  return {mono, info.samplerate};
}

at::Tensor load_audio(const std::string& path, int64_t rate) {
  Audio a = read_audio_mono(path);
  return resample_soxr_hq(a.samples, a.rate, rate);
}

}  // namespace chatterbox::voice
