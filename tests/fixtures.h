// Where the golden fixtures live: $CHATTERBOX_FIXTURES, else ../shared/fixtures
// beside the checkout (baked in at configure time). Missing fixtures fail the
// test loudly; they are never skipped.
#pragma once

#include <cstdlib>
#include <fstream>
#include <stdexcept>
#include <string>

namespace chatterbox::test {

inline std::string fixtures_dir() {
  if (const char* env = std::getenv("CHATTERBOX_FIXTURES")) return env;
  return CHATTERBOX_FIXTURES_DIR;
}

// Full path of a fixture file; throws (failing the test) when it is absent.
inline std::string fixture(const std::string& rel) {
  std::string p = fixtures_dir() + "/" + rel;
  if (!std::ifstream(p).good())
    throw std::runtime_error("fixture '" + p + "' is missing: the tests need ../shared/fixtures beside the checkout "
                             "(or CHATTERBOX_FIXTURES pointing at it)");
  return p;
}

}  // namespace chatterbox::test
