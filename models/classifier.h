// models::Classifier: an image classifier split into a feature extractor and a head, so tools can
// reach the last feature map (Grad-CAM) and the last CBAM block (spatial attention heatmaps).
#pragma once

#include "framework/nn/layers.h"

namespace dermis::models {

class Classifier : public nn::Module {
 public:
  virtual Var features(const Var& x) = 0;  // (N, 3, H, W) -> the last stage's feature map (N, C, h, w)
  virtual Var head(const Var& f) = 0;      // feature map -> logits (N, classes)
  Var forward(const Var& x) override { return head(features(x)); }
  virtual nn::CBAM* last_cbam() { return nullptr; }  // null for models without CBAM
  virtual int num_classes() const = 0;
};

}  // namespace dermis::models
