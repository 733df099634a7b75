// Tensor-level inner product (oneDNN) shared by linear and fused ops (CBAM's channel-gate MLP).
// All f32; x (N, IC) in any layout, w (OC, IC), b (OC) or undefined; results plain.
#pragma once

#include "../ops.h"

namespace dermis::detail {

Tensor linear_forward(const Tensor& x, const Tensor& w, const Tensor& b, bool training);
// dx (N, IC) = dy (N, OC) w.
Tensor linear_backward_data(const Tensor& dy, const Tensor& w);
// dw (OC, IC) = dy^T x and, when db is not null, db (OC) = the column sums of dy.
void linear_backward_weights(const Tensor& x, const Tensor& dy, Tensor& dw, Tensor* db);

}  // namespace dermis::detail
