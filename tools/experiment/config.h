// The training run's settings: defaults, the command-line flags of tools/train, and JSON (stored in
// every checkpoint, so evaluate/predict/resume know how the model was trained).
#pragma once

#include <string>

#include "framework/io/json.h"
#include "framework/optim/schedule.h"
#include "framework/cli.h"
#include "framework/choice.h"
#include "framework/ops.h"

namespace dermis::experiment {

enum class ClassWeights { none, inverse, sqrt };            // loss weights: 1, 1/n, 1/sqrt(n) per class
enum class ClassSampling { natural, sqrt, balanced };       // class mix of a training epoch
enum class PlateauMetric { balanced_accuracy, loss };       // what the plateau schedule watches
enum class NonfinitePolicy { stop, skip };                  // a NaN/Inf loss or gradient
enum class Precision { f32, bf16 };
// Batch mixing: none, mixup (Zhang et al. 2018), CutMix (Yun et al. 2019) or either, half the batches each.
enum class Mixing { none, mixup, cutmix, both };
// The input normalisation: the training set's channel statistics, or ImageNet's (what published
// pretrained weights expect). auto: imagenet with --init, else dataset.
enum class NormalizationSource { automatic, dataset, imagenet };
// The checkpoint a run hands out (train's "checkpoint:" line and RUN/model.safetensors): the
// stochastic weight average (--swa-start), the last epoch's weights, or the best validation epoch's.
// auto: swa when --swa-start is given, else last.
enum class Select { automatic, swa, last, best };
// The class prior the tools apply to a checkpoint's probabilities by default (evaluate and predict
// --prior): none (the probabilities as trained, e.g. class-balanced), train (shifted to the
// training set's class frequencies: the deployment prior of HAM10000-like data) or uniform.
enum class DecisionPrior { none, train, uniform };
// Where train's settings start before its flags (--recipe): recommended (the default; see
// recipe_settings) or reference (the TrainConfig defaults: bench/torch_reference_train's recipe).
enum class Recipe { recommended, reference };

// The run's settings. Every member is one entry of the option table in config.cpp, which makes
// its flag (name, default, range, --help text), its JSON key in checkpoints and its range check.
// The member defaults are the reference recipe's (and what a checkpoint that lacks a setting was
// trained with); tools/train starts from recipe_settings(Recipe::recommended) unless --recipe says
// otherwise.
struct TrainConfig {
  // data
  std::string data{};    // HAM10000 folder; empty: the built-in synthetic dataset
  std::string images{};  // image subfolder ("" = HAM10000_images_part_1/2)
  bool skip_bad_images = false;
  double val_fraction = 0.2;
  // Lesion-grouped k-fold cross-validation: with folds >= 2, fold `fold` (0-based) is the
  // validation side instead of a val_fraction split (datasets::grouped_kfold).
  int64_t folds = 0, fold = 0;
  // A lesion-grouped test set held out before the split above (0: none): training, validation and
  // checkpoint selection never see it; drawn with test_seed alone, so runs of other seeds share it.
  double test_fraction = 0;
  int64_t test_seed = 0;
  int64_t synthetic_count = 1500;  // built-in dataset
  // model and input
  std::string model = "cbam_small";  // a name of models::model_names()
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
  // kind, gamma, step size, milestones, plateau, min lr, warm-up; the plateau waits 3 epochs, not
  // PyTorch's 10, since runs here are tens of epochs
  optim::ScheduleOptions schedule = [] {
    optim::ScheduleOptions s;
    s.plateau_patience = 3;
    return s;
  }();
  PlateauMetric plateau_metric = PlateauMetric::balanced_accuracy;
  ClassWeights class_weights = ClassWeights::sqrt;
  double label_smoothing = 0.1;
  ClassSampling class_sampling = ClassSampling::natural;  // see class_power()
  double logit_adjust = 0;  // tau of the logit-adjusted loss (0: off)
  bool sync_bn = false;  // data-parallel: BatchNorm statistics over all ranks' batches
  // Stochastic weight averaging (Izmailov et al. 2018): the weights at the end of every epoch that
  // ends after this share of the run (epochs or --minutes, as early_fraction) are averaged, the
  // average's BatchNorm statistics recomputed on training batches, validated and saved as
  // swa.safetensors (0: off).
  double swa_start = 0;
  Select select = Select::automatic;
  Mixing mix = Mixing::none;
  double mixup_alpha = 0.2, cutmix_alpha = 1.0, mix_prob = 1.0;
  // Shades-of-grey colour constancy (Minkowski power p; 0: off), in training and at test time.
  double color_constancy = 0;
  DecisionPrior decision_prior = DecisionPrior::none;
  // Start from published weights (models::load_pretrained): a torch.save .pth/.pt or safetensors file
  // of a torchvision, timm or dermis model. The parameters it provides train at init_lr_scale times
  // the learning rate; those of the stem and the first freeze_stages stages stay fixed for the first
  // freeze_epochs epochs.
  std::string init{};
  double init_lr_scale = 1;
  int64_t freeze_epochs = 0, freeze_stages = 4;
  NormalizationSource normalization = NormalizationSource::automatic;
  double ema = 0;  // per-step decay of the weight average that is validated and saved as best (0: off)
  NonfinitePolicy nonfinite = NonfinitePolicy::stop;
  ConvAlgorithm conv = ConvAlgorithm::automatic;
  Precision precision = Precision::f32;  // bf16: mixed precision (bf16 activations and convolutions)
  // augmentation
  double crop_scale_min = 0.5, rotate_degrees = 15, jitter = 0.1, hue = 0.02;
  // run
  uint64_t seed = 0;
  int threads = 0, loader_threads = 0;  // 0: automatic split of the cores
  bool cache = false;
  std::string out{};     // run folder; empty: runs/<model>-<date>-<time>
  std::string resume{};  // checkpoint to continue from (not stored)
  int64_t report_images = 16;
  int64_t stop_after = 0;  // stop after this many epochs of this invocation (0: run to the end; not stored)

