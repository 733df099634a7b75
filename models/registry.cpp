// Model registry.
#include "registry.h"

#include "cbam_small.h"
#include "resnet_cbam.h"

namespace dermis::models {

const std::vector<std::string>& model_names() {
  static const std::vector<std::string> n = {"resnet18_cbam", "resnet34_cbam", "resnet18", "cbam_small"};
  return n;
}

std::shared_ptr<Classifier> create(const std::string& name, int classes) {
  if (name == "resnet18_cbam") return resnet18_cbam(classes);
  if (name == "resnet34_cbam") return resnet34_cbam(classes);
  if (name == "resnet18") return resnet18(classes);
  if (name == "cbam_small") return cbam_small(classes);
  DERMIS_FAIL("unknown model '{}'; choose one of resnet18_cbam, resnet34_cbam, resnet18, cbam_small", name);
}

}  // namespace dermis::models
