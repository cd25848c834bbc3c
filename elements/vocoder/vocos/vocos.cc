// Vocos: module tree (for loading by state-dict name and for the reference-
// order baseline), a fast channels-last inference path, and exact streaming.
//
// Fast path. Activations stay [B*T, C] (frame-major) from the embedding to the
// head, so the pointwise convs are plain GEMMs with no transposes; the
// embedding conv is one GEMM over an im2col view; the depthwise conv and the
// following LayerNorm are one fused pass on CPU; the layer scale gamma is
// folded into pwconv2 at load and the residual add is the GEMM's beta=1
// accumulate; the head runs one batched inverse real FFT over all frames and
// overlap-adds with ceil(n_fft/hop) strided slice adds.
//
// Streaming. One backbone output frame depends on input frames t±R
// (R = 3 per kernel-7 conv); one sample u of the untrimmed overlap-add depends
// on the frames t with t*hop <= u < t*hop + n_fft, i.e. only on frames up to
// u/hop. So after N frames every sample u < (N-R)*hop is final. feed() runs
// each layer incrementally (a frame is computed once, as soon as its 7-frame
// window has arrived) and emits exactly the samples an utterance `lookahead`
// frames shorter would end with; drain() flushes the layers with the true
// end's zero padding and overlap-add envelope. The context kept is 6 frames
// per layer plus the time frames whose samples are not all out.
#include "elements/vocoder/vocos/vocos.h"
#include "elements/vocoder/vocos/vocos_modules.h"
#include "gst-plugins/core/kernels/packed_gemm.h"

#include "gst-plugins/core/checkpoint.h"
#include "gst-plugins/core/compute_threads.h"
#include "gst-plugins/core/module_loader.h"

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <ATen/Parallel.h>
#include <torch/nn/module.h>
#include <torch/nn/modules/container/modulelist.h>
#include <torch/nn/modules/conv.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/modules/normalization.h>
#include <torch/types.h>

#include <nlohmann/json.hpp>

#include <cmath>
#include <filesystem>
#include <stdexcept>
#include <vector>

