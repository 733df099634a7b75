// oneDNN engine/stream singletons and the primitive cache.
#include "context.h"

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <omp.h>

#include <cstring>
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

Key::Key(const char* op) : op_(op) {
  fields_.reserve(32);
  fields_.push_back(omp_get_max_threads());
}

Key& Key::add(double v) {
  int64_t bits = 0;
  static_assert(sizeof bits == sizeof v);
  std::memcpy(&bits, &v, sizeof v);
  return add(bits);
}

Key& Key::add(const dnnl::memory::desc& md) {
  const dnnl_memory_desc_t& d = md.data;
  add(int64_t{d.data_type}), add(int64_t{d.ndims}), add(int64_t{d.format_kind}), add(d.offset0);
  for (int i = 0; i < d.ndims; ++i) add(d.dims[i]), add(d.padded_dims[i]), add(d.padded_offsets[i]);
  if (d.format_kind == dnnl_blocked) {
    const auto& b = d.format_desc.blocking;
    for (int i = 0; i < d.ndims; ++i) add(b.strides[i]);
    add(int64_t{b.inner_nblks});
    for (int i = 0; i < b.inner_nblks; ++i) add(b.inner_blks[i]), add(b.inner_idxs[i]);
  }
  add(static_cast<int64_t>(d.extra.flags)), add(int64_t{d.extra.compensation_mask});
  return *this;
}

size_t Key::hash() const {
  uint64_t h = std::hash<std::string>{}(op_);
  for (int64_t v : fields_) h = (h ^ static_cast<uint64_t>(v)) * 0x100000001b3ull;  // FNV-1a style mixing
  return static_cast<size_t>(h ^ (h >> 29));
}

std::string Key::text() const {
  return fmt::format("{}(threads {}: {})", op_, fields_[0],
                     fmt::join(fields_.begin() + 1, fields_.end(), ", "));
}

namespace {
struct Cache {
  std::mutex mu;
  std::unordered_map<Key, std::shared_ptr<void>, KeyHash> map;
};
Cache& cache() {
  static Cache c;
  return c;
}
constexpr size_t kCapacity = 4096;
}  // namespace

std::shared_ptr<void> cache_get(const Key& key, const std::function<std::shared_ptr<void>()>& make) {
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

}  // namespace dermis::dnnl_ctx
