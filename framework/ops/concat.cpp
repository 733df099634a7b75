// concat_channels: joins (N, Ci, H, W) tensors along channels; backward slices the gradient back.
#include <cstring>

#include "../ops.h"
#include "../trace.h"

namespace dermis {

static Var concat_channels_untraced(const std::vector<Var>& xs) {
  DERMIS_CHECK(!xs.empty(), "concat_channels: needs at least one input");
  std::vector<Tensor> vals;
  int64_t C = 0;
  for (size_t i = 0; i < xs.size(); ++i) {
    DERMIS_CHECK(xs[i].defined(), "concat_channels: input {} is undefined", i);
    const Tensor& v = xs[i].value();
    DERMIS_CHECK(v.ndim() == 4, "concat_channels: input {} must be 4-D (N, C, H, W), got {}", i, to_string(v.shape()));
    DERMIS_CHECK(v.dim(0) == xs[0].dim(0) && v.dim(2) == xs[0].dim(2) && v.dim(3) == xs[0].dim(3),
                 "concat_channels: input {} has shape {} but input 0 has {}; N, H and W must match", i,
                 to_string(v.shape()), to_string(xs[0].shape()));
    vals.push_back(v.to_dtype(DType::f32).plain());
    C += v.dim(1);
  }
  const int64_t N = xs[0].dim(0), HW = xs[0].dim(2) * xs[0].dim(3);
  Tensor y = Tensor::empty({N, C, xs[0].dim(2), xs[0].dim(3)});
  std::vector<int64_t> offs;
  int64_t off = 0;
  for (auto& v : vals) {
    offs.push_back(off);
    off += v.dim(1);
  }
#pragma omp parallel for schedule(static) if (N * C * HW > 32768)
  for (int64_t n = 0; n < N; ++n)
    for (size_t i = 0; i < vals.size(); ++i) {
      const int64_t ci = vals[i].dim(1);
      std::memcpy(y.data() + (n * C + offs[i]) * HW, vals[i].data() + n * ci * HW, ci * HW * sizeof(float));
    }
  std::vector<Shape> shapes;
  for (auto& v : vals) shapes.push_back(v.shape());
  return autograd::make_result(y, "concat_channels", xs, [shapes, offs, N, C, HW](Node& self) {
    Tensor g = self.grad.to_dtype(DType::f32).plain();
    for (size_t i = 0; i < shapes.size(); ++i) {
      Node& ni = autograd::input(self, i);
      if (!ni.requires_grad) continue;
      const int64_t ci = shapes[i][1];
      Tensor gi = Tensor::empty(shapes[i]);
      for (int64_t n = 0; n < N; ++n)
        std::memcpy(gi.data() + n * ci * HW, g.data() + (n * C + offs[i]) * HW, ci * HW * sizeof(float));
      autograd::accumulate(ni, gi);
    }
  });
}

Var concat_channels(const std::vector<Var>& xs) {
  trace::Op t;
  Var y = concat_channels_untraced(xs);
  if (t.recording()) t.record(y, "concat_channels", xs);
  return y;
}

}  // namespace dermis
