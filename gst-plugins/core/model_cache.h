// Process-wide cache of loaded model weights, so element instances (and
// pipelines in other threads) that name the same model file share one copy.
//
// An entry is keyed by what decides the loaded weights: the kind of model,
// the canonical path of every file read with its size and modification time
// (a file replaced on disk is a new key, so it is loaded afresh), the device
// and any option that changes the weights. The cache holds only weak
// references: the weights live while some user holds the shared_ptr, and are
// freed when the last one lets go. Loads of the same key are serialised (the
// second caller waits and gets the first one's result); loads of other keys
// run in parallel. A load that throws caches nothing.
//
// The cached object must be immutable in use: every user may run inference
// on it at the same time from its own thread, keeping its own streaming
// state elsewhere.
//
// CHATTERBOX_MODEL_CACHE=0 in the environment turns sharing off (every get()
// loads a private copy): for measuring what sharing saves, and for debugging.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <typeinfo>
#include <vector>

namespace chatterbox {

// "<canonical path>|<size>|<mtime ns>" of a file; for a directory, the same
// for each regular file directly in it (sorted). A path that cannot be
// examined gives "<path>|missing": the loader then reports its own error.
std::string file_identity(const std::string& path);

class ModelCache {
 public:
  // The cache every element of the process uses.
  static ModelCache& global();

  ModelCache() = default;
  ModelCache(const ModelCache&) = delete;
  ModelCache& operator=(const ModelCache&) = delete;

  // The weights for `key`: the live shared copy when there is one, else the
  // result of load() (run at most once at a time per key; its exceptions
  // propagate). `key` should come from make_key().
  template <class T>
  std::shared_ptr<const T> get(const std::string& key, const std::function<std::shared_ptr<const T>()>& load) {
    std::shared_ptr<const void> p = get_erased(std::string(typeid(T).name()) + "\n" + key,
                                               [&]() -> std::shared_ptr<const void> { return load(); });
    return std::static_pointer_cast<const T>(p);
  }

  // A key from the model kind ("vocos", "hift", ...), the files read (their
  // identities), the device and the options that change the weights.
  static std::string make_key(const std::string& kind, const std::vector<std::string>& files,
                              const std::string& device = "cpu", const std::string& options = "");

  // What the cache holds (tests, logs): one row per key whose weights are
  // alive, with the number of shared_ptr users.
  struct Entry {
    std::string key;
    long users;
  };
  std::vector<Entry> entries() const;
  // How many times a loader ran (a cache miss), since the process started.
  uint64_t loads() const;
  // False when CHATTERBOX_MODEL_CACHE=0 (read once).
  static bool enabled();

 private:
  struct Slot;
  std::shared_ptr<const void> get_erased(const std::string& key,
                                         const std::function<std::shared_ptr<const void>()>& load);
  void prune_locked();

  mutable std::mutex mu_;
  std::map<std::string, std::shared_ptr<Slot>> slots_;
  uint64_t loads_ = 0;
};

}  // namespace chatterbox
