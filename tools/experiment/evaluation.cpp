// Prediction over a loader (see evaluation.h).
#include "evaluation.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>

#include "framework/metrics.h"
#include "framework/ops.h"
#include "models/classifier.h"

namespace dermis::experiment {

data::DecodeOptions parse_decode(const std::string& flag) {
  if (flag == "standard") return data::standard_decode();
  DERMIS_CHECK(flag == "fast", "flag --decode: expected standard or fast, got '{}'", flag);
  return data::DecodeOptions{};
}

data::LoaderOptions Member::eval_options(const data::DecodeOptions& decode) const {
  data::LoaderOptions o;
  o.decode = decode;
  o.train = false, o.shuffle = false, o.batch = 64, o.threads = 1, o.height = ck.info.height, o.width = ck.info.width;
  o.norm = ck.info.norm, o.num_classes = static_cast<int>(ck.info.classes.size());
  o.color_constancy = static_cast<float>(cfg.color_constancy);
  return o;
}

std::vector<Member> load_members(const std::string& list, const std::string& weights) {
  std::vector<Member> out;
  size_t start = 0;
  while (start <= list.size()) {
    const size_t comma = list.find(',', start);
    const std::string path = list.substr(start, comma == std::string::npos ? std::string::npos : comma - start);
    DERMIS_CHECK(!path.empty(), "flag --checkpoint: empty path in '{}' (give FILE or FILE1,FILE2,...)", list);
    Member m;
    m.path = path;
    m.ck = load_checkpoint(path);
    m.weights = select_weights(m.ck, weights);
    m.cfg = TrainConfig::from_json(m.ck.info.config, path);
    if (!out.empty())
      DERMIS_CHECK(m.ck.info.classes == out.front().ck.info.classes,
                   "flag --checkpoint: {} and {} classify different class lists; an ensemble needs the same classes",
                   out.front().path, path);
    out.push_back(std::move(m));
    if (comma == std::string::npos) break;
    start = comma + 1;
  }
  return out;
}

DecisionPrior resolve_prior(const std::string& flag, const Member& first) {
  if (flag == "auto") return first.cfg.decision_prior;
  if (const auto p = find_choice<DecisionPrior>(flag)) return *p;
  throw Error(fmt::format("flag --prior: expected auto, {}, got '{}'", choice_names<DecisionPrior>(), flag));
}

Tensor flip_images(const Tensor& xin, bool h, bool v) {
  Tensor x = xin.plain();
  Tensor y = Tensor::empty(x.shape());
  const int64_t NC = x.dim(0) * x.dim(1), H = x.dim(2), W = x.dim(3);
  const float* px = x.data();
  float* py = y.data();
#pragma omp parallel for schedule(static)
  for (int64_t p = 0; p < NC; ++p)
    for (int64_t r = 0; r < H; ++r) {
      const float* src = px + (p * H + (v ? H - 1 - r : r)) * W;
      float* dst = py + (p * H + r) * W;
      for (int64_t c = 0; c < W; ++c) dst[c] = src[h ? W - 1 - c : c];
    }
  return y;
}

std::vector<float> softmax_rows(const Tensor& logits) {
  Tensor z = logits.plain();
  const int64_t N = z.dim(0), K = z.dim(1);
  std::vector<float> p(N * K);
  for (int64_t i = 0; i < N; ++i) {
    const float* zi = z.data() + i * K;
    float m = zi[0];
    for (int64_t k = 1; k < K; ++k) m = std::max(m, zi[k]);
    double s = 0;
    for (int64_t k = 0; k < K; ++k) s += std::exp(static_cast<double>(zi[k]) - m);
    for (int64_t k = 0; k < K; ++k) p[i * K + k] = static_cast<float>(std::exp(static_cast<double>(zi[k]) - m) / s);
  }
  return p;
}

Predictions predict(models::Classifier& model, data::Loader& loader, bool tta,
                    const std::function<void(int64_t, int64_t)>& progress) {
  model.freeze();  // eval, with the weights prepared for inference once
  NoGrad ng;
  Predictions out;
  const int64_t K = model.num_classes(), total = loader.size();
  double loss_sum = 0;
  auto ep = loader.epoch(0);
  while (auto b = ep.next()) {
    const int64_t n = b->images.dim(0);
    std::vector<float> p = softmax_rows(model.forward(Var(b->images)).value());
    if (tta) {
      for (auto [h, v] : {std::pair{true, false}, {false, true}, {true, true}}) {
        auto q = softmax_rows(model.forward(Var(flip_images(b->images, h, v))).value());
        for (size_t i = 0; i < p.size(); ++i) p[i] += q[i];
      }
      for (auto& x : p) x /= 4;
    }
    for (int64_t i = 0; i < n; ++i) loss_sum -= std::log(std::max(p[i * K + b->labels[i]], 1e-12f));
    out.probs.insert(out.probs.end(), p.begin(), p.end());
    out.labels.insert(out.labels.end(), b->labels.begin(), b->labels.end());
    out.items.insert(out.items.end(), b->items.begin(), b->items.end());
    if (progress) progress(static_cast<int64_t>(out.labels.size()), total);
  }
  out.loss = out.labels.empty() ? 0 : loss_sum / static_cast<double>(out.labels.size());
  return out;
}

std::string predictions_csv(const std::vector<ImageId>& ids, const std::vector<int>& labels,
                            const std::vector<float>& probs, const std::vector<std::string>& classes) {
  const size_t K = classes.size();
  DERMIS_CHECK(ids.size() == labels.size() && probs.size() == labels.size() * K,
               "predictions_csv: {} images, {} labels and {} probabilities for {} classes", ids.size(), labels.size(),
               probs.size(), K);
  std::string csv = "image_id,lesion_id,label,predicted";
  for (const auto& c : classes) csv += ",p_" + c;
  csv += '\n';
  for (size_t i = 0; i < labels.size(); ++i) {
    const float* p = &probs[i * K];
    const size_t top = static_cast<size_t>(metrics::decide(p, K));
    csv += fmt::format("{},{},{},{}", ids[i].image_id, ids[i].lesion_id, classes.at(static_cast<size_t>(labels[i])),
                       classes[top]);
    for (size_t k = 0; k < K; ++k) csv += fmt::format(",{:.9g}", p[k]);
    csv += '\n';
  }
  return csv;
}

std::vector<int64_t> lesion_groups(const std::vector<ImageId>& ids) {
  std::vector<std::string> lesions;
  lesions.reserve(ids.size());
  for (const ImageId& id : ids) lesions.push_back(id.lesion_id);
  return metrics::group_numbers(lesions);
}

}  // namespace dermis::experiment
