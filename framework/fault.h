// Fault injection for the crash-safety tests. The environment variable DERMIS_FAULT holds a
// comma-separated list of faults, each "name" or "name=value":
//   kill_in_save=N      SIGKILL the process halfway through writing its N-th safetensors file
//   enospc_in_save=N    the N-th safetensors write fails as if the disk were full
//   nan_at_step=N       tools/train feeds NaN images at global step N (1-based)
//   reverse_batches     tools/train reverses the order of the images in every batch (the same
//                       mean gradient, summed in another order: a measure of rounding noise)
//   fail_at_step=N      tools/train throws an error after optimiser step N, on rank fail_rank=R
//                       (default 0) of a data-parallel job
//   break_reducer=K     dist::GradientReducer averages wrongly, to prove the data-parallel tests
//                       catch it: 1 sums instead of averaging, 2 never reduces the last bucket (each
//                       rank keeps its own share), 3 leaves the first bucket holding the step
//                       before's values (a stale gradient)
// Unset (the normal case), every query is false.
#pragma once

#include <cstdint>
#include <optional>

namespace dermis::fault {

// The value of fault `name` if DERMIS_FAULT names it ("name" alone gives 1).
std::optional<int64_t> value(const char* name);

// Counts calls per fault; true on the call whose number equals the fault's value.
bool trigger(const char* name);

}  // namespace dermis::fault
