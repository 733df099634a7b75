// The CBAM op's memory passes (see cbam.cpp): per-layout, per-type kernels over x in plain NCHW or
// oneDNN's channel-blocked nChw8c / nChw16c. Included by cbam.cpp only.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <type_traits>
#include <vector>

#include "../bf16.h"
#include "../tensor.h"

namespace dermis::cbam_kernels {

template <int B, class T>
struct Kernels;

// Calls f(Kernels<B, T>{}) for the channel block B and the activation type T (float or bf16).
template <class F>
void with_kernels(int64_t B, DType t, F&& f) {
  auto by_type = [&](auto blk) {
    constexpr int b = decltype(blk)::value;
    if (t == DType::f32) f(Kernels<b, float>{});
    else f(Kernels<b, bf16>{});
  };
  if (B == 1) by_type(std::integral_constant<int, 1>{});
  else if (B == 8) by_type(std::integral_constant<int, 8>{});
  else by_type(std::integral_constant<int, 16>{});
}

constexpr int64_t kChunk = 512;  // pixels per work item in the per-pixel passes
constexpr float kNegInf = -std::numeric_limits<float>::infinity();

// Geometry of x in a layout with channel block B (see the top of the file).
struct Geo {
  int64_t N, C, HW, CB, Cp;
  int64_t base(int64_t n, int64_t cb, int64_t B) const { return (n * CB + cb) * HW * B; }
  int64_t chunks() const { return (HW + kChunk - 1) / kChunk; }
};

// Activations (x, y, dy, dx) are T in memory; all arithmetic is f32.
template <int B, class T>
struct Kernels {
  using Elem = T;
  // P1: mean and max (first argmax) over HW per (n, c): avg/mx (N, C), amax (N, C).
  static void pool_hw(const Geo& g, const T* px, float* avg, float* mx, int32_t* amax) {
#pragma omp parallel for collapse(2) schedule(static)
    for (int64_t n = 0; n < g.N; ++n)
      for (int64_t cb = 0; cb < g.CB; ++cb) {
        const T* blk = px + g.base(n, cb, B);
        if constexpr (B == 1) {
          float s = 0.f, m = kNegInf;
#pragma omp simd reduction(+ : s) reduction(max : m)
          for (int64_t hw = 0; hw < g.HW; ++hw) {
            const float v = ld(blk[hw]);
            s += v;
            m = std::max(m, v);
          }
          int64_t a = 0;
          while (a < g.HW - 1 && !(ld(blk[a]) == m)) ++a;
          avg[n * g.C + cb] = s / static_cast<float>(g.HW);
          mx[n * g.C + cb] = m;
          amax[n * g.C + cb] = static_cast<int32_t>(a);
        } else {
          float sum[B], m[B];
          int32_t arg[B];
          for (int i = 0; i < B; ++i) sum[i] = 0.f, m[i] = kNegInf, arg[i] = 0;
          for (int64_t hw = 0; hw < g.HW; ++hw) {
#pragma omp simd
            for (int i = 0; i < B; ++i) {
              const float v = ld(blk[hw * B + i]);
              sum[i] += v;
              const bool gt = v > m[i];
              m[i] = gt ? v : m[i];
              arg[i] = gt ? static_cast<int32_t>(hw) : arg[i];
            }
          }
          for (int64_t i = 0; i < B && cb * B + i < g.C; ++i) {
            const int64_t c = cb * B + i;
            avg[n * g.C + c] = sum[i] / static_cast<float>(g.HW);
            mx[n * g.C + c] = m[i];
            amax[n * g.C + c] = arg[i];
          }
        }
      }
  }

