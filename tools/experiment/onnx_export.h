// ONNX export of a classifier's inference graph, written with the ONNX project's protobuf classes
// (Debian libonnx-dev) and validated by its checker before anything is written.
//
// The graph is traced (framework/trace.h): one eval-mode forward of the model records the ops it
// runs, and each becomes standard ONNX ops (opset 13): Conv, BatchNormalization (or folded into
// the convolution before it), Relu, Sigmoid, Add, Mul, MaxPool, AveragePool, GlobalAveragePool,
// GlobalMaxPool, Gemm, Flatten, Reshape, Concat, ReduceMean, ReduceMax, Softmax. A CBAM block
// becomes its definition: GlobalAveragePool/GlobalMaxPool -> shared 1x1-Conv MLP -> Add ->
// Sigmoid -> Mul (channel gate), then ReduceMax/ReduceMean over channels -> Concat -> Conv ->
// BatchNormalization -> Sigmoid -> Mul (spatial gate). Any model built from ops.h exports,
// models of one's own included; an op without an ONNX form is an error naming it.
//
// Inputs and outputs: "input" (batch, 3, H, W) float, normalised as the metadata says, batch
// dynamic; "logits" (batch, K); "probabilities" (batch, K): softmax of the logits plus the
// decision prior's offsets log(target_k / trained_k), the probabilities tools/predict prints.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "models/classifier.h"

namespace dermis::experiment {

struct OnnxExportOptions {
  int64_t height = 0, width = 0;   // the input size the graph is traced (and fixed) at
  bool fold_batch_norm = true;     // BatchNormalization after a convolution folded into its weights
  std::vector<double> logit_offsets = {};  // added to the logits before "probabilities"' softmax
  std::string graph_name = "dermis";
  std::vector<std::pair<std::string, std::string>> metadata = {};  // metadata_props, in order
};

struct OnnxExportSummary {
  int64_t nodes = 0, initializers = 0, parameters = 0;  // parameters: initializer elements
  std::map<std::string, int> op_counts;                 // ONNX op type -> nodes
  int64_t batch_norms_folded = 0;
};

// The model's ONNX file as bytes (the model is put in eval mode). Errors name the op or tensor
// that cannot be exported.
std::string export_onnx(models::Classifier& model, const OnnxExportOptions& options,
                        OnnxExportSummary* summary = nullptr);

// Parses `bytes` as an ONNX model and runs the ONNX checker on it; throws dermis::Error naming
// `source` and the checker's complaint.
void check_onnx(const std::string& bytes, const std::string& source);

}  // namespace dermis::experiment
