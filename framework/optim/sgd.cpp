// SGD update loop (plain f32 parameters; fused per parameter, OpenMP over elements).
#include "sgd.h"

#include <cmath>
#include <cstring>

#include "../error.h"

namespace dermis::optim {

SGD::SGD(std::vector<Var> params, SGDOptions opt) : params_(std::move(params)), bufs_(params_.size()), opt_(opt) {
  DERMIS_CHECK(std::isfinite(opt.lr) && opt.lr >= 0, "SGD: learning rate must be finite and >= 0, got {}", opt.lr);
  DERMIS_CHECK(std::isfinite(opt.momentum) && opt.momentum >= 0, "SGD: momentum must be >= 0, got {}", opt.momentum);
  DERMIS_CHECK(std::isfinite(opt.weight_decay) && opt.weight_decay >= 0, "SGD: weight decay must be >= 0, got {}",
               opt.weight_decay);
  DERMIS_CHECK(!opt.nesterov || (opt.momentum > 0 && opt.dampening == 0),
               "SGD: Nesterov momentum needs momentum > 0 and dampening = 0");
  for (size_t i = 0; i < params_.size(); ++i)
    DERMIS_CHECK(params_[i].defined() && params_[i].requires_grad() && params_[i].value().is_plain(),
                 "SGD: parameter {} must be a defined, plain leaf Var that requires grad", i);
}

void SGD::set_lr(float lr) {
  DERMIS_CHECK(std::isfinite(lr) && lr >= 0, "SGD: learning rate must be finite and >= 0, got {}", lr);
  opt_.lr = lr;
}

void SGD::set_lr_scale(size_t i, float scale) {
  DERMIS_CHECK(i < params_.size(), "SGD: parameter {} out of range ({} parameters)", i, params_.size());
  DERMIS_CHECK(std::isfinite(scale) && scale >= 0, "SGD: learning-rate scale must be finite and >= 0, got {}", scale);
  if (scales_.empty()) scales_.assign(params_.size(), 1.f);
  scales_[i] = scale;
}

void SGD::step() {
  const float mom = opt_.momentum, damp = opt_.dampening, wd = opt_.weight_decay;
  for (size_t i = 0; i < params_.size(); ++i) {
    const Tensor& gt = params_[i].grad();
    if (!gt.defined()) continue;
    const float lr = opt_.lr * lr_scale(i);
    if (lr_scale(i) == 0.f) continue;  // frozen
    Tensor g = gt.plain();
    float* w = params_[i].value().data();
    const float* pg = g.data();
    const int64_t n = g.numel();
    if (mom == 0.f) {
#pragma omp parallel for simd schedule(static) if (n > 65536)
      for (int64_t j = 0; j < n; ++j) w[j] -= lr * (pg[j] + wd * w[j]);
      continue;
    }
    const bool first = !bufs_[i].defined();
    if (first) bufs_[i] = Tensor::empty(g.shape());
    float* v = bufs_[i].data();
    const bool nest = opt_.nesterov;
#pragma omp parallel for simd schedule(static) if (n > 65536)
    for (int64_t j = 0; j < n; ++j) {
      const float d = pg[j] + wd * w[j];
      v[j] = first ? d : mom * v[j] + (1.f - damp) * d;
      w[j] -= lr * (nest ? d + mom * v[j] : v[j]);
    }
  }
}

void SGD::zero_grad() {
  for (auto& p : params_) p.zero_grad();
}

}  // namespace dermis::optim
