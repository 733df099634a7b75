// Augmentations (see augment.h). Everything here is per image and single-threaded; the loader
// runs images in parallel.
#include "augment.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include <immintrin.h>

#include "../error.h"

namespace dermis::data {

void AugmentOptions::validate() const {
  DERMIS_CHECK(scale_min > 0 && scale_min <= scale_max && scale_max <= 1,
               "augmentation: crop scale range [{}, {}] must satisfy 0 < min <= max <= 1", scale_min, scale_max);
  DERMIS_CHECK(ratio_min > 0 && ratio_min <= ratio_max, "augmentation: crop ratio range [{}, {}] is invalid",
               ratio_min, ratio_max);
  DERMIS_CHECK(rotate_degrees >= 0 && rotate_degrees <= 180, "augmentation: rotation {} must be in [0, 180] degrees",
               rotate_degrees);
  DERMIS_CHECK(brightness >= 0 && brightness < 1 && contrast >= 0 && contrast < 1 && saturation >= 0 &&
                   saturation < 1,
               "augmentation: brightness/contrast/saturation jitter must be in [0, 1)");
  DERMIS_CHECK(hue >= 0 && hue <= 0.5f, "augmentation: hue jitter must be in [0, 0.5] turns");
}

Warp sample_train_warp(int src_w, int src_h, int out_w, int out_h, const AugmentOptions& o, Generator& rng) {
  // Random resized crop (torchvision's RandomResizedCrop sampling, 10 tries, then a centre crop).
  const double area = static_cast<double>(src_w) * src_h;
  double cw = 0, ch = 0, cx = 0, cy = 0;
  bool found = false;
  const double lr0 = std::log(o.ratio_min), lr1 = std::log(o.ratio_max);
  for (int t = 0; t < 10 && !found; ++t) {
    const double a = area * (o.scale_min + (o.scale_max - o.scale_min) * rng.uniform());
    const double r = std::exp(lr0 + (lr1 - lr0) * rng.uniform());
    const double w = std::sqrt(a * r), h = std::sqrt(a / r);
    if (w <= src_w && h <= src_h) {
      cw = w, ch = h;
      cx = (src_w - w) * rng.uniform() + w / 2;
      cy = (src_h - h) * rng.uniform() + h / 2;
      found = true;
    }
  }
  if (!found) {
    const double r = static_cast<double>(src_w) / src_h;
    if (r < o.ratio_min) cw = src_w, ch = src_w / o.ratio_min;
    else if (r > o.ratio_max) ch = src_h, cw = src_h * o.ratio_max;
    else cw = src_w, ch = src_h;
    cx = src_w / 2.0, cy = src_h / 2.0;
  }
  const bool hf = o.hflip && rng.uniform() < 0.5f, vf = o.vflip && rng.uniform() < 0.5f;
  const int k = o.rot90 ? static_cast<int>(rng.randint(4)) : 0;
  const double theta = o.rotate_degrees > 0 ? (2 * rng.uniform() - 1) * o.rotate_degrees * M_PI / 180 : 0.0;

  // Output pixel centre -> normalised centred coords p in [-1/2, 1/2]^2 -> flips, quarter turns ->
  // crop-box pixels -> free rotation -> original image. Every step is affine, so is the map.
  auto map = [&](double u, double v, double& x, double& y) {
    double px = (u + 0.5) / out_w - 0.5, py = (v + 0.5) / out_h - 0.5;
    if (hf) px = -px;
    if (vf) py = -py;
    for (int i = 0; i < k; ++i) {
      const double t = px;
      px = -py;
      py = t;
    }
    const double sx = px * cw, sy = py * ch;
    x = cx + std::cos(theta) * sx - std::sin(theta) * sy;
    y = cy + std::sin(theta) * sx + std::cos(theta) * sy;
  };
  Warp w;
  double x0, y0, x1, y1, x2, y2;
  map(0, 0, x0, y0);
  map(1, 0, x1, y1);
  map(0, 1, x2, y2);
  // map() gives the source point for the output pixel CENTRE; express it for pixel index (u, v).
  w.a11 = x1 - x0, w.a21 = y1 - y0, w.a12 = x2 - x0, w.a22 = y2 - y0;
  w.b1 = x0, w.b2 = y0;
  w.crop_w = cw, w.crop_h = ch;
  return w;
}

namespace {
// Axis-aligned warps (no free rotation, even quarter turns): x depends on u only and y on v only,
// so bilinear sampling separates: blend two source rows, then gather along the row.
void render_separable(const Image& src, float ax, float cx, float by, float cy, int out_w, int out_h, float* chw) {
  const int W = src.width, H = src.height;
  const int64_t hw = static_cast<int64_t>(out_w) * out_h;
  std::vector<int> xi0(out_w), xi1(out_w);
  std::vector<float> xw(out_w);
  int lo = W, hi = 0;
  for (int u = 0; u < out_w; ++u) {
    const float x = ax * u + cx, f = std::floor(x);
    xi0[u] = std::clamp(static_cast<int>(f), 0, W - 1);
    xi1[u] = std::clamp(static_cast<int>(f) + 1, 0, W - 1);
    xw[u] = x - f;
    lo = std::min(lo, std::min(xi0[u], xi1[u]));
    hi = std::max(hi, std::max(xi0[u], xi1[u]));
  }
  const int span = hi - lo + 1;
  std::vector<float> row(static_cast<size_t>(span) * 3);
  for (int v = 0; v < out_h; ++v) {
    const float y = by * v + cy, f = std::floor(y);
    const int y0 = std::clamp(static_cast<int>(f), 0, H - 1), y1 = std::clamp(static_cast<int>(f) + 1, 0, H - 1);
    const float fy = y - f;
    const uint8_t* r0 = src.rgb.data() + (static_cast<int64_t>(y0) * W + lo) * 3;
    const uint8_t* r1 = src.rgb.data() + (static_cast<int64_t>(y1) * W + lo) * 3;
#pragma omp simd
    for (int i = 0; i < span * 3; ++i) row[i] = r0[i] + fy * (static_cast<float>(r1[i]) - r0[i]);
    float* R = chw + static_cast<int64_t>(v) * out_w;
    float* G = R + hw;
    float* B = G + hw;
    for (int u = 0; u < out_w; ++u) {
      const float* p = row.data() + (xi0[u] - lo) * 3;
      const float* q = row.data() + (xi1[u] - lo) * 3;
      const float t = xw[u];
      R[u] = p[0] + t * (q[0] - p[0]);
      G[u] = p[1] + t * (q[1] - p[1]);
      B[u] = p[2] + t * (q[2] - p[2]);
    }
  }
}
}  // namespace

void render_warp(const Image& src, int orig_w, int orig_h, const Warp& w, int out_w, int out_h, float* chw) {
  // Decoded-image pixel-index coordinates are affine in (u, v) too: x = ax*u + bx*v + cx.
  const double sx = static_cast<double>(src.width) / orig_w, sy = static_cast<double>(src.height) / orig_h;
  const float ax = static_cast<float>(w.a11 * sx), bx = static_cast<float>(w.a12 * sx),
              cx = static_cast<float>(w.b1 * sx - 0.5);
  const float ay = static_cast<float>(w.a21 * sy), by = static_cast<float>(w.a22 * sy),
              cy = static_cast<float>(w.b2 * sy - 0.5);
  if (std::abs(bx) < 1e-9f && std::abs(ay) < 1e-9f) return render_separable(src, ax, cx, by, cy, out_w, out_h, chw);
  if (std::abs(ax) < 1e-9f && std::abs(by) < 1e-9f) {
    // Odd quarter turns: x depends on v and y on u. Render the transposed image separably, then
    // transpose it into place.
    std::vector<float> t(static_cast<size_t>(3) * out_w * out_h);
    render_separable(src, bx, cx, ay, cy, out_h, out_w, t.data());
    const int64_t hw = static_cast<int64_t>(out_w) * out_h;
    for (int c = 0; c < 3; ++c)
      for (int v = 0; v < out_h; ++v)
        for (int u = 0; u < out_w; ++u) chw[c * hw + static_cast<int64_t>(v) * out_w + u] = t[c * hw + static_cast<int64_t>(u) * out_h + v];
    return;
  }
  const int64_t hw = static_cast<int64_t>(out_w) * out_h;
  const int W = src.width, H = src.height;
  const uint8_t* p = src.rgb.data();
  float* R = chw;
  float* G = chw + hw;
  float* B = chw + 2 * hw;
  for (int v = 0; v < out_h; ++v) {
    const float x0 = bx * v + cx, y0 = by * v + cy;
    const float x1 = x0 + ax * (out_w - 1), y1 = y0 + ay * (out_w - 1);
    // Fast path: the whole row samples strictly inside the image, so no clamping is needed.
    const bool inside = std::min(x0, x1) >= 0 && std::max(x0, x1) < W - 1 && std::min(y0, y1) >= 0 &&
                        std::max(y0, y1) < H - 1;
    const int64_t row = static_cast<int64_t>(v) * out_w;
    for (int u = 0; u < out_w; ++u) {
      const float x = x0 + ax * u, y = y0 + ay * u;
      int ix0, ix1, iy0, iy1;
      float fx, fy;
      if (inside) {
        ix0 = static_cast<int>(x), iy0 = static_cast<int>(y);
        fx = x - ix0, fy = y - iy0;
        ix1 = ix0 + 1, iy1 = iy0 + 1;
      } else {
        const float flx = std::floor(x), fly = std::floor(y);
        fx = x - flx, fy = y - fly;
        ix0 = std::clamp(static_cast<int>(flx), 0, W - 1), ix1 = std::clamp(static_cast<int>(flx) + 1, 0, W - 1);
        iy0 = std::clamp(static_cast<int>(fly), 0, H - 1), iy1 = std::clamp(static_cast<int>(fly) + 1, 0, H - 1);
      }
      const uint8_t* a = p + (static_cast<int64_t>(iy0) * W + ix0) * 3;
      const uint8_t* b = p + (static_cast<int64_t>(iy0) * W + ix1) * 3;
      const uint8_t* c = p + (static_cast<int64_t>(iy1) * W + ix0) * 3;
      const uint8_t* d = p + (static_cast<int64_t>(iy1) * W + ix1) * 3;
      const float w00 = (1 - fx) * (1 - fy), w01 = fx * (1 - fy), w10 = (1 - fx) * fy, w11 = fx * fy;
      R[row + u] = w00 * a[0] + w01 * b[0] + w10 * c[0] + w11 * d[0];
      G[row + u] = w00 * a[1] + w01 * b[1] + w10 * c[1] + w11 * d[1];
      B[row + u] = w00 * a[2] + w01 * b[2] + w10 * c[2] + w11 * d[2];
    }
  }
}

namespace {
// For each output index along one axis: the source indices and weights of an area (box) filter over
// [x0, x0 + len) split into n outputs; bilinear taps when enlarging.
struct Taps {
  std::vector<int> start, count;
  std::vector<float> w;  // concatenated
  std::vector<int> offset;
};
Taps make_taps(double x0, double len, int n, int size) {
  Taps t;
  const double step = len / n;
  for (int i = 0; i < n; ++i) {
    t.offset.push_back(static_cast<int>(t.w.size()));
    if (step <= 1.0) {  // enlarging: bilinear between the two nearest centres
      const double c = x0 + (i + 0.5) * step - 0.5, f = std::floor(c);
      const int a = std::clamp(static_cast<int>(f), 0, size - 1), b = std::clamp(static_cast<int>(f) + 1, 0, size - 1);
      const float wb = static_cast<float>(c - f);
      t.start.push_back(a);
      if (b == a) {
        t.count.push_back(1);
        t.w.push_back(1.f);
      } else {
        t.count.push_back(2);
        t.w.push_back(1.f - wb);
        t.w.push_back(wb);
      }
      continue;
    }
    const double lo = x0 + i * step, hi = lo + step;
    const int a = std::max(0, static_cast<int>(std::floor(lo))), b = std::min(size, static_cast<int>(std::ceil(hi)));
    double sum = 0;
    std::vector<float> ws;
    for (int j = a; j < b; ++j) {
      const double cover = std::min<double>(hi, j + 1) - std::max<double>(lo, j);
      ws.push_back(static_cast<float>(std::max(0.0, cover)));
      sum += std::max(0.0, cover);
    }
    if (ws.empty() || sum <= 0) {  // region outside the image: replicate the nearest edge pixel
      t.start.push_back(std::clamp(static_cast<int>(lo), 0, size - 1));
      t.count.push_back(1);
      t.w.push_back(1.f);
      continue;
    }
    t.start.push_back(a);
    t.count.push_back(static_cast<int>(ws.size()));
    for (float& x : ws) t.w.push_back(static_cast<float>(x / sum));
  }
  return t;
}
}  // namespace

void resize_area(const Image& src, double x0, double y0, double rw, double rh, int out_w, int out_h, float* chw) {
  const Taps tx = make_taps(x0, rw, out_w, src.width), ty = make_taps(y0, rh, out_h, src.height);
  // Horizontal pass over the needed rows into a (rows x out_w x 3) buffer, then vertical.
  const int r0 = ty.start.front(), r1 = ty.start.back() + ty.count.back();
  std::vector<float> tmp(static_cast<size_t>(r1 - r0) * out_w * 3);
  for (int y = r0; y < r1; ++y) {
    const uint8_t* row = src.rgb.data() + static_cast<int64_t>(y) * src.width * 3;
    float* t = tmp.data() + static_cast<size_t>(y - r0) * out_w * 3;
    for (int i = 0; i < out_w; ++i) {
      float acc[3] = {0, 0, 0};
      const float* w = tx.w.data() + tx.offset[i];
      for (int j = 0; j < tx.count[i]; ++j) {
        const uint8_t* px = row + (tx.start[i] + j) * 3;
        for (int c = 0; c < 3; ++c) acc[c] += w[j] * px[c];
      }
      for (int c = 0; c < 3; ++c) t[i * 3 + c] = acc[c];
    }
  }
  const int64_t hw = static_cast<int64_t>(out_w) * out_h;
  for (int v = 0; v < out_h; ++v) {
    const float* w = ty.w.data() + ty.offset[v];
    for (int i = 0; i < out_w; ++i) {
      float acc[3] = {0, 0, 0};
      for (int j = 0; j < ty.count[v]; ++j) {
        const float* t = tmp.data() + (static_cast<size_t>(ty.start[v] + j - r0) * out_w + i) * 3;
        for (int c = 0; c < 3; ++c) acc[c] += w[j] * t[c];
      }
      for (int c = 0; c < 3; ++c) chw[c * hw + static_cast<int64_t>(v) * out_w + i] = acc[c];
    }
  }
}

void render_eval(const Image& src, EvalMode mode, int out_w, int out_h, float* chw) {
  if (mode == EvalMode::resize) return resize_area(src, 0, 0, src.width, src.height, out_w, out_h, chw);
  const double r = static_cast<double>(out_w) / out_h;
  double w = src.width, h = src.height;
  if (w / h > r) w = h * r;
  else h = w / r;
  resize_area(src, (src.width - w) / 2, (src.height - h) / 2, w, h, out_w, out_h, chw);
}

namespace {
// Branch-free clamp to [0, 255] (compiles to maxss/minss and vectorises; std::clamp does not).
inline float clamp255(float x) {
  const float y = x > 0.f ? x : 0.f;
  return y < 255.f ? y : 255.f;
}
}  // namespace

void color_jitter(float* chw, int64_t hw, const AugmentOptions& o, Generator& rng) {
  float* R = chw;
  float* G = chw + hw;
  float* B = chw + 2 * hw;
  const float b = 1 + o.brightness * (2 * rng.uniform() - 1);
  const float c = 1 + o.contrast * (2 * rng.uniform() - 1);
  const float s = 1 + o.saturation * (2 * rng.uniform() - 1);
  const float h = o.hue * (2 * rng.uniform() - 1);
  // SSE (x86-64 baseline) by hand: GCC does not vectorise these clamps without -ffast-math.
  const __m128 zero = _mm_setzero_ps(), top = _mm_set1_ps(255.f), vb = _mm_set1_ps(b);
  const __m128 kr = _mm_set1_ps(0.299f), kg = _mm_set1_ps(0.587f), kb = _mm_set1_ps(0.114f);
  auto clampv = [&](__m128 x) { return _mm_min_ps(_mm_max_ps(x, zero), top); };
  const int64_t n4 = hw / 4 * 4;
  // Pass 1: brightness (clamped) and the mean gray level that contrast blends towards.
  __m128 acc = zero;
  for (int64_t i = 0; i < n4; i += 4) {
    const __m128 r = clampv(_mm_mul_ps(_mm_loadu_ps(R + i), vb)), g = clampv(_mm_mul_ps(_mm_loadu_ps(G + i), vb)),
                 bl = clampv(_mm_mul_ps(_mm_loadu_ps(B + i), vb));
    _mm_storeu_ps(R + i, r), _mm_storeu_ps(G + i, g), _mm_storeu_ps(B + i, bl);
    acc = _mm_add_ps(acc, _mm_add_ps(_mm_mul_ps(kr, r), _mm_add_ps(_mm_mul_ps(kg, g), _mm_mul_ps(kb, bl))));
  }
  float lanes[4];
  _mm_storeu_ps(lanes, acc);
  double mean = static_cast<double>(lanes[0]) + lanes[1] + lanes[2] + lanes[3];
  for (int64_t i = n4; i < hw; ++i) {
    R[i] = clamp255(R[i] * b), G[i] = clamp255(G[i] * b), B[i] = clamp255(B[i] * b);
    mean += 0.299f * R[i] + 0.587f * G[i] + 0.114f * B[i];
  }
  const float m = static_cast<float>(mean / hw);
  // Pass 2: contrast, then saturation, each clamped as torchvision does.
  const __m128 vm = _mm_set1_ps(m), vc = _mm_set1_ps(c), vs = _mm_set1_ps(s);
  for (int64_t i = 0; i < n4; i += 4) {
    const __m128 r = clampv(_mm_add_ps(vm, _mm_mul_ps(vc, _mm_sub_ps(_mm_loadu_ps(R + i), vm))));
    const __m128 g = clampv(_mm_add_ps(vm, _mm_mul_ps(vc, _mm_sub_ps(_mm_loadu_ps(G + i), vm))));
    const __m128 bl = clampv(_mm_add_ps(vm, _mm_mul_ps(vc, _mm_sub_ps(_mm_loadu_ps(B + i), vm))));
    const __m128 gray = _mm_add_ps(_mm_mul_ps(kr, r), _mm_add_ps(_mm_mul_ps(kg, g), _mm_mul_ps(kb, bl)));
    _mm_storeu_ps(R + i, clampv(_mm_add_ps(gray, _mm_mul_ps(vs, _mm_sub_ps(r, gray)))));
    _mm_storeu_ps(G + i, clampv(_mm_add_ps(gray, _mm_mul_ps(vs, _mm_sub_ps(g, gray)))));
    _mm_storeu_ps(B + i, clampv(_mm_add_ps(gray, _mm_mul_ps(vs, _mm_sub_ps(bl, gray)))));
  }
  for (int64_t i = n4; i < hw; ++i) {
    const float r = clamp255(m + c * (R[i] - m)), g = clamp255(m + c * (G[i] - m)), bl = clamp255(m + c * (B[i] - m));
    const float gray = 0.299f * r + 0.587f * g + 0.114f * bl;
    R[i] = clamp255(gray + s * (r - gray)), G[i] = clamp255(gray + s * (g - gray)), B[i] = clamp255(gray + s * (bl - gray));
  }
  if (h != 0) {  // rotate chroma in YIQ space by 2*pi*h
    const float ca = std::cos(2 * static_cast<float>(M_PI) * h), sa = std::sin(2 * static_cast<float>(M_PI) * h);
#pragma omp simd
    for (int64_t i = 0; i < hw; ++i) {
      const float y = 0.299f * R[i] + 0.587f * G[i] + 0.114f * B[i];
      const float ii = 0.596f * R[i] - 0.274f * G[i] - 0.322f * B[i];
      const float q = 0.211f * R[i] - 0.523f * G[i] + 0.312f * B[i];
      const float i2 = ca * ii - sa * q, q2 = sa * ii + ca * q;
      R[i] = clamp255(y + 0.956f * i2 + 0.621f * q2);
      G[i] = clamp255(y - 0.272f * i2 - 0.647f * q2);
      B[i] = clamp255(y - 1.106f * i2 + 1.703f * q2);
    }
  }
}

std::array<float, 3> shades_of_grey_gains(const Image& img, float power) {
  DERMIS_CHECK(power >= 1 && power <= 64, "shades_of_grey_gains: power {} must be in [1, 64] (6 is typical)", power);
  const size_t n = static_cast<size_t>(img.width) * static_cast<size_t>(img.height);
  DERMIS_CHECK(n > 0 && img.rgb.size() == 3 * n,
               "shades_of_grey_gains: the image ({}x{}, {} bytes) is empty or not RGB", img.width, img.height,
               img.rgb.size());
  // x^p through a histogram of the 8-bit values: cheap, and a fixed summation order. Values
  // are taken as x / 255 so that x^p stays far from overflow; the scale cancels in the normalisation.
  std::array<std::array<int64_t, 256>, 3> hist{};
  const uint8_t* p = img.rgb.data();
  for (size_t i = 0; i < n; ++i, p += 3) ++hist[0][p[0]], ++hist[1][p[1]], ++hist[2][p[2]];
  std::array<double, 256> pw;
  for (int v = 0; v < 256; ++v) pw[v] = std::pow(v / 255.0, static_cast<double>(power));
  std::array<double, 3> e{};
  double norm2 = 0;
  for (int c = 0; c < 3; ++c) {
    double sum = 0;
    for (int v = 1; v < 256; ++v) sum += static_cast<double>(hist[c][v]) * pw[v];
    e[c] = std::pow(sum / static_cast<double>(n), 1.0 / power);
    norm2 += e[c] * e[c];
  }
  std::array<float, 3> gains = {1.f, 1.f, 1.f};
  if (norm2 <= 0) return gains;
  const double norm = std::sqrt(norm2);
  for (int c = 0; c < 3; ++c)
    if (e[c] > 0) gains[c] = static_cast<float>(norm / (std::sqrt(3.0) * e[c]));
  return gains;
}

void apply_gains(float* chw, int64_t hw, const std::array<float, 3>& gains) {
  for (int c = 0; c < 3; ++c) {
    const float g = gains[c];
    float* p = chw + c * hw;
    for (int64_t i = 0; i < hw; ++i) p[i] = clamp255(p[i] * g);
  }
}

void normalize(float* chw, int64_t hw, const Normalization& n) {
  for (int c = 0; c < 3; ++c) {
    const float a = 1.f / (255.f * n.std[c]), b = -n.mean[c] / n.std[c];
    float* p = chw + c * hw;
    for (int64_t i = 0; i < hw; ++i) p[i] = p[i] * a + b;
  }
}

}  // namespace dermis::data
