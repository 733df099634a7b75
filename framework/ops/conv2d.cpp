// conv2d: oneDNN convolution forward, backward-data and backward-weights (+bias), with an optional
// fused ReLU (eltwise post-op), or dermis's own Winograd (winograd.h).
//
// Source, weights and destination descriptors use format_tag::any so oneDNN picks its fastest
// (blocked) layouts; the output stays in that layout. Weights are kept plain (OIHW) f32 as
// parameters and reordered to the primitive's layout (and dtype) when it differs. Backward
// primitives take the forward primitive descriptor (without post-op) as their hint.
// The compute dtype is the input's: f32, or bf16 (from AutocastBF16 or a bf16 input), in which
// case activations and their gradients are bf16 while bias and weight gradients stay f32.
//
// Algorithm, per pass (forward, backward data, backward weights) and shape: f32 3x3 stride-1
// convolutions have up to three implementations, oneDNN's direct convolution, oneDNN's Winograd
// F(4x4, 3x3) (AVX-512 only in oneDNN 2.6, channels in multiples of 16) and dermis's Winograd
// (AVX2 and AVX-512, channels in multiples of the vector width). ConvAlgorithm::automatic takes
// oneDNN's Winograd, else dermis's, else direct (a fixed rule: reruns are bit-identical); with
// ConvAlgorithm::fastest each pass of each shape is timed once on its first real inputs (every
// candidate, best of two runs after a warm-up) and the fastest is kept for the process.
// Everything else is direct convolution.
#include <fmt/format.h>

#include <atomic>
#include <chrono>
#include <functional>
#include <mutex>
#include <unordered_map>

#include "../bf16.h"
#include "../cpu.h"
#include "../dnnl/context.h"
#include "conv2d.h"
#include "../trace.h"
#include "winograd.h"

#include "../profile.h"

