// Attention heatmaps: the spatial attention of a model's last CBAM block (where the model looked),
// or Grad-CAM on its last feature map for models without CBAM, upsampled and blended over the input
// image as a colour map (blue = low, red = high).
#pragma once

#include <string>
#include <vector>

#include "framework/data/augment.h"
#include "framework/data/jpeg.h"
#include "models/classifier.h"

namespace dermis::experiment {

struct Heatmap {
  std::vector<float> probs;  // class probabilities for the image
  data::Image overlay;       // the image with the heatmap blended in
  std::string method;        // "cbam_spatial_attention" or "grad_cam"
};

// x: one normalised image (1, 3, H, W). The overlay is `scale` times the input size.
Heatmap attention_heatmap(models::Classifier& model, const Tensor& x, const data::Normalization& norm, int scale = 2);

}  // namespace dermis::experiment
