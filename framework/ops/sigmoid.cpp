// sigmoid: 1 / (1 + exp(-x)) on oneDNN eltwise; backward uses the output: dy * y * (1 - y).
#include "../dnnl/eltwise.h"
#include "../ops.h"
#include "../trace.h"

namespace dermis {

static Var sigmoid_untraced(const Var& x) {
  return dnnl_ctx::eltwise(x, dnnl::algorithm::eltwise_logistic_use_dst_for_bwd, 0.f, 0.f, true, "sigmoid");
}

Var sigmoid(const Var& x) {
  trace::Op t;
  Var y = sigmoid_untraced(x);
  if (t.recording()) t.record(y, "sigmoid", {x});
  return y;
}

}  // namespace dermis
