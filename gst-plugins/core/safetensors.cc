// safetensors reader/writer. Format: u64 little-endian header length N, N
// bytes of JSON {name: {dtype, shape, data_offsets: [begin, end]}, ...,
// "__metadata__": {str: str}}, then the data section. Every number read from
// the file is checked before it is used.
#include "gst-plugins/core/checkpoint.h"
#include "gst-plugins/core/mapped_file.h"

#include <ATen/ATen.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cstring>
#include <fcntl.h>
#include <fstream>
#include <memory>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

namespace chatterbox {
namespace {

struct DTypeInfo {
  const char* name;
  at::ScalarType type;
  size_t size;
};
const DTypeInfo kDTypes[] = {
    {"F32", at::kFloat, 4}, {"F16", at::kHalf, 2},  {"BF16", at::kBFloat16, 2}, {"F64", at::kDouble, 8},
    {"I64", at::kLong, 8},  {"I32", at::kInt, 4},   {"I16", at::kShort, 2},     {"I8", at::kChar, 1},
    {"U8", at::kByte, 1},   {"BOOL", at::kBool, 1},
};

const DTypeInfo* dtype_by_name(const std::string& n) {
  for (const auto& d : kDTypes)
    if (n == d.name) return &d;
  return nullptr;
}
const DTypeInfo* dtype_by_type(at::ScalarType t) {
  for (const auto& d : kDTypes)
    if (t == d.type) return &d;
  return nullptr;
}

}  // namespace

std::string shape_str(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}
std::string shape_str(at::IntArrayRef shape) { return shape_str(shape.vec()); }

namespace {
// `owner`, when set, keeps `data` alive: aligned tensors are then views of it
// (zero-copy: a 1 GB checkpoint costs only the pages a model reads), others
// are copied.
TensorStore parse(const uint8_t* data, size_t size, const std::string& name, std::shared_ptr<void> owner) {
  auto fail = [&](const std::string& why) -> ModelError {
    return ModelError("'" + name + "' is not a valid safetensors file: " + why);
  };
  if (size < 8) throw fail("shorter than its 8-byte header length");
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | data[i];
  if (n > size - 8) throw fail("header length " + std::to_string(n) + " runs past the end of the file (" + std::to_string(size) + " bytes)");
  if (n > (100u << 20)) throw fail("header of " + std::to_string(n) + " bytes is implausibly large");
  nlohmann::json header;
  try {
    header = nlohmann::json::parse(reinterpret_cast<const char*>(data + 8), reinterpret_cast<const char*>(data + 8 + n));
  } catch (const std::exception& e) {
    throw fail(std::string("header is not JSON (") + e.what() + ")");
  }
  if (!header.is_object()) throw fail("header is not a JSON object");
  const uint8_t* body = data + 8 + n;
  const uint64_t body_size = size - 8 - n;

  TensorStore out;
  out.path = name;
  std::vector<std::pair<uint64_t, uint64_t>> ranges;
  for (auto it = header.begin(); it != header.end(); ++it) {
    if (it.key() == "__metadata__") {
      if (!it.value().is_object()) throw fail("__metadata__ is not an object");
      for (auto m = it.value().begin(); m != it.value().end(); ++m) {
        if (!m.value().is_string()) throw fail("metadata '" + m.key() + "' is not a string");
        out.metadata[m.key()] = m.value().get<std::string>();
      }
      continue;
    }
    const auto& e = it.value();
    const std::string& key = it.key();
    if (!e.is_object() || !e.contains("dtype") || !e.contains("shape") || !e.contains("data_offsets"))
      throw fail("entry '" + key + "' lacks dtype/shape/data_offsets");
    if (!e["dtype"].is_string()) throw fail("entry '" + key + "' has a non-string dtype");
    const DTypeInfo* dt = dtype_by_name(e["dtype"].get<std::string>());
    if (!dt) throw fail("tensor '" + key + "' has unsupported dtype '" + e["dtype"].get<std::string>() + "'");
    const auto& js = e["shape"];
    const auto& jo = e["data_offsets"];
    if (!js.is_array() || !jo.is_array() || jo.size() != 2 || !jo[0].is_number_unsigned() || !jo[1].is_number_unsigned())
      throw fail("tensor '" + key + "' has a malformed shape or data_offsets");
    std::vector<int64_t> shape;
    uint64_t numel = 1;
    for (const auto& d : js) {
      if (!d.is_number_unsigned()) throw fail("tensor '" + key + "' has a negative or non-integer dimension");
      uint64_t v = d.get<uint64_t>();
      if (v > (1ull << 40) || (v && numel > (1ull << 40) / v)) throw fail("tensor '" + key + "' is implausibly large");
      numel *= v;
      shape.push_back(static_cast<int64_t>(v));
    }
    uint64_t b = jo[0].get<uint64_t>(), en = jo[1].get<uint64_t>();
    if (b > en || en > body_size)
      throw fail("tensor '" + key + "' data [" + std::to_string(b) + ", " + std::to_string(en) + ") lies outside the " +
                 std::to_string(body_size) + "-byte data section");
    if (en - b != numel * dt->size)
      throw fail("tensor '" + key + "' of shape " + shape_str(shape) + " and dtype " + dt->name + " needs " +
                 std::to_string(numel * dt->size) + " bytes but its offsets span " + std::to_string(en - b));
    ranges.emplace_back(b, en);
    // Files are little-endian, as are x86 and arm.
    const uint8_t* src = body + b;
    at::Tensor t;
    if (owner && numel && reinterpret_cast<uintptr_t>(src) % dt->size == 0) {
      t = at::from_blob(const_cast<uint8_t*>(src), shape, [owner](void*) {}, at::TensorOptions().dtype(dt->type));
    } else {
      t = at::empty(shape, at::TensorOptions().dtype(dt->type));
      if (numel) std::memcpy(t.data_ptr(), src, en - b);
    }
    out.tensors[key] = t;
  }
  std::sort(ranges.begin(), ranges.end());
  for (size_t i = 1; i < ranges.size(); ++i)
    if (ranges[i].first < ranges[i - 1].second && ranges[i].first != ranges[i].second)
      throw fail("tensor data ranges overlap");
  return out;
}
}  // namespace

TensorStore parse_safetensors(const uint8_t* data, size_t size, const std::string& name) {
  return parse(data, size, name, nullptr);
}

TensorStore read_safetensors(const std::string& path) {
  auto f = std::make_shared<MappedFile>(path);
  return parse(f->data(), f->size(), path, f);
}

TensorStore read_tensor_file(const std::string& path) {
  auto f = std::make_shared<MappedFile>(path);
  // torch.save zip files start with a local file header "PK\3\4".
  if (f->size() >= 4 && std::memcmp(f->data(), "PK\x03\x04", 4) == 0) return parse_torch_zip(f->data(), f->size(), path);
  return parse(f->data(), f->size(), path, f);
}

void write_safetensors(const std::string& path, const std::map<std::string, at::Tensor>& tensors,
                       const std::map<std::string, std::string>& metadata) {
  nlohmann::json header = nlohmann::json::object();
  if (!metadata.empty()) header["__metadata__"] = metadata;
  std::vector<at::Tensor> blobs;
  uint64_t offset = 0;
  for (const auto& [name, t0] : tensors) {
    const DTypeInfo* dt = dtype_by_type(t0.scalar_type());
    if (!dt) throw ModelError("cannot write tensor '" + name + "': unsupported dtype");
    at::Tensor t = t0.detach().to(at::kCPU).contiguous();
    uint64_t nbytes = t.numel() * dt->size;
    header[name] = {{"dtype", dt->name}, {"shape", t.sizes().vec()}, {"data_offsets", {offset, offset + nbytes}}};
    offset += nbytes;
    blobs.push_back(t);
  }
  std::string h = header.dump();
  while (h.size() % 8) h += ' ';
  std::ofstream os(path, std::ios::binary);
  if (!os) throw ModelError("cannot write '" + path + "'");
  uint64_t n = h.size();
  char len[8];
  for (int i = 0; i < 8; ++i) len[i] = static_cast<char>((n >> (8 * i)) & 0xff);
  os.write(len, 8);
  os.write(h.data(), static_cast<std::streamsize>(h.size()));
  for (const auto& t : blobs) os.write(static_cast<const char*>(t.data_ptr()), static_cast<std::streamsize>(t.nbytes()));
  if (!os) throw ModelError("failed writing '" + path + "'");
}

}  // namespace chatterbox
