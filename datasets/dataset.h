// A labelled image dataset as read from disk: HAM10000 (metadata CSV + JPEG folders), the ISIC 2018
// Task 3 ground-truth CSV, or the synthetic generator's output.
//
// Classes, in this fixed order (index = label): akiec, bcc, bkl, df, mel, nv, vasc (HAM10000's dx
// codes, alphabetical). ISIC 2018 columns MEL, NV, BCC, AKIEC, BKL, DF, VASC map onto them.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "framework/data/loader.h"

namespace dermis::datasets {

constexpr int kNumClasses = 7;
const std::array<std::string, kNumClasses>& class_names();  // {"akiec", "bcc", ..., "vasc"}
int class_index(const std::string& dx);                      // -1 if unknown

struct Sample {
  std::string image_id;   // ISIC_0024306
  std::string lesion_id;  // HAM_0000118 (the image id when the source has no lesion ids)
  std::string path;       // the JPEG file
  int label = -1;         // index into class_names()
};

struct Dataset {
  std::string root;  // where it was read from, for messages
  std::vector<Sample> samples;
  std::array<int64_t, kNumClasses> class_counts() const;
  int64_t num_lesions() const;
  // The loader items (path, label) of every sample, or of the samples `idx` (e.g. a split's side).
  std::vector<data::Item> items() const;
  std::vector<data::Item> items(const std::vector<size_t>& idx) const;
};

}  // namespace dermis::datasets