namespace chatterbox {

namespace {

namespace nn = torch::nn;

// The module tree (state-dict names) is shared with the trainer.
using namespace vocos_modules;

// --- fast-path weights ------------------------------------------------------------

struct Block {
  at::Tensor dw_taps;  // [7, C]: tap-major, for the fused channels-last kernel
  at::Tensor dw_w;     // [C, 1, 7]: for at::conv1d on other devices
  at::Tensor dw_b, ln_w, ln_b;
  at::Tensor w1, b1;    // [I, C], [I]
  at::Tensor w2g, b2g;  // gamma * pwconv2: [C, I], [C]
  kernels::PackedLinear w1_small, w2g_small;  // the same, packed for few-row GEMMs (streaming)
};

struct Packed {
  at::Tensor embed_w;  // [dim, 7 * n_mels], column k * n_mels + c = conv weight [o, c, k]
  at::Tensor embed_b, norm_w, norm_b;
  std::vector<Block> blocks;
  at::Tensor final_w, final_b;
  at::Tensor out_w, out_b;  // [n_fft + 2, dim]
  kernels::PackedLinear embed_small, out_small;  // packed for few-row GEMMs (CPUs with AVX2 or AVX-512)
  at::Tensor window;        // [n_fft]
  at::Tensor window_sq_rows;  // [R, hop]: window², zero-padded to R*hop
};

Packed pack(Net& net, const VocosConfig& c) {
  torch::NoGradGuard ng;
  Packed p;
  auto& bb = *net->backbone;
  const int64_t M = c.input_channels;
  p.embed_w = bb.embed->weight.permute({0, 2, 1}).reshape({c.dim, 7 * M}).contiguous();
  p.embed_b = bb.embed->bias;
  p.norm_w = bb.norm->weight;
  p.norm_b = bb.norm->bias;
  for (int i = 0; i < c.num_layers; ++i) {
    auto& b = bb.block(i);
    Block k;
    k.dw_w = b.dwconv->weight;
    k.dw_taps = b.dwconv->weight.reshape({c.dim, 7}).t().contiguous();
    k.dw_b = b.dwconv->bias;
    k.ln_w = b.norm->weight;
    k.ln_b = b.norm->bias;
    k.w1 = b.pwconv1->weight;
    k.b1 = b.pwconv1->bias;
    // x + gamma * (W2 h + b2) = x + (gamma W2) h + gamma b2.
    k.w2g = (b.pwconv2->weight * b.gamma.unsqueeze(1)).contiguous();
    k.b2g = b.pwconv2->bias * b.gamma;
    p.blocks.push_back(k);
  }
  p.final_w = bb.final_layer_norm->weight;
  p.final_b = bb.final_layer_norm->bias;
  p.out_w = net->head->out->weight;
  p.out_b = net->head->out->bias;
  p.window = net->head->istft->window;
  const int64_t R = (c.n_fft + c.hop_length - 1) / c.hop_length;
  p.window_sq_rows = at::constant_pad_nd(p.window.square(), {0, R * c.hop_length - c.n_fft}).reshape({R, c.hop_length});
  if (p.embed_w.is_cpu() && kernels::packed_gemm_available()) {
    p.embed_small = kernels::pack_linear(p.embed_w);
    for (Block& k : p.blocks) {
      k.w1_small = kernels::pack_linear(k.w1);
      k.w2g_small = kernels::pack_linear(k.w2g);
    }
    p.out_small = kernels::pack_linear(p.out_w);
  }
  return p;
}

// Depthwise kernel-7 conv followed by LayerNorm over channels, channels-last,
// one pass per frame. x: [B, T_in, C]; out: [B, T_out, C]. Output row i is
// centred on input row i + shift; input rows outside [0, T_in) are zeros (the
// conv's zero padding, valid only where the window meets the sequence ends).
void dwconv_layernorm_cpu(const float* x, int64_t B, int64_t T_in, int64_t C, int64_t T_out, int64_t shift,
                          const float* taps, const float* bias, const float* g, const float* beta, float eps,
                          float* out) {
  at::parallel_for(0, B * T_out, 8, [&](int64_t begin, int64_t end) {
    std::vector<float> row(C);
    for (int64_t i = begin; i < end; ++i) {
      const int64_t b = i / T_out, t = i % T_out + shift;
      float* __restrict r = row.data();
      for (int64_t c = 0; c < C; ++c) r[c] = bias[c];
      for (int64_t k = 0; k < 7; ++k) {
        const int64_t tt = t + k - 3;
        if (tt < 0 || tt >= T_in) continue;
        const float* __restrict xr = x + (b * T_in + tt) * C;
        const float* __restrict wk = taps + k * C;
        for (int64_t c = 0; c < C; ++c) r[c] += wk[c] * xr[c];
      }
      double sum = 0.0;
      for (int64_t c = 0; c < C; ++c) sum += r[c];
      const float mean = static_cast<float>(sum / C);
      double sq = 0.0;
      for (int64_t c = 0; c < C; ++c) {
        const double d = r[c] - mean;
        sq += d * d;
      }
      const float rstd = static_cast<float>(1.0 / std::sqrt(sq / C + eps));
      float* __restrict o = out + i * C;
      for (int64_t c = 0; c < C; ++c) o[c] = (r[c] - mean) * rstd * g[c] + beta[c];
    }
  });
}

// One kernel-7 layer of the backbone applied to a window of frames: its input
// frames still needed as left context, the output frames already final, and
// the input frames not yet consumed.
struct Stage {
  at::Tensor in;  // [n, C_in] float32 on the model device: input frames [in_start, in_start + n)
  int64_t in_start = 0;
  int64_t done = 0;  // output frames computed (final)
};

at::Device parse_device(const std::string& s) {
  at::Device d(at::kCPU);
  try {
    d = at::Device(s);
  } catch (const c10::Error&) {
    throw ModelError("Vocos: unknown device '" + s + "' (use \"cpu\" or \"cuda\")");
  }
  if (d.is_cuda() && !at::hasCUDA())
    throw ModelError("Vocos: device '" + s +
                     "' requested but CUDA is not available (this LibTorch build has no CUDA support or no GPU is "
                     "visible); use device \"cpu\"");
  if (!d.is_cpu() && !d.is_cuda()) throw ModelError("Vocos: device '" + s + "' is not supported (use \"cpu\" or \"cuda\")");
  return d;
}

// Threading: ComputeThreads / set_compute_threads (compute_threads.h) keep
// LibTorch's OpenMP pool and OpenBLAS's pool from fighting over the cores.
using chatterbox::ComputeThreads;
void apply_thread_option(int threads) { chatterbox::set_compute_threads(threads); }

int64_t floor_div(int64_t a, int64_t b) { return a >= 0 ? a / b : -((-a + b - 1) / b); }

}  // namespace

// --- the shared model --------------------------------------------------------------
//
// Everything here is written once, while loading, and only read afterwards:
// any number of vocoders in any threads run on one model at once. The module
// tree is in eval mode with gradients off and holds no running statistics;
// the fast path reads the packed copies alone.

struct VocosModel::Impl {
  VocosConfig cfg;
  at::Device device{at::kCPU};
  Net net{nullptr};
  Packed p;
  int64_t R = 0;        // receptive frames each side
  int64_t ola_rows = 0;  // ceil(n_fft / hop)

  Impl(const VocosConfig& c, at::Device d) : cfg(c), device(d), net(Net(c)) {
    R = cfg.receptive_frames();
    ola_rows = (cfg.n_fft + cfg.hop_length - 1) / cfg.hop_length;
  }

