// Crash safety of tools/train, tried for real on the process: SIGKILL in the middle of an epoch and
// in the middle of writing a checkpoint, SIGINT/SIGTERM, a non-finite loss, an unwritable run
// folder and a full disk. After each interruption `--resume` must finish the run with exactly the
// weights of an uninterrupted run (same seed and thread count: every step is deterministic).
// Faults inside the process are injected with DERMIS_FAULT (framework/fault.h).
#define BOOST_TEST_MODULE crash
#include <boost/test/unit_test.hpp>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <sstream>
#include <string>
#include <vector>

#include "framework/io/safetensors.h"
#include "process.h"
#include "testing.h"

using namespace dermis;
using testing::Outcome;
using testing::TempDir;
namespace fs = std::filesystem;

namespace {

std::string train_binary() {
  const char* p = std::getenv("DERMIS_TRAIN_BIN");
  BOOST_REQUIRE_MESSAGE(p && fs::exists(p), "DERMIS_TRAIN_BIN must name the tools/train binary");
  return p;
}

// A small, fast run: 3 epochs of 39 steps (399 training images, batch 10); the progress line is
// printed every 7 steps.
std::vector<std::string> run_args(const std::string& out) {
  return {"--synthetic-count", "500", "--model", "cbam_small", "--size", "40x48", "--batch", "10", "--epochs", "3",
          "--val-fraction", "0.2", "--threads", "2", "--loader-threads", "1", "--report-images", "0",
          "--ema", "0.9", "--out", out};
}

Outcome run_train(const std::vector<std::string>& args, const std::vector<std::string>& env = {},
                  std::function<bool(const std::string&)> trigger = {}, int sig = SIGKILL) {
  return testing::run_process(train_binary(), args, env, std::move(trigger), sig);
}

bool contains(const std::string& s, const std::string& needle) { return s.find(needle) != std::string::npos; }

// Every tensor (weights, buffers, momentum, weight average) equal, bit for bit.
void expect_same_weights(const std::string& a, const std::string& b) {
  const auto fa = io::load_safetensors(a), fb = io::load_safetensors(b);
  BOOST_REQUIRE(fa.tensors.size() == fb.tensors.size());
  size_t differing = 0;
  for (size_t i = 0; i < fa.tensors.size(); ++i) {
    BOOST_TEST(fa.tensors[i].first == fb.tensors[i].first);
    if (fa.tensors[i].second.to_vector() != fb.tensors[i].second.to_vector()) ++differing;
  }
  BOOST_TEST(differing == 0u, differing << " of " << fa.tensors.size() << " tensors differ between " << a << " and "
                                        << b);
  BOOST_TEST(fa.metadata.at("epoch") == fb.metadata.at("epoch"));
}

int metrics_lines(const std::string& dir) {
  std::ifstream f(dir + "/metrics.jsonl");
  int n = 0;
  for (std::string l; std::getline(f, l);) ++n;
  return n;
}

bool has_temporaries(const std::string& dir) {
  for (auto& e : fs::directory_iterator(dir))
    if (contains(e.path().filename().string(), ".tmp")) return true;
  return false;
}

// The uninterrupted reference run, made once.
const std::string& reference() {
  static TempDir dir;
  static std::string last;
  if (last.empty()) {
    const Outcome o = run_train(run_args(dir / "ref"));
    BOOST_REQUIRE_MESSAGE(o.exit_code == 0, "the reference run failed: " << o.err);
    last = dir / "ref/last.safetensors";
  }
  return last;
}

auto at_step_of_epoch(int epoch, int step) {
  const std::string needle = "epoch " + std::to_string(epoch) + "/3  step " + std::to_string(step) + "/";
  return [needle](const std::string& line) { return contains(line, needle); };
}

}  // namespace

BOOST_AUTO_TEST_CASE(sigkill_mid_epoch_then_resume_matches_uninterrupted_run) {
  const std::string ref = reference();
  TempDir t;
  const Outcome o = run_train(run_args(t / "run"), {}, at_step_of_epoch(2, 14));
  BOOST_TEST(o.signal == SIGKILL);
  BOOST_TEST(metrics_lines(t / "run") == 1);  // killed inside epoch 2
  BOOST_TEST(io::load_safetensors(t / "run/last.safetensors").metadata.at("epoch") == "1");
  const Outcome r = run_train({"--resume", t / "run/last.safetensors"});
  BOOST_TEST(r.exit_code == 0);
  expect_same_weights(ref, t / "run/last.safetensors");
  BOOST_TEST(metrics_lines(t / "run") == 3);
}

