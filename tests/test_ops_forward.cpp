// Forward checks of every op in framework/ops.h against the naive reference loops in reference.h:
// several shapes per op (odd sizes, stride 2, padding, dilation, groups, with/without bias), both
// through the inference path (plain Vars) and the training path (inputs that require grad, which
// selects oneDNN's forward_training primitives), plus batch-norm running statistics, dropout masks,
// reshape order and inputs in oneDNN blocked layouts.
#define BOOST_TEST_MODULE ops_forward
#include <boost/test/unit_test.hpp>

#include <fmt/format.h>

#include <cmath>
#include <string>
#include <vector>

#include "framework/dnnl/context.h"
#include "framework/cpu.h"
#include "framework/ops.h"
#include "framework/ops/conv2d.h"
#include "framework/ops/winograd.h"
#include "framework/random.h"
#include "framework/tensor.h"
#include "reference.h"
#include "testing.h"

using namespace dermis;

namespace {

// Tolerances. The ops compute in f32 and the reference in double (from the same f32 inputs), so
// the reference is exact to ~1e-16 and every difference is the op's f32 rounding. One f32 rounding
// is ~6e-8 relative; rtol = 1e-4 leaves a wide margin for that and for oneDNN's approximations
// (e.g. its exp in sigmoid). Outputs that are sums of many O(1) terms (inputs are randn) carry an
// absolute rounding error that grows with the number of accumulated terms (a random walk of
// per-term roundings, ~sqrt(terms) in practice), while the result itself may be near zero through
// cancellation; so atol = 1e-5 * sqrt(terms). Selection ops (max, relu, concat, reshape) do no
// arithmetic and must match exactly.
struct Tol {
  double rtol, atol;
};
constexpr Tol kExact{0.0, 0.0};
Tol tol_terms(int64_t terms) { return {1e-4, 1e-5 * std::sqrt(static_cast<double>(std::max<int64_t>(terms, 1)))}; }
// dermis's Winograd F(4x4, 3x3) (the standard points 0, +-1, +-2): its transforms multiply by up to
// 8 (A^T) and 5 (B^T), so its rounding error is about 7x direct convolution's in RMS and its
// largest errors about 5e-5 of the output's RMS (docs/design.md, "Winograd numerics"); atol is ten
// times direct's. A wrong transform is off by O(1) of the output and fails by orders of magnitude.
Tol tol_winograd(int64_t terms) { return {1e-4, 1e-4 * std::sqrt(static_cast<double>(std::max<int64_t>(terms, 1)))}; }

// Checks shape and that |got - want| <= atol + rtol * |want| for every element (NaN fails).
void check_values(const std::vector<float>& got, const Shape& got_shape, const ref::Result& want, Tol tol,
                  const std::string& what) {
  BOOST_TEST((got_shape == want.shape),
             what << ": shape " << to_string(got_shape) << " but reference " << to_string(want.shape));
  if (got.size() != want.v.size()) return;
  size_t bad = 0, first = 0;
  double max_err = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    const double err = std::abs(static_cast<double>(got[i]) - want.v[i]);
    max_err = std::max(max_err, err);
    if (!(err <= tol.atol + tol.rtol * std::abs(want.v[i]))) {
      if (bad++ == 0) first = i;
      if (std::isnan(err)) max_err = err;
    }
  }
  BOOST_TEST(bad == 0u, what << ": " << bad << " of " << got.size() << " elements outside atol " << tol.atol << " + rtol " << tol.rtol
                            << "; first at flat index " << first << ": got " << got[first] << ", want "
                            << want.v[bad ? first : 0] << "; max |err| " << max_err);
}
void check(const Var& got, const ref::Result& want, Tol tol, const std::string& what) {
  check_values(got.value().to_vector(), got.shape(), want, tol, what);
}

std::vector<float> vec(const Tensor& t) { return t.to_vector(); }
std::vector<float> vec(const Var& v) { return v.value().to_vector(); }
const char* mode(bool grad) { return grad ? "training path" : "inference path"; }

// A copy of t in an explicit oneDNN blocked layout (nChw16c / nChw8c), for the blocked-layout tests.
Tensor blocked(const Tensor& t, dnnl::memory::format_tag tag) {
  dnnl::memory::desc md({t.dim(0), t.dim(1), t.dim(2), t.dim(3)}, dnnl::memory::data_type::f32, tag);
  return t.to_desc(md);
}

}  // namespace

