// Core behaviour: tensors and layouts, autograd semantics (accumulation, graph freeing, no_grad),
// clear errors on misuse, determinism, the primitive cache, the SGD update rule and weight averaging.
#define BOOST_TEST_MODULE core
#include <boost/test/unit_test.hpp>

#include <cmath>
#include <cstring>
#include <memory>
#include <string>

#include "framework/dnnl/context.h"
#include "framework/ops.h"
#include "framework/nn/layers.h"
#include "framework/optim/ema.h"
#include "framework/optim/sgd.h"
#include "framework/random.h"
#include "testing.h"

using namespace dermis;

using testing::expect_error;

BOOST_AUTO_TEST_CASE(tensor_basics) {
  Tensor t = Tensor::from_vector({2, 3}, {1, 2, 3, 4, 5, 6});
  BOOST_TEST(t.numel() == 6);
  BOOST_TEST(t.is_plain());
  Tensor r = t.reshape({3, -1});
  BOOST_TEST(r.dim(1) == 2);
  BOOST_TEST(r.shares_storage(t));
  BOOST_TEST(Tensor::zeros({4}).to_vector() == std::vector<float>(4, 0.f));
  expect_error([] { Tensor::empty({2, 0}); }, "every dimension must be positive");
  expect_error([&] { t.reshape({4, -1}); }, "cannot infer");
  expect_error([&] { t.item(); }, "one-element");
}

BOOST_AUTO_TEST_CASE(blocked_layout_round_trip) {
  Generator g(1);
  Tensor x = Tensor::randn({2, 5, 3, 4}, g);  // 5 channels: nChw16c pads to 16
  auto blocked = dnnl::memory::desc({2, 5, 3, 4}, dnnl::memory::data_type::f32, dnnl::memory::format_tag::nChw16c);
  Tensor b = x.to_desc(blocked);
  BOOST_TEST(!b.is_plain());
  BOOST_TEST(b.bytes() > x.bytes());
  BOOST_TEST(b.to_vector() == x.to_vector());
  expect_error([&] { b.data(); }, "plain layout");
  // add_ across layouts reorders the other operand
  Tensor s = b.clone();
  s.add_(x);
  auto v = s.to_vector(), xv = x.to_vector();
  for (size_t i = 0; i < v.size(); ++i) BOOST_TEST(v[i] == 2 * xv[i]);
}

BOOST_AUTO_TEST_CASE(fan_out_accumulates) {
  // y = sum(x * x + x) -> dy/dx = 2x + 1
  Var x = Var::parameter(Tensor::from_vector({1, 1, 1, 3}, {1.f, -2.f, 0.5f}));
  Var y = global_avg_pool2d(x * x + x);  // (1,1,1,1), mean over 3 values
  y.backward();
  auto g = x.grad().to_vector();
  const float expect[] = {3.f / 3, -3.f / 3, 2.f / 3};
  for (int i = 0; i < 3; ++i) BOOST_TEST(g[i] == expect[i], boost::test_tools::tolerance(1e-6f));
  // A second backward pass through a new graph adds to the existing gradient.
  Var y2 = global_avg_pool2d(x * x + x);
  y2.backward();
  g = x.grad().to_vector();
  for (int i = 0; i < 3; ++i) BOOST_TEST(g[i] == 2 * expect[i], boost::test_tools::tolerance(1e-6f));
}

BOOST_AUTO_TEST_CASE(graph_is_freed_after_backward) {
  Generator g(2);
  Var x = Var::parameter(Tensor::randn({2, 3, 4, 4}, g));
  Var w = Var::parameter(Tensor::randn({4, 3, 3, 3}, g));
  Var h = conv2d(x, w, {}, {.pad = 1});
  std::weak_ptr<Node> hidden = h.node();
  Var y = global_avg_pool2d(relu(h));
  Var loss = flatten(y);
  h = Var();  // only the graph holds the conv node now
  BOOST_TEST(!hidden.expired());
  loss.backward(Tensor::full(loss.shape(), 1.f));
  BOOST_TEST(hidden.expired());  // intermediate nodes and their saved tensors are gone
  BOOST_TEST(loss.node()->inputs.empty());
  BOOST_TEST(x.grad().defined());
  BOOST_TEST(w.grad().defined());
}

BOOST_AUTO_TEST_CASE(no_grad_records_nothing) {
  Generator g(3);
  Var x = Var::parameter(Tensor::randn({2, 3}, g));
  {
    NoGrad ng;
    Var y = relu(x);
    BOOST_TEST(!y.requires_grad());
    BOOST_TEST(y.node()->inputs.empty());
  }
  Var y = relu(x);
  BOOST_TEST(y.requires_grad());
  Var c = Var(Tensor::randn({2, 3}, g));  // constant
  BOOST_TEST(!relu(c).requires_grad());
  BOOST_TEST(!x.detach().requires_grad());
}

