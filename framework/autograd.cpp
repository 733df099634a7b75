// Autograd: Var handles, gradient accumulation and the iterative backward pass.
#include "autograd.h"

#include <unordered_set>
#include <utility>

#include "error.h"

namespace dermis {

namespace {
thread_local bool g_grad_enabled = true;
}

bool grad_enabled() { return g_grad_enabled; }
NoGrad::NoGrad() : prev_(g_grad_enabled) { g_grad_enabled = false; }
NoGrad::~NoGrad() { g_grad_enabled = prev_; }

Node::~Node() {
  std::vector<std::shared_ptr<Node>> pending = std::move(inputs);
  while (!pending.empty()) {
    std::shared_ptr<Node> n = std::move(pending.back());
    pending.pop_back();
    if (n && n.use_count() == 1) {  // last owner: adopt its inputs before it dies
      for (auto& c : n->inputs) pending.push_back(std::move(c));
      n->inputs.clear();
      n->backward = nullptr;
    }
  }
}

Var::Var(Tensor value, bool requires_grad) : node_(std::make_shared<Node>()) {
  DERMIS_CHECK(value.defined(), "Var: cannot wrap an undefined tensor");
  node_->value = std::move(value);
  node_->requires_grad = requires_grad;
}

const Tensor& Var::value() const {
  DERMIS_CHECK(node_, "use of an undefined Var");
  return node_->value;
}
Tensor& Var::value() {
  DERMIS_CHECK(node_, "use of an undefined Var");
  return node_->value;
}
const Tensor& Var::grad() const {
  DERMIS_CHECK(node_, "grad() of an undefined Var");
  return node_->grad;
}

void Var::set_requires_grad(bool r) {
  DERMIS_CHECK(node_, "set_requires_grad on an undefined Var");
  DERMIS_CHECK(r || is_leaf(), "requires_grad can only be switched off on a leaf Var; use detach()");
  node_->requires_grad = r;
}
void Var::retain_grad() { node_->retain_grad = true; }
void Var::zero_grad() { node_->grad = Tensor(); }
void Var::set_grad(const Tensor& g) {
  DERMIS_CHECK(!g.defined() || g.shape() == shape(), "set_grad: gradient shape {} does not match value shape {}",
               to_string(g.shape()), to_string(shape()));
  node_->grad = g;
}
Var Var::detach() const { return Var(value(), false); }
void Var::set_grad_ready_hook(std::function<void()> f) {
  DERMIS_CHECK(node_, "set_grad_ready_hook on an undefined Var");
  node_->grad_ready = std::move(f);
}

void Var::backward(const Tensor& grad) {
  DERMIS_CHECK(node_, "backward() on an undefined Var");
  DERMIS_CHECK(node_->requires_grad,
               "backward(): this Var does not require grad (no input requires grad, or it was computed under NoGrad)");
  Tensor seed;
  if (grad.defined()) {
    DERMIS_CHECK(grad.shape() == shape(), "backward(): gradient shape {} does not match output shape {}",
                 to_string(grad.shape()), to_string(shape()));
    seed = grad;
  } else {
    DERMIS_CHECK(value().numel() == 1,
                 "backward() without a gradient needs a scalar output, but this one has shape {}; "
                 "pass the output gradient: y.backward(grad)",
                 to_string(shape()));
    seed = Tensor::full(shape(), 1.f);
  }

  // Post-order DFS with an explicit stack; `order` ends up inputs-before-outputs.
  std::vector<std::shared_ptr<Node>> order;
  std::unordered_set<Node*> visited;
  std::vector<std::pair<std::shared_ptr<Node>, size_t>> stack;
  stack.emplace_back(node_, 0);
  visited.insert(node_.get());
  while (!stack.empty()) {
    auto& top = stack.back();
    Node& n = *top.first;
    if (top.second < n.inputs.size()) {
      const std::shared_ptr<Node>& child = n.inputs[top.second++];
      if (child->requires_grad && visited.insert(child.get()).second) stack.emplace_back(child, 0);
    } else {
      order.push_back(std::move(top.first));
      stack.pop_back();
    }
  }

  autograd::accumulate(*node_, seed, false);
  for (auto it = order.rbegin(); it != order.rend(); ++it) {
    Node& n = **it;
    if (n.backward && n.grad.defined()) n.backward(n);
    const bool leaf = !n.backward && n.inputs.empty();
    if (leaf && n.grad_ready && n.grad.defined()) n.grad_ready();
    n.backward = nullptr;  // frees everything the closure captured
    n.inputs.clear();
    if (!leaf && !n.retain_grad && &n != node_.get()) n.grad = Tensor();
    it->reset();  // inputs are still held further along `order`
  }
}

namespace autograd {

bool needs_grad(std::initializer_list<const Var*> inputs) {
  if (!g_grad_enabled) return false;
  for (const Var* v : inputs)
    if (v && v->defined() && v->requires_grad()) return true;
  return false;
}

Var make_result(Tensor value, const char* op, std::vector<Var> inputs, BackwardFn fn) {
  Var out(std::move(value), false);
  bool req = false;
  if (g_grad_enabled)
    for (auto& v : inputs) req = req || (v.defined() && v.requires_grad());
  if (!req) return out;
  Node& n = *out.node();
  n.requires_grad = true;
  n.op = op;
  for (auto& v : inputs) n.inputs.push_back(v.defined() ? v.node() : std::make_shared<Node>());
  n.backward = std::move(fn);
  return out;
}

void accumulate(Node& n, const Tensor& g, bool owned) {
  if (!n.requires_grad) return;
  DERMIS_CHECK(g.shape() == n.value.shape(), "internal: {} gradient shape {} does not match value shape {}", n.op,
               to_string(g.shape()), to_string(n.value.shape()));
  if (!n.grad.defined()) {
    n.grad = owned ? g : g.clone();
  } else {
    n.grad.add_(g);
  }
}

}  // namespace autograd

}  // namespace dermis
