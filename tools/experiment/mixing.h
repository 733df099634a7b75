// Batch mixing for training: mixup (Zhang et al. 2018: x = lam * x_i + (1 - lam) * x_j, the loss
// lam * CE(y_i) + (1 - lam) * CE(y_j)) and CutMix (Yun et al. 2019: a box of x_j pasted into x_i,
// lam = the share of x_i's own pixels). j is a random permutation of the batch; lam is drawn from
// Beta(alpha, alpha) once per batch, as timm does.
#pragma once

#include <cstdint>
#include <vector>

#include "framework/random.h"
#include "framework/tensor.h"

namespace dermis::experiment {

enum class MixKind { mixup, cutmix };

struct MixedBatch {
  std::vector<int> partner;  // j of each row
  double lam = 1;            // weight of each row's own label
};

// Gamma(shape, 1) by Marsaglia and Tsang (shape < 1 boosted); Beta(a, a) from two of them.
double sample_gamma(Generator& g, double shape);
double sample_beta(Generator& g, double a, double b);

// Mixes the (N, 3, H, W) plain float batch in place and returns the partners and lam.
MixedBatch mix_batch(Tensor& images, MixKind kind, double alpha, Generator& g);

}  // namespace dermis::experiment
