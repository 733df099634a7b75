// The Winograd transforms for AVX2 (8 channels per vector, nChw8c); built with -mavx2 -mfma and
// only called on CPUs oneDNN dispatches to at AVX2 or above.
#define WINO_LANES 8
#define WINO_NS avx2
#include "winograd_kernels.inc"
