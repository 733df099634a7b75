// cbam: the fused CBAM block (channel gate + spatial gate), forward and hand-written backward.
//
// x is read in its own layout: plain NCHW, or oneDNN's channel-blocked nChw8c / nChw16c (other
// layouts are reordered to plain). Element (n, c, hw) of a layout with channel block B lives at
// ((n * CB + c / B) * HW + hw) * B + c % B, CB = ceil(C / B); B = 1 is plain NCHW. The output has
// x's layout, so a blocked network stays blocked.
//
// Forward (3 passes over x):  P1 avg/max over H,W per (n, c)  ->  MLP  ->  att_c (N, C)
//                             P2 max/mean over C of x * att_c per (n, hw)  ->  7x7 conv (oneDNN)
//                                -> BN (one channel) -> att_s (N, HW)
//                             P3 out = x * att_c * att_s
// Backward (3 passes):        Q1 d_att_s = sum_c dy * x * att_c  -> BN, conv backward -> ds
//                             Q2 dx1 = dy * att_s + pool_c^T(ds); d_att_c = sum_hw dx1 * x;
//                                dx = dx1 * att_c  -> MLP backward -> d_avg, d_max
//                             Q3 dx += d_avg / HW, dx[argmax_hw] += d_max
// x1 = x * att_c is never stored. The MLP runs on oneDNN inner products, the spatial conv on oneDNN
// convolution. Every reduction of the hand kernels is owned by one thread in a fixed order, so
// results do not depend on the thread count. x, the output and their gradients may be f32 or bf16
// (the kernels are templated on the storage type); attention maps and arithmetic are f32.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <type_traits>
#include <vector>

#include "../bf16.h"
#include "../ops.h"
#include "../profile.h"
#include "../trace.h"
#include "cbam_kernels.h"
#include "conv2d.h"
#include "linear.h"
#include "moments.h"