BOOST_AUTO_TEST_CASE(long_chain_backward_and_teardown) {
  // 20000 nodes deep: iterative backward and iterative node release, no stack overflow.
  Var x = Var::parameter(Tensor::full({4}, 1.f));
  Var y = x;
  for (int i = 0; i < 20000; ++i) y = y + x;
  Var s = reshape(y, {1, 4});
  s.backward(Tensor::full({1, 4}, 1.f));
  BOOST_TEST(x.grad().to_vector() == std::vector<float>(4, 20001.f));
  Var z = x;
  for (int i = 0; i < 20000; ++i) z = z + x;
  z = Var();  // dropped without backward
}

BOOST_AUTO_TEST_CASE(misuse_gets_clear_errors) {
  Generator g(4);
  Var x = Var::parameter(Tensor::randn({2, 3, 8, 8}, g));
  Var w = Var::parameter(Tensor::randn({4, 5, 3, 3}, g));
  expect_error([&] { conv2d(x, w); }, "channel mismatch");
  expect_error([&] { conv2d(Var(Tensor::randn({3, 8, 8}, g)), w); }, "must be 4-D");
  expect_error([&] { conv2d(x, Var(Tensor::randn({4, 3, 9, 9}, g))); }, "too small");
  expect_error([&] { x + Var(Tensor::randn({2, 4, 8, 8}, g)); }, "do not broadcast");
  expect_error([&] { x * Var(Tensor::randn({2, 3, 8}, g)); }, "same rank");
  expect_error([&] { linear(Var(Tensor::randn({2, 5}, g)), Var(Tensor::randn({3, 6}, g))); }, "5 features");
  expect_error([&] { linear(x, Var(Tensor::randn({3, 6}, g))); }, "flatten");
  expect_error([&] { relu(x).backward(); }, "scalar output");
  expect_error([&] { softmax_cross_entropy(Var(Tensor::randn({2, 3}, g)), {0, 3}); }, "outside [0, 3)");
  expect_error([&] { softmax_cross_entropy(Var(Tensor::randn({2, 3}, g)), {0}); }, "1 targets for 2 rows");
  expect_error([&] { softmax_cross_entropy(Var(Tensor::randn({2, 3}, g)), {0, 1}, {.logit_offsets = {1.f}}); },
               "1 logit offsets for 3 classes");
  Tensor rm = Tensor::zeros({4}), rv = Tensor::zeros({4});
  expect_error([&] { batch_norm2d(x, Var(Tensor::zeros({4})), Var(Tensor::zeros({4})), rm, rv); }, "3 channels");
  expect_error([&] { max_pool2d(x, {.kernel = 3, .pad = 3}); }, "smaller than the kernel");
  expect_error([&] { dropout(x, 1.5f, true); }, "[0, 1)");
  expect_error([&] { concat_channels({x, Var(Tensor::randn({2, 3, 4, 8}, g))}); }, "must match");
  expect_error([&] { reshape(x, {7, -1}); }, "cannot infer");
  expect_error([] { set_num_threads(0); }, "at least one thread");
}

namespace {
std::vector<float> run_small_step(int threads) {
  set_num_threads(threads);
  Generator g(5);
  Var x = Var(Tensor::randn({4, 3, 12, 12}, g));
  Var w1 = Var::parameter(Tensor::randn({16, 3, 3, 3}, g, 0, 0.3f));
  Var w2 = Var::parameter(Tensor::randn({5, 16}, g, 0, 0.3f));
  Tensor rm = Tensor::zeros({16}), rv = Tensor::full({16}, 1.f);
  Var gamma = Var::parameter(Tensor::full({16}, 1.f)), beta = Var::parameter(Tensor::zeros({16}));
  manual_seed(17);
  Var h = relu(batch_norm2d(conv2d(x, w1, {}, {.stride = 2, .pad = 1}), gamma, beta, rm, rv));
  h = dropout(flatten(global_avg_pool2d(h)), 0.2f, true);
  Var loss = softmax_cross_entropy(linear(h, w2), {0, 1, 2, 4});
  loss.backward();
  std::vector<float> out = {loss.item()};
  for (auto& v : {w1, w2, gamma, beta})
    for (float f : v.grad().to_vector()) out.push_back(f);
  return out;
}
}  // namespace

BOOST_AUTO_TEST_CASE(deterministic_for_fixed_seed_and_threads) {
  const int saved = num_threads();
  for (int t : {1, 2}) {
    auto a = run_small_step(t), b = run_small_step(t);
    BOOST_TEST(a == b, "two runs with " << t << " thread(s) differ");
  }
  set_num_threads(saved);
}

