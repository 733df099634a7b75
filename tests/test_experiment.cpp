// The experiment layer: LR schedules against hand-computed sequences, metrics against hand-computed
// confusion matrices, checkpoints (round trip of a model in memory, damage, a numpy reader), a short training run on
// synthetic data, and resume giving exactly the weights of an uninterrupted run.
#define BOOST_TEST_MODULE experiment
#include <boost/test/unit_test.hpp>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <tuple>

#include "datasets/synthetic_ham.h"
#include "framework/metrics.h"
#include "framework/ops.h"
#include "framework/optim/schedule.h"
#include "framework/optim/sgd.h"
#include "framework/random.h"
#include "models/registry.h"
#include "tools/experiment/checkpoint.h"
#include "tools/experiment/trainer.h"
#include "run_fixtures.h"
#include "testing.h"

using namespace dermis;
namespace fs = std::filesystem;

namespace {
using testing::expect_error;
using testing::TempDir;

optim::ScheduleOptions sched(const std::string& kind) {
  optim::ScheduleOptions o;
  o.kind = parse_choice<optim::ScheduleKind>(kind, "schedule"), o.base_lr = 0.1;
  return o;
}

const std::string& dataset() { return testing::synthetic_ham(3); }

experiment::TrainConfig small_run(const std::string& out) { return testing::small_run(dataset(), out, 3); }
}  // namespace

BOOST_AUTO_TEST_CASE(step_multistep_cosine_sequences) {
  auto s = sched("step");
  s.step_size = 2, s.gamma = 0.5;
  optim::Schedule step(s);
  const double want_step[] = {0.1, 0.1, 0.05, 0.05, 0.025};
  for (int e = 0; e < 5; ++e) BOOST_TEST(step.lr(e, 0) == want_step[e], boost::test_tools::tolerance(1e-12));
  auto m = sched("multistep");
  m.milestones = {2, 5}, m.gamma = 0.1;
  optim::Schedule ms(m);
  const double want_ms[] = {0.1, 0.1, 0.01, 0.01, 0.01, 0.001};
  for (int e = 0; e < 6; ++e) BOOST_TEST(ms.lr(e, 0) == want_ms[e], boost::test_tools::tolerance(1e-12));
  auto c = sched("cosine");
  c.min_lr = 0.01;
  optim::Schedule cos(c);
  BOOST_TEST(cos.lr(0, 0.0) == 0.1, boost::test_tools::tolerance(1e-12));
  BOOST_TEST(cos.lr(0, 0.5) == 0.055, boost::test_tools::tolerance(1e-12));  // 0.01 + 0.09 * (1 + cos(pi/2)) / 2
  BOOST_TEST(cos.lr(0, 1.0) == 0.01, boost::test_tools::tolerance(1e-12));
  BOOST_TEST(cos.lr(0, 0.25) == 0.01 + 0.09 * (1 + std::cos(M_PI / 4)) / 2, boost::test_tools::tolerance(1e-12));
  auto w = sched("constant");
  w.warmup_epochs = 2;
  optim::Schedule warm(w);
  BOOST_TEST(warm.lr(0.5, 0) == 0.025, boost::test_tools::tolerance(1e-12));
  BOOST_TEST(warm.lr(1.0, 0) == 0.05, boost::test_tools::tolerance(1e-12));
  BOOST_TEST(warm.lr(2.0, 0) == 0.1, boost::test_tools::tolerance(1e-12));
}

BOOST_AUTO_TEST_CASE(swa_tail_holds_the_lr_from_the_averaging_start) {
  // Cosine anneals from 0.1 to the SWA lr 0.02 over the first 60% of the run, then holds it.
  auto c = sched("cosine");
  c.min_lr = 0.001, c.swa_lr = 0.02, c.swa_start = 0.6;
  optim::Schedule cos(c);
  BOOST_TEST(cos.lr(0, 0.0) == 0.1, boost::test_tools::tolerance(1e-12));
  BOOST_TEST(cos.lr(0, 0.3) == 0.06, boost::test_tools::tolerance(1e-12));  // halfway: 0.02 + 0.08 / 2
  BOOST_TEST(cos.lr(0, 0.45) == 0.02 + 0.08 * (1 + std::cos(M_PI * 0.75)) / 2, boost::test_tools::tolerance(1e-12));
  for (double t : {0.6, 0.61, 0.9, 1.0}) BOOST_TEST(cos.lr(0, t) == 0.02, "progress " << t);
  // Step schedules switch to it where the averaging starts, whatever their own level.
  auto s = sched("step");
  s.step_size = 1, s.gamma = 0.1, s.swa_lr = 0.05, s.swa_start = 0.5;
  optim::Schedule step(s);
  BOOST_TEST(step.lr(2, 0.4) == 0.001, boost::test_tools::tolerance(1e-12));
  BOOST_TEST(step.lr(3, 0.5) == 0.05, boost::test_tools::tolerance(1e-12));
  auto bad = sched("cosine");
  bad.swa_lr = 0.2;
  expect_error([&] { optim::Schedule x(bad); }, "the SWA learning rate must be in [0, lr 0.1], got 0.2");
  bad.swa_lr = 0.01;
  expect_error([&] { optim::Schedule x(bad); }, "needs the share of the run where averaging starts");
}

