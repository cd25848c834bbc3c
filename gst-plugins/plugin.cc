// The `chatterbox` GStreamer plugin: neural text-to-speech elements.
#include "gst-plugins/elements.h"

#ifndef PACKAGE
#define PACKAGE "gst-chatterbox"
#endif

static gboolean plugin_init(GstPlugin* plugin) {
  gboolean ok = TRUE;
  ok &= GST_ELEMENT_REGISTER(melspec, plugin);
  ok &= GST_ELEMENT_REGISTER(vocosdec, plugin);
  ok &= GST_ELEMENT_REGISTER(hiftdec, plugin);
  ok &= GST_ELEMENT_REGISTER(s3genmel, plugin);
  ok &= GST_ELEMENT_REGISTER(chatterboxvocoder, plugin);
  ok &= GST_ELEMENT_REGISTER(chatterboxtts, plugin);
  ok &= GST_ELEMENT_REGISTER(t3, plugin);
  ok &= GST_ELEMENT_REGISTER(s3tokenizer, plugin);
  ok &= GST_ELEMENT_REGISTER(perthmark, plugin);
  ok &= GST_ELEMENT_REGISTER(perthdetect, plugin);
  return ok;
}

GST_PLUGIN_DEFINE(GST_VERSION_MAJOR, GST_VERSION_MINOR, chatterbox,
                  "Chatterbox text-to-speech (T3, S3Gen) with Vocos and HiFT vocoders, as pipeline elements",
                  plugin_init, CHATTERBOX_VERSION, "MIT", "gst-chatterbox", "https://github.com/gst-chatterbox/gst-chatterbox")
