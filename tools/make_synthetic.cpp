// tools/make_synthetic: writes a synthetic dataset in exactly HAM10000's layout (metadata CSV and
// JPEGs in HAM10000_images_part_1/ and _part_2/), for tests and runs without the real data.
#include <chrono>

#include "datasets/synthetic_ham.h"
#include "framework/cli.h"

using namespace dermis;

namespace {
int run(int argc, char** argv) {
  cli::Args args(
      "usage: make_synthetic --out DIR [flags]\n"
      "Writes a synthetic 7-class skin-lesion dataset in HAM10000's layout: DIR/HAM10000_metadata.csv and JPEGs\n"
      "in DIR/HAM10000_images_part_1/ and DIR/HAM10000_images_part_2/ (read it like the real data). DIR must\n"
      "not exist yet or be empty (--force replaces an earlier synthetic dataset, never other folders).");
  args.add("out", "", "output folder (required)");
  args.add("count", "2000", "number of images (>= 7)");
  args.add("width", "600", "image width in pixels (HAM10000: 600)");
  args.add("height", "450", "image height in pixels (HAM10000: 450)");
  args.add("seed", "0", "random seed: the same seed writes the same files");
  args.add("quality", "90", "JPEG quality (1-100)");
  args.add_bool("force", "replace DIR if it holds an earlier synthetic dataset");
  if (!args.parse(argc, argv)) return 0;
  DERMIS_CHECK(!args.str("out").empty(), "flag --out is required: the folder to write (see --help)");
  datasets::SyntheticOptions o{.count = args.integer("count", 7, 10000000),
                               .width = static_cast<int>(args.integer("width", 16, 8192)),
                               .height = static_cast<int>(args.integer("height", 16, 8192)),
                               .seed = static_cast<uint64_t>(args.integer("seed", 0, 1L << 62)),
                               .quality = static_cast<int>(args.integer("quality", 1, 100)),
                               .overwrite = args.flag("force")};
  const auto t0 = std::chrono::steady_clock::now();
  datasets::write_synthetic_ham10000(args.str("out"), o);
  const double sec = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  fmt::print("wrote {} synthetic {}x{} images (seed {}) to {} in {:.1f}s\n", o.count, o.width, o.height, o.seed,
             args.str("out"), sec);
  return 0;
}
}  // namespace

int main(int argc, char** argv) {
  return dermis::cli::run_main("make_synthetic", [&]() -> int { return run(argc, argv); });
}
