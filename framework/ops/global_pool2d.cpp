// global_avg_pool2d / global_max_pool2d: one pooling window covering all of H x W.
#include "../dnnl/pooling.h"
#include "../ops.h"

namespace dermis {

Var global_avg_pool2d(const Var& x) {
  DERMIS_CHECK(x.defined() && x.ndim() == 4, "global_avg_pool2d: input must be 4-D (N, C, H, W)");
  return dnnl_ctx::pool2d(x, {dnnl::algorithm::pooling_avg_exclude_padding, x.dim(2), x.dim(3), 1, 1, 0, 0,
                              "global_avg_pool2d"});
}

Var global_max_pool2d(const Var& x) {
  DERMIS_CHECK(x.defined() && x.ndim() == 4, "global_max_pool2d: input must be 4-D (N, C, H, W)");
  return dnnl_ctx::pool2d(x, {dnnl::algorithm::pooling_max, x.dim(2), x.dim(3), 1, 1, 0, 0, "global_max_pool2d"});
}

}  // namespace dermis
