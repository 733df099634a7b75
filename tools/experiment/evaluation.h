// Running a classifier over a loader: class probabilities for every image (optionally averaged
// over flips: test-time augmentation), and the pieces shared by train, evaluate and predict.
#pragma once

#include <functional>
#include <vector>

#include "framework/data/loader.h"
#include "models/classifier.h"

namespace dermis::experiment {

struct Predictions {
  std::vector<int> labels;      // as given by the loader's items
  std::vector<int64_t> items;   // loader item index of each row
  std::vector<float> probs;     // rows x classes, softmax probabilities
  double loss = 0;              // mean cross-entropy against labels
};

// Eval mode, no graph. With tta, the probabilities are averaged over the identity, horizontal,
// vertical and both flips. progress(done, total) is called after each batch.
Predictions predict(models::Classifier& model, data::Loader& loader, bool tta,
                    const std::function<void(int64_t, int64_t)>& progress = {});

// (N, 3, H, W) plain tensor flipped horizontally and/or vertically.
Tensor flip_images(const Tensor& x, bool horizontal, bool vertical);

// Row-wise softmax of (N, K) logits.
std::vector<float> softmax_rows(const Tensor& logits);

}  // namespace dermis::experiment
