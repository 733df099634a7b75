// Small training runs for the experiment-layer tests: a synthetic HAM10000-layout dataset (made
// once per test program) and a few-epoch cbam_small run on it.
#pragma once

#include <string>

#include "datasets/synthetic_ham.h"
#include "testing.h"
#include "tools/experiment/config.h"

namespace testing {

// 160 images of 96x72 in HAM10000's layout, generated with `seed` on first use.
inline const std::string& synthetic_ham(uint64_t seed) {
  static TempDir d;
  static std::string root = [seed] {
    dermis::datasets::SyntheticOptions o;
    o.count = 160, o.width = 96, o.height = 72, o.seed = seed;
    const std::string r = d / "ham";
    dermis::datasets::write_synthetic_ham10000(r, o);
    return r;
  }();
  return root;
}

// cbam_small at 48x64, batch 16, `epochs` epochs on `data`, into `out`.
inline dermis::experiment::TrainConfig small_run(const std::string& data, const std::string& out, int64_t epochs) {
  dermis::experiment::TrainConfig c;
  c.data = data;
  c.model = "cbam_small";
  c.height = 48, c.width = 64, c.batch = 16, c.epochs = epochs, c.lr = 0.05;
  c.out = out, c.report_images = 4, c.threads = 2, c.loader_threads = 2;
  return c;
}

}  // namespace testing
