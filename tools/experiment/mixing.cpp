// mixup and CutMix (see mixing.h).
#include "mixing.h"

#include <algorithm>
#include <cmath>

#include "framework/error.h"

namespace dermis::experiment {

double sample_gamma(Generator& g, double shape) {
  DERMIS_CHECK(shape > 0, "sample_gamma: shape {} must be positive", shape);
  if (shape < 1) {  // Gamma(a) = Gamma(a + 1) * U^(1/a)
    const double u = std::max(1e-12, static_cast<double>(g.uniform()));
    return sample_gamma(g, shape + 1) * std::pow(u, 1.0 / shape);
  }
  const double d = shape - 1.0 / 3.0, c = 1.0 / std::sqrt(9.0 * d);
  while (true) {
    double x, v;
    do {
      x = g.normal();
      v = 1.0 + c * x;
    } while (v <= 0);
    v = v * v * v;
    const double u = std::max(1e-12, static_cast<double>(g.uniform()));
    if (u < 1.0 - 0.0331 * x * x * x * x || std::log(u) < 0.5 * x * x + d * (1.0 - v + std::log(v))) return d * v;
  }
}

double sample_beta(Generator& g, double a, double b) {
  const double x = sample_gamma(g, a), y = sample_gamma(g, b);
  return x + y > 0 ? x / (x + y) : 0.5;
}

MixedBatch mix_batch(Tensor& images, MixKind kind, double alpha, Generator& g) {
  DERMIS_CHECK(images.ndim() == 4 && images.dim(1) == 3, "mix_batch: expected (N, 3, H, W) images");
  const int64_t N = images.dim(0), C = images.dim(1), H = images.dim(2), W = images.dim(3);
  MixedBatch m;
  m.partner.resize(static_cast<size_t>(N));
  for (int64_t i = 0; i < N; ++i) m.partner[i] = static_cast<int>(i);
  for (int64_t i = N - 1; i > 0; --i) std::swap(m.partner[i], m.partner[g.randint(i + 1)]);
  double lam = sample_beta(g, alpha, alpha);
  const Tensor src = images.clone();
  const float* s = src.data();
  float* d = images.data();
  const int64_t plane = H * W;
  if (kind == MixKind::mixup) {
    const float a = static_cast<float>(lam), b = static_cast<float>(1 - lam);
    for (int64_t i = 0; i < N; ++i) {
      const float* xi = s + i * C * plane;
      const float* xj = s + m.partner[i] * C * plane;
      float* out = d + i * C * plane;
      for (int64_t k = 0; k < C * plane; ++k) out[k] = a * xi[k] + b * xj[k];
    }
  } else {
    // A box of area (1 - lam) * H * W centred uniformly at random, clipped to the image; lam is
    // then the share of the image the box does not cover.
    const double r = std::sqrt(1 - lam);
    const int64_t bh = static_cast<int64_t>(H * r), bw = static_cast<int64_t>(W * r);
    const int64_t cy = g.randint(H), cx = g.randint(W);
    const int64_t y0 = std::clamp<int64_t>(cy - bh / 2, 0, H), y1 = std::clamp<int64_t>(cy + bh / 2, 0, H);
    const int64_t x0 = std::clamp<int64_t>(cx - bw / 2, 0, W), x1 = std::clamp<int64_t>(cx + bw / 2, 0, W);
    for (int64_t i = 0; i < N; ++i)
      for (int64_t c = 0; c < C; ++c)
        for (int64_t y = y0; y < y1; ++y)
          for (int64_t x = x0; x < x1; ++x)
            d[(i * C + c) * plane + y * W + x] = s[(m.partner[i] * C + c) * plane + y * W + x];
    lam = 1.0 - static_cast<double>((y1 - y0) * (x1 - x0)) / static_cast<double>(plane);
  }
  m.lam = lam;
  return m;
}

}  // namespace dermis::experiment
