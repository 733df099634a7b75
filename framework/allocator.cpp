// Caching allocator (see allocator.h).
#include "allocator.h"

#include <cstdlib>
#include <map>
#include <mutex>
#include <vector>

#include "error.h"

namespace dermis::allocator {

namespace {
constexpr size_t kMinCached = 64 << 10;  // smaller blocks come cheaply from malloc's own bins

struct Cache {
  std::mutex mu;
  std::map<size_t, std::vector<void*>> free;  // by rounded size
  size_t cached = 0, limit = 0, hits = 0, misses = 0;
  Cache() {
    const char* env = std::getenv("DERMIS_ALLOCATOR_CACHE_MB");
    const long mb = env ? std::strtol(env, nullptr, 10) : 4096;
    limit = static_cast<size_t>(mb > 0 ? mb : 0) << 20;
  }
  ~Cache() {
    for (auto& [n, v] : free)
      for (void* p : v) std::free(p);
  }
};

Cache& cache() {
  static Cache* c = new Cache();  // never destroyed: tensors may be freed during static destruction
  return *c;
}

size_t round_size(size_t bytes) {
  if (bytes < kMinCached) return (bytes + 63) / 64 * 64;
  return (bytes + 4095) / 4096 * 4096;  // page granularity so nearby sizes share blocks
}
}  // namespace

std::shared_ptr<uint8_t> allocate(size_t bytes) {
  const size_t n = round_size(bytes == 0 ? 64 : bytes);
  void* p = nullptr;
  if (n >= kMinCached) {
    Cache& c = cache();
    std::lock_guard<std::mutex> lk(c.mu);
    auto it = c.free.find(n);
    if (it != c.free.end() && !it->second.empty()) {
      p = it->second.back();
      it->second.pop_back();
      c.cached -= n;
      ++c.hits;
    } else {
      ++c.misses;
    }
  }
  if (!p) p = std::aligned_alloc(64, n);
  DERMIS_CHECK(p != nullptr, "out of memory allocating a {} MB tensor", bytes >> 20);
  return std::shared_ptr<uint8_t>(static_cast<uint8_t*>(p), [n](uint8_t* q) {
    if (n >= kMinCached) {
      Cache& c = cache();
      std::lock_guard<std::mutex> lk(c.mu);
      if (c.cached + n <= c.limit) {
        c.free[n].push_back(q);
        c.cached += n;
        return;
      }
    }
    std::free(q);
  });
}

Stats stats() {
  Cache& c = cache();
  std::lock_guard<std::mutex> lk(c.mu);
  return {c.cached, c.hits, c.misses};
}

void release_cached() {
  Cache& c = cache();
  std::lock_guard<std::mutex> lk(c.mu);
  for (auto& [n, v] : c.free)
    for (void* p : v) std::free(p);
  c.free.clear();
  c.cached = 0;
}

}  // namespace dermis::allocator