BOOST_AUTO_TEST_CASE(plateau_follows_pytorch) {
  // ReduceLROnPlateau(mode='max', factor=0.5, patience=1, threshold=0.01 rel, cooldown=1, min_lr=0.02),
  // traced by hand: the metric stalls at 0.5, 0.5, 0.5, 0.5, improves to 0.6, then stalls again.
  auto o = sched("plateau");
  o.plateau_factor = 0.5, o.plateau_patience = 1, o.plateau_threshold = 0.01, o.plateau_cooldown = 1, o.min_lr = 0.02;
  optim::Schedule p(o);
  const double metrics[] = {0.50, 0.50, 0.50, 0.50, 0.504, 0.60, 0.60, 0.60, 0.60, 0.60, 0.60};
  // after each epoch_end: best stays 0.5 (0.504 is not > 0.505); bad epochs 1, 2 -> reduce (0.05),
  // cooldown eats one epoch, then bad 1, 2 -> reduce (0.025); 0.6 is better; then bad 1, 2 -> reduce
  // to max(0.0125, 0.02) = 0.02; then stays at the floor.
  const double want[] = {0.1, 0.1, 0.05, 0.05, 0.05, 0.05, 0.05, 0.025, 0.025, 0.025, 0.02};
  for (int e = 0; e < 11; ++e) {
    p.epoch_end(metrics[e]);
    BOOST_TEST(p.lr(e + 1, 0) == want[e], "after epoch " << e + 1 << ": " << p.lr(e + 1, 0));
  }
  auto l = sched("plateau");
  l.plateau_maximize = false, l.plateau_patience = 0, l.plateau_factor = 0.1, l.plateau_threshold = 0;
  optim::Schedule loss(l);
  loss.epoch_end(1.0);
  loss.epoch_end(0.9);  // improves
  BOOST_TEST(loss.lr(2, 0) == 0.1, boost::test_tools::tolerance(1e-12));
  loss.epoch_end(0.95);  // worse, patience 0 -> reduce
  BOOST_TEST(loss.lr(3, 0) == 0.01, boost::test_tools::tolerance(1e-12));
  expect_error([] { optim::Schedule bad(sched("linear")); },
               "schedule: expected step, multistep, cosine, plateau or constant, got 'linear'");
  auto nm = sched("multistep");
  expect_error([&] { optim::Schedule bad(nm); }, "milestones");
}

BOOST_AUTO_TEST_CASE(group_numbers_follow_first_appearance) {
  BOOST_TEST(metrics::group_numbers({"HAM_b", "HAM_a", "HAM_b", "HAM_c", "HAM_a"}) ==
                 (std::vector<int64_t>{0, 1, 0, 2, 1}),
             boost::test_tools::per_element());
  BOOST_TEST(metrics::group_numbers({}).empty());
}

BOOST_AUTO_TEST_CASE(balanced_accuracy_se_over_lesions_by_hand) {
  // Scores whose argmax is `predicted` (0.8 on it, 0.1 elsewhere).
  const auto scores = [](const std::vector<int>& predicted, int K) {
    std::vector<float> probs(predicted.size() * static_cast<size_t>(K), 0.1f);
    for (size_t i = 0; i < predicted.size(); ++i) probs[i * static_cast<size_t>(K) + static_cast<size_t>(predicted[i])] = 0.8f;
    return probs;
  };
  // Class 0 in three lesions: A (2 images, 1 correct), B (1, correct), C (1, wrong): r = 1/2,
  // residuals 1 - 2r = 0, 1 - r = 1/2, -r = -1/2, variance 3/2 * (1/2) / 4^2. Class 1 in one lesion
  // D (3 images, 2 correct): the binomial (2/3)(1/3)/3. Class 2 absent.
  const std::vector<int> labels = {0, 0, 0, 0, 1, 1, 1};
  const std::vector<int> predicted = {0, 1, 0, 2, 1, 1, 0};
  const std::vector<int64_t> lesion = {10, 10, 11, 12, 13, 13, 13};
  BOOST_TEST(metrics::balanced_accuracy_se_grouped(labels, scores(predicted, 3), lesion, 3) ==
                 std::sqrt(1.5 * 0.5 / 16 + 2.0 / 27) / 2,
             boost::test_tools::tolerance(1e-12));
  // One image per lesion: r (1 - r) / (n - 1) per class (4 images, 3 correct: 0.0625), against the
  // binomial r (1 - r) / n of metrics::evaluate; the same images as one lesion per class: binomial.
  const std::vector<int> l4 = {0, 0, 0, 0};
  const std::vector<float> p4 = scores({0, 0, 0, 1}, 2);
  BOOST_TEST(metrics::balanced_accuracy_se_grouped(l4, p4, {1, 2, 3, 4}, 2) == 0.25,
             boost::test_tools::tolerance(1e-12));
  BOOST_TEST(metrics::balanced_accuracy_se_grouped(l4, p4, {7, 7, 7, 7}, 2) == std::sqrt(0.75 * 0.25 / 4),
             boost::test_tools::tolerance(1e-12));
  // Whole lesions right or wrong weigh more than their images scattered over lesions.
  const std::vector<int> l8(8, 0);
  const std::vector<float> p8 = scores({0, 0, 0, 0, 1, 1, 1, 1}, 2);
  BOOST_TEST(metrics::balanced_accuracy_se_grouped(l8, p8, {1, 1, 1, 1, 2, 2, 2, 2}, 2) >
             metrics::balanced_accuracy_se_grouped(l8, p8, {1, 2, 1, 2, 1, 2, 1, 2}, 2));
  BOOST_TEST(std::isnan(metrics::balanced_accuracy_se_grouped({}, {}, {}, 3)));
  expect_error([&] { metrics::balanced_accuracy_se_grouped({0}, {0.5f, 0.5f, 0.1f, 0.9f}, {1}, 2); },
               {"1 labels, 4 scores and 1 groups"});
}

