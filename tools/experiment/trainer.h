// The experiment: train a classifier on HAM10000 (or the built-in synthetic set) with SGD and an LR
// schedule, validate every epoch on a lesion-grouped split, keep best/last checkpoints, write
// metrics.jsonl, result.json, val_predictions.csv and report.html. tools/train is a thin wrapper
// around train().
#pragma once

#include <map>
#include <optional>
#include <string>

#include "config.h"
#include "framework/metrics.h"

namespace dermis::experiment {

struct TrainResult {
  std::string out_dir, best_checkpoint, last_checkpoint, report;
  metrics::Report best_val;
  // The handed-out checkpoint (--select): which, its file (copied to model_checkpoint), and its
  // validation with the probabilities as trained and shifted to the training set's class prior.
  std::string selected, selected_checkpoint, model_checkpoint, result_json;
  metrics::Report selected_val, selected_val_train_prior;
  // With --test-fraction: the held-out test set's scores of the handed-out checkpoint (as trained
  // and with the training set's prior) and of each saved one ("best", "last", "swa"), as trained.
  // No choice of the run looked at them.
  std::optional<metrics::Report> selected_test, selected_test_train_prior;
  std::map<std::string, metrics::Report> test_by_checkpoint;
  int64_t best_epoch = 0, epochs_done = 0;
  double train_img_s = 0, elapsed_s = 0;
  int interrupted_by = 0;  // SIGINT/SIGTERM: the signal; last_checkpoint holds the run mid-epoch
};

// Runs the whole experiment. `command` is recorded in the report. SIGINT and SIGTERM during the run
// finish the current step, write last.safetensors (resumable mid-epoch) and return with
// interrupted_by set; a second signal ends the process at once (the checkpoints stay whole:
// they are written to a temporary file and renamed).
TrainResult train(TrainConfig cfg, const std::string& command = "");

// Where the built-in synthetic dataset lives (beside the build folder of the running binary) and
// its generator settings; generated on first use.
std::string default_synthetic_dir();
void ensure_synthetic_dataset(const std::string& dir, int64_t count);

}  // namespace dermis::experiment
