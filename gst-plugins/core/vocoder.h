// The library-side contract of a mel vocoder (Vocos, HiFT): a stateful
// streaming wrapper that the GstMelVocoder element base class drives, and
// that applications can use without GStreamer.
//
// Streaming rule: for any split of an utterance's frames into feed() calls,
// the concatenation of everything feed() and drain() return equals the
// whole-utterance output (within float32 tolerance) when lookahead_frames()
// is at its default (the model's full right receptive field).
#pragma once

#include "gst-plugins/core/mel_format.h"

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <string>

namespace chatterbox {

class StreamingVocoder {
 public:
  virtual ~StreamingVocoder() = default;

  // The features the model was trained on (what the sink caps must carry).
  virtual const MelFormat& mel_format() const = 0;
  virtual int sample_rate() const { return mel_format().rate; }
  virtual const char* name() const = 0;  // "vocos", "hift"

  // Right context (frames) the model needs before a sample is final; the
  // default is the full receptive field. Smaller values trade exactness for
  // latency (the bench publishes the error).
  virtual int64_t default_lookahead_frames() const = 0;
  virtual int64_t lookahead_frames() const = 0;
  virtual void set_lookahead_frames(int64_t frames) = 0;

  // Feeds frames [T, n_mels] (frame-major float32, the caps layout; T may be
  // 0). Returns the samples that became final, 1-D float32 (possibly empty).
  virtual at::Tensor feed(const at::Tensor& frames) = 0;
  // End of utterance: returns every remaining sample. The total over feed()
  // and drain() is the whole-utterance length (e.g. T*hop for "same"
  // padding, (T-1)*hop for "center"). Resets for the next utterance.
  virtual at::Tensor drain() = 0;
  // Forgets the current utterance (flush, DISCONT) without output.
  virtual void reset() = 0;

  // Samples already returned for the current utterance.
  virtual int64_t samples_out() const = 0;
  // Frames fed for the current utterance.
  virtual int64_t frames_in() const = 0;

  // Whole utterance in one call: mel [B, n_mels, T] -> audio [B, samples]
  // (the reference's layout; used by parity tests and the bench).
  virtual at::Tensor forward(const at::Tensor& mel) = 0;
};

}  // namespace chatterbox
