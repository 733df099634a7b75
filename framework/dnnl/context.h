// oneDNN process singletons (engine, stream), the primitive cache and reorder helpers.
//
// Primitive descriptors are expensive to create; they are cached under a string key built from the
// op, the shapes, the attributes and the current OpenMP thread count (oneDNN specialises kernels for
// the thread count, as PyTorch's ideep cache does).
#pragma once

#include <oneapi/dnnl/dnnl.hpp>

#include <functional>
#include <map>
#include <set>
#include <memory>
#include <string>
#include <unordered_map>

#include "../error.h"

namespace dermis::dnnl_ctx {

dnnl::engine& engine();
dnnl::stream& stream();

// Runs a primitive on the singleton stream and waits; oneDNN errors become dermis::Error.
void execute(const dnnl::primitive& p, const std::unordered_map<int, dnnl::memory>& args,
             const char* what);

// A stable text key for a memory descriptor (dims, data type and the full layout).
std::string md_key(const dnnl::memory::desc& md);

// The cache: returns the entry under `key`, creating it with make() on a miss. Thread-safe.
// Entries are shared: when the cache is full it drops its own references (all of them), and a
// caller still holding an entry keeps it alive until it lets go.
std::shared_ptr<void> cache_get(const std::string& key, const std::function<std::shared_ptr<void>()>& make);
size_t cache_size();
size_t cache_capacity();  // entries before the cache starts afresh
void cache_clear();

// The cached T under `key` (made by make() on a miss), as an owning handle: hold it, never a
// reference into it, across calls that may fill the cache (any reorder, any other primitive).
template <class T, class Make>
std::shared_ptr<T> cached(const std::string& key, Make&& make) {
  auto p = cache_get(key, [&]() -> std::shared_ptr<void> {
    try {
      return std::make_shared<T>(make());
    } catch (const dnnl::error& e) {
      DERMIS_FAIL("oneDNN could not create a primitive for {}: {} (status {})", key, e.what(),
                  static_cast<int>(e.status));
    }
  });
  return std::static_pointer_cast<T>(p);
}

// Implementation names of the primitives created so far, per kind ("conv_fwd" -> {"brgconv:avx512_core", ...}),
// for benchmarks and diagnostics.
void note_impl(const std::string& kind, const std::string& impl);
std::map<std::string, std::set<std::string>> impls();

// Appends the thread count to a key.
std::string with_threads(const std::string& key);

// A primitive descriptor together with its primitive.
template <class PD, class P>
struct Prim {
  PD pd;
  P prim;
  explicit Prim(PD d) : pd(std::move(d)), prim(pd) {}
};

}  // namespace dermis::dnnl_ctx
