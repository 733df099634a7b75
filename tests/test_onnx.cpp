// ONNX export: the exported graphs of dermis's models (and of a model using every exportable op)
// run in OpenCV's DNN module, an independent ONNX implementation, and give dermis's logits and
// probabilities; tools/export's files give tools/predict's probabilities on JPEGs; ops without an
// ONNX form and damaged files fail clearly.
#define BOOST_TEST_MODULE onnx
#include <boost/test/unit_test.hpp>
#include <opencv2/dnn.hpp>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "framework/data/loader.h"
#include "framework/io/json.h"
#include "framework/nn/layers.h"
#include "framework/ops.h"
#include "framework/random.h"
#include "models/registry.h"
#include "process.h"
#include "run_fixtures.h"
#include "testing.h"
#include "tools/experiment/evaluation.h"
#include "tools/experiment/onnx_export.h"
#include "tools/experiment/trainer.h"

using namespace dermis;
using testing::expect_error;
namespace fs = std::filesystem;

namespace {

// The bound the export promises: probabilities within 1e-4 of dermis's, logits within 1e-4
// relative to their largest magnitude. Measured here: 1e-6 to 1e-5 (the two libraries sum
// convolutions in other orders, Winograd against direct); the margin is for other CPUs' kernels.
constexpr double kTol = 1e-4;

struct Outputs {
  std::vector<float> logits, probs;  // (N, K) row-major
};

// Runs an ONNX model with OpenCV's DNN module (its own CPU backend) on x (N, 3, H, W), one image
// at a time: OpenCV 4.6 (Debian 12) cannot broadcast (N, C, H, W) against (N, C, 1, 1) for N > 1
// (an assertion in its shape code), which every CBAM gate needs; onnxruntime runs whole batches.
Outputs run_opencv(const std::string& onnx_bytes, const Tensor& x0) {
  const Tensor x = x0.plain();
  cv::dnn::Net net = cv::dnn::readNetFromONNX(onnx_bytes.data(), onnx_bytes.size());
  net.setPreferableBackend(cv::dnn::DNN_BACKEND_OPENCV);
  net.setPreferableTarget(cv::dnn::DNN_TARGET_CPU);
  const int sizes[4] = {1, 3, static_cast<int>(x.dim(2)), static_cast<int>(x.dim(3))};
  const int64_t per = 3 * x.dim(2) * x.dim(3);
  Outputs o;
  for (int64_t n = 0; n < x.dim(0); ++n) {
    cv::Mat blob(4, sizes, CV_32F, const_cast<float*>(x.data() + n * per));
    net.setInput(blob, "input");
    std::vector<cv::Mat> outs;
    net.forward(outs, std::vector<cv::String>{"logits", "probabilities"});
    BOOST_REQUIRE_EQUAL(outs.size(), 2u);
    for (int k = 0; k < 2; ++k) {
      const cv::Mat m = outs[k].isContinuous() ? outs[k] : outs[k].clone();
      const auto* p = m.ptr<float>();
      auto& dst = k ? o.probs : o.logits;
      dst.insert(dst.end(), p, p + m.total());
    }
  }
  return o;
}

Outputs run_dermis(models::Classifier& m, const Tensor& x) {
  m.freeze();  // as evaluate and predict run it
  NoGrad ng;
  const Tensor l = m.forward(Var(x)).value().plain();
  Outputs o;
  o.logits.assign(l.data(), l.data() + l.numel());
  o.probs = o.logits;
  const int64_t K = l.dim(1);
  for (int64_t n = 0; n < l.dim(0); ++n) {
    float* r = o.probs.data() + n * K;
    const float mx = *std::max_element(r, r + K);
    double s = 0;
    for (int64_t k = 0; k < K; ++k) s += std::exp(static_cast<double>(r[k] - mx));
    for (int64_t k = 0; k < K; ++k) r[k] = static_cast<float>(std::exp(static_cast<double>(r[k] - mx)) / s);
  }
  m.eval();
  return o;
}

double max_abs_diff(const std::vector<float>& a, const std::vector<float>& b) {
  BOOST_REQUIRE_EQUAL(a.size(), b.size());
  double d = 0;
  for (size_t i = 0; i < a.size(); ++i) d = std::max(d, std::fabs(static_cast<double>(a[i]) - b[i]));
  return d;
}
double max_abs(const std::vector<float>& a) {
  double m = 0;
  for (float v : a) m = std::max(m, std::fabs(static_cast<double>(v)));
  return m;
}

void expect_same(const Outputs& onnx, const Outputs& ref, const std::string& what) {
  const double dl = max_abs_diff(onnx.logits, ref.logits) / std::max(max_abs(ref.logits), 1e-6);
  const double dp = max_abs_diff(onnx.probs, ref.probs);
  BOOST_TEST_MESSAGE(what << ": logits max-norm relative difference " << dl << ", probabilities max difference " << dp);
  BOOST_TEST(dl <= kTol, what << ": logits differ by " << dl << " (relative)");
  BOOST_TEST(dp <= kTol, what << ": probabilities differ by " << dp);
}

// Random running statistics and batch-norm affine parameters, so that folding and the eval-mode
// batch norms are exercised (fresh models have mean 0, variance 1, scale 1).
void randomise_batch_norms(models::Classifier& m, uint64_t seed) {
  Generator g(seed);
  for (auto& [name, t] : m.named_buffers()) {
    const bool var = name.find("running_var") != std::string::npos;
    Tensor r = Tensor::uniform(t->shape(), g, var ? 0.5f : -0.3f, var ? 2.f : 0.3f);
    std::copy(r.data(), r.data() + r.numel(), t->data());
  }
  for (auto& [name, v] : m.named_parameters()) {
    const bool bn = name.find("bn") != std::string::npos && name.find("fc") == std::string::npos;
    if (!bn || v.ndim() != 1) continue;
    const bool weight = name.size() >= 6 && name.compare(name.size() - 6, 6, "weight") == 0;
    Tensor r = Tensor::uniform(v.shape(), g, weight ? 0.5f : -0.2f, weight ? 1.5f : 0.2f);
    std::copy(r.data(), r.data() + r.numel(), v.value().data());
  }
}

Tensor random_input(int64_t n, int64_t h, int64_t w, uint64_t seed) {
  Generator g(seed);
  return Tensor::randn({n, 3, h, w}, g);
}

// A model that runs every op export knows, in the forms a user model might use them.
class OpZoo : public models::Classifier {
 public:
  OpZoo() {
    stem = register_module("stem", std::make_shared<nn::Conv2d>(3, 16, 3, nn::Conv2dOptions{.stride = 2, .pad = 1}));
    bn = register_module("bn", std::make_shared<nn::BatchNorm2d>(16));
    dw = register_module("dw", std::make_shared<nn::Conv2d>(16, 16, 3, nn::Conv2dOptions{.pad = 2, .dilation = 2, .groups = 16, .bias = false}));
    gate = register_module("gate", std::make_shared<nn::CBAM>(16, nn::CBAMOptions{.reduction = 4, .channel_only = true}));
    composed = register_module("composed", std::make_shared<nn::CBAM>(32, nn::CBAMOptions{.reduction = 4, .fused = false}));
    fc = register_module("fc", std::make_shared<nn::Linear>(32 * 4, 5, false));
  }
  Var features(const Var& x) override {
    Var h = relu(bn->forward(stem->forward(x)));                  // conv, batch norm, relu (unfused)
    Var d = dw->forward(h);                                        // grouped, dilated
    h = add_relu(h, gate->forward(d));                             // channel-only CBAM, residual
    h = max_pool2d(h, {.kernel = 3, .stride = 2, .pad = 1});
    Var a = avg_pool2d(h, {.kernel = 3, .stride = 1, .pad = 1, .count_include_pad = false});
    Var s = sigmoid(channel_mean(h) + channel_max(h));            // (N, 1, H, W)
    Var m = add(mul(h, s), a);                                     // broadcasts over channels
    return composed->forward(concat_channels({m, h}));            // CBAM from primitive ops
  }
  Var head(const Var& f) override {
    Var p = avg_pool2d(f, {.kernel = 2});
    p = global_max_pool2d(p) + global_avg_pool2d(p);               // (N, 32, 1, 1)
    Var q = reshape(p, {p.dim(0), 32});
    Var r = concat_channels({reshape(q, {q.dim(0), 32, 1, 1}), reshape(q, {q.dim(0), 32, 1, 1}),
                             global_avg_pool2d(f), global_max_pool2d(f)});
    return linear(dropout(flatten(r), 0.3f, is_training()), fc->weight);
  }
  int num_classes() const override { return 5; }

