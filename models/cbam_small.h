// cbam_small: a light CNN with CBAM after each stage, for fast CPU training at small input sizes
// (the built-in default run trains it).
//   stem     conv3x3/2 3->24, BN, ReLU                                   S/2
//   stage i  conv3x3/2 -> BN -> ReLU -> conv3x3 -> BN -> ReLU -> CBAM     S/4, S/8, S/16, S/32
//            widths 32, 64, 128, 256 (CBAM reduction 8)
//   head     global average pool, dropout, linear 256 -> classes
// Cost: about 0.05 GMAC per image at 112x112 and 0.2 GMAC at 224x224 (see the model table in
// README.md; measured by tests/test_models.cpp with profile::MacCounter). Input H, W >= 32.
#pragma once

#include <memory>
#include <vector>

#include "models/classifier.h"

namespace dermis::models {

class CbamSmall : public Classifier {
 public:
  explicit CbamSmall(int classes, float dropout = 0.2f, bool fused_cbam = true);
  Var features(const Var& x) override;  // (N, 3, H, W) -> (N, 256, H/32, W/32)
  Var head(const Var& f) override;      // -> (N, classes)
  nn::CBAM* last_cbam() override { return cbams_.back().get(); }
  int num_classes() const override { return classes_; }
  std::string type_name() const override { return "CbamSmall"; }

  std::shared_ptr<nn::Sequential> stem;
  std::vector<std::shared_ptr<nn::Sequential>> stages;
  std::shared_ptr<nn::Dropout> drop;
  std::shared_ptr<nn::Linear> fc;

 private:
  int classes_;
  std::vector<std::shared_ptr<nn::CBAM>> cbams_;
};

std::shared_ptr<CbamSmall> cbam_small(int classes);

}  // namespace dermis::models
