// max_pool2d: oneDNN max pooling; backward routes gradients through the saved workspace (argmax).
#include "../dnnl/pooling.h"
#include "../ops.h"
#include "../trace.h"

namespace dermis {

static Var max_pool2d_untraced(const Var& x, Pool2dParams p) {
  const int64_t s = p.stride ? p.stride : p.kernel;
  return dnnl_ctx::pool2d(x, {dnnl::algorithm::pooling_max, p.kernel, p.kernel, s, s, p.pad, p.pad, "max_pool2d"});
}

Var max_pool2d(const Var& x, Pool2dParams p) {
  trace::Op t;
  Var y = max_pool2d_untraced(x, p);
  if (t.recording()) t.record(y, "max_pool2d", {x},
                  {{"kernel", p.kernel}, {"stride", p.stride ? p.stride : p.kernel}, {"pad", p.pad}});
  return y;
}

}  // namespace dermis