BOOST_AUTO_TEST_CASE(primitive_cache_reuses) {
  Generator g(6);
  Var x = Var::parameter(Tensor::randn({2, 8, 10, 10}, g));
  Var w = Var::parameter(Tensor::randn({8, 8, 3, 3}, g));
  auto step = [&] {
    Var y = flatten(global_avg_pool2d(relu(conv2d(x, w, {}, {.pad = 1}))));
    y.backward(Tensor::full(y.shape(), 1.f));
  };
  step();
  const size_t n = dnnl_ctx::cache_size();
  step();
  step();
  BOOST_TEST(dnnl_ctx::cache_size() == n);
}

BOOST_AUTO_TEST_CASE(primitive_cache_fills_up_in_the_middle_of_a_step) {
  // A full cache starts afresh, while ops may be holding entries (a convolution holds its primitive
  // across the reorders of its inputs, which insert entries of their own). For every insert of a
  // forward + backward pass, the cache is filled so that it overflows exactly there: the step must
  // give the values it gives with room to spare, and (under ./dermis sanitize) touch no freed memory.
  Generator g(7);
  const Tensor x0 = Tensor::randn({2, 16, 9, 9}, g), w0 = Tensor::randn({16, 16, 3, 3}, g, 0.f, 0.2f);
  const Tensor bn_w = Tensor::uniform({16}, g, 0.5f, 1.5f), bn_b = Tensor::randn({16}, g);
  const Tensor fc_w = Tensor::randn({5, 16}, g, 0.f, 0.3f), fc_b = Tensor::randn({5}, g);
  auto step = [&] {
    Var x = Var::parameter(x0.clone()), w = Var::parameter(w0.clone()), bw = Var::parameter(bn_w.clone()),
        bb = Var::parameter(bn_b.clone()), fw = Var::parameter(fc_w.clone()), fb = Var::parameter(fc_b.clone());
    Tensor rm = Tensor::zeros({16}), rv = Tensor::full({16}, 1.f);
    Var h = batch_norm2d(conv2d(x, w, {}, {.pad = 1, .relu = true}), bw, bb, rm, rv, {.relu = true});
    Var y = linear(flatten(global_avg_pool2d(max_pool2d(h, {.kernel = 3, .stride = 2, .pad = 1}))), fw, fb);
    y.backward(Tensor::full(y.shape(), 1.f));
    return std::vector<std::vector<float>>{y.value().to_vector(), x.grad().to_vector(), w.grad().to_vector(),
                                           bw.grad().to_vector(), fw.grad().to_vector(), rm.to_vector()};
  };
  dnnl_ctx::cache_clear();
  const auto want = step();
  const size_t inserts = dnnl_ctx::cache_size(), cap = dnnl_ctx::cache_capacity();
  BOOST_TEST_REQUIRE(inserts >= 8u, "a step inserted only " << inserts << " cache entries");
  BOOST_TEST_MESSAGE("a step inserts " << inserts << " cache entries; the cache holds " << cap);
  for (size_t at = 1; at <= inserts; ++at) {
    dnnl_ctx::cache_clear();
    // cap - at + 1 entries: inserts 1 .. at-1 fill the cache, insert `at` finds it full.
    for (size_t i = 0; dnnl_ctx::cache_size() < cap - at + 1; ++i)
      dnnl_ctx::cache_get(dnnl_ctx::Key("filler").add(static_cast<int64_t>(i)), [] { return std::make_shared<int>(0); });
    const auto got = step();
    BOOST_TEST(dnnl_ctx::cache_size() <= inserts, "the cache did not start afresh at insert " << at);  // fillers gone
    for (size_t k = 0; k < want.size(); ++k) BOOST_TEST(got[k] == want[k], "output " << k << ", cache full at insert " << at);
  }
  dnnl_ctx::cache_clear();
}

