// Seeded, counter-based random numbers. Every draw is a pure function of (seed, counter), so
// results do not depend on the number of threads that consume them.
#pragma once

#include <cstdint>

namespace dermis {

class Generator {
 public:
  explicit Generator(uint64_t seed = 0) : seed_(seed) {}
  void seed(uint64_t s) { seed_ = s; counter_ = 0; }
  uint64_t seed() const { return seed_; }
  uint64_t counter() const { return counter_; }
  void set_state(uint64_t seed, uint64_t counter) { seed_ = seed; counter_ = counter; }

  uint64_t next_u64() { return bits(seed_, counter_++); }
  float uniform() { return to_unit(next_u64()); }         // [0, 1)
  float normal();                                          // N(0, 1), Box-Muller
  int64_t randint(int64_t n);                              // [0, n)
  // Reserves n consecutive counters for a parallel consumer; element i then uses
  // uniform_at(seed(), base + i).
  uint64_t reserve(uint64_t n) { uint64_t b = counter_; counter_ += n; return b; }

  static uint64_t bits(uint64_t seed, uint64_t counter);  // splitmix64 of the pair
  static float to_unit(uint64_t b) { return static_cast<float>(b >> 40) * 0x1.0p-24f; }
  static float uniform_at(uint64_t seed, uint64_t counter) { return to_unit(bits(seed, counter)); }

 private:
  uint64_t seed_;
  uint64_t counter_ = 0;
};

// The process-wide generator used by dropout and initialisers unless one is passed explicitly.
Generator& default_generator();
void manual_seed(uint64_t seed);

// Puts the default generator back where it was when the scope ends: work beside a training run
// (building a second model, forward passes through it in training mode) then draws no numbers from
// the run's stream, so the run's dropout masks, and its weights, are the same with or without it.
class DefaultGeneratorScope {
 public:
  DefaultGeneratorScope() : seed_(default_generator().seed()), counter_(default_generator().counter()) {}
  ~DefaultGeneratorScope() { default_generator().set_state(seed_, counter_); }
  DefaultGeneratorScope(const DefaultGeneratorScope&) = delete;
  DefaultGeneratorScope& operator=(const DefaultGeneratorScope&) = delete;

 private:
  uint64_t seed_, counter_;
};

}  // namespace dermis
