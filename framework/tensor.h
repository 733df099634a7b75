// Tensor: a shape, a dtype and shared storage whose layout is described by a oneDNN memory
// descriptor. The layout is plain row-major (NCHW for 4-D) unless an op produced a oneDNN blocked
// layout (e.g. nChw16c from a convolution); such tensors stay blocked between oneDNN ops and are
// converted with plain() only where a plain loop or the user needs the values.
#pragma once

#include <oneapi/dnnl/dnnl.hpp>

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

namespace dermis {

using Shape = std::vector<int64_t>;

enum class DType { f32, bf16 };

std::string to_string(const Shape& s);  // "(2, 3, 4)"
std::string to_string(DType t);
size_t dtype_size(DType t);
dnnl::memory::data_type to_dnnl(DType t);
int64_t numel_of(const Shape& s);

// The plain row-major descriptor of a shape (a scalar, shape (), is described as (1)).
dnnl::memory::desc plain_desc(const Shape& s, DType t = DType::f32);

class Generator;

class Tensor {
 public:
  Tensor() = default;

  // Factories (plain layout).
  static Tensor empty(const Shape& shape, DType dtype = DType::f32);
  static Tensor zeros(const Shape& shape, DType dtype = DType::f32);
  static Tensor full(const Shape& shape, float value);
  static Tensor from_vector(const Shape& shape, const std::vector<float>& values);
  static Tensor randn(const Shape& shape, Generator& gen, float mean = 0.f, float std = 1.f);
  static Tensor uniform(const Shape& shape, Generator& gen, float lo, float hi);
  // A tensor in any oneDNN layout for the given logical shape; zero-filled (padding included).
  static Tensor with_desc(const Shape& shape, const dnnl::memory::desc& md);

  bool defined() const { return storage_ != nullptr; }
  const Shape& shape() const { return shape_; }
  int ndim() const { return static_cast<int>(shape_.size()); }
  int64_t dim(int i) const;  // negative i counts from the end
  int64_t numel() const { return numel_of(shape_); }
  DType dtype() const { return dtype_; }
  const dnnl::memory::desc& desc() const { return md_; }
  bool is_plain() const;
  size_t bytes() const { return md_.get_size(); }

  // Raw storage in the tensor's own layout.
  void* raw() const { return storage_.get(); }
  // Element access: plain f32 tensors only (checked).
  float* data() const;
  std::span<float> values() const { return {data(), static_cast<size_t>(numel())}; }
  float item() const;  // one-element tensors only

  dnnl::memory memory() const;                    // a oneDNN memory over this storage
  Tensor plain() const;                           // self if plain, else a reordered copy
  Tensor to_desc(const dnnl::memory::desc& md) const;  // self if md matches, else a reorder
  Tensor clone() const;                           // deep copy, same layout
  Tensor reshape(const Shape& shape) const;       // plain view sharing storage; -1 infers one dim
  // The same bytes described by another descriptor of equal size (e.g. OIHW weights as GOIHW).
  Tensor view_desc(const dnnl::memory::desc& md) const;
  std::vector<float> to_vector() const;           // plain f32 values, whatever the layout and dtype
  Tensor to_dtype(DType t) const;                 // self if t matches, else a converted copy, same layout
  bool shares_storage(const Tensor& o) const { return storage_ == o.storage_; }

  // In-place helpers (any layout, f32 or bf16; `other` is reordered to this layout when they
  // differ; an f32 tensor accumulates bf16 values without rounding them first).
  Tensor& add_(const Tensor& other, float alpha = 1.f);
  Tensor& scale_(float s);
  Tensor& zero_();

 private:
  Shape shape_;
  DType dtype_ = DType::f32;
  dnnl::memory::desc md_;
  std::shared_ptr<uint8_t> storage_;
};

}  // namespace dermis