  // P2: max (first argmax) and mean over channels of x * att_c per (n, hw): s (N, 2, HW), carg (N, HW).
  static void pool_c(const Geo& g, const T* px, const float* ac, float* ps, int32_t* carg) {
    const int64_t chunks = g.chunks();
#pragma omp parallel for collapse(2) schedule(static)
    for (int64_t n = 0; n < g.N; ++n)
      for (int64_t q = 0; q < chunks; ++q) {
        const int64_t h0 = q * kChunk, h1 = std::min(g.HW, h0 + kChunk);
        float* smax = ps + n * 2 * g.HW;
        float* smean = smax + g.HW;
        int32_t* arg = carg + n * g.HW;
        for (int64_t hw = h0; hw < h1; ++hw) smax[hw] = kNegInf, smean[hw] = 0.f, arg[hw] = 0;
        for (int64_t cb = 0; cb < g.CB; ++cb) {
          const T* blk = px + g.base(n, cb, B);
          const float* a = ac + n * g.Cp + cb * B;
          if constexpr (B == 1) {
            const float av = a[0];
            const int32_t c = static_cast<int32_t>(cb);
#pragma omp simd
            for (int64_t hw = h0; hw < h1; ++hw) {
              const float v = ld(blk[hw]) * av;
              smean[hw] += v;
              const bool gt = v > smax[hw];
              smax[hw] = gt ? v : smax[hw];
              arg[hw] = gt ? c : arg[hw];
            }
          } else {
            const int64_t nb = std::min<int64_t>(B, g.C - cb * B);
            for (int64_t hw = h0; hw < h1; ++hw) {
              float m = smax[hw], sum = 0.f;
              int32_t ag = arg[hw];
              for (int64_t i = 0; i < nb; ++i) {
                const float v = ld(blk[hw * B + i]) * a[i];
                sum += v;
                if (v > m) m = v, ag = static_cast<int32_t>(cb * B + i);
              }
              smax[hw] = m, arg[hw] = ag, smean[hw] += sum;
            }
          }
        }
        const float invC = 1.f / static_cast<float>(g.C);
        for (int64_t hw = h0; hw < h1; ++hw) smean[hw] *= invC;
      }
  }

  // P3: y = x * att_c (* att_s when as != nullptr); with a residual r (inference), relu(y + r).
  static void gate(const Geo& g, const T* px, const float* ac, const float* as, T* py, const T* res = nullptr) {
    if (res) gate_as(g, px, ac, as, py, [res](int64_t i, float v) { return std::max(v + ld(res[i]), 0.f); });
    else gate_as(g, px, ac, as, py, [](int64_t, float v) { return v; });
  }
  template <class Out>
  static void gate_as(const Geo& g, const T* px, const float* ac, const float* as, T* py, Out out) {
#pragma omp parallel for collapse(2) schedule(static)
    for (int64_t n = 0; n < g.N; ++n)
      for (int64_t cb = 0; cb < g.CB; ++cb) {
        const int64_t base = g.base(n, cb, B);
        const float* a = ac + n * g.Cp + cb * B;
        const float* sp = as ? as + n * g.HW : nullptr;
        if constexpr (B == 1) {
          const float av = a[0];
          if (sp) {
#pragma omp simd
            for (int64_t hw = 0; hw < g.HW; ++hw)
              st(py + base + hw, out(base + hw, ld(px[base + hw]) * av * sp[hw]));
          } else {
#pragma omp simd
            for (int64_t hw = 0; hw < g.HW; ++hw) st(py + base + hw, out(base + hw, ld(px[base + hw]) * av));
          }
        } else {
          for (int64_t hw = 0; hw < g.HW; ++hw) {
            const float s = sp ? sp[hw] : 1.f;
            const int64_t o = base + hw * B;
#pragma omp simd
            for (int i = 0; i < B; ++i) st(py + o + i, out(o + i, ld(px[o + i]) * a[i] * s));
          }
        }
      }
  }

  // Q1: d_att_s (N, HW) = sum_c dy * x * att_c.
  static void datt_s(const Geo& g, const T* dy, const T* px, const float* ac, float* datt) {
    const int64_t chunks = g.chunks();
#pragma omp parallel for collapse(2) schedule(static)
    for (int64_t n = 0; n < g.N; ++n)
      for (int64_t q = 0; q < chunks; ++q) {
        const int64_t h0 = q * kChunk, h1 = std::min(g.HW, h0 + kChunk);
        float* d = datt + n * g.HW;
        for (int64_t hw = h0; hw < h1; ++hw) d[hw] = 0.f;
        for (int64_t cb = 0; cb < g.CB; ++cb) {
          const int64_t base = g.base(n, cb, B);
          const float* a = ac + n * g.Cp + cb * B;
          if constexpr (B == 1) {
            const float av = a[0];
#pragma omp simd
            for (int64_t hw = h0; hw < h1; ++hw) d[hw] += ld(dy[base + hw]) * ld(px[base + hw]) * av;
          } else {
            for (int64_t hw = h0; hw < h1; ++hw) {
              float acc = 0.f;
#pragma omp simd reduction(+ : acc)
              for (int i = 0; i < B; ++i) acc += ld(dy[base + hw * B + i]) * ld(px[base + hw * B + i]) * a[i];
              d[hw] += acc;
            }
          }
        }
      }
  }