// The one decision rule (metrics::decide) every tool uses: the highest score, the first of equals.
BOOST_AUTO_TEST_CASE(decide_takes_the_first_highest_score) {
  const float a[] = {0.1f, 0.5f, 0.4f}, tie[] = {0.2f, 0.4f, 0.4f}, first[] = {0.9f, 0.05f, 0.05f}, last[] = {0, 0, 1};
  BOOST_TEST(metrics::decide(a, 3) == 1);
  BOOST_TEST(metrics::decide(tie, 3) == 1);
  BOOST_TEST(metrics::decide(first, 3) == 0);
  BOOST_TEST(metrics::decide(last, 3) == 2);
  BOOST_TEST(metrics::decide(last, 2) == 0);  // only the first two classes looked at
}

BOOST_AUTO_TEST_CASE(metrics_against_hand_computed_matrices) {
  // 3 classes; labels and argmax predictions:
  //   true 0: pred 0, 0, 1      true 1: pred 1, 2      true 2: pred 2, 2, 2, 0
  const std::vector<int> labels = {0, 0, 0, 1, 1, 2, 2, 2, 2};
  const std::vector<int> preds = {0, 0, 1, 1, 2, 2, 2, 2, 0};
  std::vector<float> probs(labels.size() * 3, 0.1f);
  for (size_t i = 0; i < preds.size(); ++i) probs[i * 3 + preds[i]] = 0.8f;
  const auto r = metrics::evaluate(labels, probs, 3);
  const std::vector<std::vector<int64_t>> cm = {{2, 1, 0}, {0, 1, 1}, {1, 0, 3}};
  BOOST_TEST((r.confusion == cm));
  BOOST_TEST(r.accuracy == 6.0 / 9, boost::test_tools::tolerance(1e-12));
  BOOST_TEST(r.recall[0] == 2.0 / 3, boost::test_tools::tolerance(1e-12));
  BOOST_TEST(r.recall[1] == 0.5, boost::test_tools::tolerance(1e-12));
  BOOST_TEST(r.recall[2] == 0.75, boost::test_tools::tolerance(1e-12));
  BOOST_TEST(r.balanced_accuracy == (2.0 / 3 + 0.5 + 0.75) / 3, boost::test_tools::tolerance(1e-12));
  // binomial standard error over 3, 2 and 4 images of the classes
  BOOST_TEST(r.balanced_accuracy_se == std::sqrt(2.0 / 9 / 3 + 0.25 / 2 + 0.1875 / 4) / 3,
             boost::test_tools::tolerance(1e-12));
  BOOST_TEST(r.precision[0] == 2.0 / 3, boost::test_tools::tolerance(1e-12));
  BOOST_TEST(r.precision[1] == 0.5, boost::test_tools::tolerance(1e-12));
  BOOST_TEST(r.precision[2] == 0.75, boost::test_tools::tolerance(1e-12));
  BOOST_TEST(r.macro_f1 == (2.0 / 3 + 0.5 + 0.75) / 3, boost::test_tools::tolerance(1e-12));  // P = R per class here
  // AUC by hand: scores for class 0 = 0.8 on images {0,1,8}, 0.1 elsewhere; positives {0,1,2}.
  // pairs (pos, neg) = 3 * 6 = 18; wins: images 0,1 beat the 5 negatives at 0.1 (10) and tie
  // image 8 (2 * 0.5); image 2 (0.1) ties the 5 at 0.1 (2.5) and loses to 8: 13.5 / 18.
  BOOST_TEST(r.auc[0] == 13.5 / 18, boost::test_tools::tolerance(1e-12));
  BOOST_TEST(std::isnan(metrics::roc_auc({0.1f, 0.2f}, {true, true})));
  // A class absent from the labels is left out of the balanced accuracy.
  const auto r2 = metrics::evaluate({0, 0, 1}, {0.9f, 0.1f, 0.f, 0.9f, 0.1f, 0.f, 0.1f, 0.9f, 0.f}, 3);
  BOOST_TEST(r2.balanced_accuracy == 1.0);
  BOOST_TEST(std::isnan(r2.recall[2]));
}

