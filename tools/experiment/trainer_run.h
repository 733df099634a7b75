// The training run behind experiment::train() (trainer.h), as a class with one method per phase:
// set-up (trainer_setup.cpp), then epochs of steps, validation and checkpoints, and the final
// report (trainer.cpp). Internal to the experiment library.
#pragma once

#include <fmt/format.h>

#include <memory>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "checkpoint.h"
#include "config.h"
#include "evaluation.h"
#include "framework/data/loader.h"
#include "framework/distributed.h"
#include "framework/fault.h"
#include "framework/optim/ema.h"
#include "framework/optim/schedule.h"
#include "framework/optim/sgd.h"
#include "report.h"
#include "train_support.h"
#include "trainer.h"

namespace dermis::experiment::detail {

// One epoch in progress: what a mid-epoch checkpoint records, and the running sums.
struct EpochState {
  int64_t epoch = 0;
  bool early = false;      // trains at --early-size
  int64_t batch = 0;       // global batches done (including those before a mid-epoch resume)
  int64_t first_batch = 0;  // where this process started in the epoch
  int64_t position = 0;    // samples of the epoch's order consumed (all ranks together)
  int64_t steps = 0;       // optimiser steps of this epoch
  // Training loss: `base_*` carried over from a mid-epoch checkpoint (all ranks), `*_here` this
  // process's own steps since.
  double base_loss = 0, loss_here = 0;
  int64_t base_seen = 0, seen_here = 0;
  double lr = 0, overlap_sum = 0, wait_sum = 0, t0 = 0;
};

enum class EpochEnd { next, stop, stop_after_this };

// The training run, one method per phase. Its run state is what a checkpoint stores (state_), so
// resuming is: load the checkpoint, set up as usual, continue from state_.
class Trainer {
 public:
  Trainer(TrainConfig c, std::string command) : c_(std::move(c)), command_(std::move(command)) {}
  TrainResult run();

 private:
  // Set-up.
  void resolve_config();
  void prepare_run_folder();
  void create_run_folder();
  void setup_data();
  void setup_loaders();
  void setup_model();
  void restore_history();
  void print_summary() const;
  // The loop.
  EpochEnd run_epoch(int64_t epoch);
  EpochState begin_epoch(int64_t epoch);
  bool train_steps(EpochState& es);  // false: interrupted by a signal mid-epoch
  bool out_of_time();
  bool step(data::Batch& batch, EpochState& es);  // false: skipped (non-finite, --nonfinite skip)
  float forward_backward(data::Batch& batch, Var* logits, EpochState& es);
  bool skip_nonfinite(const std::string& bad, EpochState& es, const std::vector<Tensor>& buffers_before);
  void print_progress(const EpochState& es) const;
  bool interrupted(const EpochState* mid);
  std::pair<double, int64_t> epoch_loss(const EpochState& es) const;
  bool end_epoch(const EpochState& es, double loss_sum, int64_t seen);  // false: stop now
  metrics::Report validate(models::Classifier& m);
  // Probabilities moved from the prior the model was trained towards to that of `rule` (none:
  // unchanged). With the run's --decision-prior, what evaluate and predict decide with by default,
  // so what train validates, selects by and reports.
  std::vector<float> decided(std::vector<float> probs, DecisionPrior rule) const;
  double progress_at_epoch_end(int64_t epoch) const;
  void update_swa();               // adds the weights to the SWA average and recomputes its BatchNorm statistics
  std::string selected_path() const;
  void log_epoch(const EpochState& es, const EpochRecord& rec, const metrics::Report* swa = nullptr);
  void set_progress(const EpochState* mid);
  void stamp();
  void write_last();
  // The end.
  TrainResult result() const;
  double run_img_s() const;
  TrainResult finish();
  json::Object score_test_set(TrainResult& res, Select sel, models::Classifier& handed);
  void write_run_report(Checkpoint& handed_out, TrainResult& res, const Predictions& handed);

  int64_t agree(int64_t v) const { return ranks_ > 1 ? dist::allreduce_max(v) : v; }  // the same on every rank
  models::Classifier& evaluated() { return average_ ? *average_ : *model_; }
  std::string train_size(bool early) const {
    return early ? fmt::format("{}x{}", c_.early_height, c_.early_width) : fmt::format("{}x{}", c_.height, c_.width);
  }

  TrainConfig c_;
  std::string command_;
  double t_start_ = now();
  std::unique_ptr<Checkpoint> ck_;  // --resume
  bool synthetic_ = false, writer_ = true, bf16_ = false, tty_ = false;
  int ranks_ = 1, loader_threads_ = 1;
  std::string root_, metrics_path_, best_path_, last_path_, swa_path_, model_path_;
  double budget_ = 0;  // seconds (--minutes)
  // Data.
  std::vector<data::Item> train_items_, val_items_, test_items_;  // test: --test-fraction, scored only at the end
  std::vector<ImageId> val_ids_;  // which image and lesion each of val_items_ is (val_predictions.csv)
  std::vector<float> class_weights_, logit_offsets_;
  data::Normalization norm_;
  data::LoaderOptions val_options_;
  std::unique_ptr<data::Loader> train_loader_, early_loader_, val_loader_;
  int64_t batches_ = 0;  // global batches per epoch
  // Model and optimiser.
  std::shared_ptr<models::Classifier> model_, average_;
  std::unique_ptr<optim::SGD> opt_;
  std::unique_ptr<optim::Schedule> sched_;
  std::unique_ptr<dist::GradientReducer> reducer_;
  std::unique_ptr<optim::WeightAverage> averager_;
  std::shared_ptr<models::Classifier> swa_;  // --swa-start: the stochastic weight average
  std::unique_ptr<data::Loader> bn_loader_;  // training batches for its BatchNorm statistics
  std::optional<metrics::Report> swa_report_, last_report_;
  std::vector<int64_t> class_counts_;
  std::map<std::string, std::string> split_;  // images_fingerprint of each side, recorded in checkpoints
  std::string split_csv_;                     // split.csv, written once the run folder is created
  // --init: which optimiser parameters came from the file, and which of those --freeze-epochs holds.
  std::vector<char> pretrained_, frozen_;
  std::optional<io::TensorFile> init_file_;  // read in resolve_config, loaded in setup_model
  std::set<std::string> init_loaded_;
  std::string init_summary_;
  void apply_lr_scales(int64_t epoch);
  // Run state: the checkpoint's (steps, best epoch, schedule, generator, elapsed time, progress).
  CheckpointInfo state_;
  int64_t start_epoch_ = 0, epochs_done_ = 0;
  double run_t0_ = 0;  // elapsed time carries across resumes
  std::vector<EpochRecord> history_;
  std::vector<std::pair<double, double>> lr_trace_;
  std::optional<metrics::Report> best_report_;  // validation of the best checkpoint, if this run wrote it
  double val_seconds_ = -1, train_img_s_ = 0;
  bool stop_ = false;
  int interrupted_by_ = 0;
  std::optional<bool> was_early_;
  // The non-finite policy and the fault hooks of the crash and data-parallel tests.
  int64_t nonfinite_in_row_ = 0, nonfinite_skipped_ = 0;
  std::optional<int64_t> nan_step_ = fault::value("nan_at_step"), fail_step_ = fault::value("fail_at_step");
  bool reverse_batches_ = fault::value("reverse_batches").has_value(), nan_injected_ = false;
};

}  // namespace dermis::experiment::detail
