// Properties that name what an element loads when it goes to READY (model
// files, voice, device, precision) cannot take effect later: the weights are
// already in memory. Setting one then is refused with a bus warning rather
// than accepted and silently ignored. Every element of the plugin uses these
// two helpers so the rule and the message are the same everywhere.
#pragma once

#include <gst/gst.h>

namespace chatterbox {

// True in NULL with no state change under way: load-time properties may
// change. Read under the object lock where the caller holds it.
inline bool element_is_stopped(GstElement* element) {
  return GST_STATE(element) == GST_STATE_NULL && GST_STATE_PENDING(element) == GST_STATE_VOID_PENDING;
}

// The warning for a load-time property set after loading (call without the
// object lock: posting takes it).
inline void warn_load_time_property(GstElement* element, const GParamSpec* pspec) {
  GST_ELEMENT_WARNING(element, LIBRARY, SETTINGS,
                      ("'%s' can only change in the NULL state: ignored (the model is loaded)", pspec->name),
                      ("set it before the pipeline starts, or set the element to NULL first"));
}

}  // namespace chatterbox
