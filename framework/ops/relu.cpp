// relu: max(x, 0) on oneDNN eltwise; backward passes the gradient where x > 0.
#include "../dnnl/eltwise.h"
#include "../ops.h"

namespace dermis {

Var relu(const Var& x) { return dnnl_ctx::eltwise(x, dnnl::algorithm::eltwise_relu, 0.f, 0.f, false, "relu"); }

}  // namespace dermis
