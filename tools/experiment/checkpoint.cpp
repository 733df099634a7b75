// Checkpoint save/load (see checkpoint.h).
#include "checkpoint.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <string_view>

#include "models/registry.h"

namespace dermis::experiment {

namespace {
constexpr const char* kFormat = "dermis-checkpoint/1";
// Tensor-name prefixes of the optimizer state and of the weight average (see checkpoint.h).
constexpr std::string_view kOptimizerPrefix = "optimizer.", kAveragePrefix = "ema.", kSwaPrefix = "swa.";

bool has_prefix(const std::string& name, std::string_view prefix) { return name.starts_with(prefix); }

json::Value norm_json(const data::Normalization& n) {
  return json::Object{{"mean", json::Array{n.mean[0], n.mean[1], n.mean[2]}},
                      {"std", json::Array{n.std[0], n.std[1], n.std[2]}}};
}
}  // namespace

void save_checkpoint(const std::string& path, models::Classifier& model, const CheckpointInfo& info, optim::SGD* opt,
                     models::Classifier* average, models::Classifier* swa) {
  auto tensors = model.state();
  if (average)
    for (auto& [n, t] : average->state()) tensors.emplace_back(std::string(kAveragePrefix) + n, t);
  if (swa)
    for (auto& [n, t] : swa->state()) tensors.emplace_back(std::string(kSwaPrefix) + n, t);
  if (opt) {
    const auto named = model.named_parameters();
    auto& bufs = opt->momentum_buffers();
    DERMIS_CHECK(bufs.size() == named.size(), "internal: optimiser and model disagree on the parameter count");
    for (size_t i = 0; i < named.size(); ++i)
      if (bufs[i].defined()) tensors.emplace_back("optimizer.momentum." + named[i].first, bufs[i]);
  }
  json::Array classes;
  for (auto& c : info.classes) classes.push_back(c);
  const auto& s = info.schedule;
  std::map<std::string, std::string> meta{
      {"format", kFormat},
      {"model", info.model},
      {"classes", json::dump(classes)},
      {"input_size", fmt::format("{}x{}", info.height, info.width)},
      {"normalization", json::dump(norm_json(info.norm))},
      {"config", json::dump(info.config)},
      {"epoch", std::to_string(info.epoch)},
      {"step", std::to_string(info.step)},
      {"elapsed_seconds", fmt::format("{:.3f}", info.elapsed_seconds)},
      {"best_balanced_accuracy", fmt::format("{:.6f}", info.best_metric)},
      {"best_epoch", std::to_string(info.best_epoch)},
      {"schedule", json::dump(json::Object{{"plateau_lr", s.plateau_lr},
                                           {"best", s.best},
                                           {"bad_epochs", s.bad_epochs},
                                           {"cooldown_left", s.cooldown_left},
                                           {"has_best", s.has_best}})},
      {"epoch_progress",
       fmt::format("{{\"batches\":{},\"images\":{},\"loss_sum\":{},\"position\":{},\"early\":{}}}",
                   info.epoch_batches, info.epoch_images, json::dump(info.epoch_loss_sum), info.epoch_position,
                   info.epoch_early)},
      {"rng", fmt::format("{{\"seed\":\"{}\",\"counter\":\"{}\"}}", info.rng_seed, info.rng_counter)},
      {"swa_count", std::to_string(info.swa_count)},
  };
  if (!info.train_prior.empty()) {
    json::Array tp, mp;
    for (double v : info.train_prior) tp.push_back(v);
    for (double v : info.trained_prior) mp.push_back(v);
    meta["priors"] = json::dump(json::Object{{"train", tp}, {"trained", mp}});
  }
  meta["resumable"] = opt ? "true" : "false";
  if (!info.split.empty()) {
    json::Object sides;
    for (auto& [side, fp] : info.split) sides[side] = fp;
    meta["split"] = json::dump(sides);
  }
  io::save_safetensors(path, tensors, meta);
}

Checkpoint load_checkpoint(const std::string& path) {
  Checkpoint ck;
  ck.file = io::load_safetensors(path);
  const auto& m = ck.file.metadata;
  auto get = [&](const char* k) -> const std::string& {
    auto it = m.find(k);
    DERMIS_CHECK(it != m.end(), "{}: not a dermis checkpoint (metadata '{}' is missing)", path, k);
    return it->second;
  };
  DERMIS_CHECK(m.count("format") && m.at("format") == kFormat,
               "{}: not a dermis checkpoint (format is '{}', expected '{}')", path,
               m.count("format") ? m.at("format") : "missing", kFormat);
  CheckpointInfo& in = ck.info;
  try {
    in.model = get("model");
    const json::Value classes = json::parse(get("classes"), "classes");  // keep alive while iterating
    for (auto& c : classes.array("classes")) in.classes.push_back(c.string("class"));
    const std::string& size = get("input_size");
    DERMIS_CHECK(std::sscanf(size.c_str(), "%ldx%ld", &in.height, &in.width) == 2 && in.height > 0 && in.width > 0,
                 "bad input_size '{}'", size);
    const json::Value n = json::parse(get("normalization"), "normalization");
    for (int c = 0; c < 3; ++c) {
      in.norm.mean[c] = static_cast<float>(n.at("mean").array("mean").at(c).number("mean"));
      in.norm.std[c] = static_cast<float>(n.at("std").array("std").at(c).number("std"));
    }
    in.config = json::parse(get("config"), "config");
    in.epoch = std::stoll(get("epoch"));
    in.step = std::stoll(get("step"));
    in.elapsed_seconds = std::stod(get("elapsed_seconds"));
    in.best_metric = std::stod(get("best_balanced_accuracy"));
    in.best_epoch = std::stoll(get("best_epoch"));
    const json::Value s = json::parse(get("schedule"), "schedule");
    in.schedule.plateau_lr = s.at("plateau_lr").number();
    in.schedule.best = s.at("best").number();
    in.schedule.bad_epochs = static_cast<int>(s.at("bad_epochs").integer());
    in.schedule.cooldown_left = static_cast<int>(s.at("cooldown_left").integer());
    in.schedule.has_best = s.at("has_best").boolean();
    if (m.count("epoch_progress")) {  // absent in checkpoints written at epoch ends by older versions
      const json::Value p = json::parse(m.at("epoch_progress"), "epoch_progress");
      in.epoch_batches = p.at("batches").integer();
      in.epoch_images = p.at("images").integer();
      in.epoch_loss_sum = p.at("loss_sum").number();
      in.epoch_position = p.at("position").integer();
      if (auto* e = p.find("early")) in.epoch_early = e->boolean("early");  // absent before --early-size
      DERMIS_CHECK(in.epoch_batches >= 0 && in.epoch_images >= 0 && in.epoch_position >= 0, "bad epoch_progress");
    }
    if (m.count("swa_count")) in.swa_count = std::stoll(m.at("swa_count"));  // absent before --swa-start
    if (m.count("priors")) {  // absent in older checkpoints
      const json::Value p = json::parse(m.at("priors"), "priors");
      for (auto& v : p.at("train").array("train")) in.train_prior.push_back(v.number("train prior"));
      for (auto& v : p.at("trained").array("trained")) in.trained_prior.push_back(v.number("trained prior"));
    }
    if (m.count("resumable")) {  // absent in older checkpoints
      DERMIS_CHECK(m.at("resumable") == "true" || m.at("resumable") == "false", "bad resumable '{}'", m.at("resumable"));
      in.resumable = m.at("resumable") == "true";
    }
    if (m.count("split")) {  // absent in older checkpoints
      const json::Value sp = json::parse(m.at("split"), "split");
      for (const char* side : {"train", "val", "test"})
        if (auto* v = sp.find(side)) in.split[side] = v->string(side);
    }
    const json::Value r = json::parse(get("rng"), "rng");
    in.rng_seed = std::stoull(r.at("seed").string());
    in.rng_counter = std::stoull(r.at("counter").string());
  } catch (const Error& e) {
    DERMIS_FAIL("{}: damaged checkpoint metadata: {}", path, e.what());
  } catch (const std::exception& e) {
    DERMIS_FAIL("{}: damaged checkpoint metadata ({})", path, e.what());
  }
  DERMIS_CHECK(in.classes.size() >= 2, "{}: the checkpoint lists {} classes", path, in.classes.size());
  for (const auto* prior : {&in.train_prior, &in.trained_prior}) {
    bool ok = prior->empty() || prior->size() == in.classes.size();
    for (double v : *prior) ok = ok && std::isfinite(v) && v > 0 && v <= 1;
    DERMIS_CHECK(ok, "{}: damaged checkpoint metadata: the class priors are not {} probabilities", path,
                 in.classes.size());
  }
  try {
    ck.model = models::create(in.model, static_cast<int>(in.classes.size()));
  } catch (const Error& e) {
    DERMIS_FAIL("{}: {} (a checkpoint of another dermis version, or damaged)", path, e.what());
  }
  std::vector<std::pair<std::string, Tensor>> weights;
  for (auto& [n, t] : ck.file.tensors)
    if (!has_prefix(n, kOptimizerPrefix) && !has_prefix(n, kAveragePrefix) && !has_prefix(n, kSwaPrefix))
      weights.emplace_back(n, t);
  // A run that diverged, or a damaged file, would otherwise give NaN probabilities and a class.
  for (auto& [n, t] : ck.file.tensors) {
    if (t.dtype() != DType::f32) continue;
    const auto v = t.values();
    const auto bad = std::find_if(v.begin(), v.end(), [](float x) { return !std::isfinite(x); });
    DERMIS_CHECK(bad == v.end(),
                 "{}: tensor {} holds a non-finite value ({} at element {}): the checkpoint is damaged or its run "
                 "diverged; use an earlier checkpoint of the run",
                 path, n, *bad, bad - v.begin());
  }
  try {
    ck.model->load_state(weights);
  } catch (const Error& e) {
    DERMIS_FAIL("{}: the weights do not fit a {} with {} classes: {}", path, in.model, in.classes.size(), e.what());
  }
  return ck;
}

namespace {
// The tensors under `prefix` loaded into `m`; false if there are none. `what` names them in errors.
bool load_prefixed(const Checkpoint& ck, std::string_view prefix, models::Classifier& m, const char* what) {
  std::vector<std::pair<std::string, Tensor>> w;
  for (auto& [n, t] : ck.file.tensors)
    if (has_prefix(n, prefix)) w.emplace_back(n.substr(prefix.size()), t);
  if (w.empty()) return false;
  try {
    m.load_state(w);
  } catch (const Error& e) {
    DERMIS_FAIL("{}: the {} does not fit a {}: {}", ck.file.path, what, ck.info.model, e.what());
  }
  return true;
}
}  // namespace

bool load_weight_average(const Checkpoint& ck, models::Classifier& average) {
  return load_prefixed(ck, kAveragePrefix, average, "weight average");
}

bool load_swa_average(const Checkpoint& ck, models::Classifier& swa) {
  return load_prefixed(ck, kSwaPrefix, swa, "stochastic weight average");
}

std::string select_weights(Checkpoint& ck, const std::string& which) {
  DERMIS_CHECK(which == "auto" || which == "model" || which == "ema",
               "flag --weights: expected auto, model or ema, got '{}'", which);
  if (which == "model") return "model";
  auto average = models::create(ck.info.model, static_cast<int>(ck.info.classes.size()));
  if (!load_weight_average(ck, *average)) {
    DERMIS_CHECK(which == "auto",
                 "{}: --weights ema, but the checkpoint has no weight average (only the last.safetensors of a "
                 "train --ema run has one; a best.safetensors of such a run holds it as its main weights)",
                 ck.file.path);
    return "model";
  }
  ck.model = average;
  return "ema";
}

void load_optimizer_state(const Checkpoint& ck, models::Classifier& model, optim::SGD& opt) {
  const auto named = model.named_parameters();
  auto& bufs = opt.momentum_buffers();
  for (size_t i = 0; i < named.size(); ++i) {
    const Tensor* t = ck.file.find("optimizer.momentum." + named[i].first);
    if (!t) continue;
    DERMIS_CHECK(t->shape() == named[i].second.shape(), "{}: momentum buffer of {} has shape {} (expected {})",
                 ck.file.path, named[i].first, to_string(t->shape()), to_string(named[i].second.shape()));
    bufs[i] = t->clone();
  }
}

}  // namespace dermis::experiment
