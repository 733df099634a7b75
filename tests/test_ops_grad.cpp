// Finite-difference gradient checks of every op, for every input and parameter (see gradcheck.h
// for the method and the tolerances), over several shapes including odd sizes, stride 2 and padding.
#define BOOST_TEST_MODULE ops_grad
#include "gradcheck.h"

#include "framework/cpu.h"
#include "framework/ops/conv2d.h"
#include "framework/ops/winograd.h"

using namespace dermis;
using gradcheck::check;
using gradcheck::Options;
using gradcheck::spaced_values;

namespace {
Generator& gen() {
  static Generator g(7);
  return g;
}
Tensor rnd(const Shape& s, float std = 1.f) { return Tensor::randn(s, gen(), 0.f, std); }
}  // namespace

BOOST_AUTO_TEST_CASE(conv2d_grad) {
  struct Case {
    Shape x, w;
    Conv2dParams p;
    bool bias;
  };
  const std::vector<Case> cases = {
      {{2, 3, 7, 6}, {4, 3, 3, 3}, {.stride = 1, .pad = 1}, true},
      {{2, 3, 7, 7}, {5, 3, 3, 3}, {.stride = 2, .pad = 1}, false},
      {{1, 2, 9, 8}, {3, 2, 3, 3}, {.stride = 1, .pad = 2, .dilation = 2}, true},
      {{2, 4, 6, 5}, {6, 2, 3, 3}, {.stride = 1, .pad = 1, .groups = 2}, true},
      {{2, 5, 6, 6}, {3, 5, 1, 1}, {.stride = 2, .pad = 0}, false},
      {{2, 2, 9, 9}, {1, 2, 7, 7}, {.stride = 1, .pad = 3}, false},  // CBAM's spatial-gate conv
      {{2, 16, 5, 5}, {16, 16, 3, 3}, {.stride = 1, .pad = 1}, true},  // blocked layouts (C = 16)
      {{2, 4, 6, 5}, {4, 1, 3, 3}, {.stride = 1, .pad = 1, .groups = 4}, true},    // depthwise
      {{1, 16, 5, 5}, {16, 1, 3, 3}, {.stride = 2, .pad = 1, .groups = 16}, false},  // depthwise, blocked
  };
  for (const auto& c : cases) {
    std::vector<Tensor> in = {rnd(c.x), rnd(c.w, 0.3f)};
    if (c.bias) in.push_back(rnd({c.w[0]}));
    const Conv2dParams p = c.p;
    const bool bias = c.bias;
    Options o;
    o.max_elems = 200;
    check("conv2d x" + to_string(c.x) + " w" + to_string(c.w),
          [p, bias](const std::vector<Var>& v) { return conv2d(v[0], v[1], bias ? v[2] : Var(), p); }, in, o);
  }
}

// dermis's Winograd (forced; every shape here is one it runs): all three gradients by finite
// differences, partial tiles and padding 0, 1 and 2 included.
BOOST_AUTO_TEST_CASE(conv2d_winograd_grad) {
  if (winograd::lanes() == 0) {
    BOOST_TEST_MESSAGE("skipped: dermis's Winograd needs AVX2 or AVX-512: " << cpu::summary());
    return;
  }
  struct Case {
    Shape x, w;
    int64_t pad;
    bool bias;
  };
  const std::vector<Case> cases = {
      {{2, 16, 5, 6}, {16, 16, 3, 3}, 1, true},
      {{1, 16, 6, 7}, {32, 16, 3, 3}, 0, false},
      {{1, 32, 4, 5}, {16, 32, 3, 3}, 2, true},
  };
  set_conv_algorithm(ConvAlgorithm::winograd);
  Generator own(11);  // its own stream: the cases after this one keep their inputs
  for (const auto& c : cases) {
    BOOST_TEST_REQUIRE(detail::conv2d_uses_winograd(c.x, c.w, {.pad = c.pad}));
    std::vector<Tensor> in = {Tensor::randn(c.x, own), Tensor::randn(c.w, own, 0.f, 0.3f)};
    if (c.bias) in.push_back(Tensor::randn({c.w[0]}, own));
    const Conv2dParams p{.pad = c.pad};
    const bool bias = c.bias;
    Options o;
    o.max_elems = 200;
    // Convolution is linear in each input, so the central difference has no truncation error and a
    // larger step only divides the (Winograd-sized) rounding of the forward by more.
    o.eps = 0.1;
    check("winograd conv2d x" + to_string(c.x) + " w" + to_string(c.w) + " pad " + std::to_string(c.pad),
          [p, bias](const std::vector<Var>& v) { return conv2d(v[0], v[1], bias ? v[2] : Var(), p); }, in, o);
  }
  set_conv_algorithm(ConvAlgorithm::automatic);
}