  // Q2: dx1 = dy * att_s + channel-pool backward (ds0 to the argmax channel, ds1 / C to all);
  // d_att_c (N, C) = sum_hw dx1 * x; dx = dx1 * att_c. Without the spatial gate dx1 = dy.
  static void dx_channel(const Geo& g, const T* dy, const T* px, const float* ac, const float* as,
                         const float* ds0, const float* ds1, const int32_t* carg, T* pdx, float* datt_c) {
    const float invC = 1.f / static_cast<float>(g.C);
#pragma omp parallel for collapse(2) schedule(static)
    for (int64_t n = 0; n < g.N; ++n)
      for (int64_t cb = 0; cb < g.CB; ++cb) {
        const int64_t base = g.base(n, cb, B);
        const float* a = ac + n * g.Cp + cb * B;
        const float* sp = as ? as + n * g.HW : nullptr;
        const float* d0 = as ? ds0 + n * g.HW : nullptr;
        const float* d1m = as ? ds1 + n * g.HW : nullptr;
        const int32_t* am = as ? carg + n * g.HW : nullptr;
        if constexpr (B == 1) {
          const float av = a[0];
          const int32_t c = static_cast<int32_t>(cb);
          float acc = 0.f;
          if (sp) {
#pragma omp simd reduction(+ : acc)
            for (int64_t hw = 0; hw < g.HW; ++hw) {
              const float d1 = ld(dy[base + hw]) * sp[hw] + d1m[hw] * invC + (am[hw] == c ? d0[hw] : 0.f);
              acc += d1 * ld(px[base + hw]);
              st(pdx + base + hw, d1 * av);
            }
          } else {
#pragma omp simd reduction(+ : acc)
            for (int64_t hw = 0; hw < g.HW; ++hw) {
              const float d1 = ld(dy[base + hw]);
              acc += d1 * ld(px[base + hw]);
              st(pdx + base + hw, d1 * av);
            }
          }
          datt_c[n * g.C + cb] = acc;
        } else {
          float acc[B];
          for (int i = 0; i < B; ++i) acc[i] = 0.f;
          for (int64_t hw = 0; hw < g.HW; ++hw) {
            const float s = sp ? sp[hw] : 1.f, dmean = sp ? d1m[hw] * invC : 0.f, dmax = sp ? d0[hw] : 0.f;
            const int64_t lane = sp ? am[hw] - cb * B : -1;
#pragma omp simd
            for (int i = 0; i < B; ++i) {
              const int64_t e = base + hw * B + i;
              const float d1 = ld(dy[e]) * s + dmean + (lane == i ? dmax : 0.f);
              acc[i] += d1 * ld(px[e]);
              st(pdx + e, d1 * a[i]);  // a[i] = 0 in padded lanes keeps the padding zero
            }
          }
          for (int64_t i = 0; i < B && cb * B + i < g.C; ++i) datt_c[n * g.C + cb * B + i] = acc[i];
        }
      }
  }

