// Shared by the libFuzzer harnesses. The contract each harness checks: a
// parser either returns a usable result or throws chatterbox::ModelError (the
// documented failure type, whose what() the elements post as their error).
// Anything else -- a sanitizer report, a signal, or an escaping exception of
// another type (std::out_of_range, nlohmann::json::type_error, c10::Error...)
// -- is a finding: abort() so libFuzzer records the input.
#pragma once

#include "gst-plugins/core/checkpoint.h"

#include <cstdio>
#include <cstdlib>
#include <exception>
#include <typeinfo>

#define FUZZ_EXPECT_MODEL_ERROR(body)                                                    \
  try {                                                                                  \
    body;                                                                                \
  } catch (const chatterbox::ModelError&) {                                              \
  } catch (const std::exception& e) {                                                    \
    std::fprintf(stderr, "FUZZ FINDING: %s escaped instead of ModelError: %s\n",         \
                 typeid(e).name(), e.what());                                            \
    std::abort();                                                                        \
  }