BOOST_AUTO_TEST_CASE(conv2d_matches_reference) {
  struct Case {
    Shape x, w;
    Conv2dParams p;
    bool bias;
  };
  const std::vector<Case> cases = {
      {{2, 3, 7, 5}, {4, 3, 3, 3}, {.stride = 1, .pad = 0}, true},
      {{2, 3, 9, 9}, {8, 3, 3, 3}, {.stride = 2, .pad = 1}, false},
      {{1, 4, 9, 9}, {6, 4, 3, 3}, {.stride = 1, .pad = 2, .dilation = 2}, true},
      {{2, 4, 7, 5}, {6, 2, 3, 3}, {.stride = 1, .pad = 1, .groups = 2}, true},
      {{2, 8, 9, 7}, {16, 4, 3, 3}, {.stride = 2, .pad = 1, .dilation = 2, .groups = 2}, false},
      {{1, 16, 8, 8}, {32, 16, 1, 1}, {}, true},
      {{2, 6, 11, 9}, {4, 6, 5, 5}, {.stride = 2, .pad = 2}, true},
      {{1, 4, 7, 5}, {4, 4, 3, 1}, {.stride = 1, .pad = 1}, false},
      {{2, 32, 9, 9}, {32, 16, 3, 3}, {.stride = 1, .pad = 1, .groups = 2}, true},
      {{1, 3, 13, 13}, {16, 3, 7, 7}, {.stride = 2, .pad = 3}, true},
      {{2, 20, 7, 7}, {20, 20, 3, 3}, {.stride = 2, .pad = 1}, false},
      {{2, 8, 7, 6}, {8, 1, 3, 3}, {.stride = 1, .pad = 1, .groups = 8}, true},        // depthwise
      {{2, 16, 9, 9}, {16, 1, 3, 3}, {.stride = 2, .pad = 1, .groups = 16}, false},    // depthwise, blocked
      {{1, 32, 8, 8}, {64, 1, 3, 3}, {.stride = 1, .pad = 1, .groups = 32}, true},     // depthwise, multiplier 2
  };
  Generator gen(1);
  for (const auto& c : cases) {
    Tensor x = Tensor::randn(c.x, gen), w = Tensor::randn(c.w, gen), b = Tensor::randn({c.w[0]}, gen);
    const auto want = ref::conv2d(vec(x), c.x, vec(w), c.w, c.bias ? vec(b) : std::vector<float>{}, c.p.stride,
                                  c.p.pad, c.p.dilation, c.p.groups);
    const int64_t terms = c.w[1] * c.w[2] * c.w[3] + (c.bias ? 1 : 0);
    for (bool grad : {false, true}) {
      Var y = conv2d(Var(x, grad), Var(w, grad), c.bias ? Var(b, grad) : Var(), c.p);
      check(y, want, tol_terms(terms),
            fmt::format("conv2d x{} w{} stride {} pad {} dilation {} groups {} bias {} ({})", to_string(c.x),
                        to_string(c.w), c.p.stride, c.p.pad, c.p.dilation, c.p.groups, c.bias, mode(grad)));
      Conv2dParams pr = c.p;
      pr.relu = true;
      check(conv2d(Var(x, grad), Var(w, grad), c.bias ? Var(b, grad) : Var(), pr), ref::relu(want), tol_terms(terms),
            fmt::format("conv2d+relu x{} w{} ({})", to_string(c.x), to_string(c.w), mode(grad)));
    }
  }
}

// Winograd, oneDNN's (AVX-512 only) and dermis's own (AVX2 and AVX-512): the forward against the
// double-precision reference, and the three gradients against direct convolution's (which the
// finite-difference checks in test_ops_grad cover), on shapes of the models (28x28 with 64 channels
// is layer1's, 4x4 with 512 layer4's) and odd ones (sizes that leave partial tiles, padding 0 and
// 2). Each implementation must really run: one this CPU lacks is reported and skipped, and the
// case fails if neither runs.
BOOST_AUTO_TEST_CASE(conv2d_winograd_matches_reference_and_direct) {
  struct Case {
    Shape x, w;
    int64_t pad;
    bool bias;
  };
  const std::vector<Case> cases = {
      {{2, 16, 9, 7}, {32, 16, 3, 3}, 1, true},
      {{2, 64, 28, 28}, {64, 64, 3, 3}, 1, false},
      {{2, 512, 4, 4}, {512, 512, 3, 3}, 1, false},
      {{1, 32, 10, 11}, {16, 32, 3, 3}, 0, true},
      {{3, 16, 5, 13}, {48, 16, 3, 3}, 2, true},
      {{2, 32, 14, 14}, {32, 32, 3, 3}, 1, true},
  };
  std::vector<ConvAlgorithm> algs;
  if (cpu::info().winograd) algs.push_back(ConvAlgorithm::onednn_winograd);
  else BOOST_TEST_MESSAGE("oneDNN's Winograd is not on this CPU (AVX-512 only): " << cpu::summary());
  if (winograd::lanes() > 0) algs.push_back(ConvAlgorithm::winograd);
  else BOOST_TEST_MESSAGE("dermis's Winograd needs AVX2 or AVX-512: " << cpu::summary());
  BOOST_TEST_REQUIRE(!algs.empty(), "no Winograd convolution runs on this CPU");
  Generator gen(7);
  for (ConvAlgorithm wino : algs)
  for (const auto& c : cases) {
    Tensor x = Tensor::randn(c.x, gen), w = Tensor::randn(c.w, gen), b = Tensor::randn({c.w[0]}, gen);
    const auto want = ref::conv2d(vec(x), c.x, vec(w), c.w, c.bias ? vec(b) : std::vector<float>{}, 1, c.pad, 1, 1);
    const int64_t terms = c.w[1] * 9 + (c.bias ? 1 : 0);
    const std::string what = fmt::format("{} conv2d x{} w{} pad {}", name_of(wino), to_string(c.x),
                                         to_string(c.w), c.pad);
    set_conv_algorithm(wino);
    if (!detail::conv2d_uses_winograd(c.x, c.w, {.pad = c.pad})) {
      // oneDNN's Winograd has no padding 2; dermis's covers every case here.
      BOOST_TEST_REQUIRE((wino == ConvAlgorithm::onednn_winograd && c.pad > 1), what << ": Winograd does not run");
      continue;
    }
    std::vector<std::vector<float>> grads[2];
    Tensor dy;
    const auto tol = wino == ConvAlgorithm::winograd ? tol_winograd : tol_terms;
    for (ConvAlgorithm alg : {wino, ConvAlgorithm::direct}) {
      set_conv_algorithm(alg);
      const Conv2dParams p{.pad = c.pad};
      check(conv2d(Var(x), Var(w), c.bias ? Var(b) : Var(), p), want, tol(terms), what + " (inference path)");
      Var vx = Var::parameter(x.clone()), vw = Var::parameter(w.clone()), vb = Var::parameter(b.clone());
      Var y = conv2d(vx, vw, c.bias ? vb : Var(), p);
      check(y, want, tol(terms), what + " (training path)");
      check(conv2d(Var(x), Var(w), c.bias ? Var(b) : Var(), {.pad = c.pad, .relu = true}), ref::relu(want),
            tol(terms), what + " + ReLU post-op");
      if (!dy.defined()) dy = Tensor::randn(y.value().shape(), gen);
      y.backward(dy);
      auto& gr = grads[alg == ConvAlgorithm::direct];
      gr = {vx.grad().to_vector(), vw.grad().to_vector()};
      if (c.bias) gr.push_back(vb.grad().to_vector());
    }
    set_conv_algorithm(ConvAlgorithm::automatic);
    // dx sums OC*9 products, dweight and dbias N*Ho*Wo: the same rounding model as the forward.
    const int64_t n_out = c.x[0] * (c.x[2] + 2 * c.pad - 2) * (c.x[3] + 2 * c.pad - 2);
    const int64_t gterms[] = {c.w[0] * 9, n_out, n_out};
    const char* names[] = {"dx", "dweight", "dbias"};
    for (size_t k = 0; k < grads[0].size(); ++k) {
      const Tol t = tol(gterms[k]);
      size_t bad = 0;
      for (size_t i = 0; i < grads[0][k].size(); ++i)
        bad += !(std::abs(grads[0][k][i] - grads[1][k][i]) <= t.atol + t.rtol * std::abs(grads[1][k][i]));
      BOOST_TEST(bad == 0u, what << ": " << bad << " of " << grads[0][k].size() << " " << names[k]
                                 << " values differ from direct convolution's");
    }
  }
  set_conv_algorithm(ConvAlgorithm::automatic);
  // Both implementations really ran: oneDNN's primitives name themselves "wino", dermis's runs its
  // products on a matmul noted as "winograd_matmul".
  bool onednn = false;
  const auto impls = dnnl_ctx::impls();
  for (const auto& [kind, names] : impls)
    for (const auto& n : names) onednn = onednn || n.find("wino") != std::string::npos;
  if (cpu::info().winograd) BOOST_TEST(onednn, "this CPU has oneDNN's Winograd kernels but none ran");
  if (winograd::lanes() > 0) BOOST_TEST(impls.count("winograd_matmul") == 1u, "dermis's Winograd did not run");
}

