// add_relu: relu(a + b) for equal shapes in one pass over the buffer, the end of a residual block.
// The operands may be in any layouts; b is reordered to a's (a no-op between convolutions of one
// network, which share a layout). Backward: dx = dy where y > 0, else 0, for both operands.
#include <algorithm>

#include "../ops.h"

namespace dermis {

Var add_relu(const Var& a, const Var& b) {
  DERMIS_CHECK(a.defined() && b.defined(), "add_relu: both operands must be defined");
  const Tensor& av = a.value();
  DERMIS_CHECK(av.shape() == b.value().shape(), "add_relu: shapes {} and {} differ (use relu(add(a, b)) to broadcast)",
               to_string(av.shape()), to_string(b.shape()));
  DERMIS_CHECK(av.dtype() == DType::f32 && b.value().dtype() == DType::f32, "add_relu: f32 tensors only");
  const Tensor bv = b.value().to_desc(av.desc());
  Tensor y = Tensor::with_desc(av.shape(), av.desc());
  {
    const float* pa = static_cast<const float*>(av.raw());
    const float* pb = static_cast<const float*>(bv.raw());
    float* py = static_cast<float*>(y.raw());
    const int64_t n = static_cast<int64_t>(y.bytes() / sizeof(float));  // padding included (zeros stay zero)
#pragma omp parallel for simd schedule(static) if (n > 32768)
    for (int64_t i = 0; i < n; ++i) py[i] = std::max(pa[i] + pb[i], 0.f);
  }
  if (!autograd::needs_grad({&a, &b})) return Var(y);
  return autograd::make_result(y, "add_relu", {a, b}, [y](Node& self) {
    const Tensor dy = self.grad.to_desc(y.desc());
    Tensor dx = Tensor::with_desc(y.shape(), y.desc());
    const float* py = static_cast<const float*>(y.raw());
    const float* pg = static_cast<const float*>(dy.raw());
    float* pd = static_cast<float*>(dx.raw());
    const int64_t n = static_cast<int64_t>(y.bytes() / sizeof(float));
#pragma omp parallel for simd schedule(static) if (n > 32768)
    for (int64_t i = 0; i < n; ++i) pd[i] = py[i] > 0.f ? pg[i] : 0.f;
    Node &na = autograd::input(self, 0), &nb = autograd::input(self, 1);
    if (na.requires_grad && nb.requires_grad) {
      autograd::accumulate(na, dx, false);
      autograd::accumulate(nb, dx, true);
    } else {
      autograd::accumulate(na, dx);
      autograd::accumulate(nb, dx);
    }
  });
}

}  // namespace dermis
