// Data-parallel training under mpirun, for real on localhost: 2 ranks x batch B reach the weights
// of 1 rank x batch 2B after K steps (synchronised BatchNorm, no class weights: then the two
// compute the same mean gradient, up to float summation order), a failing rank ends the whole
// job with a clear error instead of a hang, and a run continues with another number of ranks.
#define BOOST_TEST_MODULE mpi
#include <boost/test/unit_test.hpp>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <filesystem>
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

std::string env_or_fail(const char* name) {
  const char* p = std::getenv(name);
  BOOST_REQUIRE_MESSAGE(p && *p, name << " must be set by meson");
  return p;
}

// resnet18 (no dropout, whose masks would differ between the two layouts of the batch) at 64x64 on
// 50 synthetic images (39 for training). Direct convolution: it computes each image the same way
// whatever the batch, while Winograd groups tiles of several images, so its rounding (~1e-6) depends
// on how the batch is split, and this setting amplifies that to O(0.1) by the second step.
std::vector<std::string> args(const std::string& out, int batch, int epochs) {
  return {"--synthetic-count", "50", "--model", "resnet18", "--size", "64x64", "--batch", std::to_string(batch),
          "--epochs", std::to_string(epochs), "--val-fraction", "0.2", "--threads", "1", "--loader-threads", "1",
          "--report-images", "0", "--class-weights", "none", "--label-smoothing", "0", "--sync-bn", "--lr", "0.01",
          "--nesterov", "false", "--conv", "direct", "--out", out};
}

Outcome mpirun(int ranks, std::vector<std::string> a, const std::vector<std::string>& env = {}) {
  std::vector<std::string> cmd{"--oversubscribe", "--allow-run-as-root", "--mca", "btl", "self,vader",
                               "-np", std::to_string(ranks)};
  for (auto& e : env) cmd.insert(cmd.end(), {"-x", e.substr(0, e.find('='))});
  cmd.push_back(env_or_fail("DERMIS_TRAIN_BIN"));
  cmd.insert(cmd.end(), a.begin(), a.end());
  return testing::run_process(env_or_fail("DERMIS_MPIRUN"), cmd, env, {}, SIGKILL, 300);
}

Outcome single(std::vector<std::string> a) { return testing::run_process(env_or_fail("DERMIS_TRAIN_BIN"), a); }

// Largest per-tensor relative difference |a - b| / |a| (L2 norms) over every tensor of two
// checkpoints: weights, BatchNorm statistics and momentum buffers.
double max_relative_difference(const std::string& a, const std::string& b, std::string* worst) {
  const auto fa = io::load_safetensors(a), fb = io::load_safetensors(b);
  BOOST_REQUIRE(fa.tensors.size() == fb.tensors.size());
  double m = 0;
  for (size_t i = 0; i < fa.tensors.size(); ++i) {
    BOOST_REQUIRE(fa.tensors[i].first == fb.tensors[i].first);
    const auto va = fa.tensors[i].second.to_vector(), vb = fb.tensors[i].second.to_vector();
    double na = 0, nd = 0;
    for (size_t k = 0; k < va.size(); ++k) {
      na += static_cast<double>(va[k]) * va[k];
      nd += static_cast<double>(va[k] - vb[k]) * (va[k] - vb[k]);
    }
    const double r = std::sqrt(nd) / std::max(1e-30, std::sqrt(na));
    if (r > m) m = r, *worst = fa.tensors[i].first;
  }
  return m;
}

}  // namespace

BOOST_AUTO_TEST_CASE(two_ranks_equal_one_rank_with_twice_the_batch) {
  // K = 2 SGD steps (39 images, global batch 16). The two runs differ only in the order floats
  // are summed (per-rank sums, then the allreduce, against one sum over the batch): ~1e-7 per
  // value. Measured: 1e-6 (relative, per tensor). The tolerance is 1e-4 because this tiny
  // from-scratch setting is chaotic: after a dozen steps even 1 against 2 OpenMP threads of the
  // same process (rounding only) differ by O(1) in the BatchNorm-bias momentum, and Nesterov
  // momentum makes it so by step 2; so the check is kept to two steps of plain momentum.
  TempDir t;
  const Outcome two = mpirun(2, args(t / "two", 8, 1));
  BOOST_REQUIRE_MESSAGE(two.exit_code == 0, "2-rank run failed:\n" << two.out << two.err);
  BOOST_TEST(two.out.find("data-parallel: 2 ranks x batch 8 (global batch 16)") != std::string::npos);
  const Outcome one = single(args(t / "one", 16, 1));
  BOOST_REQUIRE(one.exit_code == 0);
  BOOST_TEST(one.out.find("step 2/2") != std::string::npos);
  std::string worst;
  const double d = max_relative_difference(t / "two/last.safetensors", t / "one/last.safetensors", &worst);
  BOOST_TEST_MESSAGE("largest relative difference after 2 steps: " << d << " (" << worst << ")");
  BOOST_TEST(d < 1e-4, "2 ranks x 8 and 1 rank x 16 differ by " << d << " (relative) in " << worst);
}

BOOST_AUTO_TEST_CASE(a_failing_rank_ends_the_job_with_a_clear_error) {
  TempDir t;
  const Outcome o = mpirun(2, args(t / "fail", 4, 2), {"DERMIS_FAULT=fail_at_step=3,fail_rank=1"});
  BOOST_TEST(!o.timed_out);
  BOOST_TEST(o.exit_code != 0);
  BOOST_TEST(o.err.find("error (rank 1 of 2): injected failure (DERMIS_FAULT) on rank 1 at optimiser step 3") !=
             std::string::npos);
}

BOOST_AUTO_TEST_CASE(resume_with_another_number_of_ranks) {
  TempDir t;
  auto a = args(t / "run", 4, 2);
  a.insert(a.end(), {"--stop-after", "1"});
  const Outcome first = mpirun(2, a);
  BOOST_REQUIRE_MESSAGE(first.exit_code == 0, first.err);
  // One process with the same per-rank batch: the global batch halves, the epoch count carries on.
  const Outcome second = single({"--resume", t / "run/last.safetensors"});
  BOOST_TEST(second.exit_code == 0);
  BOOST_TEST(io::load_safetensors(t / "run/last.safetensors").metadata.at("epoch") == "2");
}