namespace {
struct PoolCase {
  Shape x;
  int64_t kernel, stride, pad;
};
const std::vector<PoolCase> kPoolCases = {
    {{2, 3, 7, 5}, 2, 0, 0},   // stride 0 = kernel; odd sizes drop the last row/column
    {{2, 3, 9, 9}, 3, 2, 1},   {{1, 4, 8, 6}, 3, 1, 1}, {{2, 5, 9, 7}, 3, 3, 0},
    {{1, 2, 5, 5}, 2, 1, 1},   {{2, 16, 9, 9}, 3, 2, 1}, {{1, 3, 7, 7}, 7, 1, 0},
    {{2, 20, 11, 6}, 5, 2, 2},
};
}  // namespace

BOOST_AUTO_TEST_CASE(max_pool2d_matches_reference) {
  Generator gen(2);
  for (const auto& c : kPoolCases)
    for (bool negative : {false, true}) {
      // All-negative inputs catch padding treated as zeros instead of being ignored.
      Tensor x = negative ? Tensor::uniform(c.x, gen, -3.f, -1.f) : Tensor::randn(c.x, gen);
      const int64_t s = c.stride ? c.stride : c.kernel;
      const auto want = ref::max_pool2d(vec(x), c.x, c.kernel, s, c.pad);
      for (bool grad : {false, true})
        check(max_pool2d(Var(x, grad), {.kernel = c.kernel, .stride = c.stride, .pad = c.pad}), want, kExact,
              fmt::format("max_pool2d x{} kernel {} stride {} pad {} negative {} ({})", to_string(c.x), c.kernel,
                          c.stride, c.pad, negative, mode(grad)));
    }
}

BOOST_AUTO_TEST_CASE(avg_pool2d_matches_reference) {
  Generator gen(3);
  for (const auto& c : kPoolCases)
    for (bool include : {true, false}) {
      Tensor x = Tensor::uniform(c.x, gen, 0.5f, 2.f);  // positive: padding as zeros changes the mean
      const int64_t s = c.stride ? c.stride : c.kernel;
      const auto want = ref::avg_pool2d(vec(x), c.x, c.kernel, s, c.pad, include);
      for (bool grad : {false, true})
        check(avg_pool2d(Var(x, grad), {.kernel = c.kernel, .stride = c.stride, .pad = c.pad, .count_include_pad = include}),
              want, tol_terms(c.kernel * c.kernel),
              fmt::format("avg_pool2d x{} kernel {} stride {} pad {} count_include_pad {} ({})", to_string(c.x),
                          c.kernel, c.stride, c.pad, include, mode(grad)));
    }
}

