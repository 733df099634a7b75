// Naive reference implementations of dermis ops for the forward tests (test_ops_forward.cpp).
//
// Each function is the textbook definition written as plain nested loops, computing in double on
// std::vector inputs with explicit shapes (row-major, NCHW for 4-D). Nothing here uses dermis, so a
// bug in the framework cannot hide in its own reference. Speed is irrelevant; clarity is the point.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <stdexcept>
#include <vector>

namespace ref {

using Dims = std::vector<int64_t>;

// A reference result: its shape and its values (row-major, double).
struct Result {
  Dims shape;
  std::vector<double> v;
};

inline int64_t numel(const Dims& s) {
  int64_t n = 1;
  for (auto d : s) n *= d;
  return n;
}

inline void require(bool cond, const char* what) {
  if (!cond) throw std::invalid_argument(what);
}

// ---- convolution ---------------------------------------------------------------------------
// x (N, C, H, W), w (OC, C/groups, KH, KW), b (OC) or empty -> (N, OC, Ho, Wo).
inline Result conv2d(const std::vector<float>& x, const Dims& xs, const std::vector<float>& w, const Dims& ws,
                     const std::vector<float>& b, int64_t stride, int64_t pad, int64_t dilation, int64_t groups) {
  const int64_t N = xs[0], C = xs[1], H = xs[2], W = xs[3];
  const int64_t OC = ws[0], Cg = ws[1], KH = ws[2], KW = ws[3];
  require(C % groups == 0 && OC % groups == 0 && Cg == C / groups, "ref::conv2d: bad groups");
  require(b.empty() || static_cast<int64_t>(b.size()) == OC, "ref::conv2d: bad bias");
  const int64_t Ho = (H + 2 * pad - dilation * (KH - 1) - 1) / stride + 1;
  const int64_t Wo = (W + 2 * pad - dilation * (KW - 1) - 1) / stride + 1;
  const int64_t OCg = OC / groups;
  Result r{{N, OC, Ho, Wo}, std::vector<double>(N * OC * Ho * Wo)};
  for (int64_t n = 0; n < N; ++n)
    for (int64_t oc = 0; oc < OC; ++oc) {
      const int64_t g = oc / OCg;
      for (int64_t oh = 0; oh < Ho; ++oh)
        for (int64_t ow = 0; ow < Wo; ++ow) {
          double s = b.empty() ? 0.0 : static_cast<double>(b[oc]);
          for (int64_t ci = 0; ci < Cg; ++ci) {
            const int64_t c = g * Cg + ci;
            for (int64_t kh = 0; kh < KH; ++kh) {
              const int64_t ih = oh * stride - pad + kh * dilation;
              if (ih < 0 || ih >= H) continue;
              for (int64_t kw = 0; kw < KW; ++kw) {
                const int64_t iw = ow * stride - pad + kw * dilation;
                if (iw < 0 || iw >= W) continue;
                s += static_cast<double>(x[((n * C + c) * H + ih) * W + iw]) *
                     static_cast<double>(w[((oc * Cg + ci) * KH + kh) * KW + kw]);
              }
            }
          }
          r.v[((n * OC + oc) * Ho + oh) * Wo + ow] = s;
        }
    }
  return r;
}

// ---- pooling -------------------------------------------------------------------------------
// x (N, C, H, W) -> (N, C, Ho, Wo), Ho = (H + 2*pad - kernel) / stride + 1 (floor).
// Max ignores the padding (it is never the maximum). Avg divides by kernel*kernel when
// count_include_pad, else by the number of window elements inside the input.
enum class PoolKind { max, avg_include_pad, avg_exclude_pad };

inline Result pool2d(const std::vector<float>& x, const Dims& xs, PoolKind kind, int64_t kh, int64_t kw,
                     int64_t stride, int64_t pad) {
  const int64_t N = xs[0], C = xs[1], H = xs[2], W = xs[3];
  const int64_t Ho = (H + 2 * pad - kh) / stride + 1, Wo = (W + 2 * pad - kw) / stride + 1;
  Result r{{N, C, Ho, Wo}, std::vector<double>(N * C * Ho * Wo)};
  for (int64_t n = 0; n < N; ++n)
    for (int64_t c = 0; c < C; ++c)
      for (int64_t oh = 0; oh < Ho; ++oh)
        for (int64_t ow = 0; ow < Wo; ++ow) {
          double mx = -std::numeric_limits<double>::infinity(), sum = 0;
          int64_t inside = 0;
          for (int64_t i = 0; i < kh; ++i)
            for (int64_t j = 0; j < kw; ++j) {
              const int64_t ih = oh * stride - pad + i, iw = ow * stride - pad + j;
              if (ih < 0 || ih >= H || iw < 0 || iw >= W) continue;
              const double v = x[((n * C + c) * H + ih) * W + iw];
              mx = std::max(mx, v);
              sum += v;
              ++inside;
            }
          double out = 0;
          switch (kind) {
            case PoolKind::max: out = mx; break;
            case PoolKind::avg_include_pad: out = sum / static_cast<double>(kh * kw); break;
            case PoolKind::avg_exclude_pad: out = sum / static_cast<double>(inside); break;
          }
          r.v[((n * C + c) * Ho + oh) * Wo + ow] = out;
        }
  return r;
}

inline Result max_pool2d(const std::vector<float>& x, const Dims& xs, int64_t k, int64_t stride, int64_t pad) {
  return pool2d(x, xs, PoolKind::max, k, k, stride, pad);
}
inline Result avg_pool2d(const std::vector<float>& x, const Dims& xs, int64_t k, int64_t stride, int64_t pad,
                         bool count_include_pad) {
  return pool2d(x, xs, count_include_pad ? PoolKind::avg_include_pad : PoolKind::avg_exclude_pad, k, k, stride, pad);
}

// x (N, C, H, W) -> (N, C, 1, 1): mean / max over H and W.
inline Result global_avg_pool2d(const std::vector<float>& x, const Dims& xs) {
  const int64_t N = xs[0], C = xs[1], HW = xs[2] * xs[3];
  Result r{{N, C, 1, 1}, std::vector<double>(N * C)};
  for (int64_t nc = 0; nc < N * C; ++nc) {
    double s = 0;
    for (int64_t i = 0; i < HW; ++i) s += x[nc * HW + i];
    r.v[nc] = s / static_cast<double>(HW);
  }
  return r;
}
inline Result global_max_pool2d(const std::vector<float>& x, const Dims& xs) {
  const int64_t N = xs[0], C = xs[1], HW = xs[2] * xs[3];
  Result r{{N, C, 1, 1}, std::vector<double>(N * C)};
  for (int64_t nc = 0; nc < N * C; ++nc) {
    double m = -std::numeric_limits<double>::infinity();
    for (int64_t i = 0; i < HW; ++i) m = std::max(m, static_cast<double>(x[nc * HW + i]));
    r.v[nc] = m;
  }
  return r;
}

// ---- dense ---------------------------------------------------------------------------------
// x (N, IC), w (OC, IC), b (OC) or empty -> (N, OC): y = x w^T + b.
inline Result linear(const std::vector<float>& x, int64_t N, int64_t IC, const std::vector<float>& w, int64_t OC,
                     const std::vector<float>& b) {
  Result r{{N, OC}, std::vector<double>(N * OC)};
  for (int64_t n = 0; n < N; ++n)
    for (int64_t o = 0; o < OC; ++o) {
      double s = b.empty() ? 0.0 : static_cast<double>(b[o]);
      for (int64_t i = 0; i < IC; ++i) s += static_cast<double>(x[n * IC + i]) * static_cast<double>(w[o * IC + i]);
      r.v[n * OC + o] = s;
    }
  return r;
}

// ---- normalisation -------------------------------------------------------------------------
// Per-channel statistics of x (N, C, H, W) over N, H, W: mean and BIASED variance (divide by count).
struct ChannelStats {
  std::vector<double> mean, var_biased, var_unbiased;
};
inline ChannelStats channel_stats(const std::vector<float>& x, const Dims& xs) {
  const int64_t N = xs[0], C = xs[1], HW = xs[2] * xs[3], count = N * HW;
  ChannelStats st{std::vector<double>(C), std::vector<double>(C), std::vector<double>(C)};
  for (int64_t c = 0; c < C; ++c) {
    double s = 0;
    for (int64_t n = 0; n < N; ++n)
      for (int64_t i = 0; i < HW; ++i) s += x[(n * C + c) * HW + i];
    const double m = s / static_cast<double>(count);
    double ss = 0;  // two-pass: sum of squared deviations
    for (int64_t n = 0; n < N; ++n)
      for (int64_t i = 0; i < HW; ++i) {
        const double d = x[(n * C + c) * HW + i] - m;
        ss += d * d;
      }
    st.mean[c] = m;
    st.var_biased[c] = ss / static_cast<double>(count);
    st.var_unbiased[c] = count > 1 ? ss / static_cast<double>(count - 1) : 0.0;
  }
  return st;
}

// y = weight * (x - mean) / sqrt(var + eps) + bias with the given per-channel mean and variance.
inline Result batch_norm2d_with_stats(const std::vector<float>& x, const Dims& xs, const std::vector<double>& mean,
                                      const std::vector<double>& var, const std::vector<float>& weight,
                                      const std::vector<float>& bias, double eps) {
  const int64_t N = xs[0], C = xs[1], HW = xs[2] * xs[3];
  Result r{xs, std::vector<double>(N * C * HW)};
  for (int64_t n = 0; n < N; ++n)
    for (int64_t c = 0; c < C; ++c) {
      const double inv = 1.0 / std::sqrt(var[c] + eps);
      for (int64_t i = 0; i < HW; ++i) {
        const int64_t k = (n * C + c) * HW + i;
        r.v[k] = static_cast<double>(weight[c]) * (x[k] - mean[c]) * inv + static_cast<double>(bias[c]);
      }
    }
  return r;
}

// Training mode: normalise with the batch mean and biased batch variance.
inline Result batch_norm2d_train(const std::vector<float>& x, const Dims& xs, const std::vector<float>& weight,
                                 const std::vector<float>& bias, double eps) {
  const ChannelStats st = channel_stats(x, xs);
  return batch_norm2d_with_stats(x, xs, st.mean, st.var_biased, weight, bias, eps);
}

// PyTorch's running-statistics update: running = (1 - m) * running + m * batch, where the batch
// variance is the UNBIASED one (count / (count - 1) times the biased variance).
inline void batch_norm2d_update_running(const std::vector<float>& x, const Dims& xs, double momentum,
                                        std::vector<double>& running_mean, std::vector<double>& running_var) {
  const ChannelStats st = channel_stats(x, xs);
  for (size_t c = 0; c < running_mean.size(); ++c) {
    running_mean[c] = (1 - momentum) * running_mean[c] + momentum * st.mean[c];
    running_var[c] = (1 - momentum) * running_var[c] + momentum * st.var_unbiased[c];
  }
}

// Eval mode: normalise with the running statistics.
inline Result batch_norm2d_eval(const std::vector<float>& x, const Dims& xs, const std::vector<float>& running_mean,
                                const std::vector<float>& running_var, const std::vector<float>& weight,
                                const std::vector<float>& bias, double eps) {
  const std::vector<double> m(running_mean.begin(), running_mean.end()), v(running_var.begin(), running_var.end());
  return batch_norm2d_with_stats(x, xs, m, v, weight, bias, eps);
}

// ---- elementwise ---------------------------------------------------------------------------
inline Result relu(const std::vector<float>& x, const Dims& xs) {
  Result r{xs, std::vector<double>(x.size())};
  for (size_t i = 0; i < x.size(); ++i) r.v[i] = x[i] > 0 ? static_cast<double>(x[i]) : 0.0;
  return r;
}
inline Result relu(Result r) {  // relu of a reference result (fused ops: bn + relu, add + relu)
  for (double& v : r.v) v = v > 0 ? v : 0.0;
  return r;
}
inline Result sigmoid(const std::vector<float>& x, const Dims& xs) {
  Result r{xs, std::vector<double>(x.size())};
  for (size_t i = 0; i < x.size(); ++i) r.v[i] = 1.0 / (1.0 + std::exp(-static_cast<double>(x[i])));
  return r;
}

// Broadcasting binary op: equal ranks, each dimension equal or 1 in one operand.
enum class BinOp { add, mul };
inline Result broadcast(const std::vector<float>& a, const Dims& as, const std::vector<float>& b, const Dims& bs,
                        BinOp op) {
  require(as.size() == bs.size(), "ref::broadcast: ranks differ");
  const size_t R = as.size();
  Dims os(R);
  for (size_t d = 0; d < R; ++d) {
    require(as[d] == bs[d] || as[d] == 1 || bs[d] == 1, "ref::broadcast: shapes do not broadcast");
    os[d] = std::max(as[d], bs[d]);
  }
  Result r{os, std::vector<double>(numel(os))};
  Dims idx(R, 0);
  for (int64_t q = 0; q < numel(os); ++q) {
    // Unravel q into a multi-index over the output shape.
    int64_t rem = q;
    for (size_t d = R; d-- > 0;) {
      idx[d] = rem % os[d];
      rem /= os[d];
    }
    int64_t ia = 0, ib = 0;
    for (size_t d = 0; d < R; ++d) {
      ia = ia * as[d] + (as[d] == 1 ? 0 : idx[d]);
      ib = ib * bs[d] + (bs[d] == 1 ? 0 : idx[d]);
    }
    const double va = a[ia], vb = b[ib];
    r.v[q] = op == BinOp::add ? va + vb : va * vb;
  }
  return r;
}
inline Result add(const std::vector<float>& a, const Dims& as, const std::vector<float>& b, const Dims& bs) {
  return broadcast(a, as, b, bs, BinOp::add);
}
inline Result mul(const std::vector<float>& a, const Dims& as, const std::vector<float>& b, const Dims& bs) {
  return broadcast(a, as, b, bs, BinOp::mul);
}

// ---- shape ---------------------------------------------------------------------------------
// xs[i] (N, Ci, H, W) -> (N, sum Ci, H, W).
inline Result concat_channels(const std::vector<std::vector<float>>& xs, const std::vector<Dims>& shapes) {
  const int64_t N = shapes[0][0], H = shapes[0][2], W = shapes[0][3];
  int64_t C = 0;
  for (auto& s : shapes) C += s[1];
  Result r{{N, C, H, W}, std::vector<double>(N * C * H * W)};
  for (int64_t n = 0; n < N; ++n) {
    int64_t c0 = 0;
    for (size_t t = 0; t < xs.size(); ++t) {
      const int64_t Ci = shapes[t][1];
      for (int64_t c = 0; c < Ci; ++c)
        for (int64_t i = 0; i < H * W; ++i) r.v[((n * C + c0 + c) * H * W) + i] = xs[t][(n * Ci + c) * H * W + i];
      c0 += Ci;
    }
  }
  return r;
}

// x (N, C, H, W) -> (N, 1, H, W): mean / max over channels.
inline Result channel_mean(const std::vector<float>& x, const Dims& xs) {
  const int64_t N = xs[0], C = xs[1], HW = xs[2] * xs[3];
  Result r{{N, 1, xs[2], xs[3]}, std::vector<double>(N * HW)};
  for (int64_t n = 0; n < N; ++n)
    for (int64_t i = 0; i < HW; ++i) {
      double s = 0;
      for (int64_t c = 0; c < C; ++c) s += x[(n * C + c) * HW + i];
      r.v[n * HW + i] = s / static_cast<double>(C);
    }
  return r;
}
inline Result channel_max(const std::vector<float>& x, const Dims& xs) {
  const int64_t N = xs[0], C = xs[1], HW = xs[2] * xs[3];
  Result r{{N, 1, xs[2], xs[3]}, std::vector<double>(N * HW)};
  for (int64_t n = 0; n < N; ++n)
    for (int64_t i = 0; i < HW; ++i) {
      double m = -std::numeric_limits<double>::infinity();
      for (int64_t c = 0; c < C; ++c) m = std::max(m, static_cast<double>(x[(n * C + c) * HW + i]));
      r.v[n * HW + i] = m;
    }
  return r;
}

// ---- loss ----------------------------------------------------------------------------------
// PyTorch F.cross_entropy(logits, y, weight=w, label_smoothing=e, reduction='mean'):
//   loss = (1-e) * sum_i w[y_i] * -logp_i[y_i] / sum_i w[y_i]
//        + (e/K) * sum_i sum_k w[k] * -logp_i[k] / sum_i w[y_i]
// with logp the log-softmax of each row and w = 1 when no weights are given.
inline double softmax_cross_entropy(const std::vector<float>& logits, int64_t N, int64_t K,
                                    const std::vector<int>& targets, const std::vector<float>& class_weights,
                                    double label_smoothing) {
  std::vector<double> w(K, 1.0);
  for (size_t k = 0; k < class_weights.size(); ++k) w[k] = class_weights[k];
  const double e = label_smoothing;
  double nll = 0, smooth = 0, wsum = 0;
  for (int64_t i = 0; i < N; ++i) {
    double m = -std::numeric_limits<double>::infinity();
    for (int64_t k = 0; k < K; ++k) m = std::max(m, static_cast<double>(logits[i * K + k]));
    double s = 0;
    for (int64_t k = 0; k < K; ++k) s += std::exp(logits[i * K + k] - m);
    const double lse = m + std::log(s);
    const int y = targets[i];
    nll += w[y] * -(logits[i * K + y] - lse);
    for (int64_t k = 0; k < K; ++k) smooth += w[k] * -(logits[i * K + k] - lse);
    wsum += w[y];
  }
  return (1 - e) * nll / wsum + (e / static_cast<double>(K)) * smooth / wsum;
}

}  // namespace ref
