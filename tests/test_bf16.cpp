// bf16 mixed precision (AutocastBF16) on oneDNN's bf16 kernels: every op on the bf16 path matches
// its f32 result within bf16 rounding (forward and gradients; the f32 versions are checked against
// references and finite differences elsewhere), and training converges as in f32. Every case needs
// bf16 kernels (AVX-512; see framework/cpu.h) and is reported skipped on CPUs without them. The
// bf16 format itself (conversions, mixed-dtype adds) is tested on every CPU in test_bf16_format.
#define BOOST_TEST_MODULE bf16
#include <boost/test/unit_test.hpp>

#include <algorithm>
#include <cmath>
#include <functional>
#include <numeric>

#include "datasets/synthetic_tensors.h"
#include "framework/bf16.h"
#include "framework/optim/sgd.h"
#include "framework/random.h"
#include "models/cbam_small.h"
#include "models/resnet_cbam.h"
#include "synthetic_training.h"
#include "testing.h"

using namespace dermis;
using tag = dnnl::memory::format_tag;

namespace {
// max |a - b| / max(max |b|, tiny): errors relative to the tensor's scale, as bf16 rounding
// (8 significant bits: 2^-9 = 0.2% per rounding) is relative to magnitudes.
double rel_err(const std::vector<float>& a, const std::vector<float>& b) {
  BOOST_TEST_REQUIRE(a.size() == b.size());
  double scale = 1e-12, err = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    scale = std::max(scale, std::abs(static_cast<double>(b[i])));
    err = std::max(err, std::abs(static_cast<double>(a[i]) - b[i]));
  }
  return err / scale;
}

double l2_rel(const std::vector<float>& a, const std::vector<float>& b) {
  double num = 0, den = 1e-30;
  for (size_t i = 0; i < a.size(); ++i) num += (double(a[i]) - b[i]) * (double(a[i]) - b[i]), den += double(b[i]) * b[i];
  return std::sqrt(num / den);
}

// A tensor whose values are exactly representable in bf16, in oneDNN's nChw16c layout (as a
// convolution hands it over), as bf16 and as f32.
std::pair<Tensor, Tensor> bf16_exact(const Shape& s, Generator& g) {
  using dt = dnnl::memory::data_type;
  const dnnl::memory::dims d(s.begin(), s.end());
  Tensor b = Tensor::randn(s, g).to_desc(dnnl::memory::desc(d, dt::bf16, tag::nChw16c));
  return {b, b.to_dtype(DType::f32)};
}

// op(x, params) with x the same values in bf16 and in f32: output and every gradient agree within
// `tol` of their largest magnitude. Differences come only from bf16 rounding inside the op.
void compare_op(const std::string& name, const Shape& xs, const std::vector<Tensor>& params,
                const std::function<Var(const Var&, const std::vector<Var>&)>& f, Generator& g, double tol = 0.02) {
  auto [xb, xf] = bf16_exact(xs, g);
  std::vector<float> out[2];
  std::vector<std::vector<float>> grads[2];
  for (int b = 0; b < 2; ++b) {
    Var x(b ? xb : xf, true);
    std::vector<Var> ps;
    for (auto& p : params) ps.push_back(Var::parameter(p.clone()));
    Var y = f(x, ps);
    if (b == 1) BOOST_TEST((y.value().dtype() == DType::bf16 || y.ndim() == 2), name << ": bf16 input must give bf16 output");
    Generator gd(7);
    y.backward(Tensor::randn(y.shape(), gd).to_dtype(DType::bf16).to_dtype(DType::f32));  // bf16-exact dy
    out[b] = y.value().to_vector();
    grads[b].push_back(x.grad().to_vector());
    for (auto& p : ps) {
      BOOST_TEST((p.grad().dtype() == DType::f32), name << ": parameter gradients must be f32");
      grads[b].push_back(p.grad().to_vector());
    }
  }
  const double e = rel_err(out[1], out[0]);
  BOOST_TEST(e <= tol, name << ": bf16 output differs from f32 by " << e << " of its scale (limit " << tol << ")");
  for (size_t i = 0; i < grads[0].size(); ++i) {
    const double eg = rel_err(grads[1][i], grads[0][i]);
    BOOST_TEST(eg <= tol, name << ": gradient " << i << " differs by " << eg << " (limit " << tol << ")");
  }
  BOOST_TEST_MESSAGE(name << ": output error " << e);
}
}  // namespace

