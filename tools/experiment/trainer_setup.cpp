// The training run's set-up (see trainer_run.h): settings, run folder, data, loaders, model.
#include "trainer.h"

#include <fmt/format.h>
#include <signal.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <optional>
#include <set>
#include <algorithm>
#include <atomic>
#include <thread>

#include "checkpoint.h"
#include "framework/io/torch_file.h"
#include "models/pretrained.h"
#include "decision.h"
#include "datasets/ham10000.h"
#include "datasets/split.h"
#include "datasets/synthetic_ham.h"
#include "evaluation.h"
#include "framework/cpu.h"
#include "framework/data/jpeg.h"
#include "framework/io/atomic_file.h"
#include "framework/data/loader.h"
#include "framework/distributed.h"
#include "framework/fault.h"
#include "framework/nn/layers.h"
#include "framework/ops.h"
#include "framework/optim/ema.h"
#include "framework/random.h"
#include "heatmap.h"
#include "models/registry.h"
#include "report.h"
#include "train_support.h"
#include "trainer_run.h"

namespace dermis::experiment::detail {

namespace fs = std::filesystem;

// Resuming takes the run's settings from the checkpoint so that it continues exactly. Everything
// that can be wrong with the settings is found here, before a file is written.
void Trainer::resolve_config() {
  if (!c_.resume.empty()) {
    const std::string path = c_.resume;
    ck_ = std::make_unique<Checkpoint>(load_checkpoint(path));
    TrainConfig stored = TrainConfig::from_json(ck_->info.config, path);  // checked, errors name the file
    stored.resume = path;
    stored.stop_after = c_.stop_after;
    if (c_.threads > 0) stored.threads = c_.threads;  // run settings: how, not what, the run computes
    if (c_.loader_threads > 0) stored.loader_threads = c_.loader_threads;
    DERMIS_CHECK(c_.data.empty() || fs::is_directory(c_.data), "flag --data: {} is not a folder", c_.data);
    // Stored as an absolute path: the next resume may run from another folder.
    if (!c_.data.empty())
      stored.data = fs::absolute(c_.data).lexically_normal().string(),
      stored.images = c_.images.empty() ? stored.images : c_.images;
    DERMIS_CHECK(stored.data.empty() || fs::is_directory(stored.data),
                 "{}: the run's data folder {} does not exist here{}; run from the folder the run was started in, or "
                 "give --data with where the data is now",
                 path, stored.data,
                 c_.data.empty() && fs::path(stored.data).is_relative() ? " (a path relative to where the run started)"
                                                                         : "");
    // The run continues in the folder that holds the checkpoint (a copied or moved run folder
    // continues where it is now, not where it was first written).
    const fs::path folder = fs::path(path).parent_path();
    stored.out = folder.empty() ? std::string(".") : folder.string();
    // Only last.safetensors carries the optimiser state (momentum) a run continues with; best, swa
    // and model.safetensors are weights for evaluate and predict.
    bool has_optimizer = false;
    for (auto& [name, t] : ck_->file.tensors) has_optimizer = has_optimizer || name.starts_with("optimizer.");
    const bool resumable = ck_->info.resumable ? *ck_->info.resumable  // recorded since the split fingerprints
                                               : has_optimizer || stored.momentum == 0 || ck_->info.step == 0;
    DERMIS_CHECK(resumable,
                 "flag --resume: {} holds no optimiser state, so a run cannot continue from it (best, swa and "
                 "model.safetensors hold weights for evaluate and predict); resume from the run's last.safetensors",
                 path);
    // The run's best epoch so far is kept beside it (the hand-out and --select best need that file).
    DERMIS_CHECK(ck_->info.best_epoch <= 0 || fs::is_regular_file(folder / "best.safetensors"),
                 "flag --resume: the run's best.safetensors (epoch {}) is not beside {}; resume from a copy of the "
                 "whole run folder, not of the checkpoint alone",
                 ck_->info.best_epoch, path);
    c_ = stored;
    fmt::print("resuming {} from {} (epoch {} done), writing to {}\n", c_.model, path, ck_->info.epoch, c_.out);
  }
  synthetic_ = c_.data.empty();
  if (c_.height == 0) c_.height = synthetic_ ? 72 : 112, c_.width = synthetic_ ? 96 : 150;
  c_.validate();  // again, now that the input size is known (--early-size must be smaller)
  // bf16 on a CPU without bf16 kernels: one clear error before the run folder exists.
  if (c_.precision == Precision::bf16 && c_.resume.empty()) cpu::require_bf16("flag --precision bf16", "--precision f32");
  if (c_.precision == Precision::bf16 && !c_.resume.empty())
    cpu::require_bf16(fmt::format("{} (a --precision bf16 run)", c_.resume), "a new run with --precision f32");
  if (c_.epochs == 0) c_.epochs = c_.minutes > 0 ? 100000 : (synthetic_ ? 12 : 30);
  if (!c_.init.empty()) {  // --init: read and mapped onto the model now, so that a bad file stops the run here
    init_file_ = io::load_weights_file(c_.init);
    const models::PretrainedReport r = models::load_pretrained(*models::create(c_.model, datasets::kNumClasses), *init_file_);
    init_summary_ = r.summary();
    init_loaded_.insert(r.loaded.begin(), r.loaded.end());
    if (ck_) init_file_.reset();  // resumed: the weights are the checkpoint's; the file only says which were pretrained
  }
  if (c_.out.empty()) {
    const std::time_t t = std::time(nullptr);
    char stamp[32];
    std::strftime(stamp, sizeof stamp, "%Y%m%d-%H%M%S", std::localtime(&t));
    c_.out = fmt::format("runs/{}-{}", c_.model, stamp);
  }
  budget_ = c_.minutes * 60;
  bf16_ = c_.precision == Precision::bf16;
  tty_ = isatty(fileno(stdout));
}

// Data-parallel: rank 0 alone writes files (run folder, checkpoints, metrics, report). The folder is
// checked here and created only once the data has been read, its normalisation computed and the
// model built (create_run_folder), so that bad data or flags leave no run folder behind.
void Trainer::prepare_run_folder() {
  ranks_ = dist::size();
  writer_ = dist::is_root();
  if (writer_) {
    std::error_code ec;
    DERMIS_CHECK(!fs::exists(c_.out, ec) || fs::is_directory(c_.out, ec),
                 "cannot create the run folder {}: a file of that name exists; choose another with --out", c_.out);
    // Where the folder will be created: its nearest existing ancestor must be a writable folder.
    fs::path up = fs::absolute(c_.out, ec).lexically_normal();
    while (up.has_relative_path() && !fs::exists(up, ec)) up = up.parent_path();
    DERMIS_CHECK(fs::is_directory(up, ec) && ::access(up.c_str(), W_OK) == 0,
                 "cannot create the run folder {}: {} {}; choose another with --out", c_.out, up.string(),
                 fs::is_directory(up, ec) ? "is not writable" : "is a file, not a folder");
    // A new run does not replace a run there: a folder with last.safetensors, result.json or
    // model.safetensors is refused; one that a run killed before its first checkpoint left
    // (split.csv, a log, a metrics.jsonl line, a first best or swa.safetensors) is reused.
    if (!ck_) {
      const fs::path last = fs::path(c_.out) / "last.safetensors";
      DERMIS_CHECK(!fs::exists(last),
                   "flag --out: {} already holds a run; continue it with --resume {}, or choose another --out (or "
                   "delete the folder to start it again)",
                   c_.out, last.string());
      for (const char* done : {"result.json", "model.safetensors"})  // written when a run finishes
        DERMIS_CHECK(!fs::exists(fs::path(c_.out) / done),
                     "flag --out: {} already holds a finished run or a model ({}); choose another --out (or delete "
                     "the folder to start it again)",
                     c_.out, done);
    }
  }
  metrics_path_ = (fs::path(c_.out) / "metrics.jsonl").string();
  best_path_ = (fs::path(c_.out) / "best.safetensors").string();
  last_path_ = (fs::path(c_.out) / "last.safetensors").string();
  swa_path_ = (fs::path(c_.out) / "swa.safetensors").string();
  model_path_ = (fs::path(c_.out) / "model.safetensors").string();
  // Threads: oneDNN's OpenMP threads on every core; the loader's workers mostly sleep (bounded
  // prefetch), so one per two cores keeps the model fed (bench/pipeline).
  const int cores = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  set_num_threads(c_.threads > 0 ? c_.threads : cores);
  set_conv_algorithm(c_.conv);
  loader_threads_ = c_.loader_threads > 0 ? c_.loader_threads : data::default_loader_threads(cores);
}

void Trainer::create_run_folder() {
  std::error_code ec;
  fs::create_directories(c_.out, ec);
  DERMIS_CHECK(!ec && fs::is_directory(c_.out), "cannot create the run folder {}: {}; choose another with --out",
               c_.out, ec ? ec.message() : "a file of that name exists");
  remove_stale_temporaries(c_.out);
  if (!ck_) std::remove(metrics_path_.c_str());
  io::write_file_atomic((fs::path(c_.out) / "split.csv").string(),
                        std::vector<uint8_t>(split_csv_.begin(), split_csv_.end()));
}

// The data set, its lesion-grouped stratified split, class weights or logit offsets, and the
// normalisation (the checkpoint's when resuming).
void Trainer::setup_data() {
  root_ = c_.data;
  if (synthetic_) {  // build/synthetic-ham10000, or build/synthetic-ham10000-COUNT for another size
    root_ = default_synthetic_dir();
    if (c_.synthetic_count != TrainConfig{}.synthetic_count) root_ += fmt::format("-{}", c_.synthetic_count);
  }
  if (synthetic_ && writer_) ensure_synthetic_dataset(root_, c_.synthetic_count);
  dist::barrier();
  const datasets::Dataset ds = datasets::read_ham10000(root_, {c_.images, c_.skip_bad_images});
  const datasets::Split split = run_split(ds, c_);
  split_["train"] = datasets::images_fingerprint(ds, split.train);
  split_["val"] = datasets::images_fingerprint(ds, split.val);
  if (!split.test.empty()) split_["test"] = datasets::images_fingerprint(ds, split.test);
  // A resumed run must train and validate on the images it started with: another metadata CSV (rows
  // added, removed or reordered) or missing images give another split. A checkpoint of an older
  // version, which records no split, is checked against the split.csv its run wrote.
  if (ck_) {
    std::string where;
    const auto recorded = recorded_split(ck_->info.split, c_.out, where);
    if (!recorded.empty())
      for (auto& [side, fp] : split_)
        DERMIS_CHECK(recorded.count(side) && recorded.at(side) == fp,
                     "{}: the data in {} split into other {} images than the run's (now count:fingerprint {}, in {} "
                     "{}): the metadata CSV or the image folder has changed since the run started (rows added, "
                     "removed or reordered, images missing); resume with the data the run started with",
                     c_.resume, root_, side, fp, where, recorded.count(side) ? recorded.at(side) : "none");
  }
  train_items_ = ds.items(split.train), val_items_ = ds.items(split.val), test_items_ = ds.items(split.test);
  val_ids_.clear();
  for (const size_t i : split.val) val_ids_.push_back({ds.samples[i].image_id, ds.samples[i].lesion_id});
  // The exact images of each side, for other programs (e.g. a PyTorch reference run): split.csv.
  if (writer_) split_csv_ = datasets::split_csv(ds, split);
  std::array<int64_t, datasets::kNumClasses> counts{};
  for (auto& it : train_items_) counts[it.label]++;
  if (c_.class_weights != ClassWeights::none)
    class_weights_ = datasets::class_weights(counts, c_.class_weights == ClassWeights::inverse ? 1.0 : 0.5);
  if (c_.logit_adjust > 0) logit_offsets_ = datasets::logit_offsets(counts, c_.logit_adjust, c_.class_power());
  class_counts_.assign(counts.begin(), counts.end());
  const bool imagenet = c_.normalization == NormalizationSource::imagenet ||
                        (c_.normalization == NormalizationSource::automatic && !c_.init.empty());
  norm_ = ck_        ? ck_->info.norm
          : imagenet ? data::Normalization{{0.485f, 0.456f, 0.406f}, {0.229f, 0.224f, 0.225f}}
              : data::compute_normalization(train_items_, c_.height, c_.width, 500, loader_threads_,
                                            static_cast<float>(c_.color_constancy));
  fmt::print("data: {} ({} images, {} lesions): {} train / {} validation images{}, lesion-grouped{}\n", root_,
             ds.samples.size(), ds.num_lesions(), train_items_.size(), val_items_.size(),
             split.test.empty() ? std::string()
                                : fmt::format(" / {} test images (held out: evaluate --split test)", split.test.size()),
             c_.folds > 0 ? fmt::format(" (validation: fold {} of {})", c_.fold, c_.folds) : std::string());
  // What each class gets of an epoch under --class-sampling.
  const std::vector<double> share = datasets::sampled_class_prior(counts, c_.class_power());
  std::string mix;
  for (int k = 0; k < datasets::kNumClasses; ++k)
    mix += fmt::format("{}{} {} ({:.1f}%)", k ? ", " : "", datasets::class_names()[k], counts[k],
                       counts[k] > 0 ? 100 * share[k] : 0.0);
  fmt::print("training images per class (share of each epoch, {} class sampling): {}\n", name_of(c_.class_sampling), mix);
}

// The training loader (and the --early-size one), and this rank's slice of the validation set.
void Trainer::setup_loaders() {
  data::LoaderOptions lo;
  lo.batch = c_.batch, lo.height = c_.height, lo.width = c_.width, lo.threads = loader_threads_, lo.seed = c_.seed;
  lo.drop_last = ranks_ > 1 || train_items_.size() > static_cast<size_t>(c_.batch);
  lo.shard_rank = dist::rank(), lo.shard_count = ranks_;  // --batch is per rank; the global batch is ranks x batch
  DERMIS_CHECK(train_items_.size() >= static_cast<size_t>(c_.batch * ranks_),
               "{} training images do not fill one global batch of {} ranks x {}; lower --batch", train_items_.size(),
               ranks_, c_.batch);
  lo.class_power = c_.class_power(), lo.cache = c_.cache, lo.skip_bad_images = c_.skip_bad_images, lo.norm = norm_;
  lo.augment.scale_min = static_cast<float>(c_.crop_scale_min);
  lo.augment.rotate_degrees = static_cast<float>(c_.rotate_degrees);
  lo.augment.brightness = lo.augment.contrast = lo.augment.saturation = static_cast<float>(c_.jitter);
  lo.augment.hue = static_cast<float>(c_.hue);
  lo.color_constancy = static_cast<float>(c_.color_constancy);
  train_loader_ = std::make_unique<data::Loader>(train_items_, lo);
  if (c_.swa_start > 0) {
    // The SWA average's BatchNorm statistics: augmented training batches in another order, every
    // rank the same global batches, so that R ranks x batch B compute what one rank with R x B does.
    data::LoaderOptions bo = lo;
    bo.seed = lo.seed ^ 0x5357413142ull, bo.shard_rank = 0, bo.shard_count = 1;
    bo.batch = c_.batch * ranks_, bo.drop_last = train_items_.size() > static_cast<size_t>(bo.batch);
    bn_loader_ = std::make_unique<data::Loader>(train_items_, bo);
  }
  batches_ = train_loader_->batches_per_epoch();
  if (c_.early_height > 0) {  // --early-size: the same epochs at the smaller size
    data::LoaderOptions eo = lo;
    eo.height = c_.early_height, eo.width = c_.early_width;
    early_loader_ = std::make_unique<data::Loader>(train_items_, eo);
  }
  data::LoaderOptions& vo = val_options_;
  vo = lo;
  vo.train = false, vo.shuffle = false, vo.drop_last = false, vo.class_power = 1, vo.batch = std::max<int64_t>(c_.batch, 64);
  vo.shard_rank = 0, vo.shard_count = 1;
  // Validation is sharded too: each rank takes a contiguous slice and the predictions are gathered.
  const size_t v0 = val_items_.size() * dist::rank() / ranks_, v1 = val_items_.size() * (dist::rank() + 1) / ranks_;
  val_loader_ = std::make_unique<data::Loader>(std::vector<data::Item>(val_items_.begin() + v0, val_items_.begin() + v1), vo);
}

// Model, optimiser, gradient reducer, weight average and schedule; resumed from the checkpoint.
void Trainer::setup_model() {
  manual_seed(c_.seed);
  model_ = ck_ ? ck_->model : models::create(c_.model, datasets::kNumClasses);
  if (init_file_) {
    models::load_pretrained(*model_, *init_file_);
    fmt::print("init: {}: {}\n", c_.init, init_summary_);
    init_file_.reset();
  }
  const std::set<std::string>& loaded = init_loaded_;
  // --sync-bn: training BatchNorm statistics over every rank's batch (the same path with one rank).
  if (c_.sync_bn) nn::set_sync_batch_norm(*model_, [](double* d, int64_t n) { dist::allreduce_sum(d, n); });
  opt_ = std::make_unique<optim::SGD>(model_->parameters(), optim::SGDOptions{.lr = static_cast<float>(c_.lr),
                                                                              .momentum = static_cast<float>(c_.momentum),
                                                                              .weight_decay = static_cast<float>(c_.weight_decay),
                                                                              .nesterov = c_.nesterov && c_.momentum > 0});
  if (writer_) {
    create_run_folder();
    uint64_t bytes = 0;
    for (auto& [n, t] : model_->state()) bytes += static_cast<uint64_t>(t.numel()) * 4;
    check_output_folder(c_.out, bytes * (2 + (c_.ema > 0) + (c_.swa_start > 0)));  // weights, momentum, averages
  }
  // Data-parallel: identical starting weights (the seed makes them so; the broadcast makes sure),
  // and gradients averaged across ranks in buckets while backward runs.
  dist::broadcast_parameters(model_->parameters());
  if (ranks_ > 1) reducer_ = std::make_unique<dist::GradientReducer>(model_->parameters());
  // The averages' own initialisation draws nothing from the run's random stream (their weights are
  // overwritten anyway), so --ema and --swa-start leave the trained weights as they are without them.
  if (c_.ema > 0) {  // the weight average is validated, and saved as best, instead of the raw weights
    DefaultGeneratorScope keep_stream;
    average_ = models::create(c_.model, datasets::kNumClasses);
    average_->eval();
    averager_ = std::make_unique<optim::WeightAverage>(*model_, *average_, c_.ema);
    if (ck_) {
      DERMIS_CHECK(load_weight_average(*ck_, *average_),
                   "{}: the run uses --ema but the checkpoint has no weight average", c_.resume);
      averager_->set_updates(ck_->info.step);
    }
  }
  if (c_.swa_start > 0) {
    DefaultGeneratorScope keep_stream;
    swa_ = models::create(c_.model, datasets::kNumClasses);
    swa_->eval();
    if (ck_ && ck_->info.swa_count > 0)
      DERMIS_CHECK(load_swa_average(*ck_, *swa_), "{}: the checkpoint counts {} SWA epochs but holds no average",
                   c_.resume, ck_->info.swa_count);
  }
  if (!loaded.empty()) {  // fine-tuning: per-parameter learning-rate scales (apply_lr_scales)
    const auto named = model_->named_parameters();
    bool after_stem = false;
    int64_t n_frozen = 0;
    for (auto& [name, v] : named) {
      const std::string top = name.substr(0, name.find('.'));
      int64_t stage = after_stem ? 1000 : 0;  // the stem (before any stage) is 0; the head after the stages
      for (const char* pre : {"layer", "stage"})
        if (top.rfind(pre, 0) == 0 && top.size() > std::strlen(pre) &&
            top.find_first_not_of("0123456789", std::strlen(pre)) == std::string::npos)
          stage = std::stoll(top.substr(std::strlen(pre))), after_stem = true;
      const bool pre = loaded.count(name) > 0;
      pretrained_.push_back(pre);
      frozen_.push_back(pre && c_.freeze_epochs > 0 && stage <= c_.freeze_stages);
      n_frozen += frozen_.back();
    }
    fmt::print("fine-tuning: {} of {} parameter tensors pretrained, at {:g}x the learning rate{}\n",
               std::count(pretrained_.begin(), pretrained_.end(), 1), named.size(), c_.init_lr_scale,
               c_.freeze_epochs > 0 ? fmt::format("; {} of them (stem and stages 1-{}) fixed for the first {} epochs",
                                                   n_frozen, c_.freeze_stages, c_.freeze_epochs)
                                    : std::string());
  }
  sched_ = std::make_unique<optim::Schedule>(c_.schedule_options());
  state_.model = c_.model, state_.classes = class_list(), state_.height = c_.height, state_.width = c_.width;
  state_.norm = norm_, state_.config = c_.to_json(), state_.split = split_;
  state_.train_prior = frequency_prior(class_counts_);
  state_.trained_prior = trained_class_prior(class_counts_, c_.class_power(), class_weights_, c_.logit_adjust);
  if (!ck_) return;
  state_.swa_count = ck_->info.swa_count;
  load_optimizer_state(*ck_, *model_, *opt_);
  sched_->set_state(ck_->info.schedule);
  default_generator().set_state(ck_->info.rng_seed, ck_->info.rng_counter);
  start_epoch_ = ck_->info.epoch;
  state_.step = ck_->info.step, state_.best_metric = ck_->info.best_metric, state_.best_epoch = ck_->info.best_epoch;
  state_.elapsed_seconds = ck_->info.elapsed_seconds;
}

// Resumed: earlier epochs' records, for the curves. Lines of epochs after the checkpoint (written
// before a crash) are dropped from metrics.jsonl so that they are not repeated.
void Trainer::restore_history() {
  run_t0_ = now() - state_.elapsed_seconds;
  if (!ck_) return;
  std::ifstream f(metrics_path_);
  std::string kept;
  for (std::string line; std::getline(f, line);) {
    json::Value v;
    try {
      v = json::parse(line, metrics_path_);
      if (v.at("epoch").integer() > start_epoch_) break;
    } catch (const Error&) {
      break;  // a line cut short by a crash
    }
    kept += line + "\n";
    EpochRecord r;
    r.epoch = v.at("epoch").integer(), r.train_loss = v.at("train_loss").number(), r.lr = v.at("lr").number();
    r.val.loss = v.at("val").at("loss").number(), r.val.accuracy = v.at("val").at("accuracy").number();
    r.val.balanced_accuracy = v.at("val").at("balanced_accuracy").number();
    if (const json::Value* ips = v.find("train_img_s")) r.img_s = ips->number();
    history_.push_back(r);
    lr_trace_.emplace_back(static_cast<double>(r.epoch - 1), r.lr);
  }
  f.close();
  if (writer_) io::write_file_atomic(metrics_path_, std::vector<uint8_t>(kept.begin(), kept.end()));
}

void Trainer::print_summary() const {
  fmt::print("model: {} ({:.2f} M parameters), input {}x{}, batch {}, {}, {} threads + {} loader thread{}{}\n",
             c_.model, model_->num_parameters() / 1e6, c_.height, c_.width, c_.batch,
             bf16_ ? "bf16 mixed precision" : "f32", num_threads(), loader_threads_, loader_threads_ > 1 ? "s" : "",
             c_.ema > 0 ? fmt::format(", weight average (decay {})", c_.ema) : "");
  if (swa_)
    fmt::print("stochastic weight averaging: epochs ending after {:.0f}% of the {}{}; hands out {}\n", 100 * c_.swa_start,
               c_.minutes > 0 ? fmt::format("{:g}-minute budget", c_.minutes) : fmt::format("{} epochs", c_.epochs),
               c_.schedule.swa_lr > 0 ? fmt::format(", at a constant lr {:g}", c_.schedule.swa_lr) : std::string(),
               name_of(c_.selected()));
  if (c_.mix != Mixing::none)
    fmt::print("batch mixing: {} ({:.0f}% of batches)\n", name_of(c_.mix), 100 * c_.mix_prob);
  if (ranks_ > 1)
    fmt::print("data-parallel: {} ranks x batch {} (global batch {}), {} gradient buckets, {} BatchNorm\n", ranks_,
               c_.batch, ranks_ * c_.batch, reducer_->buckets(), c_.sync_bn ? "synchronised" : "per-rank");
  if (early_loader_)
    fmt::print("progressive resizing: training epochs that start in the first {:.0f}% of the {} use input {}x{}, "
               "later ones {}x{}\n",
               100 * c_.early_fraction,
               c_.minutes > 0 ? fmt::format("{:g}-minute budget", c_.minutes) : fmt::format("{} epochs", c_.epochs),
               c_.early_height, c_.early_width, c_.height, c_.width);
  fmt::print("cpu: {}\n", cpu::summary());
  fmt::print("run folder: {}\n", c_.out);
  std::fflush(stdout);
}

}  // namespace dermis::experiment::detail
