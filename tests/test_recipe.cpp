// The recipe options of train and the tools that score them: mixup and CutMix against their
// definitions, the Beta sampler's moments, the decision rule's class priors (Bayes' rule against a
// hand computation, round trips), stochastic weight averaging (the average is the mean of the
// epoch-end weights, also across --resume, and its BatchNorm statistics are recomputed; the
// averages leave the trained weights as they are), k-fold runs validating on their fold, the
// handed-out checkpoint and result.json, evaluate's ensembles and priors, and train validating
// with the decision prior its checkpoint records.
#define BOOST_TEST_MODULE recipe
#include <boost/test/unit_test.hpp>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <unistd.h>

#include "datasets/ham10000.h"
#include "datasets/split.h"
#include "datasets/synthetic_ham.h"
#include "framework/io/safetensors.h"
#include "framework/random.h"
#include "tools/experiment/checkpoint.h"
#include "tools/experiment/decision.h"
#include "tools/experiment/mixing.h"
#include "tools/experiment/tools.h"
#include "tools/experiment/trainer.h"
#include "run_fixtures.h"
#include "testing.h"

using namespace dermis;
namespace fs = std::filesystem;
using testing::expect_error;
using testing::TempDir;

namespace {
const std::string& dataset() { return testing::synthetic_ham(5); }

experiment::TrainConfig small_run(const std::string& out) { return testing::small_run(dataset(), out, 4); }

json::Value read_json(const std::string& path) {
  std::ifstream f(path);
  std::stringstream ss;
  ss << f.rdbuf();
  return json::parse(ss.str(), path);
}

// metrics.jsonl: one object per epoch.
std::vector<json::Value> read_jsonl(const std::string& path) {
  std::ifstream f(path);
  std::vector<json::Value> lines;
  for (std::string line; std::getline(f, line);)
    if (!line.empty()) lines.push_back(json::parse(line, path));
  return lines;
}

// Runs a tool main with arguments, its stdout captured into a file; returns the exit code.
int run_tool(int (*main_fn)(int, char**), std::vector<std::string> args, const std::string& out_file) {
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  std::fflush(stdout);
  const int saved = dup(fileno(stdout));
  FILE* f = std::fopen(out_file.c_str(), "w");
  dup2(fileno(f), fileno(stdout));
  const int rc = main_fn(static_cast<int>(argv.size()), argv.data());
  std::fflush(stdout);
  dup2(saved, fileno(stdout));
  close(saved);
  std::fclose(f);
  return rc;
}
}  // namespace

BOOST_AUTO_TEST_CASE(beta_sampler_has_the_moments_of_beta) {
  Generator g(7);
  for (double a : {0.2, 1.0, 3.0}) {
    const int n = 20000;
    double s = 0, s2 = 0;
    for (int i = 0; i < n; ++i) {
      const double x = experiment::sample_beta(g, a, a);
      BOOST_REQUIRE(x >= 0.0);
      BOOST_REQUIRE(x <= 1.0);
      s += x, s2 += x * x;
    }
    const double m = s / n, var = s2 / n - m * m, want = 1 / (4 * (2 * a + 1));
    BOOST_TEST(std::abs(m - 0.5) < 0.01, "Beta(" << a << ") mean " << m);
    BOOST_TEST(std::abs(var - want) < 0.1 * want, "Beta(" << a << ") variance " << var << " vs " << want);
  }
}