BOOST_AUTO_TEST_CASE(max_pool2d_grad) {
  struct Case {
    Shape x;
    Pool2dParams p;
  };
  for (const auto& c : std::vector<Case>{{{2, 3, 6, 6}, {.kernel = 2}},
                                         {{2, 3, 7, 5}, {.kernel = 3, .stride = 2, .pad = 1}},
                                         {{1, 16, 9, 9}, {.kernel = 3, .stride = 2, .pad = 1}}}) {
    const Pool2dParams p = c.p;
    check("max_pool2d " + to_string(c.x), [p](const std::vector<Var>& v) { return max_pool2d(v[0], p); },
          {spaced_values(c.x, 11)});
  }
}

BOOST_AUTO_TEST_CASE(avg_pool2d_grad) {
  struct Case {
    Shape x;
    Pool2dParams p;
  };
  for (const auto& c : std::vector<Case>{{{2, 3, 6, 6}, {.kernel = 2}},
                                         {{2, 3, 7, 5}, {.kernel = 3, .stride = 2, .pad = 1}},
                                         {{1, 2, 7, 7}, {.kernel = 3, .stride = 2, .pad = 1, .count_include_pad = false}}}) {
    const Pool2dParams p = c.p;
    check("avg_pool2d " + to_string(c.x), [p](const std::vector<Var>& v) { return avg_pool2d(v[0], p); }, {rnd(c.x)});
  }
}

BOOST_AUTO_TEST_CASE(global_pool_grad) {
  for (const Shape& s : std::vector<Shape>{{2, 3, 5, 7}, {3, 4, 1, 1}, {2, 16, 4, 4}}) {
    check("global_avg_pool2d " + to_string(s), [](const std::vector<Var>& v) { return global_avg_pool2d(v[0]); },
          {rnd(s)});
    check("global_max_pool2d " + to_string(s), [](const std::vector<Var>& v) { return global_max_pool2d(v[0]); },
          {spaced_values(s, 3)});
  }
}

BOOST_AUTO_TEST_CASE(linear_grad) {
  for (auto [n, ic, oc] : std::vector<std::array<int64_t, 3>>{{4, 5, 3}, {1, 7, 2}, {3, 16, 9}}) {
    check("linear with bias", [](const std::vector<Var>& v) { return linear(v[0], v[1], v[2]); },
          {rnd({n, ic}), rnd({oc, ic}, 0.5f), rnd({oc})});
    check("linear no bias", [](const std::vector<Var>& v) { return linear(v[0], v[1]); },
          {rnd({n, ic}), rnd({oc, ic}, 0.5f)});
  }
}

