// add_relu: relu(a + b) for equal shapes in one pass over the buffer, the end of a residual block.
// The operands may be in any layouts and dtypes; b is converted to a's layout and dtype (a no-op
// between the convolutions of one network, which share both). Backward: dx = dy where y > 0, else
// 0, for both operands.
#include <algorithm>

#include "../bf16.h"
#include "../ops.h"
#include "../trace.h"

namespace dermis {

namespace {
template <class T>
void forward_loop(const T* a, const T* b, T* y, int64_t n) {
#pragma omp parallel for simd schedule(static) if (n > 32768)
  for (int64_t i = 0; i < n; ++i) st(y + i, std::max(ld(a[i]) + ld(b[i]), 0.f));
}

template <class T>
void backward_loop(const T* y, const T* g, T* d, int64_t n) {
#pragma omp parallel for simd schedule(static) if (n > 32768)
  for (int64_t i = 0; i < n; ++i) d[i] = ld(y[i]) > 0.f ? g[i] : T{};
}

template <class F>
void dispatch(DType t, F&& f) {
  if (t == DType::f32) f(float{});
  else f(bf16{});
}
}  // namespace

static Var add_relu_untraced(const Var& a, const Var& b) {
  DERMIS_CHECK(a.defined() && b.defined(), "add_relu: both operands must be defined");
  const Tensor& av = a.value();
  DERMIS_CHECK(av.shape() == b.value().shape(), "add_relu: shapes {} and {} differ (use relu(add(a, b)) to broadcast)",
               to_string(av.shape()), to_string(b.shape()));
  const Tensor bv = b.value().to_desc(av.desc());
  Tensor y = Tensor::with_desc(av.shape(), av.desc());
  const int64_t n = static_cast<int64_t>(y.bytes() / dtype_size(y.dtype()));  // padding included (zeros stay zero)
  dispatch(y.dtype(), [&](auto t) {
    using T = decltype(t);
    forward_loop(static_cast<const T*>(av.raw()), static_cast<const T*>(bv.raw()), static_cast<T*>(y.raw()), n);
  });
  if (!autograd::needs_grad({&a, &b})) return Var(y);
  return autograd::make_result(y, "add_relu", {a, b}, [y, n](Node& self) {
    const Tensor dy = self.grad.to_desc(y.desc());
    Tensor dx = Tensor::with_desc(y.shape(), y.desc());
    dispatch(y.dtype(), [&](auto t) {
      using T = decltype(t);
      backward_loop(static_cast<const T*>(y.raw()), static_cast<const T*>(dy.raw()), static_cast<T*>(dx.raw()), n);
    });
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

Var add_relu(const Var& a, const Var& b) {
  trace::Op t;
  Var y = add_relu_untraced(a, b);
  if (t.recording()) t.record(y, "add_relu", {a, b});
  return y;
}

}  // namespace dermis
