// Broadcasting loops: rank padded to 4, stride 0 on broadcast dimensions; OpenMP over outer dims.
#include "broadcast.h"

#include <array>

#include "error.h"

namespace dermis::bcast {

namespace {
using Dims4 = std::array<int64_t, 4>;

Dims4 pad4(const Shape& s) {
  Dims4 d{1, 1, 1, 1};
  const size_t off = 4 - s.size();
  for (size_t i = 0; i < s.size(); ++i) d[off + i] = s[i];
  return d;
}

// Strides of `s` (padded to 4) seen from the output dims `o`: 0 where s broadcasts.
Dims4 bstrides(const Dims4& s, const Dims4& o) {
  Dims4 st{};
  int64_t acc = 1;
  for (int i = 3; i >= 0; --i) {
    st[i] = (s[i] == o[i]) ? acc : 0;
    acc *= s[i];
  }
  return st;
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

Tensor apply(const Tensor& a, const Tensor& b, const Shape& out, BinOp op) {
  const Dims4 o = pad4(out), sa = bstrides(pad4(a.shape()), o), sb = bstrides(pad4(b.shape()), o);
  Tensor r = Tensor::empty(out);
  const float *pa = a.data(), *pb = b.data();
  float* pr = r.data();
  const int64_t outer = o[0] * o[1] * o[2], inner = o[3];
#pragma omp parallel for schedule(static) if (outer * inner > 32768)
  for (int64_t q = 0; q < outer; ++q) {
    const int64_t i0 = q / (o[1] * o[2]), i1 = (q / o[2]) % o[1], i2 = q % o[2];
    const float* xa = pa + i0 * sa[0] + i1 * sa[1] + i2 * sa[2];
    const float* xb = pb + i0 * sb[0] + i1 * sb[1] + i2 * sb[2];
    float* y = pr + q * inner;
    if (op == BinOp::add) {
      for (int64_t j = 0; j < inner; ++j) y[j] = xa[j * sa[3]] + xb[j * sb[3]];
    } else {
      for (int64_t j = 0; j < inner; ++j) y[j] = xa[j * sa[3]] * xb[j * sb[3]];
    }
  }
  return r;
}

Tensor sum_to(const Tensor& g, const Shape& to) {
  if (g.shape() == to) return g;
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
