// Models and the module API: parameter counts against the PyTorch peer model, stable PyTorch-style
// names, initialisation, input sizes, train/eval, state round trips, MAC counts.
#define BOOST_TEST_MODULE models
#include <boost/test/unit_test.hpp>

#include <cmath>
#include <set>
#include <string>

#include "framework/io/safetensors.h"
#include "framework/profile.h"
#include "framework/random.h"
#include "models/cbam_small.h"
#include "models/registry.h"
#include "models/resnet_cbam.h"
#include "testing.h"

using namespace dermis;
using testing::expect_error;

namespace {
bool has(const std::vector<std::pair<std::string, Var>>& v, const std::string& n) {
  for (auto& [k, x] : v)
    if (k == n) return true;
  return false;
}
int64_t macs_at(nn::Module& m, int64_t h, int64_t w) {
  NoGrad ng;
  m.eval();
  Generator g(1);
  profile::MacCounter c;
  m.forward(Var(Tensor::randn({1, 3, h, w}, g)));
  return c.macs();
}
}  // namespace

BOOST_AUTO_TEST_CASE(parameter_counts_match_pytorch_peer) {
  // The counts of ../shared/peers/torch_cbam_bench.py (7 classes), recorded by make_cbam_golden.py.
  const auto f = io::load_safetensors(std::string(DERMIS_TEST_DATA) + "/golden/cbam_torch.safetensors");
  const int64_t peer_cbam = std::stoll(f.metadata.at("peer_resnet18_cbam_params"));
  const int64_t peer_plain = std::stoll(f.metadata.at("peer_resnet18_params"));
  BOOST_TEST(models::resnet18_cbam(7)->num_parameters() == peer_cbam);
  BOOST_TEST(models::resnet18(7)->num_parameters() == peer_plain);
}

BOOST_AUTO_TEST_CASE(names_follow_pytorch_conventions) {
  auto m = models::resnet18_cbam(7);
  auto p = m->named_parameters();
  for (const char* n : {"conv1.weight", "bn1.weight", "layer1.0.conv1.weight", "layer1.1.bn2.bias",
                        "layer2.0.downsample.0.weight", "layer2.0.downsample.1.weight",
                        "layer1.0.cbam.ChannelGate.mlp.1.weight", "layer4.1.cbam.ChannelGate.mlp.3.bias",
                        "layer3.1.cbam.SpatialGate.spatial.conv.weight", "layer4.1.cbam.SpatialGate.spatial.bn.weight",
                        "fc.weight", "fc.bias"})
    BOOST_TEST(has(p, n), "missing parameter " << n);
  std::set<std::string> names;
  for (auto& [n, v] : p) BOOST_TEST(names.insert(n).second, "duplicate name " << n);
  auto b = m->named_buffers();
  BOOST_TEST(b.front().first == "bn1.running_mean");
  bool found = false;
  for (auto& [n, t] : b) found = found || n == "layer4.1.cbam.SpatialGate.spatial.bn.running_var";
  BOOST_TEST(found);
  // Names are stable: a second model lists the same names in the same order.
  auto p2 = models::resnet18_cbam(7)->named_parameters();
  BOOST_REQUIRE(p2.size() == p.size());
  for (size_t i = 0; i < p.size(); ++i) BOOST_TEST(p[i].first == p2[i].first);
}

BOOST_AUTO_TEST_CASE(initialisation) {
  manual_seed(3);
  auto m = models::resnet18_cbam(7);
  for (auto& [n, v] : m->named_parameters()) {
    auto x = v.value().to_vector();
    if (n.find("SpatialGate.spatial.bn.weight") != std::string::npos) BOOST_TEST(x[0] == 0.f, n);  // paper's init
    if (n.find("bn1.weight") != std::string::npos) BOOST_TEST(x[0] == 1.f, n);
  }
  // Kaiming normal (fan_out) for conv weights: std = sqrt(2 / (OC * KH * KW)).
  auto w = m->layers[2]->named_parameters();
  auto cw = models::resnet18_cbam(7)->conv1->weight.value().to_vector();
  double s2 = 0;
  for (float v : cw) s2 += v * v;
  const double sd = std::sqrt(s2 / cw.size()), expect = std::sqrt(2.0 / (64 * 49));
  BOOST_TEST(std::abs(sd / expect - 1) < 0.05, "conv1 weight std " << sd << " vs " << expect);
  // Grouped and depthwise convolutions as PyTorch's kaiming_normal_(mode='fan_out'): fan_out is
  // OC * KH * KW whatever the groups (not divided by them).
  for (int64_t groups : {1, 4, 64}) {
    nn::Conv2d conv(64, 128, 3, {.groups = groups});
    double q = 0;
    const auto v = conv.weight.value().to_vector();
    for (float x : v) q += static_cast<double>(x) * x;
    const double got = std::sqrt(q / static_cast<double>(v.size())), want = std::sqrt(2.0 / (128 * 9));
    BOOST_TEST(std::abs(got / want - 1) < 0.05, "groups " << groups << ": weight std " << got << " vs " << want);
  }
}

