// oneDNN engine/stream singletons and the primitive cache.
#include "context.h"

#include <fmt/format.h>
#include <omp.h>

#include <mutex>

namespace dermis::dnnl_ctx {

dnnl::engine& engine() {
  static dnnl::engine e(dnnl::engine::kind::cpu, 0);
  return e;
}

dnnl::stream& stream() {
  static dnnl::stream s(engine());
  return s;
}

void execute(const dnnl::primitive& p, const std::unordered_map<int, dnnl::memory>& args,
             const char* what) {
  try {
    p.execute(stream(), args);
    stream().wait();
  } catch (const dnnl::error& e) {
    DERMIS_FAIL("oneDNN failed to execute {}: {}", what, e.what());
  }
}

std::string md_key(const dnnl::memory::desc& md) {
  const dnnl_memory_desc_t& d = md.data;
  std::string k = fmt::format("[t{}", static_cast<int>(d.data_type));
  for (int i = 0; i < d.ndims; ++i) k += fmt::format(",{}", d.dims[i]);
  if (d.format_kind == dnnl_blocked) {
    const auto& b = d.format_desc.blocking;
    k += "|s";
    for (int i = 0; i < d.ndims; ++i) k += fmt::format(",{}", b.strides[i]);
    k += "|b";
    for (int i = 0; i < b.inner_nblks; ++i) k += fmt::format(",{}:{}", b.inner_idxs[i], b.inner_blks[i]);
  } else {
    k += fmt::format("|f{}", static_cast<int>(d.format_kind));
  }
  return k + "]";
}

namespace {
struct Cache {
  std::mutex mu;
  std::unordered_map<std::string, std::shared_ptr<void>> map;
};
Cache& cache() {
  static Cache c;
  return c;
}
constexpr size_t kCapacity = 4096;
}  // namespace

std::shared_ptr<void> cache_get(const std::string& key, const std::function<std::shared_ptr<void>()>& make) {
  auto& c = cache();
  {
    std::lock_guard<std::mutex> lock(c.mu);
    auto it = c.map.find(key);
    if (it != c.map.end()) return it->second;
  }
  auto v = make();
  std::lock_guard<std::mutex> lock(c.mu);
  if (c.map.size() >= kCapacity) c.map.clear();  // shapes churned far past any real network
  return c.map.emplace(key, std::move(v)).first->second;
}

size_t cache_capacity() { return kCapacity; }

size_t cache_size() {
  std::lock_guard<std::mutex> lock(cache().mu);
  return cache().map.size();
}

void cache_clear() {
  std::lock_guard<std::mutex> lock(cache().mu);
  cache().map.clear();
}

namespace {
struct Impls {
  std::mutex mu;
  std::map<std::string, std::set<std::string>> m;
};
Impls& impl_registry() {
  static Impls i;
  return i;
}
}  // namespace

void note_impl(const std::string& kind, const std::string& impl) {
  std::lock_guard<std::mutex> lock(impl_registry().mu);
  impl_registry().m[kind].insert(impl);
}

std::map<std::string, std::set<std::string>> impls() {
  std::lock_guard<std::mutex> lock(impl_registry().mu);
  return impl_registry().m;
}

std::string with_threads(const std::string& key) { return key + fmt::format("#t{}", omp_get_max_threads()); }

}  // namespace dermis::dnnl_ctx
