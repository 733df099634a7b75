// reshape / flatten: a plain view with a new shape (blocked inputs are reordered to plain first);
// backward reshapes the gradient back.
#include "../ops.h"

namespace dermis {

Var reshape(const Var& x, const Shape& shape) {
  DERMIS_CHECK(x.defined(), "reshape: input is undefined");
  Tensor y = x.value().reshape(shape);
  Shape xs = x.shape();
  return autograd::make_result(y, "reshape", {x}, [xs](Node& self) {
    autograd::accumulate(autograd::input(self, 0), self.grad.reshape(xs), false);
  });
}

Var flatten(const Var& x) {
  DERMIS_CHECK(x.defined() && x.ndim() >= 1, "flatten: input must have at least one dimension");
  return reshape(x, {x.dim(0), -1});
}

}  // namespace dermis
