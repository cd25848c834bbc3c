#include "gst-plugins/output_timing.h"

namespace chatterbox {

void OutputTiming::start() {
  gst_segment_init(&segment_, GST_FORMAT_UNDEFINED);
  segment_pending_ = true;
  utterance_pts_ = 0;
  next_pts_ = GST_CLOCK_TIME_NONE;
}

void OutputTiming::flush() {
  segment_pending_ = true;
  next_pts_ = GST_CLOCK_TIME_NONE;
}

void OutputTiming::set_segment(GstEvent* segment) {
  gst_event_copy_segment(segment, &segment_);
  segment_pending_ = true;
}

void OutputTiming::push_segment(GstPad* srcpad) {
  if (!segment_pending_) return;
  GstSegment seg;
  if (segment_.format == GST_FORMAT_TIME)
    gst_segment_copy_into(&segment_, &seg);
  else
    gst_segment_init(&seg, GST_FORMAT_TIME);
  gst_pad_push_event(srcpad, gst_event_new_segment(&seg));
  segment_pending_ = false;
}

void OutputTiming::begin_utterance(GstBuffer* first) {
  if (segment_.format == GST_FORMAT_TIME && first && GST_BUFFER_PTS_IS_VALID(first))
    utterance_pts_ = GST_BUFFER_PTS(first);
  else
    utterance_pts_ = GST_CLOCK_TIME_IS_VALID(next_pts_) ? next_pts_ : 0;
}

void OutputTiming::stamp(GstBuffer* buf, int64_t first, int64_t n, int64_t units_num, int64_t units_den) {
  const GstClockTime start = utterance_pts_ + gst_util_uint64_scale(first * units_den, GST_SECOND, units_num);
  const GstClockTime end = utterance_pts_ + gst_util_uint64_scale((first + n) * units_den, GST_SECOND, units_num);
  GST_BUFFER_PTS(buf) = start;
  GST_BUFFER_DURATION(buf) = end - start;
  GST_BUFFER_OFFSET(buf) = first;
  GST_BUFFER_OFFSET_END(buf) = first + n;
  if (first == 0) GST_BUFFER_FLAG_SET(buf, GST_BUFFER_FLAG_DISCONT);
  next_pts_ = end;
}

}  // namespace chatterbox
