// The two resamplers Chatterbox's voice conditioning uses, reproduced
// exactly, because they are not interchangeable (the clone README measures
// 2-3 % RMS between them and scipy's polyphase filter):
//
//  - librosa.resample(res_type="soxr_hq") (python-soxr over libsoxr 0.1.3):
//    soxr_create(in, out, 1, FLOAT32_I -> FLOAT32_I, soxr_quality_spec(SOXR_HQ, 0)),
//    the input fed in chunks of 3 s, flushed with soxr_process(NULL, 0), then
//    librosa's fix_length to ceil(n * out / in) samples (zero-padded or cut).
//    Used by prepare_conditionals for the T3 prompt and the VoiceEncoder, and
//    by librosa.load when the file's rate differs. Debian's libsoxr runs the
//    same single-precision SSE engine ("cr32s") on every x86-64 CPU.
//
//  - torchaudio.transforms.Resample(orig, new) (sinc_interpolation, i.e.
//    sinc with a Hann window, lowpass_filter_width 6, rolloff 0.99): used
//    inside S3Gen.embed_ref for the x-vector and the S3Gen prompt tokens.
//    Kernel in float64 rounded to float32, as torchaudio computes it; the
//    signal zero-padded by `width` left and `width + orig` right, one strided
//    conv1d per output phase, interleaved and cut to ceil(n * new / orig).
//
// No GStreamer here: part of libchatterbox.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>

namespace chatterbox::voice {

// 1-D float32 -> 1-D float32 at out_rate (the input itself when the rates match).
at::Tensor resample_soxr_hq(const at::Tensor& wave, int64_t in_rate, int64_t out_rate);

// torchaudio's kernel [new / gcd, 1, 2 * width + orig / gcd] float32 and its width.
at::Tensor sinc_resample_kernel(int64_t in_rate, int64_t out_rate, int64_t* width = nullptr);
// 1-D (or [1, n]) float32 -> the same rank at out_rate (float64 input is
// computed in float64 with the same kernel: exact references for tests).
at::Tensor resample_sinc(const at::Tensor& wave, int64_t in_rate, int64_t out_rate);

}  // namespace chatterbox::voice
