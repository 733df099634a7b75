// Starting a model from published weights: a torchvision or timm state dict (torch.save .pth/.pt or
// .safetensors, io::load_weights_file) mapped onto a dermis model by its PyTorch-style names.
//
//   auto model = models::create("resnet18_cbam", 7);
//   auto r = models::load_pretrained(*model, io::load_weights_file("resnet18-f37072fd.pth"));
//   fmt::print("{}\n", r.summary());  // loaded 102 tensors, initialised 32 (...), replaced fc 1000->7, ...
//
// The rules, the same for every model:
//   - a tensor of the file with the model's name and shape is copied in;
//   - the classifier head (the model's last module with parameters, "fc") with another class count
//     keeps its initialisation ("replaced fc 1000->7");
//   - tensors of CBAM blocks the file lacks keep their initialisation (the CBAM blocks of
//     resnet18_cbam from a plain torchvision resnet18, as the CBAM paper's ImageNet-initialised
//     ResNets do); any other tensor the file lacks is an error (a resnet18 file for resnet34_cbam);
//   - BatchNorm's num_batches_tracked, and a dermis checkpoint's optimiser state and weight averages,
//     are ignored; a "module." prefix (DataParallel) is dropped;
//   - any other shape difference, a file tensor the model has no place for, or a file that matches
//     nothing is an error naming the tensor.
#pragma once

#include <string>
#include <vector>

#include "framework/io/safetensors.h"
#include "models/classifier.h"

namespace dermis::models {

struct PretrainedReport {
  std::string file;
  std::vector<std::string> loaded;       // model names copied from the file
  std::vector<std::string> initialised;  // model names the file lacks (kept as initialised)
  std::vector<std::string> replaced;     // head tensors with another shape (kept as initialised)
  std::string head;                      // the head module's name ("fc")
  int64_t file_classes = 0, classes = 0;  // the head's output count in the file and in the model
  int ignored = 0;                        // num_batches_tracked and the like
  // "loaded 102 tensors, initialised 48 not in the file (layer*.*.cbam), replaced fc 1000->7, ignored 20 (...)"
  std::string summary() const;
};

PretrainedReport load_pretrained(Classifier& model, const io::TensorFile& file);

}  // namespace dermis::models