BOOST_AUTO_TEST_CASE(batch_norm2d_grad) {
  for (const Shape& s : std::vector<Shape>{{4, 3, 3, 3}, {2, 5, 4, 3}, {3, 16, 2, 2}}) {
    const int64_t C = s[1];
    Tensor rm = Tensor::zeros({C}), rv = Tensor::full({C}, 1.f);
    check("batch_norm2d train " + to_string(s),
          [&](const std::vector<Var>& v) { return batch_norm2d(v[0], v[1], v[2], rm, rv, {.training = true}); },
          {rnd(s, 2.f), Tensor::uniform({C}, gen(), 0.5f, 1.5f), rnd({C})});
    Tensor em = rnd({C}, 0.3f), ev = Tensor::uniform({C}, gen(), 0.5f, 2.f);
    check("batch_norm2d eval " + to_string(s),
          [&](const std::vector<Var>& v) { return batch_norm2d(v[0], v[1], v[2], em, ev, {.training = false}); },
          {rnd(s), Tensor::uniform({C}, gen(), 0.5f, 1.5f), rnd({C})});
  }
}

BOOST_AUTO_TEST_CASE(sync_batch_norm2d_grad_and_forward) {
  // Synchronised BN (data-parallel: BatchNormParams::sync) has its own kernels. With one replica (a
  // reducer that leaves the sums alone) it must equal oneDNN's batch norm: output, running
  // statistics, and the gradients by finite differences. With a reducer that doubles every sum
  // (two replicas holding the same batch) the normalisation is the same again, while the running
  // variance's unbiasing uses the doubled count.
  int calls = 0;
  const StatsReducer one = [&](double*, int64_t) { ++calls; };
  const StatsReducer twins = [](double* d, int64_t n) {
    for (int64_t i = 0; i < n; ++i) d[i] *= 2;
  };
  for (const Shape& s : std::vector<Shape>{{4, 3, 3, 3}, {3, 16, 2, 2}}) {
    const int64_t C = s[1];
    Tensor rm = Tensor::zeros({C}), rv = Tensor::full({C}, 1.f);
    check("sync batch_norm2d train " + to_string(s),
          [&](const std::vector<Var>& v) { return batch_norm2d(v[0], v[1], v[2], rm, rv, {.training = true, .sync = one}); },
          {rnd(s, 2.f), Tensor::uniform({C}, gen(), 0.5f, 1.5f), rnd({C})});
    const Tensor x = rnd(s, 2.f), w = Tensor::uniform({C}, gen(), 0.5f, 1.5f), b = rnd({C});
    Tensor rm1 = Tensor::zeros({C}), rv1 = Tensor::full({C}, 1.f), rm2 = rm1.clone(), rv2 = rv1.clone(),
           rm3 = rm1.clone(), rv3 = rv1.clone();
    calls = 0;
    const Var ys = batch_norm2d(Var(x), Var(w), Var(b), rm1, rv1, {.training = true, .relu = true, .sync = one});
    BOOST_TEST(calls == 2, "the reducer was called " << calls << " times in forward (sums, then squares)");
    const Var yo = batch_norm2d(Var(x), Var(w), Var(b), rm2, rv2, {.training = true, .relu = true});
    const Var yt = batch_norm2d(Var(x), Var(w), Var(b), rm3, rv3, {.training = true, .relu = true, .sync = twins});
    const auto a = ys.value().to_vector(), o = yo.value().to_vector(), tw = yt.value().to_vector();
    for (size_t i = 0; i < a.size(); ++i) {
      BOOST_TEST(a[i] == o[i], boost::test_tools::tolerance(1e-4f));
      BOOST_TEST(tw[i] == o[i], boost::test_tools::tolerance(1e-4f));
    }
    const auto m1 = rm1.to_vector(), m2 = rm2.to_vector(), m3 = rm3.to_vector();
    const auto v1 = rv1.to_vector(), v2 = rv2.to_vector(), v3 = rv3.to_vector();
    const double n = static_cast<double>(s[0] * s[2] * s[3]);
    for (int64_t c = 0; c < C; ++c) {
      BOOST_TEST(m1[c] == m2[c], boost::test_tools::tolerance(1e-4f));
      BOOST_TEST(v1[c] == v2[c], boost::test_tools::tolerance(1e-4f));
      BOOST_TEST(m3[c] == m2[c], boost::test_tools::tolerance(1e-4f));
      // running = 0.9 * 1 + 0.1 * var * count / (count - 1), with count n or 2n
      const double var = ((v2[c] - 0.9) / 0.1) * (n - 1) / n;
      BOOST_TEST(v3[c] == 0.9 + 0.1 * var * (2 * n) / (2 * n - 1), boost::test_tools::tolerance(1e-4));
    }
  }
}