BOOST_AUTO_TEST_CASE(mixup_and_cutmix_follow_their_definitions) {
  Generator g(11);
  const Tensor x = Tensor::uniform({6, 3, 10, 12}, g, -1.f, 1.f);
  // mixup: every element is lam * own + (1 - lam) * partner's.
  Tensor y = x.clone();
  Generator gm(3);
  const auto m = experiment::mix_batch(y, experiment::MixKind::mixup, 0.4, gm);
  BOOST_TEST(m.lam > 0.0);
  BOOST_TEST(m.lam < 1.0);
  std::vector<int> seen(6, 0);
  for (int i = 0; i < 6; ++i) seen[m.partner[i]]++;
  for (int c : seen) BOOST_TEST(c == 1);  // a permutation
  double worst = 0;
  for (int64_t i = 0; i < 6; ++i)
    for (int64_t k = 0; k < 3 * 10 * 12; ++k) {
      const double want = m.lam * x.data()[i * 360 + k] + (1 - m.lam) * x.data()[m.partner[i] * 360 + k];
      worst = std::max(worst, std::abs(want - y.data()[i * 360 + k]));
    }
  BOOST_TEST(worst < 1e-6);
  // cutmix: every pixel is its own or the partner's (all channels alike), and lam is the own share.
  for (uint64_t seed : {1, 2, 3, 4}) {
    Tensor z = x.clone();
    Generator gc(seed);
    const auto c = experiment::mix_batch(z, experiment::MixKind::cutmix, 1.0, gc);
    for (int64_t i = 0; i < 6; ++i) {
      int64_t own = 0;
      for (int64_t p = 0; p < 120; ++p) {
        const bool is_own = z.data()[i * 360 + p] == x.data()[i * 360 + p] &&
                            z.data()[i * 360 + 120 + p] == x.data()[i * 360 + 120 + p];
        const bool is_partner = z.data()[i * 360 + p] == x.data()[c.partner[i] * 360 + p];
        BOOST_REQUIRE(is_own || is_partner);
        own += is_own && !is_partner;
      }
      if (c.partner[i] != i) BOOST_TEST(std::abs(static_cast<double>(own) / 120 - c.lam) < 1e-9);
    }
  }
}

BOOST_AUTO_TEST_CASE(decision_priors_follow_bayes_rule) {
  const std::vector<int64_t> counts = {30, 50, 110, 10, 110, 670, 20};
  // Balanced sampling: uniform; the natural mix: the frequencies; natural + logit adjustment tau 1: uniform.
  const auto uni = experiment::trained_class_prior(counts, 0.0, {}, 0);
  const auto nat = experiment::trained_class_prior(counts, 1.0, {}, 0);
  const auto adj = experiment::trained_class_prior(counts, 1.0, {}, 1.0);
  const auto freq = experiment::frequency_prior(counts);
  for (size_t k = 0; k < 7; ++k) {
    BOOST_TEST(std::abs(uni[k] - 1.0 / 7) < 1e-12);
    BOOST_TEST(std::abs(adj[k] - 1.0 / 7) < 1e-12);
    BOOST_TEST(std::abs(nat[k] - counts[k] / 1000.0) < 1e-12);
    BOOST_TEST(std::abs(freq[k] - counts[k] / 1000.0) < 1e-12);
  }
  // Inverse-frequency loss weights on the natural mix also train towards a uniform prior.
  std::vector<float> w(7);
  for (size_t k = 0; k < 7; ++k) w[k] = static_cast<float>(1000.0 / (7 * counts[k]));
  const auto inv = experiment::trained_class_prior(counts, 1.0, w, 0);
  for (size_t k = 0; k < 7; ++k) BOOST_TEST(std::abs(inv[k] - 1.0 / 7) < 1e-6);
  // Bayes' rule by hand for two classes: p = (0.5, 0.5) under a uniform prior, target (0.9, 0.1).
  std::vector<float> p = {0.5f, 0.5f, 0.8f, 0.2f};
  experiment::shift_prior(p, {0.5, 0.5}, {0.9, 0.1});
  BOOST_TEST(std::abs(p[0] - 0.9f) < 1e-6);
  BOOST_TEST(std::abs(p[2] - 0.8 * 0.9 / (0.8 * 0.9 + 0.2 * 0.1)) < 1e-6);
  // There and back is the identity; an empty target changes nothing.
  Generator g(5);
  std::vector<float> q(7 * 20), q0;
  for (size_t i = 0; i < q.size(); i += 7) {
    float s = 0;
    for (size_t k = 0; k < 7; ++k) s += (q[i + k] = g.uniform() + 0.01f);
    for (size_t k = 0; k < 7; ++k) q[i + k] /= s;
  }
  q0 = q;
  experiment::shift_prior(q, uni, freq);
  experiment::shift_prior(q, freq, uni);
  for (size_t i = 0; i < q.size(); ++i) BOOST_TEST(std::abs(q[i] - q0[i]) < 1e-5);
  experiment::shift_prior(q, uni, {});
  for (size_t i = 0; i < q.size(); ++i) BOOST_TEST(std::abs(q[i] - q0[i]) < 1e-5);
}