  void finish_setup() {
    torch::NoGradGuard ng;
    net->eval();
    for (auto& kv : net->named_parameters()) kv.value().set_requires_grad(false);
    if (!device.is_cpu()) {
      try {
        net->to(device);
      } catch (const c10::Error& e) {
        throw ModelError("Vocos: cannot move the model to device '" + device.str() + "': " + e.what_without_backtrace());
      }
    }
    p = pack(net, cfg);
    check_nola();
  }

  // The reference asserts window envelope > 1e-11 on the kept samples; a
  // window/hop pair that violates it cannot be inverted (checked once here,
  // over a span that has both ends and a steady part).
  void check_nola() const {
    const int64_t n = 2 * ola_rows + 1;
    at::Tensor env = envelope(n).to(at::kCPU);
    const int64_t off = cfg.trim_samples();
    const int64_t len = cfg.output_samples(n);
    double m = env.narrow(0, off, len).min().item<double>();
    if (!(m > 1e-11))
      throw ModelError("Vocos: the iSTFT window with n_fft " + std::to_string(cfg.n_fft) + " and hop " +
                       std::to_string(cfg.hop_length) + " has zero overlap-add envelope (NOLA violated)");
  }

  at::TensorOptions fopts() const { return at::TensorOptions().dtype(at::kFloat).device(device); }

  // Rows up to which a GEMM runs on the packed weights instead of BLAS:
  // streaming's calls (BLAS re-packs the weight on every call: with the
  // element's 50-frame chunks, 20 % of the time went to OpenBLAS's copy
  // routine). Whole utterances (hundreds of rows) amortise it and BLAS's
  // blocking wins there.
  static constexpr int64_t kSmallRows = 128;

  // init [M, N] (bias, or residual + bias; ours to write) += x [M, K] W^T.
  static at::Tensor linear_into(at::Tensor init, const at::Tensor& x, const at::Tensor& w,
                                const kernels::PackedLinear& small) {
    if (small.defined() && x.size(0) <= kSmallRows && x.is_cpu() && x.scalar_type() == at::kFloat) {
      at::Tensor xc = x.contiguous();
      TORCH_INTERNAL_ASSERT(init.is_contiguous() && init.size(1) == small.n && xc.size(1) == small.k);
      kernels::packed_gemm_accumulate(small, xc.data_ptr<float>(), xc.stride(0), xc.size(0), init.data_ptr<float>(),
                                   init.stride(0));
      return init;
    }
    return init.addmm_(x, w.t());
  }

  // bias [N] + x [M, K] W^T.
  static at::Tensor linear(const at::Tensor& bias, const at::Tensor& x, const at::Tensor& w,
                           const kernels::PackedLinear& small) {
    if (small.defined() && x.size(0) <= kSmallRows && x.is_cpu() && x.scalar_type() == at::kFloat)
      // A fresh tensor: expand().contiguous() of one row would alias the bias itself.
      return linear_into(at::empty({x.size(0), bias.size(0)}, bias.options()).copy_(bias.expand({x.size(0), bias.size(0)})),
                         x, w, small);
    return at::addmm(bias, x, w.t());
  }

  // The layers take a window x [B, T_in, C] plus lp / rp zero frames on each
  // side (the convs' zero padding where the window meets the sequence ends)
  // and give T_in + lp + rp - 6 frames; output frame i is centred on input
  // frame i + 3 - lp.

  // Stage 0: embedding conv (one GEMM over an im2col view) + LayerNorm.
  at::Tensor embed_stage(const at::Tensor& x, int64_t lp, int64_t rp) const {
    const int64_t B = x.size(0), M = x.size(2), C = cfg.dim;
    at::Tensor xp = at::constant_pad_nd(x, {0, 0, lp, rp}).contiguous();  // [B, Tp, M]
    const int64_t Tp = xp.size(1), T = Tp - 6;
    at::Tensor cols = xp.as_strided({B, T, 7, M}, {Tp * M, M, M, 1}).reshape({B * T, 7 * M});
    at::Tensor h = linear(p.embed_b, cols, p.embed_w, p.embed_small);
    return at::layer_norm(h, {C}, p.norm_w, p.norm_b, static_cast<float>(cfg.layer_norm_eps)).view({B, T, C});
  }

