// Training-run helpers (see train_support.h).
#include "train_support.h"

#include <fmt/format.h>
#include <sys/statvfs.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <set>
#include <filesystem>
#include <fstream>

#include "datasets/csv.h"
#include "framework/error.h"

namespace dermis::experiment {

namespace fs = std::filesystem;

double now() { return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count(); }

std::string hms(double s) {
  const long t = std::lround(std::max(0.0, s));
  return t >= 3600 ? fmt::format("{}h{:02d}m", t / 3600, (t / 60) % 60) : fmt::format("{}m{:02d}s", t / 60, t % 60);
}

std::vector<std::string> class_list() {
  const auto& c = datasets::class_names();
  return std::vector<std::string>(c.begin(), c.end());
}

namespace {
std::atomic<int> g_stop_signal{0};
extern "C" void on_stop_signal(int sig) {
  if (g_stop_signal.exchange(sig) != 0) {
    ::signal(sig, SIG_DFL);
    ::raise(sig);
  }
}

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
}  // namespace

StopSignals::StopSignals() {
  g_stop_signal = 0;
  struct sigaction sa {};
  sa.sa_handler = on_stop_signal;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = SA_RESTART;
  ::sigaction(SIGINT, &sa, &old_int_);
  ::sigaction(SIGTERM, &sa, &old_term_);
}

StopSignals::~StopSignals() {
  ::sigaction(SIGINT, &old_int_, nullptr);
  ::sigaction(SIGTERM, &old_term_, nullptr);
}

int StopSignals::received() { return g_stop_signal.load(); }

const char* signal_name(int s) { return s == SIGINT ? "SIGINT" : s == SIGTERM ? "SIGTERM" : "a signal"; }

std::string first_nonfinite(const Var& logits, float loss, models::Classifier& model) {
  if (!all_finite(logits.value())) return "the model output (logits)";
  if (!std::isfinite(loss)) return fmt::format("the loss ({})", loss);
  const auto named = model.named_parameters();
  for (auto it = named.rbegin(); it != named.rend(); ++it)
    if (!all_finite(it->second.grad())) return fmt::format("the gradient of {}", it->first);
  return {};
}

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

void remove_stale_temporaries(const std::string& dir) {
  std::error_code ec;
  for (auto& e : fs::directory_iterator(dir, ec)) {
    const std::string n = e.path().filename().string();
    const size_t at = n.find(".tmp.");
    if (at == std::string::npos) continue;
    // Only train's own files: another program's temporaries in the folder are not ours to remove.
    static const std::set<std::string> ours{"last.safetensors", "best.safetensors", "swa.safetensors",
                                            "model.safetensors", "metrics.jsonl",    "split.csv",
                                            "result.json",       "report.html",      "val_predictions.csv"};
    const std::string pid = n.substr(at + 5);
    if (ours.count(n.substr(0, at)) && !pid.empty() && pid.find_first_not_of("0123456789") == std::string::npos)
      fs::remove(e.path(), ec);
  }
}

void append_line(const std::string& path, const std::string& line) {
  std::ofstream f(path, std::ios::app);
  DERMIS_CHECK(f.good(), "cannot write {}", path);
  f << line << "\n";
}

void reverse_batch(data::Batch& b) {
  const int64_t n = b.images.dim(0), per = b.images.numel() / n;
  float* p = b.images.data();
  for (int64_t i = 0, j = n - 1; i < j; ++i, --j) std::swap_ranges(p + i * per, p + (i + 1) * per, p + j * per);
  std::reverse(b.labels.begin(), b.labels.end());
  std::reverse(b.items.begin(), b.items.end());
}

std::map<std::string, std::string> split_csv_fingerprints(const std::string& path) {
  if (!fs::is_regular_file(path)) return {};
  const datasets::CsvTable t = datasets::read_csv(path);
  const int id = t.column("image_id"), side = t.column("split");
  DERMIS_CHECK(id >= 0 && side >= 0, "{}: not a split.csv of train (it needs image_id and split)", path);
  std::map<std::string, std::vector<std::string_view>> ids;
  for (const auto& row : t.rows)
    ids[row.fields[static_cast<size_t>(side)]].emplace_back(row.fields[static_cast<size_t>(id)]);
  std::map<std::string, std::string> out;
  for (auto& [name, v] : ids) out[name] = datasets::images_fingerprint(std::move(v));
  return out;
}

std::map<std::string, std::string> recorded_split(const std::map<std::string, std::string>& checkpoint_split,
                                                  const std::string& run_folder, std::string& where) {
  if (!checkpoint_split.empty()) {
    where = "the checkpoint";
    return checkpoint_split;
  }
  where = (fs::path(run_folder) / "split.csv").string();
  return split_csv_fingerprints(where);
}

datasets::Split run_split(const datasets::Dataset& ds, const TrainConfig& cfg) {
  auto split = [&cfg](const datasets::Dataset& d) {
    return cfg.folds > 0 ? datasets::grouped_kfold(d, static_cast<int>(cfg.folds), static_cast<int>(cfg.fold), cfg.seed)
                         : datasets::grouped_split(d, cfg.val_fraction, cfg.seed);
  };
  return cfg.test_fraction > 0 ? datasets::with_test_set(ds, cfg.test_fraction, cfg.test_seed, split) : split(ds);
}

}  // namespace dermis::experiment
