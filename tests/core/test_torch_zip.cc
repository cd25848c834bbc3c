// The PyTorch zip checkpoint reader: a real torch 1.13 file (conds_tiny.pt),
// hand-built archives that follow torch.save's opcode stream for a
// state_dict() OrderedDict, and hostile inputs (forbidden globals,
// truncations, random corruption) that must end in ModelError, never a crash.
#define BOOST_TEST_MODULE torch_zip
#include <boost/test/unit_test.hpp>

#include "gst-plugins/core/checkpoint.h"
#include "gst-plugins/core/zip_reader.h"
#include "tests/fixtures.h"
#include "tests/test_util.h"

#include <ATen/ATen.h>

#include <cstdio>
#include <cstring>
#include <fstream>
#include <random>
#include <sstream>
using chatterbox::test::contains;
using chatterbox::test::slurp;

using namespace chatterbox;
using chatterbox::test::fixture;

namespace {


void put_le(std::string& b, uint64_t v, int n) {
  for (int i = 0; i < n; ++i) b += static_cast<char>((v >> (8 * i)) & 0xff);
}

// ---------------------------------------------------------------------------
// A pickle writer that emits what CPython's pickle (protocol 2) emits for the
// objects torch.save pickles: every str / tuple / reduce result memoized with
// BINPUT, repeated globals and strings fetched back with BINGET, persistent
// ids (storages) never memoized.
class Pickle {
 public:
  explicit Pickle(int protocol = 2) {
    b_ += '\x80';
    b_ += static_cast<char>(protocol);
  }
  std::string bytes() const { return b_ + "."; }
  std::string& raw() { return b_; }

  void op(char c) { b_ += c; }
  void mark() { op('('); }
  int put() {  // memoize the top of the stack
    int i = next_++;
    if (i < 256) {
      op('q');
      b_ += static_cast<char>(i);
    } else {
      op('r');
      put_le(b_, i, 4);
    }
    return i;
  }
  void get(int i) {
    if (i < 256) {
      op('h');
      b_ += static_cast<char>(i);
    } else {
      op('j');
      put_le(b_, i, 4);
    }
  }
  void str(const std::string& s) {
    auto it = strs_.find(s);
    if (it != strs_.end()) return get(it->second);
    op('X');
    put_le(b_, s.size(), 4);
    b_ += s;
    strs_[s] = put();
  }
  void global(const std::string& module, const std::string& name) {
    const std::string key = module + "\n" + name + "\n";
    auto it = globals_.find(key);
    if (it != globals_.end()) return get(it->second);
    op('c');
    b_ += key;
    globals_[key] = put();
  }
  void integer(int64_t v) {
    if (v >= 0 && v < 256) {
      op('K');
      b_ += static_cast<char>(v);
    } else if (v >= 0 && v < 65536) {
      op('M');
      put_le(b_, v, 2);
    } else if (v >= INT32_MIN && v <= INT32_MAX) {
      op('J');
      put_le(b_, static_cast<uint64_t>(v), 4);
    } else {
      op('\x8a');
      b_ += '\x08';
      put_le(b_, static_cast<uint64_t>(v), 8);
    }
  }
  void boolean(bool v) { op(v ? '\x88' : '\x89'); }
  void none() { op('N'); }
  void flt(double d) {
    op('G');
    uint64_t u;
    std::memcpy(&u, &d, 8);
    for (int i = 7; i >= 0; --i) b_ += static_cast<char>((u >> (8 * i)) & 0xff);
  }
  // A tuple of ints, as pickle writes tuple(size) / stride.
  void int_tuple(const std::vector<int64_t>& v) {
    if (v.empty()) return op(')');
    if (v.size() > 3) mark();
    for (int64_t x : v) integer(x);
    close_tuple(v.size());
  }
  void close_tuple(size_t n) {
    if (n > 3) op('t');
    else op(static_cast<char>(0x84 + n));
    put();
  }
  // OrderedDict() as an empty-hooks argument: GLOBAL, EMPTY_TUPLE, REDUCE.
  void empty_ordered_dict() {
    global("collections", "OrderedDict");
    op(')');
    op('R');
    put();
  }
  // A tensor's __reduce_ex__ result: _rebuild_tensor_v2(storage, offset,
  // size, stride, requires_grad, OrderedDict()).
  void tensor(const std::string& storage_type, const std::string& key, int64_t storage_numel, int64_t offset,
              const std::vector<int64_t>& size, const std::vector<int64_t>& stride, bool requires_grad = false) {
    global("torch._utils", "_rebuild_tensor_v2");
    mark();
    mark();  // persistent id ('storage', type, key, location, numel)
    str("storage");
    global("torch", storage_type);
    str(key);
    str("cpu");
    integer(storage_numel);
    op('t');
    put();
    op('Q');  // BINPERSID
    integer(offset);
    int_tuple(size);
    int_tuple(stride);
    boolean(requires_grad);
    empty_ordered_dict();
    op('t');
    put();
    op('R');
    put();
  }