BOOST_AUTO_TEST_CASE(short_run_and_checkpoint_round_trip) {
  TempDir out;
  auto cfg = small_run(out / "run");
  const auto res = experiment::train(cfg);
  BOOST_TEST(res.epochs_done == 3);
  BOOST_TEST(fs::exists(res.best_checkpoint));
  BOOST_TEST(fs::exists(res.report));
  BOOST_TEST(fs::file_size(res.report) > 2000u);
  std::ifstream m(out / "run/metrics.jsonl");
  int lines = 0;
  for (std::string l; std::getline(m, l);) ++lines;
  BOOST_TEST(lines == 3);
  // Learning happened: the training loss fell from the first epoch to the last.
  std::ifstream m2(out / "run/metrics.jsonl");
  std::vector<double> losses;
  for (std::string l; std::getline(m2, l);) losses.push_back(json::parse(l).find("train_loss")->number());
  BOOST_TEST(losses.back() < losses.front());
  // split.csv lists every image once, and its validation rows are the images validated.
  std::ifstream sp(out / "run/split.csv");
  std::string header;
  std::getline(sp, header);
  BOOST_TEST(header == "image_id,lesion_id,dx,split,path");
  int rows = 0, val_rows = 0;
  for (std::string l; std::getline(sp, l);) ++rows, val_rows += l.find(",val,") != std::string::npos;
  BOOST_TEST(rows == 160);
  BOOST_TEST(val_rows == res.best_val.images);
  BOOST_TEST_MESSAGE("balanced accuracy after 3 epochs on 160 images: " << res.best_val.balanced_accuracy);
  {  // With a held-out test set: split.csv lists it, validation is drawn from the rest only.
    auto t = small_run(out / "test_set");
    t.epochs = 1, t.test_fraction = 0.25;
    const auto rt = experiment::train(t);
    std::ifstream st(out / "test_set/split.csv");
    std::getline(st, header);
    int n = 0, nval = 0, ntest = 0;
    for (std::string l; std::getline(st, l);)
      ++n, nval += l.find(",val,") != std::string::npos, ntest += l.find(",test,") != std::string::npos;
    BOOST_TEST(n == 160);
    BOOST_TEST(std::abs(ntest - 40) <= 8, ntest << " test images of 160 at --test-fraction 0.25");
    BOOST_TEST(nval == rt.best_val.images);
    BOOST_TEST(nval + ntest < 160);
    // The run scored its checkpoints on the test set at the end, and said so in result.json.
    BOOST_TEST_REQUIRE(rt.selected_test.has_value());
    BOOST_TEST(rt.selected_test->images == ntest);
    BOOST_TEST(rt.test_by_checkpoint.count("best") == 1u);
    BOOST_TEST(rt.test_by_checkpoint.count("last") == 1u);
    BOOST_TEST(rt.test_by_checkpoint.at("last").balanced_accuracy == rt.selected_test->balanced_accuracy);  // last handed out
    std::ifstream rj(out / "test_set/result.json");
    std::stringstream ss;
    ss << rj.rdbuf();
    const json::Value v = json::parse(ss.str());
    BOOST_TEST(v.at("test").at("images").integer() == ntest);
    BOOST_TEST(v.at("test").at("selected").at("balanced_accuracy").number() == rt.selected_test->balanced_accuracy,
               boost::test_tools::tolerance(1e-6));
    BOOST_TEST(!json::parse(
                    [&] { std::ifstream f(out / "run/result.json"); std::stringstream t; t << f.rdbuf(); return t.str(); }())
                    .find("test"));  // no test set, no test entry
    auto read_all = [](const fs::path& f) { std::ifstream in(f); std::stringstream t; t << in.rdbuf(); return t.str(); };
    BOOST_TEST(read_all(out / "test_set/report.html").find("Held-out test set") != std::string::npos);
    BOOST_TEST(read_all(out / "run/report.html").find("Held-out test set") == std::string::npos);
  }

  // The run's checkpoint describes its model.
  auto ck = experiment::load_checkpoint(res.best_checkpoint);
  BOOST_TEST(ck.info.model == "cbam_small");
  BOOST_TEST(ck.info.height == 48);
  BOOST_TEST(ck.info.classes.size() == 7u);

  // Damage: truncated file, flipped header byte, a foreign safetensors file.
  const auto bytes = [&] {
    std::ifstream f(res.best_checkpoint, std::ios::binary);
    return std::string((std::istreambuf_iterator<char>(f)), {});
  }();
  auto write = [](const std::string& p, const std::string& b) { std::ofstream(p, std::ios::binary) << b; };
  write(out / "trunc.safetensors", bytes.substr(0, bytes.size() / 2));
  expect_error([&] { experiment::load_checkpoint(out / "trunc.safetensors"); }, "trunc.safetensors");
  std::string bad = bytes;
  bad[12] = '#';
  write(out / "bad.safetensors", bad);
  expect_error([&] { experiment::load_checkpoint(out / "bad.safetensors"); }, "damaged");
  io::save_safetensors(out / "foreign.safetensors", {{"w", Tensor::zeros({2})}});
  expect_error([&] { experiment::load_checkpoint(out / "foreign.safetensors"); }, "not a dermis checkpoint");
  expect_error([&] { experiment::load_checkpoint(out / "missing.safetensors"); }, "cannot open");
}

namespace {
// python3 with numpy, if installed ("" otherwise).
std::string python_with_numpy() {
  for (const char* cand : {"/usr/bin/python3", "python3"})
    if (std::system((std::string(cand) + " -c 'import numpy' 2>/dev/null").c_str()) == 0) return cand;
  return "";
}
}  // namespace

