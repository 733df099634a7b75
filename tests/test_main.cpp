// main() of every Boost.Test program here: Boost's own, plus what meson needs to count skips.
// A test case whose CPU capability is missing is skipped by its precondition (testing::needs_bf16,
// testing::needs_winograd in testing.h), which Boost.Test reports as skipped and which prints
// "skipped test case NAME: REASON" for ./dermis test to list. A program whose every test case was
// skipped exits 77, which meson counts as SKIP rather than as a pass.
#include <boost/test/results_collector.hpp>
#include <boost/test/tree/traverse.hpp>
#include <boost/test/tree/visitor.hpp>
#include <boost/test/unit_test.hpp>

bool init_unit_test();  // defined by BOOST_TEST_MODULE in the program's test file

namespace {
namespace ut = boost::unit_test;

int g_run = 0, g_skipped = 0;

struct CountCases : ut::test_tree_visitor {
  void visit(const ut::test_case& tc) override {
    ++g_run;
    if (ut::results_collector.results(tc.p_id).p_skipped) ++g_skipped;
  }
};

// Tallies the test cases at the end of the run, while Boost's results still exist.
struct Tally {
  Tally() = default;
  Tally(const Tally&) = delete;
  Tally& operator=(const Tally&) = delete;
  ~Tally() {
    CountCases c;
    ut::traverse_test_tree(ut::framework::master_test_suite(), c, false);
  }
};
}  // namespace

BOOST_TEST_GLOBAL_FIXTURE(Tally);

int main(int argc, char* argv[]) {
  const int rc = ut::unit_test_main(&init_unit_test, argc, argv);
  return rc == 0 && g_run > 0 && g_skipped == g_run ? 77 : rc;
}
