// dist::GradientReducer checked exactly, run under mpirun by test_mpi. Each rank computes the
// gradients of a small two-layer network on its own integer-valued data, where every product and
// sum is an integer well inside f32's exact range, so the result does not depend on summation
// order or CPU. The reduced gradient must equal, bit for bit (with a power-of-two number of ranks;
// otherwise within the rounding of a multiplication by 1/ranks) the mean over ranks of those
// gradients, which every rank also computes itself without the reducer. Three steps on new data (a
// stale bucket shows from the second), a parameter that gets no gradient (it must come back zero),
// and bucket sizes from one parameter per bucket to one bucket for all.
// Exit 0 when every value matches; 1, with the first mismatches, when not; 2 when not run by
// mpirun with two or more ranks.
#include <cmath>
#include <cstdio>
#include <vector>

#include "framework/distributed.h"
#include "framework/ops.h"

using namespace dermis;

namespace {
// Small integers in [-2, 2] that differ by rank, step and position.
Tensor ints(const Shape& s, int rank, int step, int salt) {
  Tensor t = Tensor::empty(s);
  for (int64_t i = 0; i < t.numel(); ++i) t.data()[i] = static_cast<float>((i * 7 + rank * 3 + step * 5 + salt) % 5 - 2);
  return t;
}

struct Net {
  std::vector<Var> p;  // w1 (5,6), b1 (5), w2 (3,5), b2 (3), unused (4)
  Net() {
    const Shape shapes[] = {{5, 6}, {5}, {3, 5}, {3}, {4}};
    for (int k = 0; k < 5; ++k) p.push_back(Var::parameter(ints(shapes[k], 0, 0, 11 * k + 1)));
  }
  // Forward and backward on rank r's batch of step s; the last parameter takes no part.
  void backward(int r, int s) {
    for (auto& v : p) v.zero_grad();
    const Var x(ints({4, 6}, r, s, 0));
    Var y = linear(linear(x, p[0], p[1]), p[2], p[3]);
    y.backward(ints({4, 3}, r, s, 3));
  }
};
}  // namespace

int main(int argc, char** argv) {
  dist::init(&argc, &argv);
  const int ranks = dist::size(), me = dist::rank();
  if (ranks < 2) {
    std::fprintf(stderr, "mpi_reducer_check: run it with mpirun -np 2 (or more)\n");
    return 2;
  }
  int64_t checked = 0, wrong = 0;
  for (int64_t bucket_bytes : {int64_t{4}, int64_t{64}, int64_t{1} << 20}) {
    Net net;
    dist::GradientReducer reducer(net.p, bucket_bytes);
    for (int step = 0; step < 3; ++step) {
      // The exact mean: every rank's gradients, computed here without the reducer.
      std::vector<std::vector<double>> want(net.p.size());
      for (int r = 0; r < ranks; ++r) {
        Net ref;
        ref.backward(r, step);
        for (size_t k = 0; k < ref.p.size(); ++k) {
          want[k].resize(static_cast<size_t>(ref.p[k].value().numel()), 0.0);
          if (!ref.p[k].grad().defined()) continue;
          const std::vector<float> g = ref.p[k].grad().to_vector();
          for (size_t i = 0; i < g.size(); ++i) want[k][i] += g[i];
        }
      }
      net.backward(me, step);
      reducer.finish();
      for (size_t k = 0; k < net.p.size(); ++k) {
        const std::vector<float> got = net.p[k].grad().to_vector();
        for (size_t i = 0; i < got.size(); ++i, ++checked) {
          // With a power-of-two number of ranks the mean is exact too; otherwise it may be off
          // by the rounding of a multiplication by 1/ranks.
          const double w = want[k][i] / ranks, tol = (ranks & (ranks - 1)) == 0 ? 0.0 : std::ldexp(std::abs(w), -22);
          if (std::abs(static_cast<double>(got[i]) - w) <= tol) continue;
          if (++wrong <= 5)
            std::fprintf(stderr, "rank %d, buckets of %lld bytes (%lld buckets), step %d, parameter %zu [%zu]: "
                         "reduced gradient %g differs from the mean %g\n", me, static_cast<long long>(bucket_bytes),
                         static_cast<long long>(reducer.buckets()), step + 1, k, i, static_cast<double>(got[i]), w);
        }
      }
    }
  }
  const int64_t wrong_all = dist::allreduce_max(wrong);
  if (me == 0 && wrong_all == 0)
    std::printf("GradientReducer: %lld gradient values on each of %d ranks equal the exact mean (3 steps, 3 bucket "
                "sizes)\n", static_cast<long long>(checked), ranks);
  return wrong_all == 0 ? 0 : 1;
}
