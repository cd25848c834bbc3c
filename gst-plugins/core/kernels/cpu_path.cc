#include "gst-plugins/core/kernels/cpu_path.h"

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>

namespace chatterbox::kernels {

CpuPath detected_cpu_path() {
#if defined(__x86_64__) && defined(__GNUC__)
  static const CpuPath detected = [] {
    __builtin_cpu_init();
    const bool fma = __builtin_cpu_supports("fma");
    if (fma && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl")) {
      if (__builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vnni"))
        return CpuPath::Avx512Vnni;
      return CpuPath::Avx512;
    }
    if (fma && __builtin_cpu_supports("avx2")) return CpuPath::Avx2;
    return CpuPath::Generic;
  }();
  return detected;
#else
  return CpuPath::Generic;
#endif
}

const char* cpu_path_name(CpuPath p) {
  switch (p) {
    case CpuPath::Avx512Vnni: return "avx512vnni";
    case CpuPath::Avx512: return "avx512";
    case CpuPath::Avx2: return "avx2";
    default: return "generic";
  }
}

CpuPath cpu_path() {
  static const CpuPath path = [] {
    const CpuPath detected = detected_cpu_path();
    const char* e = std::getenv("CHATTERBOX_CPU");
    if (!e || !*e) return detected;
    CpuPath asked;
    if (std::strcmp(e, "generic") == 0)
      asked = CpuPath::Generic;
    else if (std::strcmp(e, "avx2") == 0)
      asked = CpuPath::Avx2;
    else if (std::strcmp(e, "avx512") == 0)
      asked = CpuPath::Avx512;
    else if (std::strcmp(e, "avx512vnni") == 0)
      asked = CpuPath::Avx512Vnni;
    else {
      std::fprintf(stderr, "chatterbox: ignoring CHATTERBOX_CPU=%s (use generic, avx2, avx512 or avx512vnni); kernels: %s\n", e,
                   cpu_path_name(detected));
      return detected;
    }
    if (static_cast<int>(asked) > static_cast<int>(detected)) {
      std::fprintf(stderr, "chatterbox: CHATTERBOX_CPU=%s asks for more than this CPU has; kernels: %s\n", e,
                   cpu_path_name(detected));
      return detected;
    }
    return asked;
  }();
  return path;
}

std::string cpu_description() {
  std::string model = "unknown CPU";
  std::ifstream in("/proc/cpuinfo");
  for (std::string line; std::getline(in, line);) {
    if (line.rfind("model name", 0) == 0) {
      const auto colon = line.find(':');
      if (colon != std::string::npos) model = line.substr(line.find_first_not_of(' ', colon + 1));
      break;
    }
  }
  return model + " (kernels: " + cpu_path_name(cpu_path()) + ", detected " + cpu_path_name(detected_cpu_path()) + ")";
}

}  // namespace chatterbox::kernels
