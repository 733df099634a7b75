// bench/pipeline: end-to-end training throughput with the threaded loader feeding a model, for a
// given split of the cores between loader threads and oneDNN's OpenMP threads. Prints one JSON
// object: img/s and the share of step time spent waiting for data.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>

#include "bench/cpu_report.h"
#include "framework/data/loader.h"
#include "framework/io/json.h"
#include "framework/ops.h"
#include "framework/optim/sgd.h"
#include "models/registry.h"
#include "framework/cli.h"

using namespace dermis;
namespace fs = std::filesystem;

namespace {
double now() { return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count(); }

int run(int argc, char** argv) {
  cli::Args args("usage: bench/pipeline --images DIR [flags]\nTraining img/s with the loader feeding the model.");
  args.add("images", "", "folder of .jpg files (labels are arbitrary: this measures speed only)");
  args.add("model", "cbam_small", "the network: " + models::model_choices());
  args.add("size", "112", "input size (square)");
  args.add("batch", "32", "batch size");
  args.add("steps", "30", "timed training steps (after 3 warm-up steps)");
  args.add("threads", "2", "OpenMP threads for the model");
  args.add("loader-threads", "1", "loader threads");
  if (!args.parse(argc, argv)) return 0;
  const std::string dir = args.str("images");
  DERMIS_CHECK(fs::is_directory(dir), "flag --images: '{}' is not a folder", dir);
  std::vector<data::Item> items;
  for (auto& e : fs::directory_iterator(dir))
    if (e.path().extension() == ".jpg") items.push_back({e.path().string(), 0});
  std::sort(items.begin(), items.end(), [](auto& a, auto& b) { return a.path < b.path; });
  DERMIS_CHECK(!items.empty(), "flag --images: no .jpg files in {}", dir);
  for (size_t i = 0; i < items.size(); ++i) items[i].label = static_cast<int>(i % 7);

  set_num_threads(static_cast<int>(args.integer("threads", 1, 256)));
  bench::print_cpu_header("bench/pipeline");
  data::LoaderOptions o;
  o.height = o.width = args.integer("size", 32, 1024);
  o.batch = args.integer("batch", 1, 4096);
  o.threads = static_cast<int>(args.integer("loader-threads", 1, 256));
  o.drop_last = true;
  data::Loader loader(items, o);
  manual_seed(0);
  auto model = models::create(args.str("model"), 7);
  optim::SGD opt(model->parameters(), {.lr = 0.01f, .momentum = 0.9f});
  const long steps = args.integer("steps", 1, 100000);
  double wait = 0, t0 = 0;
  int64_t images = 0, e = 0, done = 0;
  while (done < steps + 3) {
    auto ep = loader.epoch(e++);
    while (done < steps + 3) {
      if (done == 3) t0 = now(), wait = 0, images = 0;
      const double tw = now();
      auto b = ep.next();
      wait += now() - tw;
      if (!b) break;
      Var loss = softmax_cross_entropy(model->forward(Var(b->images)), b->labels);
      opt.zero_grad();
      loss.backward();
      opt.step();
      images += b->images.dim(0);
      ++done;
    }
  }
  const double total = now() - t0;
  json::Object out{{"bench", "pipeline"}, {"model", args.str("model")}, {"size", o.height}, {"batch", o.batch},
                   {"threads", num_threads()}, {"loader_threads", o.threads}, {"steps", static_cast<int64_t>(steps)},
                   {"train_img_s", images / total}, {"data_wait_fraction", wait / total}, {"cpu", bench::cpu_json()}};
  std::printf("%s\n", json::dump(out).c_str());
  return 0;
}
}  // namespace

int main(int argc, char** argv) {
  return dermis::cli::run_main("bench/pipeline", [&] { return run(argc, argv); });
}