BOOST_AUTO_TEST_CASE(conv2d_in_bf16_matches_f32, *testing::needs_bf16()) {
  // f32 input and weights, converted by the autocast: errors from rounding x and w (2^-9 each)
  // summed over C*K*K terms stay within 1% of the output's scale.
  for (int stem = 0; stem < 2; ++stem) {
    Generator g(3);
    const Shape xs = stem ? Shape{2, 3, 32, 32} : Shape{4, 16, 9, 9};
    const Shape ws = stem ? Shape{16, 3, 7, 7} : Shape{24, 16, 3, 3};
    const Conv2dParams p = stem ? Conv2dParams{.stride = 2, .pad = 3} : Conv2dParams{.pad = 1};
    Tensor x = Tensor::randn(xs, g), w = Tensor::randn(ws, g, 0.f, 0.1f), b = Tensor::randn({ws[0]}, g);
    std::vector<float> out[2], gx[2], gw[2], gb[2];
    for (int bf = 0; bf < 2; ++bf) {
      Var vx = Var::parameter(x.clone()), vw = Var::parameter(w.clone()), vb = Var::parameter(b.clone());
      Var y;
      {
        AutocastBF16 ac(bf == 1);
        y = conv2d(vx, vw, vb, p);
      }
      BOOST_TEST(((y.value().dtype() == DType::bf16) == (bf == 1)));
      Generator gd(8);
      y.backward(Tensor::randn(y.shape(), gd));
      BOOST_TEST((vw.grad().dtype() == DType::f32 && vb.grad().dtype() == DType::f32));
      out[bf] = y.value().to_vector(), gx[bf] = vx.grad().to_vector(), gw[bf] = vw.grad().to_vector(),
      gb[bf] = vb.grad().to_vector();
    }
    const std::string name = stem ? "conv2d 7x7 stride 2 (stem)" : "conv2d 3x3";
    BOOST_TEST(rel_err(out[1], out[0]) < 0.01, name << " output " << rel_err(out[1], out[0]));
    BOOST_TEST(rel_err(gx[1], gx[0]) < 0.01, name << " dx " << rel_err(gx[1], gx[0]));
    BOOST_TEST(rel_err(gw[1], gw[0]) < 0.01, name << " dw " << rel_err(gw[1], gw[0]));
    BOOST_TEST(rel_err(gb[1], gb[0]) < 0.01, name << " db " << rel_err(gb[1], gb[0]));
  }
}

BOOST_AUTO_TEST_CASE(ops_after_a_bf16_convolution_match_f32, *testing::needs_bf16()) {
  Generator g(4);
  const Shape xs{4, 16, 9, 9};
  const int64_t C = 16, Cr = 4;
  Tensor rm = Tensor::zeros({C}), rv = Tensor::full({C}, 1.f), r1 = Tensor::zeros({1}), v1 = Tensor::full({1}, 1.f);
  const std::vector<Tensor> bn_params = {Tensor::uniform({C}, g, 0.5f, 1.5f), Tensor::randn({C}, g)};
  compare_op("relu", xs, {}, [](const Var& x, const std::vector<Var>&) { return relu(x); }, g);
  compare_op("sigmoid", xs, {}, [](const Var& x, const std::vector<Var>&) { return sigmoid(x); }, g);
  compare_op("batch_norm2d train", xs, bn_params,
             [&](const Var& x, const std::vector<Var>& p) { return batch_norm2d(x, p[0], p[1], rm, rv); }, g);
  compare_op("batch_norm2d+relu train", xs, bn_params,
             [&](const Var& x, const std::vector<Var>& p) { return batch_norm2d(x, p[0], p[1], rm, rv, {.relu = true}); }, g);
  compare_op("batch_norm2d+relu eval", xs, bn_params, [&](const Var& x, const std::vector<Var>& p) {
    return batch_norm2d(x, p[0], p[1], rm, rv, {.training = false, .relu = true});
  }, g);
  compare_op("max_pool2d", xs, {}, [](const Var& x, const std::vector<Var>&) {
    return max_pool2d(x, {.kernel = 3, .stride = 2, .pad = 1});
  }, g);
  compare_op("global_avg_pool2d + linear", xs, {Tensor::randn({7, C}, g, 0.f, 0.3f), Tensor::randn({7}, g)},
             [](const Var& x, const std::vector<Var>& p) { return linear(flatten(global_avg_pool2d(x)), p[0], p[1]); }, g);
  auto [ob, of] = bf16_exact(xs, g);
  compare_op("add_relu", xs, {}, [&, ob = ob, of = of](const Var& x, const std::vector<Var>&) {
    return add_relu(x, Var(x.value().dtype() == DType::bf16 ? ob : of));
  }, g);
  compare_op("add_relu x + x", xs, {}, [](const Var& x, const std::vector<Var>&) { return add_relu(x, x); }, g);
  compare_op("cbam", xs,
             {Tensor::randn({Cr, C}, g, 0.f, 0.3f), Tensor::randn({Cr}, g, 0.f, 0.1f), Tensor::randn({C, Cr}, g, 0.f, 0.3f),
              Tensor::randn({C}, g, 0.f, 0.1f), Tensor::randn({1, 2, 7, 7}, g, 0.f, 0.3f), Tensor::full({1}, 1.f),
              Tensor::zeros({1})},
             [&](const Var& x, const std::vector<Var>& p) {
               return cbam(x, CbamWeights{p[0], p[1], p[2], p[3], p[4], p[5], p[6]}, r1, v1);
             }, g);
}

