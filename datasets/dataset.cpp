// Class names and simple statistics of a Dataset (see dataset.h).
#include "dataset.h"

#include <cctype>
#include <unordered_set>

namespace dermis::datasets {

const std::array<std::string, kNumClasses>& class_names() {
  static const std::array<std::string, kNumClasses> names = {"akiec", "bcc", "bkl", "df", "mel", "nv", "vasc"};
  return names;
}

int class_index(const std::string& dx) {
  std::string lower(dx);
  for (char& c : lower) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  const auto& names = class_names();
  for (int k = 0; k < kNumClasses; ++k)
    if (names[k] == lower) return k;
  return -1;
}

std::array<int64_t, kNumClasses> Dataset::class_counts() const {
  std::array<int64_t, kNumClasses> counts{};
  for (const Sample& s : samples)
    if (s.label >= 0 && s.label < kNumClasses) ++counts[s.label];
  return counts;
}

std::vector<data::Item> Dataset::items() const {
  std::vector<data::Item> v;
  v.reserve(samples.size());
  for (const Sample& s : samples) v.push_back({s.path, s.label});
  return v;
}

std::vector<data::Item> Dataset::items(const std::vector<size_t>& idx) const {
  std::vector<data::Item> v;
  v.reserve(idx.size());
  for (size_t i : idx) v.push_back({samples.at(i).path, samples.at(i).label});
  return v;
}

int64_t Dataset::num_lesions() const {
  std::unordered_set<std::string> ids;
  ids.reserve(samples.size());
  for (const Sample& s : samples) ids.insert(s.lesion_id);
  return static_cast<int64_t>(ids.size());
}

}  // namespace dermis::datasets
