#include "elements/watermark/perth/perth_stream.h"

#include "gst-plugins/core/compute_threads.h"

#include <ATen/ATen.h>
#include <c10/core/InferenceMode.h>
#include <soxr.h>

#include <algorithm>
#include <cmath>

namespace chatterbox::perth {

// A streaming libsoxr resampler set up as python-soxr / librosa's soxr_hq
// (FLOAT32_I in and out, SOXR_HQ); its output does not depend on how the
// input is chunked.
struct PerthEmbedder::Soxr {
  soxr_t s = nullptr;
  double ratio = 1.0;
  std::vector<float> buf;
  Soxr(int64_t in, int64_t out) : ratio(static_cast<double>(out) / static_cast<double>(in)) {
    soxr_error_t err = nullptr;
    const soxr_io_spec_t io = soxr_io_spec(SOXR_FLOAT32_I, SOXR_FLOAT32_I);
    const soxr_quality_spec_t q = soxr_quality_spec(SOXR_HQ, 0);
    s = soxr_create(static_cast<double>(in), static_cast<double>(out), 1, &err, &io, &q, nullptr);
    if (!s || err)
      throw ModelError("Perth: soxr_create " + std::to_string(in) + " -> " + std::to_string(out) + " Hz failed (" +
                       std::string(err ? err : "unknown error") + ")");
  }
  ~Soxr() {
    if (s) soxr_delete(s);
  }
  // x == nullptr: flush (end of input).
  void process(const float* x, int64_t n, std::vector<float>& out) {
    const size_t cap = static_cast<size_t>(std::ceil(static_cast<double>(std::max<int64_t>(n, 4096)) * ratio)) + 1024;
    if (buf.size() < cap) buf.resize(cap);
    if (!x) {
      for (;;) {
        size_t odone = 0;
        soxr_error_t err = soxr_process(s, nullptr, 0, nullptr, buf.data(), buf.size(), &odone);
        if (err) throw ModelError("Perth: soxr flush failed (" + std::string(err) + ")");
        if (odone == 0) break;
        out.insert(out.end(), buf.begin(), buf.begin() + static_cast<std::ptrdiff_t>(odone));
      }
      return;
    }
    for (int64_t pos = 0; pos < n;) {
      size_t idone = 0, odone = 0;
      soxr_error_t err = soxr_process(s, x + pos, static_cast<size_t>(n - pos), &idone, buf.data(), buf.size(), &odone);
      if (err) throw ModelError("Perth: soxr_process failed (" + std::string(err) + ")");
      out.insert(out.end(), buf.begin(), buf.begin() + static_cast<std::ptrdiff_t>(odone));
      pos += static_cast<int64_t>(idone);
      if (idone == 0 && odone == 0) throw ModelError("Perth: soxr_process made no progress");
    }
  }
};

PerthEmbedder::PerthEmbedder(std::shared_ptr<const PerthNet> net, int64_t rate, Mode mode, int64_t block_frames)
    : net_(std::move(net)), rate_(rate), mode_(mode), block_(std::max<int64_t>(1, block_frames)) {
  if (rate_ <= 0) throw ModelError("Perth: the sample rate must be positive");
  reset();
}

PerthEmbedder::~PerthEmbedder() = default;

void PerthEmbedder::reset() {
  n_in_ = n_out_ = 0;
  held_.clear();
  held_base_ = 0;
  x32_.clear();
  x32_base_ = n32_ = 0;
  head32_.clear();
  t_next_ = 0;
  running_max_ = 0.f;
  ola_.clear();
  env_.clear();
  ola_base_ = 0;
  emitted32_ = 0;
  out_rate_total_ = 0;
  in_rs_.reset();
  out_rs_.reset();
  const int64_t sr = net_->config().sample_rate;
  if (mode_ == Mode::Stream && rate_ != sr) {
    in_rs_ = std::make_unique<Soxr>(rate_, sr);
    out_rs_ = std::make_unique<Soxr>(sr, rate_);
  }
}

int64_t PerthEmbedder::latency_samples_32k() const {
  const auto& c = net_->config();
  if (mode_ == Mode::Utterance) return -1;
  // an output sample waits for the frames that overlap it (n_fft / 2 ahead),
  // their encoder context, those frames' own n_fft / 2, and up to a block.
  return c.n_fft + (ConvStack::kContext + block_ + 1) * c.hop_size;
}

double PerthEmbedder::latency_seconds() const {
  if (mode_ == Mode::Utterance) return 0.0;
  const double sr = static_cast<double>(net_->config().sample_rate);
  double s = static_cast<double>(latency_samples_32k()) / sr;
  if (in_rs_) s += soxr_delay(in_rs_->s) / sr;                          // in output (32 kHz) samples
  if (out_rs_) s += soxr_delay(out_rs_->s) / static_cast<double>(rate_);  // in output (rate) samples
  return s;
}

void PerthEmbedder::push(const float* x, int64_t n, std::vector<float>& out) {
  if (n <= 0) return;
  c10::InferenceMode guard;
  n_in_ += n;
  held_.insert(held_.end(), x, x + n);
  if (mode_ == Mode::Utterance) return;
  // keep only the tail a final padding can need
  const int64_t keep = static_cast<int64_t>(
      std::ceil(2.0 * static_cast<double>(net_->config().hop_size) * static_cast<double>(rate_) /
                static_cast<double>(net_->config().sample_rate))) + 256;
  if (static_cast<int64_t>(held_.size()) > 4 * keep) {
    const int64_t drop = static_cast<int64_t>(held_.size()) - keep;
    held_.erase(held_.begin(), held_.begin() + drop);
    held_base_ += drop;
  }
  if (in_rs_) {
    std::vector<float> y;
    in_rs_->process(x, n, y);
    feed_in32(y.data(), static_cast<int64_t>(y.size()));
  } else {
    feed_in32(x, n);
  }
  process(false, out);
}

void PerthEmbedder::feed_in32(const float* x, int64_t n) {
  const int64_t need_head = net_->config().n_fft / 2 + 1;
  for (int64_t i = 0; i < n && static_cast<int64_t>(head32_.size()) < need_head; ++i) head32_.push_back(x[i]);
  x32_.insert(x32_.end(), x, x + n);
  n32_ += n;
}

void PerthEmbedder::process(bool final, std::vector<float>& out) {
  const auto& c = net_->config();
  const int64_t hop = c.hop_size, nfft = c.n_fft, half = nfft / 2, ctx = ConvStack::kContext;
  const int64_t sub = c.subband();
  int64_t T = 0, t_end = 0, f1 = 0;
  if (final) {
    T = 1 + n32_ / hop;
    t_end = T;
    f1 = T;
  } else {
    if (n32_ <= half) return;
    const int64_t F = (n32_ - half) / hop + 1;  // frames whose samples are all in
    t_end = F - ctx;
    if (t_end - t_next_ < block_) return;
    f1 = t_end + ctx;
  }
  if (t_end <= t_next_) return;
  const int64_t f0 = std::max<int64_t>(0, t_next_ - ctx);
  ComputeThreads threads;
  // the padded signal under frames [f0, f1)
  const int64_t len = (f1 - 1 - f0) * hop + nfft;
  at::Tensor seg = at::empty({len}, at::kFloat);
  float* sp = seg.data_ptr<float>();
  for (int64_t i = 0; i < len; ++i) {
    int64_t s = f0 * hop + i - half;
    if (s < 0) {
      sp[i] = head32_[static_cast<size_t>(-s)];
      continue;
    }
    if (s >= n32_) s = 2 * (n32_ - 1) - s;  // reflect at the end (final only)
    sp[i] = x32_[static_cast<size_t>(s - x32_base_)];
  }
  MagPhase mp = net_->to_magphase(net_->stft_frames(seg));  // [F, f1 - f0]
  const at::Tensor sums = mp.mag.sum(0);
  running_max_ = std::max(running_max_, sums.max().item<float>());
  const int64_t k0 = t_next_ - f0, k1 = t_end - f0;  // kept frames within the block
  const at::Tensor res = net_->encoder_raw(mp.mag.slice(0, 0, sub)).slice(1, k0, k1);
  const at::Tensor mask = magmask(sums.slice(0, k0, k1), running_max_);
  at::Tensor mag = mp.mag.slice(1, k0, k1).clone();
  mag.slice(0, 0, sub).add_(at::mul(res, mask.unsqueeze(0)));
  const at::Tensor spec = net_->to_complex(mag, mp.phase.slice(1, k0, k1));
  // iSTFT of the kept frames: irfft (norm "backward", as torch.istft) times the window, overlap-added
  at::Tensor frames = at::fft_irfft(spec.transpose(0, 1), nfft, -1, "backward");
  frames = at::mul(frames, net_->window().view({1, nfft})).contiguous();
  const float* fp = frames.data_ptr<float>();
  const float* wp = net_->window().data_ptr<float>();
  const int64_t p_end = (t_end - 1) * hop + nfft;
  if (p_end - ola_base_ > static_cast<int64_t>(ola_.size())) {
    ola_.resize(static_cast<size_t>(p_end - ola_base_), 0.0);
    env_.resize(ola_.size(), 0.0);
  }
  for (int64_t k = 0; k < k1 - k0; ++k) {
    const int64_t p0 = (t_next_ + k) * hop - ola_base_;
    for (int64_t j = 0; j < nfft; ++j) {
      ola_[static_cast<size_t>(p0 + j)] += static_cast<double>(fp[k * nfft + j]);
      env_[static_cast<size_t>(p0 + j)] += static_cast<double>(wp[j]) * static_cast<double>(wp[j]);
    }
  }
  t_next_ = t_end;
  // release the samples no later frame touches (upstream's length at the end)
  const int64_t s_lim = final ? (T - 1) * hop : t_end * hop - half;
  if (s_lim > emitted32_) {
    std::vector<float> y(static_cast<size_t>(s_lim - emitted32_));
    for (int64_t s = emitted32_; s < s_lim; ++s) {
      const size_t q = static_cast<size_t>(s + half - ola_base_);
      y[static_cast<size_t>(s - emitted32_)] = static_cast<float>(ola_[q] / env_[q]);
    }
    emitted32_ = s_lim;
    emit32(y.data(), static_cast<int64_t>(y.size()), out);
  }
  // forget what no later block reads
  const int64_t p_keep = emitted32_ + half;
  if (p_keep - ola_base_ > (1 << 15)) {
    const int64_t drop = p_keep - ola_base_;
    ola_.erase(ola_.begin(), ola_.begin() + drop);
    env_.erase(env_.begin(), env_.begin() + drop);
    ola_base_ += drop;
  }
  const int64_t s_keep = std::max<int64_t>(0, (t_next_ - ctx) * hop - half);
  if (s_keep - x32_base_ > (1 << 15)) {
    const int64_t drop = s_keep - x32_base_;
    x32_.erase(x32_.begin(), x32_.begin() + drop);
    x32_base_ += drop;
  }
}

void PerthEmbedder::emit32(const float* y, int64_t n, std::vector<float>& out) {
  if (out_rs_) {
    std::vector<float> z;
    out_rs_->process(y, n, z);
    emit_rate(z.data(), static_cast<int64_t>(z.size()), out);
  } else {
    emit_rate(y, n, out);
  }
}

void PerthEmbedder::emit_rate(const float* y, int64_t n, std::vector<float>& out) {
  // never more than came in
  const int64_t room = n_in_ - n_out_;
  const int64_t k = std::min(n, room);
  if (k > 0) {
    out.insert(out.end(), y, y + k);
    n_out_ += k;
  }
  out_rate_total_ += n;
}

void PerthEmbedder::finish_stream(std::vector<float>& out) {
  const auto& c = net_->config();
  const int64_t sr = c.sample_rate;
  if (in_rs_) {
    std::vector<float> y;
    in_rs_->process(nullptr, 0, y);
    feed_in32(y.data(), static_cast<int64_t>(y.size()));
    // librosa.util.fix_length(ceil(n * 32000 / rate))
    const int64_t want = static_cast<int64_t>(
        std::ceil(static_cast<double>(n_in_) * (static_cast<double>(sr) / static_cast<double>(rate_))));
    if (n32_ < want) {
      std::vector<float> z(static_cast<size_t>(want - n32_), 0.f);
      feed_in32(z.data(), static_cast<int64_t>(z.size()));
    } else if (n32_ > want) {
      const int64_t cut = n32_ - want;  // only the resampler's tail, never read by a frame made before
      x32_.resize(x32_.size() - static_cast<size_t>(std::min<int64_t>(cut, static_cast<int64_t>(x32_.size()))));
      n32_ = want;
    }
  }
  if (n32_ <= c.n_fft / 2) return;  // too short for the STFT: the caller passes it through
  process(true, out);
  if (out_rs_) {
    // upstream: resample((T - 1) * hop samples), fix_length(ceil(that * rate / 32000))
    const int64_t up_len = static_cast<int64_t>(std::ceil(
        static_cast<double>(emitted32_) * (static_cast<double>(rate_) / static_cast<double>(sr))));
    std::vector<float> z;
    out_rs_->process(nullptr, 0, z);
    const int64_t before = out_rate_total_;
    const int64_t take = std::max<int64_t>(0, std::min<int64_t>(static_cast<int64_t>(z.size()), up_len - before));
    emit_rate(z.data(), take, out);
    if (out_rate_total_ < up_len) {
      std::vector<float> zeros(static_cast<size_t>(up_len - out_rate_total_), 0.f);
      emit_rate(zeros.data(), static_cast<int64_t>(zeros.size()), out);
    }
  }
}

void PerthEmbedder::finish(std::vector<float>& out) {
  c10::InferenceMode guard;
  if (n_in_ == 0) {
    reset();
    return;
  }
  if (mode_ == Mode::Utterance) {
    const int64_t sr = net_->config().sample_rate;
    const int64_t n32 = rate_ == sr ? n_in_
                                    : static_cast<int64_t>(std::ceil(static_cast<double>(n_in_) *
                                                                     (static_cast<double>(sr) / static_cast<double>(rate_))));
    if (n32 > net_->config().n_fft / 2) {
      at::Tensor x = at::from_blob(held_.data(), {n_in_}, at::kFloat);
      at::Tensor y = net_->apply_watermark(x, rate_).contiguous();
      emit_rate(y.data_ptr<float>(), y.size(0), out);
    }
  } else {
    finish_stream(out);
  }
  // upstream's output is shorter than its input: the input's own tail follows
  if (n_out_ < n_in_) {
    const int64_t from = n_out_ - held_base_;
    if (from < 0) throw ModelError("Perth: internal error: the input tail needed for padding was dropped");
    out.insert(out.end(), held_.begin() + from, held_.end());
    n_out_ = n_in_;
  }
  reset();
}

}  // namespace chatterbox::perth
