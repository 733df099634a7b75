// Weight averaging (see ema.h).
#include "ema.h"

#include <algorithm>

#include "../error.h"

namespace dermis::optim {

WeightAverage::WeightAverage(nn::Module& model, nn::Module& shadow, double decay) : shadow_(shadow), decay_(decay) {
  DERMIS_CHECK(decay >= 0 && decay < 1, "weight-average decay must be in [0, 1), got {}", decay);
  shadow_.load_state(model.state());
}

double WeightAverage::current_decay() const {
  return std::min(decay_, (1.0 + static_cast<double>(updates_)) / (10.0 + static_cast<double>(updates_)));
}

void WeightAverage::update(nn::Module& model) {
  const float d = static_cast<float>(current_decay()), e = 1.f - d;
  // state() is re-read every time: modules may replace a buffer's tensor instead of writing it.
  const auto src = model.state();
  const auto dst = shadow_.state();
  DERMIS_CHECK(src.size() == dst.size(), "internal: weight average over {} tensors, model has {}", dst.size(),
               src.size());
  for (size_t i = 0; i < src.size(); ++i) {
    const Tensor& s = src[i].second;
    const Tensor& t = dst[i].second;
    DERMIS_CHECK(src[i].first == dst[i].first && s.shape() == t.shape() && s.dtype() == DType::f32 &&
                     t.dtype() == DType::f32 && s.is_plain() && t.is_plain(),
                 "internal: weight average: '{}' does not match '{}'", dst[i].first, src[i].first);
    const float* a = s.data();
    float* b = t.data();
    const int64_t n = s.numel();
#pragma omp parallel for schedule(static) if (n > 32768)
    for (int64_t k = 0; k < n; ++k) b[k] = d * b[k] + e * a[k];
  }
  ++updates_;
}

}  // namespace dermis::optim
