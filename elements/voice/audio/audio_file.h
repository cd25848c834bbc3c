// librosa.load(path, sr=rate) as prepare_conditionals calls it: libsndfile
// reads the file as float32 (integer PCM divided by 2^(bits-1), so int16 /
// 32768 as soundfile gives), channels averaged in float32 (librosa.to_mono),
// then resample_soxr_hq to `rate` when the file's rate differs.
//
// No GStreamer here: part of libchatterbox.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <string>

namespace chatterbox::voice {

struct Audio {
  at::Tensor samples;  // 1-D float32
  int64_t rate = 0;
};

// Any format libsndfile reads (WAV, FLAC, Ogg, ...), as stored; ModelError
// naming the file when it cannot be read or holds no samples.
Audio read_audio_mono(const std::string& path);
// read_audio_mono, then resampled to `rate` (soxr HQ) when needed.
at::Tensor load_audio(const std::string& path, int64_t rate);

}  // namespace chatterbox::voice
