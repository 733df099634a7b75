// softmax_cross_entropy: log-softmax + negative log-likelihood in one op, with optional class
// weights and label smoothing, matching PyTorch's F.cross_entropy(reduction='mean'):
//   loss = [ sum_i w[y_i] * ((1-e) * -log p_i[y_i] + (e/K) * sum_k (w[k]/w[y_i]) * -log p_i[k]) ] / sum_i w[y_i]
// i.e. (1-e) * weighted NLL mean + e * (sum_i sum_k w[k] * -log p_i[k] / K) / sum_i w[y_i].
// Backward: dL/dz_ik = (p_ik * S_i - q_ik) / sum_j w[y_j] with q the weighted target distribution
// and S_i its sum. Logit offsets b (one per class) are added to every row first: the loss is that of
// z + b, and since d(z + b)/dz = 1 the backward formula holds with p taken from z + b.
#include <cmath>
#include <vector>

#include "../ops.h"

namespace dermis {

Var softmax_cross_entropy(const Var& logits, const std::vector<int>& targets, const CrossEntropyParams& p) {
  DERMIS_CHECK(logits.defined() && logits.ndim() == 2, "softmax_cross_entropy: logits must be 2-D (N, K), got {}",
               logits.defined() ? to_string(logits.shape()) : "undefined");
  const int64_t N = logits.dim(0), K = logits.dim(1);
  DERMIS_CHECK(static_cast<int64_t>(targets.size()) == N, "softmax_cross_entropy: {} targets for {} rows of logits",
               targets.size(), N);
  DERMIS_CHECK(p.class_weights.empty() || static_cast<int64_t>(p.class_weights.size()) == K,
               "softmax_cross_entropy: {} class weights for {} classes", p.class_weights.size(), K);
  DERMIS_CHECK(std::isfinite(p.label_smoothing) && p.label_smoothing >= 0.f && p.label_smoothing < 1.f,
               "softmax_cross_entropy: label_smoothing must be in [0, 1), got {}", p.label_smoothing);
  for (int64_t i = 0; i < N; ++i)
    DERMIS_CHECK(targets[i] >= 0 && targets[i] < K, "softmax_cross_entropy: target {} of row {} is outside [0, {})",
                 targets[i], i, K);
  DERMIS_CHECK(p.logit_offsets.empty() || static_cast<int64_t>(p.logit_offsets.size()) == K,
               "softmax_cross_entropy: {} logit offsets for {} classes", p.logit_offsets.size(), K);
  for (float b : p.logit_offsets)
    DERMIS_CHECK(std::isfinite(b), "softmax_cross_entropy: logit offsets must be finite");
  for (float w : p.class_weights)
    DERMIS_CHECK(std::isfinite(w) && w >= 0.f, "softmax_cross_entropy: class weights must be finite and >= 0");

  std::vector<double> w(K, 1.0);
  for (int64_t k = 0; k < static_cast<int64_t>(p.class_weights.size()); ++k) w[k] = p.class_weights[k];
  const double e = p.label_smoothing;
  Tensor z = logits.value().to_dtype(DType::f32).plain();
  if (!p.logit_offsets.empty()) {
    z = z.clone();
    float* pz_mut = z.data();
    for (int64_t i = 0; i < N; ++i)
      for (int64_t k = 0; k < K; ++k) pz_mut[i * K + k] += p.logit_offsets[k];
  }
  const float* pz = z.data();
  Tensor prob = Tensor::empty({N, K});
  float* pp = prob.data();
  double total = 0, wsum = 0;
  for (int64_t i = 0; i < N; ++i) {
    const float* zi = pz + i * K;
    double m = zi[0];
    for (int64_t k = 1; k < K; ++k) m = std::max(m, static_cast<double>(zi[k]));
    double s = 0;
    for (int64_t k = 0; k < K; ++k) s += std::exp(zi[k] - m);
    // s >= 1: the largest logit contributes exp(0).
    // cppcheck-suppress invalidFunctionArg
    const double lse = m + std::log(s);
    double smooth = 0;
    for (int64_t k = 0; k < K; ++k) {
      const double lp = zi[k] - lse;
      pp[i * K + k] = static_cast<float>(std::exp(lp));
      smooth += w[k] * -lp;
    }
    const int y = targets[i];
    total += (1 - e) * w[y] * -(zi[y] - lse) + e / K * smooth;
    wsum += w[y];
  }
  DERMIS_CHECK(wsum > 0, "softmax_cross_entropy: the targets' class weights sum to zero");
  Tensor loss = Tensor::full({}, static_cast<float>(total / wsum));
  return autograd::make_result(loss, "softmax_cross_entropy", {logits}, [prob, targets, w, e, wsum, N, K](Node& self) {
    const double g = self.grad.item();
    Tensor dz = Tensor::empty({N, K});
    const float* pp = prob.data();
    float* pd = dz.data();
    double wk_sum = 0;
    for (int64_t k = 0; k < K; ++k) wk_sum += w[k];
    for (int64_t i = 0; i < N; ++i) {
      const int y = targets[i];
      // q_ik = (1-e) w[y] [k==y] + e/K w[k];  S_i = (1-e) w[y] + e/K sum_k w[k]
      const double S = (1 - e) * w[y] + e / K * wk_sum;
      for (int64_t k = 0; k < K; ++k) {
        const double q = (k == y ? (1 - e) * w[y] : 0.0) + e / K * w[k];
        pd[i * K + k] = static_cast<float>(g * (pp[i * K + k] * S - q) / wsum);
      }
    }
    autograd::accumulate(autograd::input(self, 0), dz);
  });
}

}  // namespace dermis
