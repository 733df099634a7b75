// SGD with momentum, Nesterov momentum and L2 weight decay, with PyTorch's torch.optim.SGD update:
//   g = grad + wd * w;  v = momentum * v + (1 - dampening) * g  (v = g on the first step);
//   step = nesterov ? g + momentum * v : v;  w -= lr * step.
#pragma once

#include <vector>

#include "../autograd.h"

namespace dermis::optim {

struct SGDOptions {
  float lr = 0.01f;
  float momentum = 0.f;
  float dampening = 0.f;
  float weight_decay = 0.f;
  bool nesterov = false;
};

class SGD {
 public:
  SGD(std::vector<Var> params, SGDOptions opt);
  void step();       // parameters without a gradient are skipped
  void zero_grad();  // drops every parameter's gradient
  float lr() const { return opt_.lr; }
  void set_lr(float lr);
  const SGDOptions& options() const { return opt_; }
  // A multiplier of the learning rate for parameter i (default 1), as PyTorch's parameter groups
  // give: fine-tuning's smaller rate for pretrained layers. A parameter with scale 0 is frozen: not
  // updated at all (no weight decay, its momentum buffer kept as it is).
  void set_lr_scale(size_t i, float scale);
  float lr_scale(size_t i) const { return scales_.empty() ? 1.f : scales_[i]; }
  // Momentum buffers (undefined until a parameter's first step), for checkpoints.
  std::vector<Tensor>& momentum_buffers() { return bufs_; }
  const std::vector<Var>& params() const { return params_; }

 private:
  std::vector<Var> params_;
  std::vector<Tensor> bufs_;
  std::vector<float> scales_;  // empty: all 1
  SGDOptions opt_;
};

}  // namespace dermis::optim
