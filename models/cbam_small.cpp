// cbam_small (see cbam_small.h).
#include "cbam_small.h"

#include <fmt/format.h>

namespace dermis::models {

namespace {
using M = std::shared_ptr<nn::Module>;
std::shared_ptr<nn::Sequential> conv_bn_relu(int64_t in, int64_t out, int64_t stride) {
  return std::make_shared<nn::Sequential>(std::initializer_list<M>{
      std::make_shared<nn::Conv2d>(in, out, 3, nn::Conv2dOptions{.stride = stride, .pad = 1, .bias = false}),
      std::make_shared<nn::BatchNorm2d>(out), std::make_shared<nn::ReLU>()});
}
}  // namespace

CbamSmall::CbamSmall(int classes, float dropout, bool fused_cbam) : classes_(classes) {
  DERMIS_CHECK(classes >= 2, "cbam_small: need at least 2 classes, got {}", classes);
  stem = register_module("stem", conv_bn_relu(3, 24, 2));
  int64_t in = 24;
  int i = 1;
  for (int64_t w : {32, 64, 128, 256}) {
    auto cbam = std::make_shared<nn::CBAM>(w, nn::CBAMOptions{.reduction = 8, .fused = fused_cbam});
    cbams_.push_back(cbam);
    auto s = std::make_shared<nn::Sequential>(std::initializer_list<M>{conv_bn_relu(in, w, 2), conv_bn_relu(w, w, 1), cbam});
    stages.push_back(register_module(fmt::format("stage{}", i++), s));
    in = w;
  }
  drop = register_module("dropout", std::make_shared<nn::Dropout>(dropout));
  fc = register_module("fc", std::make_shared<nn::Linear>(in, classes));
}

Var CbamSmall::features(const Var& x) {
  DERMIS_CHECK(x.ndim() == 4 && x.dim(1) == 3 && x.dim(2) >= 32 && x.dim(3) >= 32,
               "cbam_small: input must be (N, 3, H, W) with H, W >= 32, got {}", to_string(x.shape()));
  Var h = stem->forward(x);
  for (auto& s : stages) h = s->forward(h);
  return h;
}

Var CbamSmall::head(const Var& f) { return fc->forward(drop->forward(flatten(global_avg_pool2d(f)))); }

std::shared_ptr<CbamSmall> cbam_small(int classes) { return std::make_shared<CbamSmall>(classes); }

}  // namespace dermis::models
