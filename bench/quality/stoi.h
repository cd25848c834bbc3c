// Short-Time Objective Intelligibility (STOI), C. H. Taal, R. C. Hendriks,
// R. Heusdens, J. Jensen, "An Algorithm for Intelligibility Prediction of
// Time-Frequency Weighted Noisy Speech", IEEE TASLP 19(7), 2011, following
// the authors' published reference algorithm step by step:
//
//  1. both signals resampled to 10 kHz (resample.h: MATLAB resample's filter);
//  2. silent frames removed: 256-sample frames (Hann, MATLAB's hanning(256),
//     i.e. without its zero end points) every 128 samples; a frame whose clean
//     energy lies 40 dB or more below the loudest clean frame is dropped from
//     both signals, the rest overlap-added back together;
//  3. short-time DFT: the same frames, 512-point FFT, one-sided;
//  4. 15 one-third octave bands, centre frequencies 150 * 2^(k/3) Hz, each band
//     the FFT bins between the bins nearest its edges 150 * 2^((2k +- 1)/6) Hz
//     (upper edge bin excluded); band envelope = sqrt(sum of |X|^2);
//  5. for every 30-frame (384 ms) segment and band: the processed envelope
//     scaled to the clean one's energy, clipped to at most (1 + 10^(15/20))
//     times the clean envelope (signal-to-distortion bound beta = -15 dB), and
//     correlated (Pearson) with the clean envelope;
//  6. STOI = the mean correlation over all bands and segments.
//
// Frame positions as in the reference: starts 0, 128, ... below len - 256
// (a final frame that would end exactly at the last sample is not used).
// Where the reference would divide by zero (a processed band with no energy
// over a whole segment) the correlation counts as 0.
//
// No GStreamer here.
#pragma once

#include <cstdint>
#include <stdexcept>
#include <vector>

namespace chatterbox::quality {

struct QualityError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

constexpr int kStoiRate = 10000;
constexpr int kStoiFrame = 256;
constexpr int kStoiFft = 512;
constexpr int kStoiBands = 15;
constexpr int kStoiSegment = 30;

struct StoiBand {
  double centre_hz = 0;
  int lo_bin = 0, hi_bin = 0;  // FFT bins [lo_bin, hi_bin) of the 512-point FFT at 10 kHz
};
// The 15 bands of step 4.
std::vector<StoiBand> stoi_bands();

struct StoiResult {
  double stoi = 0;
  int64_t frames_total = 0;  // analysis frames before silence removal
  int64_t frames_kept = 0;   // after
  int64_t segments = 0;      // 30-frame segments averaged
};

// clean and processed: equal length, `rate` Hz. Throws QualityError when the
// lengths differ or fewer than 30 frames (~0.4 s) of speech remain after the
// silent ones are removed (the measure is undefined there).
StoiResult stoi(const std::vector<double>& clean, const std::vector<double>& processed, int64_t rate);

}  // namespace chatterbox::quality