BOOST_AUTO_TEST_CASE(resnet18_cbam_step_in_bf16_matches_f32, *testing::needs_bf16()) {
  // One forward and backward of resnet18_cbam at its real input size. A network at random init
  // amplifies small perturbations (ReLU masks and max-pool choices flip along 18 layers), so the
  // yardstick is f32 itself with the input perturbed by bf16's rounding (relative noise 2^-8):
  // bf16 must stay within twice that spread for the logits and every weight gradient.
  Generator g(4);
  const Tensor x = Tensor::randn({16, 3, 112, 112}, g);
  const std::vector<int> labels = {0, 3, 5, 6, 1, 2, 4, 0, 3, 5, 6, 1, 2, 4, 0, 1};
  struct Out {
    std::vector<float> logits;
    std::vector<std::pair<std::string, std::vector<float>>> grads;
  };
  auto run = [&](bool bf16, float noise) {
    manual_seed(5);
    auto m = models::resnet18_cbam(7);
    Tensor xin = x.clone();
    if (noise > 0) {
      Generator gp(77);
      const Tensor n = Tensor::randn(x.shape(), gp, 0.f, noise);
      for (int64_t i = 0; i < xin.numel(); ++i) xin.data()[i] *= 1.f + n.data()[i];
    }
    Var out, loss;
    {
      AutocastBF16 ac(bf16);
      out = m->forward(Var(xin));
      loss = softmax_cross_entropy(out, labels);
    }
    loss.backward();
    Out o{out.value().to_vector(), {}};
    for (auto& [name, v] : m->named_parameters()) {
      BOOST_TEST_REQUIRE((v.grad().dtype() == DType::f32), name << ": parameter gradients must be f32");
      if (name.find("weight") != std::string::npos) o.grads.emplace_back(name, v.grad().to_vector());
    }
    return o;
  };
  const Out ref = run(false, 0.f), perturbed = run(false, 1.f / 256), half = run(true, 0.f);
  const double base_logits = l2_rel(perturbed.logits, ref.logits), bf_logits = l2_rel(half.logits, ref.logits);
  BOOST_TEST_MESSAGE("logits: bf16 " << bf_logits << ", perturbed f32 " << base_logits);
  BOOST_TEST(bf_logits <= std::max(2 * base_logits, 0.01));
  // Per weight tensor: bf16's error over the f32 spread. Measured here: about 1.4x for most tensors,
  // up to 2.3x (a CBAM MLP in the last block). Scalars (the spatial gates' BN weight, whose
  // gradient is a sum over every pixel that nearly cancels while the weight is at its zero init)
  // are left out: rounding noise that does not move with the input dominates them.
  std::vector<double> ratios;
  for (size_t k = 0; k < ref.grads.size(); ++k) {
    if (ref.grads[k].second.size() < 64) continue;
    const double b = std::max(l2_rel(perturbed.grads[k].second, ref.grads[k].second), 0.01);
    const double e = l2_rel(half.grads[k].second, ref.grads[k].second);
    ratios.push_back(e / b);
    BOOST_TEST(e <= 3 * b, ref.grads[k].first << ": bf16 gradient error " << e << " against the f32 spread " << b);
  }
  std::sort(ratios.begin(), ratios.end());
  BOOST_TEST_MESSAGE(ratios.size() << " weight tensors: bf16 error / f32 spread, median " << ratios[ratios.size() / 2]
                                   << ", max " << ratios.back());
  BOOST_TEST(ratios[ratios.size() / 2] <= 2.0);
}

BOOST_AUTO_TEST_CASE(training_converges_in_bf16, *testing::needs_bf16()) {
  // test_training's fixed-seed run and thresholds, under AutocastBF16.
  const testing::TrainOutcome r = testing::train_cbam_small_on_synthetic(true);
  BOOST_TEST_MESSAGE("bf16: mean loss, first 10 steps " << r.first_loss << ", last 10 steps " << r.last_loss);
  BOOST_TEST(r.last_loss < 0.6f * r.first_loss);
  BOOST_TEST_MESSAGE("bf16: held-out accuracy " << r.held_out_accuracy);
  BOOST_TEST(r.held_out_accuracy > 0.8);
}