BOOST_AUTO_TEST_CASE(any_safetensors_reader_loads_a_checkpoint,
                     *testing::needs([] { return !python_with_numpy().empty(); },
                                     [] { return std::string("python3 with numpy not found (apt-get install python3-numpy)"); })) {
  // 20 lines of numpy read a dermis checkpoint's fc.weight: its shape and the sum of its values.
  TempDir out;
  manual_seed(4);
  auto model = models::create("cbam_small", 7);
  experiment::CheckpointInfo info;
  info.model = "cbam_small";
  info.classes = {"akiec", "bcc", "bkl", "df", "mel", "nv", "vasc"};
  const std::string path = out / "m.safetensors";
  experiment::save_checkpoint(path, *model, info);
  const std::string py = python_with_numpy();
  const std::string script = out / "read.py";
  std::ofstream(script) << "import json, struct, sys\nimport numpy as np\n"
                           "b = open(sys.argv[1], 'rb').read()\n"
                           "n = struct.unpack('<Q', b[:8])[0]\n"
                           "h = json.loads(b[8:8 + n])\n"
                           "t = h['fc.weight']\n"
                           "s, e = t['data_offsets']\n"
                           "a = np.frombuffer(b[8 + n + s:8 + n + e], dtype='<f4').reshape(t['shape'])\n"
                           "print(h['__metadata__']['model'], a.shape[0], a.shape[1], repr(float(a.astype(np.float64).sum())))\n";
  const std::string cmd = py + " " + script + " " + path + " > " + (out / "py.txt");
  BOOST_REQUIRE(std::system(cmd.c_str()) == 0);
  std::ifstream f(out / "py.txt");
  std::string name;
  int rows = 0, cols = 0;
  double sum = 0;
  f >> name >> rows >> cols >> sum;
  double ours = 0;
  for (auto& [n, v] : model->named_parameters())
    if (n == "fc.weight")
      for (float q : v.value().to_vector()) ours += q;
  BOOST_TEST(name == "cbam_small");
  BOOST_TEST(rows == 7);
  BOOST_TEST(cols == 256);
  BOOST_TEST(sum == ours, boost::test_tools::tolerance(1e-9));
}

BOOST_AUTO_TEST_CASE(checkpoint_round_trip_restores_the_model_in_memory) {
  // A model trained for two steps (weights, BatchNorm running statistics and momentum all moved
  // from their initial values), saved and loaded: every parameter, buffer and momentum buffer of the
  // reloaded model equals the one in memory bit for bit, and it predicts exactly what that one does.
  TempDir out;
  manual_seed(3);
  auto model = models::create("cbam_small", 7);
  optim::SGD opt(model->parameters(), {.lr = 0.05f, .momentum = 0.9f});
  Generator g(1);
  const Tensor x = Tensor::randn({4, 3, 48, 64}, g);
  model->train();
  for (int s = 0; s < 2; ++s) {
    opt.zero_grad();
    softmax_cross_entropy(model->forward(Var(x)), {0, 3, 5, 6}).backward();
    opt.step();
  }
  experiment::CheckpointInfo info;
  info.model = "cbam_small";
  info.classes = {"akiec", "bcc", "bkl", "df", "mel", "nv", "vasc"};
  info.height = 48, info.width = 64;
  experiment::save_checkpoint(out / "m.safetensors", *model, info, &opt);
  auto ck = experiment::load_checkpoint(out / "m.safetensors");
  const auto want_p = model->named_parameters(), got_p = ck.model->named_parameters();
  BOOST_TEST_REQUIRE(want_p.size() == got_p.size());
  for (size_t i = 0; i < want_p.size(); ++i) {
    BOOST_TEST(got_p[i].first == want_p[i].first);
    BOOST_TEST(got_p[i].second.value().to_vector() == want_p[i].second.value().to_vector(), want_p[i].first);
  }
  const auto want_b = model->named_buffers(), got_b = ck.model->named_buffers();
  BOOST_TEST_REQUIRE(want_b.size() == got_b.size());
  size_t moved = 0;
  for (size_t i = 0; i < want_b.size(); ++i) {
    BOOST_TEST(got_b[i].first == want_b[i].first);
    BOOST_TEST(got_b[i].second->to_vector() == want_b[i].second->to_vector(), want_b[i].first);
    if (want_b[i].first.find("running_mean") != std::string::npos)
      for (float v : want_b[i].second->to_vector()) moved += v != 0.f;
  }
  BOOST_TEST(moved > 0u, "training moved no running mean, so the buffers' round trip proves little");
  optim::SGD opt2(ck.model->parameters(), {.lr = 0.05f, .momentum = 0.9f});
  experiment::load_optimizer_state(ck, *ck.model, opt2);
  opt.zero_grad(), opt2.zero_grad();
  model->eval(), ck.model->eval();
  {
    NoGrad ng;
    BOOST_TEST(ck.model->forward(Var(x)).value().to_vector() == model->forward(Var(x)).value().to_vector());
  }
  // The momentum came back too: one more identical step keeps the two models identical.
  model->train(), ck.model->train();
  for (auto* m : {model.get(), ck.model.get()}) {
    auto& o = m == model.get() ? opt : opt2;
    manual_seed(9);  // the same dropout masks for both
    o.zero_grad();
    softmax_cross_entropy(m->forward(Var(x)), {0, 3, 5, 6}).backward();
    o.step();
  }
  const auto after_p = model->named_parameters(), after_q = ck.model->named_parameters();
  for (size_t i = 0; i < after_p.size(); ++i)
    BOOST_TEST(after_q[i].second.value().to_vector() == after_p[i].second.value().to_vector(), after_p[i].first);
}

