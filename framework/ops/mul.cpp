// mul: a * b with broadcasting (CBAM's attention gates: (N,C,H,W) * (N,C,1,1) or (N,1,H,W)).
// Backward: da = sum_to(dy * b), db = sum_to(dy * a).
#include "../broadcast.h"
#include "../ops.h"
#include "../trace.h"

namespace dermis {

namespace {
// Elementwise product of two equal-shaped tensors in a's layout.
Tensor same_shape_mul(const Tensor& a0, const Tensor& b) {
  const Tensor a = a0.to_dtype(DType::f32);
  Tensor y = a.clone();
  Tensor bb = b.to_desc(a.desc());
  float* py = static_cast<float*>(y.raw());
  const float* pb = static_cast<const float*>(bb.raw());
  const int64_t n = static_cast<int64_t>(y.bytes() / sizeof(float));
#pragma omp parallel for simd schedule(static) if (n > 32768)
  for (int64_t i = 0; i < n; ++i) py[i] *= pb[i];
  return y;
}
}  // namespace

static Var mul_untraced(const Var& a, const Var& b) {
  DERMIS_CHECK(a.defined() && b.defined(), "mul: both operands must be defined");
  const Tensor &av = a.value(), &bv = b.value();
  const Shape out = bcast::result_shape(av.shape(), bv.shape(), "mul");
  const bool same = av.shape() == bv.shape();
  Tensor y = same ? same_shape_mul(av, bv) : bcast::apply(av.to_dtype(DType::f32).plain(), bv.to_dtype(DType::f32).plain(), out, bcast::BinOp::mul);
  if (!autograd::needs_grad({&a, &b})) return Var(y);
  return autograd::make_result(y, "mul", {a, b}, [av, bv, same](Node& self) {
    Node &na = autograd::input(self, 0), &nb = autograd::input(self, 1);
    if (same) {
      if (na.requires_grad) autograd::accumulate(na, same_shape_mul(self.grad, bv));
      if (nb.requires_grad) autograd::accumulate(nb, same_shape_mul(self.grad, av));
      return;
    }
    Tensor g = self.grad.to_dtype(DType::f32).plain();
    if (na.requires_grad)
      autograd::accumulate(na, bcast::sum_to(bcast::apply(g, bv.to_dtype(DType::f32).plain(), g.shape(), bcast::BinOp::mul), av.shape()));
    if (nb.requires_grad)
      autograd::accumulate(nb, bcast::sum_to(bcast::apply(g, av.to_dtype(DType::f32).plain(), g.shape(), bcast::BinOp::mul), bv.shape()));
  });
}

Var mul(const Var& a, const Var& b) {
  trace::Op t;
  Var y = mul_untraced(a, b);
  if (t.recording()) t.record(y, "mul", {a, b});
  return y;
}

}  // namespace dermis
