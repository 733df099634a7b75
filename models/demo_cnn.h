// demo_cnn: a small plain CNN (three conv-BN-ReLU stages, global average pooling, linear head)
// used by the built-in demo training run and the training tests.
//   input (N, 3, S, S)
//   conv3x3 3->16, BN, ReLU, maxpool 2     (N, 16, S/2, S/2)
//   conv3x3 16->32, BN, ReLU, maxpool 2    (N, 32, S/4, S/4)
//   conv3x3 32->64, BN, ReLU               (N, 64, S/4, S/4)
//   global average pool, linear 64->K      (N, K)
#pragma once

#include <cmath>
#include <vector>

#include "framework/ops.h"
#include "framework/random.h"

namespace dermis::models {

struct DemoCNN {
  struct Stage {
    Var w, gamma, beta;
    Tensor running_mean, running_var;
  };
  std::vector<Stage> stages;
  Var fc_w, fc_b;

  DemoCNN(int classes, Generator& g) {
    int cin = 3;
    for (int cout : {16, 32, 64}) {
      const float std = std::sqrt(2.f / static_cast<float>(cin * 9));  // He (fan-in) initialisation
      stages.push_back({Var::parameter(Tensor::randn({cout, cin, 3, 3}, g, 0.f, std)),
                        Var::parameter(Tensor::full({cout}, 1.f)), Var::parameter(Tensor::zeros({cout})),
                        Tensor::zeros({cout}), Tensor::full({cout}, 1.f)});
      cin = cout;
    }
    const float bound = 1.f / std::sqrt(static_cast<float>(cin));
    fc_w = Var::parameter(Tensor::uniform({classes, cin}, g, -bound, bound));
    fc_b = Var::parameter(Tensor::zeros({classes}));
  }

  Var forward(Var x, bool training) {
    for (size_t i = 0; i < stages.size(); ++i) {
      auto& s = stages[i];
      x = conv2d(x, s.w, {}, {.pad = 1});
      x = relu(batch_norm2d(x, s.gamma, s.beta, s.running_mean, s.running_var, {.training = training}));
      if (i + 1 < stages.size()) x = max_pool2d(x, {.kernel = 2});
    }
    return linear(flatten(global_avg_pool2d(x)), fc_w, fc_b);
  }

  std::vector<Var> parameters() const {
    std::vector<Var> p;
    for (auto& s : stages) p.insert(p.end(), {s.w, s.gamma, s.beta});
    p.insert(p.end(), {fc_w, fc_b});
    return p;
  }
};

}  // namespace dermis::models
