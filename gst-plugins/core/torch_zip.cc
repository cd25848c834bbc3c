// PyTorch zip checkpoints (torch.save, "_use_new_zipfile_serialization", the
// default since torch 1.6) read without Python and without torch::pickle_load
// (LibTorch 1.13's unpickler cannot rebuild the OrderedDict that
// Module.state_dict() returns).
//
// Archive layout: <prefix>/data.pkl (the pickled object), <prefix>/data/<key>
// (one raw little-endian storage per key), <prefix>/byteorder (torch >= 2.1),
// <prefix>/version, ... The prefix is the file stem for torch 1.13 (conds.pt
// -> "conds/") and "archive/" for newer versions, so it is discovered, not
// assumed.
//
// data.pkl is interpreted by a RESTRICTED unpickler: a pickle is a program
// for a stack machine whose REDUCE opcode calls any importable Python
// function, so instead of "importing" anything we accept a short list of
// globals that torch.save emits for tensors and containers and model each of
// them here; any other global is refused by name. Tensor persistent ids are
// ('storage', <storage class>, key, location, numel) tuples (torch 1.x and
// 2.x alike), tensors are rebuilt with
//   _rebuild_tensor_v2(storage, offset, size, stride, requires_grad, hooks[, metadata])
//   _rebuild_tensor_v3(untyped storage, offset, size, stride, requires_grad, hooks, dtype[, metadata])
//   _rebuild_parameter(tensor, requires_grad, hooks)            (nn.Parameter)
//   _rebuild_parameter_with_state(tensor, requires_grad, hooks, state)
//   _rebuild_from_type_v2(func, Tensor|Parameter, args, state)  (tensors with Python attributes)
//
// Every number taken from the file is checked before use; malformed input is
// a ModelError, never a crash.
#include "gst-plugins/core/checkpoint.h"
#include "gst-plugins/core/mapped_file.h"
#include "gst-plugins/core/zip_reader.h"

#include <ATen/ATen.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <deque>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <unordered_map>

namespace chatterbox {
namespace {

// Limits that only hostile or broken files reach.
constexpr int kMaxNesting = 100;            // dict-in-dict depth when flattening
constexpr int64_t kMaxDims = 64;            // tensor rank
constexpr int64_t kMaxElements = int64_t{1} << 46;
constexpr size_t kMaxKeyLength = 4096;     // flattened tensor name

// ---------------------------------------------------------------------------
// Pickle values. All values live in an arena owned by the unpickler and are
// referenced by raw pointers, so reference cycles (legal in pickle) cannot
// leak and sharing through the memo is free.

// The globals we accept; anything else is refused when it is named.
enum class Global {
  OrderedDict,
  RebuildTensorV2,
  RebuildTensorV3,
  RebuildParameter,
  RebuildParameterWithState,
  RebuildFromTypeV2,
  TensorType,     // torch.Tensor / torch.nn.parameter.Parameter, only as _rebuild_from_type_v2's type
  StorageType,    // torch.FloatStorage ..., torch.UntypedStorage: the dtype is in Value::dtype
  DType,          // torch.float32 ...: the dtype is in Value::dtype
};

struct Value;

struct StorageData {
  std::string key;
  const uint8_t* bytes = nullptr;
  uint64_t nbytes = 0;
  at::ScalarType dtype = at::kByte;  // kByte for an untyped storage
};

struct TensorData {
  const StorageData* storage = nullptr;
  at::ScalarType dtype = at::kFloat;
  int64_t offset = 0;  // in elements of dtype
  std::vector<int64_t> size, stride;
  at::Tensor materialized;  // filled once, on first use
};

struct Value {
  enum class Kind { None, Bool, Int, BigInt, Float, String, Bytes, List, Tuple, Set, Dict, Global, Storage, Tensor };
  Kind kind = Kind::None;
  int64_t i = 0;  // Bool, Int
  double f = 0;   // Float
  std::string s;  // String, Bytes, and the dotted name of a Global
  std::vector<Value*> items;                         // List, Tuple, Set
  std::vector<std::pair<Value*, Value*>> entries;    // Dict, in insertion order
  std::unordered_map<std::string, size_t> index;     // Dict: canonical key -> entry
  Global global = Global::OrderedDict;
  at::ScalarType dtype = at::kFloat;  // StorageType, DType
  StorageData* storage = nullptr;
  TensorData* tensor = nullptr;
};

const char* kind_name(Value::Kind k) {
  switch (k) {
    case Value::Kind::None: return "None";
    case Value::Kind::Bool: return "bool";
    case Value::Kind::Int: return "int";
    case Value::Kind::BigInt: return "int (over 64 bits)";
    case Value::Kind::Float: return "float";
    case Value::Kind::String: return "str";
    case Value::Kind::Bytes: return "bytes";
    case Value::Kind::List: return "list";
    case Value::Kind::Tuple: return "tuple";
    case Value::Kind::Set: return "set";
    case Value::Kind::Dict: return "dict";
    case Value::Kind::Global: return "global";
    case Value::Kind::Storage: return "storage";
    case Value::Kind::Tensor: return "tensor";
  }
  return "?";
}

// Dict keys are compared like Python does for the key types checkpoints use
// (str, int, bool); other key types never collide with each other here.
std::string canonical_key(const Value* k) {
  switch (k->kind) {
    case Value::Kind::String: return "s" + k->s;
    case Value::Kind::Int:
    case Value::Kind::Bool: return "i" + std::to_string(k->i);  // True == 1 in Python
    case Value::Kind::None: return "n";
    default: return "p" + std::to_string(reinterpret_cast<uintptr_t>(k));
  }
}

struct StorageTypeName {
  const char* name;
  at::ScalarType dtype;
};
const StorageTypeName kStorageTypes[] = {
    {"FloatStorage", at::kFloat},   {"DoubleStorage", at::kDouble}, {"HalfStorage", at::kHalf},
    {"BFloat16Storage", at::kBFloat16}, {"LongStorage", at::kLong}, {"IntStorage", at::kInt},
    {"ShortStorage", at::kShort},   {"CharStorage", at::kChar},     {"ByteStorage", at::kByte},
    {"BoolStorage", at::kBool},     {"UntypedStorage", at::kByte},
};
const StorageTypeName kDTypeNames[] = {
    {"float32", at::kFloat}, {"float", at::kFloat},   {"float64", at::kDouble}, {"double", at::kDouble},
    {"float16", at::kHalf},  {"half", at::kHalf},     {"bfloat16", at::kBFloat16}, {"int64", at::kLong},
    {"long", at::kLong},     {"int32", at::kInt},     {"int", at::kInt},        {"int16", at::kShort},
    {"short", at::kShort},   {"int8", at::kChar},     {"uint8", at::kByte},     {"bool", at::kBool},
};

// ---------------------------------------------------------------------------

class Unpickler {
 public:
  Unpickler(const ZipReader& zip, std::string prefix, const uint8_t* pkl, size_t size, std::string name)
      : zip_(zip), prefix_(std::move(prefix)), p_(pkl), size_(size), name_(std::move(name)) {}

