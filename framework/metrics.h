// Classification metrics for imbalanced data: confusion matrix, accuracy, balanced accuracy (mean
// per-class recall, the ISIC 2018 Task 3 metric), per-class recall and precision, macro F1,
// one-vs-rest ROC AUC per class, exact ROC curves and clinical operating points (sensitivity at a
// required specificity).
#pragma once

#include <cmath>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "io/json.h"

namespace dermis::metrics {

struct Report {
  int64_t images = 0;
  double loss = 0;  // mean loss if the caller provided one, else 0
  double accuracy = 0, balanced_accuracy = 0, macro_f1 = 0, mean_auc = 0;
  // The standard error of balanced_accuracy from the finite images of each class (binomial,
  // sqrt(sum_k r_k (1 - r_k) / n_k) / K over the classes present): how far the figure would move on
  // another draw of as many images per class from the same source. With 17 images of a class, one
  // image is 1/17 of its recall.
  double balanced_accuracy_se = 0;
  std::vector<double> recall, precision, f1, auc;  // per class; NaN where undefined (no positives)
  std::vector<std::vector<int64_t>> confusion;     // [true][predicted]
  json::Object to_json(const std::vector<std::string>& class_names) const;
};

// The decision every tool takes from one image's K class probabilities (or scores): the class of
// the highest, the first of equals.
inline int decide(const float* probs, size_t num_classes) {
  size_t top = 0;
  for (size_t k = 1; k < num_classes; ++k)
    if (probs[k] > probs[top]) top = k;
  return static_cast<int>(top);
}

// labels: N true classes; probs: N x K row-major class probabilities (or scores).
// Undefined per-class values (a class absent from labels, or never predicted for precision) are
// NaN and left out of the means; balanced accuracy averages over the classes present.
Report evaluate(const std::vector<int>& labels, const std::vector<float>& probs, int num_classes);

// Balanced accuracy (mean recall over the classes present) and its binomial standard error
// (Report::balanced_accuracy_se) from a confusion matrix [true][predicted]; NaN for an empty one.
// Summing the matrices of runs that scored disjoint images (the folds of one cross-validation)
// gives the pooled figure over all of them.
std::pair<double, double> balanced_accuracy_from_confusion(const std::vector<std::vector<int64_t>>& confusion);

// The standard error of balanced accuracy when images come in groups (HAM10000's lesions: several
// images of one lesion are not independent draws). Each class's recall is a ratio over the groups
// holding images of that class, with the cluster-robust variance of a ratio estimator,
// m / (m - 1) * sum_g (c_g - r n_g)^2 / (sum_g n_g)^2 over its m groups (n_g images, c_g of them
// correct, r the recall); sqrt(sum_k var_k) / K over the classes present. With one image per group
// it is the binomial r (1 - r) / (n - 1); a class with a single group takes the binomial
// r (1 - r) / n. labels and group: one entry per image, probs N x K as for evaluate (the same
// argmax decision); NaN without images.
double balanced_accuracy_se_grouped(const std::vector<int>& labels, const std::vector<float>& probs,
                                    const std::vector<int64_t>& group, int num_classes);

// Group numbers for balanced_accuracy_se_grouped from each image's group name (HAM10000's
// lesion_id): 0, 1, ... in order of first appearance, equal names equal numbers.
std::vector<int64_t> group_numbers(const std::vector<std::string>& names);

// ROC AUC of scores for the positive class (Mann-Whitney U, ties counted as half); NaN without
// both positives and negatives.
double roc_auc(const std::vector<float>& scores, const std::vector<bool>& positive);

// A ROC curve: point i is (fpr[i], tpr[i]) for the decision "score >= threshold[i]" is positive.
struct RocCurve {
  std::vector<double> fpr, tpr, threshold;
  bool empty() const { return fpr.empty(); }
  size_t size() const { return fpr.size(); }
};

// The exact ROC curve: one point per distinct score (tied scores form one step, a diagonal
// segment), thresholds descending from +inf at (0,0) to the lowest score at (1,1). NaN scores rank
// below every other score. Its trapezoid area equals roc_auc. max_points > 0 thins the curve to at
// most that many points (see thin_roc_curve); 0 keeps every point. Empty without both positives and
// negatives.
RocCurve roc_curve(const std::vector<float>& scores, const std::vector<bool>& positive, int max_points = 0);

// At most max_points (>= 2) points of the curve, a subset of its points keeping both end points:
// first the points that lie on a straight segment between their neighbours are dropped (the shape
// is unchanged), then, while still too many, the point whose triangle with its neighbours is
// smallest (Visvalingam-Whyatt; the point whose removal changes the area under the curve least).
// A curve already short enough is returned as it is.
RocCurve thin_roc_curve(const RocCurve& curve, int max_points);

// Trapezoid area under a ROC curve; NaN for an empty curve.
double roc_curve_area(const RocCurve& curve);

// A decision threshold (score >= threshold is positive) with the sensitivity and specificity it
// achieves; NaN where undefined.
struct OperatingPoint {
  double threshold = NAN, sensitivity = NAN, specificity = NAN;
};

// Among the thresholds whose specificity is >= min_specificity, the one with the highest
// sensitivity (of those, the highest specificity). The threshold is a score value, or +inf for
// "nothing positive" when no score threshold meets the specificity. NaN fields without both
// positives and negatives.
OperatingPoint sensitivity_at_specificity(const std::vector<float>& scores, const std::vector<bool>& positive,
                                          double min_specificity);

}  // namespace dermis::metrics
