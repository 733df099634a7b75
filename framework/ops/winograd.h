// dermis's own Winograd convolution, F(4x4, 3x3), for f32 3x3 stride-1 convolutions (groups 1,
// dilation 1, padding 0..2, channel counts in multiples of the vector width).
//
// Each 4x4 output tile comes from a 6x6 input tile: V = B^T d B (input transform), U = G g G^T
// (filter transform), M = U (.) V summed over input channels, Y = A^T M A (output transform).
// The sum over channels is, for each of the 36 tile points p, one matrix product
//   M[p] (T x K) = V[p] (T x C) * U[p] (C x K)          T = N * tiles per image
// run as one batched oneDNN matmul over p: 4x fewer multiplications than direct convolution, and
// the arithmetic stays in oneDNN. The transforms are dermis kernels, vectorised over a block of
// channels (8 for AVX2, 16 for AVX-512, picked from the ISA oneDNN dispatches to, so
// ONEDNN_MAX_CPU_ISA caps them too), reading and writing oneDNN's blocked nChw8c / nChw16c
// activations directly.
//
//   backward data:    dx = the same Winograd forward of dy with the filters rotated by 180 degrees
//                     and the channel roles swapped, padding 2 - pad;
//   backward weights: dU[p] (C x K) = V[p]^T * (A dY A^T)[p], then dg = G^T dU G.
//
// Numerics: F(4x4, 3x3) multiplies by transform constants up to 8 and 1/24; against a double
// precision reference its error is about 10x that of direct convolution (docs/design.md gives the
// measured figures); the tests bound it at ResNet shapes.
#pragma once

#include <cstdint>

#include "../tensor.h"

namespace dermis::winograd {

// The vector width the transforms run at on this CPU (8 or 16 channels), or 0 if it has neither
// AVX2 nor AVX-512 (then supported() is false everywhere).
int lanes();

// Whether this convolution (input N x C x H x W, K output channels, 3x3, stride 1, padding pad)
// can run here.
bool supported(int64_t C, int64_t K, int64_t pad);

// y = conv3x3(x, w, pad) + b, ReLU'd if relu. x (N, C, H, W) any layout, w (K, C, 3, 3) plain,
// b (K) or undefined. y comes back in the blocked layout nChw{lanes()}c.
Tensor forward(const Tensor& x, const Tensor& w, const Tensor& b, int64_t pad, bool relu);
// The forward's filter transform of w (K, C, 3, 3) alone, and the forward from such filters: for
// weights that stay fixed (inference), transformed once.
Tensor forward_filters(const Tensor& w);
Tensor forward_transformed(const Tensor& x, const Tensor& u, int64_t K, const Tensor& b, int64_t pad, bool relu);

// dx (N, C, H, W) for dy (N, K, Ho, Wo); blocked layout.
Tensor backward_data(const Tensor& dy, const Tensor& w, int64_t pad, const Shape& x_shape);

// dw (K, C, 3, 3) plain and, if db is given, db (K).
void backward_weights(const Tensor& x, const Tensor& dy, int64_t pad, Tensor& dw, Tensor* db);

}  // namespace dermis::winograd
