// A model of your own, trained, evaluated and used by dermis's tools: a small MobileNet-style CBAM
// network (depthwise-separable convolutions), registered under the name "mobilenet_cbam". This
// program is then dermis's train, evaluate and predict with that model added:
//   ./mobilenet_cbam train --model mobilenet_cbam --epochs 3 --out run
//   ./mobilenet_cbam train --resume run/last.safetensors
//   ./mobilenet_cbam evaluate --checkpoint run/best.safetensors --data DIR
//   ./mobilenet_cbam predict --checkpoint run/best.safetensors lesion.jpg
#include <memory>

#include "framework/nn/layers.h"
#include "models/classifier.h"
#include "models/registry.h"
#include "tools/experiment/tools.h"

using namespace dermis;

class MobileNetCbam : public models::Classifier {
 public:
  explicit MobileNetCbam(int classes) : classes_(classes) {
    auto conv_bn_relu = [](int64_t in, int64_t out, int64_t k, nn::Conv2dOptions o) {
      return nn::sequential(std::make_shared<nn::Conv2d>(in, out, k, o), std::make_shared<nn::BatchNorm2d>(out),
                            std::make_shared<nn::ReLU>());
    };
    // A depthwise 3x3 (one filter per channel: groups = channels), then a pointwise 1x1.
    auto separable = [&](int64_t in, int64_t out, int64_t stride) {
      return nn::sequential(conv_bn_relu(in, in, 3, {.stride = stride, .pad = 1, .groups = in, .bias = false}),
                            conv_bn_relu(in, out, 1, {.bias = false}));
    };
    cbam = std::make_shared<nn::CBAM>(128, nn::CBAMOptions{.reduction = 8});
    body = register_module("features", nn::sequential(conv_bn_relu(3, 32, 3, {.stride = 2, .pad = 1, .bias = false}),
                                                      separable(32, 64, 2), separable(64, 128, 2),
                                                      separable(128, 128, 1), cbam));
    fc = register_module("fc", std::make_shared<nn::Linear>(128, classes));
  }
  Var features(const Var& x) override { return body->forward(x); }  // (N, 3, H, W) -> (N, 128, H/8, W/8)
  Var head(const Var& f) override { return fc->forward(flatten(global_avg_pool2d(f))); }
  nn::CBAM* last_cbam() override { return cbam.get(); }  // for attention heatmaps
  int num_classes() const override { return classes_; }

 private:
  int classes_;
  std::shared_ptr<nn::CBAM> cbam;
  std::shared_ptr<nn::Sequential> body;
  std::shared_ptr<nn::Linear> fc;
};

static const models::ModelRegistration registration{
    "mobilenet_cbam", [](int classes) { return std::make_shared<MobileNetCbam>(classes); },
    "depthwise-separable convolutions with CBAM"};

int main(int argc, char** argv) { return experiment::tool_main(argc, argv); }
