// librosa.resample(res_type="polyphase"): scipy.signal.resample_poly(x, up,
// down) with up/down the rates over their gcd, window ('kaiser', 5.0),
// padtype 'constant', then librosa's fix_length (a no-op: resample_poly
// already returns ceil(n * up / down) samples) and the input's dtype.
// Perth's get_watermark resamples with it before detecting.
//
// The filter is scipy's: firwin(2 * 10 * max(up, down) + 1, 1 / max(up, down),
// window=('kaiser', 5.0)) in float64, cast to float32 (the input's dtype) and
// multiplied by `up` in float32; the output sample is the filter's dot
// product with the zero-stuffed input, summed here in float64 and rounded
// once (scipy's upfirdn sums in float32; the difference is a rounding one).
// No GStreamer here: part of libchatterbox.
#pragma once

#include <cstdint>
#include <vector>

namespace chatterbox::perth {

std::vector<float> resample_poly_filter(int64_t up, int64_t down);  // after the gcd, times up
std::vector<float> resample_poly(const float* x, int64_t n, int64_t in_rate, int64_t out_rate);

}  // namespace chatterbox::perth
