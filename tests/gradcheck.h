// Finite-difference gradient checking for dermis ops (after dlib's test_layer and ggml's
// test-backend-ops).
//
// For an op f(inputs) -> y, a fixed random projection r (same shape as y) turns the output into the
// scalar L = sum(r * y), accumulated in double. The analytic gradient of L with respect to every
// input comes from y.backward(r); each input's gradient is pre-filled with random values first, so
// the check also proves that backward ADDS into existing gradients instead of overwriting them.
// The numeric gradient is the central difference (L(x + eps) - L(x - eps)) / (2 eps) per element.
//
// Tolerances (per element: |analytic - numeric| <= atol + rtol * |numeric|):
//  - The ops compute in f32. L sums M products r*y, each rounded at ~6e-8 relative, so L carries an
//    absolute error of about sqrt(M) * 6e-8 * |y|; divided by 2*eps = 2e-2 this is ~1e-4 for the
//    shapes used here (M <= 2000, |y| <= 10). atol = 2e-3 leaves a 10x margin.
//  - Truncation error of the central difference is O(eps^2 * f''') ~ 1e-4 for the smooth nonlinear
//    ops (sigmoid, cross entropy, batch norm); rtol = 1e-2 covers it; linear ops have none.
//  - Kinks (relu at 0, max selection) are kept out of reach: tests feed inputs whose values are at
//    least 0.05 from any kink or tie (see spaced_values), more than eps = 1e-2 away.
#pragma once

#include <boost/test/unit_test.hpp>

#include <algorithm>
#include <cmath>
#include <functional>
#include <numeric>
#include <string>
#include <vector>

#include "framework/ops.h"
#include "framework/random.h"

namespace gradcheck {

struct Options {
  double eps = 1e-2;
  double rtol = 1e-2;
  double atol = 2e-3;
  int max_elems = 0;  // per input: 0 checks every element, else a seeded random subset
};

using Fn = std::function<dermis::Var(const std::vector<dermis::Var>&)>;

inline double project(const dermis::Var& y, const std::vector<float>& r) {
  std::vector<float> v = y.value().to_vector();
  double s = 0;
  for (size_t i = 0; i < v.size(); ++i) s += static_cast<double>(r[i]) * v[i];
  return s;
}

// Values in [-(n/2)*step, (n/2)*step], all distinct with gaps of `step`, in a seeded random order:
// no ties for max ops and no value closer than step/2 to zero (values are (k + 1/2) * step).
inline dermis::Tensor spaced_values(const dermis::Shape& shape, uint64_t seed, float step = 0.05f) {
  const int64_t n = dermis::numel_of(shape);
  std::vector<float> v(n);
  for (int64_t i = 0; i < n; ++i) v[i] = (static_cast<float>(i - n / 2) + 0.5f) * step;
  dermis::Generator g(seed);
  for (int64_t i = n - 1; i > 0; --i) std::swap(v[i], v[g.randint(i + 1)]);
  return dermis::Tensor::from_vector(shape, v);
}

inline void check(const std::string& name, const Fn& f, const std::vector<dermis::Tensor>& inputs,
                  const Options& opt = {}) {
  using namespace dermis;
  Generator g(20240601);
  std::vector<Var> vars;
  for (auto& t : inputs) vars.push_back(Var::parameter(t.clone()));
  Var y = f(vars);
  std::vector<float> r(y.value().numel());
  for (auto& x : r) x = 2.f * g.uniform() - 1.f;

  std::vector<std::vector<float>> pre;
  for (auto& v : vars) {
    Tensor g0 = Tensor::randn(v.shape(), g);
    pre.push_back(g0.to_vector());
    v.set_grad(g0);
  }
  y.backward(Tensor::from_vector(y.shape(), r));

  for (size_t i = 0; i < vars.size(); ++i) {
    BOOST_TEST_CONTEXT(name << ": input " << i << " shape " << to_string(inputs[i].shape())) {
      BOOST_REQUIRE_MESSAGE(vars[i].grad().defined(), "no gradient reached this input");
      std::vector<float> ga = vars[i].grad().to_vector();
      const int64_t n = static_cast<int64_t>(ga.size());
      std::vector<int64_t> idx(n);
      std::iota(idx.begin(), idx.end(), 0);
      if (opt.max_elems > 0 && n > opt.max_elems) {
        for (int64_t k = n - 1; k > 0; --k) std::swap(idx[k], idx[g.randint(k + 1)]);
        idx.resize(opt.max_elems);
      }
      int bad = 0;
      double worst = 0;
      for (int64_t j : idx) {
        const double analytic = static_cast<double>(ga[j]) - pre[i][j];
        std::vector<Var> xs;
        auto eval = [&](double delta) {
          NoGrad ng;
          std::vector<Var> p;
          for (size_t k = 0; k < vars.size(); ++k) {
            Tensor t = inputs[k].clone();
            if (k == i) t.data()[j] = static_cast<float>(t.data()[j] + delta);
            p.push_back(Var(t));
          }
          return project(f(p), r);
        };
        const double numeric = (eval(opt.eps) - eval(-opt.eps)) / (2 * opt.eps);
        const double err = std::abs(analytic - numeric), lim = opt.atol + opt.rtol * std::abs(numeric);
        worst = std::max(worst, err / lim);
        if (err > lim && bad++ < 5)
          BOOST_ERROR("element " << j << ": analytic " << analytic << " vs numeric " << numeric << " (error " << err
                                 << " > " << lim << ")");
      }
      BOOST_TEST(bad == 0, bad << " of " << idx.size() << " elements off; worst error/limit " << worst);
      BOOST_TEST_MESSAGE(name << " input " << i << ": " << idx.size() << " elements, worst error/limit " << worst);
    }
  }
}

}  // namespace gradcheck
