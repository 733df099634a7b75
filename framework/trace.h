// Op tracing: a record of the ops one forward pass runs, for exporting a model's graph (ONNX).
//
// While a trace::Recorder lives on a thread, every op of the functional API (ops.h) called on that
// thread appends one Step: the op's name, its Var inputs, the plain tensors it read (batch norm's
// running statistics), its attributes and its output. An op called inside another op (flatten's
// reshape) is part of the outer op's step and is not recorded on its own. Ops not meant for export
// (the loss, frozen inference paths) record nothing; an exporter finds their outputs unaccounted
// for and says so. Without a Recorder, tracing costs each op one thread-local read.
#pragma once

#include <string>
#include <utility>
#include <vector>

#include "autograd.h"

namespace dermis::trace {

using Attrs = std::vector<std::pair<std::string, double>>;

struct Step {
  std::string op;               // the ops.h name: "conv2d", "batch_norm2d", "cbam", ...
  std::vector<Var> inputs;      // in the op's argument order; undefined for an absent bias
  std::vector<Tensor> tensors;  // plain tensors the op read, in argument order (not copies)
  Attrs attrs;                  // numeric attributes: stride, pad, relu (0/1), eps, ...
  Var output;
  // The attribute `name`; `fallback` when the step has none.
  double attr(const std::string& name, double fallback = 0) const;
};

class Recorder {
 public:
  Recorder();   // starts recording on this thread (one Recorder per thread at a time)
  ~Recorder();  // stops
  Recorder(const Recorder&) = delete;
  Recorder& operator=(const Recorder&) = delete;
  std::vector<Step> steps;
};

// True while a Recorder lives on this thread.
bool active();

// Placed at the entry of an op. recording() is true when a Recorder is live and this op is not
// nested in another op; only then does the op build its step's inputs and attributes and record()
// them, so that untraced forwards allocate nothing for tracing.
class Op {
 public:
  Op();
  ~Op();
  Op(const Op&) = delete;
  Op& operator=(const Op&) = delete;
  bool recording() const { return outer_; }
  void record(const Var& out, const char* op, std::vector<Var> inputs, Attrs attrs = {}, std::vector<Tensor> tensors = {});

 private:
  bool entered_ = false, outer_ = false;
};

}  // namespace dermis::trace