BOOST_AUTO_TEST_CASE(global_pool2d_matches_reference) {
  Generator gen(4);
  for (const Shape& s : std::vector<Shape>{{2, 3, 7, 5}, {1, 16, 9, 9}, {3, 5, 1, 7}, {2, 20, 1, 1}, {4, 8, 14, 14}}) {
    Tensor x = Tensor::randn(s, gen, 0.5f, 1.f);
    for (bool grad : {false, true}) {
      check(global_avg_pool2d(Var(x, grad)), ref::global_avg_pool2d(vec(x), s), tol_terms(s[2] * s[3]),
            fmt::format("global_avg_pool2d x{} ({})", to_string(s), mode(grad)));
      check(global_max_pool2d(Var(x, grad)), ref::global_max_pool2d(vec(x), s), kExact,
            fmt::format("global_max_pool2d x{} ({})", to_string(s), mode(grad)));
    }
  }
}

BOOST_AUTO_TEST_CASE(linear_matches_reference) {
  struct Case {
    int64_t N, IC, OC;
    bool bias;
  };
  Generator gen(5);
  for (const Case& c : std::vector<Case>{{4, 10, 3, true}, {4, 10, 3, false}, {1, 7, 5, true}, {9, 64, 10, true},
                                         {3, 512, 7, false}, {16, 33, 17, true}}) {
    Tensor x = Tensor::randn({c.N, c.IC}, gen), w = Tensor::randn({c.OC, c.IC}, gen), b = Tensor::randn({c.OC}, gen);
    const auto want = ref::linear(vec(x), c.N, c.IC, vec(w), c.OC, c.bias ? vec(b) : std::vector<float>{});
    for (bool grad : {false, true})
      check(linear(Var(x, grad), Var(w, grad), c.bias ? Var(b, grad) : Var()), want, tol_terms(c.IC + 1),
            fmt::format("linear N {} IC {} OC {} bias {} ({})", c.N, c.IC, c.OC, c.bias, mode(grad)));
  }
}

namespace {
const std::vector<Shape> kBnShapes = {{2, 3, 7, 5}, {4, 8, 9, 9}, {1, 5, 3, 3}, {8, 16, 4, 4}, {2, 20, 5, 7}};
}

BOOST_AUTO_TEST_CASE(batch_norm2d_training_matches_reference) {
  // Batch statistics for the output (biased variance); running stats follow PyTorch's rule with
  // momentum 0.1 and the UNBIASED batch variance, checked over two consecutive steps.
  Generator gen(6);
  for (const Shape& s : kBnShapes)
    for (bool grad : {false, true}) {
      const int64_t C = s[1], count = s[0] * s[2] * s[3];
      Tensor w = Tensor::uniform({C}, gen, 0.5f, 1.5f), b = Tensor::randn({C}, gen);
      Tensor rm = Tensor::randn({C}, gen), rv = Tensor::uniform({C}, gen, 0.5f, 2.f);
      std::vector<double> want_rm(rm.values().begin(), rm.values().end()), want_rv(rv.values().begin(), rv.values().end());
      for (int step = 0; step < 2; ++step) {
        Tensor x = Tensor::randn(s, gen, 3.f, 2.f);
        const std::string what = fmt::format("batch_norm2d train x{} step {} ({})", to_string(s), step, mode(grad));
        Var y = batch_norm2d(Var(x, grad), Var(w, grad), Var(b, grad), rm, rv, {.training = true});
        check(y, ref::batch_norm2d_train(vec(x), s, vec(w), vec(b), 1e-5), tol_terms(count), what);
        ref::batch_norm2d_update_running(vec(x), s, 0.1, want_rm, want_rv);
        check_values(vec(rm), rm.shape(), {{C}, want_rm}, tol_terms(count), what + " running_mean");
        check_values(vec(rv), rv.shape(), {{C}, want_rv}, tol_terms(count), what + " running_var (unbiased)");
      }
    }
}

BOOST_AUTO_TEST_CASE(batch_norm2d_eval_matches_reference) {
  // Eval normalises with the running statistics and leaves them untouched.
  Generator gen(7);
  for (const Shape& s : kBnShapes)
    for (bool grad : {false, true}) {
      const int64_t C = s[1];
      Tensor x = Tensor::randn(s, gen, 1.f, 2.f);
      Tensor w = Tensor::uniform({C}, gen, 0.5f, 1.5f), b = Tensor::randn({C}, gen);
      Tensor rm = Tensor::randn({C}, gen), rv = Tensor::uniform({C}, gen, 0.5f, 4.f);
      const std::vector<float> rm0 = vec(rm), rv0 = vec(rv);
      const std::string what = fmt::format("batch_norm2d eval x{} ({})", to_string(s), mode(grad));
      Var y = batch_norm2d(Var(x, grad), Var(w, grad), Var(b, grad), rm, rv, {.training = false});
      check(y, ref::batch_norm2d_eval(vec(x), s, rm0, rv0, vec(w), vec(b), 1e-5), tol_terms(1), what);
      BOOST_TEST((vec(rm) == rm0), what << ": running_mean changed in eval");
      BOOST_TEST((vec(rv) == rv0), what << ": running_var changed in eval");
    }
}

BOOST_AUTO_TEST_CASE(relu_and_sigmoid_match_reference) {
  Generator gen(8);
  for (const Shape& s : std::vector<Shape>{{2, 3, 7, 5}, {1, 1, 9, 9}, {13}, {4, 17}, {2, 16, 5, 3}}) {
    Tensor x = Tensor::uniform(s, gen, -20.f, 20.f);
    for (bool grad : {false, true}) {
      check(relu(Var(x, grad)), ref::relu(vec(x), s), kExact, fmt::format("relu x{} ({})", to_string(s), mode(grad)));
      check(sigmoid(Var(x, grad)), ref::sigmoid(vec(x), s), tol_terms(1),
            fmt::format("sigmoid x{} ({})", to_string(s), mode(grad)));
    }
  }
}