 private:
  std::string b_;
  int next_ = 0;
  std::map<std::string, int> strs_, globals_;
};

// ---------------------------------------------------------------------------
// A zip writer shaped like torch's (caffe2 PyTorchStreamWriter / miniz):
// stored entries, data aligned to 64 bytes with a padding extra field
// ("FB"), optional zip64 records.
struct ZipOptions {
  bool zip64 = false;
  uint16_t method = 0;  // 8 = pretend deflate, to test the refusal
  bool zero_crc = false;  // torch.serialization.set_crc32_options(False)
};
std::string make_zip(const std::vector<std::pair<std::string, std::string>>& files, ZipOptions opt = {}) {
  std::string out, cd;
  for (const auto& [name, data] : files) {
    const uint64_t off = out.size();
    const uint32_t crc = opt.zero_crc ? 0 : zip_crc32(reinterpret_cast<const uint8_t*>(data.data()), data.size());
    const uint64_t header_end = off + 30 + name.size() + 4;
    const uint64_t pad = (64 - header_end % 64) % 64;
    out += "PK\x03\x04";
    put_le(out, 20, 2);
    put_le(out, 0, 2);
    put_le(out, opt.method, 2);
    put_le(out, 0, 4);  // time, date
    put_le(out, crc, 4);
    put_le(out, data.size(), 4);
    put_le(out, data.size(), 4);
    put_le(out, name.size(), 2);
    put_le(out, 4 + pad, 2);
    out += name;
    put_le(out, 0x4246, 2);  // "FB": padding
    put_le(out, pad, 2);
    out += std::string(pad, 'Z');
    out += data;

    cd += "PK\x01\x02";
    put_le(cd, 20, 2);
    put_le(cd, 45, 2);
    put_le(cd, 0, 2);
    put_le(cd, opt.method, 2);
    put_le(cd, 0, 4);
    put_le(cd, crc, 4);
    if (opt.zip64) {
      put_le(cd, 0xffffffffu, 4);
      put_le(cd, 0xffffffffu, 4);
    } else {
      put_le(cd, data.size(), 4);
      put_le(cd, data.size(), 4);
    }
    put_le(cd, name.size(), 2);
    put_le(cd, opt.zip64 ? 28 : 0, 2);
    put_le(cd, 0, 2);   // comment
    put_le(cd, 0, 2);   // disk
    put_le(cd, 0, 2);   // internal attrs
    put_le(cd, 0, 4);   // external attrs
    put_le(cd, opt.zip64 ? 0xffffffffu : off, 4);
    cd += name;
    if (opt.zip64) {
      put_le(cd, 0x0001, 2);
      put_le(cd, 24, 2);
      put_le(cd, data.size(), 8);
      put_le(cd, data.size(), 8);
      put_le(cd, off, 8);
    }
  }
  const uint64_t cd_off = out.size();
  out += cd;
  if (opt.zip64) {
    const uint64_t z = out.size();
    out += "PK\x06\x06";
    put_le(out, 44, 8);
    put_le(out, 45, 2);
    put_le(out, 45, 2);
    put_le(out, 0, 4);
    put_le(out, 0, 4);
    put_le(out, files.size(), 8);
    put_le(out, files.size(), 8);
    put_le(out, cd.size(), 8);
    put_le(out, cd_off, 8);
    out += "PK\x06\x07";
    put_le(out, 0, 4);
    put_le(out, z, 8);
    put_le(out, 1, 4);
  }
  out += "PK\x05\x06";
  put_le(out, 0, 4);
  put_le(out, opt.zip64 ? 0xffff : files.size(), 2);
  put_le(out, opt.zip64 ? 0xffff : files.size(), 2);
  put_le(out, opt.zip64 ? 0xffffffffu : cd.size(), 4);
  put_le(out, opt.zip64 ? 0xffffffffu : cd_off, 4);
  put_le(out, 0, 2);
  return out;
}

template <typename T>
std::string raw_bytes(const std::vector<T>& v) {
  return std::string(reinterpret_cast<const char*>(v.data()), v.size() * sizeof(T));
}

// The storages of the state dict below.
const std::vector<float> kW = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11};  // [3, 4]
const std::vector<int64_t> kTok = {5, -7, 1LL << 40, 0, 42};
const std::vector<float> kTail = {100, 101, 102, 103, 104, 105};
const std::vector<float> kParam = {-1.5f, 2.25f};
const std::vector<uint8_t> kMask = {1, 0, 7};  // a non-0/1 byte still reads as true

