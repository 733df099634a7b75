// What a training run needs besides the model and the data: the clock, stop signals (SIGINT,
// SIGTERM), the check for non-finite values, the run folder's checks and files, and the helpers
// that turn a dataset into loader items. Used by trainer.cpp.
#pragma once

#include <signal.h>

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "config.h"
#include "datasets/ham10000.h"
#include "datasets/split.h"
#include "framework/autograd.h"
#include "framework/data/loader.h"
#include "models/classifier.h"

namespace dermis::experiment {

double now();                 // seconds, monotonic
std::string hms(double s);    // "1h02m", "3m07s"

std::vector<std::string> class_list();  // HAM10000's classes in label order

// The run's split of `ds`: fold cfg.fold of a lesion-grouped k-fold split with --folds, else the
// lesion-grouped val_fraction split, seeded by cfg.seed; with --test-fraction both divide what is
// left after the held-out test set (datasets::with_test_set, seeded by cfg.test_seed).
datasets::Split run_split(const datasets::Dataset& ds, const TrainConfig& cfg);
// The images_fingerprint of each side ("train", "val", "test") listed in a run's split.csv; empty
// when there is no such file. The record of checkpoints of versions that did not store one.
std::map<std::string, std::string> split_csv_fingerprints(const std::string& path);
// The split a checkpoint's run had: its own record, or for a checkpoint of an older version the
// split.csv in `run_folder` (empty when neither exists). `where` names the source, for messages.
std::map<std::string, std::string> recorded_split(const std::map<std::string, std::string>& checkpoint_split,
                                                  const std::string& run_folder, std::string& where);

// While one lives, SIGINT/SIGTERM ask the training loop to stop after its step (received() turns
// non-zero); a second signal takes the default action (the process ends; checkpoints are never
// left half-written).
class StopSignals {
 public:
  StopSignals();
  ~StopSignals();
  StopSignals(const StopSignals&) = delete;
  StopSignals& operator=(const StopSignals&) = delete;
  static int received();

 private:
  struct sigaction old_int_ {}, old_term_ {};
};
const char* signal_name(int s);

// The name of the first non-finite value among the logits, the loss and the parameter gradients
// (in the order backward computes them: last layer first); empty if all are finite.
std::string first_nonfinite(const Var& logits, float loss, models::Classifier& model);

// Checks before training that the run folder takes files and has room for two checkpoints (the
// new one is written beside the old before replacing it).
void check_output_folder(const std::string& dir, uint64_t checkpoint_bytes);
// Removes the temporary files of atomic writes (NAME.tmp.PID) of train's own files (checkpoints,
// metrics, split, result, report) that a killed process left behind.
void remove_stale_temporaries(const std::string& dir);
void append_line(const std::string& path, const std::string& line);

// DERMIS_FAULT=reverse_batches: every batch's images in reverse order. The mean gradient is the
// same, summed in another order: the data-parallel test measures rounding noise with it.
void reverse_batch(data::Batch& b);

}  // namespace dermis::experiment
