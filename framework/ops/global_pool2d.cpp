// global_avg_pool2d / global_max_pool2d: one pooling window covering all of H x W.
#include "../dnnl/pooling.h"
#include "../ops.h"
#include "../trace.h"

namespace dermis {

static Var global_avg_pool2d_untraced(const Var& x) {
  DERMIS_CHECK(x.defined() && x.ndim() == 4, "global_avg_pool2d: input must be 4-D (N, C, H, W)");
  return dnnl_ctx::pool2d(x, {dnnl::algorithm::pooling_avg_exclude_padding, x.dim(2), x.dim(3), 1, 1, 0, 0,
                              "global_avg_pool2d"});
}

static Var global_max_pool2d_untraced(const Var& x) {
  DERMIS_CHECK(x.defined() && x.ndim() == 4, "global_max_pool2d: input must be 4-D (N, C, H, W)");
  return dnnl_ctx::pool2d(x, {dnnl::algorithm::pooling_max, x.dim(2), x.dim(3), 1, 1, 0, 0, "global_max_pool2d"});
}

Var global_avg_pool2d(const Var& x) {
  trace::Op t;
  Var y = global_avg_pool2d_untraced(x);
  if (t.recording()) t.record(y, "global_avg_pool2d", {x});
  return y;
}

Var global_max_pool2d(const Var& x) {
  trace::Op t;
  Var y = global_max_pool2d_untraced(x);
  if (t.recording()) t.record(y, "global_max_pool2d", {x});
  return y;
}

}  // namespace dermis
