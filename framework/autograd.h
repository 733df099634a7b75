// Reverse-mode autograd on a dynamic graph.
//
// A Var is a handle to a Node holding a value, its gradient, the input nodes and a backward closure
// that captures only what the backward pass needs. backward() orders the graph with an iterative
// depth-first search (no recursion, so deep networks cannot overflow the stack), runs the closures
// in reverse topological order and frees each node's closure and edges as soon as it has run.
// Backward closures ACCUMULATE into their inputs' gradients, so fan-out needs no special case.
#pragma once

#include <functional>
#include <initializer_list>
#include <memory>
#include <string>
#include <vector>

#include "error.h"
#include "tensor.h"

namespace dermis {

struct Node;
using BackwardFn = std::function<void(Node& self)>;

struct Node {
  Tensor value;
  Tensor grad;
  bool requires_grad = false;
  bool retain_grad = false;  // keep the gradient of a non-leaf after backward
  const char* op = "leaf";
  std::vector<std::shared_ptr<Node>> inputs;
  BackwardFn backward;
  // Leaves only: called by backward() once this leaf's gradient for the pass is complete (all its
  // consumers have run). Kept across passes. Data-parallel training starts communication here.
  std::function<void()> grad_ready;

  Node() = default;
  Node(const Node&) = delete;
  Node& operator=(const Node&) = delete;
  ~Node();  // releases long input chains iteratively (no deep recursion)
};

class Var {
 public:
  Var() = default;
  explicit Var(Tensor value, bool requires_grad = false);
  static Var parameter(Tensor value) { return Var(std::move(value), true); }

  bool defined() const { return node_ != nullptr; }
  const Tensor& value() const;
  Tensor& value();
  const Tensor& grad() const;
  const Shape& shape() const { return value().shape(); }
  int64_t dim(int i) const { return value().dim(i); }
  int ndim() const { return value().ndim(); }
  float item() const { return value().item(); }
  bool requires_grad() const { return node_ && node_->requires_grad; }
  bool is_leaf() const { return node_ && !node_->backward && node_->inputs.empty(); }
  void set_requires_grad(bool r);
  void retain_grad();
  void zero_grad();                   // drops the gradient (it is re-created on accumulation)
  void set_grad(const Tensor& g);     // replaces the gradient (tests; optimisers)
  void set_grad_ready_hook(std::function<void()> f);  // see Node::grad_ready (leaves)
  Var detach() const;                 // same value, no graph

  // Backpropagates from this Var. Without `grad` the Var must hold exactly one element.
  void backward(const Tensor& grad = {});

  const std::shared_ptr<Node>& node() const { return node_; }

 private:
  std::shared_ptr<Node> node_;
};

// Gradient mode. While a NoGrad guard lives, ops record no graph.
bool grad_enabled();
class NoGrad {
 public:
  NoGrad();
  ~NoGrad();
  NoGrad(const NoGrad&) = delete;
  NoGrad& operator=(const NoGrad&) = delete;

 private:
  bool prev_;
};

namespace autograd {

// True when an op over these inputs must record a backward closure.
bool needs_grad(std::initializer_list<const Var*> inputs);
// Builds an op result: a Var over `value` with edges to `inputs` and the backward closure.
Var make_result(Tensor value, const char* op, std::vector<Var> inputs, BackwardFn fn);
// Adds g into n's gradient (no-op when n does not require grad). If `owned` is false, g may share
// storage with another tensor and is copied before it is stored.
void accumulate(Node& n, const Tensor& g, bool owned = true);
// The i-th input of a node, for backward closures.
inline Node& input(Node& self, size_t i) { return *self.inputs[i]; }

}  // namespace autograd

}  // namespace dermis