  Value* run();

  // Total bytes of tensors materialized so far, against a limit derived from
  // the file size: views with stride 0 or many overlapping views of one big
  // storage could otherwise make a small file expand without bound.
  uint64_t materialized_bytes = 0;
  uint64_t materialize_limit = 0;
  at::Tensor materialize(TensorData& t);

  ModelError error(const std::string& why) const {
    return ModelError("'" + name_ + "': cannot unpickle " + prefix_ + "data.pkl at byte " + std::to_string(op_pos_) +
                      ": " + why);
  }
  size_t arena_size() const { return arena_.size(); }

 private:
  Value* make(Value::Kind k) {
    arena_.emplace_back();
    arena_.back().kind = k;
    return &arena_.back();
  }
  // Reading the opcode stream.
  const uint8_t* take(uint64_t n) {
    if (n > size_ - pos_) throw error("truncated: needs " + std::to_string(n) + " more bytes, " +
                                      std::to_string(size_ - pos_) + " left");
    const uint8_t* r = p_ + pos_;
    pos_ += static_cast<size_t>(n);
    return r;
  }
  uint64_t le(int n) {
    const uint8_t* b = take(static_cast<uint64_t>(n));
    uint64_t v = 0;
    for (int k = n - 1; k >= 0; --k) v = (v << 8) | b[k];
    return v;
  }
  std::string text(uint64_t n) {
    const uint8_t* b = take(n);
    return std::string(reinterpret_cast<const char*>(b), static_cast<size_t>(n));
  }
  std::string line() {  // GLOBAL's "module\n" / "name\n"
    const void* nl = std::memchr(p_ + pos_, '\n', size_ - pos_);
    if (!nl) throw error("truncated GLOBAL name");
    size_t n = static_cast<const uint8_t*>(nl) - (p_ + pos_);
    std::string s = text(n);
    pos_ += 1;
    return s;
  }

  // The stack. Marks split it into frames; popping never crosses the
  // innermost mark (Python keeps such frames on a separate "metastack").
  size_t floor() const { return marks_.empty() ? 0 : marks_.back(); }
  Value* pop() {
    if (stack_.size() <= floor()) throw error("stack underflow");
    Value* v = stack_.back();
    stack_.pop_back();
    return v;
  }
  Value* top() {
    if (stack_.size() <= floor()) throw error("stack underflow");
    return stack_.back();
  }
  std::vector<Value*> pop_mark() {
    if (marks_.empty()) throw error("no MARK on the stack");
    size_t m = marks_.back();
    marks_.pop_back();
    std::vector<Value*> items(stack_.begin() + static_cast<std::ptrdiff_t>(m), stack_.end());
    stack_.resize(m);
    return items;
  }
  void push(Value* v) { stack_.push_back(v); }