BOOST_AUTO_TEST_CASE(resume_equals_uninterrupted_run) {
  TempDir out;
  auto a = small_run(out / "a");
  a.ema = 0.9;  // the weight average is resumed too
  experiment::train(a);
  auto b = small_run(out / "b");
  b.ema = 0.9;
  b.stop_after = 1;
  experiment::train(b);
  experiment::TrainConfig r;
  r.resume = out / "b/last.safetensors";
  experiment::train(r);
  const auto fa = io::load_safetensors(out / "a/last.safetensors");
  const auto fb = io::load_safetensors(out / "b/last.safetensors");
  BOOST_REQUIRE(fa.tensors.size() == fb.tensors.size());
  for (size_t i = 0; i < fa.tensors.size(); ++i) {
    BOOST_TEST(fa.tensors[i].first == fb.tensors[i].first);
    BOOST_TEST(fa.tensors[i].second.to_vector() == fb.tensors[i].second.to_vector(),
               "tensor " << fa.tensors[i].first << " differs after resume");
  }
  BOOST_TEST(fa.find("ema.fc.weight") != nullptr);
  BOOST_TEST(fa.metadata.at("epoch") == "3");
  BOOST_TEST(fb.metadata.at("epoch") == "3");
}

// Progressive resizing: the epochs that start in the first half of a 3-epoch run (0 and 1) train at
// the early size, the last at --size; resume keeps the choice, also for an epoch saved mid-way.
namespace {
std::vector<std::string> train_sizes(const std::string& metrics) {
  std::vector<std::string> sizes;
  std::ifstream m(metrics);
  for (std::string l; std::getline(m, l);) sizes.push_back(json::parse(l).at("train_size").string());
  return sizes;
}
}  // namespace

BOOST_AUTO_TEST_CASE(early_size_trains_small_first_and_resumes_exactly) {
  TempDir out;
  const std::vector<std::string> expected{"32x48", "32x48", "48x64"};
  auto a = small_run(out / "a");
  a.early_height = 32, a.early_width = 48;
  const auto res = experiment::train(a);
  BOOST_TEST(res.epochs_done == 3);
  BOOST_TEST(train_sizes(out / "a/metrics.jsonl") == expected, boost::test_tools::per_element());
  // Interrupted after the first (early) epoch and resumed: the same weights as the uninterrupted run.
  auto b = small_run(out / "b");
  b.early_height = 32, b.early_width = 48, b.stop_after = 1;
  experiment::train(b);
  BOOST_TEST(!experiment::load_checkpoint(out / "b/last.safetensors").info.epoch_early);  // saved at an epoch end
  experiment::TrainConfig r;
  r.resume = out / "b/last.safetensors";
  experiment::train(r);
  BOOST_TEST(train_sizes(out / "b/metrics.jsonl") == expected, boost::test_tools::per_element());
  const auto fa = io::load_safetensors(out / "a/last.safetensors");
  const auto fb = io::load_safetensors(out / "b/last.safetensors");
  BOOST_REQUIRE(fa.tensors.size() == fb.tensors.size());
  for (size_t i = 0; i < fa.tensors.size(); ++i)
    BOOST_TEST(fa.tensors[i].second.to_vector() == fb.tensors[i].second.to_vector(),
               "tensor " << fa.tensors[i].first << " differs after resume");
  // A checkpoint saved inside an epoch records that epoch's size, and resume uses it even where the
  // run's progress alone would choose --size: epoch 3, marked early one batch in, trains at 32x48.
  auto c = small_run(out / "c");
  c.early_height = 32, c.early_width = 48, c.stop_after = 2;
  experiment::train(c);
  auto f = io::load_safetensors(out / "c/last.safetensors");
  f.metadata["epoch_progress"] = R"({"batches":1,"images":16,"loss_sum":30.0,"position":16,"early":true})";
  io::save_safetensors(out / "c/last.safetensors", f.tensors, f.metadata);
  BOOST_TEST(experiment::load_checkpoint(out / "c/last.safetensors").info.epoch_early);
  r.resume = out / "c/last.safetensors";
  experiment::train(r);
  BOOST_TEST(train_sizes(out / "c/metrics.jsonl") == (std::vector<std::string>{"32x48", "32x48", "32x48"}),
             boost::test_tools::per_element());
  // The early size must be the smaller one (checked before anything is written); the settings
  // survive the checkpoint's JSON.
  auto big = small_run(out / "d");
  big.early_height = 48, big.early_width = 64;
  expect_error([&] { big.validate(); }, "flag --early-size");
  big.height = 0, big.width = 0, big.early_height = 200, big.early_width = 300;
  expect_error([&] { experiment::train(big); }, "flag --early-size");
  BOOST_TEST(!fs::exists(out / "d"));
  a.early_fraction = 0.25;
  const auto back = experiment::TrainConfig::from_json(json::parse(json::dump(a.to_json())));
  BOOST_TEST(back.early_height == 32);
  BOOST_TEST(back.early_width == 48);
  BOOST_TEST(back.early_fraction == 0.25);
  BOOST_TEST(back.early_epoch(0.2));
  BOOST_TEST(!back.early_epoch(0.25));
  BOOST_TEST(!experiment::TrainConfig{}.early_epoch(0.0));  // off by default
}

