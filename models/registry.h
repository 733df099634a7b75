// The model registry: every name tools accept with --model, and the factory that builds it. It is
// open: a program registers its own models the same way dermis's do, and then train, evaluate,
// predict, checkpoint loading, --help and every error message know them.
//
//   static const dermis::models::ModelRegistration reg{
//       "mobilenet_cbam", [](int classes) { return std::make_shared<MobileNetCbam>(classes); },
//       "a depthwise-separable CNN with CBAM"};
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "models/classifier.h"

namespace dermis::models {

using ModelFactory = std::function<std::shared_ptr<Classifier>(int classes)>;

// Adds a model; the name must be new and made of letters, digits, '_', '-' and '.'.
void register_model(const std::string& name, ModelFactory factory, const std::string& description = "");

// Registers at static-initialisation time (in the program's own object files).
struct ModelRegistration {
  ModelRegistration(const std::string& name, ModelFactory factory, const std::string& description = "") {
    register_model(name, std::move(factory), description);
  }
};

// All names, dermis's own first (resnet18_cbam, resnet34_cbam, resnet18, cbam_small), then in
// registration order.
std::vector<std::string> model_names();
std::string model_choices();  // "resnet18_cbam | resnet34_cbam | ...", for --help
std::string model_description(const std::string& name);  // "" for none
bool has_model(const std::string& name);
// "unknown model 'x'; choose one of a, b, c" (the names registered now).
std::string unknown_model_message(const std::string& name);
// Throws dermis::Error with unknown_model_message for an unknown name.
std::shared_ptr<Classifier> create(const std::string& name, int classes);

}  // namespace dermis::models
