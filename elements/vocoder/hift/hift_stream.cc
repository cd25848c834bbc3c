// HiFT's layer graph, incremental (see hift_stream.h for the scheme).
// Channel-major [C, T] tensors throughout: a stride-1 conv is a sum of per-tap
// GEMMs on shifted column views of one activated input buffer (no im2col
// copy), with the bias (and in a ResBlock the residual) as the GEMM's initial
// value; Snake is one fused pass that writes the next conv's buffer.
#include "elements/vocoder/hift/hift_stream.h"

#include "elements/vocoder/hift/hift_kernels.h"

#include <ATen/ATen.h>
#include <c10/util/Exception.h>

#include <algorithm>
#include <limits>

namespace chatterbox::hift::detail {

namespace {

int64_t floordiv(int64_t a, int64_t b) { return a >= 0 ? a / b : -((-a + b - 1) / b); }
int64_t ceildiv(int64_t a, int64_t b) { return -floordiv(-a, b); }

int64_t cols(const Cols& c) { return c.data.defined() ? c.data.size(1) : 0; }

// Appends x [C, m] (a fresh or immutable tensor: kept by reference).
void push(Cols& c, const at::Tensor& x) {
  if (!x.defined() || x.size(1) == 0) return;
  c.data = cols(c) == 0 ? x : at::cat({c.data, x}, 1);
}

// The first n columns (a view); they leave the queue.
at::Tensor take_front(Cols& c, int64_t n) {
  TORCH_CHECK(n >= 0 && n <= cols(c), "HiFT stream: taking ", n, " of ", cols(c), " columns");
  at::Tensor v = c.data.narrow(1, 0, n);
  c.data = c.data.narrow(1, n, cols(c) - n);
  c.start += n;
  return v;
}

// Forgets the columns before absolute column `from` (a view, no copy).
void drop_before(Cols& c, int64_t from) {
  const int64_t k = std::min(cols(c), from - c.start);
  if (k <= 0) return;
  c.data = c.data.narrow(1, k, cols(c) - k);
  c.start += k;
}

// act(x) into dst (a [C, m] column range of a buffer).
void activate(const ActW& a, const at::Tensor& x, at::Tensor dst) {
  switch (a.kind) {
    case Act::None: dst.copy_(x); break;
    case Act::LeakyRelu: at::leaky_relu_out(dst, x, a.slope); break;
    case Act::Elu:
      if (dst.scalar_type() == at::kFloat)
        kernels::elu_into(x, dst);
      else
        at::elu_out(dst, x);
      break;
    case Act::Snake: kernels::snake_into(x, dst, a.alpha, a.inv); break;
  }
}

// A new buffer: the kept columns of c, act(x), then `zeros` zero columns.
// (A new tensor, so snapshots of the old state stay intact.)
void append(Cols& c, const ActW& a, const at::Tensor& x, int64_t zeros) {
  const int64_t keep = cols(c), m = x.defined() ? x.size(1) : 0;
  if (m == 0 && zeros == 0) return;
  at::Tensor nb = at::empty({c.data.size(0), keep + m + zeros}, c.data.options());
  if (keep) nb.narrow(1, 0, keep).copy_(c.data);
  if (m) activate(a, x, nb.narrow(1, keep, m));
  if (zeros) nb.narrow(1, keep + m, zeros).zero_();
  c.data = nb;
}

at::Tensor none_cols(int64_t C, at::ScalarType t = at::kFloat) { return at::empty({C, 0}, t); }

// ---- convolution arithmetic ------------------------------------------------------

// out[:, t] = (init or bias) + sum_j W_j x[:, t + j dil] for t < n; x: the
// input columns from the first one read (may extend further).
at::Tensor conv_cols(const ConvW& w, const at::Tensor& x, int64_t n, at::Tensor init) {
  if (w.packed.w.defined()) {
    at::Tensor out = init.defined() ? init : at::empty({w.cout(), n}, at::kFloat);
    chatterbox::kernels::conv_into(w.packed, w.dil, x, init, out);
    return out;
  }
  // BLAS: one GEMM per tap on shifted column views (no im2col copy).
  at::Tensor out;
  if (init.defined()) {
    out = init;
    out.addmm_(w.taps[0], x.narrow(1, 0, n));
  } else {
    out = at::addmm(w.bias, w.taps[0], x.narrow(1, 0, n));
  }
  for (int64_t k = 1; k < w.k; ++k) out.addmm_(w.taps[k], x.narrow(1, k * w.dil, n));
  return out;
}

// ---- stride-1 "same" conv ------------------------------------------------------

void conv_init(ConvS& s, const ConvW& w) {
  s.in.data = at::zeros({w.cin(), w.pad()}, w.dtype);  // the left zero padding
  s.in.start = -w.pad();
  s.done = 0;
}

// New input columns; at_end: the input is L columns long and gets its right padding.
void conv_feed(const ConvW& w, const ActW& a, ConvS& s, const at::Tensor& x, bool at_end, int64_t L) {
  const int64_t m = x.defined() ? x.size(1) : 0;
  int64_t zeros = 0;
  if (at_end) {
    TORCH_CHECK(s.in.end() + m <= L + w.pad(), "HiFT stream: conv input longer than the utterance");
    zeros = L + w.pad() - (s.in.end() + m);
  }
  append(s.in, a, x, zeros);
}

// Outputs whose receptive field has arrived.
int64_t conv_ready(const ConvW& w, const ConvS& s, bool at_end, int64_t L) {
  const int64_t hi = at_end ? L : s.in.end() - w.pad();
  return std::max<int64_t>(0, hi - s.done);
}

// Outputs [done, done + n): init (a fresh [Cout, n] tensor: bias + residual)
// or the bias, plus sum_k W_k x[o - pad + k dil].
at::Tensor conv_run(const ConvW& w, ConvS& s, int64_t n, at::Tensor init) {
  if (n == 0) return none_cols(w.cout(), w.dtype);
  const int64_t off = s.done - w.pad() - s.in.start;
  at::Tensor out = conv_cols(w, s.in.data.narrow(1, off, n + (w.k - 1) * w.dil), n, init);
  s.done += n;
  drop_before(s.in, s.done - w.pad());
  return out;
}

at::Tensor conv_step(const ConvW& w, const ActW& a, ConvS& s, const at::Tensor& x, bool at_end, int64_t L) {
  conv_feed(w, a, s, x, at_end, L);
  return conv_run(w, s, conv_ready(w, s, at_end, L), {});
}

// ---- strided conv (source downsamplers) ------------------------------------------

void sconv_init(SConvS& s, const SConvW& w) {
  s.in.data = at::zeros({w.cin, w.p}, at::kFloat);
  s.in.start = -w.p;
  s.done = 0;
}

// L: input length; the output has (L + 2p - k) / s + 1 columns.
at::Tensor sconv_step(const SConvW& w, SConvS& s, const at::Tensor& x, bool at_end, int64_t L) {
  const int64_t m = x.defined() ? x.size(1) : 0;
  int64_t hi, zeros = 0;
  if (at_end) {
    hi = floordiv(L + 2 * w.p - w.k, w.s) + 1;
    zeros = std::max<int64_t>(0, w.s * (hi - 1) - w.p + w.k - (s.in.end() + m));
  }
  append(s.in, ActW{}, x, zeros);
  if (!at_end) hi = floordiv(s.in.end() - w.k + w.p, w.s) + 1;  // output o reads up to s o - p + k - 1
  const int64_t n = hi - s.done;
  if (n <= 0) return none_cols(w.block.cout());
  const int64_t c0 = w.s * s.done - w.p, c1 = w.s * (hi - 1) - w.p + w.k;
  at::Tensor win = s.in.data.narrow(1, c0 - s.in.start, c1 - c0);
  // k = 2s: output i reads blocks i and i + 1 of s columns; as rows ci s + r.
  if (w.s > 1) win = win.reshape({w.cin, n + 1, w.s}).permute({0, 2, 1}).reshape({w.cin * w.s, n + 1});
  at::Tensor y = conv_cols(w.block, win, n, {});
  s.done = hi;
  drop_before(s.in, w.s * s.done - w.p);
  return y;
}

// ---- ConvTranspose1d as interleaved causal convs ---------------------------------

void convt_init(ConvTS& s, const ConvTW& w) {
  const int64_t J = w.J;
  s.in.data = at::zeros({w.conv.cin(), J - 1}, at::kFloat);
  s.in.start = -(J - 1);
  s.q = 0;
}

// L: input length; the output has u L columns.
at::Tensor convt_step(const ConvTW& w, const ActW& a, ConvTS& s, const at::Tensor& x, bool at_end, int64_t L) {
  const int64_t m = x.defined() ? x.size(1) : 0;
  const int64_t J = w.J;
  // Output o = u q + r - p needs x[q - J + 1 .. q]; at the end q runs to
  // cover o < u L, with zero input past the last column.
  const int64_t q_end = at_end ? ceildiv(w.u * L + w.p, w.u) : s.in.end() + m;
  append(s.in, a, x, at_end ? std::max<int64_t>(0, q_end - (s.in.end() + m)) : 0);
  const int64_t nq = q_end - s.q;
  if (nq <= 0) return none_cols(w.cout);
  const int64_t off = s.q - (J - 1) - s.in.start;  // x[q - J + 1]
  at::Tensor Y = conv_cols(w.conv, s.in.data.narrow(1, off, nq + J - 1), nq, {});  // [u Cout, nq]
  // Row r Cout + c, column q -> output column u q + r (extended index e = o + p).
  at::Tensor Z = Y.view({w.u, w.cout, nq}).permute({1, 2, 0}).reshape({w.cout, nq * w.u});
  const int64_t e0 = w.u * s.q;
  const int64_t lo = std::max<int64_t>(e0, w.p);
  const int64_t hi = at_end ? std::min<int64_t>(e0 + w.u * nq, w.u * L + w.p) : e0 + w.u * nq;
  s.q = q_end;
  drop_before(s.in, s.q - (J - 1));
  return Z.narrow(1, lo - e0, std::max<int64_t>(0, hi - lo));
}

// ---- ResBlock (Snake, dilated conv, Snake, conv, residual) per dilation ------------

void resblock_init(ResBlockS& s, const ResW& w) {
  s.units.resize(w.c1.size());
  for (size_t i = 0; i < w.c1.size(); ++i) {
    conv_init(s.units[i].c1, w.c1[i]);
    conv_init(s.units[i].c2, w.c2[i]);
    s.units[i].res = {};
  }
}

at::Tensor resblock_step(const ResW& w, ResBlockS& s, at::Tensor x, bool at_end, int64_t L) {
  for (size_t i = 0; i < w.c1.size(); ++i) {
    ResUnitS& u = s.units[i];
    push(u.res, x);
    at::Tensor y = conv_step(w.c1[i], w.s1[i], u.c1, x, at_end, L);
    conv_feed(w.c2[i], w.s2[i], u.c2, y, at_end, L);
    const int64_t n = conv_ready(w.c2[i], u.c2, at_end, L);
    at::Tensor init;
    if (n > 0) init = at::add(take_front(u.res, n), w.c2[i].bias);  // x + b2: the GEMMs accumulate onto it
    x = conv_run(w.c2[i], u.c2, n, init);
  }
  return x;
}

// ---- source STFT ----------------------------------------------------------------

// L: source length (known at the end only); frames f read the reflect-padded
// source at [hop f - n_fft/2, hop f + n_fft/2).
at::Tensor stft_step(const Weights& w, StftS& s, const at::Tensor& src, bool at_end, int64_t L) {
  const int64_t N = w.n_fft, h = w.hop, half = N / 2;
  if (src.defined() && src.numel() > 0) push(s.src, src.reshape({1, -1}));
  const int64_t avail = s.src.end();
  int64_t hi;
  if (at_end) {
    TORCH_CHECK(avail == L, "HiFT stream: source has ", avail, " samples, expected ", L);
    TORCH_CHECK(L > half, "HiFT stream: source too short for the STFT's reflection padding");
    hi = L / h + 1;
  } else {
    hi = avail > half ? floordiv(avail - half, h) + 1 : 0;  // the left reflection needs sample n_fft/2
  }
  if (hi <= s.done) return at::empty({w.stft.cout(), 0}, at::kFloat);
  const int64_t lo_s = h * s.done - half, n_s = h * (hi - 1) + half - lo_s;
  at::Tensor buf = at::empty({n_s}, at::kFloat);
  float* b = buf.data_ptr<float>();
  at::Tensor kept = s.src.data.contiguous();
  const float* k = kept.data_ptr<float>();
  for (int64_t i = 0; i < n_s; ++i) {
    int64_t pos = lo_s + i;
    if (pos < 0) pos = -pos;                       // torch reflect: x[-i] = x[i]
    if (at_end && pos >= L) pos = 2 * (L - 1) - pos;  // x[L - 1 + i] = x[L - 1 - i]
    TORCH_CHECK(pos >= s.src.start && pos < avail, "HiFT stream: STFT sample ", pos, " not kept");
    b[i] = k[pos - s.src.start];
  }
  // Frame f = sum_j basis[:, hop j .. hop j + hop) . block f + j (blocks of hop samples).
  at::Tensor blocks = buf.view({-1, h}).t().contiguous();
  at::Tensor frames = conv_cols(w.stft, blocks, hi - s.done, {});  // [n_fft + 2, hi - done]
  s.done = hi;
  // Keep what the next frames read and, for the end's reflection, the last n_fft/2 + 1 samples.
  drop_before(s.src, std::min(h * s.done - half, avail - half - 1));
  return frames;
}

// ---- conv_post output -> audio (iSTFT overlap-add) ------------------------------------

// Window envelope sum_f w^2[P - hop f] over the frames 0 <= f < F covering
// padded position P (F unknown before the end: no upper limit needed then).
float envelope(const Weights& w, int64_t P, int64_t F) {
  const int64_t N = w.n_fft, h = w.hop;
  double e = 0;
  for (int64_t f = std::max<int64_t>(0, ceildiv(P - N + 1, h)); f <= std::min<int64_t>(F - 1, P / h); ++f)
    e += w.win2[P - h * f];
  return static_cast<float>(e);
}

// post [n_fft + 2, m] (new conv_post columns) -> samples; at_end: F frames in
// all, L samples in all.
at::Tensor istft_step(const Weights& w, IstftS& s, const at::Tensor& post, bool at_end, int64_t F, int64_t L) {
  const int64_t N = w.n_fft, h = w.hop, half = N / 2, R = N / h, K = N / 2 + 1;
  if (post.size(1) > 0) {
    at::Tensor spec = kernels::istft_spec(post, K);  // [re(K); im(K)]
    push(s.fr, conv_cols(w.istft, spec, spec.size(1), {}));  // [n_fft, m] windowed time frames
  }
  // Block q (padded positions [hop q, hop q + hop)) sums frames q - R + 1 .. q.
  int64_t q_end = s.fr.end();
  if (at_end) {
    TORCH_CHECK(s.fr.end() == F, "HiFT stream: ", s.fr.end(), " iSTFT frames, expected ", F);
    q_end = ceildiv(half + L, h);
    if (q_end > s.fr.end()) push(s.fr, at::zeros({N, q_end - s.fr.end()}, at::kFloat));
  }
  const int64_t nq = q_end - s.q;
  if (nq <= 0) return at::empty({0}, at::kFloat);
  const int64_t off = s.q - (R - 1) - s.fr.start;
  at::Tensor ola = at::zeros({nq, h}, at::kFloat);
  for (int64_t m = 0; m < R; ++m) ola.add_(s.fr.data.narrow(0, h * m, h).narrow(1, off + R - 1 - m, nq).t());
  at::Tensor y = ola.reshape({-1});  // padded positions [hop q, hop q_end)
  const int64_t P0 = h * s.q;
  const int64_t lo = std::max(P0, half), hi = at_end ? std::min(h * q_end, half + L) : h * q_end;
  s.q = q_end;
  drop_before(s.fr, s.q - (R - 1));
  if (hi <= lo) return at::empty({0}, at::kFloat);
  at::Tensor env = at::empty({hi - lo}, at::kFloat);
  float* ep = env.data_ptr<float>();
  const int64_t Fl = at_end ? F : std::numeric_limits<int64_t>::max();
  for (int64_t P = lo; P < hi; ++P) ep[P - lo] = envelope(w, P, Fl);
  at::Tensor audio = y.narrow(0, lo - P0, hi - lo).div(env);
  return audio.clamp_(-w.audio_limit, w.audio_limit);
}

}  // namespace

// ---- the graph ---------------------------------------------------------------------

ConvW make_conv(const at::Tensor& weight, const at::Tensor& bias, int dil) {
  ConvW c;
  c.k = static_cast<int>(weight.size(2));
  c.dil = dil;
  c.cout_ = weight.size(0);
  c.cin_ = weight.size(1);
  c.dtype = weight.scalar_type();
  c.bias = bias.reshape({-1, 1}).contiguous();
  if (c.dtype == at::kFloat && chatterbox::kernels::packed_conv_available())
    c.packed = chatterbox::kernels::pack_conv(weight, bias);
  else
    c.taps = weight.permute({2, 0, 1}).contiguous();
  return c;
}

DecoderS decoder_init(const Weights& w) {
  DecoderS s;
  conv_init(s.pre, w.pre);
  conv_init(s.post, w.post);
  s.stft.src = {at::empty({1, 0}, at::kFloat), 0};
  s.stft.done = 0;
  const int64_t R = w.n_fft / w.hop;
  s.istft.fr = {at::zeros({w.n_fft, R - 1}, at::kFloat), -(R - 1)};
  s.istft.q = 0;
  s.st.resize(w.ups.size());
  for (size_t i = 0; i < w.ups.size(); ++i) {
    StageS& st = s.st[i];
    convt_init(st.up, w.ups[i]);
    sconv_init(st.down, w.downs[i]);
    resblock_init(st.src, w.src_rb[i]);
    st.rbs.resize(w.nk);
    st.rb_q.assign(w.nk, Cols{});
    for (int j = 0; j < w.nk; ++j) resblock_init(st.rbs[j], w.rb[i * w.nk + j]);
  }
  return s;
}

F0S f0_init(const Weights& w) {
  F0S s;
  s.convs.resize(w.f0.size());
  for (size_t k = 0; k < w.f0.size(); ++k) conv_init(s.convs[k], w.f0[k]);
  return s;
}

at::Tensor decoder_step(const Weights& w, DecoderS& s, const at::Tensor& mel_ct, const at::Tensor& src, bool at_end,
                        int64_t T, std::vector<at::Tensor>* post_out) {
  const int64_t n_src = at_end ? T * w.spf : -1;
  const int64_t F = at_end ? n_src / w.hop + 1 : -1;  // STFT frames = iSTFT frames
  at::Tensor x = conv_step(w.pre, ActW{}, s.pre, mel_ct, at_end, T);
  at::Tensor fr = stft_step(w, s.stft, src, at_end, n_src);
  int64_t L = T;
  const size_t n_up = w.ups.size();
  for (size_t i = 0; i < n_up; ++i) {
    StageS& st = s.st[i];
    x = convt_step(w.ups[i], w.up_act, st.up, x, at_end, L);
    L *= w.ups[i].u;
    if (i + 1 == n_up) {  // ReflectionPad1d((1, 0)): column 1 first, then all
      ++L;
      if (!st.reflected) {
        push(st.first, x);
        x = none_cols(w.ups[i].cout);
        if (cols(st.first) >= 2) {
          at::Tensor all = st.first.data;
          st.first = {};
          st.reflected = true;
          x = at::cat({all.narrow(1, 1, 1), all}, 1);
        }
      }
    }
    push(st.up_q, x);
    at::Tensor si = sconv_step(w.downs[i], st.down, fr, at_end, F);
    push(st.src_q, resblock_step(w.src_rb[i], st.src, si, at_end, L));
    int64_t n = std::min(cols(st.up_q), cols(st.src_q));
    x = n > 0 ? at::add(take_front(st.up_q, n), take_front(st.src_q, n)) : none_cols(w.ups[i].cout);
    for (int j = 0; j < w.nk; ++j) push(st.rb_q[j], resblock_step(w.rb[i * w.nk + j], st.rbs[j], x, at_end, L));
    n = cols(st.rb_q[0]);
    for (int j = 1; j < w.nk; ++j) n = std::min(n, cols(st.rb_q[j]));
    if (n == 0) {
      x = none_cols(w.ups[i].cout);
      continue;
    }
    // (rb_0 + rb_1 + ...) / nk, in the reference's order.
    at::Tensor xs = w.nk > 1 ? at::add(take_front(st.rb_q[0], n), take_front(st.rb_q[1], n))
                             : take_front(st.rb_q[0], n).clone();
    for (int j = 2; j < w.nk; ++j) xs.add_(take_front(st.rb_q[j], n));
    x = xs.div_(w.nk);
    if (at_end)
      TORCH_CHECK(cols(st.up_q) == 0 && cols(st.src_q) == 0 && cols(st.rb_q[0]) == 0,
                  "HiFT stream: stage ", i, " branches of different lengths");
  }
  at::Tensor post = conv_step(w.post, w.post_act, s.post, x, at_end, L);
  if (post_out && post.size(1) > 0) post_out->push_back(post);
  return istft_step(w, s.istft, post, at_end, F, n_src);
}

at::Tensor f0_step(const Weights& w, F0S& s, const at::Tensor& mel_ct, bool at_end, int64_t T) {
  at::Tensor x = mel_ct;
  ActW elu;
  elu.kind = Act::Elu;
  for (size_t k = 0; k < w.f0.size(); ++k) x = conv_step(w.f0[k], k == 0 ? ActW{} : elu, s.convs[k], x, at_end, T);
  const int64_t m = x.size(1);
  if (m == 0) return at::empty({0}, at::kFloat);
  at::Tensor h = at::empty_like(x);
  activate(elu, x, h);
  return conv_cols(w.cls, h, m, {}).abs_()[0].to(at::kFloat).contiguous();
}

}  // namespace chatterbox::hift::detail