BOOST_AUTO_TEST_CASE(add_and_mul_broadcast_match_reference) {
  const std::vector<std::pair<Shape, Shape>> pairs = {
      {{2, 3, 7, 5}, {2, 3, 7, 5}},  // same shape
      {{2, 3, 7, 5}, {2, 3, 1, 1}},  // CBAM channel gate
      {{2, 3, 7, 5}, {2, 1, 7, 5}},  // CBAM spatial gate
      {{2, 3, 1, 1}, {2, 3, 9, 9}},  // broadcast on the left operand
      {{2, 1, 9, 7}, {2, 4, 1, 1}},  // both operands broadcast
      {{1, 5, 1, 1}, {3, 5, 4, 4}},  {{4, 1}, {1, 5}}, {{7}, {7}}, {{6}, {1}}, {{3, 1, 5}, {3, 4, 1}},
  };
  Generator gen(9);
  for (const auto& [sa, sb] : pairs) {
    Tensor a = Tensor::randn(sa, gen), b = Tensor::randn(sb, gen);
    const std::vector<float> a0 = vec(a), b0 = vec(b);
    for (bool grad : {false, true}) {
      const std::string shapes = fmt::format("{} and {} ({})", to_string(sa), to_string(sb), mode(grad));
      check(add(Var(a, grad), Var(b, grad)), ref::add(a0, sa, b0, sb), tol_terms(1), "add " + shapes);
      check(mul(Var(a, grad), Var(b, grad)), ref::mul(a0, sa, b0, sb), tol_terms(1), "mul " + shapes);
      check(Var(a, grad) + Var(b, grad), ref::add(a0, sa, b0, sb), tol_terms(1), "operator+ " + shapes);
      check(Var(a, grad) * Var(b, grad), ref::mul(a0, sa, b0, sb), tol_terms(1), "operator* " + shapes);
      BOOST_TEST((vec(a) == a0 && vec(b) == b0), "add/mul modified an input: " << shapes);
    }
  }
}

BOOST_AUTO_TEST_CASE(add_relu_matches_reference) {
  Generator gen(19);
  for (const Shape& s : std::vector<Shape>{{2, 3, 7, 5}, {4, 16, 3, 3}, {7}}) {
    Tensor a = Tensor::randn(s, gen), b = Tensor::randn(s, gen);
    for (bool grad : {false, true}) {
      const std::string what = fmt::format("add_relu {} ({})", to_string(s), mode(grad));
      check(add_relu(Var(a, grad), Var(b, grad)), ref::relu(ref::add(vec(a), s, vec(b), s)), tol_terms(1), what);
    }
  }
  BOOST_CHECK_THROW(add_relu(Var(Tensor::zeros({2, 3})), Var(Tensor::zeros({2, 1}))), Error);
}

BOOST_AUTO_TEST_CASE(concat_channels_matches_reference) {
  Generator gen(10);
  const std::vector<std::vector<Shape>> lists = {
      {{2, 3, 7, 5}, {2, 1, 7, 5}, {2, 4, 7, 5}}, {{1, 16, 9, 9}}, {{3, 1, 4, 4}, {3, 1, 4, 4}}, {{2, 20, 3, 5}, {2, 7, 3, 5}}};
  for (const auto& shapes : lists)
    for (bool grad : {false, true}) {
      std::vector<Var> xs;
      std::vector<std::vector<float>> vals;
      std::string desc;
      for (const Shape& s : shapes) {
        Tensor t = Tensor::randn(s, gen);
        xs.emplace_back(t, grad);
        vals.push_back(vec(t));
        desc += to_string(s) + " ";
      }
      check(concat_channels(xs), ref::concat_channels(vals, shapes), kExact,
            fmt::format("concat_channels {}({})", desc, mode(grad)));
    }
}

BOOST_AUTO_TEST_CASE(channel_mean_and_max_match_reference) {
  Generator gen(11);
  for (const Shape& s : std::vector<Shape>{{2, 3, 7, 5}, {1, 16, 9, 9}, {3, 1, 4, 4}, {2, 20, 5, 3}, {4, 64, 14, 14}}) {
    Tensor x = Tensor::randn(s, gen);
    for (bool grad : {false, true}) {
      check(channel_mean(Var(x, grad)), ref::channel_mean(vec(x), s), tol_terms(s[1]),
            fmt::format("channel_mean x{} ({})", to_string(s), mode(grad)));
      check(channel_max(Var(x, grad)), ref::channel_max(vec(x), s), kExact,
            fmt::format("channel_max x{} ({})", to_string(s), mode(grad)));
    }
  }
}

BOOST_AUTO_TEST_CASE(reshape_and_flatten_preserve_values_and_order) {
  Generator gen(12);
  Tensor x = Tensor::randn({2, 3, 4, 5}, gen);
  const std::vector<float> xv = vec(x);
  const std::vector<std::pair<Shape, Shape>> cases = {
      {{6, 20}, {6, 20}}, {{-1, 5}, {24, 5}}, {{120}, {120}}, {{2, -1}, {2, 60}}, {{2, 3, 20}, {2, 3, 20}}, {{5, 4, 3, 2}, {5, 4, 3, 2}}};
  for (const auto& [req, want] : cases)
    for (bool grad : {false, true}) {
      Var y = reshape(Var(x, grad), req);
      check(y, {want, {xv.begin(), xv.end()}}, kExact, fmt::format("reshape to {} ({})", to_string(req), mode(grad)));
    }
  check(flatten(Var(x)), {{2, 60}, {xv.begin(), xv.end()}}, kExact, "flatten (2, 3, 4, 5)");
  const std::vector<float> mv = vec(Tensor::randn({7, 9}, gen));
  check(flatten(Var(Tensor::from_vector({7, 9}, mv))), {{7, 9}, {mv.begin(), mv.end()}}, kExact, "flatten (7, 9)");
  const std::vector<float> vv = vec(Tensor::randn({5}, gen));
  check(flatten(Var(Tensor::from_vector({5}, vv))), {{5, 1}, {vv.begin(), vv.end()}}, kExact, "flatten (5)");
}