  // Stages 1..L: ConvNeXt block. `inplace`: h is ours and lp = rp = 3, so the
  // residual accumulates into h itself.
  at::Tensor block_stage(const Block& k, const at::Tensor& h, int64_t lp, int64_t rp, bool inplace) const {
    const int64_t B = h.size(0), T_in = h.size(1), C = cfg.dim, T = T_in + lp + rp - 6;
    const float eps = static_cast<float>(cfg.layer_norm_eps);
    at::Tensor y;
    if (h.is_cpu() && h.scalar_type() == at::kFloat) {
      at::Tensor hc = h.contiguous();
      y = at::empty({B * T, C}, fopts());
      dwconv_layernorm_cpu(hc.data_ptr<float>(), B, T_in, C, T, 3 - lp, k.dw_taps.data_ptr<float>(),
                           k.dw_b.data_ptr<float>(), k.ln_w.data_ptr<float>(), k.ln_b.data_ptr<float>(), eps,
                           y.data_ptr<float>());
    } else {
      at::Tensor d = at::conv1d(at::constant_pad_nd(h, {0, 0, lp, rp}).transpose(1, 2), k.dw_w, k.dw_b, at::IntArrayRef{1}, at::IntArrayRef{0}, at::IntArrayRef{1}, C);
      y = at::layer_norm(d.transpose(1, 2).reshape({B * T, C}), {C}, k.ln_w, k.ln_b, eps);
    }
    at::Tensor u = linear(k.b1, y, k.w1, k.w1_small);
    at::gelu_(u);  // exact (erf)
    at::Tensor out;
    if (inplace && lp == 3 && rp == 3 && h.is_contiguous()) {
      out = h.view({B * T, C});
      out.add_(k.b2g);
    } else {
      out = (h.narrow(1, 3 - lp, T) + k.b2g).reshape({B * T, C});
    }
    linear_into(out, u, k.w2g, k.w2g_small);  // x + gamma * pwconv2(...), gamma folded into the weights
    return out.view({B, T, C});
  }

  at::Tensor final_norm(const at::Tensor& h) const {
    return at::layer_norm(h, {cfg.dim}, p.final_w, p.final_b, static_cast<float>(cfg.layer_norm_eps));
  }

  // x: [B, T, n_mels] on device -> [B, T, dim] (after final LayerNorm).
  at::Tensor backbone_cl(const at::Tensor& x) const {
    if (x.size(1) == 0) return at::empty({x.size(0), 0, cfg.dim}, fopts());
    at::Tensor h = embed_stage(x, 3, 3);
    for (const Block& k : p.blocks) h = block_stage(k, h, 3, 3, /*inplace=*/true);
    return final_norm(h);
  }

  // [B, T, dim] -> head.out pre-activations [B*T, n_fft+2].
  at::Tensor head_linear(const at::Tensor& bb) const {
    return linear(p.out_b, bb.reshape({-1, cfg.dim}), p.out_w, p.out_small);
  }

  // [B, T, dim] -> windowed time frames [B, T, n_fft].
  at::Tensor head_frames(const at::Tensor& bb) const {
    const int64_t B = bb.size(0), T = bb.size(1), F = cfg.n_fft / 2 + 1;
    at::Tensor z = head_linear(bb);
    at::Tensor mag = z.narrow(1, 0, F).exp().clamp_max_(cfg.mag_clip_max);
    at::Tensor phase = z.narrow(1, F, F);
    // Vectorised cos/sin, then one interleaving copy (at::polar goes through
    // scalar sincos per element).
    at::Tensor spec = at::complex(phase.cos().mul_(mag), phase.sin().mul_(mag));
    // c2r transform: the imaginary parts of the DC and Nyquist bins are
    // ignored, exactly as torch.fft.irfft does in the reference.
    at::Tensor fr = at::fft_irfft(spec, cfg.n_fft, 1, "backward");
    fr.mul_(p.window);
    return fr.view({B, T, cfg.n_fft});
  }

  // Overlap-added squared window of n frames: [(n + rows - 1) * hop].
  at::Tensor envelope(int64_t n) const {
    at::Tensor e = at::zeros({n + ola_rows - 1, cfg.hop_length}, fopts());
    for (int64_t r = 0; r < ola_rows; ++r) e.narrow(0, r, n).add_(p.window_sq_rows[r]);
    return e.view({-1});
  }

  // Frames fr [B, n, n_fft] whose first is absolute frame t0 -> samples
  // [u0, u1) of the untrimmed overlap-add, divided by the window envelope of
  // the same frames. Exact for every u whose covering frames all lie in
  // [t0, t0+n).
  at::Tensor overlap_add(const at::Tensor& fr, int64_t t0, int64_t u0, int64_t u1) const {
    const int64_t B = fr.size(0), n = fr.size(1), hop = cfg.hop_length, rows = ola_rows;
    at::Tensor f = fr;
    if (rows * hop != cfg.n_fft) f = at::constant_pad_nd(fr, {0, rows * hop - cfg.n_fft});
    at::Tensor y = at::zeros({B, n + rows - 1, hop}, fopts());
    for (int64_t r = 0; r < rows; ++r) y.narrow(1, r, n).add_(f.narrow(2, r * hop, hop));
    const int64_t a = u0 - t0 * hop, len = u1 - u0;
    at::Tensor env = envelope(n).narrow(0, a, len);
    return y.view({B, -1}).narrow(1, a, len).div(env);
  }

