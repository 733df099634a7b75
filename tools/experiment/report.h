// report.html: a self-contained page (inline SVG and base64 images, no scripts, no network) with
// the loss and accuracy curves, the learning rate over time, the confusion matrix, per-class recall
// and precision, the clinical operating points with one-vs-rest ROC curves (when given), and a
// grid of validation images with their attention heatmaps and predictions.
#pragma once

#include <map>
#include <optional>
#include <string>
#include <vector>

#include "clinical.h"
#include "framework/metrics.h"

namespace dermis::experiment {

struct EpochRecord {
  int64_t epoch = 0;  // 1-based
  double train_loss = 0, lr = 0, img_s = 0, elapsed_s = 0;
  metrics::Report val;
};

struct ReportImage {
  std::string name;
  int label = 0;
  std::vector<float> probs;
  std::vector<uint8_t> jpeg;  // the overlay
  std::string method;
};

struct ReportInput {
  std::string title, command, config_json, checkpoint;
  std::vector<std::string> classes;
  std::vector<EpochRecord> epochs;
  std::vector<std::pair<double, double>> lr_trace;  // (fractional epoch, lr)
  // The handed-out checkpoint (`checkpoint`, train --select `selected`) on the validation set, with
  // its probabilities as trained and moved to the training set's class prior.
  metrics::Report final_val, final_val_train_prior;
  std::string selected = "best";
  int64_t best_epoch = 0;
  std::vector<ReportImage> images;
  std::optional<ClinicalReport> clinical;  // of the handed-out checkpoint on the validation set
  // With train --test-fraction: the held-out test set's figures of the handed-out checkpoint (as
  // trained, and with the training set's prior) and of each saved checkpoint by name.
  std::optional<metrics::Report> test, test_train_prior;
  std::map<std::string, metrics::Report> test_by_checkpoint;
};

void write_report(const std::string& path, const ReportInput& in);

std::string base64(const std::vector<uint8_t>& bytes);
std::string html_escape(const std::string& s);

}  // namespace dermis::experiment