  std::shared_ptr<nn::Conv2d> stem, dw;
  std::shared_ptr<nn::BatchNorm2d> bn;
  std::shared_ptr<nn::CBAM> gate, composed;
  std::shared_ptr<nn::Linear> fc;
};

// A model calling an op of its own (autograd::make_result without a trace record).
class CustomOp : public models::Classifier {
 public:
  CustomOp() { fc = register_module("fc", std::make_shared<nn::Linear>(3, 2)); }
  Var features(const Var& x) override {
    Tensor y = x.value().plain().clone();
    for (float& v : y.values()) v = v * v;
    return autograd::make_result(y, "my_square", {x}, [](Node&) {});
  }
  Var head(const Var& f) override { return fc->forward(flatten(global_avg_pool2d(f))); }
  int num_classes() const override { return 2; }
  std::shared_ptr<nn::Linear> fc;
};

// onnxruntime through Node.js (tests/ort_run.js), where ./dermis test could install the npm package
// onnxruntime-node into DERMIS_ORT_DIR/node_modules.
std::string ort_modules() {
  const char* d = std::getenv("DERMIS_ORT_DIR");
  return d ? (fs::path(d) / "node_modules").string() : std::string();
}
bool ort_available() {
  return !ort_modules().empty() && fs::exists(fs::path(ort_modules()) / "onnxruntime-node" / "package.json") &&
         std::system("node --version >/dev/null 2>&1") == 0;
}

Outputs run_onnxruntime(const std::string& onnx_path, const Tensor& x0, const std::string& dir) {
  const Tensor x = x0.plain();
  const std::string input = (fs::path(dir) / "ort_input.f32").string();
  std::ofstream(input, std::ios::binary).write(reinterpret_cast<const char*>(x.data()), x.numel() * 4);
  const auto r = testing::run_process("node", {std::string(DERMIS_TEST_DATA) + "/ort_run.js", onnx_path, input,
                                               std::to_string(x.dim(0)), std::to_string(x.dim(2)), std::to_string(x.dim(3))},
                                      {"NODE_PATH=" + ort_modules()});
  BOOST_REQUIRE_MESSAGE(r.exit_code == 0, "onnxruntime failed: " << r.err);
  const json::Value j = json::parse(r.out, "ort_run.js output");
  Outputs o;
  for (const auto& v : j.at("logits").array()) o.logits.push_back(static_cast<float>(v.number()));
  for (const auto& v : j.at("probabilities").array()) o.probs.push_back(static_cast<float>(v.number()));
  return o;
}

std::string env_or_fail(const char* name) {
  const char* v = std::getenv(name);
  BOOST_REQUIRE_MESSAGE(v != nullptr, name << " is not set (meson test sets it)");
  return v;
}

}  // namespace

