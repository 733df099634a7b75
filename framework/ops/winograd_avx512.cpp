// The Winograd transforms for AVX-512 (16 channels per vector, nChw16c); built with -mavx512f and
// only called on CPUs oneDNN dispatches to at AVX-512 (avx512_core) or above.
#define WINO_LANES 16
#define WINO_NS avx512
#include "winograd_kernels.inc"