// Cache keys tell apart everything that makes another primitive: each field, the layout of a
// memory descriptor (same dims, other strides or blocking), the op's name and the thread count.
BOOST_AUTO_TEST_CASE(primitive_cache_keys_are_exact) {
  using dnnl::memory;
  using dnnl_ctx::Key;
  const memory::dims d{2, 16, 4, 4};
  const memory::desc nchw(d, memory::data_type::f32, memory::format_tag::nchw),
      nhwc(d, memory::data_type::f32, memory::format_tag::nhwc),
      blocked(d, memory::data_type::f32, memory::format_tag::nChw16c),
      bf16(d, memory::data_type::bf16, memory::format_tag::nchw);
  const std::vector<Key> keys = {Key("conv")(nchw), Key("conv")(nhwc), Key("conv")(blocked), Key("conv")(bf16),
                                 Key("pool")(nchw), Key("conv")(nchw, 1), Key("conv")(nchw, 0.5f),
                                 Key("conv")(nchw, 0.25f), Key("conv")(Shape{2, 3}, Shape{4}),
                                 Key("conv")(Shape{2}, Shape{3, 4})};
  for (size_t i = 0; i < keys.size(); ++i)
    for (size_t j = 0; j < keys.size(); ++j)
      BOOST_TEST((keys[i] == keys[j]) == (i == j), "keys " << keys[i].text() << " and " << keys[j].text());
  BOOST_TEST((Key("conv")(nhwc, 3, true) == Key("conv")(nhwc, 3, true)));
  BOOST_TEST(Key("conv")(nhwc, 3).hash() == Key("conv")(nhwc, 3).hash());
  const int saved = num_threads();
  set_num_threads(1);
  const Key one = Key("conv")(nchw);
  set_num_threads(2);
  BOOST_TEST(!(one == Key("conv")(nchw)), "the thread count is part of the key");
  set_num_threads(saved);
  BOOST_TEST(Key("conv")(7, 9).text().find("conv(threads") == 0);
}

BOOST_AUTO_TEST_CASE(sgd_matches_pytorch_rule) {
  // Two steps by hand with momentum 0.9, weight decay 0.1, and Nesterov on/off.
  for (bool nesterov : {false, true}) {
    Var w = Var::parameter(Tensor::from_vector({2}, {1.f, -2.f}));
    optim::SGD opt({w}, {.lr = 0.5f, .momentum = 0.9f, .weight_decay = 0.1f, .nesterov = nesterov});
    double ref[2] = {1, -2}, buf[2] = {0, 0};
    const float grads[2][2] = {{0.3f, -0.1f}, {-0.2f, 0.4f}};
    for (int s = 0; s < 2; ++s) {
      w.set_grad(Tensor::from_vector({2}, {grads[s][0], grads[s][1]}));
      opt.step();
      for (int i = 0; i < 2; ++i) {
        const double d = grads[s][i] + 0.1 * ref[i];
        buf[i] = s == 0 ? d : 0.9 * buf[i] + d;
        ref[i] -= 0.5 * (nesterov ? d + 0.9 * buf[i] : buf[i]);
      }
      auto v = w.value().to_vector();
      for (int i = 0; i < 2; ++i) BOOST_TEST(v[i] == ref[i], boost::test_tools::tolerance(1e-5));
    }
  }
  expect_error([] { optim::SGD({}, {.lr = NAN}); }, "learning rate");
  expect_error([] { optim::SGD({}, {.lr = 0.1f, .nesterov = true}); }, "Nesterov");
}


BOOST_AUTO_TEST_CASE(weight_average_follows_formula) {
  // Parameters and buffers: shadow = d * shadow + (1 - d) * model, d = min(decay, (1 + t) / (10 + t)).
  nn::BatchNorm2d model(2), shadow(2);
  auto set = [](Tensor& t, float a, float b) {
    t.data()[0] = a;
    t.data()[1] = b;
  };
  set(model.weight.value(), 1.f, 2.f);
  set(model.running_var, 4.f, 8.f);
  optim::WeightAverage avg(model, shadow, 0.5);
  BOOST_TEST(shadow.weight.value().to_vector() == std::vector<float>({1.f, 2.f}));
  double w[2] = {1, 2}, v[2] = {4, 8};
  const float steps[3][2] = {{3.f, -1.f}, {0.f, 5.f}, {7.f, 7.f}};
  for (int t = 0; t < 3; ++t) {
    set(model.weight.value(), steps[t][0], steps[t][1]);
    set(model.running_var, 2 * steps[t][0], 2 * steps[t][1]);
    const double d = std::min(0.5, (1.0 + t) / (10.0 + t));
    BOOST_TEST(avg.current_decay() == d, boost::test_tools::tolerance(1e-12));
    avg.update(model);
    for (int i = 0; i < 2; ++i) {
      w[i] = d * w[i] + (1 - d) * steps[t][i];
      v[i] = d * v[i] + (1 - d) * 2 * steps[t][i];
      BOOST_TEST(shadow.weight.value().data()[i] == w[i], boost::test_tools::tolerance(1e-5));
      BOOST_TEST(shadow.running_var.data()[i] == v[i], boost::test_tools::tolerance(1e-5));
    }
  }
  BOOST_TEST(avg.updates() == 3);
  BOOST_TEST(model.weight.value().data()[0] == 7.f);  // the model itself is untouched
  expect_error([&] { optim::WeightAverage(model, shadow, 1.0); }, "decay");
  nn::BatchNorm2d other(3);
  expect_error([&] { optim::WeightAverage(model, other, 0.9); }, "");
}