BOOST_AUTO_TEST_CASE(softmax_cross_entropy_matches_reference) {
  struct Case {
    int64_t N, K;
    std::vector<float> weights;
    float smoothing, scale;
  };
  const std::vector<float> w7 = {1.f, 0.5f, 2.f, 3.f, 0.25f, 1.5f, 4.f};
  const std::vector<Case> cases = {
      {8, 7, {}, 0.f, 1.f},        {8, 7, w7, 0.f, 1.f},   {8, 7, {}, 0.1f, 1.f},
      {8, 7, w7, 0.1f, 1.f},       {1, 2, {}, 0.f, 1.f},   {5, 3, {0.f, 1.f, 2.f}, 0.2f, 1.f},
      {32, 7, w7, 0.05f, 30.f},    {13, 10, {}, 0.3f, 5.f},
  };
  Generator gen(13);
  for (const auto& c : cases) {
    Tensor z = Tensor::randn({c.N, c.K}, gen, 0.f, c.scale);
    std::vector<int> y(c.N);
    for (auto& t : y) t = static_cast<int>(gen.randint(c.K));
    if (!c.weights.empty() && c.weights[0] == 0.f) y[0] = 1;  // keep the target weight sum positive
    const double want = ref::softmax_cross_entropy(vec(z), c.N, c.K, y, c.weights, c.smoothing);
    for (bool grad : {false, true}) {
      Var loss = softmax_cross_entropy(Var(z, grad), y, {.class_weights = c.weights, .label_smoothing = c.smoothing});
      check_values(vec(loss), loss.shape(), {{}, {want}}, tol_terms(c.N * c.K),
                   fmt::format("softmax_cross_entropy N {} K {} weights {} smoothing {} logit scale {} ({})", c.N, c.K,
                               c.weights.size(), c.smoothing, c.scale, mode(grad)));
      BOOST_TEST(loss.value().numel() == 1);
    }
  }
  // Logit offsets: the loss of the shifted logits, computed by the reference on shifted input.
  const std::vector<float> offsets = {-2.f, 0.5f, -1.f, -3.5f, 0.f, 1.25f, -0.75f};
  for (const auto& c : cases) {
    if (c.K != 7) continue;
    Tensor z = Tensor::randn({c.N, c.K}, gen, 0.f, c.scale);
    std::vector<int> y(c.N);
    for (auto& t : y) t = static_cast<int>(gen.randint(c.K));
    std::vector<float> shifted = vec(z);
    for (int64_t i = 0; i < c.N; ++i)
      for (int64_t k = 0; k < c.K; ++k) shifted[i * c.K + k] += offsets[k];
    const double want = ref::softmax_cross_entropy(shifted, c.N, c.K, y, c.weights, c.smoothing);
    const double plain = ref::softmax_cross_entropy(vec(z), c.N, c.K, y, c.weights, c.smoothing);
    BOOST_TEST(std::abs(want - plain) > 1e-3);  // the offsets change the loss
    Var loss = softmax_cross_entropy(
        Var(z, true), y, {.class_weights = c.weights, .label_smoothing = c.smoothing, .logit_offsets = offsets});
    check_values(vec(loss), loss.shape(), {{}, {want}}, tol_terms(c.N * c.K),
                 fmt::format("softmax_cross_entropy with logit offsets N {} K {} weights {} smoothing {}", c.N, c.K,
                             c.weights.size(), c.smoothing));
    BOOST_TEST(vec(z) != shifted);  // the input logits are left alone
  }
}

BOOST_AUTO_TEST_CASE(dropout_eval_is_identity) {
  Generator gen(14);
  Tensor x = Tensor::randn({2, 3, 7, 5}, gen);
  const std::vector<float> xv = vec(x);
  check(dropout(Var(x), 0.5f, false), {x.shape(), {xv.begin(), xv.end()}}, kExact, "dropout p 0.5 eval");
  check(dropout(Var(x, true), 0.3f, false), {x.shape(), {xv.begin(), xv.end()}}, kExact, "dropout p 0.3 eval (grad)");
  check(dropout(Var(x), 0.f, true), {x.shape(), {xv.begin(), xv.end()}}, kExact, "dropout p 0 training");
}

