// The training run's settings: defaults, the command-line flags of tools/train, and JSON (stored in
// every checkpoint, so evaluate/predict/resume know how the model was trained).
#pragma once

#include <string>

#include "framework/io/json.h"
#include "framework/optim/schedule.h"
#include "framework/cli.h"

namespace dermis::experiment {

struct TrainConfig {
  // data
  std::string data;    // HAM10000 folder; empty: the built-in synthetic dataset
  std::string images;  // image subfolder ("" = HAM10000_images_part_1/2)
  bool skip_bad_images = false;
  double val_fraction = 0.2;
  int64_t synthetic_count = 1500;  // built-in dataset
  // model and input
  std::string model = "cbam_small";
  int64_t height = 0, width = 0;  // 0: 72x96 on the synthetic set, 112x150 otherwise
  // Progressive resizing: training epochs that start before early_fraction of the run use
  // early_height x early_width (0: off); later epochs, validation, checkpoints and the report use
  // height x width. The run's progress is the larger of its share of the time budget (minutes > 0)
  // and its share of the epochs.
  int64_t early_height = 0, early_width = 0;
  double early_fraction = 0.5;
  // optimisation
  int64_t batch = 32;
  int64_t epochs = 0;     // 0: 12 on the synthetic set, 30 otherwise
  double minutes = 0;     // wall-clock budget for the whole run (0: none)
  double lr = 0.05, momentum = 0.9, weight_decay = 5e-4;
  bool nesterov = true;
  optim::ScheduleOptions schedule;  // kind, gamma, step size, milestones, plateau, min lr, warm-up
  std::string plateau_metric = "balanced_accuracy";  // or "loss"
  std::string class_weights = "sqrt";                // none | inverse | sqrt
  double label_smoothing = 0.1;
  std::string class_sampling = "natural";  // natural | sqrt | balanced (see class_power())
  double logit_adjust = 0;  // tau of the logit-adjusted loss (0: off)
  bool sync_bn = false;  // data-parallel: BatchNorm statistics over all ranks' batches
  double ema = 0;  // per-step decay of the weight average that is validated and saved as best (0: off)
  std::string nonfinite = "stop";  // a non-finite loss or gradient: stop | skip (the step)
  std::string conv = "auto";      // auto (Winograd where oneDNN has it) | direct
  std::string precision = "f32";  // f32 | bf16 (mixed precision: bf16 activations and convolutions)
  // augmentation
  double crop_scale_min = 0.5, rotate_degrees = 15, jitter = 0.1, hue = 0.02;
  // run
  uint64_t seed = 0;
  int threads = 0, loader_threads = 0;  // 0: automatic split of the cores
  bool cache = false;
  std::string out;     // run folder; empty: runs/<model>-<date>-<time>
  std::string resume;  // checkpoint to continue from
  int64_t report_images = 16;
  int64_t stop_after = 0;  // stop after this many epochs of this invocation (0: run to the end)

  json::Value to_json() const;
  static TrainConfig from_json(const json::Value& v);  // as stored in checkpoints
  void validate() const;
  // data::LoaderOptions::class_power of class_sampling: natural 1, sqrt 0.5, balanced 0.
  double class_power() const;
  // Whether a training epoch that starts at `progress` (0..1 of the run) uses the early size.
  bool early_epoch(double progress) const { return early_height > 0 && progress < early_fraction; }
};

// Registers the flags of tools/train (with --help texts and defaults).
void add_train_flags(cli::Args& args);
// Reads them back (range-checked; errors name the flag).
TrainConfig train_config_from_flags(const cli::Args& args);

// "112x150" or "112" -> height, width; errors name `flag`.
void parse_size(const std::string& s, const char* flag, int64_t& h, int64_t& w);

}  // namespace dermis::experiment
