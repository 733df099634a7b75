// Synthetic lesion image generator (see synthetic_tensors.h).
//
// Each image: a skin-toned background with noise, and one elliptical "lesion" whose colour, aspect
// ratio and texture (plain, stripes, dots) depend on the class; position, size, angle and colour
// are jittered so that a classifier has to look at the image, not at a fixed pixel.
#include "synthetic_tensors.h"

#include <cmath>

namespace dermis::datasets {

namespace {
struct ClassStyle {
  float r, g, b;   // lesion colour
  float aspect;    // ellipse axis ratio
  int texture;     // 0 plain, 1 stripes, 2 dots
};
constexpr ClassStyle kStyles[kSyntheticClasses] = {
    {0.55f, 0.25f, 0.20f, 1.0f, 0}, {0.35f, 0.20f, 0.15f, 1.0f, 2}, {0.60f, 0.45f, 0.30f, 1.8f, 0},
    {0.45f, 0.30f, 0.35f, 1.0f, 1}, {0.20f, 0.12f, 0.10f, 1.6f, 2}, {0.40f, 0.28f, 0.22f, 1.3f, 0},
    {0.70f, 0.15f, 0.25f, 1.0f, 1},
};
}  // namespace

LabeledBatch synthetic_batch(int64_t n, int64_t size, Generator& gen) {
  LabeledBatch b{Tensor::empty({n, 3, size, size}), std::vector<int>(n)};
  float* px = b.images.data();
  const int64_t hw = size * size;
  for (int64_t i = 0; i < n; ++i) {
    const int k = static_cast<int>(gen.randint(kSyntheticClasses));
    b.labels[i] = k;
    const ClassStyle& s = kStyles[k];
    const float cx = size * (0.35f + 0.3f * gen.uniform()), cy = size * (0.35f + 0.3f * gen.uniform());
    const float rad = size * (0.18f + 0.12f * gen.uniform()), ang = 3.14159f * gen.uniform();
    const float jit = 0.06f * (gen.uniform() - 0.5f), bg = 0.05f * (gen.uniform() - 0.5f);
    const float period = 3.f + 2.f * gen.uniform();
    const uint64_t noise_base = gen.reserve(static_cast<uint64_t>(3 * hw));
    const float ca = std::cos(ang), sa = std::sin(ang);
    for (int64_t y = 0; y < size; ++y)
      for (int64_t x = 0; x < size; ++x) {
        const float dx = x - cx, dy = y - cy;
        const float u = (dx * ca + dy * sa) / (rad * s.aspect), v = (-dx * sa + dy * ca) / rad;
        const bool in = u * u + v * v < 1.f;
        float col[3] = {0.82f + bg, 0.64f + bg, 0.55f + bg};
        if (in) {
          float shade = 1.f;
          if (s.texture == 1) shade = (std::fmod(u * rad * s.aspect + 100.f * period, period) < period / 2) ? 0.7f : 1.f;
          if (s.texture == 2) shade = (std::fmod(std::abs(dx), period) < 1.2f && std::fmod(std::abs(dy), period) < 1.2f) ? 0.6f : 1.f;
          col[0] = (s.r + jit) * shade;
          col[1] = (s.g + jit) * shade;
          col[2] = (s.b + jit) * shade;
        }
        for (int c = 0; c < 3; ++c) {
          const float noise = 0.08f * (Generator::uniform_at(gen.seed(), noise_base + c * hw + y * size + x) - 0.5f);
          px[(i * 3 + c) * hw + y * size + x] = (col[c] + noise - 0.5f) / 0.25f;
        }
      }
  }
  return b;
}

}  // namespace dermis::datasets
