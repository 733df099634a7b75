// batch_norm2d: oneDNN batch normalization (scale and shift), training with batch statistics and a
// PyTorch-style running-statistics update, or inference with the running statistics.
#include <fmt/format.h>

#include <cmath>
#include <vector>

#include "../dnnl/context.h"
#include "../ops.h"
#include "../trace.h"
#include "moments.h"

namespace dermis {

namespace {
using dnnl::memory;
namespace ctx = dnnl_ctx;
using FwdPrim = ctx::Prim<dnnl::batch_normalization_forward::primitive_desc, dnnl::batch_normalization_forward>;
using BwdPrim = ctx::Prim<dnnl::batch_normalization_backward::primitive_desc, dnnl::batch_normalization_backward>;

dnnl::normalization_flags flags_for(bool training, bool relu) {
  auto f = dnnl::normalization_flags::use_scale | dnnl::normalization_flags::use_shift;
  if (!training) f = f | dnnl::normalization_flags::use_global_stats;
  if (relu) f = f | dnnl::normalization_flags::fuse_norm_relu;
  return f;
}

std::shared_ptr<FwdPrim> fwd_prim(const memory::desc& md, float eps, bool training, bool relu, dnnl::prop_kind prop) {
  return ctx::cached<FwdPrim>(
      ctx::Key("bn_fwd")(prop, training, relu, eps, md), [&] {
        dnnl::batch_normalization_forward::desc d(prop, md, eps, flags_for(training, relu));
        return FwdPrim(dnnl::batch_normalization_forward::primitive_desc(d, ctx::engine()));
      });
}

void check_vec(const Tensor& t, int64_t C, const char* what) {
  DERMIS_CHECK(t.defined() && t.ndim() == 1 && t.dim(0) == C && t.is_plain(),
               "batch_norm2d: {} must be a plain tensor of shape ({}), got {}", what, C,
               t.defined() ? to_string(t.shape()) : "undefined");
}
// Synchronised batch norm (training): the statistics, and backward's two sums, are reduced over
// every replica by p.sync, so the whole global batch is normalised together. Plain f32, double
// accumulation; with one replica it is ordinary batch norm.
Var sync_batch_norm2d(const Var& x, const Var& weight, const Var& bias, Tensor& running_mean, Tensor& running_var,
                      const BatchNormParams& p) {
  const Tensor xp = x.value().dtype() == DType::f32 ? x.value().plain() : x.value().to_dtype(DType::f32).plain();
  const int64_t N = xp.dim(0), C = xp.dim(1), HW = xp.dim(2) * xp.dim(3);
  const float* px = xp.data();
  const detail::Moments mo = detail::channel_moments(px, N, C, HW, p.sync);
  const double count = mo.count;
  DERMIS_CHECK(count > 1, "batch_norm2d: training needs more than one value per channel");
  Tensor rstd = Tensor::empty({C}), meanf = Tensor::empty({C});
  float *prs = rstd.data(), *pm = meanf.data(), *rm = running_mean.data(), *rv = running_var.data();
  for (int64_t c = 0; c < C; ++c) {
    const double var = mo.var[c], mean = mo.mean[c];
    prs[c] = static_cast<float>(1.0 / std::sqrt(var + p.eps));
    pm[c] = static_cast<float>(mean);
    rm[c] = (1.f - p.momentum) * rm[c] + p.momentum * static_cast<float>(mean);
    rv[c] = (1.f - p.momentum) * rv[c] + p.momentum * static_cast<float>(var * count / (count - 1));
  }
  const Tensor gamma = weight.value().plain(), beta = bias.value().plain();
  Tensor y = Tensor::empty(xp.shape());
  {
    const float *g = gamma.data(), *b = beta.data();
    float* py = y.data();
#pragma omp parallel for collapse(2) schedule(static)
    for (int64_t n = 0; n < N; ++n)
      for (int64_t c = 0; c < C; ++c) {
        const float a = g[c] * prs[c], o = b[c] - pm[c] * a;
        const float* src = px + (n * C + c) * HW;
        float* dst = py + (n * C + c) * HW;
        for (int64_t i = 0; i < HW; ++i) dst[i] = src[i] * a + o;
      }
  }
  const DType xdt = x.value().dtype();
  const StatsReducer sync = p.sync;
  Var out = autograd::make_result(y, "sync_batch_norm2d", {x, weight, bias}, [=](Node& self) {
    const Tensor dy = self.grad.dtype() == DType::f32 ? self.grad.plain() : self.grad.to_dtype(DType::f32).plain();
    const float *pdy = dy.data(), *g = gamma.data(), *rs = rstd.data(), *mu = meanf.data();
    std::vector<double> sums(2 * static_cast<size_t>(C), 0.0);  // sum dy, sum dy * xhat
#pragma omp parallel for schedule(static)
    for (int64_t c = 0; c < C; ++c) {
      double sd = 0, sdx = 0;
      for (int64_t n = 0; n < N; ++n)
        for (int64_t i = 0; i < HW; ++i) {
          const int64_t e = (n * C + c) * HW + i;
          sd += pdy[e];
          sdx += pdy[e] * ((px[e] - mu[c]) * rs[c]);
        }
      sums[c] = sd, sums[C + c] = sdx;
    }
    Tensor dgamma = Tensor::empty({C}), dbeta = Tensor::empty({C});
    for (int64_t c = 0; c < C; ++c) dbeta.data()[c] = static_cast<float>(sums[c]), dgamma.data()[c] = static_cast<float>(sums[C + c]);
    sync(sums.data(), 2 * C);  // the global sums shape dx; the parameter gradients stay local
    Tensor dx = Tensor::empty(xp.shape());
    float* pdx = dx.data();
#pragma omp parallel for collapse(2) schedule(static)
    for (int64_t n = 0; n < N; ++n)
      for (int64_t c = 0; c < C; ++c) {
        const double md = sums[c] / count, mdx = sums[C + c] / count;
        const double k = static_cast<double>(g[c]) * rs[c];
        for (int64_t i = 0; i < HW; ++i) {
          const int64_t e = (n * C + c) * HW + i;
          const double xhat = (px[e] - mu[c]) * rs[c];
          pdx[e] = static_cast<float>(k * (pdy[e] - md - xhat * mdx));
        }
      }
    autograd::accumulate(autograd::input(self, 0), xdt == DType::f32 ? dx : dx.to_dtype(xdt));
    autograd::accumulate(autograd::input(self, 1), dgamma);
    autograd::accumulate(autograd::input(self, 2), dbeta);
  });
  return p.relu ? relu(out) : out;
}
}  // namespace

static Var batch_norm2d_untraced(const Var& x, const Var& weight, const Var& bias, Tensor& running_mean, Tensor& running_var,
                 BatchNormParams p) {
  DERMIS_CHECK(x.defined() && weight.defined() && bias.defined(), "batch_norm2d: input, weight and bias must be defined");
  const Tensor& xv = x.value();
  DERMIS_CHECK(xv.ndim() == 4, "batch_norm2d: input must be 4-D (N, C, H, W), got shape {}", to_string(xv.shape()));
  const int64_t C = xv.dim(1);
  DERMIS_CHECK(weight.ndim() == 1 && weight.dim(0) == C && bias.ndim() == 1 && bias.dim(0) == C,
               "batch_norm2d: input has {} channels but weight is {} and bias is {}", C, to_string(weight.shape()),
               to_string(bias.shape()));
  check_vec(running_mean, C, "running_mean");
  check_vec(running_var, C, "running_var");
  const int64_t count = xv.dim(0) * xv.dim(2) * xv.dim(3);
  DERMIS_CHECK(!p.training || count > 1,
               "batch_norm2d: training needs more than one value per channel (input {}); use eval mode or a larger batch",
               to_string(xv.shape()));

  if (p.training && p.sync) return sync_batch_norm2d(x, weight, bias, running_mean, running_var, p);
  const bool grad = autograd::needs_grad({&x, &weight, &bias});
  const auto prop = (grad || p.training) ? dnnl::prop_kind::forward_training : dnnl::prop_kind::forward_inference;
  const memory::desc md = xv.desc();
  const auto f = fwd_prim(md, p.eps, p.training, p.relu, prop);
  Tensor scale = weight.value().plain(), shift = bias.value().plain();
  Tensor dst = Tensor::with_desc(xv.shape(), f->pd.dst_desc());
  Tensor mean = p.training ? Tensor::empty({C}) : running_mean;
  Tensor var = p.training ? Tensor::empty({C}) : running_var;
  std::unordered_map<int, memory> args{{DNNL_ARG_SRC, xv.memory()},     {DNNL_ARG_DST, dst.memory()},
                                       {DNNL_ARG_SCALE, scale.memory()}, {DNNL_ARG_SHIFT, shift.memory()},
                                       {DNNL_ARG_MEAN, mean.memory()},   {DNNL_ARG_VARIANCE, var.memory()}};
  memory ws;  // the fused ReLU's mask, or state some implementations keep for backward
  if (f->pd.workspace_desc().get_size() > 0) {
    ws = memory(f->pd.workspace_desc(), ctx::engine());
    args[DNNL_ARG_WORKSPACE] = ws;
  }
  ctx::execute(f->prim, args, "batch_norm2d forward");
  if (p.training) {
    const float m = p.momentum, unbias = static_cast<float>(count) / static_cast<float>(count - 1);
    float *rm = running_mean.data(), *rv = running_var.data();
    const float *bm = mean.data(), *bv = var.data();
    for (int64_t c = 0; c < C; ++c) {
      rm[c] = (1.f - m) * rm[c] + m * bm[c];
      rv[c] = (1.f - m) * rv[c] + m * bv[c] * unbias;
    }
  } else {
    // Running statistics may change later (another training step); keep what this forward used.
    mean = mean.clone();
    var = var.clone();
  }
  if (!grad) return Var(dst);

  const float eps = p.eps;
  const bool training = p.training, relu = p.relu;
  Tensor src = xv;
  return autograd::make_result(dst, "batch_norm2d", {x, weight, bias}, [=](Node& self) {
    const auto b = ctx::cached<BwdPrim>(
        ctx::Key("bn_bwd")(training, relu, eps, md), [&] {
          dnnl::batch_normalization_backward::desc d(dnnl::prop_kind::backward, md, md, eps, flags_for(training, relu));
          return BwdPrim(dnnl::batch_normalization_backward::primitive_desc(
              d, ctx::engine(), fwd_prim(md, eps, training, relu, dnnl::prop_kind::forward_training)->pd));
        });
    Tensor dy = self.grad.to_desc(b->pd.diff_dst_desc());
    Tensor dx = Tensor::with_desc(src.shape(), b->pd.diff_src_desc());
    Tensor dscale = Tensor::empty({src.dim(1)}), dshift = Tensor::empty({src.dim(1)});
    std::unordered_map<int, memory> a{
        {DNNL_ARG_SRC, src.memory()},     {DNNL_ARG_DIFF_DST, dy.memory()},         {DNNL_ARG_SCALE, scale.memory()},
        {DNNL_ARG_SHIFT, shift.memory()},  // oneDNN 2.6 refuses to run without it when use_shift is set
        {DNNL_ARG_MEAN, mean.memory()},   {DNNL_ARG_VARIANCE, var.memory()},        {DNNL_ARG_DIFF_SRC, dx.memory()},
        {DNNL_ARG_DIFF_SCALE, dscale.memory()}, {DNNL_ARG_DIFF_SHIFT, dshift.memory()}};
    if (ws) a[DNNL_ARG_WORKSPACE] = ws;
    ctx::execute(b->prim, a, "batch_norm2d backward");
    autograd::accumulate(autograd::input(self, 0), dx);
    autograd::accumulate(autograd::input(self, 1), dscale);
    autograd::accumulate(autograd::input(self, 2), dshift);
  });
}

Var batch_norm2d(const Var& x, const Var& weight, const Var& bias, Tensor& running_mean, Tensor& running_var,
                 BatchNormParams p) {
  trace::Op t;
  Var y = batch_norm2d_untraced(x, weight, bias, running_mean, running_var, p);
  if (t.recording()) t.record(y, "batch_norm2d", {x, weight, bias},
                  {{"training", p.training ? 1 : 0}, {"eps", p.eps}, {"relu", p.relu ? 1 : 0}}, {running_mean, running_var});
  return y;
}

}  // namespace dermis
