// Model registry.
#include "registry.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <mutex>

#include "cbam_small.h"
#include "resnet_cbam.h"

namespace dermis::models {

namespace {

struct Entry {
  std::string name, description;
  ModelFactory factory;
};

struct Registry {
  std::mutex mu;
  std::vector<Entry> entries;
};

Entry* find(Registry& r, const std::string& name) {
  for (auto& e : r.entries)
    if (e.name == name) return &e;
  return nullptr;
}

void add(Registry& r, const std::string& name, ModelFactory factory, const std::string& description) {
  DERMIS_CHECK(!name.empty() && name.find_first_not_of("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                                                       "0123456789_-.") == std::string::npos,
               "register_model: '{}' is not a model name (letters, digits, '_', '-', '.')", name);
  DERMIS_CHECK(factory, "register_model: model '{}' has no factory", name);
  DERMIS_CHECK(!find(r, name), "register_model: a model named '{}' is already registered", name);
  r.entries.push_back({name, description, std::move(factory)});
}

// dermis's own models are registered on first use (not by static objects, which a static
// library's linker may drop), so they come first and are there before any program's own.
Registry& registry() {
  static Registry r;
  static const bool builtins = [] {
    add(r, "resnet18_cbam", [](int k) { return resnet18_cbam(k); }, "ResNet-18 with CBAM in every basic block");
    add(r, "resnet34_cbam", [](int k) { return resnet34_cbam(k); }, "ResNet-34 with CBAM in every basic block");
    add(r, "resnet18", [](int k) { return resnet18(k); }, "plain ResNet-18 (torchvision's layout)");
    add(r, "cbam_small", [](int k) { return cbam_small(k); }, "a light CNN with CBAM after each stage");
    return true;
  }();
  (void)builtins;
  return r;
}

}  // namespace

void register_model(const std::string& name, ModelFactory factory, const std::string& description) {
  Registry& r = registry();
  std::lock_guard lock(r.mu);
  add(r, name, std::move(factory), description);
}

std::vector<std::string> model_names() {
  Registry& r = registry();
  std::lock_guard lock(r.mu);
  std::vector<std::string> n;
  for (auto& e : r.entries) n.push_back(e.name);
  return n;
}

std::string model_choices() { return fmt::format("{}", fmt::join(model_names(), " | ")); }

std::string model_description(const std::string& name) {
  Registry& r = registry();
  std::lock_guard lock(r.mu);
  const Entry* e = find(r, name);
  return e ? e->description : "";
}

bool has_model(const std::string& name) {
  Registry& r = registry();
  std::lock_guard lock(r.mu);
  return find(r, name) != nullptr;
}

std::string unknown_model_message(const std::string& name) {
  return fmt::format("unknown model '{}'; choose one of {}", name, fmt::join(model_names(), ", "));
}

std::shared_ptr<Classifier> create(const std::string& name, int classes) {
  ModelFactory f;
  {
    Registry& r = registry();
    std::lock_guard lock(r.mu);
    if (const Entry* e = find(r, name)) f = e->factory;
  }
  DERMIS_CHECK(f, "{}", unknown_model_message(name));
  auto m = f(classes);
  DERMIS_CHECK(m, "model '{}': its factory returned no model", name);
  DERMIS_CHECK(m->num_classes() == classes, "model '{}': its factory made a model with {} classes for {}", name,
               m->num_classes(), classes);
  return m;
}

}  // namespace dermis::models
