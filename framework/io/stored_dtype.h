// Element types of tensors stored by other frameworks (PyTorch's torch.save, safetensors files
// from timm or Hugging Face), read into dermis's f32 tensors. Little-endian storage throughout.
#pragma once

#include <cstdint>
#include <cstring>
#include <string>

namespace dermis::io {

enum class StoredDType { f32, f64, f16, bf16, i64, i32, i16, i8, u8, boolean };

// Each type's name in a safetensors header ("F32") and its PyTorch storage class ("FloatStorage").
struct StoredDTypeName {
  StoredDType type;
  const char* safetensors;
  const char* torch_storage;
};
inline constexpr StoredDTypeName kStoredDTypeNames[] = {
    {StoredDType::f32, "F32", "FloatStorage"},      {StoredDType::f64, "F64", "DoubleStorage"},
    {StoredDType::f16, "F16", "HalfStorage"},       {StoredDType::bf16, "BF16", "BFloat16Storage"},
    {StoredDType::i64, "I64", "LongStorage"},       {StoredDType::i32, "I32", "IntStorage"},
    {StoredDType::i16, "I16", "ShortStorage"},      {StoredDType::i8, "I8", "CharStorage"},
    {StoredDType::u8, "U8", "ByteStorage"},         {StoredDType::boolean, "BOOL", "BoolStorage"}};

// The type named `name` in one naming (&StoredDTypeName::safetensors or ::torch_storage) into t;
// false for a name it does not have.
inline bool stored_dtype_named(const std::string& name, const char* StoredDTypeName::*naming, StoredDType& t) {
  for (const auto& n : kStoredDTypeNames)
    if (name == n.*naming) {
      t = n.type;
      return true;
    }
  return false;
}

inline int stored_size(StoredDType t) {
  switch (t) {
    case StoredDType::f64:
    case StoredDType::i64: return 8;
    case StoredDType::f32:
    case StoredDType::i32: return 4;
    case StoredDType::f16:
    case StoredDType::bf16:
    case StoredDType::i16: return 2;
    default: return 1;
  }
}

inline const char* stored_name(StoredDType t) {
  static const char* names[] = {"f32", "f64", "f16", "bf16", "i64", "i32", "i16", "i8", "u8", "bool"};
  return names[static_cast<int>(t)];
}

inline float half_to_float(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  uint32_t exp = (h >> 10) & 0x1fu, man = h & 0x3ffu, u;
  if (exp == 0x1f) {
    u = sign | 0x7f800000u | (man << 13);  // inf or NaN
  } else if (exp != 0) {
    u = sign | ((exp + 112) << 23) | (man << 13);
  } else if (man == 0) {
    u = sign;
  } else {  // subnormal: normalise
    int e = -1;
    do {
      ++e;
      man <<= 1;
    } while ((man & 0x400u) == 0);
    u = sign | (static_cast<uint32_t>(112 - e) << 23) | ((man & 0x3ffu) << 13);
  }
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
}

// One element at `p` (little-endian) as f32.
inline float stored_to_float(const unsigned char* p, StoredDType t) {
  switch (t) {
    case StoredDType::f32: {
      float f;
      std::memcpy(&f, p, 4);
      return f;
    }
    case StoredDType::f64: {
      double d;
      std::memcpy(&d, p, 8);
      return static_cast<float>(d);
    }
    case StoredDType::f16: return half_to_float(static_cast<uint16_t>(p[0] | (p[1] << 8)));
    case StoredDType::bf16: {
      const uint32_t u = static_cast<uint32_t>(p[0] | (p[1] << 8)) << 16;
      float f;
      std::memcpy(&f, &u, 4);
      return f;
    }
    case StoredDType::i64: {
      int64_t v;
      std::memcpy(&v, p, 8);
      return static_cast<float>(v);
    }
    case StoredDType::i32: {
      int32_t v;
      std::memcpy(&v, p, 4);
      return static_cast<float>(v);
    }
    case StoredDType::i16: {
      int16_t v;
      std::memcpy(&v, p, 2);
      return static_cast<float>(v);
    }
    case StoredDType::i8: return static_cast<float>(static_cast<int8_t>(p[0]));
    case StoredDType::u8: return static_cast<float>(p[0]);
    case StoredDType::boolean: return p[0] ? 1.f : 0.f;
  }
  return 0.f;
}

}  // namespace dermis::io