BOOST_AUTO_TEST_CASE(registered_models_match_dermis_in_opencv) {
  const int64_t H = 64, W = 80;
  for (const std::string name : {"cbam_small", "resnet18_cbam", "resnet18", "resnet34_cbam"}) {
    auto m = models::create(name, 7);
    randomise_batch_norms(*m, 7);
    const Tensor x = random_input(3, H, W, 11);  // batch 3: the exported batch is dynamic (traced at 2)
    const Outputs ref = run_dermis(*m, x);
    for (const bool fold : {true, false}) {
      experiment::OnnxExportSummary s;
      const std::string bytes = experiment::export_onnx(*m, {.height = H, .width = W, .fold_batch_norm = fold}, &s);
      BOOST_TEST(s.op_counts.count("BatchNormalization") == (fold ? 0u : 1u), name << ": batch norms kept or folded");
      if (name != "resnet18") {
        BOOST_TEST(s.op_counts["ReduceMax"] > 0, name << ": CBAM's channel pooling is exported");
        BOOST_TEST(s.op_counts["Concat"] > 0);
      }
      expect_same(run_opencv(bytes, x), ref, name + (fold ? ", batch norm folded" : ", batch norm kept"));
    }
  }
}

BOOST_AUTO_TEST_CASE(every_exportable_op_matches_dermis_in_opencv) {
  OpZoo m;
  randomise_batch_norms(m, 3);
  const Tensor x = random_input(2, 40, 48, 5);
  const Outputs ref = run_dermis(m, x);
  for (const bool fold : {true, false}) {
    experiment::OnnxExportSummary s;
    const std::string bytes = experiment::export_onnx(m, {.height = 40, .width = 48, .fold_batch_norm = fold}, &s);
    for (const char* op : {"Conv", "Relu", "Add", "Mul", "Sigmoid", "MaxPool", "AveragePool", "GlobalAveragePool",
                           "GlobalMaxPool", "Concat", "ReduceMean", "ReduceMax", "Reshape", "Flatten", "Gemm", "Softmax"})
      BOOST_TEST(s.op_counts[op] > 0, "op zoo exports " << op);
    expect_same(run_opencv(bytes, x), ref, fold ? "op zoo, batch norm folded" : "op zoo, batch norm kept");
  }
}

