// Model registry: create a model by name (the names tools accept with --model).
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "models/classifier.h"

namespace dermis::models {

const std::vector<std::string>& model_names();  // resnet18_cbam, resnet34_cbam, resnet18, cbam_small
// Throws dermis::Error listing the valid names for an unknown one.
std::shared_ptr<Classifier> create(const std::string& name, int classes);

}  // namespace dermis::models
