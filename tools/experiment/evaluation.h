// Running a classifier over a loader: class probabilities for every image (optionally averaged
// over flips: test-time augmentation), and the pieces shared by train, evaluate and predict.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "checkpoint.h"
#include "config.h"
#include "framework/data/loader.h"
#include "models/classifier.h"

namespace dermis::experiment {

struct Predictions {
  std::vector<int> labels;      // as given by the loader's items
  std::vector<int64_t> items;   // loader item index of each row
  std::vector<float> probs;     // rows x classes, softmax probabilities
  double loss = 0;              // mean cross-entropy against labels
};

// Eval mode, no graph. With tta, the probabilities are averaged over the identity, horizontal,
// vertical and both flips. progress(done, total) is called after each batch.
Predictions predict(models::Classifier& model, data::Loader& loader, bool tta,
                    const std::function<void(int64_t, int64_t)>& progress = {});

// One model of an evaluation: its checkpoint, the settings it was trained with, and the loader
// options that give it the pixels it was trained on (input size, normalisation, colour constancy).
struct Member {
  std::string path;
  std::string weights;  // which weights select_weights took: "model" or "ema"
  Checkpoint ck;
  TrainConfig cfg;
  // Deterministic eval transform, batch 64, one thread; JPEGs decoded as `decode` says.
  data::LoaderOptions eval_options(const data::DecodeOptions& decode = data::standard_decode()) const;
};

// The --decode flag of evaluate and predict: standard (data::standard_decode(): the pixels PIL,
// torchvision and ONNX pipelines see) or fast (training's decode: fast IDCT, nearest-neighbour
// chroma upsampling, DCT-domain downscaling).
data::DecodeOptions parse_decode(const std::string& flag);
inline constexpr const char* kDecodeFlagHelp =
    "standard | fast: standard decodes JPEGs as PIL/torchvision do (accurate IDCT, smooth chroma upsampling, full "
    "size; the same pixels as a Python or ONNX pipeline); fast as training does (fast IDCT, nearest-neighbour "
    "chroma, DCT-domain downscaling: quicker, probabilities up to about 0.01 apart)";

// The checkpoints of `list` (comma-separated paths: one, or several for a snapshot ensemble whose
// probabilities are averaged), each with --weights `weights`. The members must share the class list.
std::vector<Member> load_members(const std::string& list, const std::string& weights);

// The --prior of evaluate and predict: auto (the first checkpoint's recorded decision prior), none,
// train or uniform.
DecisionPrior resolve_prior(const std::string& flag, const Member& first);
inline constexpr const char* kPriorFlagHelp =
    "auto | none | train | uniform: the class prior of the decision (Bayes' rule moves the probabilities from the "
    "prior the model was trained towards to this one): none leaves them as trained (class-balanced training: a "
    "balanced prior), train uses the training set's class frequencies, uniform equal classes; auto: the "
    "checkpoint's train --decision-prior";

// Which image a row of predictions is, and the lesion it shows (HAM10000 has several images of many
// lesions, which are not independent draws).
struct ImageId {
  std::string image_id, lesion_id;
};

// The per-image predictions file (evaluate --predictions, train's val_predictions.csv): a header
// image_id,lesion_id,label,predicted,p_<class>... and one row per image, the class names of the
// true and the argmax class, the probabilities to 9 significant digits (they round-trip the float).
// tools/compare_predictions reads it.
std::string predictions_csv(const std::vector<ImageId>& ids, const std::vector<int>& labels,
                            const std::vector<float>& probs, const std::vector<std::string>& classes);

// Each image's lesion as a group number (metrics::group_numbers of the lesion ids), the grouping
// metrics::balanced_accuracy_se_grouped takes.
std::vector<int64_t> lesion_groups(const std::vector<ImageId>& ids);

// (N, 3, H, W) plain tensor flipped horizontally and/or vertically.
Tensor flip_images(const Tensor& x, bool horizontal, bool vertical);

// Row-wise softmax of (N, K) logits.
std::vector<float> softmax_rows(const Tensor& logits);

}  // namespace dermis::experiment