  at::Tensor forward(const at::Tensor& mel) const {
    torch::NoGradGuard ng;
    ComputeThreads threads;
    if (mel.dim() != 3 || mel.size(1) != cfg.input_channels)
      throw std::invalid_argument("Vocos forward: expected mel [B, " + std::to_string(cfg.input_channels) +
                                  ", T], got " + shape_str(mel.sizes()));
    const int64_t B = mel.size(0), T = mel.size(2);
    const int64_t total = cfg.output_samples(T);
    if (total == 0) return at::empty({B, 0}, mel.options().dtype(at::kFloat));
    at::Tensor x = mel.to(device, at::kFloat).transpose(1, 2).contiguous();
    at::Tensor fr = head_frames(backbone_cl(x));
    const int64_t off = cfg.trim_samples();
    return overlap_add(fr, 0, off, off + total).to(mel.device());
  }

  // --- streaming ---
  //
  // Each layer runs incrementally: stage s turns its input frames into output
  // frames as soon as their 7-frame receptive field has arrived (3 frames to
  // the right), keeps the 3 frames of left context it still needs, and hands
  // the new frames to stage s+1. The last stage's final frames go through the
  // final LayerNorm and the head to windowed time frames, kept while their
  // samples are not all emitted. So every frame is computed once, exactly as
  // the whole-utterance run computes it; only a reduced lookahead (or a
  // provisional end) computes the unfinished tail, on a copy of the stages.

  // Runs every stage as far as its input allows; at_end: the inputs are
  // complete (zero padding on the right). New final backbone frames come back
  // as windowed time frames [n, n_fft].
  at::Tensor advance(std::vector<Stage>& st, bool at_end) const {
    at::Tensor out;
    for (size_t s = 0; s < st.size(); ++s) {
      Stage& S = st[s];
      const int64_t avail = S.in_start + S.in.size(0);
      const int64_t upto = at_end ? avail : std::max(S.done, avail - 3);
      at::Tensor y;
      if (upto > S.done) {
        const int64_t w0 = std::max<int64_t>(0, S.done - 3), w1 = std::min(avail, upto + 3);
        const int64_t lp = 3 - (S.done - w0), rp = upto + 3 - w1;
        at::Tensor x = S.in.narrow(0, w0 - S.in_start, w1 - w0).unsqueeze(0);
        y = (s == 0 ? embed_stage(x, lp, rp) : block_stage(p.blocks[s - 1], x, lp, rp, false)).squeeze(0);
        S.done = upto;
      }
      const int64_t keep = std::max<int64_t>(0, S.done - 3);
      if (keep > S.in_start) {
        S.in = S.in.narrow(0, keep - S.in_start, S.in.size(0) - (keep - S.in_start));
        S.in_start = keep;
      }
      if (!y.defined() || y.size(0) == 0) {
        // Nothing new for the following stages, but they may still flush.
        if (!at_end) break;
        continue;
      }
      if (s + 1 < st.size()) {
        Stage& next = st[s + 1];
        next.in = next.in.size(0) == 0 ? y : at::cat({next.in, y}, 0);
      } else {
        out = head_frames(final_norm(y).unsqueeze(0)).squeeze(0);
      }
    }
    return out.defined() ? out : at::empty({0, cfg.n_fft}, fopts());
  }
};

// --- streaming state (one per vocoder) ---------------------------------------------

struct VocosVocoder::Impl {
  std::shared_ptr<const VocosModel> model;  // shared, never written
  const VocosModel::Impl& m;
  const VocosConfig& cfg;

  int64_t lookahead = 0;
  int64_t frames_in = 0;
  int64_t samples_out = 0;

  // Committed stream state.
  std::vector<Stage> stages;
  at::Tensor fin;        // [n, n_fft] windowed time frames of final backbone frames [fin_start, fin_count)
  int64_t fin_start = 0;
  int64_t fin_count = 0;

  explicit Impl(std::shared_ptr<const VocosModel> shared)
      : model(std::move(shared)), m(model->impl()), cfg(m.cfg), lookahead(cfg.exact_lookahead_frames()) {
    clear_stream();
  }

  void clear_stream() {
    clear_pipeline();
    frames_in = 0;
    samples_out = 0;
  }

  at::TensorOptions fopts() const { return m.fopts(); }

  void clear_pipeline() {
    stages.assign(m.p.blocks.size() + 1, Stage{});
    for (size_t s = 0; s < stages.size(); ++s)
      stages[s].in = at::empty({0, s == 0 ? cfg.input_channels : cfg.dim}, fopts());
    fin = at::empty({0, cfg.n_fft}, fopts());
    fin_start = 0;
    fin_count = 0;
  }

  int64_t held_frames() const {
    int64_t n = fin.defined() ? fin.size(0) : 0;
    for (const auto& s : stages) n += s.in.size(0);
    return n;
  }

