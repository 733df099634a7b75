// Layers: Conv2d, BatchNorm2d, Linear, ReLU, Dropout, Sequential, CBAM.
// Initialisation follows PyTorch / torchvision ResNets: Kaiming (He) normal with fan_out for conv
// weights, PyTorch's default Kaiming-uniform for Linear, BatchNorm weight 1 and bias 0. Random
// draws come from the default generator (seed it with manual_seed for repeatable models).
#pragma once

#include <initializer_list>
#include <memory>
#include <mutex>

#include "../ops.h"
#include "module.h"

namespace dermis::detail {
class FrozenWeights;
}

namespace dermis::nn {

class BatchNorm2d;

struct Conv2dOptions {
  int64_t stride = 1;
  int64_t pad = 0;
  int64_t dilation = 1;
  int64_t groups = 1;
  bool bias = true;
};

class Conv2d : public Module {
 public:
  Conv2d(int64_t in, int64_t out, int64_t kernel, Conv2dOptions o = {});
  Var forward(const Var& x) override;  // (N, in, H, W) -> (N, out, Ho, Wo)
  std::string type_name() const override { return "Conv2d"; }
  Var weight, bias;  // (out, in/groups, k, k), (out) or undefined
  Conv2dOptions options;

  // While frozen: the weights prepared for inference, alone or with `bn` folded in (made on first
  // use, dropped when the freeze ends).
  std::shared_ptr<detail::FrozenWeights> frozen(const BatchNorm2d* bn);

 protected:
  void unfreeze() override;

 private:
  std::mutex prepared_mu_;
  std::shared_ptr<detail::FrozenWeights> prepared_;
  const BatchNorm2d* prepared_bn_ = nullptr;
};

struct BatchNormOptions {
  float eps = 1e-5f;
  float momentum = 0.1f;
};

class BatchNorm2d : public Module {
 public:
  explicit BatchNorm2d(int64_t channels, BatchNormOptions o = {});
  Var forward(const Var& x) override;  // (N, C, H, W); batch statistics in train(), running in eval()
  Var forward_relu(const Var& x);      // relu(forward(x)) as one fused primitive
  std::string type_name() const override { return "BatchNorm2d"; }
  Var weight, bias;
  Tensor running_mean, running_var;
  BatchNormOptions options;
  StatsReducer sync;  // synchronised batch norm (see set_sync_batch_norm); empty: this batch alone
};

// conv -> bn (-> relu), the unit of most CNNs. In eval mode without gradients the BN is folded
// into the convolution (w' = w * s, b' = beta - mean * s + b * s, s = gamma / sqrt(var + eps)) and
// the ReLU runs as its post-op: one oneDNN primitive instead of three passes. Otherwise the
// modules run in turn, with BN and ReLU fused.
Var conv_bn(Conv2d& conv, BatchNorm2d& bn, const Var& x, bool relu);

class Linear : public Module {
 public:
  Linear(int64_t in, int64_t out, bool bias = true);
  Var forward(const Var& x) override;  // (N, in) -> (N, out)
  std::string type_name() const override { return "Linear"; }
  Var weight, bias;
};

class ReLU : public Module {
 public:
  Var forward(const Var& x) override { return relu(x); }
  std::string type_name() const override { return "ReLU"; }
};

class Flatten : public Module {
 public:
  Var forward(const Var& x) override { return flatten(x); }
  std::string type_name() const override { return "Flatten"; }
};

class GlobalAvgPool : public Module {
 public:
  Var forward(const Var& x) override { return global_avg_pool2d(x); }  // (N, C, H, W) -> (N, C, 1, 1)
  std::string type_name() const override { return "GlobalAvgPool"; }
};

class MaxPool2d : public Module {
 public:
  explicit MaxPool2d(const Pool2dParams& p) : params(p) {}
  Var forward(const Var& x) override { return max_pool2d(x, params); }
  std::string type_name() const override { return "MaxPool2d"; }
  Pool2dParams params;
};

class Dropout : public Module {
 public:
  explicit Dropout(float p = 0.5f);
  Var forward(const Var& x) override { return dropout(x, p, is_training()); }
  std::string type_name() const override { return "Dropout"; }
  float p;
};

// Children named "0", "1", ...; forward applies them in order.
class Sequential : public Module {
 public:
  Sequential() = default;
  Sequential(std::initializer_list<std::shared_ptr<Module>> modules);
  void push_back(std::shared_ptr<Module> m);
  size_t size() const { return items_.size(); }
  Module& operator[](size_t i) { return *items_.at(i); }
  Var forward(const Var& x) override;
  std::string type_name() const override { return "Sequential"; }

 private:
  std::vector<std::shared_ptr<Module>> items_;
};

// nn::sequential(a, b, c): a Sequential of the given modules.
template <class... M>
std::shared_ptr<Sequential> sequential(std::shared_ptr<M>... modules) {
  auto s = std::make_shared<Sequential>();
  (s->push_back(std::move(modules)), ...);
  return s;
}

struct CBAMOptions {
  int64_t reduction = 16;    // hidden units: max(channels / reduction, 1)
  int64_t kernel = 7;        // spatial-gate convolution
  bool channel_only = false;
  float bn_momentum = 0.01f;  // spatial-gate BatchNorm (the official BasicConv uses 0.01)
  bool fused = true;         // false: the same block composed from primitive ops (for A/B timing)
};

// CBAM with the official implementation's parameter names:
//   ChannelGate.mlp.1.{weight,bias}, ChannelGate.mlp.3.{weight,bias},
//   SpatialGate.spatial.conv.weight, SpatialGate.spatial.bn.{weight,bias,running_mean,running_var}
class CBAM : public Module {
 public:
  explicit CBAM(int64_t channels, CBAMOptions o = {});
  Var forward(const Var& x) override;  // (N, C, H, W) -> same
  // relu(forward(x) + residual), the end of a residual block; in inference, one pass.
  Var forward_add_relu(const Var& x, const Var& residual);
  std::string type_name() const override { return "CBAM"; }
  CbamWeights w;
  Tensor bn_running_mean, bn_running_var;
  CBAMOptions options;
  bool capture_attention = false;  // keep the last forward's spatial attention map (heatmaps)
  Tensor last_attention;           // (N, 1, H, W) when captured
  StatsReducer sync;               // the spatial gate's synchronised batch norm (set_sync_batch_norm)

 private:
  CbamParams params();  // the op's parameters from the options and the module's state
};

// Synchronised batch norm for data-parallel training, as PyTorch's convert_sync_batchnorm: every
// BatchNorm2d and CBAM spatial-gate BN in `m` takes its training statistics over all replicas,
// summed by `reduce` (e.g. an MPI allreduce); an empty `reduce` turns it off again.
void set_sync_batch_norm(Module& m, const StatsReducer& reduce);

}  // namespace dermis::nn
