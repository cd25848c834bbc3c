// A job is split into a few chunks per thread, taken one at a time by the
// caller and the workers, so a worker that the scheduler is slow to wake
// (another process holds its core) costs nothing: the caller takes its
// chunks. Workers block on a condition variable between jobs (spinning
// workers on a loaded 2-core machine took the caller's core: streaming at 2
// threads ran 2x slower than at 1); only the caller polls briefly for the
// chunks still running on a worker. When the cores are taken by other
// processes, parallel jobs stop paying: the workers wake too late to take a
// fair share of the chunks (and their wake-ups preempt the caller), or get
// preempted holding one while the caller waits; 2 threads then ran up to
// 1.7x slower than 1. So the pool watches both over windows of 32 jobs and,
// when they say so, runs jobs on the caller alone for a while, then tries
// again.
#include "gst-plugins/core/kernels/kernel_pool.h"

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <thread>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

namespace chatterbox::kernels {

namespace {

using Clock = std::chrono::steady_clock;
constexpr auto kCallerSpin = std::chrono::microseconds(50);
constexpr int kChunksPerThread = 4;
constexpr auto kStall = std::chrono::microseconds(300);  // a wait this long for a worker's chunk is a stall
constexpr int kWindow = 32;                               // parallel jobs per verdict
constexpr int kSerialJobs = 256;                          // jobs on the caller alone after a bad verdict

inline void relax() {
#if defined(__x86_64__)
  _mm_pause();
#endif
}

// Polls pred() for `spin`, then waits on cv (pred re-checked under mu).
template <typename Pred>
void spin_then_wait(std::chrono::microseconds spin, std::mutex& mu, std::condition_variable& cv,
                    std::atomic<int>& sleepers, Pred pred) {
  const auto until = Clock::now() + spin;
  for (int i = 0; !pred(); ++i) {
    relax();
    if ((i & 63) == 0 && Clock::now() > until) {
      std::unique_lock<std::mutex> lk(mu);
      sleepers.fetch_add(1);
      cv.wait(lk, pred);
      sleepers.fetch_sub(1);
      return;
    }
  }
}

class Pool {
 public:
  // Never destroyed: its detached workers may outlive static destructors.
  static Pool& get() {
    static Pool* pool = new Pool();
    return *pool;
  }

  void run(int parts, int64_t n, const std::function<void(int64_t, int64_t)>& fn) {
    std::unique_lock<std::mutex> call(call_mu_, std::try_to_lock);
    if (!call || serial_left_ > 0) {  // another vocoder's job is running, or backing off
      if (call) --serial_left_;
      fn(0, n);
      return;
    }
    while (workers_ < parts - 1) std::thread(&Pool::work, this, ++workers_).detach();
    // The previous job is complete (all its chunks done): its fields are free.
    fn_ = &fn;
    n_ = n;
    parts_ = parts;
    const int64_t chunks = std::min<int64_t>(n, int64_t{kChunksPerThread} * parts);
    chunks_.store(chunks);
    done_.store(0);
    const uint64_t gen = (ticket_.load() >> 32) + 1;
    ticket_.store(gen << 32);  // publishes the job: generation gen, next chunk 0
    if (worker_sleepers_.load() > 0) {
      std::lock_guard<std::mutex> lk(mu_);
      wake_.notify_all();
    }
    const int64_t mine = take_chunks(gen);
    const auto waited_from = Clock::now();
    spin_then_wait(kCallerSpin, mu_, done_cv_, caller_sleeps_, [&] { return done_.load() == chunks; });
    // Verdict per window: workers did less than a quarter of their fair
    // share of the chunks, or the caller stalled on them in a quarter of the
    // jobs.
    win_stalls_ += Clock::now() - waited_from > kStall ? 1 : 0;
    win_chunks_ += chunks;
    win_worker_ += chunks - mine;
    if (++win_jobs_ == kWindow) {
      const double fair = static_cast<double>(parts - 1) / parts;
      if (win_worker_ < 0.25 * fair * win_chunks_ || win_stalls_ * 4 >= kWindow) serial_left_ = kSerialJobs;
      win_jobs_ = win_stalls_ = 0;
      win_chunks_ = win_worker_ = 0;
    }
  }

 private:
  // Runs chunks of job `gen` until none is left (or the job is another
  // one); returns how many it ran.
  int64_t take_chunks(uint64_t gen) {
    for (int64_t ran = 0;; ++ran) {
      uint64_t t = ticket_.load();
      while (true) {
        if ((t >> 32) != gen || static_cast<int64_t>(t & 0xffffffffu) >= chunks_.load()) return ran;
        if (ticket_.compare_exchange_weak(t, t + 1)) break;
      }
      // Chunk c of job gen is ours, and the job (its fields) lasts until it is done.
      const int64_t c = static_cast<int64_t>(t & 0xffffffffu), chunks = chunks_.load();
      (*fn_)(n_ * c / chunks, n_ * (c + 1) / chunks);
      if (done_.fetch_add(1) + 1 == chunks && caller_sleeps_.load() > 0) {
        std::lock_guard<std::mutex> lk(mu_);
        done_cv_.notify_all();
      }
    }
  }

  void work(int index) {
    uint64_t seen = 0;  // a job already running when this worker starts is joined at once
    for (;;) {
      spin_then_wait(std::chrono::microseconds(0), mu_, wake_, worker_sleepers_, [&] { return (ticket_.load() >> 32) != seen; });
      seen = ticket_.load() >> 32;
      if (index < parts_) take_chunks(seen);
    }
  }

  std::mutex call_mu_;  // one job at a time
  std::mutex mu_;
  std::condition_variable wake_, done_cv_;
  std::atomic<int> worker_sleepers_{0}, caller_sleeps_{0};
  // The job, written before ticket_ publishes it and kept until all its
  // chunks are done.
  const std::function<void(int64_t, int64_t)>* fn_ = nullptr;
  int64_t n_ = 0;
  std::atomic<int64_t> chunks_{0};  // also read by workers checking a stale job
  std::atomic<int> parts_{0};
  std::atomic<int64_t> done_{0};
  std::atomic<uint64_t> ticket_{0};  // generation << 32 | next chunk
  int workers_ = 0;
  // Caller only (under call_mu_): the current window, the back-off.
  int win_jobs_ = 0, win_stalls_ = 0;
  int64_t win_chunks_ = 0, win_worker_ = 0;
  int serial_left_ = 0;
};

}  // namespace

void run_parallel(int parts, int64_t n, const std::function<void(int64_t, int64_t)>& fn) {
  if (parts > n) parts = static_cast<int>(n);
  if (parts <= 1) {
    if (n > 0) fn(0, n);
    return;
  }
  Pool::get().run(parts, n, fn);
}

}  // namespace chatterbox::kernels
