// dropout: zero each element with probability p, scale survivors by 1/(1-p). The mask is a pure
// function of (generator seed, counter, element index), so it is the same for any thread count and
// backward recomputes it instead of storing it.
#include <cmath>

#include "../ops.h"
#include "../trace.h"
#include "../random.h"

namespace dermis {

namespace {
Tensor apply_mask(const Tensor& in, uint64_t seed, uint64_t base, float p) {
  Tensor x = in.to_dtype(DType::f32).plain();
  Tensor y = Tensor::empty(x.shape());
  const float scale = 1.f / (1.f - p);
  const float* px = x.data();
  float* py = y.data();
  const int64_t n = x.numel();
#pragma omp parallel for schedule(static) if (n > 32768)
  for (int64_t i = 0; i < n; ++i)
    py[i] = Generator::uniform_at(seed, base + static_cast<uint64_t>(i)) < p ? 0.f : px[i] * scale;
  return y;
}
}  // namespace

static Var dropout_untraced(const Var& x, float p, bool training) {
  DERMIS_CHECK(x.defined(), "dropout: input is undefined");
  DERMIS_CHECK(std::isfinite(p) && p >= 0.f && p < 1.f, "dropout: probability must be in [0, 1), got {}", p);
  if (!training || p == 0.f) return x;
  Generator& gen = default_generator();
  const uint64_t seed = gen.seed(), base = gen.reserve(static_cast<uint64_t>(x.value().numel()));
  Tensor y = apply_mask(x.value(), seed, base, p);
  return autograd::make_result(y, "dropout", {x}, [seed, base, p](Node& self) {
    autograd::accumulate(autograd::input(self, 0), apply_mask(self.grad, seed, base, p));
  });
}

Var dropout(const Var& x, float p, bool training) {
  trace::Op t;
  Var y = dropout_untraced(x, p, training);
  if (t.recording()) t.record(y, "dropout", {x}, {{"p", p}, {"training", training ? 1 : 0}});
  return y;
}

}  // namespace dermis