BOOST_AUTO_TEST_CASE(any_input_size_and_class_count) {
  Generator g(2);
  NoGrad ng;
  for (const auto& name : models::model_names()) {
    auto m = models::create(name, 5);
    m->eval();
    for (auto [h, w] : std::vector<std::pair<int64_t, int64_t>>{{32, 32}, {45, 61}, {112, 150}}) {
      Var y = m->forward(Var(Tensor::randn({2, 3, h, w}, g)));
      BOOST_TEST((y.shape() == Shape{2, 5}), name << " at " << h << "x" << w);
    }
  }
  expect_error([] { models::create("resnet50", 7); }, "unknown model 'resnet50'");
  expect_error([&] { models::resnet18_cbam(7)->forward(Var(Tensor::randn({1, 3, 16, 16}, g))); }, "H, W >= 32");
}

BOOST_AUTO_TEST_CASE(train_eval_and_state_round_trip) {
  manual_seed(4);
  auto a = models::cbam_small(7);
  Generator g(5);
  Tensor x = Tensor::randn({4, 3, 40, 40}, g);
  {  // a few training forwards move the BN running statistics
    for (int i = 0; i < 3; ++i) a->forward(Var(x));
  }
  a->eval();
  NoGrad ng;
  auto ya = a->forward(Var(x)).value().to_vector();
  BOOST_TEST(a->forward(Var(x)).value().to_vector() == ya);  // eval is deterministic (no dropout)

  const std::string path = "test_models_state.safetensors";
  io::save_safetensors(path, a->state(), {{"model", "cbam_small"}});
  manual_seed(99);
  auto b = models::cbam_small(7);
  b->eval();
  BOOST_TEST(b->forward(Var(x)).value().to_vector() != ya);
  auto file = io::load_safetensors(path);
  b->load_state(file.tensors);
  BOOST_TEST(b->forward(Var(x)).value().to_vector() == ya);
  BOOST_TEST(file.metadata.at("model") == "cbam_small");

  auto st = file.tensors;
  st.pop_back();
  expect_error([&] { b->load_state(st); }, "needs");
  st = file.tensors;
  st.emplace_back("extra.weight", Tensor::zeros({1}));
  expect_error([&] { b->load_state(st); }, "does not have");
  // Another model's state: the first of its own tensors that the file lacks is named.
  expect_error([&] { models::resnet18(7)->load_state(file.tensors); }, {"the state has no tensor 'conv1.weight'", "another model"});
  std::remove(path.c_str());
}

BOOST_AUTO_TEST_CASE(eval_folds_batch_norm_into_convolutions) {
  // Eval without gradients folds each BN into its convolution (nn::conv_bn); with gradients the
  // modules run one by one. Both must give the same logits.
  for (const std::string& name : models::model_names()) {
    manual_seed(6);
    auto m = models::create(name, 7);
    Generator g(7);
    Tensor x = Tensor::randn({2, 3, 64, 64}, g);
    for (int i = 0; i < 2; ++i) m->forward(Var(x));  // move the running statistics off their init
    m->eval();
    std::vector<float> folded;
    {
      NoGrad ng;
      folded = m->forward(Var(x)).value().to_vector();
    }
    const std::vector<float> unfolded = m->forward(Var(x)).value().to_vector();
    BOOST_TEST_REQUIRE(folded.size() == unfolded.size());
    // Tolerances relative to the logits' scale (small at init): f32 rounding through ~20 layers.
    double scale = 0;
    for (float v : unfolded) scale = std::max(scale, static_cast<double>(std::abs(v)));
    BOOST_TEST_MESSAGE(name << ": logit scale " << scale);
    const double tol = 1e-4 * scale;
    for (size_t i = 0; i < folded.size(); ++i)
      BOOST_TEST(std::abs(folded[i] - unfolded[i]) <= tol,
                 name << " logit " << i << ": folded " << folded[i] << " vs unfolded " << unfolded[i]);
    // Changing any input of the fold in place (through a tensor handle taken earlier, as an
    // optimiser would) must be seen by the next forward (this guards any caching of the fold).
    for (const std::string which : {"weight", "running_var"}) {
      auto named = which == "weight" ? m->named_parameters() : std::vector<std::pair<std::string, Var>>{};
      Tensor t;
      if (which == "weight") {
        t = named.front().second.value();  // the stem convolution's weight
      } else {
        for (auto& [n, b] : m->state())
          if (n.find("running_var") != std::string::npos) {
            t = b;
            break;
          }
      }
      BOOST_TEST_REQUIRE(t.defined());
      for (int64_t i = 0; i < t.numel(); ++i) t.data()[i] *= (i % 2 ? 3.f : 0.2f);
      std::vector<float> f2;
      {
        NoGrad ng;
        f2 = m->forward(Var(x)).value().to_vector();
      }
      const std::vector<float> u2 = m->forward(Var(x)).value().to_vector();
      double moved = 0;
      for (size_t i = 0; i < f2.size(); ++i) {
        moved = std::max(moved, static_cast<double>(std::abs(f2[i] - folded[i])));
        BOOST_TEST(std::abs(f2[i] - u2[i]) <= tol,
                   name << " after changing " << which << ", logit " << i << ": folded " << f2[i] << " vs " << u2[i]);
      }
      BOOST_TEST(moved > 10 * tol, name << ": changing " << which << " did not change the folded result (moved " << moved << ")");
      folded = f2;
    }
  }
}

