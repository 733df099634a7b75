// bench/train_throughput: full SGD training steps (forward, backward, update) and inference of a
// model on synthetic input, the same workload as ../shared/peers/torch_cbam_bench.py. Prints one
// JSON object with train_img_s, infer_img_s, peak_rss_mb, the config and the oneDNN convolution
// implementations that ran.
#include <sys/resource.h>

#include <chrono>
#include <cstdio>

#include "bench/cpu_report.h"
#include "framework/dnnl/context.h"
#include "framework/io/json.h"
#include "framework/ops.h"
#include "framework/optim/sgd.h"
#include "framework/random.h"
#include "models/registry.h"
#include "framework/cli.h"

using namespace dermis;

namespace {
double now() { return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count(); }

int run(int argc, char** argv) {
  cli::Args args("usage: bench/train_throughput [flags]\nTraining and inference img/s of a model on synthetic input.");
  args.add("model", "resnet18_cbam", "the network: " + models::model_choices());
  args.add("size", "112", "input size (square)");
  args.add("batch", "32", "batch size");
  args.add("threads", "2", "OpenMP threads");
  args.add("steps", "5", "timed steps (after one warm-up step), as the peer");
  args.add("dtype", "f32", "f32, or bf16 (mixed precision: AutocastBF16 around forward and loss, f32 weights)");
  args.add("conv", "auto", "convolution algorithm: auto (Winograd for f32 3x3 stride-1 convolutions), fastest, direct, winograd "
           "(dermis's) or onednn-winograd");
  args.add("phase", "both", "train, infer or both (train only, for profiling the training step)");
  args.add_bool("cpu-info", "print what this CPU runs (model, cores, oneDNN ISA, bf16, Winograd) as JSON and exit");
  if (!args.parse(argc, argv)) return 0;
  if (args.flag("cpu-info")) {  // for the Python benchmarks, which ask before they run anything
    json::Object c = bench::cpu_json();
    c["summary"] = cpu::summary();
    try {
      cpu::require_bf16("flag --dtypes bf16", "--dtypes f32");
      c["bf16_error"] = "";
    } catch (const Error& e) {
      c["bf16_error"] = e.what();
    }
    std::printf("%s\n", json::dump(c).c_str());
    return 0;
  }
  const std::string phase = args.str("phase");
  DERMIS_CHECK(phase == "train" || phase == "infer" || phase == "both", "flag --phase: '{}' is not train, infer or both",
               phase);
  const std::string dtype = args.str("dtype");
  DERMIS_CHECK(dtype == "f32" || dtype == "bf16", "flag --dtype: '{}' is not f32 or bf16", dtype);
  const bool use_bf16 = dtype == "bf16";
  if (use_bf16) cpu::require_bf16("flag --dtype bf16", "--dtype f32");
  bench::print_cpu_header("bench/train_throughput");
  const std::string conv = args.str("conv");
  set_conv_algorithm(cli::conv_algorithm_flag(conv));
  set_num_threads(static_cast<int>(args.integer("threads", 1, 1024)));
  const int64_t size = args.integer("size", 32, 4096), batch = args.integer("batch", 1, 4096);
  const long steps = args.integer("steps", 1, 100000);
  manual_seed(0);
  auto model = models::create(args.str("model"), 7);
  Generator g(0);
  Tensor x = Tensor::randn({batch, 3, size, size}, g);
  std::vector<int> y(batch);
  for (auto& v : y) v = static_cast<int>(g.randint(7));
  optim::SGD opt(model->parameters(), {.lr = 0.01f, .momentum = 0.9f, .weight_decay = 1e-4f});
  auto step = [&] {
    opt.zero_grad();
    Var loss;
    {
      AutocastBF16 ac(use_bf16);
      loss = softmax_cross_entropy(model->forward(Var(x)), y);
    }
    loss.backward();
    opt.step();
  };
  double t = 0, train = 0, infer = 0;
  if (phase != "infer") {
    model->train();
    step();  // warm-up: primitive creation
    t = now();
    for (long i = 0; i < steps; ++i) step();
    train = steps * batch / (now() - t);
  }
  model->freeze();  // eval, as tools/evaluate runs it: BN folded and weights prepared once
  if (phase != "train") {
    NoGrad ng;
    AutocastBF16 ac(use_bf16);
    model->forward(Var(x));
    t = now();
    for (long i = 0; i < steps; ++i) model->forward(Var(x));
    infer = steps * batch / (now() - t);
  }
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  json::Object impls;
  for (auto& [kind, names] : dnnl_ctx::impls()) {
    json::Array a;
    for (auto& n : names) a.push_back(n);
    impls[kind] = a;
  }
  json::Object out{{"bench", "train_throughput"}, {"framework", "dermis"}, {"model", args.str("model")},
                   {"size", size}, {"batch", batch}, {"threads", num_threads()}, {"steps", static_cast<int64_t>(steps)},
                   {"dtype", dtype}, {"conv", conv}, {"train_img_s", train}, {"infer_img_s", infer},
                   {"peak_rss_mb", static_cast<double>(ru.ru_maxrss) / 1024.0}, {"onednn_impls", impls},
                   {"cpu", bench::cpu_json()}};
  std::printf("%s\n", json::dump(out).c_str());
  return 0;
}
}  // namespace

int main(int argc, char** argv) {
  return dermis::cli::run_main("bench/train_throughput", [&] { return run(argc, argv); });
}
