// Broadcasting helpers for the elementwise binary ops (plain f32 tensors of rank <= 4).
#pragma once

#include "tensor.h"

namespace dermis::bcast {

// The broadcast shape of a and b (equal ranks; each dimension equal, or 1 in one of them).
Shape result_shape(const Shape& a, const Shape& b, const char* op);

enum class BinOp { add, mul };
// out = a (op) b with broadcasting; a and b plain.
Tensor apply(const Tensor& a, const Tensor& b, const Shape& out, BinOp op);
// Sums g (plain, shape `from`) over the broadcast dimensions down to `to`.
Tensor sum_to(const Tensor& g, const Shape& to);

}  // namespace dermis::bcast
