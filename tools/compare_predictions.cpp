// tools/compare_predictions: the paired difference between two classifiers scored on the same images, from
// the per-image rows `evaluate --predictions` writes. Paired by image, the difference in balanced
// accuracy has a much smaller error than the two figures' own errors suggest, since both
// classifiers see the same hard and easy images; a bootstrap gives that error and a percentile
// interval. It resamples lesions (the files' lesion_id: HAM10000 has several images of many
// lesions, which are not independent draws) within each class, so every class keeps its lesions.
//
//   evaluate --checkpoint runs/a/model.safetensors --data DIR --split test --predictions a.csv
//   evaluate --checkpoint runs/b/model.safetensors --data DIR --split test --predictions b.csv
//   compare_predictions --a a.csv --b b.csv
//   compare_predictions --a a/fold-0.csv,a/fold-1.csv,a/fold-2.csv --b b/fold-0.csv,...   # folds pooled
#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <random>
#include <sstream>
#include <string>
#include <unordered_map>
#include <vector>

#include "datasets/csv.h"
#include "framework/cli.h"
#include "framework/io/atomic_file.h"
#include "framework/io/json.h"
#include "framework/metrics.h"

using namespace dermis;

namespace {

// One classifier's rows: every image's true and predicted class, from one or more CSV files.
struct Side {
  std::vector<std::string> classes;  // from the p_<class> columns, in file order
  std::string first_file;
  std::vector<std::string> ids;  // in reading order
  std::unordered_map<std::string, std::pair<int, int>> rows;  // image_id -> (label, predicted)
  std::unordered_map<std::string, std::string> lesion;        // image_id -> lesion_id (files with the column)
  bool lesions = true;                                        // every file has lesion_id
  std::unordered_map<std::string, std::string> where;         // image_id -> "file:line"
};

Side read_side(const std::string& list, const char* flag) {
  Side s;
  std::stringstream ss(list);
  for (std::string path; std::getline(ss, path, ',');) {
    DERMIS_CHECK(!path.empty(), "flag --{}: an empty file name in '{}'", flag, list);
    DERMIS_CHECK(!std::filesystem::is_directory(path), "flag --{}: {} is a folder; give evaluate --predictions files",
                 flag, path);
    const datasets::CsvTable t = datasets::read_csv(path);
    const int id = t.column("image_id"), label = t.column("label"), pred = t.column("predicted");
    const int lesion = t.column("lesion_id");
    s.lesions = s.lesions && lesion >= 0;
    DERMIS_CHECK(id >= 0 && label >= 0 && pred >= 0,
                 "{}:{}: not a file of evaluate --predictions (it needs the columns image_id, label, predicted and "
                 "p_<class>)",
                 path, t.header_line);
    std::vector<std::string> classes;
    for (const auto& h : t.header)
      if (h.rfind("p_", 0) == 0) classes.push_back(h.substr(2));
    DERMIS_CHECK(classes.size() >= 2, "{}:{}: no p_<class> columns (a file of evaluate --predictions has one per class)",
                 path, t.header_line);
    if (s.classes.empty()) s.classes = classes, s.first_file = path;
    DERMIS_CHECK(classes == s.classes, "{}: its classes differ from those of {}", path, s.first_file);
    auto index = [&](const std::string& name, int64_t line) {
      const auto it = std::find(classes.begin(), classes.end(), name);
      DERMIS_CHECK(it != classes.end(), "{}:{}: '{}' is not one of the file's classes", path, line, name);
      return static_cast<int>(it - classes.begin());
    };
    for (const auto& r : t.rows) {
      const std::string& image = r.fields[static_cast<size_t>(id)];
      DERMIS_CHECK(!image.empty(), "{}:{}: empty image_id", path, r.line);
      const std::string here = fmt::format("{}:{}", path, r.line);
      const auto [it, fresh] = s.where.emplace(image, here);
      DERMIS_CHECK(fresh, "{}: image {} is also at {}; give each image once per side (each fold's file once)", here,
                   image, it->second);
      s.rows[image] = {index(r.fields[static_cast<size_t>(label)], r.line),
                       index(r.fields[static_cast<size_t>(pred)], r.line)};
      if (lesion >= 0) s.lesion[image] = r.fields[static_cast<size_t>(lesion)];
      s.ids.push_back(image);
    }
  }
  DERMIS_CHECK(!s.ids.empty(), "flag --{}: no rows in {}", flag, list);
  return s;
}

// Balanced accuracy (metrics' mean recall over the classes present) and accuracy of the rows `idx`.
struct Figures {
  double balanced = 0, accuracy = 0;
};
Figures figures(const std::vector<int>& label, const std::vector<int>& pred, const std::vector<size_t>& idx, size_t K) {
  std::vector<std::vector<int64_t>> confusion(K, std::vector<int64_t>(K, 0));
  int64_t right = 0;
  for (size_t i : idx) {
    confusion[static_cast<size_t>(label[i])][static_cast<size_t>(pred[i])]++;
    right += pred[i] == label[i];
  }
  return {metrics::balanced_accuracy_from_confusion(confusion).first,
          static_cast<double>(right) / static_cast<double>(idx.size())};
}

struct Interval {
  double diff = 0, se = 0, lo = 0, hi = 0;
};
Interval interval(double diff, std::vector<double> draws) {
  std::sort(draws.begin(), draws.end());
  double m = 0, v = 0;
  for (double d : draws) m += d;
  m /= static_cast<double>(draws.size());
  for (double d : draws) v += (d - m) * (d - m);
  const size_t n = draws.size();
  return {diff, std::sqrt(v / static_cast<double>(n - 1)), draws[static_cast<size_t>(0.025 * static_cast<double>(n - 1))],
          draws[static_cast<size_t>(std::ceil(0.975 * static_cast<double>(n - 1)))]};
}

json::Object to_json(const Interval& i) {
  return json::Object{{"difference", i.diff}, {"se", i.se}, {"low_95", i.lo}, {"high_95", i.hi}};
}

}  // namespace

