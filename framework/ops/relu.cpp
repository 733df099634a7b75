// relu: max(x, 0) on oneDNN eltwise; backward passes the gradient where x > 0.
#include "../dnnl/eltwise.h"
#include "../ops.h"
#include "../trace.h"

namespace dermis {

static Var relu_untraced(const Var& x) { return dnnl_ctx::eltwise(x, dnnl::algorithm::eltwise_relu, 0.f, 0.f, false, "relu"); }

Var relu(const Var& x) {
  trace::Op t;
  Var y = relu_untraced(x);
  if (t.recording()) t.record(y, "relu", {x});
  return y;
}

}  // namespace dermis
