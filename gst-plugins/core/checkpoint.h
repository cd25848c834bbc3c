// Checkpoint access shared by every model: one name -> tensor view over
// safetensors files and PyTorch zip checkpoints, with key prefixes, shape
// checks that name the tensor, and weight-norm folding.
//
// No GStreamer here: this is part of libchatterbox.
#pragma once

#include <ATen/core/Tensor.h>
#include <nlohmann/json_fwd.hpp>

#include <cstdint>
#include <map>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

namespace chatterbox {

// Every load/parse failure is reported with this type; what() is a sentence a
// user can act on (which file, which tensor, what was expected).
class ModelError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

std::string shape_str(const std::vector<int64_t>& shape);
std::string shape_str(at::IntArrayRef shape);

// The tensors of one file, by name, plus string metadata, in their stored
// dtype. From read_safetensors/read_tensor_file, aligned safetensors tensors
// are copy-on-write views of a private mapping of the file that lives as long
// as any of them (the file may be deleted meanwhile); all others are copies.
struct TensorStore {
  std::string path;                       // for messages
  std::map<std::string, at::Tensor> tensors;
  std::map<std::string, std::string> metadata;  // safetensors __metadata__
};

// Reads a safetensors file. Bounds-checked: a corrupt file is a ModelError,
// never a crash.
TensorStore read_safetensors(const std::string& path);
TensorStore parse_safetensors(const uint8_t* data, size_t size, const std::string& name);

// Writes float tensors (any dtype among F32/F64/I64/I32) to a safetensors file.
void write_safetensors(const std::string& path, const std::map<std::string, at::Tensor>& tensors,
                       const std::map<std::string, std::string>& metadata = {});

// Reads a PyTorch zip checkpoint (torch.save, pickle protocol 2) whose object
// is a dict / OrderedDict of tensors, possibly nested (conds.pt: {"t3": {...},
// "gen": {...}}). Nested keys are joined with '.'; int, bool and str leaves
// go to metadata under the joined key ({"step": 800} -> metadata["step"] =
// "800"), None and other non-tensor values are skipped.
// A restricted unpickler: only the globals torch.save emits for tensors are
// accepted, any other global is refused (a pickle can run code).
TensorStore read_torch_zip(const std::string& path);
TensorStore parse_torch_zip(const uint8_t* data, size_t size, const std::string& name);

// Opens by content: safetensors or torch zip.
TensorStore read_tensor_file(const std::string& path);

// A view of a TensorStore under a key prefix ("mel2wav.", "flow.").
// Lookups fold weight norm on the fly: asking for "x.weight" when the file has
// "x.parametrizations.weight.original0/1" (torch >= 2.1) or "x.weight_g/_v"
// (legacy) returns g * v / ||v|| with the norm over every dim but `wn_dim`.
class Checkpoint {
 public:
  Checkpoint() = default;
  explicit Checkpoint(std::shared_ptr<const TensorStore> store, std::string prefix = "");
  static Checkpoint open(const std::string& path);  // read_tensor_file

  Checkpoint sub(const std::string& prefix) const;  // appends to the prefix
  const std::string& prefix() const { return prefix_; }
  const std::string& path() const { return store_->path; }
  const TensorStore& store() const { return *store_; }

  bool has(const std::string& name) const;   // plain or weight-normed
  // Tensor `name` (relative to the prefix) as float32, contiguous. Throws
  // ModelError naming the full key if missing, or if `shape` (when non-empty;
  // -1 = any) does not match. `wn_dim`: the dim the weight-norm g is kept on.
  at::Tensor get(const std::string& name, const std::vector<int64_t>& shape = {}, int64_t wn_dim = 0) const;
  // The same in its stored dtype (integer tensors: token ids, lengths).
  at::Tensor get_raw(const std::string& name) const;
  // Keys under the prefix (relative names), sorted.
  std::vector<std::string> keys() const;

  // metadata["config"] parsed as JSON; ModelError if absent or not JSON.
  nlohmann::json config() const;
  bool has_metadata(const std::string& key) const;
  std::string metadata(const std::string& key) const;

 private:
  std::shared_ptr<const TensorStore> store_;
  std::string prefix_;
};

// g * v / ||v||, norm over every dim except `dim`.
at::Tensor fold_weight_norm(const at::Tensor& g, const at::Tensor& v, int64_t dim = 0);

}  // namespace chatterbox
