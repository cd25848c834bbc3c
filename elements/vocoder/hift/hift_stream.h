// HiFT's F0 predictor and decoder as an incremental layer graph (internal to
// the HiFT library). One implementation serves the whole utterance and
// streaming: every layer keeps the input columns it still needs and computes
// an output column once, as soon as its inputs have arrived, so a chunked run
// performs the same operations on the same values as a whole run (only the
// GEMMs' column counts differ).
//
// Per layer:
//  - stride-1 "same" Conv1d (kernel k, dilation d, zero padding p = d(k-1)/2):
//    keeps its activated input from column done - p; output o is final when
//    input o + p has arrived (so delays add up layer by layer);
//  - ConvTranspose1d (stride u, kernel k, padding p): u interleaved causal
//    convolutions (output u q + r - p = sum_j W[:, :, r + u j]^T x[q - j]),
//    so every output is computed once, when x[q] arrives;
//  - strided Conv1d (the source downsamplers): output o when input
//    s o - p + k - 1 has arrived;
//  - source STFT (reflection padding at the utterance start, and at its end
//    once the end is known) and the iSTFT overlap-add keep their overlap.
// At the utterance end (at_end) every layer appends its zero padding and
// flushes. A provisional end (reduced lookahead) runs that flush on a copy:
// state tensors are never written in place, so a copy of the structs is a
// snapshot.
#pragma once

#include "elements/vocoder/hift/hift_kernels.h"
#include "gst-plugins/core/kernels/packed_conv.h"

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <vector>

namespace chatterbox::hift::detail {

// ---- weights, prepared at load ----------------------------------------------

enum class Act { None, LeakyRelu, Snake, Elu };  // Elu: float64 (ATen) or float32 (kernels::elu_into)
struct ActW {
  Act kind = Act::None;
  double slope = 0;       // LeakyRelu
  at::Tensor alpha, inv;  // Snake: alpha [C] and 1 / (alpha + 1e-9) [C]
};

// Stride-1 Conv1d weights; as a layer, "same" zero padding dil (k - 1) / 2
// on each side. Float32 weights are packed for chatterbox::kernels::conv_into where it
// runs; otherwise (and for float64) kept as taps for BLAS.
struct ConvW {
  chatterbox::kernels::PackedConv packed;
  at::Tensor taps;  // [k, Cout, Cin], when not packed
  at::Tensor bias;  // [Cout, 1]
  int k = 1, dil = 1;
  int64_t cout_ = 0, cin_ = 0;
  at::ScalarType dtype = at::kFloat;
  int64_t pad() const { return static_cast<int64_t>(dil) * (k - 1) / 2; }
  int64_t cout() const { return cout_; }
  int64_t cin() const { return cin_; }
};
ConvW make_conv(const at::Tensor& weight, const at::Tensor& bias, int dil);  // weight [Cout, Cin, k]

// Conv1d with stride s, kernel 2s (1 when s = 1) and zero padding s / 2
// (source downsamplers), run as a kernel-2 conv over blocks of s columns.
struct SConvW {
  ConvW block;  // [Cout, Cin s, 2]: block[:, ci s + r, j] = W[:, ci, s j + r]
  int s = 1, k = 1, p = 0;
  int64_t cin = 0;
};

// ConvTranspose1d (stride u, kernel k, padding p) as u interleaved causal
// convs: conv [u Cout, Cin, J] over x[q - J + 1 .. q], where tap J - 1 - j,
// rows r Cout .. (r + 1) Cout - 1, is W[:, :, r + u j]^T (zero if r + u j >= k).
struct ConvTW {
  ConvW conv;
  int u = 1, k = 1, p = 0, J = 1;
  int64_t cout = 0;
};

struct ResW {
  std::vector<ConvW> c1, c2;  // per dilation: Conv(k, d), Conv(k, 1)
  std::vector<ActW> s1, s2;   // the Snakes before them
};

struct Weights {
  int spf = 480;  // samples per mel frame
  int n_fft = 16, hop = 4;
  double audio_limit = 0.99;
  ConvW pre, post;
  ActW up_act, post_act;  // LeakyRelu before each upsampling, before conv_post
  std::vector<ConvTW> ups;
  std::vector<SConvW> downs;
  std::vector<ResW> src_rb;
  std::vector<ResW> rb;  // nk per stage
  int nk = 1;
  ConvW stft;   // [n_fft + 2, hop, n_fft / hop] over blocks of hop samples, window folded in
  ConvW istft;  // [n_fft, n_fft + 2, 1]: irfft and window folded in
  std::vector<double> win2;
  // F0 predictor: five k3 convs, ELU after each, the linear classifier as a
  // kernel-1 conv; float32 on the packed kernel, else float64 (see hift.cc).
  std::vector<ConvW> f0;
  ConvW cls;
};

// ---- state ---------------------------------------------------------------------

// Columns [start, start + data.size(1)) of a [C, L] signal.
struct Cols {
  at::Tensor data;
  int64_t start = 0;
  int64_t end() const { return start + (data.defined() ? data.size(1) : 0); }
};

struct ConvS {
  Cols in;  // activated input columns from done - pad (zeros left of column 0)
  int64_t done = 0;
};
struct ConvTS {
  Cols in;         // activated input from q - (taps - 1)
  int64_t q = 0;   // input columns whose u outputs are computed
};
struct SConvS {
  Cols in;
  int64_t done = 0;
};
struct ResUnitS {
  ConvS c1, c2;
  Cols res;  // the unit's input, kept until its residual add
};
struct ResBlockS {
  std::vector<ResUnitS> units;
};
struct StageS {
  ConvTS up;
  Cols up_q, src_q;  // upsampled and source-branch columns awaiting their sum
  Cols first;        // last stage: ReflectionPad1d((1, 0)) waits for 2 columns
  bool reflected = false;
  SConvS down;
  ResBlockS src;
  std::vector<ResBlockS> rbs;
  std::vector<Cols> rb_q;  // each resblock's output awaiting the mean
};
struct StftS {
  Cols src;  // source samples from done * hop - n_fft / 2
  int64_t done = 0;
};
struct IstftS {
  Cols fr;        // windowed time frames [n_fft, .] from q - (n_fft / hop - 1)
  int64_t q = 0;  // hop-sample blocks of the padded signal produced
};

struct DecoderS {
  ConvS pre, post;
  StftS stft;
  std::vector<StageS> st;
  IstftS istft;
};
struct F0S {
  std::vector<ConvS> convs;
};

DecoderS decoder_init(const Weights& w);
F0S f0_init(const Weights& w);

// New mel columns mel_ct [80, m] (m may be 0) and source samples src [n]
// (n may be 0) -> the audio samples that became final (clamped to the audio
// limit), in order. at_end: these are the utterance's last inputs, T mel
// frames in all (T * spf source samples); every remaining sample comes out.
// post_out: conv_post's new columns are appended to it when non-null.
at::Tensor decoder_step(const Weights& w, DecoderS& s, const at::Tensor& mel_ct, const at::Tensor& src, bool at_end,
                        int64_t T, std::vector<at::Tensor>* post_out = nullptr);

// New mel columns [80, m] -> F0 (Hz, float32) of the frames that became
// final. at_end: T frames in all.
at::Tensor f0_step(const Weights& w, F0S& s, const at::Tensor& mel_ct, bool at_end, int64_t T);

}  // namespace chatterbox::hift::detail