BOOST_AUTO_TEST_CASE(freeze_prepares_weights_once_and_ends_with_train_eval_or_load) {
  // freeze(): eval with the BN folded and the weights prepared once. Its logits must equal the
  // unfrozen eval's; a change to the weights is seen once the freeze ends (eval(), train() or
  // load_state()) and the model is frozen again.
  for (const std::string& name : models::model_names()) {
    manual_seed(8);
    auto m = models::create(name, 7);
    Generator g(9);
    Tensor x = Tensor::randn({2, 3, 64, 64}, g);
    for (int i = 0; i < 2; ++i) m->forward(Var(x));  // running statistics off their init
    NoGrad ng;
    auto logits = [&] { return m->forward(Var(x)).value().to_vector(); };
    m->eval();
    const std::vector<float> ref = logits();
    m->freeze();
    BOOST_TEST(m->is_frozen());
    BOOST_TEST(!m->is_training());
    const std::vector<float> f1 = logits(), f2 = logits();
    double scale = 0;
    for (float v : ref) scale = std::max(scale, static_cast<double>(std::abs(v)));
    auto max_diff = [](const std::vector<float>& a, const std::vector<float>& b) {
      double d = 0;
      for (size_t i = 0; i < a.size(); ++i) d = std::max(d, static_cast<double>(std::abs(a[i] - b[i])));
      return d;
    };
    BOOST_TEST(max_diff(f1, ref) <= 1e-4 * scale,
               name << ": frozen differs from eval by " << max_diff(f1, ref) << " at logit scale " << scale);
    BOOST_TEST(f1 == f2, name << ": two frozen forwards differ");
    // Scale the stem convolution's weight in place, then eval() + freeze() again.
    std::vector<std::pair<std::string, Tensor>> saved;
    for (auto& [n, t] : m->state()) saved.emplace_back(n, t.clone());
    Tensor w = m->named_parameters().front().second.value();
    for (int64_t i = 0; i < w.numel(); ++i) w.data()[i] *= (i % 2 ? 3.f : 0.2f);
    m->eval();
    const std::vector<float> changed = logits();
    m->freeze();
    const std::vector<float> f3 = logits();
    BOOST_TEST(max_diff(changed, ref) > 1e-3 * scale, name << ": the weight change did not move the logits");
    BOOST_TEST(max_diff(f3, changed) <= 1e-4 * scale, name << ": a new freeze did not see the changed weight");
    // load_state ends the freeze: restoring the saved weights gives the first logits again.
    m->load_state(saved);
    BOOST_TEST(!m->is_frozen());
    BOOST_TEST(max_diff(logits(), ref) <= 1e-4 * scale, name << ": after load_state the logits are not the saved model's");
    m->train();
    BOOST_TEST(!m->is_frozen());
  }
}

BOOST_AUTO_TEST_CASE(mac_counts) {
  // torchvision's ResNet-18 costs 1.814 GMAC at 224x224 (1000 classes); with 7 classes the fc
  // layer is 0.5 MMAC smaller. Counting our resnet18 must agree.
  const int64_t r18 = macs_at(*models::resnet18(7), 224, 224);
  BOOST_TEST_MESSAGE("resnet18 at 224: " << r18);
  BOOST_TEST(std::abs(r18 / 1.8137e9 - 1) < 0.005);
  // CBAM adds its MLPs and 7x7 convs: a small fraction.
  const int64_t r18c = macs_at(*models::resnet18_cbam(7), 224, 224);
  BOOST_TEST(r18c > r18);
  BOOST_TEST(r18c < r18 * 1.01);
  // cbam_small is documented as ~0.05 GMAC at 112 and ~0.2 at 224.
  const int64_t s112 = macs_at(*models::cbam_small(7), 112, 112), s224 = macs_at(*models::cbam_small(7), 224, 224);
  BOOST_TEST_MESSAGE("cbam_small: " << s112 << " at 112, " << s224 << " at 224");
  BOOST_TEST((s112 > 0.04e9 && s112 < 0.06e9));
  BOOST_TEST((s224 > 0.16e9 && s224 < 0.24e9));
}

