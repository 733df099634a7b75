// Counter-based generator (splitmix64 over seed and counter).
#include "random.h"

#include <cmath>

namespace dermis {

uint64_t Generator::bits(uint64_t seed, uint64_t counter) {
  uint64_t z = seed * 0x9E3779B97F4A7C15ull + counter * 0xD1B54A32D192ED03ull + 0x632BE59BD9B4E019ull;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

float Generator::normal() {
  float u1 = uniform(), u2 = uniform();
  if (u1 < 1e-12f) u1 = 1e-12f;
  return std::sqrt(-2.f * std::log(u1)) * std::cos(6.28318530717958647f * u2);
}

int64_t Generator::randint(int64_t n) { return static_cast<int64_t>(next_u64() % static_cast<uint64_t>(n)); }

Generator& default_generator() {
  static Generator g(0);
  return g;
}

void manual_seed(uint64_t seed) { default_generator().seed(seed); }

}  // namespace dermis
