// The tensor memory allocator: 64-byte aligned blocks, with freed blocks of 64 KB and more kept in
// per-size free lists and handed out again. A training step allocates the same sizes every time,
// so after the first step its activations and gradients reuse memory instead of going back to the
// kernel (which would zero fresh pages and fault them in on every step). The cache is bounded
// (DERMIS_ALLOCATOR_CACHE_MB, default 4096); blocks beyond it are freed.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>

namespace dermis::allocator {

std::shared_ptr<uint8_t> allocate(size_t bytes);

struct Stats {
  size_t cached_bytes = 0, hits = 0, misses = 0;
};
Stats stats();
void release_cached();  // returns every cached block to the system

}  // namespace dermis::allocator