BOOST_AUTO_TEST_CASE(dropout_training_mask_statistics) {
  // Every output is 0 or x/(1-p) (x > 0, so a zero means "dropped"); the dropped fraction is within
  // 5 standard deviations sqrt(p(1-p)/n) of p. Survivors: f32 x * (1/(1-p)) vs double x/(1-p), two
  // f32 roundings -> rtol 1e-6.
  Generator gen(15);
  const Shape s = {16, 32, 15, 17};  // 130560 elements: large enough for the threaded loop
  Tensor x = Tensor::uniform(s, gen, 0.5f, 1.5f);
  const std::vector<float> xv = vec(x);
  manual_seed(99);
  for (float p : {0.1f, 0.5f, 0.8f}) {
    const std::vector<float> y = vec(dropout(Var(x), p, true));
    BOOST_TEST_REQUIRE(y.size() == xv.size());
    size_t zeros = 0, wrong = 0;
    for (size_t i = 0; i < y.size(); ++i) {
      if (y[i] == 0.f) {
        ++zeros;
        continue;
      }
      const double want = xv[i] / (1.0 - static_cast<double>(p));
      if (!(std::abs(y[i] - want) <= 1e-6 * want)) ++wrong;
    }
    const double n = static_cast<double>(y.size()), frac = zeros / n, sd = std::sqrt(p * (1.0 - p) / n);
    BOOST_TEST(wrong == 0u, "dropout p " << p << ": " << wrong << " survivors are not x/(1-p)");
    BOOST_TEST(std::abs(frac - p) <= 5 * sd, "dropout p " << p << ": dropped fraction " << frac << ", sd " << sd);
  }
}

BOOST_AUTO_TEST_CASE(dropout_reproducible_with_manual_seed) {
  Generator gen(16);
  Tensor x = Tensor::uniform({8, 16, 9, 9}, gen, 0.5f, 1.5f);
  manual_seed(1234);
  const std::vector<float> a = vec(dropout(Var(x), 0.5f, true));
  const std::vector<float> a_next = vec(dropout(Var(x), 0.5f, true));
  manual_seed(1234);
  const std::vector<float> b = vec(dropout(Var(x, true), 0.5f, true));
  const std::vector<float> b_next = vec(dropout(Var(x), 0.5f, true));
  manual_seed(1235);
  const std::vector<float> c = vec(dropout(Var(x), 0.5f, true));
  BOOST_TEST((a == b), "same seed must reproduce the same mask");
  BOOST_TEST((a_next == b_next), "same seed must reproduce the second mask too");
  BOOST_TEST((a != a_next), "consecutive calls must draw fresh masks");
  BOOST_TEST((a != c), "another seed must give another mask");
}

BOOST_AUTO_TEST_CASE(dropout_independent_of_thread_count) {
  Generator gen(17);
  Tensor x = Tensor::uniform({16, 32, 15, 17}, gen, 0.5f, 1.5f);  // above the threaded-loop threshold
  const int saved = num_threads();
  set_num_threads(1);
  manual_seed(77);
  const std::vector<float> one = vec(dropout(Var(x), 0.3f, true));
  set_num_threads(2);
  manual_seed(77);
  const std::vector<float> two = vec(dropout(Var(x), 0.3f, true));
  set_num_threads(saved);
  BOOST_TEST((one == two), "dropout with 1 and 2 threads must give identical outputs");
}

