// CAMPPlus: module tree (names mirror the reference state dict under
// `speaker_encoder.`), size inference and the eval-mode forward.
#include "elements/voice/xvector/campplus.h"

#include "elements/voice/xvector/kaldi_fbank.h"
#include "gst-plugins/core/compute_threads.h"
#include "gst-plugins/core/module_loader.h"

#include <ATen/ATen.h>
#include <c10/core/InferenceMode.h>
#include <torch/nn/module.h>
#include <torch/nn/modules/batchnorm.h>
#include <torch/nn/modules/conv.h>

#include <algorithm>
#include <vector>

namespace chatterbox::voice {

namespace {

using Cfg = CAMPPlusConfig;
using torch::nn::BatchNorm1d;
using torch::nn::BatchNorm2d;
using torch::nn::Conv1d;
using torch::nn::Conv1dOptions;
using torch::nn::Conv2d;
using torch::nn::Conv2dOptions;

struct Node : torch::nn::Module {};

// get_nonlinear("batchnorm-relu") / ("batchnorm_"): a Sequential whose only
// parameters are its "batchnorm"; the ReLU is applied by the caller.
struct Nonlinear : torch::nn::Module {
  explicit Nonlinear(int64_t channels, bool affine = true) {
    bn = register_module("batchnorm", BatchNorm1d(torch::nn::BatchNorm1dOptions(channels).affine(affine)));
  }
  BatchNorm1d bn{nullptr};
};

struct BasicResBlock : torch::nn::Module {
  BasicResBlock(int64_t in, int64_t planes, int64_t stride) {
    conv1 = register_module("conv1", Conv2d(Conv2dOptions(in, planes, 3).stride({stride, 1}).padding(1).bias(false)));
    bn1 = register_module("bn1", BatchNorm2d(planes));
    conv2 = register_module("conv2", Conv2d(Conv2dOptions(planes, planes, 3).stride(1).padding(1).bias(false)));
    bn2 = register_module("bn2", BatchNorm2d(planes));
    if (stride != 1 || in != planes) {
      shortcut = register_module("shortcut", std::make_shared<Node>());
      sc_conv = shortcut->register_module("0", Conv2d(Conv2dOptions(in, planes, 1).stride({stride, 1}).bias(false)));
      sc_bn = shortcut->register_module("1", BatchNorm2d(planes));
    }
  }
  at::Tensor forward(const at::Tensor& x) {
    at::Tensor out = at::relu(bn1->forward(conv1->forward(x)));
    out = bn2->forward(conv2->forward(out));
    out = out + (shortcut ? sc_bn->forward(sc_conv->forward(x)) : x);
    return at::relu(out);
  }
  Conv2d conv1{nullptr}, conv2{nullptr}, sc_conv{nullptr};
  BatchNorm2d bn1{nullptr}, bn2{nullptr}, sc_bn{nullptr};
  std::shared_ptr<Node> shortcut;
};

// FCM: layer1 and layer2 both have num_blocks[0] = 2 blocks, stride 2 first.
struct FCM : torch::nn::Module {
  explicit FCM(int64_t m) {
    conv1 = register_module("conv1", Conv2d(Conv2dOptions(1, m, 3).stride(1).padding(1).bias(false)));
    bn1 = register_module("bn1", BatchNorm2d(m));
    for (const char* name : {"layer1", "layer2"}) {
      auto layer = register_module(name, std::make_shared<Node>());
      blocks.push_back(layer->register_module("0", std::make_shared<BasicResBlock>(m, m, 2)));
      blocks.push_back(layer->register_module("1", std::make_shared<BasicResBlock>(m, m, 1)));
    }
    conv2 = register_module("conv2", Conv2d(Conv2dOptions(m, m, 3).stride({2, 1}).padding(1).bias(false)));
    bn2 = register_module("bn2", BatchNorm2d(m));
  }
  // x [1, F, T] -> [1, m * F/8, T]
  at::Tensor forward(const at::Tensor& x) {
    at::Tensor out = at::relu(bn1->forward(conv1->forward(x.unsqueeze(1))));
    for (auto& b : blocks) out = b->forward(out);
    out = at::relu(bn2->forward(conv2->forward(out)));
    return out.reshape({out.size(0), out.size(1) * out.size(2), out.size(3)});
  }
  Conv2d conv1{nullptr}, conv2{nullptr};
  BatchNorm2d bn1{nullptr}, bn2{nullptr};
  std::vector<std::shared_ptr<BasicResBlock>> blocks;
};

struct CAMLayer : torch::nn::Module {
  CAMLayer(int64_t bn_channels, int64_t out_channels, int64_t dilation) {
    linear_local = register_module(
        "linear_local", Conv1d(Conv1dOptions(bn_channels, out_channels, Cfg::kKernel)
                                   .padding((Cfg::kKernel - 1) / 2 * dilation)
                                   .dilation(dilation)
                                   .bias(false)));
    linear1 = register_module("linear1", Conv1d(Conv1dOptions(bn_channels, bn_channels / 2, 1)));
    linear2 = register_module("linear2", Conv1d(Conv1dOptions(bn_channels / 2, out_channels, 1)));
  }
  at::Tensor forward(const at::Tensor& x) {
    at::Tensor y = linear_local->forward(x);
    // seg_pooling: 100-frame averages (the last one over what is left,
    // avg_pool1d ceil_mode), each repeated over its frames.
    const int64_t T = x.size(-1);
    at::Tensor seg = at::avg_pool1d(x, {Cfg::kSegLen}, {Cfg::kSegLen}, {0}, /*ceil_mode=*/true);
    seg = seg.unsqueeze(-1).expand({seg.size(0), seg.size(1), seg.size(2), Cfg::kSegLen});
    seg = seg.reshape({x.size(0), x.size(1), -1}).slice(-1, 0, T);
    at::Tensor context = x.mean(-1, /*keepdim=*/true) + seg;
    context = at::relu(linear1->forward(context));
    return y * at::sigmoid(linear2->forward(context));
  }
  Conv1d linear_local{nullptr}, linear1{nullptr}, linear2{nullptr};
};

struct CAMDenseTDNNLayer : torch::nn::Module {
  CAMDenseTDNNLayer(int64_t in, int64_t out, int64_t bn_channels, int64_t dilation) {
    nonlinear1 = register_module("nonlinear1", std::make_shared<Nonlinear>(in));
    linear1 = register_module("linear1", Conv1d(Conv1dOptions(in, bn_channels, 1).bias(false)));
    nonlinear2 = register_module("nonlinear2", std::make_shared<Nonlinear>(bn_channels));
    cam_layer = register_module("cam_layer", std::make_shared<CAMLayer>(bn_channels, out, dilation));
  }
  at::Tensor forward(const at::Tensor& x) {
    at::Tensor h = linear1->forward(at::relu(nonlinear1->bn->forward(x)));
    return cam_layer->forward(at::relu(nonlinear2->bn->forward(h)));
  }
  std::shared_ptr<Nonlinear> nonlinear1, nonlinear2;
  Conv1d linear1{nullptr};
  std::shared_ptr<CAMLayer> cam_layer;
};

struct TransitLayer : torch::nn::Module {
  TransitLayer(int64_t in, int64_t out) {
    nonlinear = register_module("nonlinear", std::make_shared<Nonlinear>(in));
    linear = register_module("linear", Conv1d(Conv1dOptions(in, out, 1).bias(false)));
  }
  at::Tensor forward(const at::Tensor& x) { return linear->forward(at::relu(nonlinear->bn->forward(x))); }
  std::shared_ptr<Nonlinear> nonlinear;
  Conv1d linear{nullptr};
};

struct CAMPPlusModel : torch::nn::Module {
  explicit CAMPPlusModel(const Cfg& c) {
    head = register_module("head", std::make_shared<FCM>(c.m_channels));
    xvector = register_module("xvector", std::make_shared<Node>());
    tdnn = xvector->register_module("tdnn", std::make_shared<Node>());
    tdnn_linear = tdnn->register_module(
        "linear", Conv1d(Conv1dOptions(c.m_channels * (c.feat_dim / 8), c.init_channels, 5).stride(2).padding(2).bias(false)));
    tdnn_nonlinear = tdnn->register_module("nonlinear", std::make_shared<Nonlinear>(c.init_channels));
    int64_t channels = c.init_channels;
    for (size_t b = 0; b < c.block_layers.size(); ++b) {
      auto block = xvector->register_module("block" + std::to_string(b + 1), std::make_shared<Node>());
      std::vector<std::shared_ptr<CAMDenseTDNNLayer>> layers;
      for (int64_t i = 0; i < c.block_layers[b]; ++i)
        layers.push_back(block->register_module(
            "tdnnd" + std::to_string(i + 1),
            std::make_shared<CAMDenseTDNNLayer>(channels + i * c.growth_rate, c.growth_rate,
                                                c.bn_size * c.growth_rate, Cfg::kDilations[b])));
      blocks.push_back(layers);
      channels += c.block_layers[b] * c.growth_rate;
      transits.push_back(xvector->register_module("transit" + std::to_string(b + 1),
                                                  std::make_shared<TransitLayer>(channels, channels / 2)));
      channels /= 2;
    }
    out_nonlinear = xvector->register_module("out_nonlinear", std::make_shared<Nonlinear>(channels));
    dense = xvector->register_module("dense", std::make_shared<Node>());
    dense_linear = dense->register_module("linear", Conv1d(Conv1dOptions(2 * channels, c.embedding_size, 1).bias(false)));
    dense_nonlinear = dense->register_module("nonlinear", std::make_shared<Nonlinear>(c.embedding_size, /*affine=*/false));
  }
  std::shared_ptr<FCM> head;
  std::shared_ptr<Node> xvector, tdnn, dense;
  Conv1d tdnn_linear{nullptr}, dense_linear{nullptr};
  std::shared_ptr<Nonlinear> tdnn_nonlinear, out_nonlinear, dense_nonlinear;
  std::vector<std::vector<std::shared_ptr<CAMDenseTDNNLayer>>> blocks;
  std::vector<std::shared_ptr<TransitLayer>> transits;
};

int64_t count_indexed(const Checkpoint& ck, const std::string& stem) {
  int64_t n = 0;
  for (const auto& k : ck.keys()) {
    if (k.compare(0, stem.size(), stem) != 0) continue;
    const size_t dot = k.find('.', stem.size());
    if (dot == std::string::npos) continue;
    const std::string idx = k.substr(stem.size(), dot - stem.size());
    if (idx.empty() || idx.find_first_not_of("0123456789") != std::string::npos) continue;
    n = std::max<int64_t>(n, std::stoll(idx));
  }
  return n;
}

std::vector<int64_t> shape_of(const Checkpoint& ck, const std::string& name, size_t dims) {
  const auto s = ck.get(name).sizes().vec();
  if (s.size() != dims)
    throw ModelError("checkpoint '" + ck.path() + "': tensor '" + ck.prefix() + name + "' has shape " +
                     shape_str(s) + ", expected " + std::to_string(dims) + " dimensions");
  return s;
}

Cfg infer_config(const Checkpoint& ck) {
  Cfg c;
  c.m_channels = shape_of(ck, "head.conv1.weight", 4)[0];
  c.init_channels = shape_of(ck, "xvector.tdnn.linear.weight", 3)[0];
  const auto local = shape_of(ck, "xvector.block1.tdnnd1.cam_layer.linear_local.weight", 3);
  c.growth_rate = local[0];
  if (c.growth_rate <= 0 || local[1] % c.growth_rate != 0)
    throw ModelError("checkpoint '" + ck.path() + "': tensor '" + ck.prefix() +
                     "xvector.block1.tdnnd1.cam_layer.linear_local.weight' has shape " + shape_str(local) +
                     ": its input width is not a multiple of the growth rate (bn_size * growth_rate)");
  c.bn_size = local[1] / c.growth_rate;
  c.embedding_size = shape_of(ck, "xvector.dense.linear.weight", 3)[0];
  for (size_t b = 0; b < c.block_layers.size(); ++b) {
    const std::string stem = "xvector.block" + std::to_string(b + 1) + ".tdnnd";
    c.block_layers[b] = count_indexed(ck, stem);
    if (c.block_layers[b] == 0)
      throw ModelError("checkpoint '" + ck.path() + "' has no tensor '" + ck.prefix() + stem +
                       "1.linear1.weight': dense block " + std::to_string(b + 1) + " is missing");
  }
  return c;
}

}  // namespace

struct CAMPPlus::Impl {
  Cfg cfg;
  std::string prefix;
  std::shared_ptr<CAMPPlusModel> model;
  at::ScalarType dtype = at::kFloat;
};

CAMPPlus::CAMPPlus(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
CAMPPlus::CAMPPlus(CAMPPlus&&) noexcept = default;
CAMPPlus& CAMPPlus::operator=(CAMPPlus&&) noexcept = default;
CAMPPlus::~CAMPPlus() = default;

CAMPPlus CAMPPlus::load(const std::string& path, at::ScalarType dtype) { return load(Checkpoint::open(path), dtype); }

CAMPPlus CAMPPlus::load(const Checkpoint& ckpt, at::ScalarType dtype) {
  std::string prefix;
  if (ckpt.has("speaker_encoder.head.conv1.weight"))
    prefix = "speaker_encoder.";
  else if (!ckpt.has("head.conv1.weight"))
    throw ModelError("checkpoint '" + ckpt.path() + "' holds no CAMPPlus speaker encoder: neither '" + ckpt.prefix() +
                     "speaker_encoder.head.conv1.weight' (s3gen.safetensors) nor '" + ckpt.prefix() +
                     "head.conv1.weight' (bare state dict) is present");
  const Checkpoint ck = ckpt.sub(prefix);
  auto impl = std::make_unique<Impl>();
  impl->prefix = prefix;
  impl->cfg = infer_config(ck);
  impl->model = std::make_shared<CAMPPlusModel>(impl->cfg);
  load_module(*impl->model, ck);
  impl->model->eval();
  if (dtype != at::kFloat) impl->model->to(dtype);
  impl->dtype = dtype;
  return CAMPPlus(std::move(impl));
}

const CAMPPlusConfig& CAMPPlus::config() const { return impl_->cfg; }
const std::string& CAMPPlus::prefix() const { return impl_->prefix; }

at::Tensor CAMPPlus::features(const at::Tensor& wave_16k) {
  c10::InferenceMode guard;
  ComputeThreads threads;  // the project thread policy (compute_threads.h)
  at::Tensor f = kaldi_fbank(wave_16k);
  if (f.size(0) == 0)
    throw ModelError("CAMPPlus: the audio has " + std::to_string(wave_16k.numel()) +
                     " samples, shorter than one 25 ms fbank frame (400 at 16 kHz)");
  return f - f.mean(0, /*keepdim=*/true);
}

at::Tensor CAMPPlus::forward(const at::Tensor& feats_in, std::map<std::string, at::Tensor>* trace) const {
  c10::InferenceMode guard;
  ComputeThreads threads;  // the project thread policy (compute_threads.h)
  const Cfg& c = impl_->cfg;
  at::Tensor feats = feats_in.to(impl_->dtype);
  if (feats.dim() == 2) feats = feats.unsqueeze(0);
  if (feats.dim() != 3 || feats.size(0) != 1 || feats.size(2) != c.feat_dim)
    throw ModelError("CAMPPlus: features have shape " + shape_str(feats.sizes()) + ", expected [1, frames, " +
                     std::to_string(c.feat_dim) + "]");
  auto keep = [&](const std::string& name, const at::Tensor& t) {
    if (trace) (*trace)[name] = t;
  };
  CAMPPlusModel& m = *impl_->model;
  at::Tensor x = m.head->forward(feats.permute({0, 2, 1}).contiguous());
  keep("fcm_out", x);
  x = at::relu(m.tdnn_nonlinear->bn->forward(m.tdnn_linear->forward(x)));
  keep("xvector_tdnn_out", x);
  for (size_t b = 0; b < m.blocks.size(); ++b) {
    for (auto& layer : m.blocks[b]) x = at::cat({x, layer->forward(x)}, 1);
    keep("xvector_block" + std::to_string(b + 1) + "_out", x);
    x = m.transits[b]->forward(x);
    keep("xvector_transit" + std::to_string(b + 1) + "_out", x);
  }
  x = at::relu(m.out_nonlinear->bn->forward(x));
  keep("xvector_out_nonlinear_out", x);
  // statistics_pooling: mean ++ unbiased std over time.
  x = at::cat({x.mean(-1), x.std(-1, /*unbiased=*/true)}, -1);
  keep("xvector_stats_out", x);
  x = m.dense_linear->forward(x.unsqueeze(-1)).squeeze(-1);
  return m.dense_nonlinear->bn->forward(x);
}

at::Tensor CAMPPlus::embed(const at::Tensor& wave_16k) const { return forward(features(wave_16k)); }

}  // namespace chatterbox::voice