BOOST_AUTO_TEST_CASE(module_api_misuse) {
  nn::Sequential s;
  expect_error([] { nn::Conv2d(3, 8, 3, {.groups = 2}); }, "divisible by groups");
  expect_error([] { nn::Dropout(1.0f); }, "[0, 1)");
  expect_error([] { nn::CBAM(16, {.kernel = 4}); }, "odd kernel");
  nn::Module plain;
  Generator g(1);
  expect_error([&] { plain.forward(Var(Tensor::randn({1}, g))); }, "no single-input forward");
}

// Errors raised in a layer's forward name the layer by its path in the model, in train and in eval
// (where a Sequential folds Conv2d + BatchNorm2d into one convolution).
BOOST_AUTO_TEST_CASE(layer_errors_name_the_module_path) {
  Generator g(5);
  auto m = models::resnet18_cbam(7);
  struct Net : nn::Module {
    std::shared_ptr<nn::Sequential> features;
    Net() {
      features = register_module("features", nn::sequential(
          std::make_shared<nn::Conv2d>(3, 8, 3, nn::Conv2dOptions{.pad = 1}), std::make_shared<nn::BatchNorm2d>(8),
          std::make_shared<nn::ReLU>(), std::make_shared<nn::Conv2d>(4, 8, 3), std::make_shared<nn::BatchNorm2d>(8)));
    }
    Var forward(const Var& x) override { return features->forward(x); }
  } net;
  const Var x(Tensor::randn({2, 3, 8, 8}, g));
  expect_error([&] { net.forward(x); }, "features.3: conv2d: ");
  net.eval();
  {
    NoGrad ng;
    expect_error([&] { net.forward(x); }, "features.3: conv2d: ");
  }
  nn::Linear alone(5, 2);  // an outermost module: the op's message as it is
  expect_error([&] { alone.forward(Var(Tensor::randn({1, 4}, g))); }, "linear: input has 4 features");
  BOOST_TEST(alone.path() == "");
  BOOST_TEST(m->layers[0]->path() == "layer1");
  // A child that outlives its parent becomes outermost (no dangling path).
  std::shared_ptr<nn::Sequential> kept;
  {
    Net n2;
    kept = n2.features;
    BOOST_TEST(kept->path() == "features");
  }
  BOOST_TEST(kept->path() == "");
}

// The registry is open: a program's own model is created, listed and named in errors like
// dermis's. (Last in this file: it leaves models registered for the rest of the process.)
BOOST_AUTO_TEST_CASE(registry_takes_a_programs_own_models) {
  const auto before = models::model_names();
  BOOST_TEST((std::vector<std::string>(before.begin(), before.begin() + 4) ==
              std::vector<std::string>{"resnet18_cbam", "resnet34_cbam", "resnet18", "cbam_small"}));
  static const models::ModelRegistration reg{
      "my_small", [](int classes) { return models::cbam_small(classes); }, "a test model"};
  BOOST_TEST(models::has_model("my_small"));
  BOOST_TEST(models::model_names().back() == "my_small");
  BOOST_TEST(models::model_description("my_small") == "a test model");
  BOOST_TEST(models::create("my_small", 3)->num_classes() == 3);
  BOOST_TEST(models::unknown_model_message("x").find("cbam_small, my_small") != std::string::npos);
  expect_error([] { models::register_model("my_small", [](int k) { return models::cbam_small(k); }); },
               "a model named 'my_small' is already registered");
  expect_error([] { models::register_model("bad name", [](int k) { return models::cbam_small(k); }); },
               "'bad name' is not a model name");
  expect_error([] { models::register_model("nothing", {}); }, "model 'nothing' has no factory");
  models::register_model("wrong_classes", [](int) { return models::cbam_small(2); });
  expect_error([] { models::create("wrong_classes", 7); }, "made a model with 2 classes for 7");
  models::register_model("null_model", [](int) { return std::shared_ptr<models::Classifier>(); });
  expect_error([] { models::create("null_model", 7); }, "its factory returned no model");
}
