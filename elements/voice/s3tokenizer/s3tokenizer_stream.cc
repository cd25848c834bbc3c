#include "elements/voice/s3tokenizer/s3tokenizer_stream.h"

#include "gst-plugins/core/checkpoint.h"
#include "gst-plugins/core/compute_threads.h"

#include <ATen/ATen.h>
#include <c10/core/InferenceMode.h>

#include <algorithm>
#include <string>

namespace chatterbox::voice {

void S3TokenizerStreamOptions::validate() const {
  if (chunk_tokens < 0 || context_tokens < 0 || lookahead_tokens < 0)
    throw ModelError("S3 tokenizer stream: chunk, context and lookahead must not be negative");
  if (chunk_tokens > 0 && chunk_tokens + context_tokens + lookahead_tokens > kMaxWindowTokens)
    throw ModelError("S3 tokenizer stream: context (" + std::to_string(context_tokens) + ") + chunk (" +
                     std::to_string(chunk_tokens) + ") + lookahead (" + std::to_string(lookahead_tokens) +
                     ") tokens exceed one encoder window of " + std::to_string(kMaxWindowTokens) +
                     " tokens (30 s, upstream's window)");
}

int64_t S3TokenizerStreamOptions::latency_samples() const {
  if (chunk_tokens <= 0) return 0;
  // The chunk's first sample to the last one its window needs: frame
  // 4b - 1 reads samples up to 160 (4b - 1) + 200 = 640 b + 40.
  return (chunk_tokens + lookahead_tokens) * S3TokenizerStream::kSamplesPerToken +
         (S3TokenizerStream::kHalfWindow - S3TokenizerStream::kHop);
}

S3TokenizerStream::S3TokenizerStream(const S3Tokenizer& tokenizer, S3TokenizerStreamOptions opts)
    : tok_(tokenizer), opts_(opts) {
  opts_.validate();
}

void S3TokenizerStream::reset() {
  audio_.clear();
  base_ = total_ = tokens_out_ = max_frames_ = 0;
  running_max_ = -1e30f;
}

float S3TokenizerStream::sample(int64_t i, bool at_end) const {
  if (i < 0) i = -i;                                // torch reflect padding at the start
  if (at_end && i >= total_) i = 2 * (total_ - 1) - i;  // and at the end
  return audio_[static_cast<size_t>(i - base_)];
}

void S3TokenizerStream::trim() {
  // The next window starts at token max(0, next - context); its first frame
  // reads from 200 samples before that token (reflected at the start).
  const int64_t a = std::max<int64_t>(0, tokens_out_ - opts_.context_tokens);
  const int64_t keep_from = std::max<int64_t>(0, a * kSamplesPerToken - kHalfWindow);
  if (keep_from > base_ + static_cast<int64_t>(audio_.size()) / 2) {  // amortised
    audio_.erase(audio_.begin(), audio_.begin() + (keep_from - base_));
    base_ = keep_from;
  }
}

std::vector<int64_t> S3TokenizerStream::run_window(int64_t s, int64_t count, int64_t b, int64_t frames_end,
                                                   bool at_end) {
  c10::InferenceMode guard;
  ComputeThreads threads;
  const int64_t a = std::max<int64_t>(0, s - opts_.context_tokens);
  const int64_t f0 = 4 * a, f1 = std::min<int64_t>(4 * b, frames_end);
  const int64_t nf = f1 - f0;
  // Samples of frames [f0, f1): frame i reads [160 i - 200, 160 i + 200).
  const int64_t first = kHop * f0 - kHalfWindow;
  const int64_t len = kHop * (nf - 1) + 2 * kHalfWindow;
  at::Tensor seg = at::empty({len}, at::kFloat);
  float* p = seg.data_ptr<float>();
  for (int64_t k = 0; k < len; ++k) p[k] = sample(first + k, at_end);
  const at::Tensor window = tok_.window();
  at::Tensor spec = at::stft(seg, S3TokenizerConfig::kNfft, kHop, S3TokenizerConfig::kNfft, window,
                             /*center=*/false, "reflect", /*normalized=*/false, /*onesided=*/true,
                             /*return_complex=*/true);
  at::Tensor mag = at::abs(spec);
  mag = mag * mag;
  at::Tensor log_spec = at::clamp_min(at::matmul(tok_.mel_filters(), mag), 1e-10).log10();  // [n_mels, nf]
  // The floor: max over every frame up to this window's end.
  const int64_t new_from = std::max<int64_t>(max_frames_, f0);
  if (f1 > new_from) {
    running_max_ = std::max(running_max_, log_spec.slice(1, new_from - f0, nf).max().item<float>());
    max_frames_ = f1;
  }
  log_spec = at::maximum(log_spec, at::scalar_tensor(running_max_, at::kFloat) - 8.0);
  at::Tensor mel = ((log_spec + 4.0) / 4.0).unsqueeze(0);
  at::Tensor tokens = S3Tokenizer::fsq_tokens(S3Tokenizer::fsq_h(tok_.fsq_project(tok_.encode(mel))));
  const int64_t have = tokens.size(1);
  std::vector<int64_t> out;
  const int64_t from = s - a, to = std::min<int64_t>(s - a + count, have);
  const int64_t* t = tokens.contiguous().data_ptr<int64_t>();
  for (int64_t k = from; k < to; ++k) out.push_back(t[k]);
  tokens_out_ = s + static_cast<int64_t>(out.size());
  return out;
}

std::vector<int64_t> S3TokenizerStream::push(const float* samples, int64_t n) {
  too_short_ = false;
  audio_.insert(audio_.end(), samples, samples + n);
  total_ += n;
  std::vector<int64_t> out;
  const int64_t N = opts_.chunk_tokens, R = opts_.lookahead_tokens;
  if (N <= 0) return out;
  while (true) {
    const int64_t s = tokens_out_, b = s + N + R;
    if (total_ < b * kSamplesPerToken + (kHalfWindow - kHop)) break;
    std::vector<int64_t> got = run_window(s, N, b, 4 * b, /*at_end=*/false);
    out.insert(out.end(), got.begin(), got.end());
    trim();
  }
  return out;
}

std::vector<int64_t> S3TokenizerStream::finish() {
  std::vector<int64_t> out;
  too_short_ = total_ > 0 && total_ <= kHalfWindow;
  if (total_ > kHalfWindow) {
    if (opts_.chunk_tokens <= 0) {
      at::Tensor wave = at::from_blob(audio_.data(), {static_cast<int64_t>(audio_.size())}, at::kFloat);
      at::Tensor tokens = tok_.tokenize(wave).tokens.contiguous();
      const int64_t* t = tokens.data_ptr<int64_t>();
      out.assign(t, t + tokens.size(1));
    } else {
      const int64_t frames = total_ / kHop;
      const int64_t all = (frames + 3) / 4;  // ceil(ceil(F / 2) / 2): the two stride-2 convs
      while (tokens_out_ < all) {
        const int64_t s = tokens_out_;
        const int64_t count = std::min(opts_.chunk_tokens, all - s);
        const int64_t b = std::min(s + opts_.chunk_tokens + opts_.lookahead_tokens, all);
        std::vector<int64_t> got = run_window(s, count, b, frames, /*at_end=*/true);
        if (got.empty()) break;
        out.insert(out.end(), got.begin(), got.end());
      }
    }
  }
  const bool short_flag = too_short_;
  reset();
  too_short_ = short_flag;
  return out;
}

}  // namespace chatterbox::voice
