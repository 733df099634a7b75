// Classification metrics (see metrics.h).
#include "metrics.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>

#include "error.h"

namespace dermis::metrics {

namespace {
constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();
double mean_defined(const std::vector<double>& v) {
  double s = 0;
  int n = 0;
  for (double x : v)
    if (!std::isnan(x)) s += x, ++n;
  return n ? s / n : kNaN;
}
}  // namespace

double roc_auc(const std::vector<float>& scores, const std::vector<bool>& positive) {
  DERMIS_CHECK(scores.size() == positive.size(), "roc_auc: {} scores for {} labels", scores.size(), positive.size());
  const size_t n = scores.size();
  std::vector<size_t> idx(n);
  std::iota(idx.begin(), idx.end(), 0);
  std::sort(idx.begin(), idx.end(), [&](size_t a, size_t b) { return scores[a] < scores[b]; });
  // Average ranks over ties, then U = sum of positive ranks - P(P+1)/2.
  double rank_sum = 0;
  int64_t P = 0;
  for (size_t i = 0; i < n;) {
    size_t j = i;
    while (j + 1 < n && scores[idx[j + 1]] == scores[idx[i]]) ++j;
    const double r = (static_cast<double>(i) + j) / 2 + 1;
    for (size_t k = i; k <= j; ++k)
      if (positive[idx[k]]) rank_sum += r, ++P;
    i = j + 1;
  }
  const int64_t N = static_cast<int64_t>(n) - P;
  if (P == 0 || N == 0) return kNaN;
  return (rank_sum - static_cast<double>(P) * (P + 1) / 2) / (static_cast<double>(P) * N);
}

Report evaluate(const std::vector<int>& labels, const std::vector<float>& probs, int K) {
  const int64_t n = static_cast<int64_t>(labels.size());
  DERMIS_CHECK(K >= 2, "metrics: need at least 2 classes");
  DERMIS_CHECK(static_cast<int64_t>(probs.size()) == n * K, "metrics: {} scores for {} images x {} classes",
               probs.size(), n, K);
  Report r;
  r.images = n;
  r.confusion.assign(K, std::vector<int64_t>(K, 0));
  int64_t correct = 0;
  for (int64_t i = 0; i < n; ++i) {
    DERMIS_CHECK(labels[i] >= 0 && labels[i] < K, "metrics: label {} of image {} is outside [0, {})", labels[i], i, K);
    const float* p = probs.data() + i * K;
    const int pred = static_cast<int>(std::max_element(p, p + K) - p);
    r.confusion[labels[i]][pred]++;
    correct += pred == labels[i];
  }
  r.accuracy = n ? static_cast<double>(correct) / n : kNaN;
  r.recall.assign(K, kNaN), r.precision.assign(K, kNaN), r.f1.assign(K, kNaN), r.auc.assign(K, kNaN);
  for (int k = 0; k < K; ++k) {
    int64_t tp = r.confusion[k][k], actual = 0, predicted = 0;
    for (int j = 0; j < K; ++j) actual += r.confusion[k][j], predicted += r.confusion[j][k];
    if (actual > 0) r.recall[k] = static_cast<double>(tp) / actual;
    if (predicted > 0) r.precision[k] = static_cast<double>(tp) / predicted;
    if (actual > 0) {
      const double p = std::isnan(r.precision[k]) ? 0.0 : r.precision[k], q = r.recall[k];
      r.f1[k] = p + q > 0 ? 2 * p * q / (p + q) : 0.0;
    }
    std::vector<float> s(n);
    std::vector<bool> pos(n);
    for (int64_t i = 0; i < n; ++i) s[i] = probs[i * K + k], pos[i] = labels[i] == k;
    r.auc[k] = roc_auc(s, pos);
  }
  r.balanced_accuracy = mean_defined(r.recall);
  r.macro_f1 = mean_defined(r.f1);
  r.mean_auc = mean_defined(r.auc);
  return r;
}

json::Object Report::to_json(const std::vector<std::string>& names) const {
  auto num = [](double x) { return std::isnan(x) ? json::Value(nullptr) : json::Value(x); };
  auto per_class = [&](const std::vector<double>& v) {
    json::Object o;
    for (size_t k = 0; k < v.size(); ++k) o[k < names.size() ? names[k] : std::to_string(k)] = num(v[k]);
    return o;
  };
  json::Array cm;
  for (auto& row : confusion) {
    json::Array r;
    for (auto c : row) r.push_back(c);
    cm.push_back(r);
  }
  json::Array cls;
  for (auto& nme : names) cls.push_back(nme);
  return json::Object{{"images", images},
                      {"loss", num(loss)},
                      {"accuracy", num(accuracy)},
                      {"balanced_accuracy", num(balanced_accuracy)},
                      {"macro_f1", num(macro_f1)},
                      {"mean_auc", num(mean_auc)},
                      {"per_class_recall", per_class(recall)},
                      {"per_class_precision", per_class(precision)},
                      {"per_class_f1", per_class(f1)},
                      {"auc", per_class(auc)},
                      {"classes", cls},
                      {"confusion_matrix", cm}};
}

}  // namespace dermis::metrics
