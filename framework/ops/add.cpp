// add: a + b with broadcasting. Equal shapes in one layout are added in that layout (blocked
// activations stay blocked); broadcasting runs on plain tensors. Backward sums the gradient over
// each operand's broadcast dimensions.
#include "../broadcast.h"
#include "../ops.h"
#include "../trace.h"

namespace dermis {

static Var add_untraced(const Var& a, const Var& b) {
  DERMIS_CHECK(a.defined() && b.defined(), "add: both operands must be defined");
  const Tensor &av = a.value(), &bv = b.value();
  const Shape out = bcast::result_shape(av.shape(), bv.shape(), "add");
  Tensor y;
  if (av.shape() == bv.shape()) {
    y = av.clone();
    y.add_(bv);
  } else {
    y = bcast::apply(av.to_dtype(DType::f32).plain(), bv.to_dtype(DType::f32).plain(), out, bcast::BinOp::add);
  }
  const Shape sa = av.shape(), sb = bv.shape();
  return autograd::make_result(y, "add", {a, b}, [sa, sb](Node& self) {
    Node &na = autograd::input(self, 0), &nb = autograd::input(self, 1);
    if (sa == sb) {
      autograd::accumulate(na, self.grad, false);
      autograd::accumulate(nb, self.grad, false);
      return;
    }
    Tensor g = self.grad.to_dtype(DType::f32).plain();
    if (na.requires_grad) autograd::accumulate(na, bcast::sum_to(g, sa), sa != g.shape() ? true : false);
    if (nb.requires_grad) autograd::accumulate(nb, bcast::sum_to(g, sb), sb != g.shape() ? true : false);
  });
}

Var add(const Var& a, const Var& b) {
  trace::Op t;
  Var y = add_untraced(a, b);
  if (t.recording()) t.record(y, "add", {a, b});
  return y;
}

}  // namespace dermis