  void memo_put(uint64_t idx) { memo_[idx] = top(); }
  Value* memo_get(uint64_t idx) {
    auto it = memo_.find(idx);
    if (it == memo_.end()) throw error("memo index " + std::to_string(idx) + " was never stored (corrupt pickle)");
    return it->second;
  }

  void set_item(Value* dict, Value* k, Value* v) {
    if (dict->kind != Value::Kind::Dict)
      throw error(std::string("SETITEM(S) on a ") + kind_name(dict->kind) + ", not a dict");
    std::string ck = canonical_key(k);
    auto it = dict->index.find(ck);
    if (it != dict->index.end()) {
      dict->entries[it->second].second = v;
    } else {
      dict->index.emplace(std::move(ck), dict->entries.size());
      dict->entries.emplace_back(k, v);
    }
  }
  void append(Value* list, Value* v, bool set_ok) {
    if (list->kind != Value::Kind::List && !(set_ok && list->kind == Value::Kind::Set))
      throw error(std::string("APPEND(S)/ADDITEMS on a ") + kind_name(list->kind));
    list->items.push_back(v);
  }
  Value* make_int(int64_t v) {
    Value* r = make(Value::Kind::Int);
    r->i = v;
    return r;
  }
  Value* make_tuple(std::vector<Value*> items) {
    Value* t = make(Value::Kind::Tuple);
    t->items = std::move(items);
    return t;
  }
  Value* long_bytes(uint64_t n);

  Value* resolve_global(const std::string& module, const std::string& name);
  Value* persistent_load(Value* pid);
  Value* call(Value* fn, Value* args);
  Value* rebuild_tensor(const std::vector<Value*>& a, bool v3);

  // Argument checks for calls.
  int64_t as_int(const Value* v, const char* what) const {
    if (v->kind != Value::Kind::Int && v->kind != Value::Kind::Bool)
      throw error(std::string(what) + " is a " + kind_name(v->kind) + ", expected an int");
    return v->i;
  }
  std::vector<int64_t> as_int_tuple(const Value* v, const char* what) const {
    if (v->kind != Value::Kind::Tuple && v->kind != Value::Kind::List)
      throw error(std::string(what) + " is a " + kind_name(v->kind) + ", expected a tuple of ints");
    if (static_cast<int64_t>(v->items.size()) > kMaxDims)
      throw error(std::string(what) + " has " + std::to_string(v->items.size()) + " dimensions");
    std::vector<int64_t> r;
    for (const Value* x : v->items) r.push_back(as_int(x, what));
    return r;
  }

