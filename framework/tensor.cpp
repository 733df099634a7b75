// Tensor storage, factories, layout conversion and small in-place helpers.
#include "tensor.h"

#include "bf16.h"

#include <omp.h>

#include <cstdlib>
#include <cstring>

#include "allocator.h"
#include "dnnl/context.h"
#include "error.h"
#include "random.h"

namespace dermis {

std::string to_string(const Shape& s) {
  std::string r = "(";
  for (size_t i = 0; i < s.size(); ++i) r += (i ? ", " : "") + std::to_string(s[i]);
  return r + ")";
}

std::string to_string(DType t) { return t == DType::f32 ? "f32" : "bf16"; }
size_t dtype_size(DType t) { return t == DType::f32 ? 4 : 2; }
dnnl::memory::data_type to_dnnl(DType t) {
  return t == DType::f32 ? dnnl::memory::data_type::f32 : dnnl::memory::data_type::bf16;
}

int64_t numel_of(const Shape& s) {
  int64_t n = 1;
  for (auto d : s) n *= d;
  return n;
}

dnnl::memory::desc plain_desc(const Shape& s, DType t) {
  dnnl::memory::dims dims = s.empty() ? dnnl::memory::dims{1} : dnnl::memory::dims(s.begin(), s.end());
  dnnl::memory::dims strides(dims.size());
  int64_t st = 1;
  for (int i = static_cast<int>(dims.size()) - 1; i >= 0; --i) {
    strides[i] = st;
    st *= dims[i];
  }
  return dnnl::memory::desc(dims, to_dnnl(t), strides);
}

namespace {
std::shared_ptr<uint8_t> allocate(size_t bytes) { return allocator::allocate(bytes); }

bool has_padding(const dnnl::memory::desc& md) {
  const auto& d = md.data;
  for (int i = 0; i < d.ndims; ++i)
    if (d.padded_dims[i] != d.dims[i]) return true;
  return false;
}

void check_shape(const Shape& s) {
  for (auto d : s) DERMIS_CHECK(d > 0, "invalid tensor shape {}: every dimension must be positive", to_string(s));
}
}  // namespace

Tensor Tensor::empty(const Shape& shape, DType dtype) {
  check_shape(shape);
  Tensor t;
  t.shape_ = shape;
  t.dtype_ = dtype;
  t.md_ = plain_desc(shape, dtype);
  t.storage_ = allocate(t.md_.get_size());
  return t;
}

Tensor Tensor::zeros(const Shape& shape, DType dtype) {
  Tensor t = empty(shape, dtype);
  std::memset(t.raw(), 0, t.bytes());
  return t;
}

Tensor Tensor::full(const Shape& shape, float value) {
  Tensor t = empty(shape);
  for (auto& v : t.values()) v = value;
  return t;
}

Tensor Tensor::from_vector(const Shape& shape, const std::vector<float>& values) {
  DERMIS_CHECK(static_cast<int64_t>(values.size()) == numel_of(shape),
               "from_vector: {} values given for shape {} ({} elements)", values.size(), to_string(shape),
               numel_of(shape));
  Tensor t = empty(shape);
  std::memcpy(t.data(), values.data(), values.size() * sizeof(float));
  return t;
}

Tensor Tensor::randn(const Shape& shape, Generator& gen, float mean, float std) {
  Tensor t = empty(shape);
  for (auto& v : t.values()) v = mean + std * gen.normal();
  return t;
}

Tensor Tensor::uniform(const Shape& shape, Generator& gen, float lo, float hi) {
  Tensor t = empty(shape);
  for (auto& v : t.values()) v = lo + (hi - lo) * gen.uniform();
  return t;
}

Tensor Tensor::with_desc(const Shape& shape, const dnnl::memory::desc& md) {
  check_shape(shape);
  Tensor t;
  t.shape_ = shape;
  t.dtype_ = md.data_type() == dnnl::memory::data_type::bf16 ? DType::bf16 : DType::f32;
  t.md_ = md;
  t.storage_ = allocate(md.get_size());
  if (has_padding(md)) std::memset(t.raw(), 0, md.get_size());
  return t;
}

int64_t Tensor::dim(int i) const {
  int n = ndim();
  int j = i < 0 ? i + n : i;
  DERMIS_CHECK(j >= 0 && j < n, "dimension {} out of range for a tensor of shape {}", i, to_string(shape_));
  return shape_[j];
}

bool Tensor::is_plain() const { return defined() && md_ == plain_desc(shape_, dtype_); }

float* Tensor::data() const {
  DERMIS_CHECK(defined(), "data() on an undefined tensor");
  DERMIS_CHECK(dtype_ == DType::f32, "data() needs an f32 tensor, this one is {}", to_string(dtype_));
  DERMIS_CHECK(is_plain(), "data() needs a plain layout; call plain() first (tensor {} is in a blocked layout)",
               to_string(shape_));
  return reinterpret_cast<float*>(storage_.get());
}

float Tensor::item() const {
  DERMIS_CHECK(numel() == 1, "item() needs a one-element tensor, this one has shape {}", to_string(shape_));
  return plain().data()[0];
}

dnnl::memory Tensor::memory() const {
  DERMIS_CHECK(defined(), "memory() on an undefined tensor");
  return dnnl::memory(md_, dnnl_ctx::engine(), storage_.get());
}

Tensor Tensor::to_desc(const dnnl::memory::desc& md) const {
  DERMIS_CHECK(defined(), "reorder of an undefined tensor");
  if (md == md_) return *this;
  using R = dnnl_ctx::Prim<dnnl::reorder::primitive_desc, dnnl::reorder>;
  const auto r = dnnl_ctx::cached<R>(dnnl_ctx::Key("reorder")(md_, md),
                                [&] { return R(dnnl::reorder::primitive_desc(dnnl_ctx::engine(), md_, dnnl_ctx::engine(), md)); });
  Tensor out = with_desc(shape_, md);
  dnnl_ctx::execute(r->prim, {{DNNL_ARG_FROM, memory()}, {DNNL_ARG_TO, out.memory()}}, "reorder");
  return out;
}

Tensor Tensor::plain() const {
  if (is_plain()) return *this;
  return to_desc(plain_desc(shape_, dtype_));
}

Tensor Tensor::clone() const {
  DERMIS_CHECK(defined(), "clone() of an undefined tensor");
  Tensor t = *this;
  t.storage_ = allocate(bytes());
  std::memcpy(t.storage_.get(), storage_.get(), bytes());
  return t;
}

Tensor Tensor::reshape(const Shape& shape) const {
  Shape s = shape;
  int infer = -1;
  int64_t known = 1;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == -1) {
      DERMIS_CHECK(infer < 0, "reshape to {}: only one dimension can be -1", to_string(shape));
      infer = static_cast<int>(i);
    } else {
      DERMIS_CHECK(s[i] > 0, "reshape to {}: dimensions must be positive or -1", to_string(shape));
      known *= s[i];
    }
  }
  if (infer >= 0) {
    DERMIS_CHECK(known > 0 && numel() % known == 0, "reshape: cannot infer -1 in {} for {} elements",
                 to_string(shape), numel());
    s[infer] = numel() / known;
  }
  DERMIS_CHECK(numel_of(s) == numel(), "reshape: shape {} has {} elements but the tensor {} has {}",
               to_string(s), numel_of(s), to_string(shape_), numel());
  Tensor t = plain();
  t.shape_ = s;
  t.md_ = plain_desc(s, dtype_);
  return t;
}

