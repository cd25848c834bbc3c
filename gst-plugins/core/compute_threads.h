// CPU thread policy for the model libraries on Debian's LibTorch.
//
// That LibTorch runs its GEMMs in OpenBLAS's own pthread pool and its
// elementwise ops in libgomp's pool. On a small machine the two pools fight:
// libgomp workers spin after each parallel region while the OpenBLAS threads
// want the same cores (measured 2-10x slower at 2 + 2 threads, and HiFT 3.6 s
// -> 0.33 s for 1 s of audio with OMP_WAIT_POLICY=PASSIVE). So with that BLAS
// the compute runs with one OpenMP thread (set for the calling thread only,
// and restored: ComputeThreads) and the GEMMs get the threads
// (set_compute_threads sizes OpenBLAS's pool). With any other BLAS (MKL,
// OpenMP OpenBLAS) both fall back to at::set_num_threads. The symbols are
// found with dlsym so nothing links against OpenBLAS or libgomp directly.
#pragma once

#include <ATen/Parallel.h>

#include <dlfcn.h>

namespace chatterbox {

struct ThreadingApi {
  void (*omp_set)(int) = nullptr;
  int (*omp_get)() = nullptr;
  void (*blas_set)(int) = nullptr;
  int (*blas_get)() = nullptr;
  bool blas_own_pool = false;  // OpenBLAS built with pthreads
  ThreadingApi() {
    omp_set = reinterpret_cast<void (*)(int)>(dlsym(RTLD_DEFAULT, "omp_set_num_threads"));
    omp_get = reinterpret_cast<int (*)()>(dlsym(RTLD_DEFAULT, "omp_get_max_threads"));
    blas_set = reinterpret_cast<void (*)(int)>(dlsym(RTLD_DEFAULT, "openblas_set_num_threads"));
    blas_get = reinterpret_cast<int (*)()>(dlsym(RTLD_DEFAULT, "openblas_get_num_threads"));
    auto parallel = reinterpret_cast<int (*)()>(dlsym(RTLD_DEFAULT, "openblas_get_parallel"));
    blas_own_pool = blas_set && parallel && parallel() == 1;
  }
};

inline const ThreadingApi& threading_api() {
  static const ThreadingApi api;
  return api;
}

// Scope guard: one OpenMP thread for the calling thread while it computes
// (only when the GEMMs have their own OpenBLAS pool).
class ComputeThreads {
 public:
  ComputeThreads() {
    const auto& t = threading_api();
    if (t.blas_own_pool && t.omp_set && t.omp_get) {
      prev_ = t.omp_get();
      if (prev_ != 1) t.omp_set(1);
    }
  }
  ~ComputeThreads() {
    if (prev_ > 1) threading_api().omp_set(prev_);
  }
  ComputeThreads(const ComputeThreads&) = delete;
  ComputeThreads& operator=(const ComputeThreads&) = delete;

 private:
  int prev_ = 0;
};

// Threads for the heavy math (process-wide): OpenBLAS's pool when it has its
// own, else LibTorch's intra-op pool. threads <= 0 leaves everything as is.
inline void set_compute_threads(int threads) {
  if (threads <= 0) return;
  const auto& t = threading_api();
  if (t.blas_own_pool)
    t.blas_set(threads);
  else
    at::set_num_threads(threads);
}

// The thread count set_compute_threads established (for a model's own
// parallel kernels, which should follow the same setting).
inline int compute_threads() {
  const auto& t = threading_api();
  const int n = t.blas_own_pool && t.blas_get ? t.blas_get() : at::get_num_threads();
  return n > 0 ? n : 1;
}

}  // namespace chatterbox
