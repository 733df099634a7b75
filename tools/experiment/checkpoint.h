// Training checkpoints as safetensors files: the model's parameters and buffers under PyTorch-style
// names (conv1.weight, layer1.0.bn1.running_mean, ...), optionally the SGD momentum buffers under
// "optimizer.momentum.<parameter name>", and __metadata__ with everything needed to rebuild the
// model and its input pipeline (model name, classes, input size, normalisation) and to resume
// training exactly (epoch, step, schedule state, generator state, elapsed time, the run's config).
#pragma once

#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "framework/data/augment.h"
#include "framework/io/json.h"
#include "framework/io/safetensors.h"
#include "framework/optim/schedule.h"
#include "framework/optim/sgd.h"
#include "models/classifier.h"

namespace dermis::experiment {

struct CheckpointInfo {
  std::string model;
  std::vector<std::string> classes;
  int64_t height = 112, width = 112;
  data::Normalization norm;
  json::Value config;         // the training run's settings (TrainConfig::to_json)
  int64_t epoch = 0;          // completed epochs
  // Progress into the next epoch when the run was interrupted mid-epoch (SIGINT/SIGTERM): batches
  // done, and their summed loss and image count (for the epoch's mean training loss).
  int64_t epoch_batches = 0, epoch_images = 0;
  int64_t epoch_position = 0;  // samples of the epoch's order consumed (all ranks together)
  double epoch_loss_sum = 0;
  bool epoch_early = false;    // that epoch trains at the --early-size input
  int64_t step = 0;           // completed optimiser steps
  double elapsed_seconds = 0;  // training time so far (for time budgets)
  double best_metric = -1;    // best validation balanced accuracy so far
  int64_t best_epoch = -1;
  optim::Schedule::State schedule;
  uint64_t rng_seed = 0, rng_counter = 0;  // the default generator (dropout)
  // Class priors for the decision rule (empty in checkpoints of older versions): the training set's
  // class frequencies, and the prior the model's probabilities were trained towards (the sampled
  // class mix, weighted by the loss's class weights, with the logit adjustment's share taken out:
  // uniform for class-balanced training).
  std::vector<double> train_prior, trained_prior;
  int64_t swa_count = 0;  // epochs averaged into the stochastic weight average so far
  // The images of each side of the run's split ("train", "val", "test" when held out), as
  // datasets::images_fingerprint; empty in checkpoints of older versions.
  std::map<std::string, std::string> split;
  // Whether the file can be resumed from (written with the optimiser state: last.safetensors);
  // unknown in checkpoints of older versions. Set by save_checkpoint.
  std::optional<bool> resumable;
};

// Writes atomically. With `opt`, the momentum buffers are included (for --resume); with `average`,
// the weight average's parameters and buffers under "ema.<name>"; with `swa`, the stochastic weight
// average's under "swa.<name>".
void save_checkpoint(const std::string& path, models::Classifier& model, const CheckpointInfo& info,
                     optim::SGD* opt = nullptr, models::Classifier* average = nullptr,
                     models::Classifier* swa = nullptr);

struct Checkpoint {
  CheckpointInfo info;
  std::shared_ptr<models::Classifier> model;  // created by name, weights loaded
  io::TensorFile file;
};

// Reads and validates a checkpoint and rebuilds its model. Errors name the file and the problem
// (not a dermis checkpoint, damaged, model mismatch, ...).
Checkpoint load_checkpoint(const std::string& path);

// Restores the weight average saved by save_checkpoint(..., average) into `average`; false if the
// checkpoint has none.
bool load_weight_average(const Checkpoint& ck, models::Classifier& average);

// Which weights of `ck` the tools use: "model" (the checkpoint's main weights), "ema" (the weight
// average an --ema run validated, stored under "ema.<name>" in its last.safetensors; an error naming
// the file if there is none) or "auto" (the average when the checkpoint has one, else the main
// weights). best.safetensors of an --ema run holds the average as its main weights. Replaces
// ck.model accordingly and returns "model" or "ema".
std::string select_weights(Checkpoint& ck, const std::string& which);
// The --help text of the tools' --weights flag (default "auto"), which select_weights() takes.
inline constexpr const char* kWeightsFlagHelp =
    "auto | model | ema: the checkpoint's main weights, or the weight average of a train --ema run (auto: the "
    "average when the checkpoint has one)";

// Restores the stochastic weight average saved by save_checkpoint(..., swa) into `swa`; false if
// the checkpoint has none.
bool load_swa_average(const Checkpoint& ck, models::Classifier& swa);

// Restores the momentum buffers saved by save_checkpoint(..., opt) into `opt` (same model).
void load_optimizer_state(const Checkpoint& ck, models::Classifier& model, optim::SGD& opt);

}  // namespace dermis::experiment
