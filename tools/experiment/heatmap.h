// Heatmaps of where a model looked: Grad-CAM on its last feature map (the default) or the spatial
// attention of its last CBAM block, upsampled and blended over the input image as a colour map
// (blue = low, red = high).
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

enum class HeatmapMethod {
  grad_cam,   // Grad-CAM of the top class on the last feature map (any model)
  attention,  // the last CBAM block's spatial attention (CBAM models with a spatial gate)
};
// "grad_cam" / "attention" -> the method; anything else is an error naming the flag.
HeatmapMethod parse_heatmap_method(const std::string& s);

// x: one normalised image (1, 3, H, W). The overlay is `scale` times the input size. Models
// without a CBAM spatial gate always get Grad-CAM.
Heatmap attention_heatmap(models::Classifier& model, const Tensor& x, const data::Normalization& norm, int scale = 2,
                          HeatmapMethod method = HeatmapMethod::grad_cam);

}  // namespace dermis::experiment
