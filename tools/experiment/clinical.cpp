// Clinical operating points and ROC curves (see clinical.h).
#include "clinical.h"

#include <algorithm>
#include <cctype>
#include <cstdint>

#include "framework/error.h"

namespace dermis::experiment {

namespace {
constexpr int kJsonCurvePoints = 101;

std::string lower(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

json::Value num(double x) { return std::isnan(x) ? json::Value(nullptr) : json::Value(x); }

json::Array numbers(const std::vector<double>& v) {
  json::Array a;
  a.reserve(v.size());
  for (double x : v) a.push_back(num(x));
  return a;
}

json::Object curve_json(const metrics::RocCurve& c) {
  const metrics::RocCurve t = c.size() > kJsonCurvePoints ? metrics::thin_roc_curve(c, kJsonCurvePoints) : c;
  return json::Object{{"fpr", numbers(t.fpr)}, {"tpr", numbers(t.tpr)}};
}

json::Object point_json(const metrics::OperatingPoint& p) {
  return json::Object{{"threshold", num(p.threshold)}, {"sensitivity", num(p.sensitivity)}, {"specificity", num(p.specificity)}};
}

std::string class_name(const std::vector<std::string>& classes, size_t k) {
  return k < classes.size() ? classes[k] : std::to_string(k);
}
}  // namespace

bool is_malignant_class(const std::string& name) {
  const std::string n = lower(name);
  return n == "mel" || n == "bcc" || n == "akiec";
}

ClinicalReport clinical_report(const std::vector<int>& labels, const std::vector<float>& probs,
                               const std::vector<std::string>& classes, int max_curve_points) {
  const int K = static_cast<int>(classes.size());
  const size_t n = labels.size();
  DERMIS_CHECK(K >= 2, "clinical_report: {} classes; need at least 2", K);
  DERMIS_CHECK(probs.size() == n * K, "clinical_report: {} probabilities for {} images x {} classes", probs.size(), n, K);
  DERMIS_CHECK(max_curve_points == 0 || max_curve_points >= 2,
               "clinical_report: max_curve_points is {}; pass 0 for every point or at least 2", max_curve_points);
  std::vector<bool> malignant(K);
  int mel = -1;
  ClinicalReport r;
  for (int k = 0; k < K; ++k) {
    malignant[k] = is_malignant_class(classes[k]);
    if (malignant[k]) r.malignant_classes.push_back(k);
    if (lower(classes[k]) == "mel") mel = k;
  }
  for (size_t i = 0; i < n; ++i)
    DERMIS_CHECK(labels[i] >= 0 && labels[i] < K, "clinical_report: label {} of image {} is outside [0, {})", labels[i], i, K);

  std::vector<float> score(n);
  std::vector<bool> pos(n);
  for (int k = 0; k < K; ++k) {
    for (size_t i = 0; i < n; ++i) score[i] = probs[i * K + k], pos[i] = labels[i] == k;
    r.roc.push_back(metrics::roc_curve(score, pos, max_curve_points));
    r.auc.push_back(metrics::roc_auc(score, pos));
  }

  const int M = static_cast<int>(r.malignant_classes.size());
  r.has_malignant = M > 0 && M < K;
  if (r.has_malignant) {
    int64_t mal = 0, ben = 0, mal_hit = 0, ben_hit = 0;
    for (size_t i = 0; i < n; ++i) {
      const float* p = probs.data() + i * K;
      const bool pred_malignant = malignant[static_cast<size_t>(metrics::decide(p, static_cast<size_t>(K)))];
      double s = 0;
      for (int k : r.malignant_classes) s += p[k];
      score[i] = static_cast<float>(s);
      pos[i] = malignant[labels[i]];
      if (pos[i]) ++mal, mal_hit += pred_malignant;
      else ++ben, ben_hit += !pred_malignant;
    }
    if (mal > 0) r.malignant_sensitivity = static_cast<double>(mal_hit) / mal;
    if (ben > 0) r.malignant_specificity = static_cast<double>(ben_hit) / ben;
    r.malignant_auc = metrics::roc_auc(score, pos);
    r.malignant_roc = metrics::roc_curve(score, pos, max_curve_points);
  }

  r.has_melanoma = mel >= 0;
  if (r.has_melanoma) {
    for (size_t i = 0; i < n; ++i) score[i] = probs[i * K + mel], pos[i] = labels[i] == mel;
    r.melanoma_auc = r.auc[mel];
    r.melanoma_at_spec80 = metrics::sensitivity_at_specificity(score, pos, 0.80);
    r.melanoma_at_spec90 = metrics::sensitivity_at_specificity(score, pos, 0.90);
  }
  return r;
}

json::Object ClinicalReport::to_json(const std::vector<std::string>& classes) const {
  json::Object o;
  json::Object per_class;
  for (size_t k = 0; k < roc.size(); ++k) {
    json::Object c = curve_json(roc[k]);
    c["auc"] = num(k < auc.size() ? auc[k] : NAN);
    per_class[class_name(classes, k)] = c;
  }
  o["roc"] = per_class;
  if (has_malignant) {
    json::Array names;
    for (int k : malignant_classes) names.push_back(class_name(classes, k));
    o["malignant_classes"] = names;
    o["malignant_vs_benign"] = json::Object{{"sensitivity", num(malignant_sensitivity)},
                                            {"specificity", num(malignant_specificity)},
                                            {"auc", num(malignant_auc)},
                                            {"roc", curve_json(malignant_roc)}};
  }
  if (has_melanoma)
    o["melanoma"] = json::Object{{"auc", num(melanoma_auc)},
                                 {"sensitivity_at_specificity_0.80", point_json(melanoma_at_spec80)},
                                 {"sensitivity_at_specificity_0.90", point_json(melanoma_at_spec90)}};
  return o;
}

}  // namespace dermis::experiment
