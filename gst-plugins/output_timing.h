// Where the output of a stream-converting element lies in time: the upstream
// TIME segment is forwarded (a BYTES segment, e.g. from filesrc, becomes a
// TIME segment from 0), each utterance is anchored at its first input
// buffer's PTS (or follows on from the previous output), and an output
// buffer is stamped by the index of its first unit (sample, frame) within
// the utterance, so buffer sizes never add rounding drift.
#pragma once

#include <gst/gst.h>

#include <cstdint>

namespace chatterbox {

class OutputTiming {
 public:
  OutputTiming() { start(); }

  void start();                          // READY -> PAUSED
  void flush();                          // FLUSH_STOP: a new segment is owed, time restarts
  void set_segment(GstEvent* segment);   // SEGMENT event (not consumed)
  void push_segment(GstPad* srcpad);     // pushes the owed segment, if any
  // Anchors a new utterance at `first` (its first input buffer).
  void begin_utterance(GstBuffer* first);
  // Stamps PTS/DURATION/OFFSET(_END) of `buf`, holding units [first, first+n)
  // of the utterance at `units_num / units_den` units per second; DISCONT on
  // the first buffer of an utterance.
  void stamp(GstBuffer* buf, int64_t first, int64_t n, int64_t units_num, int64_t units_den);

 private:
  GstSegment segment_;
  bool segment_pending_ = true;
  GstClockTime utterance_pts_ = 0;
  GstClockTime next_pts_ = GST_CLOCK_TIME_NONE;  // end of the last stamped buffer
};

}  // namespace chatterbox
