// oneDNN eltwise primitives with backward, cached per layout and algorithm.
#include "eltwise.h"

#include <fmt/format.h>

#include "context.h"

namespace dermis::dnnl_ctx {

namespace {
using dnnl::memory;
using FwdPrim = Prim<dnnl::eltwise_forward::primitive_desc, dnnl::eltwise_forward>;
using BwdPrim = Prim<dnnl::eltwise_backward::primitive_desc, dnnl::eltwise_backward>;

Key key_of(const char* op, dnnl::algorithm a, float alpha, float beta, const memory::desc& md) {
  Key k(op);
  k(a, alpha, beta, md);
  return k;
}

std::shared_ptr<FwdPrim> fwd_prim(dnnl::algorithm a, float alpha, float beta, const memory::desc& md, dnnl::prop_kind prop) {
  return cached<FwdPrim>(key_of("elt_fwd", a, alpha, beta, md)(prop),
                         [&] {
                           dnnl::eltwise_forward::desc d(prop, a, md, alpha, beta);
                           return FwdPrim(dnnl::eltwise_forward::primitive_desc(d, engine()));
                         });
}
}  // namespace

Var eltwise(const Var& x, dnnl::algorithm algo, float alpha, float beta, bool use_dst, const char* name) {
  DERMIS_CHECK(x.defined(), "{}: input is undefined", name);
  const Tensor& xv = x.value();
  const bool grad = autograd::needs_grad({&x});
  const memory::desc md = xv.desc();
  const auto f = fwd_prim(algo, alpha, beta, md, grad ? dnnl::prop_kind::forward_training : dnnl::prop_kind::forward_inference);
  Tensor y = Tensor::with_desc(xv.shape(), f->pd.dst_desc());
  execute(f->prim, {{DNNL_ARG_SRC, xv.memory()}, {DNNL_ARG_DST, y.memory()}}, name);
  if (!grad) return Var(y);
  Tensor saved = use_dst ? y : xv;
  return autograd::make_result(y, name, {x}, [=](Node& self) {
    const auto b = cached<BwdPrim>(key_of("elt_bwd", algo, alpha, beta, md), [&] {
      dnnl::eltwise_backward::desc d(algo, md, md, alpha, beta);
      return BwdPrim(dnnl::eltwise_backward::primitive_desc(
          d, engine(), fwd_prim(algo, alpha, beta, md, dnnl::prop_kind::forward_training)->pd));
    });
    Tensor dy = self.grad.to_desc(md);
    Tensor dx = Tensor::with_desc(saved.shape(), b->pd.diff_src_desc());
    execute(b->prim,
            {{use_dst ? DNNL_ARG_DST : DNNL_ARG_SRC, saved.memory()}, {DNNL_ARG_DIFF_DST, dy.memory()},
             {DNNL_ARG_DIFF_SRC, dx.memory()}},
            name);
    autograd::accumulate(autograd::input(self, 0), dx);
  });
}

}  // namespace dermis::dnnl_ctx