BOOST_AUTO_TEST_CASE(fused_bn_relu_and_add_relu_grad) {
  // Inputs keep every pre-activation at least 0.025 from the ReLU kink (see spaced_values).
  for (const Shape& s : std::vector<Shape>{{2, 3, 3, 3}, {3, 16, 2, 2}}) {
    const int64_t C = s[1];
    Tensor em = Tensor::zeros({C}), ev = Tensor::full({C}, 1.f - 1e-5f);  // eval: bn(x) = x exactly
    check("batch_norm2d+relu eval " + to_string(s),
          [&](const std::vector<Var>& v) { return batch_norm2d(v[0], v[1], v[2], em, ev, {.training = false, .relu = true}); },
          {spaced_values(s, 21), Tensor::full({C}, 1.f), Tensor::zeros({C})});
    Tensor b = rnd(s, 0.3f), sum = spaced_values(s, 22);
    Tensor a = sum.clone();
    a.add_(b, -1.f);  // a + b = sum, away from 0
    check("add_relu " + to_string(s), [](const std::vector<Var>& v) { return add_relu(v[0], v[1]); }, {a, b});
  }
  {  // conv2d + relu post-op: a 1x1 identity-like convolution keeps outputs (= spaced inputs) off the kink
    const Shape xs = {2, 3, 3, 3};
    Tensor w = Tensor::zeros({3, 3, 1, 1});
    for (int i = 0; i < 3; ++i) w.data()[i * 3 + i] = 1.f;
    check("conv2d+relu 1x1", [](const std::vector<Var>& v) { return conv2d(v[0], v[1], v[2], {.relu = true}); },
          {spaced_values(xs, 25), w, Tensor::zeros({3})});
  }
  check("add_relu x + x", [](const std::vector<Var>& v) { return add_relu(v[0], v[0]); }, {spaced_values({2, 3, 2, 2}, 23)});
  // Training-mode BN + ReLU: the fused primitive against relu(batch_norm2d(.)), whose parts are
  // checked above, on the same inputs: outputs and every gradient.
  Generator g(24);
  for (const Shape& s : std::vector<Shape>{{4, 3, 5, 5}, {2, 16, 7, 7}, {2, 20, 3, 3}}) {
    const int64_t C = s[1];
    Tensor x = Tensor::randn(s, g), w = Tensor::uniform({C}, g, 0.5f, 1.5f), bb = Tensor::randn({C}, g, 0.f, 0.5f);
    Tensor dy = Tensor::randn(s, g);
    std::vector<std::vector<float>> got[2];
    for (int fused = 0; fused < 2; ++fused) {
      Tensor rm = Tensor::zeros({C}), rv = Tensor::full({C}, 1.f);
      Var vx = Var::parameter(x.clone()), vw = Var::parameter(w.clone()), vb = Var::parameter(bb.clone());
      Var y = fused ? batch_norm2d(vx, vw, vb, rm, rv, {.relu = true}) : relu(batch_norm2d(vx, vw, vb, rm, rv));
      y.backward(dy);
      got[fused] = {y.value().to_vector(), vx.grad().to_vector(), vw.grad().to_vector(), vb.grad().to_vector(),
                    rm.to_vector(), rv.to_vector()};
    }
    {  // conv2d's ReLU post-op against relu(conv2d(.)), the same way
      Tensor cw = Tensor::randn({C, C, 3, 3}, g, 0.f, 0.3f), cb = Tensor::randn({C}, g);
      std::vector<std::vector<float>> r[2];
      for (int fused = 0; fused < 2; ++fused) {
        Var vx = Var::parameter(x.clone()), vw = Var::parameter(cw.clone()), vb = Var::parameter(cb.clone());
        Var y = fused ? conv2d(vx, vw, vb, {.pad = 1, .relu = true}) : relu(conv2d(vx, vw, vb, {.pad = 1}));
        y.backward(dy);
        r[fused] = {y.value().to_vector(), vx.grad().to_vector(), vw.grad().to_vector(), vb.grad().to_vector()};
      }
      for (int k = 0; k < 4; ++k)
        for (size_t i = 0; i < r[0][k].size(); ++i)
          BOOST_TEST_REQUIRE(std::abs(r[0][k][i] - r[1][k][i]) <= 1e-5f + 1e-4f * std::abs(r[0][k][i]),
                             "fused conv+relu " << to_string(s) << " result " << k << "[" << i << "]: " << r[1][k][i]
                                                << " vs composed " << r[0][k][i]);
    }
    const char* names[] = {"output", "dx", "dweight", "dbias", "running_mean", "running_var"};
    for (int k = 0; k < 6; ++k)
      for (size_t i = 0; i < got[0][k].size(); ++i)
        BOOST_TEST_REQUIRE(std::abs(got[0][k][i] - got[1][k][i]) <= 1e-5f + 1e-4f * std::abs(got[0][k][i]),
                           "fused bn+relu " << to_string(s) << " " << names[k] << "[" << i << "]: " << got[1][k][i]
                                            << " vs composed " << got[0][k][i]);
  }
}