namespace dermis {

namespace {
using dnnl::memory;
using cbam_kernels::Geo;
using cbam_kernels::with_kernels;

int channel_block(const Tensor& t) {
  if (t.is_plain()) return 1;
  const memory::dims d(t.shape().begin(), t.shape().end());
  const auto dt = to_dnnl(t.dtype());
  if (t.desc() == memory::desc(d, dt, memory::format_tag::nChw16c)) return 16;
  if (t.desc() == memory::desc(d, dt, memory::format_tag::nChw8c)) return 8;
  return 0;
}

bool is_nhwc(const Tensor& t) {
  const memory::dims d(t.shape().begin(), t.shape().end());
  return d.size() == 4 && t.desc() == memory::desc(d, to_dnnl(t.dtype()), memory::format_tag::acdb);
}

// Calls f(cbam_kernels::Nhwc<T>{}) for the activation type.
template <class F>
void with_nhwc(DType t, F&& f) {
  if (t == DType::f32) f(cbam_kernels::Nhwc<float>{});
  else f(cbam_kernels::Nhwc<bf16>{});
}

inline float sigm(float v) { return 1.f / (1.f + std::exp(-v)); }

// Everything backward needs, computed by the forward.
struct Saved {
  int64_t N, C, H, W, HW, B, CB, Cp, Cr, k;
  Tensor x;                             // input, layout with block B
  std::vector<float> att_c;             // (N, Cp), zero in padded channels
  std::vector<int32_t> amax_hw;         // (N, C) argmax over HW for the max pool
  Tensor mlp_in, mlp_h;                 // (2N, C) [avg; max], (2N, Cr) post-ReLU
  Tensor fc1_w, fc2_w, conv_w;          // plain weights
  float bn_gamma = 0, inv_std = 0;
  double bn_count = 0;                  // values the spatial BN statistics cover (all replicas with sync BN)
  bool channel_only = false, training = true;
  StatsReducer sync;                    // synchronised BN: backward's sums over every replica too
  Tensor s;                             // (N, 2, H, W) spatial pooling, plain
  std::vector<int32_t> carg;            // (N, HW) argmax over channels of x1
  std::vector<float> zhat, att_s;       // (N, HW)
};

void check_weights(const Tensor& x, const CbamWeights& w, const CbamParams& p, const Tensor& rm, const Tensor& rv) {
  DERMIS_CHECK(x.ndim() == 4, "cbam: input must be 4-D (N, C, H, W), got {}", to_string(x.shape()));
  const int64_t C = x.dim(1);
  DERMIS_CHECK(w.fc1_w.defined() && w.fc1_b.defined() && w.fc2_w.defined() && w.fc2_b.defined(),
               "cbam: the channel-gate MLP weights and biases must all be defined");
  const int64_t Cr = w.fc1_w.dim(0);
  DERMIS_CHECK(w.fc1_w.shape() == Shape({Cr, C}) && w.fc1_b.shape() == Shape({Cr}) &&
                   w.fc2_w.shape() == Shape({C, Cr}) && w.fc2_b.shape() == Shape({C}),
               "cbam: input has {} channels but the MLP is fc1 {} + {}, fc2 {} + {}; expected ({}, {}), ({}), ({}, {}), ({})",
               C, to_string(w.fc1_w.shape()), to_string(w.fc1_b.shape()), to_string(w.fc2_w.shape()),
               to_string(w.fc2_b.shape()), Cr, C, Cr, C, Cr, C);
  if (p.channel_only) return;
  DERMIS_CHECK(w.conv_w.defined() && w.bn_w.defined() && w.bn_b.defined(),
               "cbam: the spatial gate needs conv_w, bn_w and bn_b (or set channel_only)");
  const int64_t k = w.conv_w.value().ndim() == 4 ? w.conv_w.dim(2) : 0;
  DERMIS_CHECK(w.conv_w.shape() == Shape({1, 2, k, k}) && k % 2 == 1,
               "cbam: spatial conv weight must be (1, 2, k, k) with odd k, got {}", to_string(w.conv_w.shape()));
  DERMIS_CHECK(w.bn_w.shape() == Shape({1}) && w.bn_b.shape() == Shape({1}) && rm.defined() && rv.defined() &&
                   rm.shape() == Shape({1}) && rv.shape() == Shape({1}),
               "cbam: spatial batch norm weight, bias and running statistics must have shape (1)");
  DERMIS_CHECK(!p.training || x.dim(0) * x.dim(2) * x.dim(3) > 1,
               "cbam: training the spatial gate's batch norm needs more than one value (input {})", to_string(x.shape()));
}

}  // namespace

static Var cbam_untraced(const Var& xv, const CbamWeights& w, Tensor& bn_running_mean, Tensor& bn_running_var, const CbamParams& p) {
  DERMIS_CHECK(xv.defined(), "cbam: input is undefined");
  check_weights(xv.value(), w, p, bn_running_mean, bn_running_var);
  auto S = std::make_shared<Saved>();
  Saved& s = *S;
  s.x = xv.value();
  const bool grads = autograd::needs_grad({&xv, &w.fc1_w, &w.fc1_b, &w.fc2_w, &w.fc2_b, &w.conv_w, &w.bn_w, &w.bn_b});
  s.B = channel_block(s.x);
  // Inference reads NHWC (the layout of oneDNN's bf16 convolutions) as it is; training reorders
  // it to plain, for which the backward kernels exist.
  const bool nhwc = !grads && s.B == 0 && is_nhwc(s.x);
  if (nhwc) s.B = 1;  // geometry as plain: CB = C, Cp = C
  if (s.B == 0) {
    s.x = s.x.plain();
    s.B = 1;
  }
  s.N = s.x.dim(0), s.C = s.x.dim(1), s.H = s.x.dim(2), s.W = s.x.dim(3), s.HW = s.H * s.W;
  s.CB = (s.C + s.B - 1) / s.B, s.Cp = s.CB * s.B, s.Cr = w.fc1_w.dim(0);
  s.channel_only = p.channel_only;
  s.training = p.training;
  const int64_t N = s.N, C = s.C, HW = s.HW, Cp = s.Cp, Cr = s.Cr;
  const Geo geo{N, C, HW, s.CB, Cp};
  const void* px = s.x.raw();
  const DType dt = s.x.dtype();

  // P1: average and max over H, W -> the MLP's input rows [avg; max] (2N, C).
  s.mlp_in = Tensor::zeros({2 * N, C});
  s.amax_hw.assign(N * C, 0);
  if (nhwc)
    with_nhwc(dt, [&](auto k) {
      using K = decltype(k);
      K::pool_hw(geo, static_cast<const typename K::Elem*>(px), s.mlp_in.data(), s.mlp_in.data() + N * C);
    });
  else
    with_kernels(s.B, dt, [&](auto k) {
      using K = decltype(k);
      K::pool_hw(geo, static_cast<const typename K::Elem*>(px), s.mlp_in.data(), s.mlp_in.data() + N * C,
                 s.amax_hw.data());
    });

  // Shared MLP on [avg; max] (2N rows; oneDNN inner products, which count their MACs), summed per
  // sample, sigmoid.
  s.fc1_w = w.fc1_w.value().plain();
  s.fc2_w = w.fc2_w.value().plain();
  s.mlp_h = detail::linear_forward(s.mlp_in, s.fc1_w, w.fc1_b.value(), grads);
  for (float* h = s.mlp_h.data(), *e = h + 2 * N * Cr; h < e; ++h) *h = std::max(*h, 0.f);
  const Tensor o = detail::linear_forward(s.mlp_h, s.fc2_w, w.fc2_b.value(), grads);
  const float* po = o.data();
  s.att_c.assign(N * Cp, 0.f);
  for (int64_t n = 0; n < N; ++n)
    for (int64_t c = 0; c < C; ++c) s.att_c[n * Cp + c] = sigm(po[n * C + c] + po[(N + n) * C + c]);

  if (!p.channel_only) {
    // P2: max and mean over channels of x1 = x * att_c -> s (N, 2, H, W).
    s.s = Tensor::empty({N, 2, s.H, s.W});
    s.carg.assign(N * HW, 0);
    if (nhwc)
      with_nhwc(dt, [&](auto k) {
        using K = decltype(k);
        K::pool_c(geo, static_cast<const typename K::Elem*>(px), s.att_c.data(), s.s.data());
      });
    else
      with_kernels(s.B, dt, [&](auto k) {
        using K = decltype(k);
        K::pool_c(geo, static_cast<const typename K::Elem*>(px), s.att_c.data(), s.s.data(), s.carg.data());
      });

    // k x k conv (oneDNN), then batch norm over the single channel, then sigmoid.
    s.conv_w = w.conv_w.value().plain();
    s.k = s.conv_w.dim(2);
    Tensor z = detail::conv2d_forward(s.s, s.conv_w, Tensor(), {.pad = s.k / 2}, grads).plain();
    const float* pz = z.data();
    const int64_t M = N * HW;
    double mean, var;
    s.bn_count = static_cast<double>(M);
    if (p.training) {
      // With synchronised batch norm the sums (and the count) are over every replica's batch.
      const detail::Moments mo = detail::channel_moments(pz, N, 1, HW, p.sync);
      s.bn_count = mo.count, mean = mo.mean[0], var = mo.var[0];
      s.sync = p.sync;
      float* rm = bn_running_mean.data();
      float* rv = bn_running_var.data();
      rm[0] = static_cast<float>((1 - p.bn_momentum) * rm[0] + p.bn_momentum * mean);
      rv[0] = static_cast<float>((1 - p.bn_momentum) * rv[0] + p.bn_momentum * var * s.bn_count / (s.bn_count - 1));
    } else {
      mean = bn_running_mean.data()[0];
      var = bn_running_var.data()[0];
    }
    s.inv_std = static_cast<float>(1.0 / std::sqrt(var + p.bn_eps));
    s.bn_gamma = w.bn_w.value().plain().data()[0];
    const float beta = w.bn_b.value().plain().data()[0];
    s.zhat.resize(M);
    s.att_s.resize(M);
    for (int64_t i = 0; i < M; ++i) {
      s.zhat[i] = static_cast<float>((pz[i] - mean) * s.inv_std);
      s.att_s[i] = sigm(s.bn_gamma * s.zhat[i] + beta);
    }
    if (p.attention_out) *p.attention_out = Tensor::from_vector({N, 1, s.H, s.W}, s.att_s);
  }

  // P3: out = x * att_c (* att_s), in x's layout.
  Tensor out = Tensor::with_desc(s.x.shape(), s.x.desc());
  const bool spatial = !p.channel_only;
  Tensor res;
  if (p.residual.defined()) {
    DERMIS_CHECK(!grads, "cbam: a fused residual is for inference only (no gradients)");
    DERMIS_CHECK(p.residual.shape() == s.x.shape(), "cbam: residual {} does not match input {}",
                 to_string(p.residual.shape()), to_string(s.x.shape()));
    res = p.residual.to_dtype(dt).to_desc(s.x.desc());
  }
  auto gate = [&](auto k) {
    using K = decltype(k);
    using E = typename K::Elem;
    K::gate(geo, static_cast<const E*>(px), s.att_c.data(), spatial ? s.att_s.data() : nullptr,
            static_cast<E*>(out.raw()), res.defined() ? static_cast<const E*>(res.raw()) : nullptr);
  };
  if (nhwc) with_nhwc(dt, gate);
  else with_kernels(s.B, dt, gate);

  std::vector<Var> inputs = {xv, w.fc1_w, w.fc1_b, w.fc2_w, w.fc2_b};
  if (spatial) inputs.insert(inputs.end(), {w.conv_w, w.bn_w, w.bn_b});
  if (!grads) return Var(out);

  return autograd::make_result(out, "cbam", inputs, [S](Node& self) {
    const Saved& s = *S;
    const int64_t N = s.N, C = s.C, HW = s.HW, Cp = s.Cp, Cr = s.Cr;
    const Geo geo{N, C, HW, s.CB, Cp};
    Tensor dyt = self.grad.to_desc(s.x.desc());
    const void* dy = dyt.raw();
    const void* px = s.x.raw();
    const DType dt = s.x.dtype();
    const float* ac = s.att_c.data();
    const bool spatial = !s.channel_only;

    // Spatial gate backward: Q1, BN (one channel), conv (oneDNN).
    std::vector<float> ds0(spatial ? N * HW : 0), ds1(spatial ? N * HW : 0);
    float dgamma = 0, dbeta = 0;
    Tensor dconv;
    if (spatial) {
      std::vector<float> datt(N * HW);
      with_kernels(s.B, dt, [&](auto k) {
        using K = decltype(k);
        using E = typename K::Elem;
        K::datt_s(geo, static_cast<const E*>(dy), static_cast<const E*>(px), ac, datt.data());
      });
      const int64_t M = N * HW;
      std::vector<float> dzb(M);
      double sum_d = 0, sum_dz = 0;
      for (int64_t i = 0; i < M; ++i) {
        dzb[i] = datt[i] * s.att_s[i] * (1.f - s.att_s[i]);
        sum_d += dzb[i];
        sum_dz += static_cast<double>(dzb[i]) * s.zhat[i];
      }
      dgamma = static_cast<float>(sum_dz);
      dbeta = static_cast<float>(sum_d);
      double sums[2] = {sum_d, sum_dz};
      if (s.training && s.sync) s.sync(sums, 2);  // sync BN: dz uses the global sums
      const double cnt = s.bn_count;
      Tensor dz = Tensor::empty({N, 1, s.H, s.W});
      float* pdz = dz.data();
      const float g = s.bn_gamma * s.inv_std;
      for (int64_t i = 0; i < M; ++i)
        pdz[i] = s.training ? static_cast<float>(g * (dzb[i] - sums[0] / cnt - s.zhat[i] * sums[1] / cnt)) : g * dzb[i];
      Tensor dsv;
      Node& nconv = autograd::input(self, 5);
      detail::conv2d_backward(s.s, s.conv_w, false, dz, {.pad = s.k / 2}, &dsv,
                              nconv.requires_grad ? &dconv : nullptr, nullptr);
      Tensor dsp = dsv.plain();
      for (int64_t n = 0; n < N; ++n) {
        std::memcpy(ds0.data() + n * HW, dsp.data() + n * 2 * HW, HW * sizeof(float));
        std::memcpy(ds1.data() + n * HW, dsp.data() + n * 2 * HW + HW, HW * sizeof(float));
      }
    }

    // Q2: dx1 -> d_att_c and dx = dx1 * att_c.
    Tensor dx = Tensor::with_desc(s.x.shape(), s.x.desc());
    void* pdx = dx.raw();
    std::vector<float> datt_c(N * C);
    with_kernels(s.B, dt, [&](auto k) {
      using K = decltype(k);
      using E = typename K::Elem;
      K::dx_channel(geo, static_cast<const E*>(dy), static_cast<const E*>(px), ac, spatial ? s.att_s.data() : nullptr,
                    ds0.data(), ds1.data(), s.carg.data(), static_cast<E*>(pdx), datt_c.data());
    });

    // MLP backward (oneDNN inner products). Both halves (avg rows, max rows) get the same d_o.
    Tensor d_o = Tensor::empty({2 * N, C});
    float* pdo = d_o.data();
    for (int64_t n = 0; n < N; ++n)
      for (int64_t c = 0; c < C; ++c) {
        const float a = ac[n * Cp + c];
        pdo[n * C + c] = pdo[(N + n) * C + c] = datt_c[n * C + c] * a * (1.f - a);
      }
    Tensor dh = detail::linear_backward_data(d_o, s.fc2_w);  // (2N, Cr), then through the ReLU
    float* pdh = dh.data();
    const float* ph = s.mlp_h.data();
    for (int64_t i = 0; i < 2 * N * Cr; ++i)
      if (!(ph[i] > 0.f)) pdh[i] = 0.f;
    const Tensor din = detail::linear_backward_data(dh, s.fc1_w);  // (2N, C)
    Node &n1w = autograd::input(self, 1), &n1b = autograd::input(self, 2), &n2w = autograd::input(self, 3),
         &n2b = autograd::input(self, 4);
    if (n2w.requires_grad || n2b.requires_grad) {
      Tensor dw2, db2;
      detail::linear_backward_weights(s.mlp_h, d_o, dw2, &db2);
      autograd::accumulate(n2w, dw2);
      autograd::accumulate(n2b, db2);
    }
    if (n1w.requires_grad || n1b.requires_grad) {
      Tensor dw1, db1;
      detail::linear_backward_weights(s.mlp_in, dh, dw1, &db1);
      autograd::accumulate(n1w, dw1);
      autograd::accumulate(n1b, db1);
    }

    // Q3: pooling backward into dx.
    with_kernels(s.B, dt, [&](auto k) {
      using K = decltype(k);
      K::dx_pool(geo, din.data(), din.data() + N * C, s.amax_hw.data(), static_cast<typename K::Elem*>(pdx));
    });
    autograd::accumulate(autograd::input(self, 0), dx);
    if (spatial) {
      if (dconv.defined()) autograd::accumulate(autograd::input(self, 5), dconv);
      autograd::accumulate(autograd::input(self, 6), Tensor::full({1}, dgamma));
      autograd::accumulate(autograd::input(self, 7), Tensor::full({1}, dbeta));
    }
  });
}

Var cbam(const Var& xv, const CbamWeights& w, Tensor& bn_running_mean, Tensor& bn_running_var, const CbamParams& p) {
  trace::Op t;
  Var y = cbam_untraced(xv, w, bn_running_mean, bn_running_var, p);
  if (t.recording()) t.record(y, "cbam",
                  {xv, w.fc1_w, w.fc1_b, w.fc2_w, w.fc2_b, w.conv_w, w.bn_w, w.bn_b},
                  {{"channel_only", p.channel_only ? 1 : 0}, {"training", p.training ? 1 : 0}, {"eps", p.bn_eps},
                   {"residual", p.residual.defined() ? 1 : 0}},
                  {bn_running_mean, bn_running_var});
  return y;
}

Var cbam_composed(const Var& x, const CbamWeights& w, Tensor& bn_running_mean, Tensor& bn_running_var,
                  const CbamParams& p) {
  DERMIS_CHECK(x.defined(), "cbam_composed: input is undefined");
  DERMIS_CHECK(!p.residual.defined(), "cbam_composed: no fused residual; use add_relu on its output");
  check_weights(x.value(), w, p, bn_running_mean, bn_running_var);
  auto mlp = [&](const Var& v) { return linear(relu(linear(v, w.fc1_w, w.fc1_b)), w.fc2_w, w.fc2_b); };
  const int64_t N = x.dim(0), C = x.dim(1);
  Var a = mlp(flatten(global_avg_pool2d(x))) + mlp(flatten(global_max_pool2d(x)));
  Var x1 = x * reshape(sigmoid(a), {N, C, 1, 1});
  if (p.channel_only) return x1;
  Var s = concat_channels({channel_max(x1), channel_mean(x1)});
  Var z = conv2d(s, w.conv_w, {}, {.pad = w.conv_w.dim(2) / 2});
  z = batch_norm2d(z, w.bn_w, w.bn_b, bn_running_mean, bn_running_var,
                   {.training = p.training, .momentum = p.bn_momentum, .eps = p.bn_eps, .sync = p.sync});
  Var att = sigmoid(z);
  if (p.attention_out) *p.attention_out = att.value().plain().clone();
  return x1 * att;
}

}  // namespace dermis
