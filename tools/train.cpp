// tools/train: trains a model with SGD. Today it trains on synthetic lesion images generated in
// memory (7 classes) and reports held-out accuracy; training on HAM10000 JPEGs arrives with the
// dataset loader.
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <thread>

#include "datasets/synthetic_tensors.h"
#include "framework/optim/sgd.h"
#include "framework/ops.h"
#include "models/registry.h"
#include "tools/cli.h"

using namespace dermis;

namespace {
int run(int argc, char** argv) {
  cli::Args args(
      "usage: train [flags]\n"
      "Trains a model on synthetic 7-class lesion images generated in memory, with SGD (momentum,\n"
      "Nesterov, weight decay), and prints held-out accuracy.");
  args.add("model", "cbam_small", "resnet18_cbam | resnet34_cbam | resnet18 | cbam_small");
  args.add("steps", "300", "training steps");
  args.add("batch", "32", "images per step");
  args.add("size", "48", "image side in pixels (>= 32)");
  args.add("lr", "0.05", "learning rate");
  args.add("momentum", "0.9", "SGD momentum");
  args.add_bool("nesterov", "use Nesterov momentum");
  args.add("weight-decay", "1e-4", "L2 weight decay");
  args.add("seed", "0", "random seed (weights, data, dropout)");
  args.add("threads", "0", "OpenMP threads (0: all cores)");
  if (!args.parse(argc, argv)) return 0;
  const long steps = args.integer("steps", 1, 10000000), batch = args.integer("batch", 1, 4096);
  const long size = args.integer("size", 32, 1024);
  const long threads = args.integer("threads", 0, 1024);
  if (threads > 0) set_num_threads(static_cast<int>(threads));
  optim::SGDOptions o{.lr = static_cast<float>(args.real("lr", 0, 100)),
                      .momentum = static_cast<float>(args.real("momentum", 0, 1)),
                      .weight_decay = static_cast<float>(args.real("weight-decay", 0, 1)),
                      .nesterov = args.flag("nesterov")};
  DERMIS_CHECK(!o.nesterov || o.momentum > 0, "flag --nesterov needs --momentum > 0");
  Generator g(static_cast<uint64_t>(args.integer("seed", 0, 1L << 62)));
  manual_seed(g.seed());

  auto net = models::create(args.str("model"), datasets::kSyntheticClasses);
  optim::SGD opt(net->parameters(), o);
  const bool tty = isatty(fileno(stdout));
  fmt::print("training {} ({:.2f} M parameters) on synthetic {}x{} images, batch {}, {} steps, {} threads\n",
             args.str("model"), net->num_parameters() / 1e6, size, size, batch, steps, num_threads());
  std::fflush(stdout);
  const auto t0 = std::chrono::steady_clock::now();
  double running = 0;
  for (long s = 1; s <= steps; ++s) {
    auto b = datasets::synthetic_batch(batch, size, g);
    Var loss = softmax_cross_entropy(net->forward(Var(b.images)), b.labels);
    opt.zero_grad();
    loss.backward();
    opt.step();
    running = s == 1 ? loss.item() : 0.95 * running + 0.05 * loss.item();
    const double sec = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (tty || s % 20 == 0 || s == steps) {
      const double ips = s * batch / sec, eta = (steps - s) * batch / ips;
      fmt::print("{}step {}/{}  loss {:.4f}  {:.0f} img/s  ETA {:.0f}s{}", tty ? "\r" : "", s, steps, running, ips, eta,
                 tty ? "   " : "\n");
      std::fflush(stdout);
    }
  }
  if (tty) fmt::print("\n");

  NoGrad ng;
  net->eval();
  Generator held(g.seed() + 1000003);
  int correct = 0, total = 0;
  for (int k = 0; k < 4; ++k) {
    auto b = datasets::synthetic_batch(128, size, held);
    auto logits = net->forward(Var(b.images)).value().to_vector();
    for (size_t i = 0; i < b.labels.size(); ++i) {
      int best = 0;
      for (int c = 1; c < datasets::kSyntheticClasses; ++c)
        if (logits[i * 7 + c] > logits[i * 7 + best]) best = c;
      correct += best == b.labels[i];
      ++total;
    }
  }
  fmt::print("held-out accuracy: {:.1f}% on {} generated images (chance: 14.3%)\n", 100.0 * correct / total, total);
  return 0;
}
}  // namespace

int main(int argc, char** argv) {
  try {
    return run(argc, argv);
  } catch (const std::exception& e) {
    fmt::print(stderr, "train: error: {}\n", e.what());
    return 2;
  }
}