BOOST_AUTO_TEST_CASE(relu_sigmoid_grad) {
  for (const Shape& s : std::vector<Shape>{{2, 3, 5, 5}, {7}, {3, 4}}) {
    check("relu " + to_string(s), [](const std::vector<Var>& v) { return relu(v[0]); }, {spaced_values(s, 5)});
    check("sigmoid " + to_string(s), [](const std::vector<Var>& v) { return sigmoid(v[0]); }, {rnd(s, 2.f)});
  }
}

BOOST_AUTO_TEST_CASE(add_mul_broadcast_grad) {
  const std::vector<std::pair<Shape, Shape>> pairs = {
      {{2, 3, 4, 5}, {2, 3, 4, 5}}, {{2, 3, 4, 5}, {2, 3, 1, 1}}, {{2, 3, 4, 5}, {2, 1, 4, 5}},
      {{2, 1, 4, 5}, {2, 3, 4, 5}}, {{3, 4}, {1, 4}},             {{2, 3, 1, 5}, {1, 3, 4, 1}},
  };
  for (const auto& [a, b] : pairs) {
    check("add " + to_string(a) + " + " + to_string(b), [](const std::vector<Var>& v) { return v[0] + v[1]; },
          {rnd(a), rnd(b)});
    check("mul " + to_string(a) + " * " + to_string(b), [](const std::vector<Var>& v) { return v[0] * v[1]; },
          {rnd(a), rnd(b)});
  }
  // The same Var on both sides (fan-out into one node).
  check("mul x * x", [](const std::vector<Var>& v) { return v[0] * v[0]; }, {rnd({2, 3, 2, 2})});
  check("add x + x", [](const std::vector<Var>& v) { return v[0] + v[0]; }, {rnd({2, 3, 2, 2})});
}

BOOST_AUTO_TEST_CASE(concat_grad) {
  check("concat 3 inputs", [](const std::vector<Var>& v) { return concat_channels({v[0], v[1], v[2]}); },
        {rnd({2, 1, 3, 5}), rnd({2, 3, 3, 5}), rnd({2, 2, 3, 5})});
  check("concat same input twice", [](const std::vector<Var>& v) { return concat_channels({v[0], v[0]}); },
        {rnd({2, 2, 3, 3})});
}

