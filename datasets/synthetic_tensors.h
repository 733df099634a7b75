// In-memory synthetic lesion images: 7 classes that differ in colour, shape and texture, generated
// directly as normalised NCHW tensors. Used by the tests and the built-in demo training run.
#pragma once

#include <cstdint>
#include <vector>

#include "framework/random.h"
#include "framework/tensor.h"

namespace dermis::datasets {

constexpr int kSyntheticClasses = 7;

struct LabeledBatch {
  Tensor images;            // (N, 3, size, size), roughly zero-mean, unit-variance
  std::vector<int> labels;  // N values in [0, 7)
};

// n images of size x size; labels drawn uniformly. Fully determined by the generator state.
LabeledBatch synthetic_batch(int64_t n, int64_t size, Generator& gen);

}  // namespace dermis::datasets