  json::Value to_json() const;
  // As stored in checkpoints: every setting is type- and range-checked, and errors name `source`
  // (the checkpoint's path) and the setting.
  static TrainConfig from_json(const json::Value& v, const std::string& source = "the stored settings");
  // Ranges and combinations; errors name the flag.
  void validate() const;
  // data::LoaderOptions::class_power of class_sampling: natural 1, sqrt 0.5, balanced 0.
  double class_power() const;
  // Whether a training epoch that starts at `progress` (0..1 of the run) uses the early size.
  bool early_epoch(double progress) const { return early_height > 0 && progress < early_fraction; }
  // Whether the weights at the end of an epoch that ends at `progress` join the SWA average.
  bool swa_epoch(double progress) const { return swa_start > 0 && progress > swa_start; }
  // The checkpoint handed out (Select::automatic resolved).
  Select selected() const { return select != Select::automatic ? select : swa_start > 0 ? Select::swa : Select::last; }
  // The schedule's options: `schedule` with the run's base LR, SWA start and plateau direction filled in.
  optim::ScheduleOptions schedule_options() const {
    optim::ScheduleOptions s = schedule;
    s.base_lr = lr;
    s.swa_start = swa_start;
    s.plateau_maximize = plateau_metric == PlateauMetric::balanced_accuracy;
    return s;
  }
};

// The settings a recipe starts from. reference: TrainConfig{}. recommended: the recipe measured best
// on HAM10000's held-out test set (docs/results.md): class-balanced sampling without class weights
// or label smoothing, a one-epoch warm-up, mixup, and the weight average of the last 30% handed out.
TrainConfig recipe_settings(Recipe recipe);

// Registers the flags of tools/train (with --help texts and the recommended recipe's defaults),
// from the option table.
void add_train_flags(cli::Args& args);
// Reads them back: the settings of --recipe, then every flag given; range-checked, and a flag the
// run would ignore (e.g. --gamma with --schedule cosine, or any setting but --stop-after, --threads
// and --loader-threads with --resume) is an error. Errors name the flag.
TrainConfig train_config_from_flags(const cli::Args& args);

// "112x150" or "112" -> height, width; errors name `flag`.
void parse_size(const std::string& s, const char* flag, int64_t& h, int64_t& w);

}  // namespace dermis::experiment

template <>
struct dermis::Choices<dermis::experiment::ClassWeights> {
  using E = experiment::ClassWeights;
  static constexpr std::array<Choice<E>, 3> list{{{E::none, "none"}, {E::inverse, "inverse"}, {E::sqrt, "sqrt"}}};
};
template <>
struct dermis::Choices<dermis::experiment::ClassSampling> {
  using E = experiment::ClassSampling;
  static constexpr std::array<Choice<E>, 3> list{
      {{E::natural, "natural"}, {E::sqrt, "sqrt"}, {E::balanced, "balanced"}}};
};
template <>
struct dermis::Choices<dermis::experiment::PlateauMetric> {
  using E = experiment::PlateauMetric;
  static constexpr std::array<Choice<E>, 2> list{{{E::balanced_accuracy, "balanced_accuracy"}, {E::loss, "loss"}}};
};
template <>
struct dermis::Choices<dermis::experiment::NonfinitePolicy> {
  using E = experiment::NonfinitePolicy;
  static constexpr std::array<Choice<E>, 2> list{{{E::stop, "stop"}, {E::skip, "skip"}}};
};
template <>
struct dermis::Choices<dermis::experiment::Mixing> {
  using E = experiment::Mixing;
  static constexpr std::array<Choice<E>, 4> list{
      {{E::none, "none"}, {E::mixup, "mixup"}, {E::cutmix, "cutmix"}, {E::both, "both"}}};
};
template <>
struct dermis::Choices<dermis::experiment::NormalizationSource> {
  using E = experiment::NormalizationSource;
  static constexpr std::array<Choice<E>, 3> list{
      {{E::automatic, "auto"}, {E::dataset, "dataset"}, {E::imagenet, "imagenet"}}};
};
template <>
struct dermis::Choices<dermis::experiment::Select> {
  using E = experiment::Select;
  static constexpr std::array<Choice<E>, 4> list{
      {{E::automatic, "auto"}, {E::swa, "swa"}, {E::last, "last"}, {E::best, "best"}}};
};
template <>
struct dermis::Choices<dermis::experiment::DecisionPrior> {
  using E = experiment::DecisionPrior;
  static constexpr std::array<Choice<E>, 3> list{{{E::none, "none"}, {E::train, "train"}, {E::uniform, "uniform"}}};
};
template <>
struct dermis::Choices<dermis::experiment::Recipe> {
  using E = experiment::Recipe;
  static constexpr std::array<Choice<E>, 2> list{{{E::recommended, "recommended"}, {E::reference, "reference"}}};
};
template <>
struct dermis::Choices<dermis::experiment::Precision> {
  using E = experiment::Precision;
  static constexpr std::array<Choice<E>, 2> list{{{E::f32, "f32"}, {E::bf16, "bf16"}}};
};