BOOST_AUTO_TEST_CASE(channel_reduce_grad) {
  for (const Shape& s : std::vector<Shape>{{2, 3, 4, 5}, {1, 7, 3, 3}, {2, 1, 2, 2}}) {
    check("channel_mean " + to_string(s), [](const std::vector<Var>& v) { return channel_mean(v[0]); }, {rnd(s)});
    check("channel_max " + to_string(s), [](const std::vector<Var>& v) { return channel_max(v[0]); },
          {spaced_values(s, 9)});
  }
}

BOOST_AUTO_TEST_CASE(reshape_flatten_grad) {
  check("reshape", [](const std::vector<Var>& v) { return reshape(v[0], {3, -1}); }, {rnd({2, 3, 2, 2})});
  // flatten of a (possibly blocked) conv output feeding a linear layer
  check("flatten after conv",
        [](const std::vector<Var>& v) { return linear(flatten(conv2d(v[0], v[1], {}, {.pad = 1})), v[2]); },
        {rnd({2, 3, 3, 3}), rnd({16, 3, 3, 3}, 0.3f), rnd({4, 16 * 9}, 0.1f)}, {.max_elems = 100});
}

BOOST_AUTO_TEST_CASE(dropout_grad) {
  // The mask must be the same in every evaluation: reseed inside f.
  check("dropout p=0.3",
        [](const std::vector<Var>& v) {
          manual_seed(99);
          return dropout(v[0], 0.3f, true);
        },
        {rnd({4, 3, 5})});
}

BOOST_AUTO_TEST_CASE(cross_entropy_grad) {
  const std::vector<int> t = {0, 2, 1, 2, 3};
  check("cross entropy", [&](const std::vector<Var>& v) { return softmax_cross_entropy(v[0], t); }, {rnd({5, 4}, 2.f)});
  check("cross entropy weighted + smoothing",
        [&](const std::vector<Var>& v) {
          return softmax_cross_entropy(v[0], t, {.class_weights = {0.5f, 2.f, 1.f, 3.f}, .label_smoothing = 0.1f});
        },
        {rnd({5, 4}, 2.f)});
  check("cross entropy with logit offsets",
        [&](const std::vector<Var>& v) {
          return softmax_cross_entropy(
              v[0], t, {.class_weights = {0.5f, 2.f, 1.f, 3.f}, .label_smoothing = 0.1f, .logit_offsets = {-1.5f, 0.f, 2.f, -0.5f}});
        },
        {rnd({5, 4}, 2.f)});
}

BOOST_AUTO_TEST_CASE(small_network_grad) {
  // conv -> bn -> relu -> maxpool -> conv (+ residual 1x1) -> global avg -> linear -> loss: the
  // blocked layouts, reorders and fan-out of a real network, checked end to end.
  Tensor rm = Tensor::zeros({8}), rv = Tensor::full({8}, 1.f);
  const std::vector<int> t = {1, 0, 2};
  auto f = [&](const std::vector<Var>& v) {
    Var h = conv2d(v[0], v[1], {}, {.pad = 1});
    h = relu(batch_norm2d(h, v[2], v[3], rm, rv));
    h = max_pool2d(h, {.kernel = 2});
    Var r = conv2d(h, v[4], {}, {.pad = 1}) + conv2d(h, v[5]);
    Var g = flatten(global_avg_pool2d(relu(r)));
    return softmax_cross_entropy(linear(g, v[6], v[7]), t);
  };
  check("small network", f,
        {rnd({3, 3, 8, 8}), rnd({8, 3, 3, 3}, 0.4f), Tensor::uniform({8}, gen(), 0.5f, 1.5f), rnd({8}, 0.1f),
         rnd({8, 8, 3, 3}, 0.3f), rnd({8, 8, 1, 1}, 0.3f), rnd({3, 8}, 0.5f), rnd({3}, 0.1f)},
        // relu and max pooling inside: a smaller step keeps perturbations from crossing kinks, at
        // the price of 10x more rounding noise in the difference quotient, hence the looser atol.
        {.eps = 1e-3, .rtol = 2e-2, .atol = 5e-3, .max_elems = 60});
}
