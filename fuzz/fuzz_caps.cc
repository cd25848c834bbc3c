// libFuzzer harness: the mel caps contract. The input is a caps string;
// whatever GStreamer parses it to goes through mel_format_from_caps and
// explain_mel_caps_mismatch, and a format that is accepted is turned back
// into caps and must read back the same.
#include "gst-plugins/caps.h"

#include <cstdio>
#include <cstdlib>
#include <string>

using namespace chatterbox;

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  gst_init(nullptr, nullptr);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string s(reinterpret_cast<const char*>(data), size);  // NUL-terminated copy
  GstCaps* caps = gst_caps_from_string(s.c_str());
  if (!caps) return 0;
  MelFormat f;
  std::string why;
  const bool ok = mel_format_from_caps(caps, &f, &why);
  if (!ok && why.empty()) {
    std::fprintf(stderr, "FUZZ FINDING: caps refused without a reason: %s\n", s.c_str());
    std::abort();
  }
  (void)explain_mel_caps_mismatch(MelFormat::s3gen(), caps);
  (void)explain_mel_caps_mismatch(MelFormat::vocos(), caps);
  if (ok) {
    GstCaps* back = mel_format_to_caps(f);
    MelFormat g;
    std::string why2;
    if (!mel_format_from_caps(back, &g, &why2)) {
      std::fprintf(stderr, "FUZZ FINDING: accepted format does not round-trip: %s\n", why2.c_str());
      std::abort();
    }
    if (g != f) {
      std::fprintf(stderr, "FUZZ FINDING: accepted format reads back different: %s\n", s.c_str());
      std::abort();
    }
    gst_caps_unref(back);
  }
  gst_caps_unref(caps);
  return 0;
}
