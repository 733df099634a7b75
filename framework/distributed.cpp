// Data-parallel training over MPI (see distributed.h).
#include "distributed.h"

#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <type_traits>

#include "error.h"
#include "fault.h"

#ifdef DERMIS_HAVE_MPI
#define OMPI_SKIP_MPICXX 1  // the C API only (Open MPI's C++ bindings are deprecated and warn)
#define MPICH_SKIP_MPICXX 1
#include <mpi.h>
#endif

namespace dermis::dist {

namespace {
int g_rank = 0, g_size = 1;
bool g_mpi = false;  // MPI initialised by us

bool launched_by_mpirun() {
  for (const char* v : {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_RANK", "MPI_LOCALNRANKS"})
    if (std::getenv(v)) return true;
  return false;
}
}  // namespace

bool built_with_mpi() {
#ifdef DERMIS_HAVE_MPI
  return true;
#else
  return false;
#endif
}

void init(int* argc, char*** argv) {
  if (g_mpi) return;
#ifdef DERMIS_HAVE_MPI
  if (!launched_by_mpirun()) return;
  int provided = 0;
  if (MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided) != MPI_SUCCESS) {
    std::fprintf(stderr, "error: MPI_Init_thread failed; is mpirun from the same MPI as dermis was built with?\n");
    std::exit(2);
  }
  g_mpi = true;
  MPI_Comm_rank(MPI_COMM_WORLD, &g_rank);
  MPI_Comm_size(MPI_COMM_WORLD, &g_size);
  std::atexit(finalize);
#else
  (void)argc, (void)argv;
  if (launched_by_mpirun())
    std::fprintf(stderr,
                 "warning: started by mpirun, but this dermis was built without MPI: every process trains alone. "
                 "Install libopenmpi-dev and rebuild (meson option mpi).\n");
#endif
}

void finalize() {
#ifdef DERMIS_HAVE_MPI
  int finalized = 0;
  if (g_mpi && MPI_Finalized(&finalized) == MPI_SUCCESS && !finalized) MPI_Finalize();
#endif
}

int rank() { return g_rank; }
int size() { return g_size; }

void abort_job(int code) {
  std::fflush(stdout);
  std::fflush(stderr);
#ifdef DERMIS_HAVE_MPI
  if (g_mpi && g_size > 1) MPI_Abort(MPI_COMM_WORLD, code);
#endif
  std::exit(code);
}

#ifdef DERMIS_HAVE_MPI
namespace {
void check(int rc, const char* what) {
  if (rc != MPI_SUCCESS) {
    char msg[MPI_MAX_ERROR_STRING];
    int len = 0;
    MPI_Error_string(rc, msg, &len);
    DERMIS_FAIL("MPI {} failed on rank {}: {}", what, g_rank, std::string(msg, static_cast<size_t>(len)));
  }
}
// MPI counts are int: long vectors go in pieces.
template <class F>
void chunked(int64_t n, F&& f) {
  constexpr int64_t kMax = int64_t{1} << 30;
  for (int64_t o = 0; o < n; o += kMax) f(o, static_cast<int>(std::min(kMax, n - o)));
}
template <class T>
MPI_Datatype mpi_type() {
  if constexpr (std::is_same_v<T, float>) return MPI_FLOAT;
  else if constexpr (std::is_same_v<T, double>) return MPI_DOUBLE;
  else return MPI_INT;
}
}  // namespace
#endif

namespace {
template <class T>
void allreduce_sum_impl(T* data, int64_t n) {
  if (g_size == 1) return;
#ifdef DERMIS_HAVE_MPI
  chunked(n, [&](int64_t o, int c) {
    check(MPI_Allreduce(MPI_IN_PLACE, data + o, c, mpi_type<T>(), MPI_SUM, MPI_COMM_WORLD), "allreduce");
  });
#else
  (void)data, (void)n;
#endif
}
}  // namespace

void allreduce_sum(float* data, int64_t n) { allreduce_sum_impl(data, n); }
void allreduce_sum(double* data, int64_t n) { allreduce_sum_impl(data, n); }

double allreduce_sum(double v) {
  allreduce_sum(&v, 1);
  return v;
}

int64_t allreduce_max(int64_t v) {
#ifdef DERMIS_HAVE_MPI
  if (g_size > 1) {
    long long x = v;
    check(MPI_Allreduce(MPI_IN_PLACE, &x, 1, MPI_LONG_LONG, MPI_MAX, MPI_COMM_WORLD), "allreduce");
    v = x;
  }
#endif
  return v;
}

void broadcast(float* data, int64_t n, int root) {
  if (g_size == 1) return;
#ifdef DERMIS_HAVE_MPI
  chunked(n, [&](int64_t o, int c) { check(MPI_Bcast(data + o, c, MPI_FLOAT, root, MPI_COMM_WORLD), "broadcast"); });
#else
  (void)data, (void)n, (void)root;
#endif
}

void barrier() {
#ifdef DERMIS_HAVE_MPI
  if (g_size > 1) check(MPI_Barrier(MPI_COMM_WORLD), "barrier");
#endif
}

namespace {
template <class T>
std::vector<T> allgather_impl(const std::vector<T>& local) {
  if (g_size == 1) return local;
#ifdef DERMIS_HAVE_MPI
  const MPI_Datatype type = mpi_type<T>();
  int n = static_cast<int>(local.size());
  std::vector<int> counts(static_cast<size_t>(g_size)), displs(static_cast<size_t>(g_size));
  check(MPI_Allgather(&n, 1, MPI_INT, counts.data(), 1, MPI_INT, MPI_COMM_WORLD), "allgather");
  int total = 0;
  for (int r = 0; r < g_size; ++r) displs[r] = total, total += counts[r];
  std::vector<T> out(static_cast<size_t>(total));
  check(MPI_Allgatherv(local.data(), n, type, out.data(), counts.data(), displs.data(), type, MPI_COMM_WORLD),
        "allgather");
  return out;
#else
  return local;
#endif
}
}  // namespace

std::vector<float> allgather(const std::vector<float>& local) { return allgather_impl(local); }
std::vector<int> allgather(const std::vector<int>& local) { return allgather_impl(local); }

void broadcast_parameters(const std::vector<Var>& params) {
  if (g_size == 1) return;
  for (const Var& p : params) {
    Tensor& t = const_cast<Var&>(p).value();
    DERMIS_CHECK(t.dtype() == DType::f32 && t.is_plain(), "broadcast_parameters: parameters must be plain f32");
    broadcast(t.data(), t.numel());
  }
}

// ---- gradient buckets ---------------------------------------------------------------------------

struct GradientReducer::Impl {
  struct Bucket {
    std::vector<size_t> params;
    std::vector<int64_t> offsets;
    int64_t numel = 0;
    std::vector<float> buf;
    size_t pending = 0;
    bool started_in_backward = false;
#ifdef DERMIS_HAVE_MPI
    MPI_Request req = MPI_REQUEST_NULL;
#endif
  };
  std::vector<Var> params;
  std::vector<size_t> bucket_of, slot_of;
  std::vector<bool> reported;
  std::vector<Bucket> buckets;
  size_t next_to_start = 0;
  bool in_finish = false;
  double last_overlap = 0, last_wait = 0;
  int64_t last_start_bytes = 0;  // bytes the most recent start_ready() call launched
  int64_t total_bytes = 0;
  int64_t broken = 0;  // DERMIS_FAULT=break_reducer=K (fault.h): a deliberately wrong average
  int64_t steps = 0;   // finish() calls so far

