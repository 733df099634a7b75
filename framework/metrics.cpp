// Classification metrics (see metrics.h).
#include "metrics.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <map>
#include <numeric>
#include <queue>
#include <tuple>

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

namespace {
// Cumulative counts at each distinct score, descending: decision "score >= threshold" gives tp
// true and fp false positives. Starts with (+inf, 0, 0). NaN scores count as -inf.
struct RocSteps {
  std::vector<double> threshold;
  std::vector<int64_t> tp, fp;
  int64_t P = 0, N = 0;
};

RocSteps roc_steps(const std::vector<float>& scores, const std::vector<bool>& positive, const char* what) {
  DERMIS_CHECK(scores.size() == positive.size(), "{}: {} scores for {} labels", what, scores.size(), positive.size());
  const size_t n = scores.size();
  auto key = [&](size_t i) {
    const double s = scores[i];
    return std::isnan(s) ? -std::numeric_limits<double>::infinity() : s;
  };
  std::vector<size_t> idx(n);
  std::iota(idx.begin(), idx.end(), 0);
  std::sort(idx.begin(), idx.end(), [&](size_t a, size_t b) { return key(a) > key(b); });
  RocSteps r;
  r.threshold.push_back(std::numeric_limits<double>::infinity());
  r.tp.push_back(0), r.fp.push_back(0);
  int64_t tp = 0, fp = 0;
  for (size_t i = 0; i < n;) {
    const double t = key(idx[i]);
    for (; i < n && key(idx[i]) == t; ++i) (positive[idx[i]] ? tp : fp)++;
    r.threshold.push_back(t);
    r.tp.push_back(tp), r.fp.push_back(fp);
  }
  r.P = tp, r.N = fp;
  return r;
}
}  // namespace

RocCurve roc_curve(const std::vector<float>& scores, const std::vector<bool>& positive, int max_points) {
  DERMIS_CHECK(max_points == 0 || max_points >= 2,
               "roc_curve: max_points is {}; pass 0 for every point or at least 2 (the two end points)", max_points);
  const RocSteps s = roc_steps(scores, positive, "roc_curve");
  RocCurve c;
  if (s.P == 0 || s.N == 0) return c;
  const size_t m = s.threshold.size();
  c.fpr.resize(m), c.tpr.resize(m), c.threshold = s.threshold;
  for (size_t i = 0; i < m; ++i)
    c.fpr[i] = static_cast<double>(s.fp[i]) / s.N, c.tpr[i] = static_cast<double>(s.tp[i]) / s.P;
  return max_points > 0 ? thin_roc_curve(c, max_points) : c;
}

namespace {
// Visvalingam-Whyatt: repeatedly drops the interior point whose triangle with its neighbours is
// smallest, which is the point whose removal changes the curve's trapezoid area least, until m
// points are left. pts are indices into c; the end points stay.
std::vector<size_t> simplify(const RocCurve& c, const std::vector<size_t>& pts, size_t m) {
  const size_t n = pts.size();
  std::vector<size_t> prev(n), next(n);
  std::vector<int> version(n, 0);
  for (size_t i = 0; i < n; ++i) prev[i] = i ? i - 1 : 0, next[i] = i + 1;
  auto area = [&](size_t i) {
    const size_t a = pts[prev[i]], b = pts[i], d = pts[next[i]];
    return std::abs((c.fpr[a] - c.fpr[b]) * (c.tpr[d] - c.tpr[b]) - (c.tpr[a] - c.tpr[b]) * (c.fpr[d] - c.fpr[b])) / 2;
  };
  using Entry = std::tuple<double, size_t, int>;  // (area, point, version)
  std::priority_queue<Entry, std::vector<Entry>, std::greater<>> heap;
  for (size_t i = 1; i + 1 < n; ++i) heap.emplace(area(i), i, 0);
  std::vector<bool> gone(n, false);
  for (size_t left = n; left > m && !heap.empty();) {
    const Entry e = heap.top();
    heap.pop();
    const size_t i = std::get<1>(e);
    if (gone[i] || std::get<2>(e) != version[i]) continue;
    gone[i] = true, --left;
    const size_t a = prev[i], b = next[i];
    next[a] = b, prev[b] = a;
    if (a > 0) heap.emplace(area(a), a, ++version[a]);
    if (b + 1 < n) heap.emplace(area(b), b, ++version[b]);
  }
  std::vector<size_t> out;
  for (size_t i = 0; i < n; ++i)
    if (!gone[i]) out.push_back(pts[i]);
  return out;
}
}  // namespace

RocCurve thin_roc_curve(const RocCurve& c, int max_points) {
  DERMIS_CHECK(max_points >= 2, "thin_roc_curve: max_points is {}; a curve keeps at least its two end points",
               max_points);
  DERMIS_CHECK(c.tpr.size() == c.fpr.size() && c.threshold.size() == c.fpr.size(),
               "thin_roc_curve: {} fpr, {} tpr and {} thresholds", c.fpr.size(), c.tpr.size(), c.threshold.size());
  const size_t n = c.size(), m = static_cast<size_t>(max_points);
  if (n <= m) return c;
  // Corners: the end points and every point where the direction changes (the sine of the turn
  // above rounding noise; real turns between count-valued points are far larger).
  std::vector<size_t> keep = {0};
  for (size_t i = 1; i + 1 < n; ++i) {
    const size_t a = keep.back();
    const double ux = c.fpr[i] - c.fpr[a], uy = c.tpr[i] - c.tpr[a], vx = c.fpr[i + 1] - c.fpr[i],
                 vy = c.tpr[i + 1] - c.tpr[i];
    if (std::abs(ux * vy - uy * vx) > 1e-12 * std::hypot(ux, uy) * std::hypot(vx, vy)) keep.push_back(i);
  }
  keep.push_back(n - 1);
  if (keep.size() > m) keep = simplify(c, keep, m);
  RocCurve o;
  for (size_t i : keep) o.fpr.push_back(c.fpr[i]), o.tpr.push_back(c.tpr[i]), o.threshold.push_back(c.threshold[i]);
  return o;
}