BOOST_AUTO_TEST_CASE(ops_accept_blocked_layout_inputs) {
  // Inputs in oneDNN blocked layouts: conv2d outputs (whatever layout oneDNN picked; reported, not
  // asserted) and tensors reordered explicitly to nChw16c / nChw8c (blocked for certain; C = 20 is
  // padded to 32 / 24 channels). Every op's result must equal the reference on the plain values.
  using tag = dnnl::memory::format_tag;
  Generator gen(18);
  for (int64_t OC : {16, 20}) {
    const Shape xs = {2, 3, 9, 9}, ws = {OC, 3, 3, 3};
    Tensor cx = Tensor::randn(xs, gen), cw = Tensor::randn(ws, gen);
    Tensor conv_out = conv2d(Var(cx), Var(cw), Var(), {.pad = 1}).value();
    BOOST_TEST_MESSAGE("conv2d output (2, " << OC << ", 9, 9) is_plain = " << conv_out.is_plain());
    Tensor plain = Tensor::randn({2, OC, 9, 9}, gen);
    const std::vector<std::pair<std::string, Tensor>> inputs = {
        {"conv2d output", conv_out}, {"nChw16c", blocked(plain, tag::nChw16c)}, {"nChw8c", blocked(plain, tag::nChw8c)}};
    for (const auto& [name, xb] : inputs) {
      const Shape s = xb.shape();
      const std::vector<float> x = vec(xb);
      const int64_t C = s[1], count = s[0] * s[2] * s[3];
      const std::string tagname = fmt::format("{} (2, {}, 9, 9), is_plain {}", name, OC, xb.is_plain());
      if (name != "conv2d output") BOOST_TEST(!xb.is_plain(), tagname << " should be blocked");
      for (bool grad : {false, true}) {
        const std::string what = tagname + ", " + mode(grad);
        Var v(xb, grad);
        check(relu(v), ref::relu(x, s), kExact, "relu " + what);
        check(sigmoid(v), ref::sigmoid(x, s), tol_terms(1), "sigmoid " + what);
        check(max_pool2d(v, {.kernel = 3, .stride = 2, .pad = 1}), ref::max_pool2d(x, s, 3, 2, 1), kExact,
              "max_pool2d " + what);
        check(avg_pool2d(v, {.kernel = 3, .stride = 2, .pad = 1, .count_include_pad = false}),
              ref::avg_pool2d(x, s, 3, 2, 1, false), tol_terms(9), "avg_pool2d " + what);
        check(global_avg_pool2d(v), ref::global_avg_pool2d(x, s), tol_terms(81), "global_avg_pool2d " + what);
        check(global_max_pool2d(v), ref::global_max_pool2d(x, s), kExact, "global_max_pool2d " + what);

        Tensor w = Tensor::uniform({C}, gen, 0.5f, 1.5f), b = Tensor::randn({C}, gen);
        Tensor rm = Tensor::zeros({C}), rv = Tensor::full({C}, 1.f);
        check(batch_norm2d(v, Var(w, grad), Var(b, grad), rm, rv, {.training = true}),
              ref::batch_norm2d_train(x, s, vec(w), vec(b), 1e-5), tol_terms(count), "batch_norm2d train " + what);
        std::vector<double> want_rm(C, 0.0), want_rv(C, 1.0);
        ref::batch_norm2d_update_running(x, s, 0.1, want_rm, want_rv);
        check_values(vec(rm), {C}, {{C}, want_rm}, tol_terms(count), "batch_norm2d running_mean " + what);
        check_values(vec(rv), {C}, {{C}, want_rv}, tol_terms(count), "batch_norm2d running_var " + what);
        check(batch_norm2d(v, Var(w, grad), Var(b, grad), rm, rv, {.training = false}),
              ref::batch_norm2d_eval(x, s, vec(rm), vec(rv), vec(w), vec(b), 1e-5), tol_terms(1),
              "batch_norm2d eval " + what);
        Tensor rm2 = Tensor::zeros({C}), rv2 = Tensor::full({C}, 1.f);
        check(batch_norm2d(v, Var(w, grad), Var(b, grad), rm2, rv2, {.training = true, .relu = true}),
              ref::relu(ref::batch_norm2d_train(x, s, vec(w), vec(b), 1e-5)), tol_terms(count),
              "batch_norm2d+relu train " + what);
        check(batch_norm2d(v, Var(w, grad), Var(b, grad), rm, rv, {.training = false, .relu = true}),
              ref::relu(ref::batch_norm2d_eval(x, s, vec(rm), vec(rv), vec(w), vec(b), 1e-5)), tol_terms(1),
              "batch_norm2d+relu eval " + what);

        Tensor other = Tensor::randn(s, gen), gate_c = Tensor::randn({2, C, 1, 1}, gen),
               gate_s = Tensor::randn({2, 1, 9, 9}, gen);
        const std::vector<float> o = vec(other);
        check(add(v, v), ref::add(x, s, x, s), tol_terms(1), "add blocked+blocked " + what);
        check(add(v, Var(other)), ref::add(x, s, o, s), tol_terms(1), "add blocked+plain " + what);
        check(add(Var(other), v), ref::add(o, s, x, s), tol_terms(1), "add plain+blocked " + what);
        check(add(v, Var(blocked(other, tag::nChw8c))), ref::add(x, s, o, s), tol_terms(1),
              "add blocked+nChw8c " + what);
        check(add(v, Var(gate_c)), ref::add(x, s, vec(gate_c), gate_c.shape()), tol_terms(1),
              "add blocked+(N,C,1,1) " + what);
        check(add_relu(v, v), ref::relu(ref::add(x, s, x, s)), tol_terms(1), "add_relu blocked+blocked " + what);
        check(add_relu(v, Var(other)), ref::relu(ref::add(x, s, o, s)), tol_terms(1), "add_relu blocked+plain " + what);
        check(add_relu(Var(other), v), ref::relu(ref::add(o, s, x, s)), tol_terms(1), "add_relu plain+blocked " + what);
        check(add_relu(v, Var(blocked(other, tag::nChw8c))), ref::relu(ref::add(x, s, o, s)), tol_terms(1),
              "add_relu blocked+nChw8c " + what);
        check(mul(v, v), ref::mul(x, s, x, s), tol_terms(1), "mul blocked*blocked " + what);
        check(mul(v, Var(other)), ref::mul(x, s, o, s), tol_terms(1), "mul blocked*plain " + what);
        check(mul(Var(other), v), ref::mul(o, s, x, s), tol_terms(1), "mul plain*blocked " + what);
        check(mul(v, Var(gate_c)), ref::mul(x, s, vec(gate_c), gate_c.shape()), tol_terms(1),
              "mul blocked*(N,C,1,1) " + what);
        check(mul(v, Var(gate_s)), ref::mul(x, s, vec(gate_s), gate_s.shape()), tol_terms(1),
              "mul blocked*(N,1,H,W) " + what);
        BOOST_TEST((vec(xb) == x), "an op modified its blocked input: " << what);

        check(channel_max(v), ref::channel_max(x, s), kExact, "channel_max " + what);
        check(channel_mean(v), ref::channel_mean(x, s), tol_terms(C), "channel_mean " + what);
        check(concat_channels({v, Var(other), v}), ref::concat_channels({x, o, x}, {s, s, s}), kExact,
              "concat_channels " + what);
        check(flatten(v), {{s[0], C * 81}, {x.begin(), x.end()}}, kExact, "flatten " + what);

        // conv2d and linear consuming the blocked tensor.
        Tensor w2 = Tensor::randn({8, C, 3, 3}, gen), lw = Tensor::randn({5, C * 81}, gen);
        check(conv2d(v, Var(w2, grad), Var(), {.stride = 2, .pad = 1}),
              ref::conv2d(x, s, vec(w2), w2.shape(), {}, 2, 1, 1, 1), tol_terms(C * 9), "conv2d " + what);
        check(linear(flatten(v), Var(lw, grad)), ref::linear(x, s[0], C * 81, vec(lw), 5, {}), tol_terms(C * 81),
              "linear(flatten) " + what);

        // Dropout draws the same mask for the same seed whatever the input layout.
        manual_seed(5);
        const std::vector<float> dp = vec(dropout(Var(Tensor::from_vector(s, x)), 0.5f, true));
        manual_seed(5);
        check(dropout(v, 0.5f, true), {s, {dp.begin(), dp.end()}}, kExact, "dropout " + what);
      }
    }
  }
}
