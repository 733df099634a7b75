// Lesion-grouped, class-stratified splitting and class weights (see split.h).
#include "split.h"

#include <algorithm>
#include <cmath>
#include <string>
#include <string_view>
#include <utility>
#include <unordered_map>

#include <fmt/format.h>

#include "framework/data/loader.h"
#include "framework/error.h"
#include "framework/random.h"

namespace dermis::datasets {

namespace {
// A dataset's lesions, in order of first appearance, each with its images; per class, its lesions
// (a lesion belongs to the class of its first image) and its image count.
struct Lesions {
  std::vector<std::vector<size_t>> images;
  std::array<std::vector<size_t>, kNumClasses> of_class;
  std::array<int64_t, kNumClasses> class_images{};
};

// fn names the caller in the messages.
Lesions group_lesions(const Dataset& d, const char* fn) {
  DERMIS_CHECK(!d.samples.empty(), "{}: dataset '{}' has no images", fn, d.root);
  Lesions r;
  std::unordered_map<std::string, size_t> lesion_of;
  for (size_t i = 0; i < d.samples.size(); ++i) {
    const Sample& s = d.samples[i];
    DERMIS_CHECK(s.label >= 0 && s.label < kNumClasses, "{}: image {} has label {}, outside [0, {})", fn, s.image_id,
                 s.label, kNumClasses);
    auto [it, fresh] = lesion_of.try_emplace(s.lesion_id, r.images.size());
    if (fresh) {
      r.images.emplace_back();
      r.of_class[s.label].push_back(it->second);
    }
    r.images[it->second].push_back(i);
  }
  for (const auto& l : r.images) r.class_images[d.samples[l.front()].label] += static_cast<int64_t>(l.size());
  return r;
}

// Fisher-Yates shuffle of a class's lesions with g.
void shuffle_lesions(std::vector<size_t>& ls, Generator& g) {
  for (size_t i = ls.size(); i > 1; --i)
    std::swap(ls[i - 1], ls[static_cast<size_t>(g.randint(static_cast<int64_t>(i)))]);
}
}  // namespace

Split grouped_split(const Dataset& d, double val_fraction, uint64_t seed) {
  DERMIS_CHECK(val_fraction > 0 && val_fraction < 1,
               "grouped_split: val_fraction {} is outside (0, 1); pass the share of images for validation, e.g. 0.2",
               val_fraction);
  Lesions lesions = group_lesions(d, "grouped_split");
  const auto& lesion_images = lesions.images;
  auto& class_lesions = lesions.of_class;
  const auto& class_images = lesions.class_images;

  Generator g(seed);
  std::vector<char> in_val(d.samples.size(), 0);
  for (int k = 0; k < kNumClasses; ++k) {
    std::vector<size_t>& ls = class_lesions[k];
    shuffle_lesions(ls, g);
    const double target = val_fraction * static_cast<double>(class_images[k]);
    int64_t taken = 0;
    for (size_t l : ls) {
      const int64_t n = static_cast<int64_t>(lesion_images[l].size());
      if (std::abs(static_cast<double>(taken + n) - target) < std::abs(static_cast<double>(taken) - target)) {
        taken += n;
        for (size_t i : lesion_images[l]) in_val[i] = 1;
      }
    }
  }
  Split s;
  for (size_t i = 0; i < d.samples.size(); ++i) (in_val[i] ? s.val : s.train).push_back(i);
  DERMIS_CHECK(!s.val.empty() && !s.train.empty(),
               "grouped_split: {} images of {} lesions with val_fraction {} leave the {} set empty; use more images "
               "or another val_fraction",
               d.samples.size(), lesion_images.size(), val_fraction, s.val.empty() ? "validation" : "training");
  return s;
}

Split grouped_kfold(const Dataset& d, int folds, int fold, uint64_t seed) {
  DERMIS_CHECK(folds >= 2 && folds <= 20,
               "grouped_kfold: folds {} is outside [2, 20]; pass the number of cross-validation folds, e.g. 5", folds);
  DERMIS_CHECK(fold >= 0 && fold < folds,
               "grouped_kfold: fold {} is outside [0, {}); pass the index of the validation fold, 0 to folds - 1", fold,
               folds);
  Lesions lesions = group_lesions(d, "grouped_kfold");
  // Greedy per class: each lesion, in shuffled order, to the fold with the fewest images of its
  // class so far. That keeps a class's fold sizes within m (its largest lesion) of each other: if
  // they are before, adding n <= m to the smallest keeps them so.
  Generator g(seed);
  std::vector<int64_t> fold_images(static_cast<size_t>(folds), 0);  // over all classes
  std::vector<int> fold_of(lesions.images.size(), 0);
  for (int k = 0; k < kNumClasses; ++k) {
    std::vector<size_t>& ls = lesions.of_class[k];
    shuffle_lesions(ls, g);
    std::vector<int64_t> class_fold(static_cast<size_t>(folds), 0);
    for (size_t l : ls) {
      int best = 0;
      for (int f = 1; f < folds; ++f)
        if (class_fold[f] < class_fold[best] ||
            (class_fold[f] == class_fold[best] && fold_images[f] < fold_images[best]))
          best = f;
      const int64_t n = static_cast<int64_t>(lesions.images[l].size());
      fold_of[l] = best;
      class_fold[best] += n;
      fold_images[best] += n;
    }
  }
  std::vector<char> in_val(d.samples.size(), 0);
  for (size_t l = 0; l < lesions.images.size(); ++l)
    if (fold_of[l] == fold)
      for (size_t i : lesions.images[l]) in_val[i] = 1;
  Split s;
  for (size_t i = 0; i < d.samples.size(); ++i) (in_val[i] ? s.val : s.train).push_back(i);
  DERMIS_CHECK(!s.val.empty() && !s.train.empty(),
               "grouped_kfold: {} images of {} lesions in {} folds leave the {} set of fold {} empty; use fewer folds "
               "or more images",
               d.samples.size(), lesions.images.size(), folds, s.val.empty() ? "validation" : "training", fold);
  return s;
}

Split with_test_set(const Dataset& d, double test_fraction, uint64_t test_seed,
                    const std::function<Split(const Dataset&)>& split_rest) {
  DERMIS_CHECK(test_fraction > 0 && test_fraction < 1,
               "with_test_set: test_fraction {} is outside (0, 1); pass the share of images held out, e.g. 0.15",
               test_fraction);
  const Split outer = grouped_split(d, test_fraction, test_seed);  // its validation side is the test set
  Split s = split_rest(subset(d, outer.train));
  for (auto* side : {&s.train, &s.val, &s.test})
    for (size_t& i : *side) {
      DERMIS_CHECK(i < outer.train.size(), "with_test_set: index {} is outside the {} images left after the test set",
                   i, outer.train.size());
      i = outer.train[i];  // ascending stays ascending: outer.train is
    }
  s.test.insert(s.test.end(), outer.val.begin(), outer.val.end());
  std::sort(s.test.begin(), s.test.end());
  return s;
}

Dataset subset(const Dataset& d, const std::vector<size_t>& indices) {
  Dataset out;
  out.root = d.root;
  out.samples.reserve(indices.size());
  for (size_t i : indices) {
    DERMIS_CHECK(i < d.samples.size(), "subset: index {} is out of range for a dataset of {} images", i,
                 d.samples.size());
    out.samples.push_back(d.samples[i]);
  }
  return out;
}

namespace {
// The number of samples over all classes, after checking the counts (what: the caller and what it
// computes, for the messages).
int64_t checked_total(const std::array<int64_t, kNumClasses>& counts, const char* fn, const char* what) {
  int64_t total = 0;
  for (int64_t n : counts) {
    DERMIS_CHECK(n >= 0, "{}: negative class count {}", fn, n);
    total += n;
  }
  DERMIS_CHECK(total > 0, "{}: every class count is 0; compute the {} from a non-empty training set", fn, what);
  return total;
}
}  // namespace

namespace {
std::string csv_field(const std::string& v) {
  if (v.find_first_of(",\"\r\n") == std::string::npos) return v;
  std::string q = "\"";
  for (char ch : v) q += ch == '"' ? std::string("\"\"") : std::string(1, ch);
  return q + "\"";
}
}  // namespace

std::string split_csv(const Dataset& d, const Split& s) {
  std::vector<const char*> side(d.samples.size(), nullptr);
  for (const auto& [indices, name] :
       {std::pair{&s.train, "train"}, std::pair{&s.val, "val"}, std::pair{&s.test, "test"}})
    for (size_t i : *indices) {
      DERMIS_CHECK(i < side.size(), "split_csv: {} index {} is outside the dataset of {} images", name, i, side.size());
      DERMIS_CHECK(!side[i], "split_csv: image {} is on both sides (index {})", d.samples[i].image_id, i);
      side[i] = name;
    }
  std::string out = "image_id,lesion_id,dx,split,path\n";
  for (size_t i = 0; i < d.samples.size(); ++i) {
    if (!side[i]) continue;  // not in the split (e.g. a skipped image)
    const Sample& x = d.samples[i];
    DERMIS_CHECK(x.label >= 0 && x.label < kNumClasses, "split_csv: image {} has label {}", x.image_id, x.label);
    out += csv_field(x.image_id) + ',' + csv_field(x.lesion_id) + ',' + class_names()[x.label] + ',' + side[i] + ',' +
           csv_field(x.path) + '\n';
  }
  return out;
}

std::string images_fingerprint(const Dataset& d, const std::vector<size_t>& indices) {
  std::vector<std::string_view> ids;
  ids.reserve(indices.size());
  for (size_t i : indices) {
    DERMIS_CHECK(i < d.samples.size(), "images_fingerprint: index {} is outside the dataset of {} images", i,
                 d.samples.size());
    ids.emplace_back(d.samples[i].image_id);
  }
  return images_fingerprint(std::move(ids));
}

std::string images_fingerprint(std::vector<std::string_view> ids) {
  std::sort(ids.begin(), ids.end());
  uint64_t h = 14695981039346656037ull;  // FNV-1a, 64 bits
  for (std::string_view id : ids) {
    for (unsigned char ch : id) h = (h ^ ch) * 1099511628211ull;
    h = (h ^ 0x0a) * 1099511628211ull;  // a separator: "ab","c" differs from "a","bc"
  }
  return fmt::format("{}:{:016x}", ids.size(), h);
}

std::vector<float> class_weights(const std::array<int64_t, kNumClasses>& counts, double exponent) {
  DERMIS_CHECK(std::isfinite(exponent) && exponent >= 0,
               "class_weights: exponent {} must be >= 0 (1: inverse frequency, 0.5: its square root, 0: none)", exponent);
  const int64_t total = checked_total(counts, "class_weights", "weights");
  const int64_t present = std::count_if(counts.begin(), counts.end(), [](int64_t n) { return n > 0; });
  std::vector<float> w(kNumClasses, 0.f);
  for (int k = 0; k < kNumClasses; ++k)
    if (counts[k] > 0)
      w[k] = static_cast<float>(std::pow(static_cast<double>(total) / (static_cast<double>(present) * counts[k]), exponent));
  return w;
}

std::vector<double> sampled_class_prior(const std::array<int64_t, kNumClasses>& counts, double power) {
  DERMIS_CHECK(std::isfinite(power) && power >= 0 && power <= 1, "sampled_class_prior: power {} must be in [0, 1]",
               power);
  checked_total(counts, "sampled_class_prior", "class prior");
  std::vector<double> p = data::class_draw_weights(std::vector<int64_t>(counts.begin(), counts.end()), power);
  double total = 0;  // over the classes present
  for (double w : p) total += w;
  for (int k = 0; k < kNumClasses; ++k) p[k] = (counts[k] > 0 ? p[k] : std::pow(0.5, power)) / total;
  return p;
}

std::vector<float> logit_offsets(const std::array<int64_t, kNumClasses>& counts, double tau, double power) {
  DERMIS_CHECK(std::isfinite(tau) && tau >= 0, "logit_offsets: tau {} must be >= 0", tau);
  const std::vector<double> prior = sampled_class_prior(counts, power);
  std::vector<float> b(kNumClasses);
  for (int k = 0; k < kNumClasses; ++k) b[k] = static_cast<float>(tau * std::log(prior[k]));
  return b;
}

}  // namespace dermis::datasets
