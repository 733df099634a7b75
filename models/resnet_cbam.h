// ResNet with CBAM (Woo et al. 2018): basic blocks with CBAM on the residual branch after the last
// BN and before the addition; parameter names as in torchvision / the official attention-module
// code (conv1, bn1, layer1.0.conv1.weight, layer1.0.cbam.ChannelGate.mlp.1.weight,
// layer2.0.downsample.0.weight, fc.weight, ...). Input (N, 3, H, W) with H, W >= 32.
//   resnet18_cbam: [2, 2, 2, 2] blocks   resnet34_cbam: [3, 4, 6, 3]   resnet18: no CBAM
#pragma once

#include <memory>
#include <vector>

#include "models/classifier.h"

namespace dermis::models {

class BasicBlock : public nn::Module {
 public:
  BasicBlock(int64_t in, int64_t out, int64_t stride, bool use_cbam, bool fused_cbam);
  Var forward(const Var& x) override;
  std::string type_name() const override { return "BasicBlock"; }

  std::shared_ptr<nn::Conv2d> conv1, conv2;
  std::shared_ptr<nn::BatchNorm2d> bn1, bn2;
  std::shared_ptr<nn::CBAM> cbam;            // null without CBAM
  std::shared_ptr<nn::Sequential> downsample;  // 1x1 conv + BN when the shape changes, else null
};

class ResNet : public Classifier {
 public:
  ResNet(const std::vector<int>& blocks, int classes, bool use_cbam, bool fused_cbam = true);
  Var features(const Var& x) override;  // (N, 3, H, W) -> (N, 512, H/32, W/32)
  Var head(const Var& f) override;      // -> (N, classes)
  nn::CBAM* last_cbam() override;
  int num_classes() const override { return classes_; }
  std::string type_name() const override { return "ResNet"; }

  std::shared_ptr<nn::Conv2d> conv1;
  std::shared_ptr<nn::BatchNorm2d> bn1;
  std::vector<std::shared_ptr<nn::Sequential>> layers;
  std::shared_ptr<nn::Linear> fc;

 private:
  int classes_;
  std::vector<std::shared_ptr<BasicBlock>> blocks_;
};

std::shared_ptr<ResNet> resnet18_cbam(int classes, bool fused_cbam = true);
std::shared_ptr<ResNet> resnet34_cbam(int classes, bool fused_cbam = true);
std::shared_ptr<ResNet> resnet18(int classes);

}  // namespace dermis::models
