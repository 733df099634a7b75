// Train/validation splits grouped by lesion and stratified by class, and class weights.
//
// HAM10000 has several images of many lesions (10015 images, 7470 lesions); an image-level split
// would put near-duplicates of one lesion on both sides and inflate validation scores. So whole
// lesions go to one side, chosen per class so that each class keeps about val_fraction of its
// images in validation (or, for k-fold cross-validation, about 1 / folds of them in each fold).
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "datasets/dataset.h"

namespace dermis::datasets {

struct Split {
  std::vector<size_t> train, val;  // indices into Dataset::samples, ascending
  std::vector<size_t> test;        // a held-out test set (with_test_set), else empty
};

// Every image lands on exactly one side; no lesion_id appears on both. A lesion belongs to the
// class of its first image (all its images share it in HAM10000). Per class, lesions are shuffled
// with dermis::Generator(seed) and moved to validation while that brings the class's validation
// image count closer to val_fraction * (its images). The same dataset and seed give the same split.
// val_fraction must be in (0, 1); an empty side is an error (too few images).
Split grouped_split(const Dataset& d, double val_fraction, uint64_t seed);

// Fold `fold` of a lesion-grouped, class-stratified k-fold cross-validation: validation is that
// fold, training the other folds - 1. Every lesion lands in exactly one fold (a lesion belongs to
// the class of its first image), so over fold = 0 .. folds - 1 every image is in validation exactly
// once and no lesion_id is ever on both sides. Per class, lesions are shuffled with
// dermis::Generator(seed) and each goes to the fold holding the fewest images of its class so far
// (ties: the fold with the fewest images overall, then the lowest index), so each fold gets about
// n_k / folds images of class k and a class's fold sizes differ by at most its largest lesion's
// image count. The assignment depends only on the dataset, folds and seed, not on `fold`.
// folds must be in [2, 20] and fold in [0, folds); an empty side is an error (too few lesions).
Split grouped_kfold(const Dataset& d, int folds, int fold, uint64_t seed);

// A test set held out before any other split: grouped_split(d, test_fraction, test_seed)'s
// validation side becomes `test` (lesion-grouped, class-stratified), and split_rest, called on the
// remaining images (e.g. a grouped_split or grouped_kfold of them), makes train and val, mapped back
// to indices of d. The test set depends only on d, test_fraction and test_seed, so runs that differ
// in split_rest's seed or fold share it; no lesion_id is on two sides.
Split with_test_set(const Dataset& d, double test_fraction, uint64_t test_seed,
                    const std::function<Split(const Dataset&)>& split_rest);

// The split as CSV text, one row per image in dataset order: "image_id,lesion_id,dx,split,path"
// with split "train", "val" or "test" (fields holding a comma or quote are quoted as RFC 4180). Runs write
// it as split.csv so that other programs can train and score on exactly the same images.
std::string split_csv(const Dataset& d, const Split& s);

// A fingerprint of the images at `indices`: "<count>:<16 hex digits>", the count and a 64-bit FNV-1a
// hash of their image_ids sorted (so independent of the order of the rows or of `indices`). Two
// sides with the same fingerprint hold the same images. Checkpoints record it for each side of
// their split, so that evaluate and train --resume can tell whether the metadata and images they
// are given split the same way as the run's.
std::string images_fingerprint(const Dataset& d, const std::vector<size_t>& indices);
// The same from the image_ids themselves (e.g. the rows of a split.csv), in any order.
std::string images_fingerprint(std::vector<std::string_view> image_ids);

// The samples at `indices`, in that order (e.g. subset(d, split.train)).
Dataset subset(const Dataset& d, const std::vector<size_t>& indices);

// Loss weights against class imbalance: w_k = (N / (K * n_k))^exponent, where n_k is the count of
// class k, N the total and K the number of classes present (n_k > 0). exponent 1 is inverse
// frequency ("balanced": sum_k n_k w_k = N, as scikit-learn), 0.5 its square root (milder), 0 all
// ones. A class with no images gets weight 0. exponent must be >= 0; some count must be positive.
std::vector<float> class_weights(const std::array<int64_t, kNumClasses>& counts, double exponent);
// The class prior of a training stream that draws classes with probability proportional to
// n_k^power (data::LoaderOptions::class_power): p_k = n_k^power / sum_j n_j^power over the classes
// present. Power 1 is the natural mix n_k / total, 0.5 square-root sampling, 0 uniform. A class
// without samples gets the prior half a sample would have (it is never drawn; this keeps log p_k
// finite). power must be in [0, 1]; some count must be positive.
std::vector<double> sampled_class_prior(const std::array<int64_t, kNumClasses>& counts, double power);
// Logit-adjustment offsets tau * log(p_k) (Menon et al. 2021), for CrossEntropyParams::logit_offsets,
// with p_k = sampled_class_prior(counts, power): the prior of the stream the loss sees.
std::vector<float> logit_offsets(const std::array<int64_t, kNumClasses>& counts, double tau, double power = 1);

}  // namespace dermis::datasets
