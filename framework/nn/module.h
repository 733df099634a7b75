// nn::Module: the base of layers and models, in the manner of torch.nn.Module.
//
// A module owns parameters (Vars that require grad), buffers (tensors such as BatchNorm running
// statistics) and child modules, each under a name; named_parameters() and state() give stable
// dotted names like "layer1.0.conv1.weight", matching PyTorch's conventions. Members are registered
// by address, so a layer keeps plain members (`Var weight;`) and loading a state copies values into
// them in place (optimisers holding the same Vars stay valid).
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "../autograd.h"
#include "../error.h"

namespace dermis::nn {

class Module {
 public:
  Module() = default;
  virtual ~Module();
  Module(const Module&) = delete;
  Module& operator=(const Module&) = delete;

  // Single-input forward; modules with other signatures define their own.
  virtual Var forward(const Var& x);
  Var operator()(const Var& x) { return forward(x); }
  virtual std::string type_name() const { return "Module"; }

  std::vector<Var> parameters() const;
  std::vector<std::pair<std::string, Var>> named_parameters() const;
  std::vector<std::pair<std::string, Tensor*>> named_buffers();
  int64_t num_parameters() const;

  // Parameters and buffers by name (checkpoints). load_state copies values in place; with
  // `strict`, missing or unexpected names and shape mismatches are errors naming the tensor.
  std::vector<std::pair<std::string, Tensor>> state();
  void load_state(const std::vector<std::pair<std::string, Tensor>>& state, bool strict = true);

  // train() and eval() also end a freeze().
  void train(bool on = true);
  void eval() { train(false); }
  // Inference with fixed parameters: eval(), and a promise that parameters and buffers stay as they
  // are until the next train(), eval() or load_state() (which end the freeze). While frozen, layers
  // prepare their weights for inference once (BN folded into convolutions, weights in the kernels'
  // layouts) instead of on every forward. Changing a parameter's values in place while frozen
  // leaves those prepared copies stale: end the freeze first.
  void freeze();
  bool is_frozen() const { return frozen_; }
  // Calls f on this module and then on every descendant, parents before children.
  void apply(const std::function<void(Module&)>& f);
  bool is_training() const { return training_; }
  // The dotted path of this module from the outermost module holding it ("layer1.0.conv1"; "" for
  // an outermost module). Errors raised in a layer's forward start with it.
  std::string path() const;
  // Runs f; a dermis::Error from it gets this module's path in front: "layer1.0.conv1: conv2d: ...".
  template <class F>
  auto with_path(F&& f) const -> decltype(f()) {
    try {
      return f();
    } catch (const Error& e) {
      rethrow_with_path(e);
    }
  }

 protected:
  // Drops what this module prepared for a freeze (called when one ends).
  virtual void unfreeze() {}
  void register_parameter(const std::string& name, Var* p);
  void register_buffer(const std::string& name, Tensor* b);
  template <class M>
  std::shared_ptr<M> register_module(const std::string& name, std::shared_ptr<M> m) {
    add_child(name, m);
    return m;
  }

 private:
  void add_child(const std::string& name, std::shared_ptr<Module> m);
  [[noreturn]] void rethrow_with_path(const Error& e) const;
  void collect(const std::string& prefix, std::vector<std::pair<std::string, Var>>* params,
               std::vector<std::pair<std::string, Tensor*>>* buffers);

  bool training_ = true;
  bool frozen_ = false;
  const Module* parent_ = nullptr;  // the module this one is registered in (reset when it goes)
  std::string name_;                // this module's name in parent_
  std::vector<std::pair<std::string, Var*>> params_;
  std::vector<std::pair<std::string, Tensor*>> buffers_;
  std::vector<std::pair<std::string, std::shared_ptr<Module>>> children_;
};

}  // namespace dermis::nn
