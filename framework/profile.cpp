// MAC counter (thread-local stack of active counters; the innermost one counts).
#include "profile.h"

namespace dermis::profile {

namespace {
thread_local MacCounter* g_active = nullptr;
}

MacCounter::MacCounter() : prev_(g_active) { g_active = this; }
MacCounter::~MacCounter() { g_active = prev_; }

void add_macs(int64_t n) {
  if (g_active) g_active->macs_ += n;
}

}  // namespace dermis::profile
