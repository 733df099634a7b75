// Class priors of the decision rule (see decision.h).
#include "decision.h"

#include <cmath>

#include "framework/error.h"

namespace dermis::experiment {

namespace {
std::vector<double> normalised(std::vector<double> v) {
  double s = 0;
  for (double x : v) s += x;
  DERMIS_CHECK(s > 0, "class prior: no class has images");
  for (double& x : v) x /= s;
  return v;
}
}  // namespace

std::vector<double> frequency_prior(const std::vector<int64_t>& counts) {
  std::vector<double> p(counts.size());
  for (size_t k = 0; k < counts.size(); ++k) p[k] = counts[k] > 0 ? static_cast<double>(counts[k]) : 0.5;
  return normalised(p);
}

std::vector<double> trained_class_prior(const std::vector<int64_t>& counts, double class_power,
                                        const std::vector<float>& class_weights, double tau) {
  DERMIS_CHECK(class_weights.empty() || class_weights.size() == counts.size(),
               "trained_class_prior: {} class weights for {} classes", class_weights.size(), counts.size());
  std::vector<double> s(counts.size());
  for (size_t k = 0; k < counts.size(); ++k)
    s[k] = std::pow(counts[k] > 0 ? static_cast<double>(counts[k]) : 0.5, class_power);
  s = normalised(s);
  std::vector<double> q(counts.size());
  for (size_t k = 0; k < counts.size(); ++k) {
    const double w = class_weights.empty() ? 1.0 : std::max(1e-12, static_cast<double>(class_weights[k]));
    q[k] = w * std::pow(s[k], 1.0 - tau);
  }
  return normalised(q);
}

std::vector<double> target_prior(const CheckpointInfo& info, DecisionPrior rule, const std::string& source) {
  if (rule == DecisionPrior::none) return {};
  DERMIS_CHECK(!info.train_prior.empty() && info.trained_prior.size() == info.classes.size(),
               "{}: the checkpoint records no class priors (it was written by an older dermis); use --prior none",
               source);
  if (rule == DecisionPrior::train) return info.train_prior;
  return std::vector<double>(info.classes.size(), 1.0 / static_cast<double>(info.classes.size()));
}

void shift_prior(std::vector<float>& probs, const std::vector<double>& from, const std::vector<double>& to) {
  if (to.empty()) return;
  const size_t K = to.size();
  DERMIS_CHECK(from.size() == K && K > 0 && probs.size() % K == 0, "shift_prior: {} probabilities, priors of {} and {}",
               probs.size(), from.size(), to.size());
  std::vector<double> ratio(K);
  for (size_t k = 0; k < K; ++k) ratio[k] = to[k] / from[k];
  for (size_t i = 0; i < probs.size(); i += K) {
    double s = 0;
    for (size_t k = 0; k < K; ++k) s += probs[i + k] * ratio[k];
    if (!(s > 0)) continue;  // every probability zero: nothing to move
    for (size_t k = 0; k < K; ++k) probs[i + k] = static_cast<float>(probs[i + k] * ratio[k] / s);
  }
}

}  // namespace dermis::experiment
