// tools/train: trains a CBAM classifier on HAM10000 (or, without --data, on the built-in synthetic
// dataset, generated on first use), validating every epoch on a lesion-grouped split; writes
// best/last checkpoints, metrics.jsonl and report.html into the run folder.
#include <cstdio>
#include <string>

#include "framework/cli.h"
#include "tools/experiment/trainer.h"

int main(int argc, char** argv) {
  using namespace dermis;
  // Under mpirun: data-parallel training; rank 0 alone prints (and writes the run's files).
  dist::init(&argc, &argv);
  if (!dist::is_root() && !std::freopen("/dev/null", "w", stdout)) return 2;
  return dermis::cli::run_main("train", [&]() -> int {
    cli::Args args(
        "usage: train [flags]\n"
        "Trains a skin-lesion classifier with SGD and an LR schedule. Without --data it uses the built-in\n"
        "synthetic dataset (HAM10000 layout). Examples:\n"
        "  train                                                     # built-in default run\n"
        "  train --data ../shared/data/ham10000 --images images_200x150 --model resnet18_cbam --minutes 60\n"
        "  train --resume runs/NAME/last.safetensors                 # continue a run exactly\n"
        "  mpirun -np 4 train --data DIR ...                         # data-parallel over 4 processes");
    experiment::add_train_flags(args);
    if (!args.parse(argc, argv)) return 0;
    experiment::TrainConfig cfg = experiment::train_config_from_flags(args);
    std::string command = "train";
    for (int i = 1; i < argc; ++i) command += std::string(" ") + argv[i];
    const auto r = experiment::train(cfg, command);
    if (r.interrupted_by) return 128 + r.interrupted_by;  // the shell's convention for "ended by signal N"
    fmt::print("\nbest epoch {}: validation balanced accuracy {:.4f}, accuracy {:.4f}, macro F1 {:.4f} ({} images)\n",
               r.best_epoch, r.best_val.balanced_accuracy, r.best_val.accuracy, r.best_val.macro_f1, r.best_val.images);
    fmt::print("checkpoint: {}\nlast:       {}\nreport:     {}\nmetrics:    {}/metrics.jsonl\n", r.best_checkpoint,
               r.last_checkpoint, r.report, r.out_dir);
    return 0;
  });
}