// SWA over the epochs that end after half of a 4-epoch run (3 and 4): the average's parameters are
// the mean of the weights after epochs 3 and 4 (the run stopped after 3 and resumed, which also
// checks that the average survives --resume), its BatchNorm statistics are its own, and the run
// hands it out as model.safetensors with result.json.
BOOST_AUTO_TEST_CASE(swa_is_the_mean_of_epoch_end_weights_and_is_handed_out) {
  TempDir out;
  auto c = small_run(out / "run");
  c.swa_start = 0.5, c.mix = experiment::Mixing::both, c.color_constancy = 6;
  c.class_sampling = experiment::ClassSampling::balanced, c.class_weights = experiment::ClassWeights::none;
  c.stop_after = 3;
  experiment::train(c);
  const auto w3 = io::load_safetensors(out / "run/last.safetensors");
  BOOST_TEST(w3.metadata.at("swa_count") == "1");
  experiment::TrainConfig r;
  r.resume = out / "run/last.safetensors";
  const auto res = experiment::train(r);
  BOOST_TEST(res.selected == "swa");
  BOOST_TEST(res.selected_checkpoint == out / "run/swa.safetensors");
  const auto w4 = io::load_safetensors(out / "run/last.safetensors");
  const auto swa = io::load_safetensors(out / "run/swa.safetensors");
  BOOST_TEST(swa.metadata.at("swa_count") == "2");
  auto ck = experiment::load_checkpoint(out / "run/swa.safetensors");
  int checked = 0;
  for (auto& [name, p] : ck.model->named_parameters()) {
    const auto a = w3.find(name)->to_vector(), b = w4.find(name)->to_vector(), s = p.value().to_vector();
    double worst = 0;
    for (size_t i = 0; i < s.size(); ++i) worst = std::max(worst, std::abs(0.5 * (a[i] + b[i]) - s[i]));
    BOOST_TEST(worst < 1e-6, name << " is not the mean of the epoch-end weights: " << worst);
    ++checked;
  }
  BOOST_TEST(checked > 10);
  // BatchNorm statistics recomputed for the average: finite, and not a copy of the last weights'.
  const auto rm = swa.find("stem.1.running_mean");
  BOOST_REQUIRE(rm != nullptr);
  bool differs = false;
  for (float v : rm->to_vector()) BOOST_TEST(std::isfinite(v));
  const auto lm = w4.find("stem.1.running_mean")->to_vector(), sm = rm->to_vector();
  for (size_t i = 0; i < sm.size(); ++i) differs = differs || sm[i] != lm[i];
  BOOST_TEST(differs);
  // The handed-out file and result.json.
  BOOST_TEST(fs::exists(out / "run/model.safetensors"));
  const auto handed = io::load_safetensors(out / "run/model.safetensors");
  BOOST_TEST(handed.find("optimizer.momentum.fc.weight") == nullptr);
  BOOST_TEST(handed.find("stem.1.running_mean")->to_vector() == sm);
  const json::Value j = read_json(out / "run/result.json");
  BOOST_TEST(j.at("selected").string() == "swa");
  BOOST_TEST(std::abs(j.at("val").at("balanced_accuracy").number() - res.selected_val.balanced_accuracy) < 1e-9);
  BOOST_TEST(j.at("val_train_prior").find("accuracy") != nullptr);
  BOOST_TEST(j.at("config").at("color_constancy").number() == 6.0);
  // Its throughput is the mean of the four epochs' in metrics.jsonl, the three before the resume included.
  const auto epochs = read_jsonl(out / "run/metrics.jsonl");
  double img_s_sum = 0;
  for (const auto& e : epochs) img_s_sum += e.at("train_img_s").number();
  BOOST_TEST(epochs.size() == 4u);
  BOOST_TEST(std::abs(j.at("train_img_s").number() - img_s_sum / 4) < 1e-6 * img_s_sum);
  // The checkpoint records its priors: balanced sampling trained towards a uniform prior.
  for (double v : ck.info.trained_prior) BOOST_TEST(std::abs(v - 1.0 / 7) < 1e-9);
  double s = 0;
  for (double v : ck.info.train_prior) s += v;
  BOOST_TEST(std::abs(s - 1) < 1e-9);
}