double roc_curve_area(const RocCurve& c) {
  if (c.empty()) return kNaN;
  double a = 0;
  for (size_t i = 1; i < c.size(); ++i) a += (c.fpr[i] - c.fpr[i - 1]) * (c.tpr[i] + c.tpr[i - 1]) / 2;
  return a;
}

OperatingPoint sensitivity_at_specificity(const std::vector<float>& scores, const std::vector<bool>& positive,
                                          double min_specificity) {
  DERMIS_CHECK(min_specificity >= 0 && min_specificity <= 1,
               "sensitivity_at_specificity: min_specificity is {}; it must be in [0, 1]", min_specificity);
  const RocSteps s = roc_steps(scores, positive, "sensitivity_at_specificity");
  OperatingPoint best;
  if (s.P == 0 || s.N == 0) return best;
  for (size_t i = 0; i < s.threshold.size(); ++i) {
    const double spec = static_cast<double>(s.N - s.fp[i]) / s.N, sens = static_cast<double>(s.tp[i]) / s.P;
    if (spec < min_specificity) continue;
    if (std::isnan(best.sensitivity) || sens > best.sensitivity || (sens == best.sensitivity && spec > best.specificity))
      best = {s.threshold[i], sens, spec};
  }
  return best;
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
    const int pred = decide(p, static_cast<size_t>(K));
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
  r.balanced_accuracy_se = balanced_accuracy_from_confusion(r.confusion).second;
  r.macro_f1 = mean_defined(r.f1);
  r.mean_auc = mean_defined(r.auc);
  return r;
}

std::pair<double, double> balanced_accuracy_from_confusion(const std::vector<std::vector<int64_t>>& confusion) {
  double sum = 0, var = 0;
  int present = 0;
  for (size_t k = 0; k < confusion.size(); ++k) {
    const int64_t actual = std::accumulate(confusion[k].begin(), confusion[k].end(), int64_t{0});
    if (actual == 0) continue;
    DERMIS_CHECK(k < confusion[k].size(), "metrics: the confusion matrix is not square (row {} has {} columns)", k,
                 confusion[k].size());
    const double r = static_cast<double>(confusion[k][k]) / static_cast<double>(actual);
    sum += r, var += r * (1 - r) / static_cast<double>(actual);
    ++present;
  }
  if (present == 0) return {kNaN, kNaN};
  return {sum / present, std::sqrt(var) / present};
}

std::vector<int64_t> group_numbers(const std::vector<std::string>& names) {
  std::map<std::string, int64_t> index;
  std::vector<int64_t> group;
  group.reserve(names.size());
  for (const std::string& name : names)
    group.push_back(index.try_emplace(name, static_cast<int64_t>(index.size())).first->second);
  return group;
}

double balanced_accuracy_se_grouped(const std::vector<int>& labels, const std::vector<float>& probs,
                                    const std::vector<int64_t>& group, int num_classes) {
  DERMIS_CHECK(num_classes > 0, "metrics: num_classes {} must be positive", num_classes);
  const size_t K = static_cast<size_t>(num_classes);
  DERMIS_CHECK(probs.size() == labels.size() * K && labels.size() == group.size(),
               "metrics: {} labels, {} scores and {} groups; give one label, {} scores and one group per image",
               labels.size(), probs.size(), group.size(), K);
  // Per class: each group's (images, correct).
  std::vector<std::map<int64_t, std::pair<int64_t, int64_t>>> of_class(K);
  for (size_t i = 0; i < labels.size(); ++i) {
    DERMIS_CHECK(labels[i] >= 0 && labels[i] < num_classes, "metrics: label {} outside [0, {})", labels[i], num_classes);
    const float* p = probs.data() + i * K;
    const int pred = decide(p, K);
    auto& g = of_class[static_cast<size_t>(labels[i])][group[i]];
    g.first += 1, g.second += pred == labels[i];
  }
  double var = 0;
  int present = 0;
  for (const auto& groups : of_class) {
    if (groups.empty()) continue;
    double n = 0, c = 0;
    for (const auto& [id, nc] : groups) n += static_cast<double>(nc.first), c += static_cast<double>(nc.second);
    const double r = c / n, m = static_cast<double>(groups.size());
    if (groups.size() == 1) {
      var += r * (1 - r) / n;
    } else {
      double ss = 0;
      for (const auto& [id, nc] : groups) {
        const double d = static_cast<double>(nc.second) - r * static_cast<double>(nc.first);
        ss += d * d;
      }
      var += m / (m - 1) * ss / (n * n);
    }
    ++present;
  }
  if (present == 0) return kNaN;
  return std::sqrt(var) / present;
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
                      {"balanced_accuracy_se", num(balanced_accuracy_se)},
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
