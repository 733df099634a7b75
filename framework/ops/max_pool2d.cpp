// max_pool2d: oneDNN max pooling; backward routes gradients through the saved workspace (argmax).
#include "../dnnl/pooling.h"
#include "../ops.h"

namespace dermis {

Var max_pool2d(const Var& x, Pool2dParams p) {
  const int64_t s = p.stride ? p.stride : p.kernel;
  return dnnl_ctx::pool2d(x, {dnnl::algorithm::pooling_max, p.kernel, p.kernel, s, s, p.pad, p.pad, "max_pool2d"});
}

}  // namespace dermis
