// Broadcasting: the result shape; the binary op on oneDNN's binary primitive; the gradient sum
// (sum_to) on oneDNN's reduction primitive where it has a jitted kernel (reductions over trailing
// dimensions, e.g. (N, C, H, W) -> (N, C, 1, 1)), else a hand loop: oneDNN 2.6 reduces over C of
// (N, C, H, W) with its reference kernel: 57-84 ms per call at 32x64x56x56 (ONEDNN_VERBOSE), more
// than the whole composed CBAM forward + backward takes with the hand loop (bench/cbam).
#include "broadcast.h"

#include <fmt/format.h>

#include <array>
#include <optional>
#include <string>

#include "dnnl/context.h"
#include "error.h"

namespace dermis::bcast {

namespace {
namespace ctx = dnnl_ctx;
using dnnl::memory;
using BinaryPrim = ctx::Prim<dnnl::binary::primitive_desc, dnnl::binary>;
// oneDNN's reduction for one shape pair, or none where oneDNN has only its reference kernel.
struct Reduction {
  std::optional<ctx::Prim<dnnl::reduction::primitive_desc, dnnl::reduction>> p;
};

// A plain (row-major) f32 descriptor of shape s (rank 1 to 4).
memory::desc plain_md(const Shape& s) {
  using t = memory::format_tag;
  const size_t r = s.size();
  return memory::desc(memory::dims(s.begin(), s.end()), memory::data_type::f32,
                      r == 1 ? t::a : r == 2 ? t::ab : r == 3 ? t::abc : t::abcd);
}

using Dims4 = std::array<int64_t, 4>;

Dims4 pad4(const Shape& s) {
  Dims4 d{1, 1, 1, 1};
  const size_t off = 4 - s.size();
  for (size_t i = 0; i < s.size(); ++i) d[off + i] = s[i];
  return d;
}

}  // namespace

Shape result_shape(const Shape& a, const Shape& b, const char* op) {
  DERMIS_CHECK(a.size() == b.size() && !a.empty() && a.size() <= 4,
               "{}: operands need the same rank (1 to 4) to broadcast, got {} and {}", op, to_string(a), to_string(b));
  Shape r(a.size());
  for (size_t i = 0; i < a.size(); ++i) {
    DERMIS_CHECK(a[i] == b[i] || a[i] == 1 || b[i] == 1,
                 "{}: shapes {} and {} do not broadcast (dimension {}: {} vs {}; each must match or be 1)", op,
                 to_string(a), to_string(b), i, a[i], b[i]);
    r[i] = std::max(a[i], b[i]);
  }
  return r;
}

// out = a (op) b on oneDNN's binary primitive (broadcasting either operand), plain f32 layouts of
// the operands' rank: 1.1-1.5x faster than a hand loop in CBAM's composition (bench/cbam).
Tensor apply(const Tensor& a, const Tensor& b, const Shape& out, BinOp op) {
  const auto alg = op == BinOp::add ? dnnl::algorithm::binary_add : dnnl::algorithm::binary_mul;
  const auto prim = ctx::cached<BinaryPrim>(ctx::Key("binary")(op, a.shape(), b.shape(), out), [&] {
    return BinaryPrim(dnnl::binary::primitive_desc({alg, plain_md(a.shape()), plain_md(b.shape()), plain_md(out)},
                                                   ctx::engine()));
  });
  Tensor r = Tensor::empty(out);
  ctx::execute(prim->prim, {{DNNL_ARG_SRC_0, a.memory()}, {DNNL_ARG_SRC_1, b.memory()}, {DNNL_ARG_DST, r.memory()}},
               op == BinOp::add ? "broadcast add" : "broadcast mul");
  return r;
}

Tensor sum_to(const Tensor& g, const Shape& to) {
  if (g.shape() == to) return g;
  const auto onednn = ctx::cached<Reduction>(ctx::Key("reduce_sum")(g.shape(), to), [&] {
        dnnl::reduction::primitive_desc pd({dnnl::algorithm::reduction_sum, plain_md(g.shape()), plain_md(to), 0.f, 0.f},
                                           ctx::engine());
        Reduction r;
        if (std::string(pd.impl_info_str()).rfind("ref", 0) != 0) r.p.emplace(pd);
        return r;
      });
  if (onednn->p) {  // a jitted kernel (e.g. over trailing H, W)
    Tensor r = Tensor::empty(to);
    ctx::execute(onednn->p->prim, {{DNNL_ARG_SRC, g.memory()}, {DNNL_ARG_DST, r.memory()}}, "broadcast gradient sum");
    return r;
  }
  const Dims4 o = pad4(g.shape()), t = pad4(to);
  Dims4 go{};  // strides of g
  int64_t acc = 1;
  for (int i = 3; i >= 0; --i) {
    go[i] = acc;
    acc *= o[i];
  }
  Dims4 red;  // extent summed over in each dim
  for (int i = 0; i < 4; ++i) red[i] = (t[i] == 1 && o[i] != 1) ? o[i] : 1;
  Tensor r = Tensor::empty(to);
  const float* pg = g.data();
  float* pr = r.data();
  const int64_t n = numel_of(to);
#pragma omp parallel for schedule(static) if (numel_of(g.shape()) > 32768)
  for (int64_t q = 0; q < n; ++q) {
    const int64_t i0 = q / (t[1] * t[2] * t[3]), i1 = (q / (t[2] * t[3])) % t[1], i2 = (q / t[3]) % t[2],
                  i3 = q % t[3];
    const float* base = pg + i0 * go[0] + i1 * go[1] + i2 * go[2] + i3 * go[3];
    double s = 0;
    for (int64_t r0 = 0; r0 < red[0]; ++r0)
      for (int64_t r1 = 0; r1 < red[1]; ++r1)
        for (int64_t r2 = 0; r2 < red[2]; ++r2) {
          const float* p = base + r0 * go[0] + r1 * go[1] + r2 * go[2];
          for (int64_t r3 = 0; r3 < red[3]; ++r3) s += p[r3 * go[3]];
        }
    pr[q] = static_cast<float>(s);
  }
  return r;
}

}  // namespace dermis::bcast
