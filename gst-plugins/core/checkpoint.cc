#include "gst-plugins/core/checkpoint.h"

#include <ATen/ATen.h>
#include <nlohmann/json.hpp>

#include <cmath>

namespace chatterbox {

at::Tensor fold_weight_norm(const at::Tensor& g, const at::Tensor& v, int64_t dim) {
  // ||v|| over every dim except `dim`, kept broadcastable against v.
  std::vector<int64_t> reduce;
  for (int64_t d = 0; d < v.dim(); ++d)
    if (d != dim) reduce.push_back(d);
  at::Tensor vd = v.to(at::kDouble);
  at::Tensor norm = vd.pow(2).sum(reduce, /*keepdim=*/true).sqrt();
  return (g.to(at::kDouble).reshape(norm.sizes()) * vd / norm).to(at::kFloat).contiguous();
}

Checkpoint::Checkpoint(std::shared_ptr<const TensorStore> store, std::string prefix)
    : store_(std::move(store)), prefix_(std::move(prefix)) {}

Checkpoint Checkpoint::open(const std::string& path) {
  return Checkpoint(std::make_shared<const TensorStore>(read_tensor_file(path)));
}

Checkpoint Checkpoint::sub(const std::string& prefix) const { return Checkpoint(store_, prefix_ + prefix); }

namespace {
// "a.b.weight" -> ("a.b", "weight")
bool split_last(const std::string& name, std::string& module, std::string& leaf) {
  auto p = name.rfind('.');
  if (p == std::string::npos) {
    module.clear();
    leaf = name;
    return true;
  }
  module = name.substr(0, p);
  leaf = name.substr(p + 1);
  return true;
}
const at::Tensor* find(const TensorStore& s, const std::string& key) {
  auto it = s.tensors.find(key);
  return it == s.tensors.end() ? nullptr : &it->second;
}
}  // namespace

bool Checkpoint::has(const std::string& name) const {
  if (!store_) return false;
  const std::string key = prefix_ + name;
  if (find(*store_, key)) return true;
  std::string mod, leaf;
  split_last(key, mod, leaf);
  std::string base = mod.empty() ? "" : mod + ".";
  if (find(*store_, base + "parametrizations." + leaf + ".original0")) return true;
  return find(*store_, base + leaf + "_g") != nullptr;
}

at::Tensor Checkpoint::get_raw(const std::string& name) const {
  if (!store_) throw ModelError("no checkpoint loaded (asked for '" + name + "')");
  const std::string key = prefix_ + name;
  if (const at::Tensor* t = find(*store_, key)) return *t;
  std::string mod, leaf;
  split_last(key, mod, leaf);
  std::string base = mod.empty() ? "" : mod + ".";
  const at::Tensor* g = find(*store_, base + "parametrizations." + leaf + ".original0");
  const at::Tensor* v = find(*store_, base + "parametrizations." + leaf + ".original1");
  if (!g) {
    g = find(*store_, base + leaf + "_g");
    v = find(*store_, base + leaf + "_v");
  }
  if (g && v) return fold_weight_norm(*g, *v, 0);
  if (g || v)
    throw ModelError("checkpoint '" + store_->path + "': weight-normed tensor '" + key + "' has only one of g/v");
  throw ModelError("checkpoint '" + store_->path + "' has no tensor '" + key + "'");
}

at::Tensor Checkpoint::get(const std::string& name, const std::vector<int64_t>& shape, int64_t wn_dim) const {
  at::Tensor t;
  const std::string key = prefix_ + name;
  if (wn_dim != 0 && store_ && !find(*store_, key)) {
    // Weight norm kept on another dim (ConvTranspose1d: g is [in,1,1]).
    std::string mod, leaf;
    split_last(key, mod, leaf);
    std::string base = mod.empty() ? "" : mod + ".";
    const at::Tensor* g = find(*store_, base + "parametrizations." + leaf + ".original0");
    const at::Tensor* v = find(*store_, base + "parametrizations." + leaf + ".original1");
    if (!g) {
      g = find(*store_, base + leaf + "_g");
      v = find(*store_, base + leaf + "_v");
    }
    if (g && v) t = fold_weight_norm(*g, *v, wn_dim);
  }
  if (!t.defined()) t = get_raw(name);
  if (!shape.empty()) {
    bool ok = static_cast<int64_t>(shape.size()) == t.dim();
    for (size_t i = 0; ok && i < shape.size(); ++i) ok = shape[i] < 0 || shape[i] == t.size(static_cast<int64_t>(i));
    if (!ok)
      throw ModelError("checkpoint '" + store_->path + "': tensor '" + key + "' has shape " + shape_str(t.sizes()) +
                       ", the model expects " + shape_str(shape));
  }
  if (!t.is_floating_point())
    throw ModelError("checkpoint '" + store_->path + "': tensor '" + key + "' is not a floating-point tensor");
  return t.to(at::kFloat).contiguous();
}

std::vector<std::string> Checkpoint::keys() const {
  std::vector<std::string> out;
  if (!store_) return out;
  for (const auto& kv : store_->tensors)
    if (kv.first.compare(0, prefix_.size(), prefix_) == 0) out.push_back(kv.first.substr(prefix_.size()));
  return out;
}

bool Checkpoint::has_metadata(const std::string& key) const {
  return store_ && store_->metadata.count(key) > 0;
}

std::string Checkpoint::metadata(const std::string& key) const {
  if (!has_metadata(key)) throw ModelError("checkpoint '" + path() + "' has no metadata entry '" + key + "'");
  return store_->metadata.at(key);
}

namespace {

// Model configs read their integer fields with json::get<int>() /
// get<int64_t>(), which converts a floating-point number with a plain
// static_cast: undefined behaviour when the value does not fit (found by
// fuzz/fuzz_vocos_config with "hop_length": 3e58). No config field is
// meaningfully a float beyond the int range, so such values (and the
// infinities an overflowing literal parses to) are refused here, once, for
// every model.
void check_config_numbers(const nlohmann::json& j, const std::string& path, const std::string& where, int depth = 0) {
  if (depth > 32)  // real configs nest 3 levels; this also bounds the recursion
    throw ModelError("checkpoint '" + path + "': metadata 'config' is nested more than 32 levels deep at " + where);
  if (j.is_number_float()) {
    const double v = j.get<double>();
    if (!(std::fabs(v) < 2147483648.0))
      throw ModelError("checkpoint '" + path + "': metadata 'config' value " + where + " = " + j.dump() +
                       " is out of range (configs hold sizes, rates and small constants)");
  } else if (j.is_object()) {
    for (const auto& kv : j.items()) check_config_numbers(kv.value(), path, where + "." + kv.key(), depth + 1);
  } else if (j.is_array()) {
    for (size_t i = 0; i < j.size(); ++i) check_config_numbers(j[i], path, where + "[" + std::to_string(i) + "]", depth + 1);
  }
}

}  // namespace

nlohmann::json Checkpoint::config() const {
  const std::string text = metadata("config");
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(text);
  } catch (const std::exception& e) {
    throw ModelError("checkpoint '" + path() + "': metadata 'config' is not JSON (" + e.what() + ")");
  }
  check_config_numbers(j, path(), "config");
  return j;
}

}  // namespace chatterbox