// The pickle torch.save(model.state_dict()) writes: an OrderedDict built by
// REDUCE, filled by SETITEMS, then BUILD with {'_metadata': OrderedDict}.
std::string state_dict_pickle(int protocol = 2) {
  Pickle p(protocol);
  p.global("collections", "OrderedDict");
  p.op(')');
  p.op('R');
  p.put();
  p.mark();
  p.str("lin.weight");
  p.tensor("FloatStorage", "0", 12, 0, {3, 4}, {4, 1});
  p.str("lin.weight_t");  // a transposed view of the same storage
  p.tensor("FloatStorage", "0", 12, 0, {4, 3}, {1, 4});
  p.str("tokens");
  p.tensor("LongStorage", "1", 5, 0, {5}, {1});
  p.str("tail");  // storage offset 2, stride 2
  p.tensor("FloatStorage", "2", 6, 1, {2}, {2});
  p.str("param");  // nn.Parameter
  p.global("torch._utils", "_rebuild_parameter");
  p.tensor("FloatStorage", "3", 2, 0, {2}, {1}, true);
  p.boolean(true);
  p.empty_ordered_dict();
  p.close_tuple(3);
  p.op('R');
  p.put();
  p.str("mask");
  p.tensor("BoolStorage", "4", 3, 0, {3}, {1});
  p.str("empty");
  p.tensor("FloatStorage", "5", 0, 0, {0, 3}, {3, 1});
  p.str("scalar");
  p.tensor("FloatStorage", "2", 6, 5, {}, {});
  p.op('u');
  // state: {'_metadata': OrderedDict([('', {'version': 1})])}
  p.op('}');
  p.put();
  p.str("_metadata");
  p.global("collections", "OrderedDict");
  p.op(')');
  p.op('R');
  p.put();
  p.str("");
  p.op('}');
  p.put();
  p.str("version");
  p.integer(1);
  p.op('s');
  p.op('s');
  p.op('s');
  p.op('b');
  return p.bytes();
}

std::vector<std::pair<std::string, std::string>> state_dict_files(const std::string& prefix, const std::string& pkl) {
  return {{prefix + "/data.pkl", pkl},
          {prefix + "/byteorder", "little"},
          {prefix + "/data/0", raw_bytes(kW)},
          {prefix + "/data/1", raw_bytes(kTok)},
          {prefix + "/data/2", raw_bytes(kTail)},
          {prefix + "/data/3", raw_bytes(kParam)},
          {prefix + "/data/4", raw_bytes(kMask)},
          {prefix + "/data/5", ""},
          {prefix + "/version", "3\n"},
          {prefix + "/.data/serialization_id", "1234567890"}};
}

TensorStore parse(const std::string& img, const std::string& name = "mem.pt") {
  return parse_torch_zip(reinterpret_cast<const uint8_t*>(img.data()), img.size(), name);
}
// "" on success, the ModelError text otherwise; anything else fails the test.
std::string error_of(const std::string& img) {
  try {
    parse(img);
  } catch (const ModelError& e) {
    return e.what();
  }
  return "";
}
// The bytes of a string literal, embedded NULs included.
template <size_t N>
std::string bin(const char (&s)[N]) {
  return std::string(s, N - 1);
}
// The parse fails with a ModelError whose text contains `part`.
void expect_error(const std::string& img, const std::string& part) {
  const std::string e = error_of(img);
  BOOST_TEST(contains(e, part), "expected an error containing '" << part << "', got '" << e << "'");
}
// A one-file pickle in a torch-shaped archive.
std::string zip_pickle(const std::string& pkl, std::vector<std::pair<std::string, std::string>> more = {}) {
  std::vector<std::pair<std::string, std::string>> files{{"archive/data.pkl", pkl}};
  for (auto& f : more) files.push_back(f);
  return make_zip(files);
}

