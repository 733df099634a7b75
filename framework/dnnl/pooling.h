// Shared oneDNN pooling machinery for max_pool2d, avg_pool2d and the global poolings.
#pragma once

#include "../autograd.h"

namespace dermis::dnnl_ctx {

struct PoolSpec {
  dnnl::algorithm algo;  // pooling_max, pooling_avg_include_padding, pooling_avg_exclude_padding
  int64_t kh, kw, sh, sw, ph, pw;
  const char* name;
};

// x (N, C, H, W) -> (N, C, Ho, Wo) with Ho = (H + 2*ph - kh) / sh + 1; records backward.
Var pool2d(const Var& x, const PoolSpec& s);

}  // namespace dermis::dnnl_ctx