BOOST_AUTO_TEST_CASE(decision_prior_offsets_shift_the_probabilities) {
  auto m = models::create("cbam_small", 7);
  const Tensor x = random_input(2, 48, 64, 2);
  const std::vector<double> offsets = {0.5, -1, 0.25, 0, 2, -0.5, 1};
  const std::string bytes = experiment::export_onnx(*m, {.height = 48, .width = 64, .logit_offsets = offsets});
  Outputs ref = run_dermis(*m, x);
  for (size_t n = 0; n < 2; ++n) {  // softmax(logits + offsets)
    double s = 0;
    for (size_t k = 0; k < 7; ++k) s += std::exp(ref.logits[n * 7 + k] + offsets[k]);
    for (size_t k = 0; k < 7; ++k) ref.probs[n * 7 + k] = static_cast<float>(std::exp(ref.logits[n * 7 + k] + offsets[k]) / s);
  }
  expect_same(run_opencv(bytes, x), ref, "cbam_small with prior offsets");
}

BOOST_AUTO_TEST_CASE(ops_without_an_onnx_form_and_damaged_files_fail_clearly) {
  CustomOp m;
  expect_error([&] { experiment::export_onnx(m, {.height = 32, .width = 32}); }, {"my_square", "no ONNX form"});
  auto good = models::create("cbam_small", 7);
  const std::string bytes = experiment::export_onnx(*good, {.height = 48, .width = 64});
  experiment::check_onnx(bytes, "good.onnx");  // passes
  expect_error([&] { experiment::check_onnx(bytes.substr(0, bytes.size() / 2), "cut.onnx"); }, {"cut.onnx"});
  expect_error([&] { experiment::check_onnx("not a model", "text.onnx"); }, {"text.onnx"});
  expect_error([&] { experiment::export_onnx(*good, {.height = 48, .width = 64, .logit_offsets = {1, 2}}); },
               {"2 prior offsets for 7 classes"});
}

// tools/export's file against tools/predict --json on JPEGs: real HAM10000 images when the shared
// data is beside the checkout (../shared/data/ham10000/originals_600x450), else synthetic ones.
BOOST_AUTO_TEST_CASE(exported_checkpoints_give_predicts_probabilities_on_jpegs) {
  const std::string export_bin = env_or_fail("DERMIS_EXPORT_BIN"), predict_bin = env_or_fail("DERMIS_PREDICT_BIN");
  testing::TempDir dir;
  const std::string data = testing::synthetic_ham(5);
  std::vector<std::string> images;
  const fs::path real = fs::path(DERMIS_TEST_DATA) / "../../shared/data/ham10000/originals_600x450";
  if (fs::is_directory(real)) {
    for (const auto& e : fs::directory_iterator(real))
      if (e.path().extension() == ".jpg") images.push_back(e.path().string());
    std::sort(images.begin(), images.end());
    images.resize(std::min<size_t>(images.size(), 6));
    BOOST_TEST_MESSAGE("JPEGs: " << images.size() << " real HAM10000 originals from " << real.string());
  }
  if (images.empty()) {
    for (const auto& e : fs::recursive_directory_iterator(data))
      if (e.path().extension() == ".jpg" && images.size() < 6) images.push_back(e.path().string());
    BOOST_TEST_MESSAGE("JPEGs: " << images.size() << " synthetic (no shared HAM10000 beside the checkout)");
  }
  BOOST_REQUIRE(!images.empty());
  for (const std::string model : {"cbam_small", "resnet18_cbam"}) {
    auto cfg = testing::small_run(data, dir / model, 1);
    cfg.model = model;
    cfg.report_images = 0;
    const auto r = experiment::train(cfg, "train (test)");
    for (const std::string prior : {"none", "train"}) {
      const std::string onnx = dir / (model + "_" + prior + ".onnx");
      const auto ex = testing::run_process(export_bin, {"--checkpoint", r.model_checkpoint, "--onnx", onnx, "--prior", prior});
      BOOST_REQUIRE_MESSAGE(ex.exit_code == 0, "export failed: " << ex.err);
      BOOST_TEST(ex.out.find("passes the ONNX checker") != std::string::npos);
      std::vector<std::string> args = {"--checkpoint", r.model_checkpoint, "--json", "--prior", prior};
      args.insert(args.end(), images.begin(), images.end());
      const auto pr = testing::run_process(predict_bin, args);
      BOOST_REQUIRE_MESSAGE(pr.exit_code == 0, "predict failed: " << pr.err);
      // The same pixels as predict's: the checkpoint's evaluation transform, standard decode.
      auto members = experiment::load_members(r.model_checkpoint, "auto");
      const auto& info = members.front().ck.info;
      data::LoaderOptions lo = members.front().eval_options(data::standard_decode());
      lo.batch = 1;
      std::vector<data::Item> items;
      for (const auto& p : images) items.push_back({p, 0});
      data::Loader loader(items, lo);
      auto epoch = loader.epoch(0);
      std::ifstream onnx_file(onnx, std::ios::binary);
      const std::string bytes{std::istreambuf_iterator<char>(onnx_file), std::istreambuf_iterator<char>()};
      std::istringstream lines(pr.out);
      std::string line;
      double worst = 0;
      for (size_t i = 0; i < images.size(); ++i) {
        BOOST_REQUIRE(std::getline(lines, line));
        const json::Value j = json::parse(line, "predict output");
        auto b = epoch.next();
        BOOST_REQUIRE(b.has_value());
        const Outputs o = run_opencv(bytes, b->images);
        for (size_t k = 0; k < info.classes.size(); ++k) {
          const double p = j.at("probabilities").at(info.classes[k]).number();
          worst = std::max(worst, std::fabs(p - o.probs[k]));
        }
      }
      BOOST_TEST_MESSAGE(model << ", prior " << prior << ": ONNX (OpenCV DNN) vs predict, max probability difference "
                               << worst << " over " << images.size() << " JPEGs");
      BOOST_TEST(worst <= kTol, model << ", prior " << prior << ": ONNX and predict differ by " << worst);
    }
  }
}

