// reshape / flatten: a plain view with a new shape (blocked inputs are reordered to plain first);
// backward reshapes the gradient back.
#include "../ops.h"
#include "../trace.h"

namespace dermis {

static Var reshape_untraced(const Var& x, const Shape& shape) {
  DERMIS_CHECK(x.defined(), "reshape: input is undefined");
  Tensor y = x.value().reshape(shape);
  Shape xs = x.shape();
  return autograd::make_result(y, "reshape", {x}, [xs](Node& self) {
    autograd::accumulate(autograd::input(self, 0), self.grad.reshape(xs), false);
  });
}

static Var flatten_untraced(const Var& x) {
  DERMIS_CHECK(x.defined() && x.ndim() >= 1, "flatten: input must have at least one dimension");
  return reshape(x, {x.dim(0), -1});
}

Var reshape(const Var& x, const Shape& shape) {
  trace::Op t;
  Var y = reshape_untraced(x, shape);
  if (t.recording()) {
    trace::Attrs dims;
    for (size_t i = 0; i < y.shape().size(); ++i) dims.emplace_back("dim" + std::to_string(i), y.shape()[i]);
    t.record(y, "reshape", {x}, dims);
  }
  return y;
}

Var flatten(const Var& x) {
  trace::Op t;
  Var y = flatten_untraced(x);
  if (t.recording()) t.record(y, "flatten", {x});
  return y;
}

}  // namespace dermis
