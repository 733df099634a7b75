// Op tracing (see trace.h).
#include "trace.h"

namespace dermis::trace {

namespace {
thread_local Recorder* g_recorder = nullptr;
thread_local int g_depth = 0;  // ops entered and not yet left, while recording
}  // namespace

double Step::attr(const std::string& name, double fallback) const {
  for (const auto& [n, v] : attrs)
    if (n == name) return v;
  return fallback;
}

Recorder::Recorder() {
  DERMIS_CHECK(g_recorder == nullptr, "trace: a Recorder is already recording on this thread");
  g_recorder = this;
  g_depth = 0;
}

Recorder::~Recorder() { g_recorder = nullptr; }

bool active() { return g_recorder != nullptr; }

Op::Op() {
  if (g_recorder) {
    entered_ = true;
    outer_ = g_depth++ == 0;
  }
}

Op::~Op() {
  if (entered_) --g_depth;
}

void Op::record(const Var& out, const char* op, std::vector<Var> inputs, Attrs attrs, std::vector<Tensor> tensors) {
  if (outer_ && g_recorder)
    g_recorder->steps.push_back(Step{op, std::move(inputs), std::move(tensors), std::move(attrs), out});
}

}  // namespace dermis::trace
