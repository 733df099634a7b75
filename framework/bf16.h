// bfloat16 storage helpers: the upper 16 bits of an IEEE f32. Conversion to bf16 rounds to
// nearest even (NaN stays NaN), as oneDNN's reorders do, so hand-written loops and oneDNN agree.
#pragma once

#include <cstdint>
#include <cstring>

namespace dermis {

struct bf16 {
  uint16_t bits;
};
static_assert(sizeof(bf16) == 2);

inline float to_f32(bf16 v) {
  const uint32_t u = static_cast<uint32_t>(v.bits) << 16;
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
}

inline bf16 to_bf16(float f) {
  uint32_t u;
  std::memcpy(&u, &f, sizeof u);
  if ((u & 0x7fffffffu) > 0x7f800000u) return {static_cast<uint16_t>((u >> 16) | 0x40u)};  // quiet NaN
  u += 0x7fffu + ((u >> 16) & 1u);
  return {static_cast<uint16_t>(u >> 16)};
}

// Uniform element access for kernels templated on the storage type (float or bf16); the
// arithmetic is always f32.
inline float ld(float v) { return v; }
inline float ld(bf16 v) { return to_f32(v); }
inline void st(float* p, float v) { *p = v; }
inline void st(bf16* p, float v) { *p = to_bf16(v); }

}  // namespace dermis
