// AdamW as torch.optim.AdamW updates (decoupled weight decay, bias-corrected
// moments), over a named parameter list, with its moments saved to and read
// from checkpoint tensors "<prefix>exp_avg.<name>" / "<prefix>exp_avg_sq.<name>".
// The trainer keeps one for the generator and one for the discriminators.
#pragma once

#include "gst-plugins/core/checkpoint.h"

#include <ATen/ATen.h>
#include <torch/nn/module.h>
#include <torch/types.h>

#include <cmath>
#include <map>
#include <string>
#include <vector>

namespace chatterbox::vocos_train {

struct AdamW {
  double beta1 = 0.8, beta2 = 0.9, eps = 1e-8, weight_decay = 0.01;
  std::vector<std::string> names;
  std::vector<at::Tensor> params, m1, m2;

  // Moments start at zero, or come from `ck` (when given) under `prefix`.
  AdamW(torch::nn::Module& module, double b1, double b2, double e, double wd, const Checkpoint* ck = nullptr,
        const std::string& prefix = "optim.")
      : beta1(b1), beta2(b2), eps(e), weight_decay(wd) {
    for (auto& kv : module.named_parameters()) {
      names.push_back(kv.key());
      params.push_back(kv.value());
      if (ck) {
        m1.push_back(ck->get(prefix + "exp_avg." + kv.key(), kv.value().sizes().vec()).clone());
        m2.push_back(ck->get(prefix + "exp_avg_sq." + kv.key(), kv.value().sizes().vec()).clone());
      } else {
        m1.push_back(at::zeros_like(kv.value()));
        m2.push_back(at::zeros_like(kv.value()));
      }
    }
  }

  void zero_grad() {
    for (auto& p : params)
      if (p.grad().defined()) p.grad().zero_();
  }

  // Global L2 norm of the current gradients (parameters without one count 0).
  double grad_norm() const {
    torch::NoGradGuard ng;
    double s = 0;
    for (auto& p : params)
      if (p.grad().defined()) s += p.grad().square().sum().item<double>();
    return std::sqrt(s);
  }

  // One update at learning rate `lr`; `t` = 1-based count of this optimizer's
  // updates (bias correction); gradients are scaled by `clip_scale` first.
  void step(double lr, int64_t t, double clip_scale = 1.0) {
    torch::NoGradGuard ng;
    const double bc1 = 1 - std::pow(beta1, static_cast<double>(t)), bc2 = 1 - std::pow(beta2, static_cast<double>(t));
    for (size_t i = 0; i < params.size(); ++i) {
      if (!params[i].grad().defined()) continue;
      at::Tensor g = clip_scale != 1.0 ? params[i].grad() * clip_scale : params[i].grad();
      params[i].mul_(1 - lr * weight_decay);
      m1[i].mul_(beta1).add_(g, 1 - beta1);
      m2[i].mul_(beta2).addcmul_(g, g, 1 - beta2);
      at::Tensor denom = (m2[i] / bc2).sqrt_().add_(eps);
      params[i].addcdiv_(m1[i], denom, -lr / bc1);
    }
  }

  void save_to(std::map<std::string, at::Tensor>& out, const std::string& prefix = "optim.") const {
    for (size_t i = 0; i < params.size(); ++i) {
      out[prefix + "exp_avg." + names[i]] = m1[i];
      out[prefix + "exp_avg_sq." + names[i]] = m2[i];
    }
  }

  int64_t numel() const {
    int64_t n = 0;
    for (auto& p : params) n += p.numel();
    return n;
  }
};

}  // namespace chatterbox::vocos_train
