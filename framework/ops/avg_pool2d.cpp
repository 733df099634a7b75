// avg_pool2d: oneDNN average pooling (padding counted in the divisor by default, like PyTorch).
#include "../dnnl/pooling.h"
#include "../ops.h"
#include "../trace.h"

namespace dermis {

static Var avg_pool2d_untraced(const Var& x, Pool2dParams p) {
  const int64_t s = p.stride ? p.stride : p.kernel;
  const auto algo = p.count_include_pad ? dnnl::algorithm::pooling_avg_include_padding
                                        : dnnl::algorithm::pooling_avg_exclude_padding;
  return dnnl_ctx::pool2d(x, {algo, p.kernel, p.kernel, s, s, p.pad, p.pad, "avg_pool2d"});
}

Var avg_pool2d(const Var& x, Pool2dParams p) {
  trace::Op t;
  Var y = avg_pool2d_untraced(x, p);
  if (t.recording()) t.record(y, "avg_pool2d", {x},
                  {{"kernel", p.kernel}, {"stride", p.stride ? p.stride : p.kernel}, {"pad", p.pad},
                   {"count_include_pad", p.count_include_pad ? 1 : 0}});
  return y;
}

}  // namespace dermis