  // Emits trimmed samples [samples_out, min(target, output_samples(frames_in))).
  // at_end: frames_in is the true end of the utterance.
  at::Tensor render(int64_t target, bool at_end) {
    at::Tensor fresh = m.advance(stages, at_end);
    if (fresh.size(0) > 0) {
      fin = fin.size(0) == 0 ? fresh : at::cat({fin, fresh}, 0);
      fin_count += fresh.size(0);
    }
    const int64_t N = frames_in, hop = cfg.hop_length, off = cfg.trim_samples();
    const int64_t end = std::min(target, cfg.output_samples(N));
    if (N == 0 || end <= samples_out) return at::empty({0}, at::kFloat);
    const int64_t u0 = samples_out + off, u1 = end + off;  // untrimmed
    const int64_t t_lo = std::max<int64_t>(0, floor_div(u0 - cfg.n_fft, hop) + 1);
    const int64_t t_hi = std::min(N - 1, (u1 - 1) / hop);
    TORCH_CHECK(t_lo >= fin_start, "Vocos streaming: frame ", t_lo, " was already dropped");
    at::Tensor frames = fin;  // frames [fin_start, fin_count)
    if (t_hi >= fin_count) {
      // Samples beyond the final frames (a lookahead below the exact one):
      // finish a copy of the pipeline as if the utterance ended here.
      std::vector<Stage> provisional = stages;
      frames = at::cat({frames, m.advance(provisional, true)}, 0);  // up to frame N-1
    }
    frames = frames.narrow(0, t_lo - fin_start, t_hi - t_lo + 1);
    at::Tensor out = m.overlap_add(frames.unsqueeze(0), t_lo, u0, u1).view({-1}).to(at::kCPU);
    samples_out = end;
    // The next call starts at frame next_lo or later (samples_out only grows).
    const int64_t next_lo = std::max<int64_t>(0, floor_div(samples_out + off - cfg.n_fft, hop) + 1);
    const int64_t keep = std::min(next_lo, fin_count);
    if (keep > fin_start) {
      fin = fin.narrow(0, keep - fin_start, fin_count - keep);
      fin_start = keep;
    }
    return out;
  }

  at::Tensor feed(const at::Tensor& frames) {
    torch::NoGradGuard ng;
    ComputeThreads threads;
    if (frames.dim() != 2 || frames.size(1) != cfg.input_channels)
      throw std::invalid_argument("Vocos feed: expected frames [T, " + std::to_string(cfg.input_channels) +
                                  "], got " + shape_str(frames.sizes()));
    if (frames.size(0) > 0) {
      at::Tensor f = frames.to(m.device, at::kFloat).contiguous();
      Stage& s0 = stages[0];
      s0.in = s0.in.size(0) == 0 ? f.clone() : at::cat({s0.in, f}, 0);
      frames_in += frames.size(0);
    }
    // What an utterance `lookahead` frames shorter would give in total.
    return render(cfg.output_samples(frames_in - lookahead), false);
  }