// Whole batches (the exported batch dimension is dynamic) in onnxruntime, the runtime most ONNX
// deployments use.
BOOST_AUTO_TEST_CASE(onnxruntime_runs_batches_with_dermis_results,
                     *testing::needs(ort_available, [] {
                       return "onnxruntime not available: needs node and the npm package onnxruntime-node in "
                              "$DERMIS_ORT_DIR/node_modules (./dermis test installs it when npm can reach its registry)";
                     })) {
  testing::TempDir dir;
  for (const std::string name : {"cbam_small", "resnet18_cbam"}) {
    auto m = models::create(name, 7);
    randomise_batch_norms(*m, 9);
    const Tensor x = random_input(5, 64, 80, 13);
    const Outputs ref = run_dermis(*m, x);
    for (const bool fold : {true, false}) {
      const std::string path = dir / (name + ".onnx");
      const std::string bytes = experiment::export_onnx(*m, {.height = 64, .width = 80, .fold_batch_norm = fold});
      std::ofstream(path, std::ios::binary) << bytes;
      expect_same(run_onnxruntime(path, x, dir.str()), ref,
                  name + ", batch of 5 in onnxruntime" + (fold ? ", batch norm folded" : ", batch norm kept"));
    }
  }
}

// The ONNX project's Python checker (python3-onnx), with full_check (shape inference too).
BOOST_AUTO_TEST_CASE(python_onnx_checker_accepts_the_files,
                     *testing::needs([] { return std::system("/usr/bin/python3 -c 'import onnx' >/dev/null 2>&1") == 0; },
                                     [] { return "python3-onnx is not installed (./dermis test installs it)"; })) {
  testing::TempDir dir;
  OpZoo zoo;
  for (const std::string name : {"cbam_small", "resnet18_cbam", "zoo"}) {
    auto m = name == "zoo" ? nullptr : models::create(name, 7);
    models::Classifier& c = m ? *m : static_cast<models::Classifier&>(zoo);
    for (const bool fold : {true, false}) {
      const std::string path = dir / (name + (fold ? "_folded.onnx" : "_bn.onnx"));
      std::ofstream(path, std::ios::binary) << experiment::export_onnx(c, {.height = 48, .width = 64, .fold_batch_norm = fold});
      const auto r = testing::run_process(
          "/usr/bin/python3", {"-c", "import onnx, sys; onnx.checker.check_model(onnx.load(sys.argv[1]), full_check=True)", path});
      BOOST_TEST(r.exit_code == 0, path << ": python3-onnx's checker: " << r.err);
    }
  }
}