BOOST_AUTO_TEST_CASE(class_sampling_setting_round_trips_and_reads_the_older_key) {
  using experiment::ClassSampling, experiment::ClassWeights;
  experiment::TrainConfig c;
  BOOST_TEST((c.class_sampling == ClassSampling::natural));
  BOOST_TEST(c.class_power() == 1.0);
  for (ClassSampling mode : {ClassSampling::natural, ClassSampling::sqrt, ClassSampling::balanced}) {
    c.class_sampling = mode;
    const auto back = experiment::TrainConfig::from_json(json::parse(json::dump(c.to_json())));
    BOOST_TEST((back.class_sampling == mode));
  }
  c.class_sampling = ClassSampling::sqrt;
  BOOST_TEST(c.class_power() == 0.5);
  c.class_sampling = ClassSampling::balanced;
  BOOST_TEST(c.class_power() == 0.0);
  // Checkpoints written before --class-sampling stored a boolean "balanced_sampling".
  BOOST_TEST((experiment::TrainConfig::from_json(json::parse(R"({"balanced_sampling": true})")).class_sampling ==
              ClassSampling::balanced));
  BOOST_TEST((experiment::TrainConfig::from_json(json::parse(R"({"balanced_sampling": false})")).class_sampling ==
              ClassSampling::natural));
  BOOST_TEST((experiment::TrainConfig::from_json(json::parse(R"({"class_sampling": "sqrt", "balanced_sampling": false})"))
                  .class_sampling == ClassSampling::sqrt));
  expect_error([] { experiment::TrainConfig::from_json(json::parse(R"({"class_sampling": "cube"})"), "ck.safetensors"); },
               "ck.safetensors: the training settings stored in it are invalid (setting class_sampling: expected "
               "natural, sqrt or balanced, got 'cube')");
  c.class_sampling = ClassSampling::sqrt, c.logit_adjust = 1;
  expect_error([&] { c.validate(); }, "--class-weights none");  // default sqrt weights would correct twice
  c.class_weights = ClassWeights::none;
  c.validate();  // logit adjustment to the square-root prior is allowed
  c.class_sampling = ClassSampling::balanced;
  expect_error([&] { c.validate(); }, "flag --logit-adjust");
}

// The option table: every setting survives the JSON of a checkpoint, stored settings are
// range-checked as flags are, and the flags are made from the same table.
BOOST_AUTO_TEST_CASE(every_setting_round_trips_and_stored_settings_are_checked) {
  experiment::TrainConfig c;
  c.data = "ham", c.images = "imgs", c.skip_bad_images = true, c.val_fraction = 0.3, c.synthetic_count = 99;
  c.model = "resnet18", c.height = 64, c.width = 80, c.early_height = 32, c.early_width = 48, c.early_fraction = 0.3;
  c.batch = 8, c.epochs = 7, c.minutes = 2.5, c.lr = 0.01, c.momentum = 0.8, c.weight_decay = 1e-3, c.nesterov = false;
  c.schedule.kind = optim::ScheduleKind::multistep, c.schedule.gamma = 0.5, c.schedule.step_size = 3;
  c.schedule.milestones = {2, 5}, c.schedule.plateau_factor = 0.2, c.schedule.plateau_patience = 4;
  c.schedule.plateau_threshold = 0.01, c.schedule.plateau_cooldown = 1, c.schedule.min_lr = 1e-4;
  c.schedule.warmup_epochs = 0.5, c.plateau_metric = experiment::PlateauMetric::loss;
  c.class_weights = experiment::ClassWeights::inverse, c.label_smoothing = 0.05;
  c.class_sampling = experiment::ClassSampling::sqrt, c.sync_bn = true, c.ema = 0.99;
  c.nonfinite = experiment::NonfinitePolicy::skip, c.conv = ConvAlgorithm::direct;
  c.precision = experiment::Precision::bf16, c.crop_scale_min = 0.4, c.rotate_degrees = 30, c.jitter = 0.2;
  c.hue = 0.05, c.seed = (1ULL << 62) + 3, c.threads = 3, c.loader_threads = 2, c.cache = true, c.out = "o";
  c.report_images = 5;
  const std::string text = json::dump(c.to_json());
  const std::string again = json::dump(experiment::TrainConfig::from_json(json::parse(text)).to_json());
  BOOST_TEST(again == text);
  BOOST_TEST(text.find(R"("schedule":"multistep")") != std::string::npos);
  BOOST_TEST(text.find(R"("seed":"4611686018427387907")") != std::string::npos);  // exact beyond 2^53
  // Stored settings out of range, of the wrong type or unknown are errors naming the setting.
  auto stored = [&](const std::string& key, const std::string& value) {
    std::string t = text;
    const std::string k = "\"" + key + "\":";
    const size_t at = t.find(k) + k.size();
    t.replace(at, t.find_first_of(",}", at) - at, value);
    return json::parse(t);
  };
  for (auto [key, value, needle] : std::vector<std::tuple<std::string, std::string, std::string>>{
           {"lr", "100", "setting lr: 100 is out of range"},
           {"batch", "0", "setting batch: 0 is out of range"},
           {"batch", "1e300", "setting batch"},
           {"height", "8", "setting height: 8x80 is not a size"},
           {"schedule", "\"linear\"", "setting schedule: expected step, multistep, cosine, plateau or constant"},
           {"model", "\"resnet50\"", "setting model: unknown model 'resnet50'; choose one of"},
           {"momentum", "\"fast\"", "setting momentum"},
           {"seed", "\"-1\"", "setting seed"}})
    expect_error([&] { experiment::TrainConfig::from_json(stored(key, value), "x.safetensors"); },
                 "x.safetensors: the training settings stored in it are invalid (" + needle);
  // The flags come from the same table (--help shows the recommended recipe's defaults).
  cli::Args a("usage");
  experiment::add_train_flags(a);
  const std::vector<std::string> argv_s = {"train", "--lr", "0.2", "--schedule", "step", "--gamma", "0.5"};
  std::vector<char*> argv;
  for (auto& x : argv_s) argv.push_back(const_cast<char*>(x.c_str()));
  BOOST_REQUIRE(a.parse(static_cast<int>(argv.size()), argv.data()));
  const auto f = experiment::train_config_from_flags(a);
  BOOST_TEST(f.lr == 0.2);
  BOOST_TEST((f.schedule.kind == optim::ScheduleKind::step));
  BOOST_TEST(f.schedule.gamma == 0.5);
  BOOST_TEST(a.str("weight-decay") == "0.0005");
  BOOST_TEST(f.weight_decay == experiment::TrainConfig{}.weight_decay);
}

