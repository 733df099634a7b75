// Mapping a published state dict onto a dermis model (see pretrained.h).
#include "models/pretrained.h"

#include <algorithm>
#include <cctype>
#include <map>
#include <set>

#include <fmt/format.h>

#include "framework/error.h"

namespace dermis::models {

namespace {

bool ends_with(const std::string& s, const std::string& t) {
  return s.size() >= t.size() && s.compare(s.size() - t.size(), t.size(), t) == 0;
}

// "layer1.0.cbam.channel.fc1.weight" -> "layer*.*.cbam": indices starred, cut after the first
// component that names a block's part, for a short summary of what the file did not have.
std::string pattern_of(const std::string& name) {
  std::string out, part;
  int kept = 0;
  auto flush = [&] {
    std::string p;
    for (char c : part) p += std::isdigit(static_cast<unsigned char>(c)) ? '*' : c;
    while (p.find("**") != std::string::npos) p.erase(p.find("**"), 1);
    out += (out.empty() ? "" : ".") + p;
    ++kept;
    part.clear();
  };
  for (char c : name) {
    if (c == '.') {
      flush();
      if (kept >= 3) return out;
    } else {
      part += c;
    }
  }
  flush();
  return out;
}

}  // namespace

std::string PretrainedReport::summary() const {
  std::string s = fmt::format("loaded {} tensors", loaded.size());
  if (!initialised.empty()) {
    std::vector<std::string> pats;
    for (auto& n : initialised)
      if (std::find(pats.begin(), pats.end(), pattern_of(n)) == pats.end()) pats.push_back(pattern_of(n));
    std::string list;
    for (size_t i = 0; i < pats.size() && i < 4; ++i) list += (i ? ", " : "") + pats[i];
    if (pats.size() > 4) list += fmt::format(", and {} more", pats.size() - 4);
    s += fmt::format(", initialised {} not in the file ({})", initialised.size(), list);
  }
  if (!replaced.empty()) s += fmt::format(", replaced {} {}->{}", head, file_classes, classes);
  if (ignored > 0) s += fmt::format(", ignored {} (num_batches_tracked, optimiser state)", ignored);
  return s;
}

PretrainedReport load_pretrained(Classifier& model, const io::TensorFile& file) {
  PretrainedReport r;
  r.file = file.path;
  r.classes = model.num_classes();
  std::vector<std::pair<std::string, Tensor>> state = model.state();
  std::map<std::string, size_t> index;
  for (size_t i = 0; i < state.size(); ++i) index[state[i].first] = i;
  const auto params = model.named_parameters();
  DERMIS_CHECK(!params.empty(), "load_pretrained: the model has no parameters");
  const std::string& last = params.back().first;
  r.head = last.substr(0, last.rfind('.'));

  bool all_module = !file.tensors.empty();
  for (auto& [n, t] : file.tensors) all_module = all_module && n.rfind("module.", 0) == 0;
  std::set<std::string> seen;
  std::vector<std::pair<std::string, Tensor>> load;
  for (auto& [raw, t] : file.tensors) {
    const std::string name = all_module ? raw.substr(7) : raw;
    if (ends_with(name, "num_batches_tracked") || name.rfind("optimizer.", 0) == 0 || name.rfind("ema.", 0) == 0 ||
        name.rfind("swa.", 0) == 0) {  // BatchNorm's step counter; a dermis checkpoint's optimiser state and averages
      ++r.ignored;
      continue;
    }
    const auto it = index.find(name);
    DERMIS_CHECK(it != index.end(),
                 "{}: tensor '{}' has no counterpart in the model (is the file for another architecture? the model's "
                 "tensors are named like '{}')",
                 file.path, raw, state.front().first);
    const Tensor& mine = state[it->second].second;
    seen.insert(name);
    if (t.shape() == mine.shape()) {
      load.emplace_back(name, t);
      r.loaded.push_back(name);
      continue;
    }
    const bool in_head = name.rfind(r.head + ".", 0) == 0;
    DERMIS_CHECK(in_head && !t.shape().empty() && !mine.shape().empty() && t.shape()[0] != mine.shape()[0] &&
                     Shape(t.shape().begin() + 1, t.shape().end()) == Shape(mine.shape().begin() + 1, mine.shape().end()),
                 "{}: tensor '{}' has shape {} in the file and {} in the model", file.path, raw, to_string(t.shape()),
                 to_string(mine.shape()));
    r.replaced.push_back(name);
    r.file_classes = t.shape()[0];
  }
  DERMIS_CHECK(!r.loaded.empty(), "{}: no tensor of the file fits the model", file.path);
  for (auto& [n, t] : state) {
    if (seen.count(n)) continue;
    const bool cbam = ("." + n).find(".cbam.") != std::string::npos;
    DERMIS_CHECK(cbam || n.rfind(r.head + ".", 0) == 0,
                 "{} has no tensor '{}', which the model needs (a file for a smaller architecture? only CBAM blocks and "
                 "the head may be missing)",
                 file.path, n);
    r.initialised.push_back(n);
  }
  model.load_state(load, /*strict=*/false);
  return r;
}

}  // namespace dermis::models