namespace dermis {

namespace {
using dnnl::memory;
using tag = memory::format_tag;
namespace ctx = dnnl_ctx;

struct ConvGeom {
  int64_t N, C, H, W, OC, KH, KW, Ho, Wo;
  Conv2dParams p;
  bool bias;
  memory::data_type dt = memory::data_type::f32;  // activations and compute: f32, or bf16 (f32 weight gradients)
  dnnl::algorithm alg = dnnl::algorithm::convolution_direct;  // Winograd where conv_algorithm() allows it
  memory::dims src() const { return {N, C, H, W}; }
  memory::dims wei() const {
    return p.groups == 1 ? memory::dims{OC, C, KH, KW} : memory::dims{p.groups, OC / p.groups, C / p.groups, KH, KW};
  }
  memory::dims dst() const { return {N, OC, Ho, Wo}; }
  memory::dims strides() const { return {p.stride, p.stride}; }
  memory::dims dil() const { return {p.dilation - 1, p.dilation - 1}; }
  memory::dims pad_l() const { return {p.pad, p.pad}; }
  memory::dims pad_r() const {
    // oneDNN wants the right padding that makes the output size exact.
    return {(Ho - 1) * p.stride + (KH - 1) * p.dilation + 1 - H - p.pad,
            (Wo - 1) * p.stride + (KW - 1) * p.dilation + 1 - W - p.pad};
  }
  memory::desc any(const memory::dims& d) const { return memory::desc(d, dt, tag::any); }
  memory::desc any_f32(const memory::dims& d) const { return memory::desc(d, memory::data_type::f32, tag::any); }
  memory::desc user_wei() const {
    return memory::desc(wei(), memory::data_type::f32, p.groups == 1 ? tag::oihw : tag::goihw);
  }
  ctx::Key key(const char* op) const {
    ctx::Key k(op);
    k(N, C, H, W, OC, KH, KW, p.stride, p.pad, p.dilation, p.groups, bias, p.relu, dt, alg);
    return k;
  }
};

std::atomic<ConvAlgorithm> g_algorithm{ConvAlgorithm::automatic};

// Whether oneDNN has Winograd forward, backward-data and backward-weights for this geometry on this
// CPU (they need AVX-512); asked once per geometry and remembered.
bool winograd_available(ConvGeom g) {
  if (!cpu::info().winograd) return false;  // none on this CPU (oneDNN 2.6: AVX-512 only)
  g.alg = dnnl::algorithm::convolution_winograd;
  static std::mutex mu;
  static std::unordered_map<ctx::Key, bool, ctx::KeyHash> known;
  const ctx::Key key = g.key("winograd_probe");
  std::lock_guard lock(mu);
  if (auto it = known.find(key); it != known.end()) return it->second;
  bool ok = true;
  try {
    const auto bias_md = g.bias ? g.any_f32({g.OC}) : memory::desc();
    // Only the training kernels: Winograd runs them in eval too (see conv2d_forward).
    dnnl::convolution_forward::primitive_desc fwd({dnnl::prop_kind::forward_training, g.alg, g.any(g.src()),
                                                   g.any(g.wei()), bias_md, g.any(g.dst()), g.strides(), g.dil(),
                                                   g.pad_l(), g.pad_r()},
                                                  ctx::engine());
    dnnl::convolution_backward_data::primitive_desc(
        {g.alg, g.any(g.src()), g.any(g.wei()), g.any(g.dst()), g.strides(), g.dil(), g.pad_l(), g.pad_r()},
        ctx::engine(), fwd);
    dnnl::convolution_backward_weights::primitive_desc(
        {g.alg, g.any(g.src()), g.any_f32(g.wei()), bias_md, g.any(g.dst()), g.strides(), g.dil(), g.pad_l(),
         g.pad_r()},
        ctx::engine(), fwd);
  } catch (const dnnl::error&) {
    ok = false;  // unimplemented here: direct convolution
  }
  known.emplace(key, ok);
  return ok;
}

// Validates the shapes and computes the output size; alg stays direct (see choose).
// xs, ws: input and weight shapes, dt: the input's dtype, b: the bias shape or nullptr.
ConvGeom geometry(const Shape& xs, DType dt, const Shape& ws, const Shape* b, const Conv2dParams& p) {
  DERMIS_CHECK(xs.size() == 4, "conv2d: input must be 4-D (N, C, H, W), got shape {}", to_string(xs));
  DERMIS_CHECK(ws.size() == 4, "conv2d: weight must be 4-D (OC, C/groups, KH, KW), got shape {}", to_string(ws));
  DERMIS_CHECK(p.stride >= 1 && p.pad >= 0 && p.dilation >= 1 && p.groups >= 1,
               "conv2d: need stride >= 1, pad >= 0, dilation >= 1, groups >= 1 (got stride={}, pad={}, dilation={}, "
               "groups={})",
               p.stride, p.pad, p.dilation, p.groups);
  ConvGeom g{xs[0], xs[1], xs[2], xs[3], ws[0], ws[2], ws[3], 0, 0, p, b != nullptr, to_dnnl(dt)};
  DERMIS_CHECK(g.C == ws[1] * p.groups,
               "conv2d: channel mismatch: input {} has {} channels but weight {} expects {} (C/groups={} x groups={})",
               to_string(xs), g.C, to_string(ws), ws[1] * p.groups, ws[1], p.groups);
  DERMIS_CHECK(g.OC % p.groups == 0, "conv2d: {} output channels do not divide into {} groups", g.OC, p.groups);
  if (b)
    DERMIS_CHECK(b->size() == 1 && (*b)[0] == g.OC, "conv2d: bias must have shape ({}), got {}", g.OC, to_string(*b));
  g.Ho = (g.H + 2 * p.pad - p.dilation * (g.KH - 1) - 1) / p.stride + 1;
  g.Wo = (g.W + 2 * p.pad - p.dilation * (g.KW - 1) - 1) / p.stride + 1;
  DERMIS_CHECK(g.Ho >= 1 && g.Wo >= 1,
               "conv2d: input {} is too small for a {}x{} kernel with pad={} dilation={} (output would be {}x{})",
               to_string(xs), g.KH, g.KW, p.pad, p.dilation, g.Ho, g.Wo);
  return g;
}

// The implementations of one pass of a convolution.
enum class Impl { direct, onednn_winograd, dermis_winograd };
enum class Pass { forward, backward_data, backward_weights };

bool winograd_shape(const ConvGeom& g) {
  const Conv2dParams& p = g.p;
  return g.dt == memory::data_type::f32 && p.groups == 1 && p.dilation == 1 && p.stride == 1 && g.KH == 3 &&
         g.KW == 3;
}
bool onednn_winograd_possible(const ConvGeom& g) {
  return winograd_shape(g) && g.p.pad <= 1 && g.C % 16 == 0 && g.OC % 16 == 0 && winograd_available(g);
}
bool dermis_winograd_possible(const ConvGeom& g) { return winograd_shape(g) && winograd::supported(g.C, g.OC, g.p.pad); }

ConvGeom with_impl(ConvGeom g, Impl impl) {
  g.alg = impl == Impl::onednn_winograd ? dnnl::algorithm::convolution_winograd : dnnl::algorithm::convolution_direct;
  return g;
}

// The implementation conv_algorithm() picks for this pass; `run` runs one candidate (the probe).
Impl choose(const ConvGeom& g, Pass pass, const std::function<void(Impl)>& run) {
  const ConvAlgorithm mode = g_algorithm.load();
  if (mode == ConvAlgorithm::direct || !winograd_shape(g)) return Impl::direct;
  if (mode == ConvAlgorithm::winograd) return dermis_winograd_possible(g) ? Impl::dermis_winograd : Impl::direct;
  if (mode == ConvAlgorithm::onednn_winograd)
    return onednn_winograd_possible(g) ? Impl::onednn_winograd : Impl::direct;
  if (mode == ConvAlgorithm::automatic)
    return onednn_winograd_possible(g)   ? Impl::onednn_winograd
           : dermis_winograd_possible(g) ? Impl::dermis_winograd
                                         : Impl::direct;
  std::vector<Impl> candidates{Impl::direct};
  if (onednn_winograd_possible(g)) candidates.push_back(Impl::onednn_winograd);
  if (dermis_winograd_possible(g)) candidates.push_back(Impl::dermis_winograd);
  if (candidates.size() == 1) return Impl::direct;
  static std::mutex mu;
  static std::unordered_map<ctx::Key, Impl, ctx::KeyHash> chosen;
  const ctx::Key key = g.key("conv_choice")(pass);
  {
    std::lock_guard lock(mu);
    if (auto it = chosen.find(key); it != chosen.end()) return it->second;
  }
  Impl best = Impl::direct;
  double best_s = 1e30;
  for (Impl c : candidates) {
    run(c);  // warm-up: creates the primitives, touches the memory
    double s = 1e30;
    for (int rep = 0; rep < 2; ++rep) {
      const auto t0 = std::chrono::steady_clock::now();
      run(c);
      s = std::min(s, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    }
    if (s < best_s) best_s = s, best = c;
  }
  std::lock_guard lock(mu);
  chosen.emplace(key, best);
  ctx::note_impl(pass == Pass::forward ? "conv_choice_fwd" : pass == Pass::backward_data ? "conv_choice_bwd_data"
                                                                                           : "conv_choice_bwd_weights",
                 fmt::format("{}x{}x{}x{}->{} pad {}: {}", g.N, g.C, g.H, g.W, g.OC, g.p.pad,
                             best == Impl::direct ? "direct" : best == Impl::onednn_winograd ? "onednn-winograd"
                                                                                             : "winograd"));
  return best;
}

using FwdPrim = ctx::Prim<dnnl::convolution_forward::primitive_desc, dnnl::convolution_forward>;
using BwdDataPrim = ctx::Prim<dnnl::convolution_backward_data::primitive_desc, dnnl::convolution_backward_data>;
using BwdWeiPrim = ctx::Prim<dnnl::convolution_backward_weights::primitive_desc, dnnl::convolution_backward_weights>;

std::shared_ptr<FwdPrim> forward_prim(const ConvGeom& g, dnnl::prop_kind prop) {
  return ctx::cached<FwdPrim>(g.key("conv_fwd")(prop), [&] {
    auto bias_md = g.bias ? g.any_f32({g.OC}) : memory::desc();
    dnnl::primitive_attr attr;
    if (g.p.relu) {
      dnnl::post_ops ops;
      ops.append_eltwise(1.f, dnnl::algorithm::eltwise_relu, 0.f, 0.f);
      attr.set_post_ops(ops);
    }
    auto make = [&](dnnl::algorithm alg) {
      dnnl::convolution_forward::desc d(prop, alg, g.any(g.src()), g.any(g.wei()), bias_md, g.any(g.dst()),
                                        g.strides(), g.dil(), g.pad_l(), g.pad_r());
      return dnnl::convolution_forward::primitive_desc(d, attr, ctx::engine());
    };
    dnnl::convolution_forward::primitive_desc pd;
    try {
      pd = make(g.alg);
    } catch (const dnnl::error&) {
      if (g.alg == dnnl::algorithm::convolution_direct) throw;
      pd = make(dnnl::algorithm::convolution_direct);  // no Winograd with this post-op here: direct
    }
    FwdPrim p(pd);
    ctx::note_impl(prop == dnnl::prop_kind::forward_inference ? "conv_fwd_inference" : "conv_fwd_training",
                   p.pd.impl_info_str());
    return p;
  });
}

// Backward primitives take the plain convolution's forward (no post-op) as their hint.
ConvGeom without_relu(ConvGeom g) {
  g.p.relu = false;
  return g;
}

std::shared_ptr<BwdDataPrim> bwd_data_prim(const ConvGeom& g) {
  return ctx::cached<BwdDataPrim>(g.key("conv_bwd_data"), [&] {
    dnnl::convolution_backward_data::desc d(g.alg, g.any(g.src()), g.any(g.wei()),
                                            g.any(g.dst()), g.strides(), g.dil(), g.pad_l(), g.pad_r());
    BwdDataPrim p(dnnl::convolution_backward_data::primitive_desc(
        d, ctx::engine(), forward_prim(without_relu(g), dnnl::prop_kind::forward_training)->pd));
    ctx::note_impl("conv_bwd_data", p.pd.impl_info_str());
    return p;
  });
}

std::shared_ptr<BwdWeiPrim> bwd_wei_prim(const ConvGeom& g) {
  return ctx::cached<BwdWeiPrim>(g.key("conv_bwd_wei"), [&] {
    auto bias_md = g.bias ? g.any_f32({g.OC}) : memory::desc();
    dnnl::convolution_backward_weights::desc d(g.alg, g.any(g.src()),
                                               g.any_f32(g.wei()), bias_md, g.any(g.dst()), g.strides(), g.dil(),
                                               g.pad_l(), g.pad_r());
    BwdWeiPrim p(dnnl::convolution_backward_weights::primitive_desc(
        d, ctx::engine(), forward_prim(without_relu(g), dnnl::prop_kind::forward_training)->pd));
    ctx::note_impl("conv_bwd_weights", p.pd.impl_info_str());
    return p;
  });
}

// A plain weight tensor viewed with the primitive's logical weight dims (goihw for groups > 1).
Tensor weight_as_user(const Tensor& w, const ConvGeom& g) { return w.plain().view_desc(g.user_wei()); }
template <class T>
void mask_loop(const T* y, const T* g, T* d, int64_t n) {
#pragma omp parallel for simd schedule(static) if (n > 32768)
  for (int64_t i = 0; i < n; ++i) d[i] = ld(y[i]) > 0.f ? g[i] : T{};
}

// g where out > 0, else 0, in out's layout and dtype.
Tensor relu_mask(const Tensor& grad, const Tensor& out) {
  const Tensor g = grad.to_desc(out.desc());
  Tensor d = Tensor::with_desc(out.shape(), out.desc());
  const int64_t n = static_cast<int64_t>(out.bytes() / dtype_size(out.dtype()));
  if (out.dtype() == DType::f32)
    mask_loop(static_cast<const float*>(out.raw()), static_cast<const float*>(g.raw()), static_cast<float*>(d.raw()), n);
  else
    mask_loop(static_cast<const bf16*>(out.raw()), static_cast<const bf16*>(g.raw()), static_cast<bf16*>(d.raw()), n);
  return d;
}
}  // namespace

void set_conv_algorithm(ConvAlgorithm a) { g_algorithm.store(a); }
ConvAlgorithm conv_algorithm() { return g_algorithm.load(); }

namespace detail {

namespace {
Tensor forward_with(const ConvGeom& g0, Impl impl, const Tensor& x, const Tensor& w, const Tensor& b, bool training,
                    FrozenWeights* frozen) {
  if (impl == Impl::dermis_winograd) {
    if (!frozen) return winograd::forward(x, w, b, g0.p.pad, g0.p.relu);
    const Tensor u = frozen->derived("winograd", [&] { return winograd::forward_filters(w); });
    return winograd::forward_transformed(x, u, g0.OC, b, g0.p.pad, g0.p.relu);
  }
  const ConvGeom g = with_impl(g0, impl);
  // oneDNN's Winograd runs its training kernel in eval too, transforming the weights inside: its
  // inference kernel wants them pre-transformed by a reorder into its own layout, and in oneDNN 2.6
  // that path gives results up to 4e-3 (relative) away from the training kernel's on cbam_small
  // (tests/test_models.cpp, freeze_...), far beyond Winograd's own error.
  const bool train_kernel = training || g.alg == dnnl::algorithm::convolution_winograd;
  const auto fwd = forward_prim(g, train_kernel ? dnnl::prop_kind::forward_training : dnnl::prop_kind::forward_inference);
  Tensor src = x.to_desc(fwd->pd.src_desc());
  Tensor wei = frozen ? frozen->in_layout(fwd->pd.weights_desc())
                      : weight_as_user(w, g).to_desc(fwd->pd.weights_desc());
  Tensor dst = Tensor::with_desc({g.N, g.OC, g.Ho, g.Wo}, fwd->pd.dst_desc());
  std::unordered_map<int, memory> args{{DNNL_ARG_SRC, src.memory()}, {DNNL_ARG_WEIGHTS, wei.memory()},
                                       {DNNL_ARG_DST, dst.memory()}};
  if (b.defined()) args[DNNL_ARG_BIAS] = b.to_desc(fwd->pd.bias_desc()).memory();
  ctx::execute(fwd->prim, args, "conv2d forward");
  return dst;
}

Tensor backward_data_with(const ConvGeom& g0, Impl impl, const Tensor& x, const Tensor& w, const Tensor& dy_in) {
  if (impl == Impl::dermis_winograd) return winograd::backward_data(dy_in, w, g0.p.pad, x.shape());
  const ConvGeom g = with_impl(g0, impl);
  const auto bd = bwd_data_prim(g);
  Tensor dy = dy_in.to_desc(bd->pd.diff_dst_desc());
  Tensor wb = weight_as_user(w, g).to_desc(bd->pd.weights_desc());
  Tensor dx = Tensor::with_desc(x.shape(), bd->pd.diff_src_desc());
  ctx::execute(bd->prim, {{DNNL_ARG_DIFF_DST, dy.memory()}, {DNNL_ARG_WEIGHTS, wb.memory()},
                         {DNNL_ARG_DIFF_SRC, dx.memory()}}, "conv2d backward data");
  return dx;
}

// dw (plain) and, with a bias, db.
void backward_weights_with(const ConvGeom& g0, Impl impl, const Tensor& x, const Tensor& w, const Tensor& dy_in,
                           Tensor& dw, Tensor& db) {
  if (impl == Impl::dermis_winograd) {
    winograd::backward_weights(x, dy_in, g0.p.pad, dw, g0.bias ? &db : nullptr);
    return;
  }
  const ConvGeom g = with_impl(g0, impl);
  const auto bw = bwd_wei_prim(g);
  Tensor dy = dy_in.to_desc(bw->pd.diff_dst_desc());
  Tensor s = x.to_desc(bw->pd.src_desc());
  Tensor dwb = Tensor::with_desc(w.shape(), bw->pd.diff_weights_desc());
  std::unordered_map<int, memory> a{{DNNL_ARG_DIFF_DST, dy.memory()}, {DNNL_ARG_SRC, s.memory()},
                                    {DNNL_ARG_DIFF_WEIGHTS, dwb.memory()}};
  Tensor dbb;
  if (g.bias) {
    dbb = Tensor::with_desc({g.OC}, bw->pd.diff_bias_desc());
    a[DNNL_ARG_DIFF_BIAS] = dbb.memory();
  }
  ctx::execute(bw->prim, a, "conv2d backward weights");
  // diff weights -> the user's plain (OC, C/g, KH, KW) layout
  dw = dwb.to_desc(g.user_wei()).view_desc(plain_desc(w.shape()));
  if (g.bias) db = dbb.plain();
}
}  // namespace

Tensor conv2d_forward(const Tensor& x, const Tensor& w, const Tensor& b, const Conv2dParams& p, bool training,
                      FrozenWeights* frozen) {
  return conv2d_forward_as(x, x.dtype(), w, b, p, training, frozen);
}

// As conv2d_forward, computing in dtype dt (the input converted on its way into the primitive).
Tensor conv2d_forward_as(const Tensor& x, DType dt, const Tensor& w, const Tensor& b, const Conv2dParams& p,
                         bool training, FrozenWeights* frozen) {
  const ConvGeom g = geometry(x.shape(), dt, w.shape(), b.defined() ? &b.shape() : nullptr, p);
  const Impl impl = choose(g, Pass::forward, [&](Impl i) { forward_with(g, i, x, w, b, training, frozen); });
  Tensor dst = forward_with(g, impl, x, w, b, training, frozen);
  profile::add_macs(g.N * g.OC * g.Ho * g.Wo * (g.C / g.p.groups) * g.KH * g.KW);
  return dst;
}

void conv2d_backward(const Tensor& x, const Tensor& w, bool has_bias, const Tensor& dy, const Conv2dParams& p,
                     Tensor* dx, Tensor* dw, Tensor* db) {
  const Shape bshape{w.dim(0)};
  const ConvGeom g =
      geometry(x.shape(), x.dtype(), w.shape(), has_bias ? &bshape : nullptr, {p.stride, p.pad, p.dilation, p.groups});
  // Weight and bias gradients come back f32; dx in x's dtype.
  if (dx) {
    const Impl impl = choose(g, Pass::backward_data, [&](Impl i) { backward_data_with(g, i, x, w, dy); });
    *dx = backward_data_with(g, impl, x, w, dy);
  }
  if (dw || db) {
    Tensor gw, gb;
    const Impl impl = choose(g, Pass::backward_weights, [&](Impl i) { backward_weights_with(g, i, x, w, dy, gw, gb); });
    backward_weights_with(g, impl, x, w, dy, gw, gb);
    if (dw) *dw = gw;
    if (db && g.bias) *db = gb;
  }
}

bool conv2d_uses_winograd(const Shape& x, const Shape& w, const Conv2dParams& p) {
  const ConvGeom g = geometry(x, DType::f32, w, nullptr, p);
  return conv_algorithm() == ConvAlgorithm::onednn_winograd ? onednn_winograd_possible(g)
         : conv_algorithm() == ConvAlgorithm::winograd      ? dermis_winograd_possible(g)
         : conv_algorithm() == ConvAlgorithm::direct ? false
                                                      : onednn_winograd_possible(g) || dermis_winograd_possible(g);
}

}  // namespace detail

namespace detail {

Tensor FrozenWeights::in_layout(const dnnl::memory::desc& d) {
  std::lock_guard lock(mu_);
  for (const Tensor& t : layouts_)
    if (t.desc() == d) return t;
  layouts_.push_back(weight_.view_desc(d.dims().size() == 5 ? memory::desc(d.dims(), memory::data_type::f32, tag::goihw)
                                                            : memory::desc(d.dims(), memory::data_type::f32, tag::oihw))
                         .to_desc(d));
  return layouts_.back();
}

Tensor FrozenWeights::derived(const std::string& name, const std::function<Tensor()>& make) {
  std::lock_guard lock(mu_);
  for (const auto& [n, t] : derived_)
    if (n == name) return t;
  derived_.emplace_back(name, make());
  return derived_.back().second;
}

Var conv2d_frozen(const Var& x, FrozenWeights& frozen, const Conv2dParams& p) {
  DERMIS_CHECK(x.defined(), "conv2d: input must be defined");
  const Tensor& w = frozen.weight();
  const DType dt = autocast_bf16() ? DType::bf16 : x.value().dtype();
  return Var(conv2d_forward_as(x.value(), dt, w, frozen.bias(), p, false, &frozen));
}

}  // namespace detail

static Var conv2d_untraced(const Var& x, const Var& w, const Var& b, Conv2dParams p) {
  DERMIS_CHECK(x.defined() && w.defined(), "conv2d: input and weight must be defined");
  geometry(x.shape(), x.value().dtype(), w.shape(), b.defined() ? &b.shape() : nullptr, p);  // validates first
  DERMIS_CHECK(w.value().dtype() == DType::f32 && (!b.defined() || b.value().dtype() == DType::f32),
               "conv2d: weights and bias must be f32 (bf16 compute converts them on the fly)");
  const bool train = autograd::needs_grad({&x, &w, &b});
  // Under AutocastBF16 the input is converted once; backward keeps the bf16 copy (half the memory).
  const Tensor xin = autocast_bf16() ? x.value().to_dtype(DType::bf16) : x.value();
  Tensor dst = detail::conv2d_forward(xin, w.value(), b.defined() ? b.value() : Tensor(), p, train);
  if (!train) return Var(dst);
  Tensor src = xin, wei = w.value().plain();
  const bool has_bias = b.defined();
  Tensor out = p.relu ? dst : Tensor();  // the ReLU's mask, from the output
  return autograd::make_result(dst, "conv2d", {x, w, b}, [src, wei, has_bias, p, out](Node& self) {
    Node& nx = autograd::input(self, 0);
    Node& nw = autograd::input(self, 1);
    Node& nb = autograd::input(self, 2);
    Tensor dy = self.grad;
    if (p.relu) dy = relu_mask(self.grad, out);  // dy through the fused ReLU
    Tensor dx, dw, db;
    detail::conv2d_backward(src, wei, has_bias, dy, p, nx.requires_grad ? &dx : nullptr,
                            nw.requires_grad ? &dw : nullptr, has_bias && nb.requires_grad ? &db : nullptr);
    if (dx.defined()) autograd::accumulate(nx, dx);
    if (dw.defined()) autograd::accumulate(nw, dw);
    if (db.defined()) autograd::accumulate(nb, db);
  });
}

Var conv2d(const Var& x, const Var& w, const Var& b, Conv2dParams p) {
  trace::Op t;
  Var y = conv2d_untraced(x, w, b, p);
  if (t.recording()) t.record(y, "conv2d", {x, w, b},
                  {{"stride", p.stride}, {"pad", p.pad}, {"dilation", p.dilation}, {"groups", p.groups}, {"relu", p.relu ? 1 : 0}});
  return y;
}

}  // namespace dermis
