// linear: oneDNN inner product forward, backward-data and backward-weights (+bias).
#include <fmt/format.h>

#include "../dnnl/context.h"
#include "../ops.h"
#include "../trace.h"
#include "../profile.h"
#include "linear.h"

namespace dermis {

namespace {
using dnnl::memory;
using tag = memory::format_tag;
namespace ctx = dnnl_ctx;
using FwdPrim = ctx::Prim<dnnl::inner_product_forward::primitive_desc, dnnl::inner_product_forward>;
using BwdDataPrim = ctx::Prim<dnnl::inner_product_backward_data::primitive_desc, dnnl::inner_product_backward_data>;
using BwdWeiPrim =
    ctx::Prim<dnnl::inner_product_backward_weights::primitive_desc, dnnl::inner_product_backward_weights>;

struct IpGeom {
  int64_t N, IC, OC;
  bool bias;
  memory::desc src() const { return memory::desc({N, IC}, memory::data_type::f32, tag::ab); }
  memory::desc wei() const { return memory::desc({OC, IC}, memory::data_type::f32, tag::ab); }
  memory::desc b() const { return bias ? memory::desc({OC}, memory::data_type::f32, tag::a) : memory::desc(); }
  memory::desc dst() const { return memory::desc({N, OC}, memory::data_type::f32, tag::ab); }
  ctx::Key key(const char* op) const {
    ctx::Key k(op);
    k(N, IC, OC, bias);
    return k;
  }
};

std::shared_ptr<FwdPrim> fwd_prim(const IpGeom& g, dnnl::prop_kind prop) {
  return ctx::cached<FwdPrim>(g.key("ip_fwd")(prop), [&] {
    dnnl::inner_product_forward::desc d(prop, g.src(), g.wei(), g.b(), g.dst());
    return FwdPrim(dnnl::inner_product_forward::primitive_desc(d, ctx::engine()));
  });
}
}  // namespace

namespace detail {

Tensor linear_forward(const Tensor& x, const Tensor& w, const Tensor& b, bool training) {
  const IpGeom g{x.dim(0), x.dim(1), w.dim(0), b.defined()};
  const auto f = fwd_prim(g, training ? dnnl::prop_kind::forward_training : dnnl::prop_kind::forward_inference);
  // f32 throughout: a bf16 input (after pooling under AutocastBF16) is converted here.
  Tensor src = x.to_desc(g.src()), wei = w.plain();
  Tensor dst = Tensor::empty({g.N, g.OC});
  std::unordered_map<int, memory> args{{DNNL_ARG_SRC, src.memory()}, {DNNL_ARG_WEIGHTS, wei.memory()},
                                       {DNNL_ARG_DST, dst.memory()}};
  if (b.defined()) args[DNNL_ARG_BIAS] = b.plain().memory();
  ctx::execute(f->prim, args, "linear forward");
  profile::add_macs(g.N * g.IC * g.OC);
  return dst;
}

Tensor linear_backward_data(const Tensor& dy, const Tensor& w) {
  const IpGeom g{dy.dim(0), w.dim(1), w.dim(0), false};
  const auto bd = ctx::cached<BwdDataPrim>(g.key("ip_bwd_data"), [&] {
    dnnl::inner_product_backward_data::desc d(g.src(), g.wei(), g.dst());
    return BwdDataPrim(dnnl::inner_product_backward_data::primitive_desc(
        d, ctx::engine(), fwd_prim(g, dnnl::prop_kind::forward_training)->pd));
  });
  Tensor d = dy.to_desc(g.dst()), wei = w.plain();
  Tensor dx = Tensor::empty({g.N, g.IC});
  ctx::execute(bd->prim, {{DNNL_ARG_DIFF_DST, d.memory()}, {DNNL_ARG_WEIGHTS, wei.memory()},
                         {DNNL_ARG_DIFF_SRC, dx.memory()}}, "linear backward data");
  return dx;
}

void linear_backward_weights(const Tensor& x, const Tensor& dy, Tensor& dw, Tensor* db) {
  const IpGeom g{x.dim(0), x.dim(1), dy.dim(1), db != nullptr};
  const auto bw = ctx::cached<BwdWeiPrim>(g.key("ip_bwd_wei"), [&] {
    dnnl::inner_product_backward_weights::desc d(g.src(), g.wei(), g.b(), g.dst());
    return BwdWeiPrim(dnnl::inner_product_backward_weights::primitive_desc(
        d, ctx::engine(), fwd_prim(g, dnnl::prop_kind::forward_training)->pd));
  });
  Tensor src = x.to_desc(g.src()), d = dy.to_desc(g.dst());
  dw = Tensor::empty({g.OC, g.IC});
  std::unordered_map<int, memory> a{{DNNL_ARG_DIFF_DST, d.memory()}, {DNNL_ARG_SRC, src.memory()},
                                    {DNNL_ARG_DIFF_WEIGHTS, dw.memory()}};
  if (db) {
    *db = Tensor::empty({g.OC});
    a[DNNL_ARG_DIFF_BIAS] = db->memory();
  }
  ctx::execute(bw->prim, a, "linear backward weights");
}

}  // namespace detail

static Var linear_untraced(const Var& x, const Var& w, const Var& b) {
  DERMIS_CHECK(x.defined() && w.defined(), "linear: input and weight must be defined");
  DERMIS_CHECK(x.ndim() == 2, "linear: input must be 2-D (N, IC), got shape {}; use flatten() first",
               to_string(x.shape()));
  DERMIS_CHECK(w.ndim() == 2, "linear: weight must be 2-D (OC, IC), got shape {}", to_string(w.shape()));
  DERMIS_CHECK(x.dim(1) == w.dim(1), "linear: input has {} features but weight {} expects {}", x.dim(1),
               to_string(w.shape()), w.dim(1));
  if (b.defined())
    DERMIS_CHECK(b.ndim() == 1 && b.dim(0) == w.dim(0), "linear: bias must have shape ({}), got {}", w.dim(0),
                 to_string(b.shape()));
  const bool train = autograd::needs_grad({&x, &w, &b});
  const Tensor src = x.value().dtype() == DType::f32 ? x.value() : x.value().to_dtype(DType::f32);
  Tensor dst = detail::linear_forward(src, w.value(), b.defined() ? b.value() : Tensor(), train);
  if (!train) return Var(dst);
  const Tensor wei = w.value();
  const bool bias = b.defined();
  return autograd::make_result(dst, "linear", {x, w, b}, [src, wei, bias](Node& self) {
    Node& nx = autograd::input(self, 0);
    Node& nw = autograd::input(self, 1);
    Node& nb = autograd::input(self, 2);
    if (nx.requires_grad) autograd::accumulate(nx, detail::linear_backward_data(self.grad, wei));
    if (nw.requires_grad || nb.requires_grad) {
      Tensor dw, db;
      detail::linear_backward_weights(src, self.grad, dw, bias ? &db : nullptr);
      autograd::accumulate(nw, dw);
      if (bias) autograd::accumulate(nb, db);
    }
  });
}

Var linear(const Var& x, const Var& w, const Var& b) {
  trace::Op t;
  Var y = linear_untraced(x, w, b);
  if (t.recording()) t.record(y, "linear", {x, w, b});
  return y;
}

}  // namespace dermis