int main(int argc, char** argv) {
  return cli::run_main("compare_predictions", [&]() -> int {
    cli::Args args(
        "usage: compare_predictions --a FILE[,FILE...] --b FILE[,FILE...] [flags]\n"
        "The paired difference A - B in balanced accuracy and accuracy between two classifiers scored on the\n"
        "same images, from evaluate --predictions files (several per side, comma-separated: e.g. the folds\n"
        "of a cross-validation, pooled). Its standard error and 95% interval come from a bootstrap over the\n"
        "lesions (lesion_id; images without it), resampled within each class, as does each side's own\n"
        "standard error; also the images only A or only B gets right.");
    args.add("a", "", "classifier A: evaluate --predictions CSV file(s)");
    args.add("b", "", "classifier B: the same images' rows, in any order");
    args.add("draws", "2000", "bootstrap draws");
    args.add("seed", "0", "seed of the bootstrap draws");
    args.add("out", "", "also write the figures as JSON to this file");
    if (!args.parse(argc, argv)) return 0;
    io::check_output_path("out", args.str("out"));
    DERMIS_CHECK(!args.str("a").empty() && !args.str("b").empty(), "flags --a and --b are required (see --help)");
    const long draws = args.integer("draws", 100, 1000000);
    const long seed = args.integer("seed", 0, 2147483647);
    const Side A = read_side(args.str("a"), "a"), B = read_side(args.str("b"), "b");
    DERMIS_CHECK(A.classes == B.classes, "{} and {} have different classes", A.first_file, B.first_file);
    for (const auto& id : A.ids)
      DERMIS_CHECK(B.rows.count(id), "image {} ({}) has no row in --b; score both classifiers on the same images "
                   "(same --split and split settings)", id, A.where.at(id));
    for (const auto& id : B.ids)
      DERMIS_CHECK(A.rows.count(id), "image {} ({}) has no row in --a; score both classifiers on the same images "
                   "(same --split and split settings)", id, B.where.at(id));
    const size_t K = A.classes.size(), N = A.ids.size();
    std::vector<int> label(N), pa(N), pb(N);
    int64_t only_a = 0, only_b = 0;
    for (size_t i = 0; i < N; ++i) {
      const auto& id = A.ids[i];
      const auto [la, a] = A.rows.at(id);
      const auto [lb, b] = B.rows.at(id);
      DERMIS_CHECK(la == lb, "image {}: label {} at {} but {} at {}", id, A.classes[static_cast<size_t>(la)],
                   A.where.at(id), A.classes[static_cast<size_t>(lb)], B.where.at(id));
      label[i] = la, pa[i] = a, pb[i] = b;
      only_a += a == la && b != la, only_b += b == la && a != la;
    }
    std::vector<size_t> all(N);
    for (size_t i = 0; i < N; ++i) all[i] = i;
    const Figures fa = figures(label, pa, all, K), fb = figures(label, pb, all, K);
    // The units drawn: each lesion's images of one class (each image alone without lesion ids).
    const bool lesions = A.lesions && B.lesions;
    std::vector<std::vector<std::vector<size_t>>> by_class(K);  // class -> units -> images
    {
      std::unordered_map<std::string, size_t> unit_of;
      for (size_t i = 0; i < N; ++i) {
        const auto& id = A.ids[i];
        if (lesions)
          DERMIS_CHECK(A.lesion.at(id) == B.lesion.at(id), "image {}: lesion {} at {} but {} at {}", id, A.lesion.at(id),
                       A.where.at(id), B.lesion.at(id), B.where.at(id));
        auto& units = by_class[static_cast<size_t>(label[i])];
        const auto [it, fresh] = unit_of.emplace(lesions ? A.lesion.at(id) + '\x1f' + std::to_string(label[i]) : id,
                                                 units.size());
        if (fresh) units.emplace_back();
        units[it->second].push_back(i);
      }
    }
    size_t units = 0;
    for (const auto& u : by_class) units += u.size();
    std::mt19937_64 rng(static_cast<uint64_t>(seed));
    std::vector<double> d_bal, d_acc, a_bal, b_bal;  // the differences, and each side's own figure
    std::vector<size_t> idx;
    for (long d = 0; d < draws; ++d) {
      idx.clear();
      for (const auto& members : by_class) {
        if (members.empty()) continue;
        std::uniform_int_distribution<size_t> pick(0, members.size() - 1);
        for (size_t m = 0; m < members.size(); ++m) {
          const auto& unit = members[pick(rng)];
          idx.insert(idx.end(), unit.begin(), unit.end());
        }
      }
      const Figures ra = figures(label, pa, idx, K), rb = figures(label, pb, idx, K);
      d_bal.push_back(ra.balanced - rb.balanced), d_acc.push_back(ra.accuracy - rb.accuracy);
      a_bal.push_back(ra.balanced), b_bal.push_back(rb.balanced);
    }
    const Interval bal = interval(fa.balanced - fb.balanced, d_bal), acc = interval(fa.accuracy - fb.accuracy, d_acc);
    // Each side's own error: the same draws, one side at a time (unpaired, so much larger than the
    // difference's when both classifiers find the same images hard).
    const Interval own_a = interval(fa.balanced, a_bal), own_b = interval(fb.balanced, b_bal);
    const char* unit_name = lesions ? "lesions" : "images";
    fmt::print("A: {}: balanced accuracy {:.4f} (SE {:.4f} over {}), accuracy {:.4f}\n", args.str("a"), fa.balanced,
               own_a.se, unit_name, fa.accuracy);
    fmt::print("B: {}: balanced accuracy {:.4f} (SE {:.4f} over {}), accuracy {:.4f}\n", args.str("b"), fb.balanced,
               own_b.se, unit_name, fb.accuracy);
    fmt::print("A - B, paired over {} images ({} bootstrap draws of the {} {} within each class, seed {}):\n", N, draws,
               units, lesions ? "lesions" : "images (no lesion_id column)", seed);
    fmt::print("  balanced accuracy {:+.4f}  SE {:.4f}  95% interval {:+.4f} to {:+.4f}\n", bal.diff, bal.se, bal.lo,
               bal.hi);
    fmt::print("  accuracy          {:+.4f}  SE {:.4f}  95% interval {:+.4f} to {:+.4f}\n", acc.diff, acc.se, acc.lo,
               acc.hi);
    fmt::print("  images only A gets right: {}; only B: {}\n", only_a, only_b);
    if (!args.str("out").empty()) {
      const json::Object o{{"a", args.str("a")},
                           {"b", args.str("b")},
                           {"images", static_cast<int64_t>(N)},
                           {"draws", static_cast<int64_t>(draws)},
                           {"resampled", lesions ? "lesions" : "images"},
                           {"units", static_cast<int64_t>(units)},
                           {"a_balanced_accuracy", fa.balanced},
                           {"b_balanced_accuracy", fb.balanced},
                           {"a_balanced_accuracy_se", own_a.se},
                           {"b_balanced_accuracy_se", own_b.se},
                           {"a_accuracy", fa.accuracy},
                           {"b_accuracy", fb.accuracy},
                           {"balanced_accuracy", to_json(bal)},
                           {"accuracy", to_json(acc)},
                           {"only_a_right", only_a},
                           {"only_b_right", only_b}};
      const std::string text = json::dump(o);
      io::write_file_atomic(args.str("out"), std::vector<uint8_t>(text.begin(), text.end()));
    }
    return 0;
  });
}
