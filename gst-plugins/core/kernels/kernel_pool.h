// A small persistent thread pool for the hand-written kernels: no OpenMP
// (compute_threads.h). Workers poll briefly between a step's back-to-back
// jobs and block on a condition variable when idle.
#pragma once

#include <cstdint>
#include <functional>

namespace chatterbox::kernels {

// Calls fn(lo, hi) on `parts` contiguous ranges splitting [0, n), the first
// on the calling thread, the others on pool workers, and returns when all
// are done. parts <= 1, or the pool busy with another caller's job: fn(0, n)
// on the calling thread.
void run_parallel(int parts, int64_t n, const std::function<void(int64_t, int64_t)>& fn);

}  // namespace chatterbox::kernels
