// The training run (see trainer.h).
#include "trainer.h"

#include <fmt/format.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <optional>
#include <algorithm>
#include <thread>

#include "checkpoint.h"
#include "datasets/ham10000.h"
#include "datasets/split.h"
#include "datasets/synthetic_ham.h"
#include "evaluation.h"
#include "framework/data/loader.h"
#include "framework/ops.h"
#include "framework/optim/ema.h"
#include "framework/random.h"
#include "heatmap.h"
#include "models/registry.h"
#include "report.h"

namespace dermis::experiment {

namespace fs = std::filesystem;

namespace {
double now() { return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count(); }

std::string hms(double s) {
  const long t = std::lround(std::max(0.0, s));
  return t >= 3600 ? fmt::format("{}h{:02d}m", t / 3600, (t / 60) % 60) : fmt::format("{}m{:02d}s", t / 60, t % 60);
}

std::vector<data::Item> items_of(const datasets::Dataset& d, const std::vector<size_t>& idx) {
  std::vector<data::Item> v;
  for (size_t i : idx) v.push_back({d.samples[i].path, d.samples[i].label});
  return v;
}

std::vector<std::string> class_list() {
  const auto& c = datasets::class_names();
  return std::vector<std::string>(c.begin(), c.end());
}

void append_line(const std::string& path, const std::string& line) {
  std::ofstream f(path, std::ios::app);
  DERMIS_CHECK(f.good(), "cannot write {}", path);
  f << line << "\n";
}
}  // namespace

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

TrainResult train(TrainConfig c, const std::string& command) {
  const double t_start = now();
  // Resuming takes the run's settings from the checkpoint so that it continues exactly.
  std::unique_ptr<Checkpoint> ck;
  if (!c.resume.empty()) {
    const std::string path = c.resume;
    ck = std::make_unique<Checkpoint>(load_checkpoint(path));
    TrainConfig stored = TrainConfig::from_json(ck->info.config);
    stored.resume = path;
    stored.stop_after = c.stop_after;
    if (stored.out.empty()) stored.out = fs::path(path).parent_path().string();
    c = stored;
    fmt::print("resuming {} from {} (epoch {} done)\n", c.model, path, ck->info.epoch);
  }
  {
    const auto& names = models::model_names();
    DERMIS_CHECK(std::find(names.begin(), names.end(), c.model) != names.end(),
                 "unknown model '{}'; choose one of resnet18_cbam, resnet34_cbam, resnet18, cbam_small", c.model);
  }
  const bool synthetic = c.data.empty();
  if (c.height == 0) c.height = synthetic ? 72 : 112, c.width = synthetic ? 96 : 150;
  if (c.epochs == 0) c.epochs = c.minutes > 0 ? 100000 : (synthetic ? 12 : 30);
  if (c.out.empty()) {
    const std::time_t t = std::time(nullptr);
    char stamp[32];
    std::strftime(stamp, sizeof stamp, "%Y%m%d-%H%M%S", std::localtime(&t));
    c.out = fmt::format("runs/{}-{}", c.model, stamp);
  }
  fs::create_directories(c.out);
  const std::string metrics_path = (fs::path(c.out) / "metrics.jsonl").string();
  if (!ck) std::remove(metrics_path.c_str());

  // Threads: oneDNN's OpenMP threads on every core; the loader's workers mostly sleep (bounded
  // prefetch), so one per two cores keeps the model fed (bench/pipeline).
  const int cores = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  set_num_threads(c.threads > 0 ? c.threads : cores);
  const int loader_threads = c.loader_threads > 0 ? c.loader_threads : data::default_loader_threads(cores);

  // Data: lesion-grouped, stratified split.
  const std::string root =
      synthetic ? default_synthetic_dir() + (c.synthetic_count == TrainConfig{}.synthetic_count
                                                 ? std::string()
                                                 : "-" + std::to_string(c.synthetic_count))
                : c.data;
  if (synthetic) ensure_synthetic_dataset(root, c.synthetic_count);
  const datasets::Dataset ds = datasets::read_ham10000(root, {c.images, c.skip_bad_images});
  const datasets::Split split = datasets::grouped_split(ds, c.val_fraction, c.seed);
  const auto train_items = items_of(ds, split.train), val_items = items_of(ds, split.val);
  std::array<int64_t, datasets::kNumClasses> counts{};
  for (auto& it : train_items) counts[it.label]++;
  std::vector<float> weights;
  if (c.class_weights != "none") weights = datasets::class_weights(counts, c.class_weights == "inverse" ? 1.0 : 0.5);
  const data::Normalization norm =
      ck ? ck->info.norm : data::compute_normalization(train_items, c.height, c.width, 500, loader_threads);
  fmt::print("data: {} ({} images, {} lesions): {} train / {} validation images, lesion-grouped\n", root,
             ds.samples.size(), ds.num_lesions(), train_items.size(), val_items.size());

  data::LoaderOptions lo;
  lo.batch = c.batch, lo.height = c.height, lo.width = c.width, lo.threads = loader_threads, lo.seed = c.seed;
  lo.drop_last = train_items.size() > static_cast<size_t>(c.batch);
  lo.balanced = c.balanced_sampling, lo.cache = c.cache, lo.skip_bad_images = c.skip_bad_images, lo.norm = norm;
  lo.augment.scale_min = static_cast<float>(c.crop_scale_min);
  lo.augment.rotate_degrees = static_cast<float>(c.rotate_degrees);
  lo.augment.brightness = lo.augment.contrast = lo.augment.saturation = static_cast<float>(c.jitter);
  lo.augment.hue = static_cast<float>(c.hue);
  data::Loader train_loader(train_items, lo);
  data::LoaderOptions vo = lo;
  vo.train = false, vo.shuffle = false, vo.drop_last = false, vo.balanced = false, vo.batch = std::max<int64_t>(c.batch, 64);
  data::Loader val_loader(val_items, vo);

  // Model, optimiser, schedule.
  manual_seed(c.seed);
  std::shared_ptr<models::Classifier> model = ck ? ck->model : models::create(c.model, datasets::kNumClasses);
  optim::SGD opt(model->parameters(), {.lr = static_cast<float>(c.lr),
                                       .momentum = static_cast<float>(c.momentum),
                                       .weight_decay = static_cast<float>(c.weight_decay),
                                       .nesterov = c.nesterov && c.momentum > 0});
  // Weight average: validated, and saved as best, instead of the raw weights.
  std::shared_ptr<models::Classifier> average;
  std::unique_ptr<optim::WeightAverage> averager;
  if (c.ema > 0) {
    average = models::create(c.model, datasets::kNumClasses);
    average->eval();
    averager = std::make_unique<optim::WeightAverage>(*model, *average, c.ema);
    if (ck) {
      DERMIS_CHECK(load_weight_average(*ck, *average), "{}: the run uses --ema but the checkpoint has no weight average",
                   c.resume);
      averager->set_updates(ck->info.step);
    }
  }
  models::Classifier& evaluated = average ? *average : *model;
  optim::ScheduleOptions so = c.schedule;
  so.base_lr = c.lr;
  so.plateau_maximize = c.plateau_metric == "balanced_accuracy";
  optim::Schedule sched(so);
  CheckpointInfo info;
  info.model = c.model, info.classes = class_list(), info.height = c.height, info.width = c.width, info.norm = norm;
  info.config = c.to_json();
  int64_t start_epoch = 0;
  double elapsed_before = 0;
  std::vector<EpochRecord> history;
  std::vector<std::pair<double, double>> lr_trace;
  if (ck) {
    load_optimizer_state(*ck, *model, opt);
    sched.set_state(ck->info.schedule);
    default_generator().set_state(ck->info.rng_seed, ck->info.rng_counter);
    start_epoch = ck->info.epoch;
    info.step = ck->info.step, info.best_metric = ck->info.best_metric, info.best_epoch = ck->info.best_epoch;
    elapsed_before = ck->info.elapsed_seconds;
    // Earlier epochs' records, for the curves.
    std::ifstream f(metrics_path);
    for (std::string line; std::getline(f, line);) {
      const json::Value v = json::parse(line, metrics_path);
      if (v.find("epoch")->integer() > start_epoch) break;
      EpochRecord r;
      r.epoch = v.find("epoch")->integer(), r.train_loss = v.find("train_loss")->number(), r.lr = v.find("lr")->number();
      r.val.loss = v.find("val")->find("loss")->number(), r.val.accuracy = v.find("val")->find("accuracy")->number();
      r.val.balanced_accuracy = v.find("val")->find("balanced_accuracy")->number();
      history.push_back(r);
      lr_trace.emplace_back(static_cast<double>(r.epoch - 1), r.lr);
    }
  }
  fmt::print("model: {} ({:.2f} M parameters), input {}x{}, batch {}, {}, {} threads + {} loader thread{}{}\n",
             c.model, model->num_parameters() / 1e6, c.height, c.width, c.batch,
             c.precision == "bf16" ? "bf16 mixed precision" : "f32", num_threads(), loader_threads,
             loader_threads > 1 ? "s" : "", c.ema > 0 ? fmt::format(", weight average (decay {})", c.ema) : "");
  fmt::print("run folder: {}\n", c.out);
  std::fflush(stdout);

  const std::string best_path = (fs::path(c.out) / "best.safetensors").string();
  const std::string last_path = (fs::path(c.out) / "last.safetensors").string();
  const double budget = c.minutes * 60;
  const bool bf16 = c.precision == "bf16";
  const bool tty = isatty(fileno(stdout));
  const int64_t nb = train_loader.batches_per_epoch();
  double val_seconds = -1;  // measured after the first validation
  double train_img_s = 0;
  std::optional<metrics::Report> best_report;  // validation of the best checkpoint, if this run wrote it
  bool stop = false;
  int64_t epoch = start_epoch;
  double run_t0 = now() - elapsed_before;  // elapsed time carries across resumes

  const int64_t last_epoch = c.stop_after > 0 ? std::min(c.epochs, start_epoch + c.stop_after) : c.epochs;
  for (; epoch < last_epoch && !stop; ++epoch) {
    model->train();
    double loss_sum = 0, lr_now = 0;
    int64_t seen = 0, steps = 0;
    const double t_epoch = now();
    auto ep = train_loader.epoch(epoch);
    int64_t b = 0;
    while (true) {
      // Time budget: leave room for this epoch's validation, the final evaluation of the best
      // checkpoint (another validation pass), the checkpoints and the report.
      if (budget > 0) {
        const double val = val_seconds > 0 ? val_seconds : val_items.size() / std::max(train_img_s * 2.5, 20.0);
        const double reserve = 2 * val + 20;
        if (now() - run_t0 + reserve > budget) {
          stop = true;
          break;
        }
      }
      auto batch = ep.next();
      if (!batch) break;
      const double progress = budget > 0 ? (now() - run_t0) / budget : (epoch + static_cast<double>(b) / nb) / c.epochs;
      lr_now = sched.lr(epoch + static_cast<double>(b) / nb, progress);
      opt.set_lr(static_cast<float>(lr_now));
      if (b % std::max<int64_t>(1, nb / 20) == 0) lr_trace.emplace_back(epoch + static_cast<double>(b) / nb, lr_now);
      Var loss;
      {
        AutocastBF16 ac(bf16);
        Var logits = model->forward(Var(batch->images));
        loss = softmax_cross_entropy(logits, batch->labels,
                                     {.class_weights = weights, .label_smoothing = static_cast<float>(c.label_smoothing)});
      }
      opt.zero_grad();
      loss.backward();
      opt.step();
      if (averager) averager->update(*model);
      const float lv = loss.item();
      DERMIS_CHECK(std::isfinite(lv), "training diverged (loss {}) at epoch {} step {}; lower --lr", lv, epoch + 1, b + 1);
      loss_sum += lv * batch->images.dim(0);
      seen += batch->images.dim(0);
      ++steps, ++b, ++info.step;
      const double dt = now() - t_epoch;
      train_img_s = seen / dt;
      if (tty || b % std::max<int64_t>(1, nb / 5) == 0 || b == nb) {
        const double eta = budget > 0 ? budget - (now() - run_t0)
                                      : (nb - b) / std::max(1e-9, b / dt) + (c.epochs - epoch - 1) * nb * dt / b;
        fmt::print("{}epoch {}/{}  step {}/{}  loss {:.4f}  lr {:.4g}  {:.1f} img/s  ETA {}{}", tty ? "\r" : "",
                   epoch + 1, budget > 0 ? std::string("-") : std::to_string(c.epochs), b, nb, loss_sum / seen, lr_now,
                   train_img_s, hms(eta), tty ? "    " : "\n");
        std::fflush(stdout);
      }
    }
    if (tty) fmt::print("\n");
    if (seen == 0) break;  // the budget ran out before this epoch started

    // Validation.
    const double tv = now();
    Predictions p = [&] {
      AutocastBF16 ac(bf16);
      return predict(evaluated, val_loader, false);
    }();
    metrics::Report r = metrics::evaluate(p.labels, p.probs, datasets::kNumClasses);
    r.loss = p.loss;
    val_seconds = now() - tv;
    sched.epoch_end(c.plateau_metric == "loss" ? r.loss : r.balanced_accuracy);
    EpochRecord rec{epoch + 1, loss_sum / seen, lr_now, train_img_s, now() - run_t0, r};
    history.push_back(rec);
    fmt::print("epoch {}: train loss {:.4f} | val loss {:.4f}  accuracy {:.4f}  balanced accuracy {:.4f}  macro F1 {:.4f}"
               "  ({:.1f} img/s, {} elapsed)\n",
               epoch + 1, rec.train_loss, r.loss, r.accuracy, r.balanced_accuracy, r.macro_f1, train_img_s,
               hms(now() - run_t0));
    std::fflush(stdout);
    json::Object line{{"epoch", epoch + 1},          {"train_loss", rec.train_loss}, {"lr", lr_now},
                      {"train_img_s", train_img_s},  {"elapsed_s", rec.elapsed_s},   {"steps", steps},
                      {"partial_epoch", steps < nb}, {"val", r.to_json(class_list())}};
    append_line(metrics_path, json::dump(line));

    // Checkpoints: last (with optimiser state, for --resume) and best by balanced accuracy.
    info.epoch = epoch + 1;
    info.elapsed_seconds = now() - run_t0;
    info.schedule = sched.state();
    info.rng_seed = default_generator().seed(), info.rng_counter = default_generator().counter();
    if (r.balanced_accuracy > info.best_metric) {
      info.best_metric = r.balanced_accuracy, info.best_epoch = epoch + 1;
      save_checkpoint(best_path, evaluated, info);
      best_report = r;
    }
    save_checkpoint(last_path, *model, info, &opt, average.get());
  }

  // Final evaluation of the best checkpoint and the report.
  TrainResult res;
  res.out_dir = c.out, res.best_checkpoint = best_path, res.last_checkpoint = last_path;
  res.epochs_done = epoch, res.train_img_s = train_img_s;
  DERMIS_CHECK(fs::exists(best_path), "no epoch finished within the budget; give --minutes more time");
  Checkpoint best = load_checkpoint(best_path);
  if (best_report) {
    res.best_val = *best_report;  // validated when it was saved; no second pass
  } else {  // the best epoch predates a --resume: validate it again
    Predictions p = predict(*best.model, val_loader, false);
    res.best_val = metrics::evaluate(p.labels, p.probs, datasets::kNumClasses);
    res.best_val.loss = p.loss;
  }
  res.best_epoch = best.info.best_epoch;
  ReportInput ri;
  ri.title = fmt::format("dermis: {} on {}", c.model, synthetic ? "the synthetic dataset" : root);
  ri.command = command, ri.checkpoint = best_path, ri.classes = class_list(), ri.epochs = history;
  ri.lr_trace = lr_trace, ri.final_val = res.best_val, ri.best_epoch = res.best_epoch;
  ri.config_json = json::dump(c.to_json());
  // A spread of validation images: round-robin over the classes, in validation order.
  std::vector<std::vector<size_t>> by_class(datasets::kNumClasses);
  for (size_t i = 0; i < val_items.size(); ++i) by_class[val_items[i].label].push_back(i);
  std::vector<size_t> pick;
  for (size_t round = 0; pick.size() < static_cast<size_t>(c.report_images) && round < val_items.size(); ++round)
    for (auto& v : by_class)
      if (round < v.size() && pick.size() < static_cast<size_t>(c.report_images)) pick.push_back(v[round]);
  if (!pick.empty()) {
    std::vector<data::Item> sel;
    for (size_t i : pick) sel.push_back(val_items[i]);
    data::LoaderOptions ho = vo;
    ho.batch = 1, ho.threads = 1;
    data::Loader hl(sel, ho);
    auto ep = hl.epoch(0);
    size_t k = 0;
    while (auto b = ep.next()) {
      Heatmap h = attention_heatmap(*best.model, b->images, norm, 2);
      ri.images.push_back({fs::path(sel[k].path).stem().string(), sel[k].label, h.probs,
                           data::encode_jpeg(h.overlay, 85), h.method});
      ++k;
    }
  }
  res.report = (fs::path(c.out) / "report.html").string();
  write_report(res.report, ri);
  res.elapsed_s = now() - t_start;
  return res;
}

}  // namespace dermis::experiment
