// The training run (see trainer.h).
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
#include "datasets/ham10000.h"
#include "datasets/split.h"
#include "datasets/synthetic_ham.h"
#include "evaluation.h"
#include "framework/cpu.h"
#include "framework/data/jpeg.h"
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

// SIGINT/SIGTERM while training: the first asks the loop to stop after its step; a second one
// takes the default action (the process ends; checkpoints are never left half-written).
std::atomic<int> g_stop_signal{0};
extern "C" void on_stop_signal(int sig) {
  if (g_stop_signal.exchange(sig) != 0) {
    ::signal(sig, SIG_DFL);
    ::raise(sig);
  }
}

class StopSignals {
 public:
  StopSignals() {
    g_stop_signal = 0;
    struct sigaction sa {};
    sa.sa_handler = on_stop_signal;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESTART;
    ::sigaction(SIGINT, &sa, &old_int_);
    ::sigaction(SIGTERM, &sa, &old_term_);
  }
  ~StopSignals() {
    ::sigaction(SIGINT, &old_int_, nullptr);
    ::sigaction(SIGTERM, &old_term_, nullptr);
  }
  StopSignals(const StopSignals&) = delete;
  StopSignals& operator=(const StopSignals&) = delete;
  static int received() { return g_stop_signal.load(); }

 private:
  struct sigaction old_int_ {}, old_term_ {};
};

const char* signal_name(int s) { return s == SIGINT ? "SIGINT" : s == SIGTERM ? "SIGTERM" : "a signal"; }

// The name of the first non-finite value among the logits, the loss and the parameter gradients
// (in the order backward computes them: last layer first); empty if all are finite.
bool all_finite(const Tensor& t) {
  if (!t.defined()) return true;
  const Tensor f = t.dtype() == DType::f32 ? t : t.to_dtype(DType::f32);
  const float* p = f.data();
  const int64_t n = f.numel();
  int bad = 0;
#pragma omp parallel for reduction(| : bad) schedule(static) if (n > 65536)
  for (int64_t i = 0; i < n; ++i) bad |= !std::isfinite(p[i]);
  return bad == 0;
}

std::string first_nonfinite(const Var& logits, float loss, models::Classifier& model) {
  if (!all_finite(logits.value())) return "the model output (logits)";
  if (!std::isfinite(loss)) return fmt::format("the loss ({})", loss);
  const auto named = model.named_parameters();
  for (auto it = named.rbegin(); it != named.rend(); ++it)
    if (!all_finite(it->second.grad())) return fmt::format("the gradient of {}", it->first);
  return {};
}

// Checks before training that the run folder takes files and has room for two checkpoints (the
// new one is written beside the old before replacing it).
void check_output_folder(const std::string& dir, uint64_t checkpoint_bytes) {
  const std::string probe = (fs::path(dir) / ".write-test").string();
  {
    std::ofstream f(probe);
    f << "dermis\n";
    f.flush();
    DERMIS_CHECK(f.good(), "the run folder {} is not writable ({}); choose another with --out", dir,
                 std::strerror(errno));
  }
  std::remove(probe.c_str());
  struct statvfs st {};
  if (::statvfs(dir.c_str(), &st) == 0) {
    const uint64_t free_bytes = static_cast<uint64_t>(st.f_bavail) * st.f_frsize;
    const uint64_t need = 2 * checkpoint_bytes + (16u << 20);
    DERMIS_CHECK(free_bytes >= need,
                 "the run folder {} has {:.1f} MB free; checkpoints need about {:.1f} MB; free some space or choose "
                 "another --out",
                 dir, free_bytes / 1e6, need / 1e6);
  }
}