void check_state_dict(const TensorStore& s) {
  BOOST_TEST(s.tensors.size() == 8u);
  at::Tensor w = at::tensor(at::ArrayRef<float>(kW)).reshape({3, 4});
  BOOST_TEST(at::equal(s.tensors.at("lin.weight"), w));
  BOOST_TEST(at::equal(s.tensors.at("lin.weight_t"), w.t()));
  BOOST_TEST(s.tensors.at("lin.weight_t").is_contiguous());
  BOOST_TEST(at::equal(s.tensors.at("tokens"), at::tensor(at::ArrayRef<int64_t>(kTok))));
  BOOST_TEST(s.tensors.at("tokens").scalar_type() == at::kLong);
  BOOST_TEST(at::equal(s.tensors.at("tail"), at::tensor({101.f, 103.f})));
  BOOST_TEST(at::equal(s.tensors.at("param"), at::tensor(at::ArrayRef<float>(kParam))));
  BOOST_TEST(!s.tensors.at("param").requires_grad());
  BOOST_TEST(s.tensors.at("mask").scalar_type() == at::kBool);
  BOOST_TEST(at::equal(s.tensors.at("mask"), at::tensor({1, 0, 1}, at::kByte).to(at::kBool)));
  BOOST_TEST((s.tensors.at("empty").sizes() == at::IntArrayRef{0, 3}));
  BOOST_TEST(s.tensors.at("scalar").dim() == 0);
  BOOST_TEST(s.tensors.at("scalar").item<float>() == 105.f);
}

}  // namespace

BOOST_AUTO_TEST_CASE(reads_real_torch_1_13_file) {
  const std::string pt = fixture("t3/conds_tiny.pt");
  TensorStore got = read_torch_zip(pt);
  TensorStore want = read_safetensors(fixture("t3/conds_tiny.safetensors"));
  const std::vector<std::string> keys = {"t3.speaker_emb", "t3.cond_prompt_speech_tokens", "t3.emotion_adv",
                                         "gen.prompt_token", "gen.prompt_token_len", "gen.prompt_feat",
                                         "gen.embedding"};
  BOOST_TEST(got.tensors.size() == keys.size());  // the None fields are skipped
  for (const auto& k : keys) {
    BOOST_TEST_CONTEXT(k) {
      BOOST_REQUIRE(got.tensors.count(k) == 1u);
      const at::Tensor& a = got.tensors.at(k);
      const at::Tensor& b = want.tensors.at(k);
      BOOST_TEST(a.scalar_type() == b.scalar_type());
      BOOST_TEST(a.sizes() == b.sizes());
      BOOST_TEST(at::equal(a, b));  // bit-exact
    }
  }
  // Opening by content goes through the same reader.
  Checkpoint ck = Checkpoint::open(pt);
  BOOST_TEST(ck.get_raw("t3.cond_prompt_speech_tokens").scalar_type() == at::kLong);
  BOOST_TEST(ck.get("gen.prompt_feat", {1, 500, 80}).numel() == 40000);
}

BOOST_AUTO_TEST_CASE(state_dict_ordered_dict_views_parameters) {
  for (const std::string prefix : {"archive", "pytorch_model", "my model.v2"}) {
    BOOST_TEST_CONTEXT(prefix) { check_state_dict(parse(make_zip(state_dict_files(prefix, state_dict_pickle())))); }
  }
  // zip64 records, as torch writes for files past 4 GiB.
  ZipOptions z64;
  z64.zip64 = true;
  check_state_dict(parse(make_zip(state_dict_files("archive", state_dict_pickle()), z64)));
  // Saved without CRCs.
  ZipOptions nocrc;
  nocrc.zero_crc = true;
  check_state_dict(parse(make_zip(state_dict_files("archive", state_dict_pickle()), nocrc)));
}

