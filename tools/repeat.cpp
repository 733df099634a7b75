// tools/repeat: one training recipe over several seeds or lesion-grouped folds, and the mean and
// standard deviation of what the runs hand out. Every recipe decision in docs/results.md rests on
// such a table. Each run is tools/train (beside this binary) in a folder of its own under --out;
// a run that finished (result.json) is not repeated, and one that was interrupted continues from
// its last.safetensors, so the same command picks up where it stopped.
//
//   repeat --seeds 0,1,2 --out runs/recipe -- --data DIR --images images_200x150 --epochs 12 ...
//   repeat --folds 5 --out runs/cv -- --data DIR ...       # folds 0..4, seed 0
//   repeat --summarize runs/a/seed-0 runs/a/seed-1 ...     # the table of finished runs
#include <fmt/format.h>
#include <spawn.h>
#include <sys/wait.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "datasets/csv.h"
#include "framework/cli.h"
#include "framework/io/atomic_file.h"
#include "framework/io/json.h"
#include "framework/metrics.h"

extern char** environ;

namespace fs = std::filesystem;
using namespace dermis;

namespace {

struct RunResult {
  std::string dir, selected;
  double bal = NAN, acc = NAN, bal_prior = NAN, acc_prior = NAN, best = NAN, auc = NAN;
  std::vector<std::vector<int64_t>> val_confusion;  // the handed-out checkpoint's on the validation split
  int64_t epochs = 0;
  int64_t folds = 0;  // train --folds of the run (0: a --val-fraction split)
  // The held-out test set (train --test-fraction), when the run had one: the handed-out checkpoint
  // (balanced accuracy, accuracy, both with the training set's prior) and best, last, swa.
  bool has_test = false;
  int64_t test_images = 0;
  double t_bal = NAN, t_acc = NAN, t_bal_prior = NAN, t_acc_prior = NAN, t_best = NAN, t_last = NAN, t_swa = NAN;
};

RunResult read_result(const std::string& dir) {
  const std::string path = (fs::path(dir) / "result.json").string();
  std::ifstream f(path);
  DERMIS_CHECK(f.good(), "{}: no result.json (the run has not finished; run it to the end first)", dir);
  std::stringstream ss;
  ss << f.rdbuf();
  const json::Value v = json::parse(ss.str(), path);
  RunResult r;
  try {
    r.dir = dir, r.selected = v.at("selected").string();
    r.bal = v.at("val").at("balanced_accuracy").number(), r.acc = v.at("val").at("accuracy").number();
    r.auc = v.at("val").at("mean_auc").number();
    for (const json::Value& row : v.at("val").at("confusion_matrix").array("confusion_matrix")) {
      r.val_confusion.emplace_back();
      for (const json::Value& c : row.array("confusion_matrix row")) r.val_confusion.back().push_back(c.integer());
    }
    r.bal_prior = v.at("val_train_prior").at("balanced_accuracy").number();
    r.acc_prior = v.at("val_train_prior").at("accuracy").number();
    r.best = v.at("best_val_balanced_accuracy").number(), r.epochs = v.at("epochs").integer();
    if (const json::Value* c = v.find("config"))
      if (const json::Value* f = c->find("folds")) r.folds = f->integer();
    if (const json::Value* t = v.find("test")) {
      r.has_test = true, r.test_images = t->at("images").integer();
      r.t_bal = t->at("selected").at("balanced_accuracy").number(), r.t_acc = t->at("selected").at("accuracy").number();
      r.t_bal_prior = t->at("selected_train_prior").at("balanced_accuracy").number();
      r.t_acc_prior = t->at("selected_train_prior").at("accuracy").number();
      const json::Value& by = t->at("checkpoints");
      for (auto [key, dst] : {std::pair{"best", &r.t_best}, std::pair{"last", &r.t_last}, std::pair{"swa", &r.t_swa}})
        if (const json::Value* c = by.find(key)) *dst = c->at("balanced_accuracy").number();
    }
  } catch (const Error& e) {
    DERMIS_FAIL("{}: not a result.json of train ({})", path, e.what());
  }
  return r;
}

std::pair<double, double> mean_sd(const std::vector<double>& x) {
  double m = 0, s = 0;
  for (double v : x) m += v;
  m /= static_cast<double>(x.size());
  for (double v : x) s += (v - m) * (v - m);
  return {m, x.size() > 1 ? std::sqrt(s / static_cast<double>(x.size() - 1)) : NAN};
}

// The held-out test set's table (runs with train --test-fraction; a run without one shows "-").
// Its figures rest on no choice of the runs: the honest comparison of best, last and SWA.
json::Object summarize_test(const std::vector<RunResult>& rs) {
  fmt::print("\nheld-out test set (train --test-fraction; no choice of a run saw it):\n{:<40} {:>7} {:>9} {:>9} {:>10} "
             "{:>10} {:>9} {:>9} {:>9}\n",
             "run", "images", "bal.acc", "accuracy", "bal.acc*", "accuracy*", "best", "last", "swa");
  constexpr int kCols = 7;
  std::vector<double> cols[kCols];
  auto cell = [](double v, int w) { return std::isfinite(v) ? fmt::format("{:>{}.4f}", v, w) : fmt::format("{:>{}}", "-", w); };
  for (auto& r : rs) {
    fmt::print("{:<40} {:>7} {} {} {} {} {} {} {}\n", r.dir, r.has_test ? std::to_string(r.test_images) : "-",
               cell(r.t_bal, 9), cell(r.t_acc, 9), cell(r.t_bal_prior, 10), cell(r.t_acc_prior, 10), cell(r.t_best, 9),
               cell(r.t_last, 9), cell(r.t_swa, 9));
    const double v[kCols] = {r.t_bal, r.t_acc, r.t_bal_prior, r.t_acc_prior, r.t_best, r.t_last, r.t_swa};
    for (int c = 0; c < kCols; ++c)
      if (std::isfinite(v[c])) cols[c].push_back(v[c]);
  }
  const char* names[kCols] = {"balanced_accuracy",    "accuracy",           "balanced_accuracy_train_prior",
                              "accuracy_train_prior", "best_balanced_accuracy", "last_balanced_accuracy",
                              "swa_balanced_accuracy"};
  const int widths[kCols] = {9, 9, 10, 10, 9, 9, 9};
  json::Object out;
  std::string line = fmt::format("{:<40} {:>7}", "mean +- sd", "");
  for (int c = 0; c < kCols; ++c) {
    if (cols[c].empty()) {
      line += fmt::format(" {:>{}}", "-", widths[c]);
      continue;
    }
    const auto [m, s] = mean_sd(cols[c]);
    out[names[c]] = json::Object{{"mean", m}, {"sd", std::isfinite(s) ? json::Value(s) : json::Value()},
                                 {"count", static_cast<int64_t>(cols[c].size())}};
    line += fmt::format(" {:>{}}", fmt::format("{:.3f}+-{:.3f}", m, s), widths[c]);
  }
  fmt::print("{}\n", line);
  return out;
}

// The table: one row per run, then mean +- sd (sample standard deviation) per column.
json::Object summarize(const std::vector<RunResult>& rs) {
  fmt::print("\n{:<40} {:>8} {:>7} {:>9} {:>9} {:>10} {:>10} {:>7}\n", "run", "handed", "epochs", "bal.acc", "accuracy",
             "bal.acc*", "accuracy*", "best");
  std::vector<double> cols[6];
  for (auto& r : rs) {
    fmt::print("{:<40} {:>8} {:>7} {:>9.4f} {:>9.4f} {:>10.4f} {:>10.4f} {:>7.4f}\n", r.dir, r.selected, r.epochs, r.bal,
               r.acc, r.bal_prior, r.acc_prior, r.best);
    const double v[6] = {r.bal, r.acc, r.bal_prior, r.acc_prior, r.best, r.auc};
    for (int c = 0; c < 6; ++c) cols[c].push_back(v[c]);
  }
  const char* names[6] = {"balanced_accuracy", "accuracy", "balanced_accuracy_train_prior", "accuracy_train_prior",
                          "best_epoch_balanced_accuracy", "mean_auc"};
  json::Object out;
  std::string line = fmt::format("{:<40} {:>8} {:>7}", fmt::format("mean +- sd over {} runs", rs.size()), "", "");
  for (int c = 0; c < 6; ++c) {
    const auto [m, s] = mean_sd(cols[c]);
    out[names[c]] = json::Object{{"mean", m}, {"sd", std::isfinite(s) ? json::Value(s) : json::Value()}};
    if (c < 5) line += fmt::format(" {:>{}}", fmt::format("{:.3f}+-{:.3f}", m, s), c < 2 ? 9 : c < 4 ? 10 : 7);
  }
  fmt::print("{}\n(*: probabilities moved to the training set's class prior; best: the best epoch's own score, picked "
             "on the same images)\n",
             line);
  if (std::any_of(rs.begin(), rs.end(), [](const RunResult& r) { return r.has_test; }))
    out["test"] = summarize_test(rs);
  json::Array runs;
  for (auto& r : rs) runs.push_back(r.dir);
  out["runs"] = runs;
  out["count"] = static_cast<int64_t>(rs.size());
  return out;
}

// A run's val_predictions.csv (train writes it beside result.json; runs of older versions have
// none): every validation image's label, lesion and probabilities, appended to labels, probs and
// lesions. Empty when they were read; else why not (no file, or a file whose decisions are not
// those of the run's result.json: another checkpoint's or another run's).
std::string read_val_predictions(const RunResult& r, std::vector<int>& labels, std::vector<float>& probs,
                                 std::vector<std::string>& lesions, std::vector<std::string>& classes) {
  const std::string path = (fs::path(r.dir) / "val_predictions.csv").string();
  if (!fs::exists(path)) return fmt::format("{} has no val_predictions.csv (a run of an older version)", r.dir);
  const datasets::CsvTable t = datasets::read_csv(path);
  const int lesion = t.column("lesion_id"), label = t.column("label");
  std::vector<std::string> names;
  std::vector<int> pcol;
  for (size_t c = 0; c < t.header.size(); ++c)
    if (t.header[c].rfind("p_", 0) == 0) names.push_back(t.header[c].substr(2)), pcol.push_back(static_cast<int>(c));
  if (lesion < 0 || label < 0 || names.size() != r.val_confusion.size())
    return fmt::format("{}:{}: not a val_predictions.csv of train with the run's {} classes (it needs lesion_id, "
                       "label and one p_<class> column per class)",
                       path, t.header_line, r.val_confusion.size());
  if (classes.empty()) classes = names;
  if (names != classes) return fmt::format("{}: its classes differ from the first fold's", path);
  const size_t K = names.size(), first = labels.size();
  std::vector<std::vector<int64_t>> confusion(K, std::vector<int64_t>(K, 0));
  for (const auto& row : t.rows) {
    const auto it = std::find(names.begin(), names.end(), row.fields[static_cast<size_t>(label)]);
    if (it == names.end())
      return fmt::format("{}:{}: label '{}' is not one of the file's classes", path, row.line,
                         row.fields[static_cast<size_t>(label)]);
    const size_t y = static_cast<size_t>(it - names.begin());
    const size_t base = probs.size();
    for (size_t k = 0; k < K; ++k) {
      const std::string& f = row.fields[static_cast<size_t>(pcol[k])];
      char* end = nullptr;
      const float v = std::strtof(f.c_str(), &end);
      if (f.empty() || *end != '\0' || !std::isfinite(v))
        return fmt::format("{}:{}: '{}' is not a probability", path, row.line, f);
      probs.push_back(v);
    }
    confusion[y][static_cast<size_t>(metrics::decide(&probs[base], K))]++;
    labels.push_back(static_cast<int>(y));
    lesions.push_back(row.fields[static_cast<size_t>(lesion)]);
  }
  if (confusion != r.val_confusion) {
    labels.resize(first), probs.resize(first * K), lesions.resize(first);
    return fmt::format("{}: its decisions are not those of the run's result.json (another checkpoint's or another "
                       "run's file); recreate it with train --resume {}/last.safetensors, which trains nothing more "
                       "and scores the handed-out checkpoint again",
                       path, r.dir);
  }
  return {};
}

// Cross-validation: the folds validate disjoint images that together are the whole data set, so
// their handed-out checkpoints' confusion matrices add up to one out-of-fold figure over every
// image, with a standard error a single fold's (about 1/K of the images) cannot have. The binomial
// error treats every image as independent; with every fold's val_predictions.csv the error over
// lesions (metrics::balanced_accuracy_se_grouped) is given too, the honest one on HAM10000, whose
// lesions often have several images. A missing or foreign file leaves that error out, with a
// warning, and the pooled figure stands.
json::Object pooled_out_of_fold(const std::vector<RunResult>& rs) {
  std::vector<std::vector<int64_t>> sum;
  int64_t images = 0;
  for (auto& r : rs) {
    if (sum.empty()) sum.assign(r.val_confusion.size(), std::vector<int64_t>(r.val_confusion.size(), 0));
    DERMIS_CHECK(r.val_confusion.size() == sum.size(), "{}: its confusion matrix has {} classes, the first run's {}",
                 r.dir, r.val_confusion.size(), sum.size());
    for (size_t i = 0; i < sum.size(); ++i)
      for (size_t j = 0; j < sum.size() && j < r.val_confusion[i].size(); ++j)
        sum[i][j] += r.val_confusion[i][j], images += r.val_confusion[i][j];
  }
  const auto [bal, se] = metrics::balanced_accuracy_from_confusion(sum);
  std::vector<int> labels;
  std::vector<float> probs;
  std::vector<std::string> lesions, classes;
  std::string why_not;
  for (auto& r : rs)
    if (why_not = read_val_predictions(r, labels, probs, lesions, classes); !why_not.empty()) break;
  double se_lesions = NAN;
  std::string lesion_part;
  if (why_not.empty()) {
    const std::vector<int64_t> group = metrics::group_numbers(lesions);
    const int64_t num_lesions = group.empty() ? 0 : *std::max_element(group.begin(), group.end()) + 1;
    se_lesions = metrics::balanced_accuracy_se_grouped(labels, probs, group, static_cast<int>(classes.size()));
    lesion_part = fmt::format("; +- {:.4f} over the {} lesions", se_lesions, num_lesions);
  } else {
    std::fflush(stdout);
    fmt::print(stderr, "warning: no standard error over lesions: {}\n", why_not);
    lesion_part = "; no error over lesions (see the warning)";
  }
  fmt::print("pooled over the {} folds ({} validation images, each once): balanced accuracy {:.4f} +- {:.4f} "
             "(binomial standard error){}\n",
             rs.size(), images, bal, se, lesion_part);
  json::Object out{{"balanced_accuracy", bal}, {"balanced_accuracy_se", se}, {"images", images}};
  out["balanced_accuracy_se_lesions"] = std::isfinite(se_lesions) ? json::Value(se_lesions) : json::Value();
  return out;
}

// Empty when the runs' validation sides split one set of images with each image once (the folds
// of one cross-validation: same images, same test set), read from the split.csv every run writes,
// so that pooled_out_of_fold covers every image once; else why not.
std::string not_one_cross_validation(const std::vector<RunResult>& rs) {
  if (rs.front().folds < 2) return fmt::format("{} was not a --folds run", rs.front().dir);
  std::map<std::string, std::string> val_of;  // image_id -> the run that validated it
  std::set<std::string> images;                // the first run's images outside its test set
  std::string test;                            // the first run's test images, in file order
  for (size_t r = 0; r < rs.size(); ++r) {
    const std::string path = (fs::path(rs[r].dir) / "split.csv").string();
    DERMIS_CHECK(fs::exists(path), "{}: no split.csv (written by train at the start of every run)", rs[r].dir);
    const datasets::CsvTable t = datasets::read_csv(path);
    const int id = t.column("image_id"), side = t.column("split");
    DERMIS_CHECK(id >= 0 && side >= 0, "{}: not a split.csv of train (it needs image_id and split)", path);
    std::set<std::string> mine;
    std::string my_test;
    std::vector<std::string> val;
    for (const auto& row : t.rows) {
      const std::string& image = row.fields[static_cast<size_t>(id)];
      const std::string& s = row.fields[static_cast<size_t>(side)];
      if (s == "test") my_test += image + ",";
      else mine.insert(image);
      if (s == "val") val.push_back(image);
    }
    if (r == 0) images = std::move(mine), test = std::move(my_test);
    else if (mine != images || my_test != test)
      return fmt::format("{} and {} were trained on different images or test sets (another --data, --images, "
                         "--synthetic-count or --test-fraction/--test-seed), so they are not folds of one split",
                         rs.front().dir, rs[r].dir);
    for (const auto& image : val)
      if (const auto [it, fresh] = val_of.emplace(image, rs[r].dir); !fresh)
        return fmt::format("image {} is validated by both {} and {} (a fold given twice?)", image, it->second,
                           rs[r].dir);
  }
  if (val_of.size() != images.size())
    return fmt::format("{} of the {} images are in no run's validation fold (a fold is missing, or the folds are of "
                       "different splits: another --folds or --seed)",
                       images.size() - val_of.size(), images.size());
  return {};
}

int run_train(const std::string& train_bin, const std::vector<std::string>& args) {
  std::vector<char*> argv;
  argv.push_back(const_cast<char*>(train_bin.c_str()));
  for (auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  pid_t pid = 0;
  const int rc = posix_spawn(&pid, train_bin.c_str(), nullptr, nullptr, argv.data(), environ);
  DERMIS_CHECK(rc == 0, "cannot start {}: {}", train_bin, std::strerror(rc));
  int status = 0;
  while (waitpid(pid, &status, 0) < 0)
    if (errno != EINTR) DERMIS_FAIL("waiting for {}: {}", train_bin, std::strerror(errno));
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  return 128 + (WIFSIGNALED(status) ? WTERMSIG(status) : 0);
}

std::vector<long> parse_list(const std::string& s, const char* flag) {
  std::vector<long> out;
  std::stringstream ss(s);
  for (std::string t; std::getline(ss, t, ',');) {
    char* end = nullptr;
    const long v = std::strtol(t.c_str(), &end, 10);
    DERMIS_CHECK(!t.empty() && *end == '\0' && v >= 0, "flag --{}: '{}' is not a non-negative integer", flag, t);
    DERMIS_CHECK(std::find(out.begin(), out.end(), v) == out.end(),
                 "flag --{}: {} is listed twice; each run counts once in the mean", flag, v);
    out.push_back(v);
  }
  DERMIS_CHECK(!out.empty(), "flag --{}: give a comma-separated list, e.g. 0,1,2", flag);
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  return cli::run_main("repeat", [&]() -> int {
    cli::Args args(
        "usage: repeat (--seeds LIST | --folds K) --out DIR -- TRAIN FLAGS...\n"
        "       repeat --summarize RUN_DIR...\n"
        "Runs one train recipe once per seed (--seed S, folder DIR/seed-S) or per lesion-grouped fold\n"
        "(--folds K --fold k, folder DIR/fold-k), then prints the validation balanced accuracy and\n"
        "accuracy of each run's handed-out checkpoint (and with the training set's class prior), with\n"
        "mean +- sd, and writes DIR/summary.json; with --folds also the figure pooled over every image\n"
        "(the folds' validation confusion matrices added up), with its binomial standard error and, from\n"
        "the folds' val_predictions.csv, its standard error over lesions. Finished runs are kept;\n"
        "interrupted ones resume.");
    args.add("seeds", "", "comma-separated seeds (each changes the split, initialisation and order)");
    args.add("folds", "0", "lesion-grouped k-fold cross-validation: one run per fold (2 to 20)");
    args.add("seed", "0", "with --folds: the seed of the fold assignment and the runs");
    args.add("out", "", "folder of the runs");
    args.add_bool("summarize", "only print the table of the finished run folders given as arguments (and, when they are the K folds of one cross-validation, the pooled out-of-fold figure)");
    std::vector<std::string> train_args, positional;
    std::vector<char*> own = {argv[0]};
    bool after_dashes = false;
    for (int i = 1; i < argc; ++i) {
      const std::string a = argv[i];
      if (after_dashes) train_args.push_back(a);
      else if (a == "--") after_dashes = true;
      else if (a.rfind("--", 0) == 0 || a == "-h") {
        own.push_back(argv[i]);
        if (a != "--summarize" && a != "--help" && a != "-h" && a.find('=') == std::string::npos && i + 1 < argc)
          own.push_back(argv[++i]);
      } else positional.push_back(a);
    }
    if (!args.parse(static_cast<int>(own.size()), own.data())) return 0;
    if (args.flag("summarize")) {
      DERMIS_CHECK(!positional.empty(), "--summarize needs run folders (each with result.json)");
      for (const char* f : {"out", "seeds", "folds", "seed"})
        args.reject_unless(f, false, "does not apply with --summarize (which reads finished runs)");
      for (size_t i = 0; i < positional.size(); ++i)
        for (size_t j = 0; j < i; ++j)
          DERMIS_CHECK(!io::same_file(positional[i], positional[j]),
                       "--summarize: {} and {} are the same run folder; give each run once", positional[j],
                       positional[i]);
      std::vector<RunResult> rs;
      for (auto& d : positional) rs.push_back(read_result(d));
      summarize(rs);
      if (const std::string why = not_one_cross_validation(rs); why.empty()) pooled_out_of_fold(rs);
      else if (rs.front().folds >= 2) fmt::print("not pooled over folds: {}\n", why);
      return 0;
    }
    DERMIS_CHECK(positional.empty(), "unexpected argument '{}'; train's flags go after --", positional.front());
    DERMIS_CHECK(!args.str("out").empty(), "flag --out is required (the folder of the runs)");
    const long folds = args.integer("folds", 0, 20);
    DERMIS_CHECK((folds >= 2) != !args.str("seeds").empty(), "give either --seeds LIST or --folds K (2 to 20)");
    args.reject_unless("seed", folds >= 2, "applies only with --folds (use --seeds for several seeds)");
    for (auto& a : train_args)
      for (const char* f : {"--seed", "--fold", "--folds", "--out", "--resume"})
        DERMIS_CHECK(a != f && a.rfind(std::string(f) + "=", 0) != 0,
                     "train flag {} is set by repeat itself for each run; leave it out", f);
    std::error_code ec;
    const fs::path self = fs::read_symlink("/proc/self/exe", ec);
    const std::string train_bin = (ec ? fs::path("train") : self.parent_path() / "train").string();
    DERMIS_CHECK(fs::exists(train_bin), "{} not found (repeat runs the train binary beside it)", train_bin);
    std::vector<std::pair<std::string, std::vector<std::string>>> runs;
    if (folds >= 2) {
      for (long k = 0; k < folds; ++k)
        runs.push_back({fmt::format("fold-{}", k), {"--folds", std::to_string(folds), "--fold", std::to_string(k),
                                                    "--seed", args.str("seed")}});
    } else {
      for (long s : parse_list(args.str("seeds"), "seeds")) runs.push_back({fmt::format("seed-{}", s), {"--seed", std::to_string(s)}});
    }
    fs::create_directories(args.str("out"));
    std::vector<RunResult> rs;
    for (size_t i = 0; i < runs.size(); ++i) {
      const std::string dir = (fs::path(args.str("out")) / runs[i].first).string();
      const std::string last = (fs::path(dir) / "last.safetensors").string();
      if (fs::exists(fs::path(dir) / "result.json")) {
        fmt::print("repeat: run {}/{} ({}) finished before; kept\n", i + 1, runs.size(), dir);
      } else {
        std::vector<std::string> a;
        if (fs::exists(last)) {
          a = {"--resume", last};
          fmt::print("repeat: run {}/{}: continuing {}\n", i + 1, runs.size(), last);
        } else {
          a = train_args;
          a.insert(a.end(), runs[i].second.begin(), runs[i].second.end());
          a.insert(a.end(), {"--out", dir});
          std::string cmd = "train";
          for (auto& x : a) cmd += " " + x;
          fmt::print("repeat: run {}/{}: {}\n", i + 1, runs.size(), cmd);
        }
        std::fflush(stdout);
        const int rc = run_train(train_bin, a);
        if (rc != 0)
          DERMIS_FAIL("run {} stopped (train exit code {}; train's message is above): once that is dealt with, the "
                      "same repeat command continues (finished runs are kept, an interrupted one resumes)",
                      dir, rc);
      }
      rs.push_back(read_result(dir));
    }
    json::Object out = summarize(rs);
    if (folds >= 2) {
      // Runs kept from an earlier command may be of other settings; pool only one split's folds.
      if (const std::string why = not_one_cross_validation(rs); why.empty()) out["pooled"] = pooled_out_of_fold(rs);
      else fmt::print("not pooled over folds: {}\n", why);
    }
    std::string cmd = "repeat";
    for (int i = 1; i < argc; ++i) cmd += std::string(" ") + argv[i];
    out["command"] = cmd;
    const std::string text = json::dump(out);
    const std::string path = (fs::path(args.str("out")) / "summary.json").string();
    io::write_file_atomic(path, std::vector<uint8_t>(text.begin(), text.end()));
    fmt::print("summary: {}\n", path);
    return 0;
  });
}
