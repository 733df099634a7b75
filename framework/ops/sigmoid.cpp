// sigmoid: 1 / (1 + exp(-x)) on oneDNN eltwise; backward uses the output: dy * y * (1 - y).
#include "../dnnl/eltwise.h"
#include "../ops.h"

namespace dermis {

Var sigmoid(const Var& x) {
  return dnnl_ctx::eltwise(x, dnnl::algorithm::eltwise_logistic_use_dst_for_bwd, 0.f, 0.f, true, "sigmoid");
}

}  // namespace dermis
