#include "elements/mel/features/mel_extractor.h"

#include "gst-plugins/core/torch_f32.h"

#include "elements/mel/features/filterbank.h"
#include "gst-plugins/core/checkpoint.h"  // ModelError
#include "gst-plugins/core/compute_threads.h"

#include <ATen/ATen.h>
#include <c10/core/InferenceMode.h>

#include <algorithm>
#include <cmath>
#include <sstream>

namespace chatterbox::mel {

namespace {
// torch.hann_window(n) in float32 (torch_f32.h: the same on every CPU), as float64.
at::Tensor torch_hann_window_f32(int64_t n) {
  const std::vector<float> w = f32::hann_window(n, /*periodic=*/true);
  return at::tensor(w, at::kFloat).to(at::kDouble);
}
}  // namespace


struct MelExtractor::Impl {
  MelFormat fmt;
  int64_t n_fft = 0, hop = 0, n_mels = 0, pad = 0;
  bool eps_mag = false;  // sqrt(re^2 + im^2 + eps) instead of |X|
  at::Tensor fb64;       // [n_mels, n_freqs] float64
  at::Tensor win64;      // [n_fft] float64
  // Working copies: the window per dtype, the filterbank transposed and
  // contiguous ([n_freqs, n_mels]) so the projection is one GEMM giving
  // frame-major output directly.
  at::Tensor win32, fbt32, fbt64;
};

namespace {

int64_t floor_div(int64_t a, int64_t b) {
  int64_t q = a / b;
  return (a % b != 0 && (a < 0) != (b < 0)) ? q - 1 : q;
}

// Every problem with `f`, one sentence each; empty when usable.
std::string format_problems(const MelFormat& f) {
  std::vector<std::string> p;
  auto num = [](double v) {
    std::ostringstream os;
    os << v;
    return os.str();
  };
  if (f.rate <= 0) p.push_back("rate must be positive (got " + num(f.rate) + ")");
  if (f.n_mels <= 0) p.push_back("n-mels must be positive (got " + num(f.n_mels) + ")");
  if (f.hop_length <= 0) p.push_back("hop-length must be positive (got " + num(f.hop_length) + ")");
  if (f.n_fft <= 0) p.push_back("n-fft must be positive (got " + num(f.n_fft) + ")");
  if (f.win_length <= 0 || f.win_length > f.n_fft)
    p.push_back("win-length must be in 1..n-fft (got " + num(f.win_length) + " with n-fft " + num(f.n_fft) + ")");
  if (!(f.f_min >= 0.0)) p.push_back("f-min must be >= 0 Hz (got " + num(f.f_min) + ")");
  if (!(f.f_max > f.f_min)) p.push_back("f-max must exceed f-min (got " + num(f.f_min) + ".." + num(f.f_max) + ")");
  if (f.rate > 0 && f.f_max > f.rate / 2.0)
    p.push_back("f-max=" + num(f.f_max) + " Hz lies above the Nyquist frequency " + num(f.rate / 2.0) + " Hz");
  if (f.padding == "same") {
    if (f.n_fft > 0 && f.hop_length > 0 && (f.n_fft < f.hop_length || (f.n_fft - f.hop_length) % 2 != 0))
      p.push_back("padding=same pads (n-fft - hop-length)/2 on each side, which needs n-fft >= hop-length with an "
                  "even difference (got n-fft " + num(f.n_fft) + ", hop-length " + num(f.hop_length) + ")");
  } else if (f.padding != "center") {
    p.push_back("padding='" + f.padding + "' is not supported: use \"same\" (Chatterbox S3Gen: reflect (n-fft - "
                "hop)/2, T = N/hop) or \"center\" (torch.stft center=True, T = 1 + N/hop)");
  }
  if (f.power != 1 && f.power != 2)
    p.push_back("power=" + num(f.power) + " is not supported: use 1 (magnitude) or 2 (power)");
  try {
    parse_mel_scale(f.mel_scale);
  } catch (const ModelError& e) {
    p.push_back(e.what());
  }
  try {
    parse_mel_norm(f.norm);
  } catch (const ModelError& e) {
    p.push_back(e.what());
  }
  if (!(f.log_floor > 0.0)) p.push_back("log-floor must be > 0, it bounds ln() (got " + num(f.log_floor) + ")");
  if (!(f.mag_eps >= 0.0)) p.push_back("mag-eps must be >= 0 (got " + num(f.mag_eps) + ")");
  std::string out;
  for (const auto& s : p) out += (out.empty() ? "" : "; ") + s;
  return out;
}

at::Tensor empty_mel(int64_t n_mels, at::ScalarType dtype) { return at::empty({0, n_mels}, at::dtype(dtype)); }

// Periodic mirror of index i into [0, n): the padding numpy.pad(mode="reflect")
// produces for any pad width (n == 1: the sample repeated).
int64_t mirror(int64_t i, int64_t n) {
  if (n == 1) return 0;
  const int64_t period = 2 * (n - 1);
  int64_t m = i % period;
  if (m < 0) m += period;
  return m < n ? m : period - m;
}

}  // namespace

MelExtractor::MelExtractor(const MelFormat& format) {
  std::string problems = format_problems(format);
  if (!problems.empty())
    throw ModelError("unsupported mel format (" + format.to_string() + "): " + problems);

  auto impl = std::make_shared<Impl>();
  impl->fmt = format;
  impl->n_fft = format.n_fft;
  impl->hop = format.hop_length;
  impl->n_mels = format.n_mels;
  impl->pad = format.padding == "same" ? (format.n_fft - format.hop_length) / 2 : format.n_fft / 2;
  impl->eps_mag = format.mag_eps > 0.0;

  // Slaney-scale layouts come from librosa, which builds its tables in
  // float64; HTK-scale layouts from torchaudio's MelSpectrogram, whose float32
  // filterbank and float32 torch.hann_window are themselves the definition
  // (Vocos was trained on them; with the float64 tables the Vocos log-mels of
  // the fixture speech move by up to 3.3e-5 of the frame maximum, 60x the
  // float32 noise the README allows for).
  const MelScale scale = parse_mel_scale(format.mel_scale);
  const MelNorm norm = parse_mel_norm(format.norm);
  const bool torchaudio_tables = scale == MelScale::Htk;
  impl->fb64 = !torchaudio_tables
                   ? mel_filterbank(format.rate, format.n_fft, format.n_mels, format.f_min, format.f_max, scale, norm)
                   : mel_filterbank_torchaudio_f32(format.rate, format.n_fft, format.n_mels, format.f_min,
                                                   format.f_max, scale, norm)
                         .to(at::kDouble);
  // A band that covers no FFT bin would be the log floor forever: the format
  // asks for more mel resolution than the FFT has (too many mels, too small n-fft).
  at::Tensor band_max = std::get<0>(impl->fb64.max(1));
  const double* bm = band_max.data_ptr<double>();
  for (int64_t i = 0; i < format.n_mels; ++i)
    if (!(bm[i] > 0.0)) {
      std::ostringstream os;
      os << "unsupported mel format (" << format.to_string() << "): mel band " << i << " of " << format.n_mels
         << " falls between two FFT bins (bin spacing " << static_cast<double>(format.rate) / format.n_fft
         << " Hz) and would always be empty; use fewer n-mels or a larger n-fft";
      throw ModelError(os.str());
    }

  // torch.stft zero-pads a shorter window to n_fft, centred.
  at::Tensor win = torchaudio_tables ? torch_hann_window_f32(format.win_length) : hann_window(format.win_length, true);
  if (format.win_length < format.n_fft) {
    const int64_t left = (format.n_fft - format.win_length) / 2;
    win = at::constant_pad_nd(win, {left, format.n_fft - format.win_length - left}, 0.0);
  }
  impl->win64 = win;
  impl->win32 = win.to(at::kFloat);
  impl->fbt64 = impl->fb64.t().contiguous();
  impl->fbt32 = impl->fbt64.to(at::kFloat);
  impl_ = std::move(impl);
}

const MelFormat& MelExtractor::format() const { return impl_->fmt; }
int64_t MelExtractor::n_fft() const { return impl_->n_fft; }
int64_t MelExtractor::hop_length() const { return impl_->hop; }
int64_t MelExtractor::n_mels() const { return impl_->n_mels; }
int64_t MelExtractor::pad() const { return impl_->pad; }
at::Tensor MelExtractor::filterbank() const { return impl_->fb64; }

MelExtractor MelExtractor::with_tables(const at::Tensor& filterbank, const at::Tensor& window) const {
  const MelFormat& f = impl_->fmt;
  if (filterbank.dim() != 2 || filterbank.size(0) != f.n_mels || filterbank.size(1) != f.n_fft / 2 + 1)
    throw ModelError("with_tables: the filterbank must be [" + std::to_string(f.n_mels) + ", " +
                     std::to_string(f.n_fft / 2 + 1) + "] for " + f.to_string());
  if (window.dim() != 1 || window.size(0) != f.win_length)
    throw ModelError("with_tables: the window must have win-length=" + std::to_string(f.win_length) + " samples");
  auto impl = std::make_shared<Impl>(*impl_);
  impl->fb64 = filterbank.to(at::kDouble).contiguous();
  at::Tensor win = window.to(at::kDouble);
  if (f.win_length < f.n_fft) {
    const int64_t left = (f.n_fft - f.win_length) / 2;
    win = at::constant_pad_nd(win, {left, f.n_fft - f.win_length - left}, 0.0);
  }
  impl->win64 = win;
  impl->win32 = win.to(at::kFloat);
  impl->fbt64 = impl->fb64.t().contiguous();
  impl->fbt32 = impl->fbt64.to(at::kFloat);
  MelExtractor out(*this);
  out.impl_ = std::move(impl);
  return out;
}
at::Tensor MelExtractor::window() const { return impl_->win64; }

int64_t MelExtractor::num_frames(int64_t n) const {
  if (n <= 0) return 0;
  return std::max<int64_t>(0, 1 + floor_div(n + 2 * impl_->pad - impl_->n_fft, impl_->hop));
}

int64_t MelExtractor::samples_for_frames(int64_t frames) const {
  if (frames <= 0) return 0;
  return std::max(impl_->pad + 1, (frames - 1) * impl_->hop + impl_->n_fft - impl_->pad);
}

at::Tensor MelExtractor::reflect_pad(const at::Tensor& audio) const {
  const int64_t n = audio.size(0), p = impl_->pad;
  if (p == 0 || n == 0) return audio;
  if (n > p) {  // torch's reflect: one mirror at each end
    return at::cat({audio.slice(0, 1, p + 1).flip(0), audio, audio.slice(0, n - 1 - p, n - 1).flip(0)});
  }
  at::Tensor idx = at::empty({n + 2 * p}, at::kLong);
  int64_t* ix = idx.data_ptr<int64_t>();
  for (int64_t j = 0; j < n + 2 * p; ++j) ix[j] = mirror(j - p, n);
  return audio.index_select(0, idx);
}

at::Tensor MelExtractor::frames_to_mel(const at::Tensor& padded, int64_t n_frames) const {
  const Impl& m = *impl_;
  const bool f64 = padded.scalar_type() == at::kDouble;
  if (n_frames <= 0) return empty_mel(m.n_mels, f64 ? at::kDouble : at::kFloat);
  if (padded.dim() != 1 || padded.size(0) < (n_frames - 1) * m.hop + m.n_fft)
    throw ModelError("MelExtractor::frames_to_mel: " + std::to_string(n_frames) + " frames need a 1-D signal of " +
                     std::to_string((n_frames - 1) * m.hop + m.n_fft) + " samples, got shape " +
                     shape_str(padded.sizes()));
  c10::InferenceMode guard;
  ComputeThreads threads;  // one OpenMP thread; the GEMM uses OpenBLAS's pool (compute_threads.h)
  // [T, n_fft] strided view over the signal; the window product makes the
  // one contiguous copy, and one batched real FFT does every frame.
  at::Tensor frames = padded.unfold(0, m.n_fft, m.hop).narrow(0, 0, n_frames);
  at::Tensor spec = at::fft_rfft(frames * (f64 ? m.win64 : m.win32), m.n_fft, -1);  // [T, n_freqs] complex
  at::Tensor mag;
  if (m.eps_mag) {
    // Chatterbox: sqrt(re^2 + im^2 + eps) (the eps keeps sqrt differentiable at 0).
    // re*re + im*im as two plain products (what pow(2).sum(-1) rounds to, but
    // without a reduction over a size-2 dim, which is several times slower).
    at::Tensor ri = at::view_as_real(spec);
    at::Tensor re = ri.select(-1, 0), im = ri.select(-1, 1);
    mag = at::mul(re, re).add_(at::mul(im, im)).add_(m.fmt.mag_eps);
    if (m.fmt.power == 1) mag.sqrt_();
  } else {
    mag = spec.abs();  // hypot, as torchaudio's Spectrogram
    if (m.fmt.power == 2) mag.pow_(2);
  }
  at::Tensor mel = at::mm(mag, f64 ? m.fbt64 : m.fbt32);  // [T, n_mels]
  return mel.clamp_min_(m.fmt.log_floor).log_();
}

at::Tensor MelExtractor::compute(const at::Tensor& audio) const {
  if (audio.dim() != 1)
    throw ModelError("MelExtractor::compute: expected 1-D audio [samples], got shape " + shape_str(audio.sizes()));
  if (audio.scalar_type() != at::kFloat && audio.scalar_type() != at::kDouble)
    throw ModelError(std::string("MelExtractor::compute: expected float32 or float64 audio, got ") +
                     c10::toString(audio.scalar_type()));
  c10::InferenceMode guard;
  at::Tensor x = audio.contiguous();
  return frames_to_mel(reflect_pad(x), num_frames(x.size(0)));
}

// ---------------------------------------------------------------------------

MelStream::MelStream(const MelFormat& format) : MelStream(MelExtractor(format)) {}

MelStream::MelStream(MelExtractor extractor) : ex_(std::move(extractor)) {
  buf_.reserve(static_cast<size_t>(ex_.n_fft() + ex_.pad() + 1));
  reset();
}

void MelStream::reset() {
  buf_.clear();
  buf_start_ = 0;
  started_ = ex_.pad() == 0;
  n_in_ = 0;
  next_frame_ = 0;
}

at::Tensor MelStream::empty() const { return empty_mel(ex_.n_mels(), at::kFloat); }

at::Tensor MelStream::feed(const at::Tensor& samples) {
  if (samples.dim() != 1)
    throw ModelError("MelStream::feed: expected 1-D audio [samples], got shape " + shape_str(samples.sizes()));
  at::Tensor x = samples.to(at::kFloat).contiguous();
  return feed(x.data_ptr<float>(), x.size(0));
}

at::Tensor MelStream::feed(const float* samples, int64_t n) {
  if (n <= 0) return empty();
  const int64_t p = ex_.pad(), hop = ex_.hop_length(), n_fft = ex_.n_fft();
  buf_.insert(buf_.end(), samples, samples + n);
  n_in_ += n;
  if (!started_) {
    if (n_in_ <= p) return empty();  // the start padding x[p..1] is not known yet
    // buf_ holds every raw sample so far: prepend x[p], ..., x[1].
    std::vector<float> head(buf_.rend() - (p + 1), buf_.rend() - 1);
    head.insert(head.end(), buf_.begin(), buf_.end());
    buf_.swap(head);
    buf_start_ = 0;
    started_ = true;
  }
  // Frames lying entirely in padded[0, pad + n_in) are final.
  const int64_t avail = p + n_in_;
  const int64_t ready = avail >= n_fft ? 1 + (avail - n_fft) / hop : 0;
  at::Tensor out = empty();
  if (ready > next_frame_) {
    const int64_t t = ready - next_frame_;
    at::Tensor seg = at::from_blob(buf_.data() + (next_frame_ * hop - buf_start_), {(t - 1) * hop + n_fft},
                                   at::kFloat);
    out = ex_.frames_to_mel(seg, t);
    next_frame_ = ready;
  }
  // Keep what the next frame needs, and the last pad+1 samples for the end
  // reflection (raw x[N-1-pad..N-1] = padded[N-1..N-1+pad]).
  const int64_t keep_from = std::min(next_frame_ * hop, n_in_ - 1);
  if (keep_from > buf_start_) {
    buf_.erase(buf_.begin(), buf_.begin() + (keep_from - buf_start_));
    buf_start_ = keep_from;
  }
  return out;
}

at::Tensor MelStream::finish() {
  at::Tensor out;
  const int64_t n = n_in_, p = ex_.pad(), hop = ex_.hop_length();
  if (n == 0) {
    out = empty();
  } else if (!started_) {
    // N <= pad: no frame was emitted yet and buf_ holds the whole utterance.
    at::Tensor all = at::from_blob(buf_.data(), {n}, at::kFloat);
    out = ex_.compute(all);  // fresh tensor, does not alias buf_
  } else {
    // End padding x[N-2], ..., x[N-1-pad] (raw i sits at padded i + pad).
    for (int64_t k = 0; k < p; ++k) {
      const float v = buf_[(n - 2 - k + p) - buf_start_];  // copy first: push_back may reallocate
      buf_.push_back(v);
    }
    const int64_t t = ex_.num_frames(n) - next_frame_;
    if (t > 0) {
      at::Tensor seg = at::from_blob(buf_.data() + (next_frame_ * hop - buf_start_),
                                     {static_cast<int64_t>(buf_.size()) - (next_frame_ * hop - buf_start_)},
                                     at::kFloat);
      out = ex_.frames_to_mel(seg, t);
    } else {
      out = empty();
    }
  }
  reset();
  return out;
}

}  // namespace chatterbox::mel