BOOST_AUTO_TEST_CASE(read_from_disk_and_by_content) {
  const std::string path = "test_torch_zip_state.pt";
  {
    std::ofstream f(path, std::ios::binary);
    const std::string img = make_zip(state_dict_files("test_torch_zip_state", state_dict_pickle()));
    f.write(img.data(), static_cast<std::streamsize>(img.size()));
  }
  check_state_dict(read_torch_zip(path));
  Checkpoint ck = Checkpoint::open(path);
  BOOST_TEST(ck.sub("lin.").get("weight", {3, 4}).sum().item<float>() == 66.f);
  std::remove(path.c_str());
}

BOOST_AUTO_TEST_CASE(newer_protocol_opcodes) {
  // Protocol 4 as newer tools write it: FRAME, SHORT_BINUNICODE, MEMOIZE,
  // STACK_GLOBAL, _rebuild_tensor_v3 over an UntypedStorage with a dtype.
  Pickle p(4);
  std::string& b = p.raw();
  b += '\x95';
  put_le(b, 0, 8);  // FRAME length (a hint only)
  auto sstr = [&](const std::string& s) {
    b += '\x8c';
    b += static_cast<char>(s.size());
    b += s;
    b += '\x94';
  };
  b += '}';
  b += '\x94';
  sstr("w");
  sstr("torch._utils");
  sstr("_rebuild_tensor_v3");
  b += '\x93';
  b += '(';
  b += '(';
  sstr("storage");
  sstr("torch");
  sstr("UntypedStorage");
  b += '\x93';
  sstr("0");
  sstr("cpu");
  p.integer(16);  // bytes
  b += 't';
  b += 'Q';
  p.integer(1);
  p.int_tuple({2});
  p.int_tuple({1});
  p.boolean(false);
  p.empty_ordered_dict();
  sstr("torch");
  sstr("float32");
  b += '\x93';
  b += 't';
  b += 'R';
  b += 's';
  std::vector<float> data = {1, 2, 3, 4};
  TensorStore s = parse(zip_pickle(p.bytes(), {{"archive/data/0", raw_bytes(data)}}));
  BOOST_TEST(at::equal(s.tensors.at("w"), at::tensor({2.f, 3.f})));
}

BOOST_AUTO_TEST_CASE(nested_dicts_and_wrappers_flatten_with_dots) {
  // {"state_dict": {"enc": {"w": T}}, "epoch": 3, "lr": 0.5, "name": "x",
  //  "layers": [T], "opt": None}
  Pickle p;
  p.op('}');
  p.put();
  p.mark();
  p.str("state_dict");
  p.op('}');
  p.put();
  p.str("enc");
  p.op('}');
  p.put();
  p.str("w");
  p.tensor("FloatStorage", "0", 2, 0, {2}, {1});
  p.op('s');
  p.op('s');
  p.str("epoch");
  p.integer(3);
  p.str("lr");
  p.flt(0.5);
  p.str("name");
  p.str("x");
  p.str("layers");
  p.op(']');
  p.put();
  p.tensor("FloatStorage", "0", 2, 1, {1}, {1});
  p.op('a');
  p.str("opt");
  p.none();
  p.op('u');
  std::vector<float> data = {7, 8};
  TensorStore s = parse(zip_pickle(p.bytes(), {{"archive/data/0", raw_bytes(data)}}));
  BOOST_TEST(s.tensors.size() == 2u);
  BOOST_TEST(at::equal(s.tensors.at("state_dict.enc.w"), at::tensor({7.f, 8.f})));
  BOOST_TEST(at::equal(s.tensors.at("layers.0"), at::tensor({8.f})));
}

BOOST_AUTO_TEST_CASE(refuses_foreign_globals) {
  // The classic exploit: os.system("...") via GLOBAL + REDUCE.
  Pickle p;
  p.global("os", "system");
  p.str("echo pwned");
  p.close_tuple(1);
  p.op('R');
  std::string e = error_of(zip_pickle(p.bytes()));
  BOOST_TEST(contains(e, "refusing to load global 'os.system'"));
  BOOST_TEST(contains(e, "may run code"));
  // The same through STACK_GLOBAL.
  Pickle q(4);
  q.str("builtins");
  q.str("eval");
  q.op('\x93');
  expect_error(zip_pickle(q.bytes()), "'builtins.eval'");
  // A storage type we do not model, and a TorchScript-style class.
  Pickle r;
  r.global("torch", "ComplexFloatStorage");
  expect_error(zip_pickle(r.bytes()), "torch.ComplexFloatStorage");
  Pickle t;
  t.global("__torch__.Model", "Model");
  expect_error(zip_pickle(t.bytes()), "TorchScript");
}

