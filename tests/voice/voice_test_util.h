// Helpers shared by the voice front-end suites: parity reports, the token
// near-tie rule of the clone fixture README, and real-layout key lists.
#pragma once

#include "gst-plugins/core/checkpoint.h"
#include "tests/fixtures.h"
#include "tests/tensor_compare.h"

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <boost/test/unit_test.hpp>
#include <unistd.h>

#include <fstream>
#include <iostream>
#include <sstream>
#include <string>
#include <vector>

namespace chatterbox::test {

// Max abs error, printed so the log documents the margin to the tolerance.
inline double report(const std::string& what, const at::Tensor& got, const at::Tensor& want) {
  BOOST_REQUIRE_MESSAGE(got.sizes() == want.sizes(), what << ": shape " << got.sizes() << " vs " << want.sizes());
  const double d = max_abs_diff(got, want);
  std::cout << "  " << what << ": max abs " << d << " rel-L2 " << rel_l2(got, want) << " (max |ref| "
            << want.abs().max().item<double>() << ")\n";
  return d;
}

// The clone README's token rule: tokens must be equal except where one of
// the reference's 8 FSQ values h is within `band` (1e-4) of a rounding
// boundary |h| = 0.5. Returns the number of mismatches outside such near-ties
// (must be 0); prints both counts.
inline int64_t token_mismatches(const std::string& what, const at::Tensor& got, const at::Tensor& want,
                                const at::Tensor& ref_h, double band = 1e-4) {
  BOOST_REQUIRE_MESSAGE(got.sizes() == want.sizes(), what << ": shape " << got.sizes() << " vs " << want.sizes());
  at::Tensor g = got.to(at::kLong).reshape({-1}), w = want.to(at::kLong).reshape({-1});
  at::Tensor h = ref_h.to(at::kDouble).reshape({g.size(0), -1});
  at::Tensor near = ((h.abs() - 0.5).abs() < band).any(1);
  at::Tensor differ = g.ne(w);
  const int64_t bad = (differ & ~near).sum().item<int64_t>();
  std::cout << "  " << what << ": " << differ.sum().item<int64_t>() << " of " << g.size(0)
            << " tokens differ, near-ties " << near.sum().item<int64_t>() << ", closest margin "
            << (h.abs() - 0.5).abs().min().item<double>() << "\n";
  return bad;
}

struct KeyRow {
  std::string name, dtype;
  std::vector<int64_t> shape;
};

// Rows of a fixtures/s3gen/keys/*.tsv list whose name starts with `prefix`.
inline std::vector<KeyRow> key_rows(const std::string& tsv, const std::string& prefix) {
  std::ifstream f(fixture("s3gen/keys/" + tsv));
  std::string line;
  std::getline(f, line);  // header
  std::vector<KeyRow> rows;
  while (std::getline(f, line)) {
    std::istringstream ss(line);
    KeyRow r;
    std::string shape;
    std::getline(ss, r.name, '\t');
    std::getline(ss, r.dtype, '\t');
    std::getline(ss, shape, '\t');
    if (r.name.compare(0, prefix.size(), prefix) != 0) continue;
    for (char& c : shape)
      if (c == '[' || c == ']' || c == ',') c = ' ';
    std::istringstream dims(shape);
    int64_t d;
    while (dims >> d) r.shape.push_back(d);
    rows.push_back(r);
  }
  BOOST_REQUIRE_MESSAGE(!rows.empty(), "no rows with prefix '" << prefix << "' in " << tsv);
  return rows;
}

// A store holding the listed names/dtypes/shapes. Float tensors are small
// seeded values, I64 zeros; `lazy` makes them zero-stride views of one value
// (the real tokenizer is 495 MB: loading must not need a copy of it here).
inline std::shared_ptr<TensorStore> synth_store(const std::vector<KeyRow>& rows, bool lazy, uint64_t seed = 7) {
  auto store = std::make_shared<TensorStore>();
  store->path = "<synthesised real layout>";
  at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(seed);
  for (const auto& r : rows) {
    if (r.dtype == "I64") {
      store->tensors[r.name] = at::zeros(r.shape, at::kLong);
    } else if (lazy) {
      store->tensors[r.name] = at::full({1}, 0.01, at::kFloat).reshape(std::vector<int64_t>(r.shape.size(), 1)).expand(r.shape);
    } else {
      at::Tensor t = at::randn(r.shape, gen, at::kFloat) * 0.05;
      // variances and norms stay positive
      if (r.name.find("running_var") != std::string::npos) t = t.abs() + 1.0;
      store->tensors[r.name] = t;
    }
  }
  return store;
}

inline std::string tmp_path(const std::string& name) {
  return "/tmp/voice_test_" + std::to_string(::getpid()) + "_" + name;
}

}  // namespace chatterbox::test
