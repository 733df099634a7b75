// The bf16 autocast switch (see ops.h, "precision"). Per thread, like NoGrad.
#include "ops.h"

namespace dermis {

namespace {
thread_local bool g_autocast_bf16 = false;
}

AutocastBF16::AutocastBF16(bool enabled) : prev_(g_autocast_bf16) { g_autocast_bf16 = enabled; }
AutocastBF16::~AutocastBF16() { g_autocast_bf16 = prev_; }
bool autocast_bf16() { return g_autocast_bf16; }

}  // namespace dermis