  const ZipReader& zip_;
  std::string prefix_;  // "archive/"
  const uint8_t* p_;
  size_t size_;
  size_t pos_ = 0, op_pos_ = 0;
  std::string name_;
  std::deque<Value> arena_;
  std::deque<StorageData> storages_;
  std::deque<TensorData> tensors_;
  std::unordered_map<std::string, StorageData*> storage_by_key_;
  std::vector<Value*> stack_;
  std::vector<size_t> marks_;
  std::unordered_map<uint64_t, Value*> memo_;
};

Value* Unpickler::long_bytes(uint64_t n) {
  // Little-endian two's complement of n bytes (LONG1 / LONG4).
  const uint8_t* b = take(n);
  if (n > 8) {
    // Exactly representable only if it is a sign extension of 8 bytes.
    const uint8_t ext = (b[7] & 0x80) ? 0xff : 0x00;
    for (uint64_t k = 8; k < n; ++k)
      if (b[k] != ext) return make(Value::Kind::BigInt);  // kept, but refused if ever used as an argument
    n = 8;
  }
  uint64_t v = 0;
  for (uint64_t k = n; k-- > 0;) v = (v << 8) | b[k];
  if (n > 0 && n < 8 && (b[n - 1] & 0x80)) v |= ~uint64_t{0} << (8 * n);  // sign-extend
  int64_t sv;
  std::memcpy(&sv, &v, sizeof sv);
  return make_int(sv);
}

Value* Unpickler::resolve_global(const std::string& module, const std::string& name) {
  Value* g = make(Value::Kind::Global);
  g->s = module + "." + name;
  auto is = [&](const char* m, const char* n) { return module == m && name == n; };
  if (is("collections", "OrderedDict")) {
    g->global = Global::OrderedDict;
  } else if (is("torch._utils", "_rebuild_tensor_v2")) {
    g->global = Global::RebuildTensorV2;
  } else if (is("torch._utils", "_rebuild_tensor_v3")) {
    g->global = Global::RebuildTensorV3;
  } else if (is("torch._utils", "_rebuild_parameter")) {
    g->global = Global::RebuildParameter;
  } else if (is("torch._utils", "_rebuild_parameter_with_state")) {
    g->global = Global::RebuildParameterWithState;
  } else if (is("torch._tensor", "_rebuild_from_type_v2")) {
    g->global = Global::RebuildFromTypeV2;
  } else if (is("torch", "Tensor") || is("torch.nn.parameter", "Parameter")) {
    g->global = Global::TensorType;
  } else {
    bool found = false;
    if (module == "torch" || module == "torch.storage") {
      for (const auto& st : kStorageTypes)
        if (name == st.name) {
          g->global = Global::StorageType;
          g->dtype = st.dtype;
          found = true;
        }
    }
    if (module == "torch") {
      for (const auto& dt : kDTypeNames)
        if (name == dt.name) {
          g->global = Global::DType;
          g->dtype = dt.dtype;
          found = true;
        }
    }
    if (!found) {
      std::string hint;
      if (module.rfind("__torch__", 0) == 0 || zip_.find(prefix_ + "constants.pkl"))
        hint = " (this looks like a TorchScript archive from torch.jit.save; save the weights with "
               "torch.save(model.state_dict(), path) instead)";
      else if (module == "torch" && name.size() > 7 && name.compare(name.size() - 7, 7, "Storage") == 0)
        hint = " (a storage of a dtype this reader does not support)";
      else
        hint = " (only dicts of tensors, as written by torch.save(model.state_dict()), are supported)";
      throw error("refusing to load global '" + g->s + "': a pickle may run code, and this one names a function "
                  "that is not on the list of tensor rebuilders" + hint);
    }
  }
  return g;
}

Value* Unpickler::persistent_load(Value* pid) {
  // ('storage', <storage class>, key, location, numel)
  if (pid->kind != Value::Kind::Tuple || pid->items.size() != 5 || pid->items[0]->kind != Value::Kind::String ||
      pid->items[0]->s != "storage")
    throw error("persistent id is not a ('storage', type, key, location, numel) tuple");
  const Value* type = pid->items[1];
  const Value* key = pid->items[2];
  if (type->kind != Value::Kind::Global || type->global != Global::StorageType)
    throw error("persistent id names a " + std::string(kind_name(type->kind)) + " where a storage class belongs");
  if (key->kind != Value::Kind::String) throw error("storage key is not a string");
  const int64_t numel = as_int(pid->items[4], "storage numel");
  const uint64_t esize = at::elementSize(type->dtype);
  if (numel < 0 || static_cast<uint64_t>(numel) > (uint64_t{1} << 62) / esize)
    throw error("storage '" + key->s + "' has an impossible size of " + std::to_string(numel) + " elements");
  const uint64_t nbytes = static_cast<uint64_t>(numel) * esize;

  StorageData* sd = nullptr;
  auto it = storage_by_key_.find(key->s);
  if (it != storage_by_key_.end()) {
    sd = it->second;
  } else {
    const std::string entry = prefix_ + "data/" + key->s;
    const ZipEntry* ze = zip_.find(entry);
    storages_.emplace_back();
    sd = &storages_.back();
    sd->key = key->s;
    if (ze) {
      auto [bytes, n] = zip_.read(*ze);
      sd->bytes = bytes;
      sd->nbytes = n;
    } else if (nbytes != 0) {
      throw error("tensor storage '" + entry + "' is missing from the archive");
    }
    storage_by_key_.emplace(key->s, sd);
  }
  if (sd->nbytes < nbytes)
    throw error("storage '" + key->s + "' declares " + std::to_string(numel) + " elements (" + std::to_string(nbytes) +
                " bytes) but its record holds " + std::to_string(sd->nbytes) + " bytes");
  // One record may back storages of several declared types only in broken
  // files (torch refuses to save that); the view keeps the declared type.
  Value* v = make(Value::Kind::Storage);
  storages_.push_back(*sd);
  v->storage = &storages_.back();
  v->storage->dtype = type->dtype;
  v->storage->nbytes = nbytes;
  return v;
}

Value* Unpickler::rebuild_tensor(const std::vector<Value*>& a, bool v3) {
  const char* fn = v3 ? "_rebuild_tensor_v3" : "_rebuild_tensor_v2";
  const size_t base = v3 ? 7 : 6;
  if (a.size() != base && a.size() != base + 1)
    throw error(std::string(fn) + " takes " + std::to_string(base) + " or " + std::to_string(base + 1) +
                " arguments, got " + std::to_string(a.size()));
  if (a[0]->kind != Value::Kind::Storage) throw error(std::string(fn) + ": first argument is not a storage");
  tensors_.emplace_back();
  TensorData& t = tensors_.back();
  t.storage = a[0]->storage;
  t.dtype = t.storage->dtype;
  if (v3) {
    if (a[6]->kind != Value::Kind::Global || a[6]->global != Global::DType)
      throw error("_rebuild_tensor_v3: dtype argument is not a torch dtype");
    t.dtype = a[6]->dtype;
  }
  t.offset = as_int(a[1], "storage offset");
  t.size = as_int_tuple(a[2], "tensor size");
  t.stride = as_int_tuple(a[3], "tensor stride");
  if (t.size.size() != t.stride.size())
    throw error("tensor size " + shape_str(t.size) + " and stride " + shape_str(t.stride) + " differ in rank");
  // Bounds: the furthest element is offset + sum((size_i - 1) * stride_i).
  if (t.offset < 0) throw error("negative storage offset");
  int64_t numel = 1;
  for (size_t d = 0; d < t.size.size(); ++d) {
    if (t.size[d] < 0 || t.stride[d] < 0)
      throw error("tensor size " + shape_str(t.size) + " / stride " + shape_str(t.stride) + " has a negative entry");
    if (t.size[d] > kMaxElements || t.stride[d] > kMaxElements)
      throw error("tensor size " + shape_str(t.size) + " / stride " + shape_str(t.stride) + " is implausibly large");
    if (__builtin_mul_overflow(numel, t.size[d], &numel) || numel > kMaxElements)
      throw error("tensor of size " + shape_str(t.size) + " is implausibly large");
  }
  if (numel > 0) {
    // size and stride are each <= 2^46, so the sum is exact in 128 bits.
    __int128 far = t.offset;
    for (size_t d = 0; d < t.size.size(); ++d) far += static_cast<__int128>(t.size[d] - 1) * t.stride[d];
    const uint64_t esize = at::elementSize(t.dtype);
    const __int128 avail = static_cast<__int128>(t.storage->nbytes / esize);
    if (far >= avail)
      throw error("tensor view (offset " + std::to_string(t.offset) + ", size " + shape_str(t.size) + ", stride " +
                  shape_str(t.stride) + ") reaches past the end of storage '" + t.storage->key + "' (" +
                  std::to_string(static_cast<uint64_t>(avail)) + " elements)");
  }
  Value* v = make(Value::Kind::Tensor);
  v->tensor = &t;
  return v;
}

at::Tensor Unpickler::materialize(TensorData& t) {
  if (t.materialized.defined()) return t.materialized;
  const at::ScalarType raw = t.dtype == at::kBool ? at::kByte : t.dtype;  // bytes other than 0/1 are not bools
  const uint64_t esize = at::elementSize(t.dtype);
  int64_t numel = 1, span = 0;
  for (size_t d = 0; d < t.size.size(); ++d) {
    numel *= t.size[d];
    span += (t.size[d] - 1) * t.stride[d];
  }
  const auto opts = at::TensorOptions().dtype(raw);
  const uint64_t out_bytes = static_cast<uint64_t>(numel) * esize;
  if (out_bytes > materialize_limit || materialized_bytes > materialize_limit - out_bytes)
    throw ModelError("'" + name_ + "': the tensors of this checkpoint expand to more than " +
                     std::to_string(materialize_limit) +
                     " bytes (overlapping or stride-0 views of its storages); refusing to load it");
  materialized_bytes += out_bytes;
  at::Tensor out = at::empty(t.size, opts);
  if (numel > 0) {
    // The elements the view touches: [offset, offset + span] of the storage.
    const uint8_t* first = t.storage->bytes + static_cast<uint64_t>(t.offset) * esize;
    const int64_t count = span + 1;
    at::Tensor src;
    if (reinterpret_cast<uintptr_t>(first) % esize == 0) {
      // torch aligns storages in the archive (64 bytes), so normally a view
      // of the file is fine; from_blob never writes through it.
      src = at::from_blob(const_cast<uint8_t*>(first), {count}, opts);
    } else {
      src = at::empty({count}, opts);
      std::memcpy(src.data_ptr(), first, static_cast<size_t>(count) * esize);
    }
    out.copy_(src.as_strided(t.size, t.stride, 0));  // always copies: the store owns its tensors
  }
  if (t.dtype == at::kBool) out = out.ne(0);
  t.materialized = out;
  return out;
}

Value* Unpickler::call(Value* fn, Value* args) {
  if (fn->kind != Value::Kind::Global) throw error(std::string("REDUCE calls a ") + kind_name(fn->kind));
  if (args->kind != Value::Kind::Tuple) throw error("REDUCE arguments are not a tuple");
  const auto& a = args->items;
  switch (fn->global) {
    case Global::OrderedDict:
      // OrderedDict.__reduce__ gives (OrderedDict, ()) and adds the items with
      // SETITEMS afterwards.
      if (!a.empty()) throw error("collections.OrderedDict called with arguments");
      return make(Value::Kind::Dict);
    case Global::RebuildTensorV2: return rebuild_tensor(a, false);
    case Global::RebuildTensorV3: return rebuild_tensor(a, true);
    case Global::RebuildParameter:
    case Global::RebuildParameterWithState: {
      // A Parameter is its tensor for inference: requires_grad, hooks and the
      // Python state are dropped.
      const size_t n = fn->global == Global::RebuildParameter ? 3 : 4;
      if (a.size() != n) throw error(fn->s + " takes " + std::to_string(n) + " arguments");
      if (a[0]->kind != Value::Kind::Tensor) throw error(fn->s + ": first argument is not a tensor");
      return a[0];
    }
    case Global::RebuildFromTypeV2: {
      // (func, type, args, state): only a plain Tensor/Parameter type is
      // accepted, its Python attributes (state) are dropped.
      if (a.size() != 4) throw error("_rebuild_from_type_v2 takes 4 arguments");
      if (a[1]->kind != Value::Kind::Global || a[1]->global != Global::TensorType)
        throw error("_rebuild_from_type_v2 of a type other than torch.Tensor / nn.Parameter");
      if (a[0]->kind != Value::Kind::Global ||
          (a[0]->global != Global::RebuildTensorV2 && a[0]->global != Global::RebuildTensorV3 &&
           a[0]->global != Global::RebuildParameter && a[0]->global != Global::RebuildParameterWithState))
        throw error("_rebuild_from_type_v2 with a function that does not rebuild a tensor");
      return call(a[0], a[2]);
    }
    case Global::TensorType:
    case Global::StorageType:
    case Global::DType: break;
  }
  throw error("refusing to call '" + fn->s + "'");
}

Value* Unpickler::run() {
  int64_t proto = 2;
  while (true) {
    op_pos_ = pos_;
    const uint8_t op = *take(1);
    switch (op) {
      case 0x80: {  // PROTO
        proto = static_cast<int64_t>(le(1));
        if (proto > 5) throw error("pickle protocol " + std::to_string(proto) + " is newer than 5");
        break;
      }
      case 0x95: le(8); break;  // FRAME: a length hint only
      case '}': push(make(Value::Kind::Dict)); break;
      case ']': push(make(Value::Kind::List)); break;
      case ')': push(make(Value::Kind::Tuple)); break;
      case 0x8f: push(make(Value::Kind::Set)); break;  // EMPTY_SET
      case '(': marks_.push_back(stack_.size()); break;
      case 'X':  // BINUNICODE
      case 0x8c:  // SHORT_BINUNICODE
      case 0x8d:  // BINUNICODE8
      case 'T':  // BINSTRING (Python 2 str)
      case 'U':  // SHORT_BINSTRING
      case 'B':  // BINBYTES
      case 'C':  // SHORT_BINBYTES
      case 0x8e: {  // BINBYTES8
        const int width = (op == 0x8c || op == 'U' || op == 'C') ? 1 : (op == 0x8d || op == 0x8e) ? 8 : 4;
        uint64_t n = le(width);
        if (op == 'T' && (n & 0x80000000u)) throw error("negative BINSTRING length");
        Value* v = make((op == 'B' || op == 'C' || op == 0x8e) ? Value::Kind::Bytes : Value::Kind::String);
        v->s = text(n);
        push(v);
        break;
      }
      case 'J': {  // BININT: signed 32-bit
        uint32_t u = static_cast<uint32_t>(le(4));
        int32_t s;
        std::memcpy(&s, &u, sizeof s);
        push(make_int(s));
        break;
      }
      case 'K': push(make_int(static_cast<int64_t>(le(1)))); break;  // BININT1
      case 'M': push(make_int(static_cast<int64_t>(le(2)))); break;  // BININT2
      case 0x8a: push(long_bytes(le(1))); break;                       // LONG1
      case 0x8b: {                                                     // LONG4
        uint64_t n = le(4);
        if (n & 0x80000000u) throw error("negative LONG4 length");
        push(long_bytes(n));
        break;
      }
      case 'G': {  // BINFLOAT: big-endian IEEE double
        const uint8_t* b = take(8);
        uint64_t u = 0;
        for (int k = 0; k < 8; ++k) u = (u << 8) | b[k];
        Value* v = make(Value::Kind::Float);
        std::memcpy(&v->f, &u, sizeof v->f);
        push(v);
        break;
      }
      case 'N': push(make(Value::Kind::None)); break;
      case 0x88:
      case 0x89: {  // NEWTRUE / NEWFALSE
        Value* v = make(Value::Kind::Bool);
        v->i = op == 0x88;
        push(v);
        break;
      }
      case 't': push(make_tuple(pop_mark())); break;  // TUPLE
      case 0x85:
      case 0x86:
      case 0x87: {  // TUPLE1..3
        const size_t n = op - 0x84u;
        std::vector<Value*> items(n);
        for (size_t k = n; k-- > 0;) items[k] = pop();
        push(make_tuple(std::move(items)));
        break;
      }
      case 's': {  // SETITEM
        Value* v = pop();
        Value* k = pop();
        set_item(top(), k, v);
        break;
      }
      case 'u': {  // SETITEMS
        std::vector<Value*> items = pop_mark();
        if (items.size() % 2) throw error("SETITEMS with an odd number of items");
        Value* d = top();
        for (size_t k = 0; k < items.size(); k += 2) set_item(d, items[k], items[k + 1]);
        break;
      }
      case 'a': {  // APPEND
        Value* v = pop();
        append(top(), v, false);
        break;
      }
      case 'e':     // APPENDS
      case 0x90: {  // ADDITEMS
        std::vector<Value*> items = pop_mark();
        Value* l = top();
        for (Value* v : items) append(l, v, op == 0x90);
        break;
      }
      case 0x91: {  // FROZENSET
        Value* s = make(Value::Kind::Set);
        s->items = pop_mark();
        push(s);
        break;
      }
      case 'q': memo_put(le(1)); break;           // BINPUT
      case 'r': memo_put(le(4)); break;           // LONG_BINPUT
      case 0x94: memo_put(memo_.size()); break;   // MEMOIZE
      case 'h': push(memo_get(le(1))); break;     // BINGET
      case 'j': push(memo_get(le(4))); break;     // LONG_BINGET
      case 'c': {                                 // GLOBAL "module\nname\n"
        std::string module = line();
        std::string name = line();
        push(resolve_global(module, name));
        break;
      }
      case 0x93: {  // STACK_GLOBAL
        Value* name = pop();
        Value* module = pop();
        if (module->kind != Value::Kind::String || name->kind != Value::Kind::String)
          throw error("STACK_GLOBAL operands are not strings");
        push(resolve_global(module->s, name->s));
        break;
      }
      case 'R': {  // REDUCE
        Value* args = pop();
        Value* fn = pop();
        push(call(fn, args));
        break;
      }
      case 0x81: {  // NEWOBJ: cls.__new__(cls, *args)
        Value* args = pop();
        Value* cls = pop();
        if (cls->kind != Value::Kind::Global || cls->global != Global::OrderedDict)
          throw error("NEWOBJ of something other than collections.OrderedDict");
        if (args->kind != Value::Kind::Tuple || !args->items.empty())
          throw error("NEWOBJ of collections.OrderedDict with arguments");
        push(make(Value::Kind::Dict));
        break;
      }
      case 'b': {  // BUILD: obj.__setstate__(state)
        Value* state = pop();
        Value* obj = top();
        // state_dict()'s OrderedDict carries a `_metadata` attribute (module
        // versions), and tensors may carry Python attributes: neither matters
        // for the weights, so the state is dropped.
        (void)state;
        if (obj->kind != Value::Kind::Dict && obj->kind != Value::Kind::Tensor)
          throw error(std::string("BUILD on a ") + kind_name(obj->kind));
        break;
      }
      case 'Q': push(persistent_load(pop())); break;  // BINPERSID
      case '0': pop(); break;                         // POP
      case '1': pop_mark(); break;                    // POP_MARK
      case '2': push(top()); break;                   // DUP
      case '.': {                                     // STOP
        if (stack_.size() != 1 || !marks_.empty())
          throw error("STOP with " + std::to_string(stack_.size()) + " values on the stack (expected 1)");
        return stack_.back();
      }
      default: {
        char hex[8];
        std::snprintf(hex, sizeof hex, "0x%02x", op);
        throw error(std::string("unsupported pickle opcode ") + hex +
                    " (torch.save writes pickle protocol 2; was the file written by something else?)");
      }
    }
    (void)proto;
  }
}

// ---------------------------------------------------------------------------
// Flattening: {"t3": {"speaker_emb": T}} -> "t3.speaker_emb". Lists and tuples
// are indexed like nn.ModuleList ("layers.0"). A checkpoint that wraps its
// weights ({"state_dict": {...}} from Lightning, {"model": {...}}) simply
// yields "state_dict.<name>" keys; callers pick the prefix with
// Checkpoint::sub(). Non-tensor leaves (epoch counters, hyper-parameters,
// None) are not weights: ints, bools and strings are kept in
// TensorStore::metadata under their joined key, the rest skipped.

struct Flattener {
  Unpickler& up;
  TensorStore& out;
  const std::string& name;
  uint64_t visits = 0, max_visits = 0;

