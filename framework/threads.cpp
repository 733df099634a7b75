// Thread-count control: OpenMP drives both oneDNN (built with the OMP runtime) and dermis loops.
#include <omp.h>

#include "error.h"
#include "ops.h"

namespace dermis {

void set_num_threads(int n) {
  DERMIS_CHECK(n >= 1, "set_num_threads: need at least one thread, got {}", n);
  omp_set_num_threads(n);
}

int num_threads() { return omp_get_max_threads(); }

}  // namespace dermis
