// oneDNN pooling forward/backward with the workspace kept for max pooling.
#include "pooling.h"

#include <fmt/format.h>

#include "context.h"

namespace dermis::dnnl_ctx {

namespace {
using dnnl::memory;
using FwdPrim = Prim<dnnl::pooling_forward::primitive_desc, dnnl::pooling_forward>;
using BwdPrim = Prim<dnnl::pooling_backward::primitive_desc, dnnl::pooling_backward>;

struct Geom {
  PoolSpec s;
  memory::dims src, dst;
  memory::dims strides() const { return {s.sh, s.sw}; }
  memory::dims kernel() const { return {s.kh, s.kw}; }
  memory::dims pad_l() const { return {s.ph, s.pw}; }
  memory::dims pad_r() const {
    return {(dst[2] - 1) * s.sh + s.kh - src[2] - s.ph, (dst[3] - 1) * s.sw + s.kw - src[3] - s.pw};
  }
};

std::shared_ptr<FwdPrim> fwd_prim(const Geom& g, const memory::desc& src_md, dnnl::prop_kind prop) {
  const Key key = std::move(Key("pool_fwd")(prop, g.s.algo, src_md, g.s.kh, g.s.kw, g.s.sh, g.s.sw, g.s.ph, g.s.pw));
  return cached<FwdPrim>(key, [&] {
    dnnl::pooling_forward::desc d(prop, g.s.algo, src_md, memory::desc(g.dst, src_md.data_type(), memory::format_tag::any),
                                  g.strides(), g.kernel(), g.pad_l(), g.pad_r());
    return FwdPrim(dnnl::pooling_forward::primitive_desc(d, engine()));
  });
}

std::shared_ptr<BwdPrim> bwd_prim(const Geom& g, const memory::desc& src_md) {
  const Key key = std::move(Key("pool_bwd")(g.s.algo, src_md, g.s.kh, g.s.kw, g.s.sh, g.s.sw, g.s.ph, g.s.pw));
  return cached<BwdPrim>(key, [&] {
    const auto f = fwd_prim(g, src_md, dnnl::prop_kind::forward_training);
    dnnl::pooling_backward::desc d(g.s.algo, src_md, f->pd.dst_desc(), g.strides(), g.kernel(), g.pad_l(), g.pad_r());
    return BwdPrim(dnnl::pooling_backward::primitive_desc(d, engine(), f->pd));
  });
}
}  // namespace

Var pool2d(const Var& x, const PoolSpec& s) {
  DERMIS_CHECK(x.defined(), "{}: input is undefined", s.name);
  const Tensor& xv = x.value();
  DERMIS_CHECK(xv.ndim() == 4, "{}: input must be 4-D (N, C, H, W), got shape {}", s.name, to_string(xv.shape()));
  DERMIS_CHECK(s.kh >= 1 && s.kw >= 1 && s.sh >= 1 && s.sw >= 1 && s.ph >= 0 && s.pw >= 0,
               "{}: need kernel >= 1, stride >= 1 and pad >= 0", s.name);
  DERMIS_CHECK(s.ph < s.kh && s.pw < s.kw, "{}: padding ({}) must be smaller than the kernel ({})", s.name, s.ph, s.kh);
  const int64_t Ho = (xv.dim(2) + 2 * s.ph - s.kh) / s.sh + 1, Wo = (xv.dim(3) + 2 * s.pw - s.kw) / s.sw + 1;
  DERMIS_CHECK(xv.dim(2) + 2 * s.ph >= s.kh && xv.dim(3) + 2 * s.pw >= s.kw && Ho >= 1 && Wo >= 1,
               "{}: input {} is too small for a {}x{} window with padding {}", s.name, to_string(xv.shape()), s.kh, s.kw,
               s.ph);
  Geom g{s, {xv.dim(0), xv.dim(1), xv.dim(2), xv.dim(3)}, {xv.dim(0), xv.dim(1), Ho, Wo}};
  const bool train = autograd::needs_grad({&x});
  // Plain NCHW inputs run with oneDNN's nchw kernels; blocked inputs keep their layout.
  const memory::desc src_md = xv.desc();
  const auto f = fwd_prim(g, src_md, train ? dnnl::prop_kind::forward_training : dnnl::prop_kind::forward_inference);
  Tensor dst = Tensor::with_desc({g.dst[0], g.dst[1], Ho, Wo}, f->pd.dst_desc());
  std::unordered_map<int, memory> args{{DNNL_ARG_SRC, xv.memory()}, {DNNL_ARG_DST, dst.memory()}};
  memory ws;
  if (train && s.algo == dnnl::algorithm::pooling_max) {
    ws = memory(f->pd.workspace_desc(), engine());
    args[DNNL_ARG_WORKSPACE] = ws;
  }
  execute(f->prim, args, s.name);
  if (!train) return Var(dst);
  return autograd::make_result(dst, s.name, {x}, [g, src_md, ws](Node& self) {
    const auto b = bwd_prim(g, src_md);
    Tensor dy = self.grad.to_desc(b->pd.diff_dst_desc());
    Node& nx = autograd::input(self, 0);
    Tensor dx = Tensor::with_desc(nx.value.shape(), b->pd.diff_src_desc());
    std::unordered_map<int, memory> a{{DNNL_ARG_DIFF_DST, dy.memory()}, {DNNL_ARG_DIFF_SRC, dx.memory()}};
    if (ws) a[DNNL_ARG_WORKSPACE] = ws;
    execute(b->prim, a, g.s.name);
    autograd::accumulate(nx, dx);
  });
}

}  // namespace dermis::dnnl_ctx