  void walk(const Value* v, const std::string& key, int depth) {
    // Shared sub-containers are legal (and cycles are possible in a pickle):
    // depth and visit limits keep a hostile DAG from exploding.
    if (depth > kMaxNesting)
      throw ModelError("'" + name + "': objects are nested more than " + std::to_string(kMaxNesting) +
                       " levels deep (at '" + key + "')");
    if (++visits > max_visits)
      throw ModelError("'" + name + "': its object graph is implausibly large (shared containers?)");
    auto join = [&](const std::string& k) {
      // Real names are far shorter; the cap keeps a hostile file from
      // building gigabytes of key strings.
      if (key.size() + k.size() + 1 > kMaxKeyLength)
        throw ModelError("'" + name + "': a tensor name is longer than " + std::to_string(kMaxKeyLength) +
                         " characters (at '" + key.substr(0, 80) + "...')");
      return key.empty() ? k : key + "." + k;
    };
    switch (v->kind) {
      case Value::Kind::Dict:
        for (const auto& [k, x] : v->entries) {
          std::string ks;
          if (k->kind == Value::Kind::String) ks = k->s;
          else if (k->kind == Value::Kind::Int) ks = std::to_string(k->i);
          else continue;  // tuple / None / ... keys hold no weights we could name
          walk(x, join(ks), depth + 1);
        }
        break;
      case Value::Kind::List:
      case Value::Kind::Tuple:
        for (size_t k = 0; k < v->items.size(); ++k) walk(v->items[k], join(std::to_string(k)), depth + 1);
        break;
      case Value::Kind::Tensor: {
        if (out.tensors.count(key))
          throw ModelError("'" + name + "': tensor name '" + key + "' occurs twice after joining nested keys with '.'");
        out.tensors.emplace(key, up.materialize(*v->tensor));
        break;
      }
      // Scalar leaves ({"model": ..., "step": 250000}) are kept as string
      // metadata under their joined key; they never become tensors.
      case Value::Kind::Int:
      case Value::Kind::Bool: out.metadata[key] = std::to_string(v->i); break;
      case Value::Kind::String: out.metadata[key] = v->s.substr(0, 4096); break;
      default: break;
    }
  }
};

std::string find_prefix(const ZipReader& zip) {
  // torch's reader takes the archive name from the first record; fall back to
  // the one "<dir>/data.pkl" if the archive was repacked in another order.
  auto dir_of = [](const std::string& n) {
    auto slash = n.find('/');
    return slash == std::string::npos ? std::string() : n.substr(0, slash + 1);
  };
  if (!zip.entries().empty()) {
    std::string first = dir_of(zip.entries().front().name);
    if (!first.empty() && zip.find(first + "data.pkl")) return first;
  }
  std::string found;
  int n = 0;
  for (const auto& e : zip.entries()) {
    const std::string d = dir_of(e.name);
    if (!d.empty() && e.name == d + "data.pkl" && d.find('/') == d.size() - 1) {
      found = d;
      ++n;
    }
  }
  if (n == 0)
    throw ModelError("'" + zip.name() + "' is a zip archive without a <folder>/data.pkl record: not a torch.save "
                     "checkpoint");
  if (n > 1) throw ModelError("'" + zip.name() + "' holds several <folder>/data.pkl records; cannot tell which to load");
  return found;
}

bool host_is_little_endian() {
  const uint16_t one = 1;
  uint8_t b;
  std::memcpy(&b, &one, 1);
  return b == 1;
}

}  // namespace

TensorStore parse_torch_zip(const uint8_t* data, size_t size, const std::string& name) {
  static const uint8_t kEmpty = 0;
  if (!data) {
    data = &kEmpty;
    size = 0;
  }
  ZipReader zip(data, size, name);
  const std::string prefix = find_prefix(zip);

  // torch >= 2.1 records the writer's byte order; older files are
  // little-endian (torch wrote native order and big-endian hosts are rare).
  if (const ZipEntry* bo = zip.find(prefix + "byteorder")) {
    auto [p, n] = zip.read(*bo);
    std::string order(reinterpret_cast<const char*>(p), n);
    if (order != "little")
      throw ModelError("'" + name + "' was written on a '" + order +
                       "'-endian machine; only little-endian checkpoints are supported");
  }
  if (!host_is_little_endian()) throw ModelError("reading PyTorch checkpoints needs a little-endian host");

  const ZipEntry* pkl_entry = zip.find(prefix + "data.pkl");
  auto [pkl, pkl_size] = zip.read(*pkl_entry);

  Unpickler up(zip, prefix, pkl, pkl_size, name);
  // Legit files expand only through views sharing a storage or stride-0
  // (expanded) tensors; 4x the file plus 64 MiB is far beyond that.
  up.materialize_limit = 4 * static_cast<uint64_t>(size) + (uint64_t{64} << 20);
  const Value* root = up.run();
  if (root->kind != Value::Kind::Dict)
    throw ModelError("'" + name + "' holds a pickled " + kind_name(root->kind) +
                     ", not a dict of tensors (save model.state_dict() or a dict of tensors)");

  TensorStore out;
  out.path = name;
  Flattener fl{up, out, name};
  // A tree visits each value once; shared (tied) tensors add a few more.
  fl.max_visits = 2 * static_cast<uint64_t>(up.arena_size()) + 1024;
  fl.walk(root, "", 0);
  return out;
}

TensorStore read_torch_zip(const std::string& path) {
  MappedFile m(path);
  return parse_torch_zip(m.data(), m.size(), path);
}

}  // namespace chatterbox