BOOST_AUTO_TEST_CASE(malformed_inputs_are_clear_errors) {
  const std::string pkl = state_dict_pickle();
  auto files = state_dict_files("archive", pkl);
  BOOST_TEST(error_of(make_zip(files)).empty());

  ZipOptions deflate;
  deflate.method = 8;
  expect_error(make_zip(files, deflate), "compressed");
  expect_error("PK\x03\x04" + std::string(40, ' '), "end-of-central-directory");
  expect_error(make_zip({{"archive/other.txt", "x"}}), "data.pkl");

  auto without = [&](const std::string& name) {
    auto f = files;
    f.erase(std::remove_if(f.begin(), f.end(), [&](const auto& e) { return e.first == name; }), f.end());
    return f;
  };
  expect_error(make_zip(without("archive/data/1")), "archive/data/1' is missing");

  auto replaced = [&](const std::string& name, const std::string& data) {
    auto f = files;
    for (auto& e : f)
      if (e.first == name) e.second = data;
    return f;
  };
  expect_error(make_zip(replaced("archive/byteorder", "big")), "big");
  expect_error(make_zip(replaced("archive/data/0", raw_bytes(kW).substr(0, 40))), "record holds 40");

  // CRC-32 catches a flipped data byte.
  std::string img = make_zip(files);
  const size_t at = img.find(raw_bytes(kTok));
  img[at + 3] ^= 0x10;
  expect_error(img, "CRC");

  auto one_tensor = [](int64_t storage_numel, int64_t offset, std::vector<int64_t> size, std::vector<int64_t> stride) {
    Pickle p;
    p.op('}');
    p.put();
    p.str("x");
    p.tensor("FloatStorage", "0", storage_numel, offset, size, stride);
    p.op('s');
    return zip_pickle(p.bytes(), {{"archive/data/0", std::string(16, '\0')}});
  };
  BOOST_TEST(error_of(one_tensor(4, 0, {2, 2}, {2, 1})).empty());
  BOOST_TEST(error_of(one_tensor(4, 0, {2, 2}, {0, 0})).empty());  // expanded view
  expect_error(one_tensor(4, 1, {2, 2}, {2, 1}), "past the end of storage");
  BOOST_TEST(error_of(one_tensor(4, 0, {2, 2}, {1, 2})).empty());  // transposed
  expect_error(one_tensor(4, 0, {3, 2}, {1, 2}), "past the end");
  expect_error(one_tensor(4, 0, {2, 2}, {2}), "differ in rank");
  expect_error(one_tensor(5, 0, {1}, {1}), "record holds 16");
  expect_error(one_tensor(int64_t{1} << 61, 0, {1}, {1}), "impossible size");
  expect_error(one_tensor(4, 0, {int64_t{1} << 40, int64_t{1} << 40}, {0, 0}), "implausibly large");
  expect_error(one_tensor(4, 0, {int64_t{1} << 20, int64_t{1} << 20}, {0, 0}), "expand");
  expect_error(one_tensor(4, 0, {-1}, {1}), "negative");

  // Opcode-level damage.
  expect_error(zip_pickle(bin("\x80\x02\x30.")), "underflow");      // POP on empty
  expect_error(zip_pickle(bin("\x80\x02h\x07.")), "memo index 7");  // BINGET
  expect_error(zip_pickle(bin("\x80\x02}I42\n.")), "opcode 0x49");   // text INT
  expect_error(zip_pickle(bin("\x80\x02}X\xff\xff\xff\x7f")), "truncated");
  expect_error(zip_pickle(bin("\x80\x02}(u}.")), "STOP with 2");
  expect_error(zip_pickle(bin("\x80\x02]\x85.")), "not a dict");  // (list,)
  expect_error(zip_pickle(bin("\x80\x02\x85.")), "underflow");
  expect_error(zip_pickle(bin("\x80\x02}(K\x01u.")), "odd number");
  expect_error(zip_pickle(bin("\x80\x02}(K")), "truncated");
  expect_error(zip_pickle(bin("\x80\x02}K\x01(N\x86.")), "underflow");  // across a MARK

  // Deep nesting: {"a": {"a": ... 300 levels}}.
  Pickle deep;
  for (int i = 0; i < 300; ++i) {
    deep.op('}');
    deep.str("a");
  }
  deep.op('}');
  for (int i = 0; i < 300; ++i) deep.op('s');
  expect_error(zip_pickle(deep.bytes()), "nested more than");
  // A self-containing dict (a cycle) hits the same limit.
  expect_error(zip_pickle(bin("\x80\x02}q\x00X\x01\x00\x00\x00" "ah\x00s.")), "nested");
  // A DAG that doubles 60 times would visit 2^60 paths.
  Pickle dag;
  dag.op('}');
  int prev = dag.put();
  for (int i = 0; i < 60; ++i) {
    dag.op('0');  // the previous level stays reachable through the memo only
    dag.op('}');
    const int cur = dag.put();
    dag.str("l");
    dag.get(prev);
    dag.op('s');
    dag.str("r");
    dag.get(prev);
    dag.op('s');
    prev = cur;
  }
  expect_error(zip_pickle(dag.bytes()), "implausibly large");
  // Keys that join into an absurdly long name.
  Pickle longkey;
  for (int i = 0; i < 30; ++i) {
    longkey.op('}');
    longkey.str(std::string(200, 'k'));
  }
  longkey.tensor("FloatStorage", "0", 1, 0, {1}, {1});
  for (int i = 0; i < 30; ++i) longkey.op('s');
  expect_error(zip_pickle(longkey.bytes(), {{"archive/data/0", std::string(4, '\0')}}), "longer than 4096");
  // A pickle that is not a dict at all.
  expect_error(zip_pickle(bin("\x80\x02K\x05.")), "not a dict of tensors");
}

