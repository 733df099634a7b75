// Layer constructors (initialisation) and forwards.
#include "layers.h"

#include <cmath>

#include "../ops/conv2d.h"
#include "../random.h"

namespace dermis::nn {

namespace {
Tensor uniform_init(const Shape& s, float bound) { return Tensor::uniform(s, default_generator(), -bound, bound); }
}  // namespace

Conv2d::Conv2d(int64_t in, int64_t out, int64_t kernel, Conv2dOptions o) : options(o) {
  DERMIS_CHECK(in > 0 && out > 0 && kernel > 0 && o.groups > 0 && in % o.groups == 0 && out % o.groups == 0,
               "Conv2d({}, {}, kernel={}, groups={}): channels must be positive and divisible by groups", in, out,
               kernel, o.groups);
  // Kaiming normal with fan_out and the ReLU gain, as torch.nn.init.kaiming_normal_(mode='fan_out',
  // nonlinearity='relu'): fan_out is out * kernel^2 for any groups (PyTorch reads it off the
  // weight's first dimension; it is not divided by the groups).
  const float fan_out = static_cast<float>(out * kernel * kernel);
  weight = Var::parameter(Tensor::randn({out, in / o.groups, kernel, kernel}, default_generator(), 0.f,
                                        std::sqrt(2.f / fan_out)));
  register_parameter("weight", &weight);
  if (o.bias) {
    bias = Var::parameter(Tensor::zeros({out}));
    register_parameter("bias", &bias);
  }
}

Var Conv2d::forward(const Var& x) {
  return with_path([&] {
    const Conv2dParams p{.stride = options.stride, .pad = options.pad, .dilation = options.dilation,
                         .groups = options.groups};
    if (is_frozen() && !autograd::needs_grad({&x, &weight, &bias})) return detail::conv2d_frozen(x, *frozen(nullptr), p);
    return conv2d(x, weight, bias, p);
  });
}

BatchNorm2d::BatchNorm2d(int64_t channels, BatchNormOptions o) : options(o) {
  DERMIS_CHECK(channels > 0, "BatchNorm2d({}): channels must be positive", channels);
  weight = Var::parameter(Tensor::full({channels}, 1.f));
  bias = Var::parameter(Tensor::zeros({channels}));
  running_mean = Tensor::zeros({channels});
  running_var = Tensor::full({channels}, 1.f);
  register_parameter("weight", &weight);
  register_parameter("bias", &bias);
  register_buffer("running_mean", &running_mean);
  register_buffer("running_var", &running_var);
}

Var BatchNorm2d::forward(const Var& x) {
  return with_path([&] {
    return batch_norm2d(x, weight, bias, running_mean, running_var,
                        {.training = is_training(), .momentum = options.momentum, .eps = options.eps, .sync = sync});
  });
}

Var BatchNorm2d::forward_relu(const Var& x) {
  return with_path([&] {
    return batch_norm2d(
        x, weight, bias, running_mean, running_var,
        {.training = is_training(), .momentum = options.momentum, .eps = options.eps, .relu = true, .sync = sync});
  });
}

Linear::Linear(int64_t in, int64_t out, bool with_bias) {
  DERMIS_CHECK(in > 0 && out > 0, "Linear({}, {}): sizes must be positive", in, out);
  const float bound = 1.f / std::sqrt(static_cast<float>(in));  // PyTorch's default
  weight = Var::parameter(uniform_init({out, in}, bound));
  register_parameter("weight", &weight);
  if (with_bias) {
    bias = Var::parameter(uniform_init({out}, bound));
    register_parameter("bias", &bias);
  }
}

Var Linear::forward(const Var& x) {
  return with_path([&] { return linear(x, weight, bias); });
}

Dropout::Dropout(float prob) : p(prob) {
  DERMIS_CHECK(std::isfinite(prob) && prob >= 0.f && prob < 1.f, "Dropout({}): probability must be in [0, 1)", prob);
}

Sequential::Sequential(std::initializer_list<std::shared_ptr<Module>> modules) {
  for (auto& m : modules) push_back(m);
}

void Sequential::push_back(std::shared_ptr<Module> m) {
  register_module(std::to_string(items_.size()), m);
  items_.push_back(std::move(m));
}

namespace {
// The batch norm folded into the convolution's weights and bias.
std::pair<Tensor, Tensor> fold(const Conv2d& conv, const BatchNorm2d& bn) {
  const Tensor w = conv.weight.value().plain();
  const Tensor gamma = bn.weight.value().plain(), beta = bn.bias.value().plain();
  const Tensor mean = bn.running_mean.plain(), var = bn.running_var.plain();
  const Tensor cb = conv.bias.defined() ? conv.bias.value().plain() : Tensor();
  const int64_t oc = w.dim(0), per = w.numel() / oc;
  DERMIS_CHECK(gamma.numel() == oc, "conv_bn: the convolution has {} output channels but the batch norm {}", oc,
               gamma.numel());
  const float eps = bn.options.eps;
  Tensor wf = Tensor::empty(w.shape()), bf = Tensor::empty({oc});
  const float *pw = w.data(), *pg = gamma.data(), *pb = beta.data(), *pm = mean.data(), *pv = var.data();
  float *qw = wf.data(), *qb = bf.data();
#pragma omp parallel for schedule(static) if (oc * per > 32768)
  for (int64_t o = 0; o < oc; ++o) {
    const float sc = pg[o] / std::sqrt(pv[o] + eps);
    for (int64_t i = 0; i < per; ++i) qw[o * per + i] = pw[o * per + i] * sc;
    qb[o] = pb[o] - pm[o] * sc + (cb.defined() ? cb.data()[o] * sc : 0.f);
  }
  return {wf, bf};
}

Conv2dParams conv_params(const Conv2d& conv, bool relu) {
  const auto& co = conv.options;
  return {.stride = co.stride, .pad = co.pad, .dilation = co.dilation, .groups = co.groups, .relu = relu};
}

// Eval: one convolution with the batch norm folded in (every call, or once while frozen).
Var folded_conv_bn(Conv2d& conv, BatchNorm2d& bn, const Var& x, bool relu) {
  if (conv.is_frozen() && bn.is_frozen()) return detail::conv2d_frozen(x, *conv.frozen(&bn), conv_params(conv, relu));
  auto [wf, bf] = fold(conv, bn);
  return conv2d(x, Var(wf), Var(bf), conv_params(conv, relu));
}
}  // namespace

std::shared_ptr<detail::FrozenWeights> Conv2d::frozen(const BatchNorm2d* bn) {
  DERMIS_CHECK(is_frozen(), "internal: Conv2d::frozen outside a freeze");
  std::lock_guard lock(prepared_mu_);
  if (!prepared_ || prepared_bn_ != bn) {
    if (bn) {
      auto [wf, bf] = fold(*this, *bn);
      prepared_ = std::make_shared<detail::FrozenWeights>(wf, bf);
    } else {
      prepared_ = std::make_shared<detail::FrozenWeights>(weight.value().plain(),
                                                       bias.defined() ? bias.value().plain() : Tensor());
    }
    prepared_bn_ = bn;
  }
  return prepared_;
}

void Conv2d::unfreeze() {
  std::lock_guard lock(prepared_mu_);
  prepared_.reset();
  prepared_bn_ = nullptr;
}

Var conv_bn(Conv2d& conv, BatchNorm2d& bn, const Var& x, bool relu) {
  if (bn.is_training() || autograd::needs_grad({&x, &conv.weight, &conv.bias, &bn.weight, &bn.bias})) {
    Var y = conv.forward(x);
    return relu ? bn.forward_relu(y) : bn.forward(y);
  }
  return conv.with_path([&] { return folded_conv_bn(conv, bn, x, relu); });
}

Var Sequential::forward(const Var& x) {
  Var h = x;
  for (size_t i = 0; i < items_.size(); ++i) {
    // Conv2d + BatchNorm2d (+ ReLU) goes through conv_bn; BatchNorm2d + ReLU runs as one primitive.
    auto* conv = dynamic_cast<Conv2d*>(items_[i].get());
    auto* next_bn = i + 1 < items_.size() ? dynamic_cast<BatchNorm2d*>(items_[i + 1].get()) : nullptr;
    if (conv && next_bn) {
      const bool relu = i + 2 < items_.size() && dynamic_cast<ReLU*>(items_[i + 2].get());
      h = conv_bn(*conv, *next_bn, h, relu);
      i += relu ? 2 : 1;
      continue;
    }
    auto* bn = dynamic_cast<BatchNorm2d*>(items_[i].get());
    if (bn && i + 1 < items_.size() && dynamic_cast<ReLU*>(items_[i + 1].get())) {
      h = bn->forward_relu(h);
      ++i;
      continue;
    }
    h = items_[i]->forward(h);
  }
  return h;
}

CBAM::CBAM(int64_t channels, CBAMOptions o) : options(o) {
  DERMIS_CHECK(channels > 0 && o.reduction > 0 && o.kernel > 0 && o.kernel % 2 == 1,
               "CBAM({}, reduction={}, kernel={}): need positive channels and reduction and an odd kernel", channels,
               o.reduction, o.kernel);
  const int64_t hidden = std::max<int64_t>(channels / o.reduction, 1);
  const float b1 = 1.f / std::sqrt(static_cast<float>(channels)), b2 = 1.f / std::sqrt(static_cast<float>(hidden));
  w.fc1_w = Var::parameter(uniform_init({hidden, channels}, b1));
  w.fc1_b = Var::parameter(uniform_init({hidden}, b1));
  w.fc2_w = Var::parameter(uniform_init({channels, hidden}, b2));
  w.fc2_b = Var::parameter(uniform_init({channels}, b2));
  register_parameter("ChannelGate.mlp.1.weight", &w.fc1_w);
  register_parameter("ChannelGate.mlp.1.bias", &w.fc1_b);
  register_parameter("ChannelGate.mlp.3.weight", &w.fc2_w);
  register_parameter("ChannelGate.mlp.3.bias", &w.fc2_b);
  if (!o.channel_only) {
    const float fan_out = static_cast<float>(o.kernel * o.kernel);
    w.conv_w = Var::parameter(Tensor::randn({1, 2, o.kernel, o.kernel}, default_generator(), 0.f,
                                            std::sqrt(2.f / fan_out)));
    w.bn_w = Var::parameter(Tensor::full({1}, 1.f));
    w.bn_b = Var::parameter(Tensor::zeros({1}));
    bn_running_mean = Tensor::zeros({1});
    bn_running_var = Tensor::full({1}, 1.f);
    register_parameter("SpatialGate.spatial.conv.weight", &w.conv_w);
    register_parameter("SpatialGate.spatial.bn.weight", &w.bn_w);
    register_parameter("SpatialGate.spatial.bn.bias", &w.bn_b);
    register_buffer("SpatialGate.spatial.bn.running_mean", &bn_running_mean);
    register_buffer("SpatialGate.spatial.bn.running_var", &bn_running_var);
  }
}

CbamParams CBAM::params() {
  return {.channel_only = options.channel_only,
          .training = is_training(),
          .bn_momentum = options.bn_momentum,
          .attention_out = capture_attention && !options.channel_only ? &last_attention : nullptr,
          .sync = sync};
}

Var CBAM::forward(const Var& x) {
  const CbamParams p = params();
  return with_path([&] {
    return options.fused ? cbam(x, w, bn_running_mean, bn_running_var, p)
                         : cbam_composed(x, w, bn_running_mean, bn_running_var, p);
  });
}

Var CBAM::forward_add_relu(const Var& x, const Var& residual) {
  if (!options.fused || autograd::needs_grad({&x, &residual, &w.fc1_w, &w.fc1_b, &w.fc2_w, &w.fc2_b, &w.conv_w,
                                               &w.bn_w, &w.bn_b}))
    return add_relu(forward(x), residual);
  CbamParams p = params();
  p.residual = residual.value();
  return with_path([&] { return cbam(x, w, bn_running_mean, bn_running_var, p); });
}

void set_sync_batch_norm(Module& m, const StatsReducer& reduce) {
  m.apply([&](Module& x) {
    if (auto* bn = dynamic_cast<BatchNorm2d*>(&x)) bn->sync = reduce;
    if (auto* c = dynamic_cast<CBAM*>(&x)) c->sync = reduce;
  });
}

}  // namespace dermis::nn
