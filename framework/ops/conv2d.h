// Tensor-level convolution entry points shared by conv2d and fused ops (CBAM's spatial gate).
#pragma once

#include "../ops.h"

namespace dermis::detail {

// x (N, C, H, W) any layout, w (OC, C/g, KH, KW) plain, b (OC) or undefined -> y in oneDNN's layout.
Tensor conv2d_forward(const Tensor& x, const Tensor& w, const Tensor& b, const Conv2dParams& p, bool training);
// Gradients for the requested outputs (nullptr: not needed). dw and db come back plain.
void conv2d_backward(const Tensor& x, const Tensor& w, bool has_bias, const Tensor& dy, const Conv2dParams& p,
                     Tensor* dx, Tensor* dw, Tensor* db);
// Whether an f32 convolution of these shapes runs oneDNN's Winograd kernels (conv_algorithm(), the
// shape and this CPU allow it) rather than direct convolution.
bool conv2d_uses_winograd(const Shape& x, const Shape& w, const Conv2dParams& p);

}  // namespace dermis::detail
