// ResNet-18/34 with CBAM in every basic block (official attention-module layout and init).
#include "resnet_cbam.h"

#include <fmt/format.h>

namespace dermis::models {

BasicBlock::BasicBlock(int64_t in, int64_t out, int64_t stride, bool use_cbam, bool fused_cbam) {
  conv1 = register_module("conv1", std::make_shared<nn::Conv2d>(in, out, 3, nn::Conv2dOptions{.stride = stride, .pad = 1, .bias = false}));
  bn1 = register_module("bn1", std::make_shared<nn::BatchNorm2d>(out));
  conv2 = register_module("conv2", std::make_shared<nn::Conv2d>(out, out, 3, nn::Conv2dOptions{.pad = 1, .bias = false}));
  bn2 = register_module("bn2", std::make_shared<nn::BatchNorm2d>(out));
  if (use_cbam) {
    cbam = register_module("cbam", std::make_shared<nn::CBAM>(out, nn::CBAMOptions{.fused = fused_cbam}));
    cbam->w.bn_w.value().zero_();  // the official init: the spatial gate starts as a constant 0.5
  }
  if (stride != 1 || in != out) {
    downsample = register_module(
        "downsample", std::make_shared<nn::Sequential>(std::initializer_list<std::shared_ptr<nn::Module>>{
                          std::make_shared<nn::Conv2d>(in, out, 1, nn::Conv2dOptions{.stride = stride, .bias = false}),
                          std::make_shared<nn::BatchNorm2d>(out)}));
  }
}

Var BasicBlock::forward(const Var& x) {
  Var y = nn::conv_bn(*conv1, *bn1, x, true);
  y = nn::conv_bn(*conv2, *bn2, y, false);
  const Var identity = downsample ? downsample->forward(x) : x;
  return cbam ? cbam->forward_add_relu(y, identity) : add_relu(y, identity);
}

ResNet::ResNet(const std::vector<int>& blocks, int classes, bool use_cbam, bool fused_cbam) : classes_(classes) {
  DERMIS_CHECK(blocks.size() == 4 && classes >= 2, "ResNet: need 4 stages and at least 2 classes");
  conv1 = register_module("conv1", std::make_shared<nn::Conv2d>(3, 64, 7, nn::Conv2dOptions{.stride = 2, .pad = 3, .bias = false}));
  bn1 = register_module("bn1", std::make_shared<nn::BatchNorm2d>(64));
  int64_t in = 64;
  const int64_t widths[4] = {64, 128, 256, 512};
  for (int s = 0; s < 4; ++s) {
    auto layer = std::make_shared<nn::Sequential>();
    for (int b = 0; b < blocks[s]; ++b) {
      auto block = std::make_shared<BasicBlock>(in, widths[s], (s > 0 && b == 0) ? 2 : 1, use_cbam, fused_cbam);
      blocks_.push_back(block);
      layer->push_back(block);
      in = widths[s];
    }
    layers.push_back(register_module(fmt::format("layer{}", s + 1), layer));
  }
  fc = register_module("fc", std::make_shared<nn::Linear>(512, classes));
}

Var ResNet::features(const Var& x) {
  DERMIS_CHECK(x.ndim() == 4 && x.dim(1) == 3 && x.dim(2) >= 32 && x.dim(3) >= 32,
               "ResNet: input must be (N, 3, H, W) with H, W >= 32, got {}", to_string(x.shape()));
  Var h = max_pool2d(nn::conv_bn(*conv1, *bn1, x, true), {.kernel = 3, .stride = 2, .pad = 1});
  for (auto& l : layers) h = l->forward(h);
  return h;
}

Var ResNet::head(const Var& f) { return fc->forward(flatten(global_avg_pool2d(f))); }

nn::CBAM* ResNet::last_cbam() { return blocks_.back()->cbam.get(); }

std::shared_ptr<ResNet> resnet18_cbam(int classes, bool fused) { return std::make_shared<ResNet>(std::vector<int>{2, 2, 2, 2}, classes, true, fused); }
std::shared_ptr<ResNet> resnet34_cbam(int classes, bool fused) { return std::make_shared<ResNet>(std::vector<int>{3, 4, 6, 3}, classes, true, fused); }
std::shared_ptr<ResNet> resnet18(int classes) { return std::make_shared<ResNet>(std::vector<int>{2, 2, 2, 2}, classes, false); }

}  // namespace dermis::models
