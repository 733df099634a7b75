// oneDNN process singletons (engine, stream), the primitive cache and reorder helpers.
//
// Primitive descriptors are expensive to create; they are cached under a structured Key: the op's
// name, its shapes, layouts and attributes as integers, and the current OpenMP thread count (oneDNN
// specialises kernels for the thread count, as PyTorch's ideep cache does). Keys compare exactly
// (a hash collision never mixes up two primitives), and neither building nor hashing one formats
// strings.
#pragma once

#include <oneapi/dnnl/dnnl.hpp>

#include <functional>
#include <map>
#include <set>
#include <memory>
#include <string>
#include <type_traits>
#include <unordered_map>
#include <vector>

#include "../error.h"

namespace dermis::dnnl_ctx {

dnnl::engine& engine();
dnnl::stream& stream();

// Runs a primitive on the singleton stream and waits; oneDNN errors become dermis::Error.
void execute(const dnnl::primitive& p, const std::unordered_map<int, dnnl::memory>& args,
             const char* what);

// A cache key: `op` (a string literal, e.g. "conv_fwd") and integer fields, plus the thread count.
class Key {
 public:
  explicit Key(const char* op);
  Key& add(int64_t v) {
    fields_.push_back(v);
    return *this;
  }
  Key& add(double v);                     // by bit pattern
  Key& add(const dnnl::memory::desc& md);  // data type, dims and the full layout
  template <class... T>
  Key& operator()(const T&... v) {
    (add_one(v), ...);
    return *this;
  }
  bool operator==(const Key& o) const { return op_ == o.op_ && fields_ == o.fields_; }
  size_t hash() const;
  std::string text() const;  // for messages: "conv_fwd(1, 32, ...)"

 private:
  template <class T>
  void add_one(const T& v) {
    if constexpr (std::is_same_v<T, dnnl::memory::desc> || std::is_floating_point_v<T>) add(v);
    else if constexpr (std::is_enum_v<T>) add(static_cast<int64_t>(v));
    else if constexpr (std::is_integral_v<T>) add(static_cast<int64_t>(v));
    else {  // a shape: its length, then its dims
      add(static_cast<int64_t>(std::size(v)));
      for (auto x : v) add(static_cast<int64_t>(x));
    }
  }
  std::string op_;
  std::vector<int64_t> fields_;
};
struct KeyHash {
  size_t operator()(const Key& k) const { return k.hash(); }
};

// The cache: returns the entry under `key`, creating it with make() on a miss. Thread-safe.
// Entries are shared: when the cache is full it drops its own references (all of them), and a
// caller still holding an entry keeps it alive until it lets go.
std::shared_ptr<void> cache_get(const Key& key, const std::function<std::shared_ptr<void>()>& make);
size_t cache_size();
size_t cache_capacity();  // entries before the cache starts afresh
void cache_clear();

// The cached T under `key` (made by make() on a miss), as an owning handle: hold it, never a
// reference into it, across calls that may fill the cache (any reorder, any other primitive).
template <class T, class Make>
std::shared_ptr<T> cached(const Key& key, Make&& make) {
  auto p = cache_get(key, [&]() -> std::shared_ptr<void> {
    try {
      return std::make_shared<T>(make());
    } catch (const dnnl::error& e) {
      DERMIS_FAIL("oneDNN could not create a primitive for {}: {} (status {})", key.text(), e.what(),
                  static_cast<int>(e.status));
    }
  });
  return std::static_pointer_cast<T>(p);
}

// Implementation names of the primitives created so far, per kind ("conv_fwd" -> {"brgconv:avx512_core", ...}),
// for benchmarks and diagnostics.
void note_impl(const std::string& kind, const std::string& impl);
std::map<std::string, std::set<std::string>> impls();

// A primitive descriptor together with its primitive.
template <class PD, class P>
struct Prim {
  PD pd;
  P prim;
  explicit Prim(PD d) : pd(std::move(d)), prim(pd) {}
};

}  // namespace dermis::dnnl_ctx
