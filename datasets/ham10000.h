// Readers for HAM10000 on disk and for the ISIC 2018 Task 3 ground-truth CSV.
//
// HAM10000 as users download it (Harvard Dataverse doi:10.7910/DVN/DBW86T, or Kaggle's "Skin Cancer
// MNIST: HAM10000"):
//   root/HAM10000_metadata.csv        lesion_id,image_id,dx,dx_type,age,sex,localization
//   root/HAM10000_images_part_1/      ISIC_xxxxxxx.jpg
//   root/HAM10000_images_part_2/      ISIC_xxxxxxx.jpg
// or the same CSV beside one flat image folder (e.g. root/images_200x150/). Only the columns
// lesion_id, image_id and dx are needed (any order; extra columns are ignored). The Dataverse's
// tab-separated HAM10000_metadata.tab is read too when there is no .csv.
//
// Every problem with the files is one dermis::Error naming the file and line and saying what to do.
#pragma once

#include <string>

#include "datasets/dataset.h"

namespace dermis::datasets {

struct ReadOptions {
  // Image folder: a name under root or an absolute path. Empty: HAM10000_images_part_1/ and
  // HAM10000_images_part_2/ under root (either spelling case), an error when neither exists.
  std::string images{};
  // A listed image whose file is missing (or empty): an error by default; with true, a warning on
  // stderr naming the files and their count, and the image is left out.
  bool skip_bad_images = false;
};

// Reads root/HAM10000_metadata.csv and finds each image as <folder>/<image_id>.jpg (.jpeg and
// upper-case extensions are accepted). Checks: required columns, field counts, known dx codes,
// unique image ids, one dx per lesion, image files present, at least one image.
Dataset read_ham10000(const std::string& root, const ReadOptions& o = {});

// Reads an ISIC 2018 Task 3 ground-truth CSV (image,MEL,NV,BCC,AKIEC,BKL,DF,VASC; one-hot values
// such as 1.0 / 0.0, exactly one 1 per row; columns in any order, no others) with images at
// images_dir/<image>.jpg. There are no lesion ids in this format: lesion_id = image id.
Dataset read_isic_ground_truth(const std::string& csv, const std::string& images_dir, bool skip_bad_images = false);

}  // namespace dermis::datasets