  void start_ready() {
    int64_t launched = 0;
    while (next_to_start < buckets.size() && buckets[next_to_start].pending == 0) {
      Bucket& b = buckets[next_to_start++];
      launched += b.numel * static_cast<int64_t>(sizeof(float));
      b.started_in_backward = !in_finish;
      if (broken == 2 && next_to_start == buckets.size()) continue;
#ifdef DERMIS_HAVE_MPI
      DERMIS_CHECK(b.numel < (int64_t{1} << 31), "gradient bucket too large");
      check(MPI_Iallreduce(MPI_IN_PLACE, b.buf.data(), static_cast<int>(b.numel), MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD,
                           &b.req),
            "allreduce (gradient bucket)");
#endif
    }
    if (launched > 0) last_start_bytes = launched;
  }

  void progress() {
#ifdef DERMIS_HAVE_MPI
    for (size_t i = 0; i < next_to_start; ++i)
      if (buckets[i].req != MPI_REQUEST_NULL) {
        int done = 0;
        check(MPI_Test(&buckets[i].req, &done, MPI_STATUS_IGNORE), "allreduce progress");
      }
#endif
  }

  void ready(size_t i) {
    if (reported[i]) return;
    Bucket& b = buckets[bucket_of[i]];
    const Tensor g = params[i].grad().plain();
    DERMIS_CHECK(g.dtype() == DType::f32, "GradientReducer: gradients must be f32");
    if (!(broken == 3 && steps > 0 && bucket_of[i] == 0))
      std::memcpy(b.buf.data() + b.offsets[slot_of[i]], g.data(), static_cast<size_t>(g.numel()) * sizeof(float));
    reported[i] = true;
    --b.pending;
    start_ready();
    progress();
  }
};

GradientReducer::GradientReducer(std::vector<Var> params, int64_t bucket_bytes) : impl_(std::make_unique<Impl>()) {
  Impl& m = *impl_;
  m.params = std::move(params);
  m.broken = fault::value("break_reducer").value_or(0);
  const size_t n = m.params.size();
  m.bucket_of.resize(n), m.slot_of.resize(n), m.reported.assign(n, false);
  const int64_t cap = std::max<int64_t>(1, bucket_bytes / static_cast<int64_t>(sizeof(float)));
  for (size_t k = n; k-- > 0;) {  // reverse: the order backward produces the gradients
    if (m.buckets.empty() || m.buckets.back().numel >= cap) m.buckets.emplace_back();
    Impl::Bucket& b = m.buckets.back();
    m.bucket_of[k] = m.buckets.size() - 1;
    m.slot_of[k] = b.params.size();
    b.params.push_back(k);
    b.offsets.push_back(b.numel);
    b.numel += m.params[k].value().numel();
  }
  for (auto& b : m.buckets) {
    b.buf.assign(static_cast<size_t>(b.numel), 0.f);
    b.pending = b.params.size();
    m.total_bytes += b.numel * static_cast<int64_t>(sizeof(float));
  }
  if (g_size > 1) {
    Impl* raw = impl_.get();
    for (size_t k = 0; k < n; ++k) m.params[k].set_grad_ready_hook([raw, k] { raw->ready(k); });
  }
}

GradientReducer::~GradientReducer() {
  for (auto& p : impl_->params) p.set_grad_ready_hook(nullptr);
}

int64_t GradientReducer::buckets() const { return static_cast<int64_t>(impl_->buckets.size()); }
double GradientReducer::overlap_fraction() const { return impl_->last_overlap; }
double GradientReducer::wait_seconds() const { return impl_->last_wait; }
int64_t GradientReducer::bytes_per_step() const { return impl_->total_bytes; }

void GradientReducer::finish() {
  if (g_size == 1) return;
  Impl& m = *impl_;
  m.in_finish = true;
  // Parameters without a gradient this step contribute zeros.
  for (size_t i = 0; i < m.params.size(); ++i)
    if (!m.reported[i]) {
      Impl::Bucket& b = m.buckets[m.bucket_of[i]];
      std::fill_n(b.buf.data() + b.offsets[m.slot_of[i]], m.params[i].value().numel(), 0.f);
      m.reported[i] = true;
      --b.pending;
    }
  m.start_ready();
  // Overlapped: buckets started while backward still had gradients to produce, i.e. all but
  // those launched by the last gradient (and any launched here).
  int64_t early = 0;
  const auto t0 = std::chrono::steady_clock::now();
  for (auto& b : m.buckets) {
#ifdef DERMIS_HAVE_MPI
    check(MPI_Wait(&b.req, MPI_STATUS_IGNORE), "allreduce (gradient bucket)");
#endif
    if (b.started_in_backward) early += b.numel * static_cast<int64_t>(sizeof(float));
  }
  m.last_wait = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  if (m.last_start_bytes > 0 && early >= m.last_start_bytes) early -= m.last_start_bytes;
  m.last_overlap = m.total_bytes > 0 ? static_cast<double>(early) / static_cast<double>(m.total_bytes) : 0;
  const float inv = m.broken == 1 ? 1.f : 1.f / static_cast<float>(g_size);
  for (auto& b : m.buckets) {
    for (size_t s = 0; s < b.params.size(); ++s) {
      Var& p = m.params[b.params[s]];
      Tensor g = Tensor::empty(p.value().shape());
      const float* src = b.buf.data() + b.offsets[s];
      float* dst = g.data();
      for (int64_t e = 0, n = g.numel(); e < n; ++e) dst[e] = src[e] * inv;
      p.set_grad(g);
    }
    b.pending = b.params.size();
    b.started_in_backward = false;
  }
  std::fill(m.reported.begin(), m.reported.end(), false);
  m.next_to_start = 0;
  m.in_finish = false;
  ++m.steps;
}

}  // namespace dermis::dist