BOOST_AUTO_TEST_CASE(every_truncation_is_an_error) {
  const std::string img = make_zip(state_dict_files("archive", state_dict_pickle()));
  for (size_t cut = 0; cut < img.size(); ++cut) {
    BOOST_TEST_CONTEXT("zip cut at " << cut) { BOOST_TEST(!error_of(img.substr(0, cut)).empty()); }
  }
  // The pickle itself cut at every byte, re-zipped with a valid CRC so the
  // unpickler (not the checksum) has to notice.
  const std::string pkl = state_dict_pickle();
  for (size_t cut = 0; cut < pkl.size(); ++cut) {
    BOOST_TEST_CONTEXT("pickle cut at " << cut) {
      BOOST_TEST(!error_of(make_zip(state_dict_files("archive", pkl.substr(0, cut)))).empty());
    }
  }
  // The real file at a spread of cut points.
  const std::string real = slurp(fixture("t3/conds_tiny.pt"));
  for (size_t cut = 0; cut < real.size(); cut += 997) BOOST_TEST(!error_of(real.substr(0, cut)).empty());
}

BOOST_AUTO_TEST_CASE(random_corruption_never_crashes) {
  std::mt19937_64 rng(1234);
  const std::string pkl = state_dict_pickle();
  const std::string img = make_zip(state_dict_files("archive", pkl));
  int ok = 0, refused = 0;
  auto run = [&](const std::string& bad) {
    try {
      parse(bad);
      ++ok;
    } catch (const ModelError&) {
      ++refused;
    } catch (const std::exception& e) {
      BOOST_ERROR("non-ModelError exception: " << e.what());
    }
  };
  // Whole-file mutations (mostly caught by the zip structure and CRC).
  for (int i = 0; i < 2000; ++i) {
    std::string bad = img;
    const int flips = 1 + static_cast<int>(rng() % 4);
    for (int k = 0; k < flips; ++k) bad[rng() % bad.size()] = static_cast<char>(rng() & 0xff);
    run(bad);
  }
  // Pickle mutations behind a valid CRC: overwrite, insert, delete bytes.
  for (int i = 0; i < 4000; ++i) {
    std::string bad = pkl;
    const int edits = 1 + static_cast<int>(rng() % 3);
    for (int k = 0; k < edits && !bad.empty(); ++k) {
      const size_t at = rng() % bad.size();
      const char c = static_cast<char>(rng() & 0xff);
      switch (rng() % 3) {
        case 0: bad[at] = c; break;
        case 1: bad.insert(bad.begin() + static_cast<std::ptrdiff_t>(at), c); break;
        default: bad.erase(at, 1); break;
      }
    }
    run(make_zip(state_dict_files("archive", bad)));
  }
  BOOST_TEST_MESSAGE("corruption: " << ok << " loaded, " << refused << " refused");
  BOOST_TEST(refused > 0);
}