  // Q3: pooling backward: dx += d_avg / HW everywhere, dx[argmax_hw] += d_max.
  static void dx_pool(const Geo& g, const float* davg, const float* dmax, const int32_t* amax, T* pdx) {
    const float invHW = 1.f / static_cast<float>(g.HW);
#pragma omp parallel for collapse(2) schedule(static)
    for (int64_t n = 0; n < g.N; ++n)
      for (int64_t cb = 0; cb < g.CB; ++cb) {
        const int64_t base = g.base(n, cb, B);
        const int64_t nb = std::min<int64_t>(B, g.C - cb * B);
        float da[B];
        for (int i = 0; i < B; ++i) da[i] = i < nb ? davg[n * g.C + cb * B + i] * invHW : 0.f;
        if constexpr (B == 1) {
#pragma omp simd
          for (int64_t hw = 0; hw < g.HW; ++hw) st(pdx + base + hw, ld(pdx[base + hw]) + da[0]);
        } else {
          for (int64_t hw = 0; hw < g.HW; ++hw) {
#pragma omp simd
            for (int i = 0; i < B; ++i) st(pdx + base + hw * B + i, ld(pdx[base + hw * B + i]) + da[i]);
          }
        }
        for (int64_t i = 0; i < nb; ++i) {
          const int64_t c = cb * B + i;
          T* e = pdx + base + amax[n * g.C + c] * B + i;
          st(e, ld(*e) + dmax[n * g.C + c]);
        }
      }
  }
};

// Forward passes (inference: no argmax records) over x in NHWC (oneDNN's acdb), the layout of
// oneDNN's bf16 convolutions: element (n, c, hw) at (n * HW + hw) * C + c.
template <class T>
struct Nhwc {
  using Elem = T;
  // P1: avg/mx (N, C) over HW.
  static void pool_hw(const Geo& g, const T* px, float* avg, float* mx) {
#pragma omp parallel for schedule(static)
    for (int64_t n = 0; n < g.N; ++n) {
      const float inv = 1.f / static_cast<float>(g.HW);
      // 64 channels at a time, their sums and maxima in registers across the pixels.
      constexpr int64_t kc = 64;
      for (int64_t c0 = 0; c0 < g.C; c0 += kc) {
        const int64_t nc = std::min(kc, g.C - c0);
        float s[kc], m[kc];
        for (int64_t i = 0; i < kc; ++i) s[i] = 0.f, m[i] = kNegInf;
        const T* col = px + n * g.HW * g.C + c0;
        if (nc == kc) {
          for (int64_t hw = 0; hw < g.HW; ++hw) {
#pragma omp simd
            for (int64_t i = 0; i < kc; ++i) {
              const float v = ld(col[hw * g.C + i]);
              s[i] += v;
              m[i] = std::max(m[i], v);
            }
          }
        } else {
          for (int64_t hw = 0; hw < g.HW; ++hw)
            for (int64_t i = 0; i < nc; ++i) {
              const float v = ld(col[hw * g.C + i]);
              s[i] += v;
              m[i] = std::max(m[i], v);
            }
        }
        for (int64_t i = 0; i < nc; ++i) avg[n * g.C + c0 + i] = s[i] * inv, mx[n * g.C + c0 + i] = m[i];
      }
    }
  }

  // P2: max and mean over channels of x * att_c per (n, hw): s (N, 2, HW).
  static void pool_c(const Geo& g, const T* px, const float* ac, float* ps) {
    const float invC = 1.f / static_cast<float>(g.C);
#pragma omp parallel for collapse(2) schedule(static)
    for (int64_t n = 0; n < g.N; ++n)
      for (int64_t hw = 0; hw < g.HW; ++hw) {
        const T* row = px + (n * g.HW + hw) * g.C;
        const float* a = ac + n * g.Cp;
        float m = kNegInf, sum = 0.f;
#pragma omp simd reduction(+ : sum) reduction(max : m)
        for (int64_t c = 0; c < g.C; ++c) {
          const float v = ld(row[c]) * a[c];
          sum += v;
          m = std::max(m, v);
        }
        ps[n * 2 * g.HW + hw] = m;
        ps[n * 2 * g.HW + g.HW + hw] = sum * invC;
      }
  }

  // P3: y = x * att_c (* att_s when as != nullptr); with a residual r, relu(y + r).
  static void gate(const Geo& g, const T* px, const float* ac, const float* as, T* py, const T* res = nullptr) {
#pragma omp parallel for collapse(2) schedule(static)
    for (int64_t n = 0; n < g.N; ++n)
      for (int64_t hw = 0; hw < g.HW; ++hw) {
        const int64_t base = (n * g.HW + hw) * g.C;
        const float* a = ac + n * g.Cp;
        const float sp = as ? as[n * g.HW + hw] : 1.f;
        if (res) {
#pragma omp simd
          for (int64_t c = 0; c < g.C; ++c)
            st(py + base + c, std::max(ld(px[base + c]) * a[c] * sp + ld(res[base + c]), 0.f));
        } else {
#pragma omp simd
          for (int64_t c = 0; c < g.C; ++c) st(py + base + c, ld(px[base + c]) * a[c] * sp);
        }
      }
  }
};

}  // namespace dermis::cbam_kernels
