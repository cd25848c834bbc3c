// Rational-ratio resampling for the quality metrics (bench/quality), the way
// MATLAB's resample(x, p, q) designs it, since Taal's reference STOI code
// resamples to 10 kHz with it: an ideal low-pass at the lower Nyquist
// frequency (cut-off 1/(2 max(p, q)) cycles per upsampled sample), truncated
// to 2L+1 taps with L = 10 max(p, q), Kaiser window beta = 5, gain p; applied
// with zero delay (output m at upsampled time m*q, input n at n*p), output
// length ceil(n * p / q).
//
// No GStreamer here.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace chatterbox::quality {

// x at `from_rate` Hz -> `to_rate` Hz. Throws std::invalid_argument for a
// non-positive rate or a ratio whose reduced terms exceed 1,000,000 (the
// filter table would not fit comfortably in memory).
std::vector<double> resample(const std::vector<double>& x, int64_t from_rate, int64_t to_rate);

}  // namespace chatterbox::quality
