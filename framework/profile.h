// Counting multiply-accumulates: while a MacCounter lives, conv2d, linear and cbam add the MACs of
// every forward they run on this thread (backward is not counted). Used to document model cost.
#pragma once

#include <cstdint>

namespace dermis::profile {

void add_macs(int64_t n);  // no-op unless a counter is active

class MacCounter {
 public:
  MacCounter();
  ~MacCounter();
  MacCounter(const MacCounter&) = delete;
  MacCounter& operator=(const MacCounter&) = delete;
  int64_t macs() const { return macs_; }

 private:
  friend void add_macs(int64_t);
  int64_t macs_ = 0;
  MacCounter* prev_;
};

}  // namespace dermis::profile