  at::Tensor drain() {
    torch::NoGradGuard ng;
    ComputeThreads threads;
    at::Tensor out = render(cfg.output_samples(frames_in), true);
    clear_stream();
    return out;
  }
};

// --- public classes ------------------------------------------------------------

VocosModel::VocosModel(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
VocosModel::~VocosModel() = default;

void set_vocos_threads(int threads) { apply_thread_option(threads); }

std::shared_ptr<const VocosModel> VocosModel::load(const std::string& path, const VocosLoadOptions& opts) {
  namespace fs = std::filesystem;
  std::error_code ec;
  if (!fs::exists(path, ec))
    throw ModelError("Vocos model '" + path + "' does not exist (give a checkpoint file or a directory holding "
                     "pytorch_model.bin and config.yaml)");
  std::string weights = path, yaml;
  if (fs::is_directory(path, ec)) {
    weights.clear();
    for (const char* name : {"pytorch_model.bin", "model.safetensors"}) {
      if (fs::exists(fs::path(path) / name, ec)) {
        weights = (fs::path(path) / name).string();
        break;
      }
    }
    if (weights.empty())
      throw ModelError("Vocos model directory '" + path +
                       "' holds neither pytorch_model.bin nor model.safetensors (the charactr/vocos-mel-24khz layout)");
  }
  fs::path sibling = fs::path(weights).parent_path() / "config.yaml";
  if (fs::exists(sibling, ec)) yaml = sibling.string();

  const at::Device device = parse_device(opts.device);
  apply_thread_option(opts.threads);

  Checkpoint ck;
  try {
    ck = Checkpoint::open(weights);
  } catch (const ModelError&) {
    throw;
  } catch (const std::exception& e) {
    throw ModelError("Vocos model '" + weights + "' could not be read: " + e.what());
  }
  VocosConfig cfg = resolve_vocos_config(ck, yaml);
  auto impl = std::make_unique<Impl>(cfg, device);
  // The iSTFT window is a persistent buffer in the reference (present in the
  // published checkpoint); a file without it gets the same periodic Hann.
  load_module(*impl->net, ck, LoadOptions{{"head.istft.window"}});
  for (const auto& kv : impl->net->named_parameters()) {
    if (!at::isfinite(kv.value()).all().item<bool>())
      throw ModelError("Vocos checkpoint '" + weights + "': tensor '" + kv.key() +
                       "' holds NaN or infinite values; the file is damaged");
  }
  impl->finish_setup();
  return std::shared_ptr<const VocosModel>(new VocosModel(std::move(impl)));
}

std::shared_ptr<const VocosModel> VocosModel::random(const VocosConfig& cfg, uint64_t seed,
                                                     const VocosLoadOptions& opts) {
  cfg.validate();
  const at::Device device = parse_device(opts.device);
  apply_thread_option(opts.threads);
  auto impl = std::make_unique<Impl>(cfg, device);
  {
    torch::NoGradGuard ng;
    // The fixtures' recipe: weights randn * gain / sqrt(fan_in) (gain 0.03 for
    // the embedding, 1.35 for head.out, else 1), biases randn * 0.02,
    // LayerNorm weights 1 + randn * 0.1, gamma randn * 0.5.
    at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(seed);
    for (auto& kv : impl->net->named_parameters()) {
      const std::string& name = kv.key();
      at::Tensor& t = kv.value();
      at::Tensor r = at::randn(t.sizes(), gen, at::TensorOptions().dtype(at::kFloat));
      auto ends = [&](const std::string& s) {
        return name.size() >= s.size() && name.compare(name.size() - s.size(), s.size(), s) == 0;
      };
      if (ends("gamma")) {
        r.mul_(0.5);
      } else if (ends(".bias")) {
        r.mul_(0.02);
      } else if (t.dim() == 1) {  // LayerNorm weight
        r.mul_(0.1).add_(1.0);
      } else {
        const int64_t fan_in = t.size(1) * (t.dim() == 3 ? t.size(2) : 1);
        double gain = name == "backbone.embed.weight" ? 0.03 : name == "head.out.weight" ? 1.35 : 1.0;
        r.mul_(gain / std::sqrt(static_cast<double>(fan_in)));
      }
      t.copy_(r);
    }
  }
  impl->finish_setup();
  return std::shared_ptr<const VocosModel>(new VocosModel(std::move(impl)));
}

const VocosConfig& VocosModel::config() const { return impl_->cfg; }
std::string VocosModel::device() const { return impl_->device.str(); }
const void* VocosModel::weights_data() const { return impl_->p.embed_w.data_ptr(); }

std::map<std::string, at::Tensor> VocosModel::state_dict() const {
  std::map<std::string, at::Tensor> out;
  for (const auto& kv : impl_->net->named_parameters()) out[kv.key()] = kv.value().detach().to(at::kCPU).clone();
  for (const auto& kv : impl_->net->named_buffers()) out[kv.key()] = kv.value().detach().to(at::kCPU).clone();
  return out;
}

VocosVocoder::VocosVocoder(std::shared_ptr<const VocosModel> model) {
  if (!model) throw std::invalid_argument("VocosVocoder: no model");
  impl_ = std::make_unique<Impl>(std::move(model));
}
VocosVocoder::~VocosVocoder() = default;

std::unique_ptr<VocosVocoder> VocosVocoder::load(const std::string& path, const VocosLoadOptions& opts) {
  return std::make_unique<VocosVocoder>(VocosModel::load(path, opts));
}

std::unique_ptr<VocosVocoder> VocosVocoder::random(const VocosConfig& cfg, uint64_t seed,
                                                   const VocosLoadOptions& opts) {
  return std::make_unique<VocosVocoder>(VocosModel::random(cfg, seed, opts));
}

const std::shared_ptr<const VocosModel>& VocosVocoder::model() const { return impl_->model; }

const VocosConfig& VocosVocoder::config() const { return impl_->cfg; }
std::string VocosVocoder::device() const { return impl_->model->device(); }
std::map<std::string, at::Tensor> VocosVocoder::state_dict() const { return impl_->model->state_dict(); }

const MelFormat& VocosVocoder::mel_format() const { return impl_->cfg.mel; }
int64_t VocosVocoder::default_lookahead_frames() const { return impl_->cfg.exact_lookahead_frames(); }
int64_t VocosVocoder::lookahead_frames() const { return impl_->lookahead; }
void VocosVocoder::set_lookahead_frames(int64_t frames) {
  if (frames < 0) throw std::invalid_argument("Vocos: lookahead must be >= 0 frames");
  impl_->lookahead = frames;
}
at::Tensor VocosVocoder::feed(const at::Tensor& frames) { return impl_->feed(frames); }
at::Tensor VocosVocoder::drain() { return impl_->drain(); }
void VocosVocoder::reset() { impl_->clear_stream(); }
int64_t VocosVocoder::samples_out() const { return impl_->samples_out; }
int64_t VocosVocoder::frames_in() const { return impl_->frames_in; }
int64_t VocosVocoder::buffered_frames() const { return impl_->held_frames(); }
at::Tensor VocosVocoder::forward(const at::Tensor& mel) { return impl_->m.forward(mel); }

at::Tensor VocosVocoder::backbone(const at::Tensor& mel) const {
  torch::NoGradGuard ng;
  if (mel.dim() != 3 || mel.size(1) != impl_->cfg.input_channels)
    throw std::invalid_argument("Vocos backbone: expected mel [B, " + std::to_string(impl_->cfg.input_channels) +
                                ", T], got " + shape_str(mel.sizes()));
  ComputeThreads threads;
  at::Tensor x = mel.to(impl_->m.device, at::kFloat).transpose(1, 2).contiguous();
  return impl_->m.backbone_cl(x).to(mel.device());
}

std::pair<at::Tensor, at::Tensor> VocosVocoder::head_mag_phase(const at::Tensor& backbone_out) const {
  torch::NoGradGuard ng;
  const auto& c = impl_->cfg;
  if (backbone_out.dim() != 3 || backbone_out.size(2) != c.dim)
    throw std::invalid_argument("Vocos head: expected [B, T, " + std::to_string(c.dim) + "], got " +
                                shape_str(backbone_out.sizes()));
  const int64_t B = backbone_out.size(0), T = backbone_out.size(1), F = c.n_fft / 2 + 1;
  at::Tensor z = impl_->m.head_linear(backbone_out.to(impl_->m.device, at::kFloat)).view({B, T, c.n_fft + 2});
  at::Tensor mag = z.narrow(2, 0, F).exp().clamp_max_(c.mag_clip_max);
  at::Tensor phase = z.narrow(2, F, F);
  return {mag.transpose(1, 2).to(backbone_out.device()), phase.transpose(1, 2).to(backbone_out.device())};
}

at::Tensor VocosVocoder::forward_reference(const at::Tensor& mel_in) const {
  torch::NoGradGuard ng;
  ComputeThreads threads;  // same thread policy, so timings compare operation order only
  const auto& c = impl_->cfg;
  // The module tree's forward() methods are not const; they write nothing.
  VocosModel::Impl& M = impl_->model->impl();
  auto& bb = *M.net->backbone;
  auto& head = *M.net->head;
  at::Tensor x = mel_in.to(impl_->m.device, at::kFloat);
  // VocosBackbone.forward
  x = bb.embed->forward(x);
  x = bb.norm->forward(x.transpose(1, 2)).transpose(1, 2);
  for (int i = 0; i < c.num_layers; ++i) {
    auto& b = bb.block(i);
    at::Tensor residual = x;
    at::Tensor y = b.dwconv->forward(x).transpose(1, 2);
    y = b.norm->forward(y);
    y = b.pwconv1->forward(y);
    y = at::gelu(y);
    y = b.pwconv2->forward(y);
    y = b.gamma * y;
    x = residual + y.transpose(1, 2);
  }
  x = bb.final_layer_norm->forward(x.transpose(1, 2));
  // ISTFTHead.forward
  at::Tensor z = head.out->forward(x).transpose(1, 2);
  auto parts = z.chunk(2, 1);
  at::Tensor mag = at::clamp_max(at::exp(parts[0]), c.mag_clip_max);
  at::Tensor S = mag * at::complex(at::cos(parts[1]), at::sin(parts[1]));
  const at::Tensor& window = head.istft->window;
  const int64_t T = S.size(2);
  if (c.padding == "center")
    return at::istft(S, c.n_fft, c.hop_length, c.win_length, window, /*center=*/true, /*normalized=*/false,
                     /*onesided=*/c10::nullopt, /*length=*/c10::nullopt, /*return_complex=*/false)
        .to(mel_in.device());
  const int64_t pad = (c.win_length - c.hop_length) / 2;
  at::Tensor ifft = at::fft_irfft(S, c.n_fft, 1, "backward") * window.view({1, -1, 1});
  const int64_t size = (T - 1) * c.hop_length + c.win_length;
  at::Tensor y = at::col2im(ifft, {1, size}, {1, c.win_length}, {1, 1}, {0, 0}, {1, c.hop_length})
                     .select(1, 0)
                     .select(1, 0)
                     .slice(1, pad, size - pad);
  at::Tensor wsq = window.square().expand({1, T, -1}).transpose(1, 2);
  at::Tensor env = at::col2im(wsq, {1, size}, {1, c.win_length}, {1, 1}, {0, 0}, {1, c.hop_length})
                       .view({-1})
                       .slice(0, pad, size - pad);
  return (y / env).to(mel_in.device());
}

}  // namespace chatterbox