Tensor Tensor::view_desc(const dnnl::memory::desc& md) const {
  DERMIS_CHECK(md.get_size() == bytes(), "view_desc: descriptor size {} differs from tensor size {}", md.get_size(),
               bytes());
  Tensor t = *this;
  t.md_ = md;
  return t;
}

std::vector<float> Tensor::to_vector() const {
  Tensor p = dtype_ == DType::f32 ? plain() : to_dtype(DType::f32).plain();
  return std::vector<float>(p.data(), p.data() + p.numel());
}

Tensor Tensor::to_dtype(DType t) const {
  DERMIS_CHECK(defined(), "to_dtype on an undefined tensor");
  if (t == dtype_) return *this;
  // The same layout with another element type: oneDNN's blocking strides count elements, not
  // bytes, so only the data type changes.
  dnnl_memory_desc_t d = md_.data;
  d.data_type = t == DType::f32 ? dnnl_f32 : dnnl_bf16;
  return to_desc(dnnl::memory::desc(d));
}

namespace {
template <class A, class B>
void add_loop(A* a, const B* b, int64_t n, float alpha) {
#pragma omp parallel for simd schedule(static) if (n > 32768)
  for (int64_t i = 0; i < n; ++i) st(a + i, ld(a[i]) + alpha * ld(b[i]));
}
}  // namespace

Tensor& Tensor::add_(const Tensor& other, float alpha) {
  DERMIS_CHECK(defined() && other.defined(), "add_ on an undefined tensor");
  DERMIS_CHECK(shape_ == other.shape_, "add_: shapes {} and {} differ", to_string(shape_), to_string(other.shape_));
  // `other` in this tensor's layout but its own dtype (padded areas line up, both zero), so the sum
  // is rounded once, into this tensor's dtype.
  dnnl_memory_desc_t d = md_.data;
  d.data_type = other.dtype_ == DType::f32 ? dnnl_f32 : dnnl_bf16;
  const Tensor o = other.to_desc(dnnl::memory::desc(d));
  const int64_t n = static_cast<int64_t>(bytes() / dtype_size(dtype_));
  const bool of32 = o.dtype_ == DType::f32;
  if (dtype_ == DType::f32) {
    float* a = static_cast<float*>(raw());
    if (of32 && alpha == 1.f) {
      const float* b = static_cast<const float*>(o.raw());
#pragma omp parallel for simd schedule(static) if (n > 32768)
      for (int64_t i = 0; i < n; ++i) a[i] += b[i];
    } else if (of32) {
      add_loop(a, static_cast<const float*>(o.raw()), n, alpha);
    } else {
      add_loop(a, static_cast<const bf16*>(o.raw()), n, alpha);
    }
  } else if (of32) {
    add_loop(static_cast<bf16*>(raw()), static_cast<const float*>(o.raw()), n, alpha);
  } else {
    add_loop(static_cast<bf16*>(raw()), static_cast<const bf16*>(o.raw()), n, alpha);
  }
  return *this;
}

Tensor& Tensor::scale_(float s) {
  const int64_t n = static_cast<int64_t>(bytes() / dtype_size(dtype_));
  if (dtype_ == DType::bf16) {
    bf16* a = static_cast<bf16*>(raw());
#pragma omp parallel for simd schedule(static) if (n > 32768)
    for (int64_t i = 0; i < n; ++i) st(a + i, ld(a[i]) * s);
    return *this;
  }
  float* a = reinterpret_cast<float*>(raw());
#pragma omp parallel for simd schedule(static) if (n > 32768)
  for (int64_t i = 0; i < n; ++i) a[i] *= s;
  return *this;
}

Tensor& Tensor::zero_() {
  std::memset(raw(), 0, bytes());
  return *this;
}

}  // namespace dermis
