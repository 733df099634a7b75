// Clinical operating points of a skin-lesion classifier, the numbers dermatologists read first:
// malignant-vs-benign sensitivity and specificity at the argmax decision, melanoma sensitivity at
// 80% and 90% specificity, and one-vs-rest ROC curves per class.
#pragma once

#include <cmath>
#include <string>
#include <vector>

#include "framework/io/json.h"
#include "framework/metrics.h"

namespace dermis::experiment {

// Malignant classes of HAM10000 / ISIC 2018 by name (case-insensitive): mel, bcc, akiec. Every
// other class counts as benign.
bool is_malignant_class(const std::string& name);

struct ClinicalReport {
  bool has_malignant = false;  // the class list names at least one malignant and one benign class
  std::vector<int> malignant_classes;  // indices into the class list
  // Decision: the predicted (argmax) class is malignant. NaN without malignant (benign) images.
  double malignant_sensitivity = NAN, malignant_specificity = NAN;
  double malignant_auc = NAN;  // score: summed probability of the malignant classes
  metrics::RocCurve malignant_roc;
  bool has_melanoma = false;  // the class list names mel
  double melanoma_auc = NAN;
  metrics::OperatingPoint melanoma_at_spec80, melanoma_at_spec90;  // score: p(mel), one-vs-rest
  std::vector<metrics::RocCurve> roc;  // per class, one-vs-rest on its probability (empty where undefined)
  std::vector<double> auc;             // per class, one-vs-rest ROC AUC (NaN where undefined)
  // {"malignant_classes", "malignant_vs_benign", "melanoma", "roc"}; the malignant and melanoma
  // parts only where present. Curves are thinned to at most 101 points; NaN is written as null.
  json::Object to_json(const std::vector<std::string>& classes) const;
};

// labels N, probs N x K row-major, classes K names. Curves keep at most max_curve_points points
// (0: every point).
ClinicalReport clinical_report(const std::vector<int>& labels, const std::vector<float>& probs,
                               const std::vector<std::string>& classes, int max_curve_points = 101);

}  // namespace dermis::experiment
