// channel_mean / channel_max: reduce (N, C, H, W) over C to (N, 1, H, W) (CBAM's spatial pooling).
// Max backward routes each gradient to the first channel holding the maximum. Both are hand loops:
// oneDNN 2.6's reduction primitive over C of an NCHW tensor is its reference implementation, 5x
// slower than these loops in CBAM's composition (bench/cbam), and gives no argmax for max.
#include <vector>

#include "../ops.h"
#include "../trace.h"

namespace dermis {

namespace {
void check4(const Var& x, const char* op) {
  DERMIS_CHECK(x.defined() && x.ndim() == 4, "{}: input must be 4-D (N, C, H, W), got {}", op,
               x.defined() ? to_string(x.shape()) : "undefined");
}
}  // namespace

static Var channel_mean_untraced(const Var& x) {
  check4(x, "channel_mean");
  Tensor xv = x.value().to_dtype(DType::f32).plain();
  const int64_t N = xv.dim(0), C = xv.dim(1), HW = xv.dim(2) * xv.dim(3);
  Tensor y = Tensor::zeros({N, 1, xv.dim(2), xv.dim(3)});
  const float inv = 1.f / static_cast<float>(C);
  const float* px = xv.data();
  float* py = y.data();
#pragma omp parallel for schedule(static) if (N * C * HW > 32768)
  for (int64_t n = 0; n < N; ++n) {
    float* yo = py + n * HW;
    for (int64_t c = 0; c < C; ++c) {
      const float* xi = px + (n * C + c) * HW;
      for (int64_t i = 0; i < HW; ++i) yo[i] += xi[i];
    }
    for (int64_t i = 0; i < HW; ++i) yo[i] *= inv;
  }
  Shape xs = xv.shape();
  return autograd::make_result(y, "channel_mean", {x}, [xs, inv](Node& self) {
    Tensor g = self.grad.to_dtype(DType::f32).plain();
    const int64_t N = xs[0], C = xs[1], HW = xs[2] * xs[3];
    Tensor dx = Tensor::empty(xs);
    const float* pg = g.data();
    float* pd = dx.data();
#pragma omp parallel for collapse(2) schedule(static) if (N * C * HW > 32768)
    for (int64_t n = 0; n < N; ++n)
      for (int64_t c = 0; c < C; ++c)
        for (int64_t i = 0; i < HW; ++i) pd[(n * C + c) * HW + i] = pg[n * HW + i] * inv;
    autograd::accumulate(autograd::input(self, 0), dx);
  });
}

static Var channel_max_untraced(const Var& x) {
  check4(x, "channel_max");
  Tensor xv = x.value().to_dtype(DType::f32).plain();
  const int64_t N = xv.dim(0), C = xv.dim(1), HW = xv.dim(2) * xv.dim(3);
  Tensor y = Tensor::empty({N, 1, xv.dim(2), xv.dim(3)});
  const bool grad = autograd::needs_grad({&x});
  std::vector<int32_t> arg(grad ? N * HW : 0);
  const float* px = xv.data();
  float* py = y.data();
#pragma omp parallel for schedule(static) if (N * C * HW > 32768)
  for (int64_t n = 0; n < N; ++n) {
    float* yo = py + n * HW;
    const float* x0 = px + n * C * HW;
    for (int64_t i = 0; i < HW; ++i) yo[i] = x0[i];
    if (grad)
      for (int64_t i = 0; i < HW; ++i) arg[n * HW + i] = 0;
    for (int64_t c = 1; c < C; ++c) {
      const float* xi = x0 + c * HW;
      for (int64_t i = 0; i < HW; ++i)
        if (xi[i] > yo[i]) {
          yo[i] = xi[i];
          if (grad) arg[n * HW + i] = static_cast<int32_t>(c);
        }
    }
  }
  if (!grad) return Var(y);
  Shape xs = xv.shape();
  return autograd::make_result(y, "channel_max", {x}, [xs, arg = std::move(arg)](Node& self) {
    Tensor g = self.grad.to_dtype(DType::f32).plain();
    const int64_t N = xs[0], C = xs[1], HW = xs[2] * xs[3];
    Tensor dx = Tensor::zeros(xs);
    const float* pg = g.data();
    float* pd = dx.data();
    for (int64_t n = 0; n < N; ++n)
      for (int64_t i = 0; i < HW; ++i) pd[(n * C + arg[n * HW + i]) * HW + i] = pg[n * HW + i];
    autograd::accumulate(autograd::input(self, 0), dx);
  });
}

Var channel_mean(const Var& x) {
  trace::Op t;
  Var y = channel_mean_untraced(x);
  if (t.recording()) t.record(y, "channel_mean", {x});
  return y;
}

Var channel_max(const Var& x) {
  trace::Op t;
  Var y = channel_max_untraced(x);
  if (t.recording()) t.record(y, "channel_max", {x});
  return y;
}

}  // namespace dermis
