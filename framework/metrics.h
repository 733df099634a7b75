// Classification metrics for imbalanced data: confusion matrix, accuracy, balanced accuracy (mean
// per-class recall, the ISIC 2018 Task 3 metric), per-class recall and precision, macro F1 and
// one-vs-rest ROC AUC per class.
#pragma once

#include <cstdint>
#include <vector>

#include "io/json.h"

namespace dermis::metrics {

struct Report {
  int64_t images = 0;
  double loss = 0;  // mean loss if the caller provided one, else 0
  double accuracy = 0, balanced_accuracy = 0, macro_f1 = 0, mean_auc = 0;
  std::vector<double> recall, precision, f1, auc;  // per class; NaN where undefined (no positives)
  std::vector<std::vector<int64_t>> confusion;     // [true][predicted]
  json::Object to_json(const std::vector<std::string>& class_names) const;
};

// labels: N true classes; probs: N x K row-major class probabilities (or scores).
// Undefined per-class values (a class absent from labels, or never predicted for precision) are
// NaN and left out of the means; balanced accuracy averages over the classes present.
Report evaluate(const std::vector<int>& labels, const std::vector<float>& probs, int num_classes);

// ROC AUC of scores for the positive class (Mann-Whitney U, ties counted as half); NaN without
// both positives and negatives.
double roc_auc(const std::vector<float>& scores, const std::vector<bool>& positive);

}  // namespace dermis::metrics
