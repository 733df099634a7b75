// Exponential moving average of a model's weights (Polyak averaging, as timm's ModelEmaV2 and
// torch.optim.swa_utils.AveragedModel): after each optimiser step,
//   shadow = d * shadow + (1 - d) * model,   d = min(decay, (1 + t) / (10 + t))  (t: updates so far)
// over every parameter and buffer (BatchNorm running statistics included). The shadow is a second
// module of the same architecture; evaluate or save it like any model. The warm-up term keeps the
// first updates from being dominated by the random initial weights.
#pragma once

#include <cstdint>

#include "../nn/module.h"

namespace dermis::optim {

class WeightAverage {
 public:
  // `shadow` must have the same architecture as the model passed to update(); it starts as a copy
  // of `model`.
  WeightAverage(nn::Module& model, nn::Module& shadow, double decay);
  void update(nn::Module& model);  // one averaging step (call after each optimiser step)
  double decay() const { return decay_; }
  int64_t updates() const { return updates_; }
  void set_updates(int64_t t) { updates_ = t; }  // for resuming
  double current_decay() const;                  // d of the next update

 private:
  nn::Module& shadow_;
  double decay_;
  int64_t updates_ = 0;
};

}  // namespace dermis::optim
