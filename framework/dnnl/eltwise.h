// Shared oneDNN eltwise forward/backward for relu, sigmoid and friends (any layout).
#pragma once

#include "../autograd.h"

namespace dermis::dnnl_ctx {

// y = algo(x); backward uses x, or y when `use_dst` (e.g. eltwise_logistic_use_dst_for_bwd).
Var eltwise(const Var& x, dnnl::algorithm algo, float alpha, float beta, bool use_dst, const char* name);

}  // namespace dermis::dnnl_ctx