// Temporary files of atomic writes (NAME.tmp.PID: checkpoints, metrics) that a killed process left
// behind.
void remove_stale_temporaries(const std::string& dir) {
  std::error_code ec;
  for (auto& e : fs::directory_iterator(dir, ec)) {
    const std::string n = e.path().filename().string();
    if (n.find(".tmp.") != std::string::npos) fs::remove(e.path(), ec);
  }
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

namespace {
// DERMIS_FAULT=reverse_batches: every batch's images in reverse order. The mean gradient is the
// same, summed in another order: the data-parallel test measures rounding noise with it.
void reverse_batch(data::Batch& b) {
  const int64_t n = b.images.dim(0), per = b.images.numel() / n;
  float* p = b.images.data();
  for (int64_t i = 0, j = n - 1; i < j; ++i, --j) std::swap_ranges(p + i * per, p + (i + 1) * per, p + j * per);
  std::reverse(b.labels.begin(), b.labels.end());
  std::reverse(b.items.begin(), b.items.end());
}
}  // namespace

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
    try {
      stored.validate();
    } catch (const Error& e) {
      DERMIS_FAIL("{}: the training settings stored in this checkpoint are invalid ({}); it is damaged, or was "
                  "written by a newer dermis or another program", path, e.what());
    }
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
  c.validate();  // again, now that the input size is known (--early-size must be smaller)
  // bf16 on a CPU without bf16 kernels: one clear error before the run folder exists.
  if (c.precision == "bf16" && c.resume.empty()) cpu::require_bf16("flag --precision bf16", "--precision f32");
  if (c.precision == "bf16" && !c.resume.empty())
    cpu::require_bf16(fmt::format("{} (a --precision bf16 run)", c.resume), "a new run with --precision f32");
  if (c.epochs == 0) c.epochs = c.minutes > 0 ? 100000 : (synthetic ? 12 : 30);
  if (c.out.empty()) {
    const std::time_t t = std::time(nullptr);
    char stamp[32];
    std::strftime(stamp, sizeof stamp, "%Y%m%d-%H%M%S", std::localtime(&t));
    c.out = fmt::format("runs/{}-{}", c.model, stamp);
  }
  // Data-parallel: rank 0 alone writes files (run folder, checkpoints, metrics, report).
  const int ranks = dist::size();
  const bool writer = dist::is_root();
  if (writer) {
    std::error_code ec;
    fs::create_directories(c.out, ec);
    DERMIS_CHECK(!ec && fs::is_directory(c.out), "cannot create the run folder {}: {}; choose another with --out",
                 c.out, ec ? ec.message() : "a file of that name exists");
    remove_stale_temporaries(c.out);
  }
  const std::string metrics_path = (fs::path(c.out) / "metrics.jsonl").string();
  if (!ck && writer) std::remove(metrics_path.c_str());

  // Threads: oneDNN's OpenMP threads on every core; the loader's workers mostly sleep (bounded
  // prefetch), so one per two cores keeps the model fed (bench/pipeline).
  const int cores = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  set_num_threads(c.threads > 0 ? c.threads : cores);
  set_conv_algorithm(cli::conv_algorithm_flag(c.conv));
  const int loader_threads = c.loader_threads > 0 ? c.loader_threads : data::default_loader_threads(cores);

  // Data: lesion-grouped, stratified split.
  const std::string root =
      synthetic ? default_synthetic_dir() + (c.synthetic_count == TrainConfig{}.synthetic_count
                                                 ? std::string()
                                                 : "-" + std::to_string(c.synthetic_count))
                : c.data;
  if (synthetic && writer) ensure_synthetic_dataset(root, c.synthetic_count);
  dist::barrier();
  const datasets::Dataset ds = datasets::read_ham10000(root, {c.images, c.skip_bad_images});
  const datasets::Split split = datasets::grouped_split(ds, c.val_fraction, c.seed);
  const auto train_items = items_of(ds, split.train), val_items = items_of(ds, split.val);
  if (writer) {  // the exact images of each side, for other programs (e.g. a PyTorch reference run)
    const std::string text = datasets::split_csv(ds, split);
    data::write_file_atomic((fs::path(c.out) / "split.csv").string(), std::vector<uint8_t>(text.begin(), text.end()));
  }
  std::array<int64_t, datasets::kNumClasses> counts{};
  for (auto& it : train_items) counts[it.label]++;
  std::vector<float> weights;
  if (c.class_weights != "none") weights = datasets::class_weights(counts, c.class_weights == "inverse" ? 1.0 : 0.5);
  std::vector<float> offsets;
  if (c.logit_adjust > 0) offsets = datasets::logit_offsets(counts, c.logit_adjust, c.class_power());
  const data::Normalization norm =
      ck ? ck->info.norm : data::compute_normalization(train_items, c.height, c.width, 500, loader_threads);
  fmt::print("data: {} ({} images, {} lesions): {} train / {} validation images, lesion-grouped\n", root,
             ds.samples.size(), ds.num_lesions(), train_items.size(), val_items.size());
  {  // what each class gets of an epoch under --class-sampling
    const std::vector<double> share = datasets::sampled_class_prior(counts, c.class_power());
    std::string mix;
    for (int k = 0; k < datasets::kNumClasses; ++k)
      mix += fmt::format("{}{} {} ({:.1f}%)", k ? ", " : "", datasets::class_names()[k], counts[k],
                         counts[k] > 0 ? 100 * share[k] : 0.0);
    fmt::print("training images per class (share of each epoch, {} class sampling): {}\n", c.class_sampling, mix);
  }

  data::LoaderOptions lo;
  lo.batch = c.batch, lo.height = c.height, lo.width = c.width, lo.threads = loader_threads, lo.seed = c.seed;
  lo.drop_last = ranks > 1 || train_items.size() > static_cast<size_t>(c.batch);
  lo.shard_rank = dist::rank(), lo.shard_count = ranks;  // --batch is per rank; the global batch is ranks x batch
  DERMIS_CHECK(train_items.size() >= static_cast<size_t>(c.batch * ranks),
               "{} training images do not fill one global batch of {} ranks x {}; lower --batch", train_items.size(),
               ranks, c.batch);
  lo.class_power = c.class_power(), lo.cache = c.cache, lo.skip_bad_images = c.skip_bad_images, lo.norm = norm;
  lo.augment.scale_min = static_cast<float>(c.crop_scale_min);
  lo.augment.rotate_degrees = static_cast<float>(c.rotate_degrees);
  lo.augment.brightness = lo.augment.contrast = lo.augment.saturation = static_cast<float>(c.jitter);
  lo.augment.hue = static_cast<float>(c.hue);
  data::Loader train_loader(train_items, lo);
  std::unique_ptr<data::Loader> early_loader;  // --early-size: the same epochs at the smaller size
  if (c.early_height > 0) {
    data::LoaderOptions eo = lo;
    eo.height = c.early_height, eo.width = c.early_width;
    early_loader = std::make_unique<data::Loader>(train_items, eo);
  }
  data::LoaderOptions vo = lo;
  vo.train = false, vo.shuffle = false, vo.drop_last = false, vo.class_power = 1, vo.batch = std::max<int64_t>(c.batch, 64);
  vo.shard_rank = 0, vo.shard_count = 1;
  // Validation is sharded too: each rank takes a contiguous slice and the predictions are gathered.
  const size_t v0 = val_items.size() * dist::rank() / ranks, v1 = val_items.size() * (dist::rank() + 1) / ranks;
  data::Loader val_loader(std::vector<data::Item>(val_items.begin() + v0, val_items.begin() + v1), vo);
  auto validate = [&](models::Classifier& m, bool bf16_compute) {
    Predictions p = [&] {
      AutocastBF16 ac(bf16_compute);
      return predict(m, val_loader, false);
    }();
    if (ranks > 1) {
      const double loss_sum = dist::allreduce_sum(p.loss * static_cast<double>(p.labels.size()));
      p.labels = dist::allgather(p.labels);
      p.probs = dist::allgather(p.probs);
      p.loss = loss_sum / static_cast<double>(std::max<size_t>(1, p.labels.size()));
    }
    metrics::Report r = metrics::evaluate(p.labels, p.probs, datasets::kNumClasses);
    r.loss = p.loss;
    return r;
  };

  // Model, optimiser, schedule.
  manual_seed(c.seed);
  std::shared_ptr<models::Classifier> model = ck ? ck->model : models::create(c.model, datasets::kNumClasses);
  // --sync-bn: training BatchNorm statistics over every rank's batch (the same path with one rank).
  if (c.sync_bn) nn::set_sync_batch_norm(*model, [](double* d, int64_t n) { dist::allreduce_sum(d, n); });
  optim::SGD opt(model->parameters(), {.lr = static_cast<float>(c.lr),
                                       .momentum = static_cast<float>(c.momentum),
                                       .weight_decay = static_cast<float>(c.weight_decay),
                                       .nesterov = c.nesterov && c.momentum > 0});
  if (writer) {
    uint64_t bytes = 0;
    for (auto& [n, t] : model->state()) bytes += static_cast<uint64_t>(t.numel()) * 4;
    check_output_folder(c.out, bytes * (c.ema > 0 ? 3 : 2));  // weights, momentum, weight average
  }
  // Data-parallel: identical starting weights (the seed makes them so; the broadcast makes sure),
  // and gradients averaged across ranks in buckets while backward runs.
  dist::broadcast_parameters(model->parameters());
  std::unique_ptr<dist::GradientReducer> reducer;
  if (ranks > 1) reducer = std::make_unique<dist::GradientReducer>(model->parameters());
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
    // Earlier epochs' records, for the curves. Lines of epochs after the checkpoint (written
    // before a crash) are dropped from the file so that they are not repeated.
    std::ifstream f(metrics_path);
    std::string kept;
    for (std::string line; std::getline(f, line);) {
      json::Value v;
      try {
        v = json::parse(line, metrics_path);
        if (v.at("epoch").integer() > start_epoch) break;
      } catch (const Error&) {
        break;  // a line cut short by a crash
      }
      kept += line + "\n";
      EpochRecord r;
      r.epoch = v.at("epoch").integer(), r.train_loss = v.at("train_loss").number(), r.lr = v.at("lr").number();
      r.val.loss = v.at("val").at("loss").number(), r.val.accuracy = v.at("val").at("accuracy").number();
      r.val.balanced_accuracy = v.at("val").at("balanced_accuracy").number();
      history.push_back(r);
      lr_trace.emplace_back(static_cast<double>(r.epoch - 1), r.lr);
    }
    f.close();
    if (writer) data::write_file_atomic(metrics_path, std::vector<uint8_t>(kept.begin(), kept.end()));
  }
  fmt::print("model: {} ({:.2f} M parameters), input {}x{}, batch {}, {}, {} threads + {} loader thread{}{}\n",
             c.model, model->num_parameters() / 1e6, c.height, c.width, c.batch,
             c.precision == "bf16" ? "bf16 mixed precision" : "f32", num_threads(), loader_threads,
             loader_threads > 1 ? "s" : "", c.ema > 0 ? fmt::format(", weight average (decay {})", c.ema) : "");
  if (ranks > 1)
    fmt::print("data-parallel: {} ranks x batch {} (global batch {}), {} gradient buckets, {} BatchNorm\n", ranks,
               c.batch, ranks * c.batch, reducer->buckets(), c.sync_bn ? "synchronised" : "per-rank");
  if (early_loader)
    fmt::print("progressive resizing: training epochs that start in the first {:.0f}% of the {} use input {}x{}, "
               "later ones {}x{}\n",
               100 * c.early_fraction,
               c.minutes > 0 ? fmt::format("{:g}-minute budget", c.minutes) : fmt::format("{} epochs", c.epochs),
               c.early_height, c.early_width, c.height, c.width);
  fmt::print("cpu: {}\n", cpu::summary());
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
  StopSignals signals;
  int64_t nonfinite_in_row = 0, nonfinite_skipped = 0;
  const auto nan_step = fault::value("nan_at_step");
  const bool reverse_batches = fault::value("reverse_batches").has_value();
  const auto fail_step = fault::value("fail_at_step");  // with fail_rank=R (default 0): that rank throws
  bool nan_injected = false;
  // Every rank must stop at the same step: the decision is agreed on (a max over ranks).
  auto agree = [&](int64_t v) { return ranks > 1 ? dist::allreduce_max(v) : v; };
  // The run's state for a checkpoint: time so far, schedule and generator.
  auto stamp = [&] {
    info.elapsed_seconds = now() - run_t0;
    info.schedule = sched.state();
    info.rng_seed = default_generator().seed(), info.rng_counter = default_generator().counter();
  };
  int interrupted_by = 0;
  std::optional<bool> was_early;  // the previous epoch's input size choice (for the message on a change)
  auto train_size = [&](bool early) {
    return early ? fmt::format("{}x{}", c.early_height, c.early_width) : fmt::format("{}x{}", c.height, c.width);
  };
  for (; epoch < last_epoch && !stop; ++epoch) {
    model->train();
    // This epoch's training loss: `base_*` carried over from a checkpoint written mid-epoch (all
    // ranks), `*_here` this process's own steps since.
    double base_loss = 0, loss_here = 0, lr_now = 0, overlap_sum = 0, wait_sum = 0;
    int64_t base_seen = 0, seen_here = 0, steps = 0;
    int64_t b = 0, position = 0;  // global batches and samples of this epoch done
    if (ck && epoch == start_epoch && ck->info.epoch_position > 0) {  // resuming mid-epoch (any rank count)
      position = ck->info.epoch_position;
      b = steps = position / (c.batch * ranks);
      base_loss = ck->info.epoch_loss_sum, base_seen = ck->info.epoch_images;
    }
    // The epoch's loss sum and image count over all ranks (a collective: every rank calls it).
    auto epoch_loss = [&] {
      double part[2] = {loss_here, static_cast<double>(seen_here)};
      if (ranks > 1) dist::allreduce_sum(part, 2);
      return std::pair<double, int64_t>{base_loss + part[0], base_seen + static_cast<int64_t>(part[1])};
    };
    // The epoch's input size (--early-size): decided when it starts, the same on every rank; a run
    // resumed mid-epoch keeps it. Progress never falls, so the early loader is not needed again.
    bool early = false;
    if (early_loader) {
      const double progress = std::max(budget > 0 ? (now() - run_t0) / budget : 0.0,
                                        static_cast<double>(epoch) / static_cast<double>(c.epochs));
      early = ck && epoch == start_epoch && ck->info.epoch_position > 0 ? ck->info.epoch_early
                                                                         : agree(c.early_epoch(progress) ? 1 : 0) != 0;
      if (early != was_early) fmt::print("epoch {}: training input {}\n", epoch + 1, train_size(early));
      was_early = early;
    }
    const int64_t b0 = b;
    const double t_epoch = now();
    auto ep = (early ? *early_loader : train_loader).epoch(epoch, position);
    if (c.early_height > 0 && !early) early_loader.reset();  // frees its --cache
    while (true) {
      // Time budget: leave room for this epoch's validation, the final evaluation of the best
      // checkpoint (another validation pass), the checkpoints and the report.
      if (budget > 0) {
        const double val = val_seconds > 0 ? val_seconds : val_items.size() / std::max(train_img_s * 2.5, 20.0);
        const double reserve = 2 * val + 20;
        if (agree(now() - run_t0 + reserve > budget ? 1 : 0)) {
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
      if (reverse_batches) reverse_batch(*batch);
      if (nan_step && !nan_injected && info.step + 1 == *nan_step) {
        std::fill(batch->images.values().begin(), batch->images.values().end(), std::nanf(""));
        nan_injected = true;
      }
      // With --nonfinite skip, a skipped step must not leave its batch statistics behind either.
      std::vector<Tensor> buffers_before;
      if (c.nonfinite == "skip")
        for (auto& [n, t] : model->named_buffers()) buffers_before.push_back(t->clone());
      Var loss, logits;
      {
        AutocastBF16 ac(bf16);
        logits = model->forward(Var(batch->images));
        loss = softmax_cross_entropy(logits, batch->labels,
                                     {.class_weights = weights,
                                      .label_smoothing = static_cast<float>(c.label_smoothing),
                                      .logit_offsets = offsets});
      }
      opt.zero_grad();
      loss.backward();
      if (reducer) {  // averaged over ranks; a non-finite value on one rank reaches all
        reducer->finish();
        overlap_sum += reducer->overlap_fraction(), wait_sum += reducer->wait_seconds();
      }
      const float lv = loss.item();
      // A non-finite loss or gradient never reaches the weights.
      if (const std::string bad = first_nonfinite(logits, lv, *model); !bad.empty()) {
        const std::string where = fmt::format("epoch {} step {} (optimiser step {})", epoch + 1, b + 1, info.step + 1);
        if (c.nonfinite == "skip" && ++nonfinite_in_row <= 10) {
          ++nonfinite_skipped;
          fmt::print(stderr, "{}warning: {} is not finite at {}; the step is skipped\n", tty ? "\n" : "", bad, where);
          opt.zero_grad();
          const auto bufs = model->named_buffers();
          for (size_t i = 0; i < bufs.size(); ++i) *bufs[i].second = buffers_before[i];
          ++b, position += c.batch * ranks;
          continue;
        }
        DERMIS_FAIL("{} is not finite at {}{}; the weights were not updated and the last good checkpoint is {}; "
                    "lower --lr{}",
                    bad, where, nonfinite_in_row > 10 ? " (the 11th such step in a row)" : "",
                    fs::exists(last_path) ? last_path : std::string("(none yet)"),
                    c.nonfinite == "skip" ? "" : ", or pass --nonfinite skip to drop such steps");
      }
      nonfinite_in_row = 0;
      opt.step();
      if (averager) averager->update(*model);
      if (fail_step && info.step + 1 == *fail_step && dist::rank() == fault::value("fail_rank").value_or(0))
        DERMIS_FAIL("injected failure (DERMIS_FAULT) on rank {} at optimiser step {}", dist::rank(), info.step + 1);
      loss_here += lv * batch->images.dim(0);
      seen_here += batch->images.dim(0);
      ++steps, ++b, ++info.step;
      position += c.batch * ranks;
      const double dt = now() - t_epoch;
      train_img_s = static_cast<double>(seen_here) * ranks / dt;  // all ranks together
      if (tty || b % std::max<int64_t>(1, nb / 5) == 0 || b == nb) {
        // The loss shown is this rank's running mean (rank 0 prints).
        const double eta = budget > 0 ? budget - (now() - run_t0)
                                      : (nb - b + (c.epochs - epoch - 1) * nb) * dt / std::max<int64_t>(1, b - b0);
        fmt::print("{}epoch {}/{}  step {}/{}  loss {:.4f}  lr {:.4g}  {:.1f} img/s  ETA {}{}", tty ? "\r" : "",
                   epoch + 1, budget > 0 ? std::string("-") : std::to_string(c.epochs), b, nb,
                   (base_loss + loss_here) / static_cast<double>(std::max<int64_t>(1, base_seen + seen_here)), lr_now,
                   train_img_s, hms(eta), tty ? "    " : "\n");
        std::fflush(stdout);
      }
      if (const int sig = static_cast<int>(agree(StopSignals::received()))) {
        const auto [ls, n] = epoch_loss();
        info.epoch = epoch;
        info.epoch_batches = b, info.epoch_loss_sum = ls, info.epoch_images = n, info.epoch_position = position;
        info.epoch_early = early;
        stamp();
        if (writer) save_checkpoint(last_path, *model, info, &opt, average.get());
        fmt::print("\n{} received: stopped after epoch {} step {}/{}; the run is saved in {}\n"
                   "continue it with: train --resume {}\n",
                   signal_name(sig), epoch + 1, b, nb, last_path, last_path);
        std::fflush(stdout);
        interrupted_by = sig;
        break;
      }
    }
    if (interrupted_by) break;
    if (tty) fmt::print("\n");
    if (nonfinite_skipped) fmt::print("epoch {}: {} step(s) skipped for non-finite values\n", epoch + 1, nonfinite_skipped);
    nonfinite_skipped = 0;
    const auto [loss_sum, seen] = epoch_loss();
    if (seen == 0) break;  // the budget ran out before this epoch started

    // Validation (sharded over the ranks, gathered).
    const double tv = now();
    const metrics::Report r = validate(evaluated, bf16);
    val_seconds = now() - tv;
    sched.epoch_end(c.plateau_metric == "loss" ? r.loss : r.balanced_accuracy);
    EpochRecord rec{epoch + 1, loss_sum / static_cast<double>(seen), lr_now, train_img_s, now() - run_t0, r};
    history.push_back(rec);
    fmt::print("epoch {}: train loss {:.4f} | val loss {:.4f}  accuracy {:.4f}  balanced accuracy {:.4f}  macro F1 {:.4f}"
               "  ({:.1f} img/s, {} elapsed)\n",
               epoch + 1, rec.train_loss, r.loss, r.accuracy, r.balanced_accuracy, r.macro_f1, train_img_s,
               hms(now() - run_t0));
    std::fflush(stdout);
    json::Object line{{"epoch", epoch + 1},          {"train_loss", rec.train_loss}, {"lr", lr_now},
                      {"train_img_s", train_img_s},  {"elapsed_s", rec.elapsed_s},   {"steps", steps},
                      {"partial_epoch", steps < nb}, {"val", r.to_json(class_list())}};
    if (c.early_height > 0)
      line["train_size"] = train_size(early);
    if (reducer) {
      line["ranks"] = ranks;
      line["allreduce_mb_per_step"] = static_cast<double>(reducer->bytes_per_step()) / 1e6;
      line["allreduce_overlap"] = overlap_sum / static_cast<double>(std::max<int64_t>(1, steps - b0));
      line["allreduce_wait_ms"] = 1e3 * wait_sum / static_cast<double>(std::max<int64_t>(1, steps - b0));
      line["step_ms"] = 1e3 * (now() - t_epoch) / static_cast<double>(std::max<int64_t>(1, steps - b0));
    }
    if (writer) append_line(metrics_path, json::dump(line));

    // Checkpoints: last (with optimiser state, for --resume) and best by balanced accuracy.
    info.epoch = epoch + 1;
    stamp();
    if (r.balanced_accuracy > info.best_metric) {
      info.best_metric = r.balanced_accuracy, info.best_epoch = epoch + 1;
      if (writer) save_checkpoint(best_path, evaluated, info);
      best_report = r;
    }
    info.epoch_batches = 0, info.epoch_loss_sum = 0, info.epoch_images = 0, info.epoch_position = 0;
    if (writer) save_checkpoint(last_path, *model, info, &opt, average.get());
    if (const int sig = static_cast<int>(agree(StopSignals::received()))) {
      fmt::print("{} received: stopped after epoch {}; the run is saved in {}\ncontinue it with: train --resume {}\n",
                 signal_name(sig), epoch + 1, last_path, last_path);
      std::fflush(stdout);
      interrupted_by = sig;
      ++epoch;
      break;
    }
  }
  TrainResult res;
  res.out_dir = c.out, res.best_checkpoint = best_path, res.last_checkpoint = last_path;
  res.epochs_done = epoch, res.train_img_s = train_img_s, res.interrupted_by = interrupted_by;
  if (interrupted_by) {
    res.elapsed_s = now() - t_start;
    return res;
  }

  // Final evaluation of the best checkpoint and the report: rank 0 alone (the other ranks may be
  // on hosts without its files).
  if (!writer) {
    res.best_epoch = info.best_epoch;
    if (best_report) res.best_val = *best_report;
    res.elapsed_s = now() - t_start;
    return res;
  }
  DERMIS_CHECK(fs::exists(best_path), "no epoch finished within the budget; give --minutes more time");
  Checkpoint best = load_checkpoint(best_path);
  if (best_report) {
    res.best_val = *best_report;  // validated when it was saved; no second pass
  } else {  // the best epoch predates a --resume: validate it again, over the whole validation set
    data::Loader full(val_items, vo);
    Predictions p = predict(*best.model, full, false);
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
