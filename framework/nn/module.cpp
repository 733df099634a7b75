// nn::Module: registration, recursive traversal, train/eval, state load/save.
#include "module.h"

#include <cstring>
#include <set>

#include "../error.h"

namespace dermis::nn {

Var Module::forward(const Var&) {
  DERMIS_FAIL("{} has no single-input forward(); call its own forward method", type_name());
}

void Module::register_parameter(const std::string& name, Var* p) {
  DERMIS_CHECK(p && p->defined(), "register_parameter('{}'): the parameter must be defined", name);
  p->set_requires_grad(true);
  params_.emplace_back(name, p);
}

void Module::register_buffer(const std::string& name, Tensor* b) {
  DERMIS_CHECK(b && b->defined(), "register_buffer('{}'): the buffer must be defined", name);
  buffers_.emplace_back(name, b);
}

void Module::add_child(const std::string& name, std::shared_ptr<Module> m) {
  DERMIS_CHECK(m != nullptr, "register_module('{}'): null module", name);
  m->parent_ = this, m->name_ = name;
  children_.emplace_back(name, std::move(m));
}

Module::~Module() {
  for (auto& [n, c] : children_)
    if (c->parent_ == this) c->parent_ = nullptr;  // a child kept alive elsewhere becomes outermost
}

std::string Module::path() const {
  if (!parent_) return "";
  const std::string up = parent_->path();
  return up.empty() ? name_ : up + "." + name_;
}

void Module::rethrow_with_path(const Error& e) const {
  const std::string p = path();
  const std::string what = e.what();
  throw Error(p.empty() || what.rfind(p + ": ", 0) == 0 ? what : p + ": " + what);
}

void Module::collect(const std::string& prefix, std::vector<std::pair<std::string, Var>>* params,
                     std::vector<std::pair<std::string, Tensor*>>* buffers) {
  if (params)
    for (auto& [n, p] : params_) params->emplace_back(prefix + n, *p);
  if (buffers)
    for (auto& [n, b] : buffers_) buffers->emplace_back(prefix + n, b);
  for (auto& [n, c] : children_) c->collect(prefix + n + ".", params, buffers);
}

std::vector<std::pair<std::string, Var>> Module::named_parameters() const {
  std::vector<std::pair<std::string, Var>> out;
  const_cast<Module*>(this)->collect("", &out, nullptr);
  return out;
}

std::vector<Var> Module::parameters() const {
  std::vector<Var> out;
  for (auto& [n, p] : named_parameters()) out.push_back(p);
  return out;
}

std::vector<std::pair<std::string, Tensor*>> Module::named_buffers() {
  std::vector<std::pair<std::string, Tensor*>> out;
  collect("", nullptr, &out);
  return out;
}

int64_t Module::num_parameters() const {
  int64_t n = 0;
  for (auto& p : parameters()) n += p.value().numel();
  return n;
}

std::vector<std::pair<std::string, Tensor>> Module::state() {
  std::vector<std::pair<std::string, Tensor>> out;
  for (auto& [n, p] : named_parameters()) out.emplace_back(n, p.value());
  for (auto& [n, b] : named_buffers()) out.emplace_back(n, *b);
  return out;
}

void Module::load_state(const std::vector<std::pair<std::string, Tensor>>& state, bool strict) {
  apply([](Module& m) {
    m.frozen_ = false;
    m.unfreeze();
  });
  std::vector<std::pair<std::string, Tensor*>> targets;
  for (auto& [n, p] : named_parameters()) targets.emplace_back(n, &p.value());
  for (auto& [n, b] : named_buffers()) targets.emplace_back(n, b);
  std::set<std::string> used;
  for (auto& [name, dst] : targets) {
    const Tensor* src = nullptr;
    for (auto& [n, t] : state)
      if (n == name) src = &t;
    if (!src) {
      DERMIS_CHECK(!strict, "the state has no tensor '{}' that this {} needs (was it saved from another model?)",
                   name, type_name());
      continue;
    }
    DERMIS_CHECK(src->shape() == dst->shape(), "tensor '{}' has shape {} in the state but {} in this {}", name,
                 to_string(src->shape()), to_string(dst->shape()), type_name());
    Tensor p = src->plain();
    DERMIS_CHECK(dst->is_plain(), "internal: parameter '{}' is not in a plain layout", name);
    std::memcpy(dst->raw(), p.raw(), p.bytes());
    used.insert(name);
  }
  if (strict)
    for (auto& [n, t] : state)
      DERMIS_CHECK(used.count(n), "the state has a tensor '{}' that this {} does not have (another model?)", n,
                   type_name());
}

void Module::apply(const std::function<void(Module&)>& f) {
  f(*this);
  for (auto& [n, c] : children_) c->apply(f);
}

void Module::train(bool on) {
  training_ = on;
  frozen_ = false;
  unfreeze();
  for (auto& [n, c] : children_) c->train(on);
}

void Module::freeze() {
  train(false);
  apply([](Module& m) { m.frozen_ = true; });
}

}  // namespace dermis::nn