namespace {
// tools/train's settings from its arguments (without the program name).
experiment::TrainConfig parse_train_flags(std::vector<std::string> argv_s) {
  cli::Args a("usage");
  experiment::add_train_flags(a);
  argv_s.insert(argv_s.begin(), "train");
  std::vector<char*> argv;
  for (auto& x : argv_s) argv.push_back(const_cast<char*>(x.c_str()));
  BOOST_REQUIRE(a.parse(static_cast<int>(argv.size()), argv.data()));
  return experiment::train_config_from_flags(a);
}
}  // namespace

// A flag the run would ignore is an error naming it.
BOOST_AUTO_TEST_CASE(flags_the_run_would_ignore_are_errors) {
  const auto parse = parse_train_flags;
  expect_error([&] { parse({"--gamma", "0.5"}); }, "flag --gamma applies only with --schedule step or multistep");
  expect_error([&] { parse({"--schedule", "step", "--milestones", "3"}); },
               "flag --milestones applies only with --schedule multistep");
  expect_error([&] { parse({"--plateau-patience", "2"}); }, "flag --plateau-patience applies only with --schedule plateau");
  expect_error([&] { parse({"--images", "x"}); }, "flag --images applies only with --data");
  expect_error([&] { parse({"--data", "d", "--synthetic-count", "100"}); }, "flag --synthetic-count applies only with");
  expect_error([&] { parse({"--early-fraction", "0.3"}); }, "flag --early-fraction applies only with --early-size");
  expect_error([&] { parse({"--swa-start", "0", "--swa-lr", "0.01"}); }, "flag --swa-lr applies only with --swa-start");
  expect_error([&] { parse({"--lr", "0.01", "--swa-lr", "0.02"}); },
               "the SWA learning rate must be in [0, lr 0.01], got 0.02");
  BOOST_TEST(parse({"--swa-lr", "0.01"}).schedule.swa_lr == 0.01);
  expect_error([&] { parse({"--resume", "r.safetensors", "--lr", "0.1"}); }, "flag --lr cannot be given with --resume");
  const auto r = parse({"--resume", "r.safetensors", "--stop-after", "2", "--threads", "1"});
  BOOST_TEST(r.stop_after == 2);
  BOOST_TEST(r.threads == 1);
  const auto p = parse({"--schedule", "plateau", "--plateau-patience", "2", "--min-lr", "1e-4"});
  BOOST_TEST(p.schedule.plateau_patience == 2);
}

// train starts from the recommended recipe (its --help defaults), --recipe reference from the struct's
// defaults, and a given flag wins over either; a checkpoint stores the resolved settings.
BOOST_AUTO_TEST_CASE(recipes_are_where_the_flags_start) {
  using experiment::ClassSampling, experiment::ClassWeights;
  const auto rec = parse_train_flags({});
  BOOST_TEST((rec.class_sampling == ClassSampling::balanced));
  BOOST_TEST((rec.class_weights == ClassWeights::none));
  BOOST_TEST(rec.label_smoothing == 0.0);
  BOOST_TEST(rec.schedule.warmup_epochs == 1.0);
  BOOST_TEST(rec.swa_start == 0.7);
  BOOST_TEST((rec.mix == experiment::Mixing::mixup));
  BOOST_TEST((rec.selected() == experiment::Select::swa));
  BOOST_TEST(json::dump(rec.to_json()) == json::dump(experiment::recipe_settings(experiment::Recipe::recommended).to_json()));
  const auto ref = parse_train_flags({"--recipe", "reference"});
  BOOST_TEST(json::dump(ref.to_json()) == json::dump(experiment::TrainConfig{}.to_json()));
  BOOST_TEST(json::dump(ref.to_json()) != json::dump(rec.to_json()));
  const auto mixed = parse_train_flags({"--recipe", "reference", "--balanced-sampling", "--swa-start", "0.5"});
  BOOST_TEST((mixed.class_sampling == ClassSampling::balanced));
  BOOST_TEST((mixed.class_weights == ClassWeights::sqrt));
  BOOST_TEST(mixed.swa_start == 0.5);
  BOOST_TEST((mixed.mix == experiment::Mixing::none));
  const auto natural = parse_train_flags({"--class-sampling", "natural", "--label-smoothing", "0.1"});
  BOOST_TEST((natural.class_sampling == ClassSampling::natural));
  BOOST_TEST(natural.label_smoothing == 0.1);
  BOOST_TEST(natural.swa_start == 0.7);
  // the resolved settings round-trip through a checkpoint's JSON, whichever recipe made them
  BOOST_TEST(json::dump(experiment::TrainConfig::from_json(rec.to_json()).to_json()) == json::dump(rec.to_json()));
  expect_error([] { parse_train_flags({"--recipe", "fast"}); }, "flag --recipe: expected recommended or reference");
  expect_error([] { parse_train_flags({"--logit-adjust", "1"}); }, "add --class-sampling natural or sqrt");
}
