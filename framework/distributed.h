// Data-parallel training over MPI, the way Horovod and PyTorch's DistributedDataParallel do it:
// every rank holds the whole model, reads its own shard of each batch, and gradients are averaged
// with MPI allreduce before the optimiser step, so all ranks keep identical weights.
//
// Without MPI (built without it, or not started by mpirun) there is one rank and every call here
// is a cheap no-op, so single-process code needs no special case.
//
//   dist::init(argc, argv);                          // once, in main; MPI only under mpirun
//   dist::GradientReducer reducer(model.parameters()); // buckets of gradients
//   loss.backward();                                  // buckets start their allreduce as they fill
//   reducer.finish();                                 // wait, average, write the gradients back
//   opt.step();
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "autograd.h"

namespace dermis::dist {

// True when dermis was built with MPI (Meson option `mpi`).
bool built_with_mpi();

// Starts MPI when the process was launched by mpirun/mpiexec (Open MPI, MPICH or PMIx
// environment); otherwise, or without MPI support, the process is rank 0 of 1. Idempotent.
void init(int* argc, char*** argv);
// Ends MPI (at exit of main; also registered with atexit by init).
void finalize();

int rank();
int size();
inline bool is_root() { return rank() == 0; }

// Ends every rank of the job at once after `message` was printed by this rank (MPI_Abort), so a
// failing rank never leaves the others waiting in a collective. Without MPI: std::exit(code).
[[noreturn]] void abort_job(int code);

// Collectives over all ranks (no-ops with one rank).
void allreduce_sum(float* data, int64_t n);
void allreduce_sum(double* data, int64_t n);
double allreduce_sum(double v);
int64_t allreduce_max(int64_t v);
void broadcast(float* data, int64_t n, int root = 0);
void barrier();
// Every rank's `local` concatenated in rank order, on every rank.
std::vector<float> allgather(const std::vector<float>& local);
std::vector<int> allgather(const std::vector<int>& local);


// Sets every parameter to rank 0's values.
void broadcast_parameters(const std::vector<Var>& params);

// Averages gradients across ranks, overlapping communication with the backward pass: parameters
// are grouped, in reverse order (the order backward produces their gradients), into buckets of
// about `bucket_bytes`; when the last gradient of a bucket is ready, a non-blocking allreduce of
// the bucket starts while backward goes on. Buckets are started strictly in order, so every rank
// issues the same collectives in the same order.
class GradientReducer {
 public:
  explicit GradientReducer(std::vector<Var> params, int64_t bucket_bytes = 4 << 20);
  ~GradientReducer();
  GradientReducer(const GradientReducer&) = delete;
  GradientReducer& operator=(const GradientReducer&) = delete;

  // Waits for every bucket (starting those whose gradients never came: a parameter without a
  // gradient this step counts as zero), divides by the number of ranks and writes the averaged
  // gradients back into the parameters. With one rank it returns at once.
  void finish();

  int64_t buckets() const;
  // Last step: share of the allreduce bytes whose communication started while backward still had
  // gradients to compute (the overlap achieved), and the time finish() waited for communication
  // (what the overlap did not hide).
  double overlap_fraction() const;
  double wait_seconds() const;
  int64_t bytes_per_step() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace dermis::dist
