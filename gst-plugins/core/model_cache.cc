#include "gst-plugins/core/model_cache.h"

#include <sys/stat.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <filesystem>

namespace chatterbox {

namespace {

std::string stat_identity(const std::string& canonical, const struct stat& st) {
  const int64_t ns = static_cast<int64_t>(st.st_mtim.tv_sec) * 1000000000LL + st.st_mtim.tv_nsec;
  return canonical + "|" + std::to_string(static_cast<int64_t>(st.st_size)) + "|" + std::to_string(ns);
}

}  // namespace

std::string file_identity(const std::string& path) {
  namespace fs = std::filesystem;
  std::error_code ec;
  const fs::path canonical = fs::canonical(path, ec);
  struct stat st;
  if (ec || ::stat(canonical.c_str(), &st) != 0) return path + "|missing";
  if (!S_ISDIR(st.st_mode)) return stat_identity(canonical.string(), st);
  // A model directory (pytorch_model.bin + config.yaml): the files in it.
  std::vector<std::string> parts;
  for (fs::directory_iterator it(canonical, ec), end; !ec && it != end; it.increment(ec)) {
    struct stat fst;
    if (::stat(it->path().c_str(), &fst) == 0 && S_ISREG(fst.st_mode)) parts.push_back(stat_identity(it->path().string(), fst));
  }
  std::sort(parts.begin(), parts.end());
  std::string out = canonical.string() + "/";
  for (const auto& p : parts) out += "\n  " + p;
  return out;
}

// One key: the weak reference to the live weights, and a mutex held while
// they load so a second user of the same key waits instead of loading again.
struct ModelCache::Slot {
  std::mutex load_mu;
  std::weak_ptr<const void> weights;
};

ModelCache& ModelCache::global() {
  // Never destroyed: elements may release weights during process exit, after
  // static destructors would have run.
  static ModelCache* cache = new ModelCache();
  return *cache;
}

bool ModelCache::enabled() {
  static const bool on = [] {
    const char* v = std::getenv("CHATTERBOX_MODEL_CACHE");
    return !(v && (std::strcmp(v, "0") == 0 || std::strcmp(v, "false") == 0 || std::strcmp(v, "off") == 0));
  }();
  return on;
}

std::string ModelCache::make_key(const std::string& kind, const std::vector<std::string>& files,
                                 const std::string& device, const std::string& options) {
  std::string key = kind + "\ndevice=" + device + "\noptions=" + options;
  for (const auto& f : files) key += "\n" + file_identity(f);
  return key;
}

void ModelCache::prune_locked() {
  // A slot is dropped once its weights are gone and nobody is loading into it
  // (only the map holds it).
  for (auto it = slots_.begin(); it != slots_.end();) {
    if (it->second.use_count() == 1 && it->second->weights.expired())
      it = slots_.erase(it);
    else
      ++it;
  }
}

std::shared_ptr<const void> ModelCache::get_erased(const std::string& key,
                                                   const std::function<std::shared_ptr<const void>()>& load) {
  if (!enabled()) {
    std::shared_ptr<const void> p = load();
    std::lock_guard<std::mutex> lock(mu_);
    ++loads_;
    return p;
  }
  std::shared_ptr<Slot> slot;
  {
    std::lock_guard<std::mutex> lock(mu_);
    prune_locked();
    auto& s = slots_[key];
    if (!s) s = std::make_shared<Slot>();
    slot = s;
  }
  std::lock_guard<std::mutex> load_lock(slot->load_mu);
  if (std::shared_ptr<const void> live = slot->weights.lock()) return live;
  std::shared_ptr<const void> fresh = load();  // may throw: the slot stays empty
  std::lock_guard<std::mutex> lock(mu_);  // entries() and prune read the slot under mu_
  slot->weights = fresh;
  ++loads_;
  return fresh;
}

std::vector<ModelCache::Entry> ModelCache::entries() const {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<Entry> out;
  for (const auto& kv : slots_) {
    const long users = kv.second->weights.use_count();
    if (users > 0) out.push_back({kv.first, users});
  }
  return out;
}

uint64_t ModelCache::loads() const {
  std::lock_guard<std::mutex> lock(mu_);
  return loads_;
}

}  // namespace chatterbox
