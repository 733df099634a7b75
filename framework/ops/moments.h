// Batch-norm statistics for the hand-written batch norms (synchronised batch_norm2d in
// batch_norm2d.cpp, CBAM's spatial gate in cbam.cpp): per-channel mean and biased variance of a
// plain f32 (N, C, H*W) array, two passes accumulated in double, each pass's sums (and the count)
// reduced over the replicas of a data-parallel job by `sync` when it is given.
#pragma once

#include <cstdint>
#include <vector>

#include "../ops.h"

namespace dermis::detail {

struct Moments {
  std::vector<double> mean, var;  // per channel; var is the biased (population) variance
  double count = 0;               // values per channel, over every replica
};

inline Moments channel_moments(const float* x, int64_t N, int64_t C, int64_t HW, const StatsReducer& sync) {
  std::vector<double> st(static_cast<size_t>(C) + 1, 0.0);  // sums, then the count
#pragma omp parallel for schedule(static) if (C > 1)
  for (int64_t c = 0; c < C; ++c) {
    double s = 0;
    for (int64_t n = 0; n < N; ++n)
      for (int64_t i = 0; i < HW; ++i) s += x[(n * C + c) * HW + i];
    st[static_cast<size_t>(c)] = s;
  }
  st[static_cast<size_t>(C)] = static_cast<double>(N * HW);
  if (sync) sync(st.data(), C + 1);
  Moments m;
  m.count = st[static_cast<size_t>(C)];
  m.mean.resize(static_cast<size_t>(C));
  m.var.assign(static_cast<size_t>(C), 0.0);
  for (int64_t c = 0; c < C; ++c) m.mean[static_cast<size_t>(c)] = st[static_cast<size_t>(c)] / m.count;
#pragma omp parallel for schedule(static) if (C > 1)
  for (int64_t c = 0; c < C; ++c) {
    const double mu = m.mean[static_cast<size_t>(c)];
    double s = 0;
    for (int64_t n = 0; n < N; ++n)
      for (int64_t i = 0; i < HW; ++i) {
        const double d = x[(n * C + c) * HW + i] - mu;
        s += d * d;
      }
    m.var[static_cast<size_t>(c)] = s;
  }
  if (sync) sync(m.var.data(), C);
  for (auto& v : m.var) v /= m.count;
  return m;
}

}  // namespace dermis::detail
