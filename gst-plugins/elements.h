// Registration entry points of every element of the chatterbox plugin.
#pragma once

#include <gst/gst.h>

G_BEGIN_DECLS
GST_ELEMENT_REGISTER_DECLARE(vocosdec);
GST_ELEMENT_REGISTER_DECLARE(hiftdec);
GST_ELEMENT_REGISTER_DECLARE(melspec);
GST_ELEMENT_REGISTER_DECLARE(s3genmel);
GST_ELEMENT_REGISTER_DECLARE(chatterboxvocoder);
GST_ELEMENT_REGISTER_DECLARE(chatterboxtts);
GST_ELEMENT_REGISTER_DECLARE(t3);
GST_ELEMENT_REGISTER_DECLARE(perthmark);
GST_ELEMENT_REGISTER_DECLARE(perthdetect);
G_END_DECLS