// The weight averages run beside training and must not change it: the same seed trains the same
// weights and losses with --swa-start and --ema as without (the averages' own
// initialisation and the SWA BatchNorm pass, whose forward runs dropout, used to draw from the
// run's random stream and so moved its dropout masks from the first epoch on).
BOOST_AUTO_TEST_CASE(weight_averages_leave_the_trained_weights_unchanged) {
  TempDir out;
  auto plain = small_run(out / "plain");
  plain.epochs = 3;
  experiment::train(plain);
  auto averaged = small_run(out / "averaged");
  averaged.epochs = 3, averaged.swa_start = 0.5, averaged.ema = 0.9;
  experiment::train(averaged);
  const auto a = io::load_safetensors(out / "plain/last.safetensors");
  const auto b = io::load_safetensors(out / "averaged/last.safetensors");
  BOOST_REQUIRE(b.metadata.at("swa_count") == "2");  // the average was updated after epochs 2 and 3
  int compared = 0;
  for (const auto& name : {"stem.0.weight", "stem.1.running_mean", "fc.weight", "fc.bias"}) {
    const auto* ta = a.find(name);
    const auto* tb = b.find(name);
    BOOST_REQUIRE_MESSAGE(ta && tb, name << " missing");
    BOOST_TEST(ta->to_vector() == tb->to_vector(), name << " differs between the runs");
    ++compared;
  }
  BOOST_TEST(compared == 4);
  const auto ea = read_jsonl(out / "plain/metrics.jsonl"), eb = read_jsonl(out / "averaged/metrics.jsonl");
  BOOST_REQUIRE(ea.size() == 3u);
  BOOST_REQUIRE(eb.size() == 3u);
  for (size_t e = 0; e < 3; ++e)  // (validation differs: with --ema it scores the average)
    BOOST_TEST(ea[e].at("train_loss").number() == eb[e].at("train_loss").number(), "epoch " << e + 1);
}

BOOST_AUTO_TEST_CASE(kfold_runs_validate_on_their_fold_and_evaluate_agrees) {
  TempDir out;
  auto c = small_run(out / "f1");
  c.epochs = 1, c.folds = 3, c.fold = 1, c.seed = 4;
  const auto res = experiment::train(c);
  const auto ds = datasets::read_ham10000(dataset(), {});
  const auto want = datasets::grouped_kfold(ds, 3, 1, 4);
  BOOST_TEST(res.selected_val.images == static_cast<int64_t>(want.val.size()));
  std::ifstream sp(out / "f1/split.csv");
  std::string line;
  std::getline(sp, line);
  size_t row = 0, vi = 0;
  bool same = true;
  for (; std::getline(sp, line); ++row) {
    const bool val = line.find(",val,") != std::string::npos;
    const bool should = vi < want.val.size() && want.val[vi] == row;
    if (should) ++vi;
    same = same && val == should;
  }
  BOOST_TEST(same);
  // evaluate --split val scores the same images, and an ensemble of a checkpoint with itself gives
  // its own figures; every prior is reported.
  const std::string ck = out / "f1/model.safetensors";
  BOOST_REQUIRE(run_tool(experiment::evaluate_main,
                         {"evaluate", "--checkpoint", ck, "--data", dataset(), "--split", "val", "--threads", "2"},
                         out / "one.json") == 0);
  BOOST_REQUIRE(run_tool(experiment::evaluate_main,
                         {"evaluate", "--checkpoint", ck + "," + ck, "--data", dataset(), "--split", "val", "--prior",
                          "none", "--threads", "2"},
                         out / "two.json") == 0);
  std::ifstream f1(out / "one.json"), f2(out / "two.json");
  std::string s1, s2;
  std::getline(f1, s1), std::getline(f2, s2);
  const json::Value one = json::parse(s1), two = json::parse(s2);
  BOOST_TEST(one.at("images").integer() == static_cast<int64_t>(want.val.size()));
  BOOST_TEST(std::abs(one.at("balanced_accuracy").number() - res.selected_val.balanced_accuracy) < 1e-9);
  BOOST_TEST(std::abs(two.at("balanced_accuracy").number() - one.at("balanced_accuracy").number()) < 1e-9);
  BOOST_TEST(std::abs(two.at("loss").number() - one.at("loss").number()) < 1e-5);
  BOOST_TEST(one.at("prior").string() == "none");
  for (const char* p : {"none", "train", "uniform"}) BOOST_TEST(one.at("by_prior").find(p) != nullptr);
  BOOST_TEST(one.at("clinical").find("roc") != nullptr);
  BOOST_TEST(std::abs(one.at("by_prior").at("train").at("accuracy").number() -
                      res.selected_val_train_prior.accuracy) < 1e-9);
}

