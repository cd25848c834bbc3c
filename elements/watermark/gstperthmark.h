// perthmark: embeds Resemble AI's Perth implicit watermark (PerthNet, as the
// resemble-perth package's PerthImplicitWatermarker.apply_watermark) in
// audio/x-raw F32LE mono at any rate; the output has the input's caps and
// exactly its number of samples.
//
// mode=utterance (default) is upstream's exact mark: each utterance (ended by
// a DISCONT buffer, the chatterbox/utterance-end event or EOS) is held and
// marked whole, so the latency is the utterance's length (reported: the
// longest utterance so far, with a latency message when it grows).
// mode=stream marks as the audio arrives, with ~0.35 s of look-ahead; it
// differs from the exact mark only where quiet frames precede the loudest
// one (its mask uses the loudest frame so far); see the README.
#pragma once

#include <gst/gst.h>

G_BEGIN_DECLS
#define GST_TYPE_PERTH_MARK (gst_perth_mark_get_type())
G_DECLARE_FINAL_TYPE(GstPerthMark, gst_perth_mark, GST, PERTH_MARK, GstElement)
#define GST_TYPE_PERTH_MARK_MODE (gst_perth_mark_mode_get_type())
GType gst_perth_mark_mode_get_type(void);
G_END_DECLS