BOOST_AUTO_TEST_CASE(sigkill_while_writing_a_checkpoint_keeps_the_previous_one) {
  const std::string ref = reference();
  TempDir t;
  // Saves: epoch 1 best (1), last (2); the third save (epoch 2) is killed halfway through.
  const Outcome o = run_train(run_args(t / "run"), {"DERMIS_FAULT=kill_in_save=3"});
  BOOST_TEST(o.signal == SIGKILL);
  BOOST_TEST(has_temporaries(t / "run"));  // the half-written file is there, under its temporary name
  const auto last = io::load_safetensors(t / "run/last.safetensors");  // whole, and from epoch 1
  BOOST_TEST(last.metadata.at("epoch") == "1");
  const Outcome r = run_train({"--resume", t / "run/last.safetensors"});
  BOOST_TEST(r.exit_code == 0);
  BOOST_TEST(!has_temporaries(t / "run"));
  BOOST_TEST(metrics_lines(t / "run") == 3);  // epoch 2's line from the killed run is not repeated
  expect_same_weights(ref, t / "run/last.safetensors");
}

BOOST_AUTO_TEST_CASE(sigint_and_sigterm_save_mid_epoch_and_resume_exactly) {
  const std::string ref = reference();
  for (int sig : {SIGINT, SIGTERM}) {
    TempDir t;
    const Outcome o = run_train(run_args(t / "run"), {}, at_step_of_epoch(2, 7), sig);
    BOOST_TEST(o.exit_code == 128 + sig);
    BOOST_TEST(contains(o.out, sig == SIGINT ? "SIGINT received: stopped after epoch 2 step"
                                             : "SIGTERM received: stopped after epoch 2 step"));
    BOOST_TEST(contains(o.out, "continue it with: train --resume"));
    const auto last = io::load_safetensors(t / "run/last.safetensors");
    BOOST_TEST(last.metadata.at("epoch") == "1");
    BOOST_TEST(!contains(last.metadata.at("epoch_progress"), "\"batches\":0,"));  // saved mid-epoch
    const Outcome r = run_train({"--resume", t / "run/last.safetensors"});
    BOOST_TEST(r.exit_code == 0);
    expect_same_weights(ref, t / "run/last.safetensors");
  }
}

BOOST_AUTO_TEST_CASE(nonfinite_loss_stops_naming_step_and_tensor) {
  TempDir t;
  // Step 44 is the 5th step of epoch 2.
  const Outcome o = run_train(run_args(t / "run"), {"DERMIS_FAULT=nan_at_step=44"});
  BOOST_TEST(o.exit_code == 2);
  // ReLU and max pooling drop NaNs (max(0, NaN) = 0), so the logits stay finite; BatchNorm's
  // batch statistics do not, and the first gradient backward finds non-finite is the stem's BN.
  BOOST_TEST(contains(o.err, "the gradient of stem.1.weight is not finite at epoch 2 step 5 (optimiser step 44)"));
  BOOST_TEST(contains(o.err, "last good checkpoint is"));
  BOOST_TEST(io::load_safetensors(t / "run/last.safetensors").metadata.at("epoch") == "1");

  TempDir s;
  auto args = run_args(s / "run");
  args.insert(args.end(), {"--nonfinite", "skip"});
  const Outcome k = run_train(args, {"DERMIS_FAULT=nan_at_step=44"});
  BOOST_TEST(k.exit_code == 0);
  BOOST_TEST(contains(k.err, "is not finite at epoch 2 step 5 (optimiser step 44); the step is skipped"));
  BOOST_TEST(contains(k.out, "epoch 2: 1 step(s) skipped"));
  for (auto& [n, v] : io::load_safetensors(s / "run/last.safetensors").tensors)
    for (float x : v.to_vector()) BOOST_REQUIRE_MESSAGE(std::isfinite(x), n << " holds a non-finite value");
}

BOOST_AUTO_TEST_CASE(unwritable_folder_and_full_disk) {
  TempDir t;
  {  // a run folder that cannot exist: an error before any training
    std::ofstream(t / "file") << "x";
    const Outcome o = run_train(run_args(t / "file/run"));
    BOOST_TEST(o.exit_code == 2);
    BOOST_TEST(contains(o.err, "cannot create the run folder"));
    BOOST_TEST(!contains(o.out, "epoch 1"));
  }
  {  // the disk fills up while the first "last" checkpoint is written: no last.safetensors at all
    const Outcome o = run_train(run_args(t / "a"), {"DERMIS_FAULT=enospc_in_save=2"});
    BOOST_TEST(o.exit_code == 2);
    BOOST_TEST(contains(o.err, "No space left on device"));
    BOOST_TEST(!fs::exists(t / "a/last.safetensors"));
    BOOST_TEST(!has_temporaries(t / "a"));
  }
  {  // ... or a later one: the previous last.safetensors is untouched
    const Outcome o = run_train(run_args(t / "b"), {"DERMIS_FAULT=enospc_in_save=4"});
    BOOST_TEST(o.exit_code == 2);
    BOOST_TEST(contains(o.err, "No space left on device"));
    BOOST_TEST(!has_temporaries(t / "b"));
    const auto last = io::load_safetensors(t / "b/last.safetensors");
    BOOST_TEST((last.metadata.at("epoch") == "1" || last.metadata.at("epoch") == "2"));
  }
}
