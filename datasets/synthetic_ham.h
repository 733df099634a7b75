// A synthetic stand-in for HAM10000, written to disk in exactly its layout, so the project runs and
// tests without the real data:
//   root/HAM10000_metadata.csv      lesion_id,image_id,dx,dx_type,age,sex,localization
//   root/HAM10000_images_part_1/    ISIC_xxxxxxx.jpg (the lower half of the image ids)
//   root/HAM10000_images_part_2/    ISIC_xxxxxxx.jpg (the upper half)
//   root/dermis_synthetic.txt       the generator's parameters (marks the folder as synthetic)
//
// The 7 classes differ in colour, shape, border and texture (e.g. mel: dark, irregular, blotches of
// black and blue-grey; nv: round, brown, regular network; vasc: red lacunae; df: small with a white
// centre), under class-independent nuisances: skin tone, brightness, hairs, dermatoscope vignetting,
// noise. Like HAM10000, several images may show one lesion (about 1.3 images per lesion): the same
// lesion shifted, rotated, rescaled and re-lit. The class mix is imbalanced like HAM10000 but milder
// (synthetic_class_mix(): nv 40%, ... df and vasc 6%). Output is a pure function of the options.
#pragma once

#include <array>
#include <cstdint>
#include <string>

#include "datasets/dataset.h"

namespace dermis::datasets {

struct SyntheticOptions {
  int64_t count = 2000;  // images (>= 7, so that every class appears)
  int width = 600;       // pixels, as HAM10000's originals; 200x150 or 96x72 generate much faster
  int height = 450;
  uint64_t seed = 0;
  int quality = 90;        // JPEG quality, 4:2:0 chroma subsampling
  bool overwrite = false;  // replace root if it holds an earlier synthetic dataset
};

// Writes the dataset into root + ".partial" and renames it to root when complete, so an interrupted
// run never leaves a folder that looks finished. root must not exist (or be an empty folder, or a
// synthetic dataset with overwrite = true); a folder that is not one of ours is never replaced.
// Images are drawn in parallel (OpenMP); the bytes written do not depend on the thread count.
void write_synthetic_ham10000(const std::string& root, const SyntheticOptions& o = {});

// True when root holds a complete synthetic dataset written with exactly these options (and this
// version of the generator), i.e. it can be reused instead of written again.
bool synthetic_ham10000_matches(const std::string& root, const SyntheticOptions& o);

// Share of images per class (index as class_names()); sums to 1.
const std::array<double, kNumClasses>& synthetic_class_mix();

}  // namespace dermis::datasets
