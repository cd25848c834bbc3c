// Small helpers shared by the Boost.Test suites.
#pragma once

#include "gst-plugins/core/checkpoint.h"

#include <fstream>
#include <functional>
#include <sstream>
#include <string>

namespace chatterbox::test {

inline bool contains(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

// The whole file as bytes ("" when unreadable).
inline std::string slurp(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

// The ModelError message `f` throws, or "" when it throws none.
inline std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const ModelError& e) {
    return e.what();
  }
  return "";
}

}  // namespace chatterbox::test