// A run with a --decision-prior other than none validates, selects and reports with it: what train
// says of its epochs and of the handed-out checkpoint is what evaluate says by default (the
// checkpoint's prior), not what the probabilities as trained would decide.
BOOST_AUTO_TEST_CASE(train_validates_with_its_decision_prior) {
  TempDir out;
  auto c = small_run(out / "u");
  c.epochs = 6, c.seed = 2;
  c.class_sampling = experiment::ClassSampling::natural, c.class_weights = experiment::ClassWeights::none;
  c.decision_prior = experiment::DecisionPrior::uniform;
  const auto res = experiment::train(c);
  const auto score = [&](const std::string& ck, const std::string& file) {
    BOOST_REQUIRE(run_tool(experiment::evaluate_main,
                           {"evaluate", "--checkpoint", ck, "--data", dataset(), "--split", "val", "--threads", "2"},
                           out / file) == 0);
    return read_json(out / file);
  };
  const json::Value handed = score(out / "u/model.safetensors", "handed.json");
  const json::Value last = score(out / "u/last.safetensors", "last.json");
  BOOST_TEST(handed.at("prior").string() == "uniform");
  const json::Value& by = handed.at("by_prior");
  // The shift decides differently here, so agreeing with one of the two is not an accident.
  BOOST_REQUIRE(by.at("none").at("balanced_accuracy").number() != by.at("uniform").at("balanced_accuracy").number());
  BOOST_TEST(std::abs(handed.at("balanced_accuracy").number() - res.selected_val.balanced_accuracy) < 1e-9);
  BOOST_TEST(std::abs(by.at("train").at("accuracy").number() - res.selected_val_train_prior.accuracy) < 1e-9);
  // The last epoch's line in metrics.jsonl (validation during training).
  const auto epochs = read_jsonl(out / "u/metrics.jsonl");
  BOOST_REQUIRE(!epochs.empty());
  const json::Value& epoch = epochs.back();
  BOOST_TEST(epoch.at("epoch").integer() == 6);
  BOOST_TEST(std::abs(epoch.at("val").at("balanced_accuracy").number() - last.at("balanced_accuracy").number()) < 1e-9);
}

BOOST_AUTO_TEST_CASE(recipe_flags_are_checked) {
  TempDir out;
  auto c = small_run(out / "x");
  c.folds = 3, c.fold = 3;
  expect_error([&] { c.validate(); }, "--fold");
  c.folds = 1, c.fold = 0;
  expect_error([&] { c.validate(); }, "--folds");
  c.folds = 0, c.select = experiment::Select::swa;
  expect_error([&] { c.validate(); }, "--swa-start");
}
