// Tensor-level convolution entry points shared by conv2d and fused ops (CBAM's spatial gate).
#pragma once

#include <functional>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "../ops.h"

namespace dermis::detail {

// Convolution weights that stay fixed (inference after nn::Module::freeze): the plain f32 weight
// and bias, and every layout or transform of them a forward has needed (oneDNN's blocked or
// Winograd layouts, bf16 copies, dermis's Winograd filters), each made once and kept.
class FrozenWeights {
 public:
  FrozenWeights(Tensor weight, Tensor bias) : weight_(std::move(weight)), bias_(std::move(bias)) {}
  const Tensor& weight() const { return weight_; }
  const Tensor& bias() const { return bias_; }
  // The weight in oneDNN layout d (reordered from the plain weight the first time).
  Tensor in_layout(const dnnl::memory::desc& d);
  // Another form of the weight, under a name, made by `make` the first time.
  Tensor derived(const std::string& name, const std::function<Tensor()>& make);

 private:
  Tensor weight_, bias_;
  std::mutex mu_;
  std::vector<Tensor> layouts_;
  std::vector<std::pair<std::string, Tensor>> derived_;
};

// x (N, C, H, W) any layout, w (OC, C/g, KH, KW) plain, b (OC) or undefined -> y in oneDNN's layout.
// With `frozen`, w and b are frozen->weight() and frozen->bias() and their prepared forms are reused.
Tensor conv2d_forward(const Tensor& x, const Tensor& w, const Tensor& b, const Conv2dParams& p, bool training,
                      FrozenWeights* frozen = nullptr);
// As conv2d_forward, computing in dtype dt (an x of another dtype is converted on its way into the
// primitive's layout).
Tensor conv2d_forward_as(const Tensor& x, DType dt, const Tensor& w, const Tensor& b, const Conv2dParams& p,
                         bool training, FrozenWeights* frozen = nullptr);
// Inference with frozen weights (no autograd): x in f32 or bf16; under AutocastBF16 an f32 x is
// converted to bf16 on its way into the primitive's layout (one reorder).
Var conv2d_frozen(const Var& x, FrozenWeights& frozen, const Conv2dParams& p);
// Gradients for the requested outputs (nullptr: not needed). dw and db come back plain.
void conv2d_backward(const Tensor& x, const Tensor& w, bool has_bias, const Tensor& dy, const Conv2dParams& p,
                     Tensor* dx, Tensor* dw, Tensor* db);
// Whether an f32 convolution of these shapes runs oneDNN's Winograd kernels (conv_algorithm(), the
// shape and this CPU allow it) rather than direct convolution.
bool conv2d_uses_winograd(const Shape& x, const Shape& w, const Conv2dParams& p);

}  // namespace dermis::detail
