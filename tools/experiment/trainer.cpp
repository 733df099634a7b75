// The training run (see trainer.h, trainer_run.h): the epoch loop, steps, validation, checkpoints, report.
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
#include <algorithm>
#include <atomic>
#include <thread>

#include "checkpoint.h"
#include "clinical.h"
#include "decision.h"
#include "mixing.h"
#include "datasets/ham10000.h"
#include "datasets/split.h"
#include "datasets/synthetic_ham.h"
#include "evaluation.h"
#include "framework/cpu.h"
#include "framework/data/jpeg.h"
#include "framework/data/loader.h"
#include "framework/distributed.h"
#include "framework/fault.h"
#include "framework/io/atomic_file.h"
#include "framework/nn/layers.h"
#include "framework/ops.h"
#include "framework/optim/ema.h"
#include "framework/random.h"
#include "heatmap.h"
#include "models/registry.h"
#include "report.h"
#include "train_support.h"
#include "trainer_run.h"

namespace dermis::experiment {

namespace fs = std::filesystem;


std::string default_synthetic_dir() {
  std::error_code ec;
  const fs::path exe = fs::read_symlink("/proc/self/exe", ec);
  // build/tools/train -> build/synthetic-ham10000
  if (!ec && exe.has_parent_path() && exe.parent_path().has_parent_path())
    return (exe.parent_path().parent_path() / "synthetic-ham10000").string();
  return "synthetic-ham10000";
}

void ensure_synthetic_dataset(const std::string& dir, int64_t count) {
  datasets::SyntheticOptions o;
  o.count = count, o.width = 200, o.height = 150, o.seed = 2024;
  if (datasets::synthetic_ham10000_matches(dir, o)) return;
  fmt::print("generating the built-in synthetic dataset ({} images, 200x150, HAM10000 layout) in {}\n", count, dir);
  std::fflush(stdout);
  o.overwrite = true;
  datasets::write_synthetic_ham10000(dir, o);
}


namespace detail {

TrainResult Trainer::run() {
  resolve_config();
  prepare_run_folder();
  setup_data();
  setup_loaders();
  setup_model();
  restore_history();
  print_summary();
  StopSignals signals;
  const int64_t last_epoch = c_.stop_after > 0 ? std::min(c_.epochs, start_epoch_ + c_.stop_after) : c_.epochs;
  int64_t epoch = start_epoch_;
  for (; epoch < last_epoch && !stop_; ++epoch) {
    const EpochEnd e = run_epoch(epoch);
    if (e == EpochEnd::stop) break;
    if (e == EpochEnd::stop_after_this) {
      ++epoch;
      break;
    }
  }
  epochs_done_ = epoch;
  return interrupted_by_ || !writer_ ? result() : finish();
}

EpochEnd Trainer::run_epoch(int64_t epoch) {
  model_->train();
  EpochState es = begin_epoch(epoch);
  if (!train_steps(es)) return EpochEnd::stop;  // interrupted mid-epoch, saved
  if (tty_) fmt::print("\n");
  if (nonfinite_skipped_) fmt::print("epoch {}: {} step(s) skipped for non-finite values\n", epoch + 1, nonfinite_skipped_);
  nonfinite_skipped_ = 0;
  const auto [loss_sum, seen] = epoch_loss(es);
  if (seen == 0) return EpochEnd::stop;  // the budget ran out before this epoch started
  return end_epoch(es, loss_sum, seen) ? EpochEnd::next : EpochEnd::stop_after_this;
}

// --init's learning-rate scales for this epoch: pretrained parameters at --init-lr-scale, those
// --freeze-epochs holds at 0 while it lasts.
void Trainer::apply_lr_scales(int64_t epoch) {
  for (size_t i = 0; i < pretrained_.size(); ++i)
    opt_->set_lr_scale(i, frozen_[i] && epoch < c_.freeze_epochs ? 0.f
                          : pretrained_[i]                         ? static_cast<float>(c_.init_lr_scale)
                                                                   : 1.f);
  if (!frozen_.empty() && c_.freeze_epochs > 0 && epoch == c_.freeze_epochs)
    fmt::print("epoch {}: the frozen pretrained stages train from now on\n", epoch + 1);
}

// Where the epoch starts (mid-epoch when resumed from such a checkpoint, with any rank count) and
// its input size (--early-size): decided when it starts, the same on every rank; a run resumed
// mid-epoch keeps it. Progress never falls, so the early loader is not needed again once unused.
EpochState Trainer::begin_epoch(int64_t epoch) {
  EpochState es;
  es.epoch = epoch;
  apply_lr_scales(epoch);
  const bool resumed_mid_epoch = ck_ && epoch == start_epoch_ && ck_->info.epoch_position > 0;
  if (resumed_mid_epoch) {
    es.position = ck_->info.epoch_position;
    es.batch = es.steps = es.position / (c_.batch * ranks_);
    es.base_loss = ck_->info.epoch_loss_sum, es.base_seen = ck_->info.epoch_images;
  }
  if (early_loader_) {
    const double progress = std::max(budget_ > 0 ? (now() - run_t0_) / budget_ : 0.0,
                                     static_cast<double>(epoch) / static_cast<double>(c_.epochs));
    es.early = resumed_mid_epoch ? ck_->info.epoch_early : agree(c_.early_epoch(progress) ? 1 : 0) != 0;
    if (es.early != was_early_) fmt::print("epoch {}: training input {}\n", epoch + 1, train_size(es.early));
    was_early_ = es.early;
  }
  es.first_batch = es.batch;
  es.t0 = now();
  return es;
}

bool Trainer::train_steps(EpochState& es) {
  auto ep = (es.early ? *early_loader_ : *train_loader_).epoch(es.epoch, es.position);
  if (c_.early_height > 0 && !es.early) early_loader_.reset();  // frees its --cache
  while (true) {
    if (out_of_time()) {
      stop_ = true;
      break;
    }
    auto batch = ep.next();
    if (!batch) break;
    if (!step(*batch, es)) continue;
    print_progress(es);
    if (interrupted(&es)) return false;
  }
  return true;
}

// Time budget: leave room for this epoch's validation, the final evaluation of the best checkpoint
// (another validation pass), the checkpoints and the report.
bool Trainer::out_of_time() {
  if (budget_ <= 0) return false;
  const double val = val_seconds_ > 0 ? val_seconds_ : val_items_.size() / std::max(train_img_s_ * 2.5, 20.0);
  return agree(now() - run_t0_ + 2 * val + 20 > budget_ ? 1 : 0) != 0;
}

// One optimiser step; a non-finite loss or gradient never reaches the weights.
bool Trainer::step(data::Batch& batch, EpochState& es) {
  const double epoch_pos = es.epoch + static_cast<double>(es.batch) / batches_;
  es.lr = sched_->lr(epoch_pos, budget_ > 0 ? (now() - run_t0_) / budget_ : epoch_pos / c_.epochs);
  opt_->set_lr(static_cast<float>(es.lr));
  if (es.batch % std::max<int64_t>(1, batches_ / 20) == 0) lr_trace_.emplace_back(epoch_pos, es.lr);
  if (reverse_batches_) reverse_batch(batch);
  if (nan_step_ && !nan_injected_ && state_.step + 1 == *nan_step_) {
    std::fill(batch.images.values().begin(), batch.images.values().end(), std::nanf(""));
    nan_injected_ = true;
  }
  // With --nonfinite skip, a skipped step must not leave its batch statistics behind either.
  std::vector<Tensor> buffers_before;
  if (c_.nonfinite == NonfinitePolicy::skip)
    for (auto& [n, t] : model_->named_buffers()) buffers_before.push_back(t->clone());
  Var logits;
  const float lv = forward_backward(batch, &logits, es);
  if (const std::string bad = first_nonfinite(logits, lv, *model_); !bad.empty())
    return skip_nonfinite(bad, es, buffers_before);
  nonfinite_in_row_ = 0;
  opt_->step();
  if (averager_) averager_->update(*model_);
  if (fail_step_ && state_.step + 1 == *fail_step_ && dist::rank() == fault::value("fail_rank").value_or(0))
    DERMIS_FAIL("injected failure (DERMIS_FAULT) on rank {} at optimiser step {}", dist::rank(), state_.step + 1);
  es.loss_here += lv * batch.images.dim(0);
  es.seen_here += batch.images.dim(0);
  ++es.steps, ++es.batch, ++state_.step;
  es.position += c_.batch * ranks_;
  train_img_s_ = static_cast<double>(es.seen_here) * ranks_ / (now() - es.t0);  // all ranks together
  return true;
}

// The loss of the batch; gradients computed and, with several ranks, averaged (a non-finite value
// on one rank reaches all).
float Trainer::forward_backward(data::Batch& batch, Var* logits, EpochState& es) {
  Var loss;
  {
    AutocastBF16 ac(bf16_);
    const CrossEntropyParams cp{.class_weights = class_weights_,
                                .label_smoothing = static_cast<float>(c_.label_smoothing),
                                .logit_offsets = logit_offsets_};
    // --mix: a generator of its own per optimiser step, so a resumed run mixes as an uninterrupted one.
    Generator g(Generator::bits(c_.seed ^ 0x6d69786d69780000ull, static_cast<uint64_t>(state_.step)));
    std::optional<MixedBatch> mixed;
    if (c_.mix != Mixing::none && batch.images.dim(0) > 1 && g.uniform() < c_.mix_prob) {
      const bool cut = c_.mix == Mixing::cutmix || (c_.mix == Mixing::both && g.uniform() < 0.5f);
      mixed = mix_batch(batch.images, cut ? MixKind::cutmix : MixKind::mixup, cut ? c_.cutmix_alpha : c_.mixup_alpha, g);
    }
    *logits = model_->forward(Var(batch.images));
    loss = softmax_cross_entropy(*logits, batch.labels, cp);
    if (mixed) {  // lam * CE(own labels) + (1 - lam) * CE(partners' labels)
      std::vector<int> other(batch.labels.size());
      for (size_t i = 0; i < other.size(); ++i) other[i] = batch.labels[mixed->partner[i]];
      const Shape sh = loss.value().shape();  // a scalar; elementwise ops take rank 1 to 4
      const Var own = reshape(loss, {1}), theirs = reshape(softmax_cross_entropy(*logits, other, cp), {1});
      loss = reshape(own * Var(Tensor::full({1}, static_cast<float>(mixed->lam))) +
                         theirs * Var(Tensor::full({1}, static_cast<float>(1 - mixed->lam))),
                     sh);
    }
  }
  opt_->zero_grad();
  loss.backward();
  if (reducer_) {
    reducer_->finish();
    es.overlap_sum += reducer_->overlap_fraction(), es.wait_sum += reducer_->wait_seconds();
  }
  return loss.item();
}

// --nonfinite skip: drop the step (gradients and BatchNorm statistics), up to 10 in a row;
// otherwise, or past that, stop with the step, the tensor and the last good checkpoint named.
bool Trainer::skip_nonfinite(const std::string& bad, EpochState& es, const std::vector<Tensor>& buffers_before) {
  const std::string where = fmt::format("epoch {} step {} (optimiser step {})", es.epoch + 1, es.batch + 1, state_.step + 1);
  if (c_.nonfinite == NonfinitePolicy::skip && ++nonfinite_in_row_ <= 10) {
    ++nonfinite_skipped_;
    fmt::print(stderr, "{}warning: {} is not finite at {}; the step is skipped\n", tty_ ? "\n" : "", bad, where);
    opt_->zero_grad();
    const auto bufs = model_->named_buffers();
    for (size_t i = 0; i < bufs.size(); ++i) *bufs[i].second = buffers_before[i];
    ++es.batch, es.position += c_.batch * ranks_;
    return false;
  }
  DERMIS_FAIL("{} is not finite at {}{}; the weights were not updated and the last good checkpoint is {}; lower --lr{}",
              bad, where, nonfinite_in_row_ > 10 ? " (the 11th such step in a row)" : "",
              fs::exists(last_path_) ? last_path_ : std::string("(none yet)"),
              c_.nonfinite == NonfinitePolicy::skip ? "" : ", or pass --nonfinite skip to drop such steps");
}

// The loss shown is this rank's running mean (rank 0 prints).
void Trainer::print_progress(const EpochState& es) const {
  if (!(tty_ || es.batch % std::max<int64_t>(1, batches_ / 5) == 0 || es.batch == batches_)) return;
  const double dt = now() - es.t0;
  const double eta = budget_ > 0 ? budget_ - (now() - run_t0_)
                                 : (batches_ - es.batch + (c_.epochs - es.epoch - 1) * batches_) * dt /
                                       static_cast<double>(std::max<int64_t>(1, es.batch - es.first_batch));
  fmt::print("{}epoch {}/{}  step {}/{}  loss {:.4f}  lr {:.4g}  {:.1f} img/s  ETA {}{}", tty_ ? "\r" : "",
             es.epoch + 1, budget_ > 0 ? std::string("-") : std::to_string(c_.epochs), es.batch, batches_,
             (es.base_loss + es.loss_here) / static_cast<double>(std::max<int64_t>(1, es.base_seen + es.seen_here)),
             es.lr, train_img_s_, hms(eta), tty_ ? "    " : "\n");
  std::fflush(stdout);
}

// SIGINT/SIGTERM (on any rank): save last.safetensors (mid-epoch when `mid` is given) and say how
// to continue. True when the run stops here.
bool Trainer::interrupted(const EpochState* mid) {
  const int sig = static_cast<int>(agree(StopSignals::received()));
  if (!sig) return false;
  if (mid) {
    set_progress(mid);
    stamp();
    write_last();
    fmt::print("\n{} received: stopped after epoch {} step {}/{}; the run is saved in {}\n"
               "continue it with: train --resume {}\n",
               signal_name(sig), mid->epoch + 1, mid->batch, batches_, last_path_, last_path_);
  } else {
    fmt::print("{} received: stopped after epoch {}; the run is saved in {}\ncontinue it with: train --resume {}\n",
               signal_name(sig), state_.epoch, last_path_, last_path_);
  }
  std::fflush(stdout);
  interrupted_by_ = sig;
  return true;
}

// The epoch's loss sum and image count over all ranks (a collective: every rank calls it).
std::pair<double, int64_t> Trainer::epoch_loss(const EpochState& es) const {
  double part[2] = {es.loss_here, static_cast<double>(es.seen_here)};
  if (ranks_ > 1) dist::allreduce_sum(part, 2);
  return {es.base_loss + part[0], es.base_seen + static_cast<int64_t>(part[1])};
}

// Validation, the epoch's line in metrics.jsonl, and the checkpoints: last (with optimiser state,
// for --resume) and best by balanced accuracy. False when a signal stops the run here.
bool Trainer::end_epoch(const EpochState& es, double loss_sum, int64_t seen) {
  const double tv = now();
  const metrics::Report r = validate(evaluated());
  last_report_ = r;
  std::optional<metrics::Report> swa_r;
  if (swa_ && agree(c_.swa_epoch(progress_at_epoch_end(es.epoch)) ? 1 : 0) != 0) {  // the same on every rank
    update_swa();
    swa_r = validate(*swa_);
    swa_report_ = swa_r;
  }
  val_seconds_ = now() - tv;
  sched_->epoch_end(c_.plateau_metric == PlateauMetric::loss ? r.loss : r.balanced_accuracy);
  const EpochRecord rec{es.epoch + 1, loss_sum / static_cast<double>(seen), es.lr, train_img_s_, now() - run_t0_, r};
  history_.push_back(rec);
  log_epoch(es, rec, swa_r ? &*swa_r : nullptr);
  set_progress(nullptr);
  state_.epoch = es.epoch + 1;
  stamp();
  if (swa_r && writer_) save_checkpoint(swa_path_, *swa_, state_);
  if (r.balanced_accuracy > state_.best_metric) {
    state_.best_metric = r.balanced_accuracy, state_.best_epoch = es.epoch + 1;
    if (writer_) save_checkpoint(best_path_, evaluated(), state_);
    best_report_ = r;
  }
  write_last();
  return !interrupted(nullptr);
}

// Sharded over the ranks, the predictions gathered.
metrics::Report Trainer::validate(models::Classifier& m) {
  Predictions p = [&] {
    AutocastBF16 ac(bf16_);
    return predict(m, *val_loader_, false);
  }();
  if (ranks_ > 1) {
    const double loss_sum = dist::allreduce_sum(p.loss * static_cast<double>(p.labels.size()));
    p.labels = dist::allgather(p.labels);
    p.probs = dist::allgather(p.probs);
    p.loss = loss_sum / static_cast<double>(std::max<size_t>(1, p.labels.size()));
  }
  metrics::Report r =
      metrics::evaluate(p.labels, decided(std::move(p.probs), c_.decision_prior), datasets::kNumClasses);
  r.loss = p.loss;
  return r;
}

std::vector<float> Trainer::decided(std::vector<float> probs, DecisionPrior rule) const {
  shift_prior(probs, state_.trained_prior, target_prior(state_, rule, c_.out));
  return probs;
}

void Trainer::log_epoch(const EpochState& es, const EpochRecord& rec, const metrics::Report* swa) {
  const metrics::Report& r = rec.val;
  fmt::print("epoch {}: train loss {:.4f} | val loss {:.4f}  accuracy {:.4f}  balanced accuracy {:.4f}  macro F1 {:.4f}"
             "{}  ({:.1f} img/s, {} elapsed)\n",
             es.epoch + 1, rec.train_loss, r.loss, r.accuracy, r.balanced_accuracy, r.macro_f1,
             swa ? fmt::format(" | SWA of {} epochs: balanced accuracy {:.4f}", state_.swa_count, swa->balanced_accuracy)
                 : std::string(),
             train_img_s_, hms(now() - run_t0_));
  std::fflush(stdout);
  json::Object line{{"epoch", es.epoch + 1},      {"train_loss", rec.train_loss}, {"lr", es.lr},
                    {"train_img_s", train_img_s_}, {"elapsed_s", rec.elapsed_s},   {"steps", es.steps},
                    {"partial_epoch", es.steps < batches_}, {"val", r.to_json(class_list())}};
  if (c_.early_height > 0) line["train_size"] = train_size(es.early);
  if (swa) line["swa_val"] = swa->to_json(class_list()), line["swa_epochs"] = state_.swa_count;
  if (reducer_) {
    const double here = static_cast<double>(std::max<int64_t>(1, es.steps - es.first_batch));
    line["ranks"] = ranks_;
    line["allreduce_mb_per_step"] = static_cast<double>(reducer_->bytes_per_step()) / 1e6;
    line["allreduce_overlap"] = es.overlap_sum / here;
    line["allreduce_wait_ms"] = 1e3 * es.wait_sum / here;
    line["step_ms"] = 1e3 * (now() - es.t0) / here;
  }
  if (writer_) append_line(metrics_path_, json::dump(line));
}

// The position inside the epoch for a mid-epoch checkpoint (`mid`: an interrupt), or none (the
// checkpoint is at the end of state_.epoch).
void Trainer::set_progress(const EpochState* mid) {
  if (mid) {
    const auto [ls, n] = epoch_loss(*mid);
    state_.epoch = mid->epoch;
    state_.epoch_batches = mid->batch, state_.epoch_loss_sum = ls, state_.epoch_images = n;
    state_.epoch_position = mid->position, state_.epoch_early = mid->early;
  } else {
    state_.epoch_batches = 0, state_.epoch_loss_sum = 0, state_.epoch_images = 0, state_.epoch_position = 0;
    state_.epoch_early = false;
  }
}

// The rest of the run state a checkpoint records: time so far, schedule and generator.
void Trainer::stamp() {
  state_.elapsed_seconds = now() - run_t0_;
  state_.schedule = sched_->state();
  state_.rng_seed = default_generator().seed(), state_.rng_counter = default_generator().counter();
}

// last.safetensors, with the optimiser state (and the weight average) for --resume.
void Trainer::write_last() {
  if (writer_) save_checkpoint(last_path_, *model_, state_, opt_.get(), average_.get(), swa_.get());
}

// The run's progress (0..1) when epoch `epoch` (0-based) ends: the larger of its share of the
// epochs and of the time budget (as for --early-size).
double Trainer::progress_at_epoch_end(int64_t epoch) const {
  return std::max(budget_ > 0 ? (now() - run_t0_) / budget_ : 0.0,
                  static_cast<double>(epoch + 1) / static_cast<double>(c_.epochs));
}

// The running mean of the epoch-end weights, then the average's BatchNorm statistics recomputed as
// cumulative means over kSwaBnBatches augmented training batches (momentum 1/i at the i-th batch,
// as torch.optim.swa_utils.update_bn), since the averaged weights' activations have statistics of
// their own. Every rank computes the same average (identical weights and batches).
void Trainer::update_swa() {
  constexpr int64_t kSwaBnBatches = 64;
  const int64_t n = ++state_.swa_count;
  const auto src = model_->named_parameters();
  const auto dst = swa_->named_parameters();
  for (size_t i = 0; i < src.size(); ++i) {
    const Tensor w = src[i].second.value().plain();
    Tensor a = dst[i].second.value();
    DERMIS_CHECK(a.numel() == w.numel() && a.is_plain(), "internal: SWA parameter {} does not match", src[i].first);
    const float* pw = w.data();
    float* pa = a.data();
    const float f = 1.0f / static_cast<float>(n);
    for (int64_t k = 0; k < w.numel(); ++k) pa[k] = n == 1 ? pw[k] : pa[k] + (pw[k] - pa[k]) * f;
  }
  std::vector<nn::BatchNorm2d*> bns;
  std::vector<nn::CBAM*> cbams;
  swa_->apply([&](nn::Module& m) {
    if (auto* b = dynamic_cast<nn::BatchNorm2d*>(&m)) bns.push_back(b);
    if (auto* c = dynamic_cast<nn::CBAM*>(&m)) cbams.push_back(c);
  });
  std::vector<float> saved;
  for (auto* b : bns) saved.push_back(b->options.momentum);
  for (auto* c : cbams) saved.push_back(c->options.bn_momentum);
  swa_->train();
  {
    NoGrad ng;
    DefaultGeneratorScope keep_stream;  // the average's dropout must not move the run's masks
    AutocastBF16 ac(bf16_);
    auto ep = bn_loader_->epoch(state_.swa_count);
    for (int64_t i = 1; i <= kSwaBnBatches; ++i) {
      auto b = ep.next();
      if (!b) break;
      const float m = 1.0f / static_cast<float>(i);
      for (auto* x : bns) x->options.momentum = m;
      for (auto* x : cbams) x->options.bn_momentum = m;
      swa_->forward(Var(b->images));
    }
  }
  size_t k = 0;
  for (auto* b : bns) b->options.momentum = saved[k++];
  for (auto* c : cbams) c->options.bn_momentum = saved[k++];
  swa_->eval();
}

std::string Trainer::selected_path() const {
  switch (c_.selected()) {
    case Select::swa: return swa_path_;
    case Select::best: return best_path_;
    default: return last_path_;
  }
}

// The run's training throughput: the mean of its epochs' figures (those resumed from metrics.jsonl
// included), so one slow last epoch does not stand for the run.
double Trainer::run_img_s() const {
  double sum = 0;
  int n = 0;
  for (const EpochRecord& r : history_)
    if (r.img_s > 0) sum += r.img_s, ++n;
  return n ? sum / n : train_img_s_;
}

TrainResult Trainer::result() const {
  TrainResult res;
  res.out_dir = c_.out, res.best_checkpoint = best_path_, res.last_checkpoint = last_path_;
  res.epochs_done = epochs_done_, res.train_img_s = run_img_s(), res.interrupted_by = interrupted_by_;
  if (!interrupted_by_) {
    res.best_epoch = state_.best_epoch;
    if (best_report_) res.best_val = *best_report_;
  }
  res.elapsed_s = now() - t_start_;
  return res;
}

// Final evaluation of the handed-out checkpoint (--select), its copy as model.safetensors,
// val_predictions.csv, result.json and the report: rank 0 alone (the other ranks may be on hosts
// without its files).
TrainResult Trainer::finish() {
  TrainResult res = result();
  DERMIS_CHECK(fs::exists(best_path_), "no epoch finished within the budget; give --minutes more time");
  data::Loader full(val_items_, val_options_);
  if (!best_report_) {  // the best epoch predates a --resume: validate it again, over the whole validation set
    Checkpoint best = load_checkpoint(best_path_);
    Predictions p = predict(*best.model, full, false);
    res.best_val = metrics::evaluate(p.labels, decided(p.probs, c_.decision_prior), datasets::kNumClasses);
    res.best_val.loss = p.loss;
    res.best_epoch = best.info.best_epoch;
  }
  Select sel = c_.selected();
  if (sel == Select::swa && !fs::exists(swa_path_)) {
    fmt::print("warning: no epoch ended after --swa-start {} of the run, so there is no weight average; the last "
               "epoch's weights are handed out instead\n",
               c_.swa_start);
    sel = Select::last;
  }
  res.selected = std::string(name_of(sel));
  res.selected_checkpoint = sel == Select::swa ? swa_path_ : sel == Select::best ? best_path_ : last_path_;
  Checkpoint handed = load_checkpoint(res.selected_checkpoint);
  if (sel == Select::last) select_weights(handed, "auto");  // an --ema run's average, as validated
  Predictions p = predict(*handed.model, full, false);
  res.selected_val_train_prior =
      metrics::evaluate(p.labels, decided(p.probs, DecisionPrior::train), datasets::kNumClasses);
  p.probs = decided(std::move(p.probs), c_.decision_prior);
  res.selected_val = metrics::evaluate(p.labels, p.probs, datasets::kNumClasses);
  res.selected_val.loss = p.loss;
  std::vector<ImageId> ids;
  for (const int64_t item : p.items) ids.push_back(val_ids_.at(static_cast<size_t>(item)));
  const double se_lesions =
      metrics::balanced_accuracy_se_grouped(p.labels, p.probs, lesion_groups(ids), datasets::kNumClasses);
  // model.safetensors: the handed-out weights alone (no optimiser state), what users take.
  res.model_checkpoint = model_path_;
  save_checkpoint(model_path_, *handed.model, handed.info);
  res.result_json = (fs::path(c_.out) / "result.json").string();
  json::Object val_json = res.selected_val.to_json(class_list());
  val_json["balanced_accuracy_se_lesions"] = std::isnan(se_lesions) ? json::Value(nullptr) : json::Value(se_lesions);
  json::Object out{{"selected", res.selected},
                   {"checkpoint", res.selected_checkpoint},
                   {"model_checkpoint", res.model_checkpoint},
                   {"val", val_json},
                   {"val_predictions", "val_predictions.csv"},
                   {"val_train_prior", res.selected_val_train_prior.to_json(class_list())},
                   {"best_epoch", res.best_epoch},
                   {"best_val_balanced_accuracy", res.best_val.balanced_accuracy},
                   {"epochs", epochs_done_},
                   {"train_img_s", res.train_img_s},
                   {"elapsed_s", now() - run_t0_},
                   {"config", c_.to_json()}};
  if (last_report_) out["last_val_balanced_accuracy"] = last_report_->balanced_accuracy;
  if (swa_report_) out["swa_val_balanced_accuracy"] = swa_report_->balanced_accuracy, out["swa_epochs"] = state_.swa_count;
  if (!test_items_.empty()) out["test"] = score_test_set(res, sel, *handed.model);
  // val_predictions.csv: the handed-out checkpoint's probabilities on every validation image read,
  // as decided for result.json's "val" (the run's --decision-prior), in evaluate --predictions'
  // format, so that tools/compare_predictions pairs runs that validated the same images (the same
  // folds of two recipes, say) and repeat pools a cross-validation's folds with an error over
  // lesions. Written just before result.json, which it belongs to.
  const std::string pred_csv = predictions_csv(ids, p.labels, p.probs, class_list());
  io::write_file_atomic((fs::path(c_.out) / "val_predictions.csv").string(),
                        std::vector<uint8_t>(pred_csv.begin(), pred_csv.end()));
  const std::string text = json::dump(out);
  io::write_file_atomic(res.result_json, std::vector<uint8_t>(text.begin(), text.end()));
  write_run_report(handed, res, p);
  res.elapsed_s = now() - t_start_;
  return res;
}

// The held-out test set (--test-fraction), once the run has chosen everything: the handed-out
// checkpoint (as trained and with the training set's prior) and each saved checkpoint.
json::Object Trainer::score_test_set(TrainResult& res, Select sel, models::Classifier& handed) {
  data::Loader test(test_items_, val_options_);
  Predictions p = predict(handed, test, false);
  res.selected_test = metrics::evaluate(p.labels, decided(p.probs, c_.decision_prior), datasets::kNumClasses);
  res.selected_test->loss = p.loss;
  res.selected_test_train_prior =
      metrics::evaluate(p.labels, decided(std::move(p.probs), DecisionPrior::train), datasets::kNumClasses);
  json::Object by;
  for (const auto& [name, path] : {std::pair{Select::best, best_path_}, std::pair{Select::last, last_path_},
                                   std::pair{Select::swa, swa_path_}}) {
    if (path.empty() || !fs::exists(path)) continue;
    metrics::Report r;
    if (name == sel) {
      r = *res.selected_test;
    } else {
      Checkpoint ck = load_checkpoint(path);
      if (name == Select::last) select_weights(ck, "auto");  // as validated
      Predictions q = predict(*ck.model, test, false);
      r = metrics::evaluate(q.labels, decided(std::move(q.probs), c_.decision_prior), datasets::kNumClasses);
      r.loss = q.loss;
    }
    by[std::string(name_of(name))] = r.to_json(class_list());
    res.test_by_checkpoint[std::string(name_of(name))] = r;
  }
  std::string others;
  for (const auto& [name, r] : res.test_by_checkpoint)
    if (name != name_of(sel)) others += fmt::format(", {} {:.4f}", name, r.balanced_accuracy);
  fmt::print("held-out test set ({} images, seen by no choice of the run): {} balanced accuracy {:.4f}, accuracy "
             "{:.4f} (with the training set's prior {:.4f}){}\n",
             test_items_.size(), name_of(sel), res.selected_test->balanced_accuracy, res.selected_test->accuracy,
             res.selected_test_train_prior->accuracy, others);
  return json::Object{{"images", static_cast<int64_t>(test_items_.size())},
                      {"selected", res.selected_test->to_json(class_list())},
                      {"selected_train_prior", res.selected_test_train_prior->to_json(class_list())},
                      {"checkpoints", by}};
}

// report.html: the curves, the best checkpoint's validation, and a spread of validation images
// (round-robin over the classes, in validation order) with attention heatmaps.
void Trainer::write_run_report(Checkpoint& best, TrainResult& res, const Predictions& handed) {
  ReportInput ri;
  ri.title = fmt::format("dermis: {} on {}", c_.model, synthetic_ ? "the synthetic dataset" : root_);
  ri.command = command_, ri.checkpoint = res.selected_checkpoint, ri.classes = class_list(), ri.epochs = history_;
  ri.lr_trace = lr_trace_, ri.final_val = res.selected_val, ri.best_epoch = res.best_epoch;
  ri.selected = res.selected, ri.final_val_train_prior = res.selected_val_train_prior;
  ri.clinical = clinical_report(handed.labels, handed.probs, class_list());
  ri.test = res.selected_test, ri.test_train_prior = res.selected_test_train_prior;
  ri.test_by_checkpoint = res.test_by_checkpoint;
  ri.config_json = json::dump(c_.to_json());
  std::vector<std::vector<size_t>> by_class(datasets::kNumClasses);
  for (size_t i = 0; i < val_items_.size(); ++i) by_class[val_items_[i].label].push_back(i);
  std::vector<data::Item> sel;
  const size_t want = static_cast<size_t>(c_.report_images);
  for (size_t round = 0; sel.size() < want && round < val_items_.size(); ++round)
    for (auto& v : by_class)
      if (round < v.size() && sel.size() < want) sel.push_back(val_items_[v[round]]);
  if (!sel.empty()) {
    data::LoaderOptions ho = val_options_;
    ho.batch = 1, ho.threads = 1;
    data::Loader hl(sel, ho);
    auto ep = hl.epoch(0);
    size_t k = 0;
    while (auto b = ep.next()) {
      Heatmap h = attention_heatmap(*best.model, b->images, norm_, 2);
      ri.images.push_back({fs::path(sel[k].path).stem().string(), sel[k].label, h.probs,
                           data::encode_jpeg(h.overlay, 85), h.method});
      ++k;
    }
  }
  res.report = (fs::path(c_.out) / "report.html").string();
  write_report(res.report, ri);
}
}  // namespace detail

TrainResult train(TrainConfig c, const std::string& command) { return detail::Trainer(std::move(c), command).run(); }

}  // namespace dermis::experiment
