// Synthetic lesion drawing (see synthetic_draw.h).
//
// Geometry: a lesion is an ellipse (radius, aspect, angle) whose border is perturbed by harmonics
// k = 2..5 of the polar angle (large for irregular classes), blended into the skin over a soft edge.
// Inside, lesion coordinates (u, v) run over about [-1, 1]; each class paints its own colours and
// texture there (network, blotches, dots, vessels, lacunae, a scar-like centre). A photo of the
// lesion moves, turns, rescales and re-lights it, and adds hairs, vignetting and sensor noise.
// Class order: 0 akiec, 1 bcc, 2 bkl, 3 df, 4 mel, 5 nv, 6 vasc.
#include "synthetic_draw.h"

#include <algorithm>
#include <cmath>

#include "framework/random.h"

namespace dermis::datasets::synth {

namespace {

constexpr float kPi = 3.14159265358979f;

float smoothstep(float e0, float e1, float x) {
  float t = std::clamp((x - e0) / (e1 - e0), 0.f, 1.f);
  return t * t * (3.f - 2.f * t);
}
void mix(float* c, const float* to, float a) {
  for (int i = 0; i < 3; ++i) c[i] += (to[i] - c[i]) * a;
}
float hash01(uint64_t seed, int64_t i, int64_t j) {
  return Generator::uniform_at(seed, (static_cast<uint64_t>(static_cast<uint32_t>(i)) << 32) | static_cast<uint32_t>(j));
}
// Coverage (0..1) of a random dot in the cell of (u, v): cells of side `cell`, a dot in a share
// `density` of them, radius up to `r` cells, centre jittered inside the cell.
float cell_dot(uint64_t seed, float u, float v, float cell, float r, float density) {
  const float fu = u / cell, fv = v / cell;
  const int64_t i = static_cast<int64_t>(std::floor(fu)), j = static_cast<int64_t>(std::floor(fv));
  if (hash01(seed, i, j) >= density) return 0.f;
  const float ox = 0.5f + 0.4f * (hash01(seed + 1, i, j) - 0.5f), oy = 0.5f + 0.4f * (hash01(seed + 2, i, j) - 0.5f);
  const float rad = r * (0.6f + 0.4f * hash01(seed + 3, i, j));
  const float dx = fu - i - ox, dy = fv - j - oy;
  return 1.f - smoothstep(rad * 0.75f, rad, std::sqrt(dx * dx + dy * dy));
}
// Distance (in cells) to the nearest line of a square grid of period 1/f.
float grid_line(float u, float v, float f, float pu, float pv) {
  const float a = u * f + pu, b = v * f + pv;
  const float da = std::abs(a - std::round(a)), db = std::abs(b - std::round(b));
  return std::min(da, db);
}

// One lesion's appearance (from the lesion seed) and one photo's conditions (from the image seed).
struct Look {
  int label;
  uint64_t tex_seed;
  float cx, cy, radius, aspect, angle;  // centre as a fraction of the image, radius of min(w, h)
  float amp[4], phase[4];               // border harmonics k = 2..5
  float edge;                           // border softness, in radii
  float base[3], skin[3];
  float freq, p[4];                     // texture frequency and phases
  float tex;                            // texture contrast (1: full)
  bool vignette;
  float vig_radius;
};
struct Photo {
  float shift_x, shift_y, turn, scale, light, cast[3];
  int hairs;
  uint64_t hair_seed, noise_seed;
};

Look make_look(int label, uint64_t seed) {
  Generator g(seed);
  auto U = [&](float lo, float hi) { return lo + (hi - lo) * g.uniform(); };
  Look L{};
  L.label = label;
  L.tex_seed = g.next_u64();
  L.cx = U(0.42f, 0.58f);
  L.cy = U(0.42f, 0.58f);
  //                       akiec  bcc    bkl    df     mel    nv     vasc
  const float r_lo[7] = {0.20f, 0.20f, 0.20f, 0.13f, 0.25f, 0.18f, 0.16f};
  const float r_hi[7] = {0.32f, 0.30f, 0.34f, 0.21f, 0.38f, 0.30f, 0.26f};
  const float asp[7] = {1.5f, 1.35f, 1.8f, 1.15f, 1.55f, 1.25f, 1.12f};
  const float irr[7] = {0.09f, 0.06f, 0.07f, 0.02f, 0.14f, 0.025f, 0.025f};
  const float edge[7] = {0.10f, 0.12f, 0.05f, 0.16f, 0.04f, 0.07f, 0.05f};
  const float base[7][3] = {{0.80f, 0.44f, 0.40f}, {0.86f, 0.64f, 0.62f}, {0.72f, 0.52f, 0.36f},
                            {0.64f, 0.46f, 0.36f}, {0.36f, 0.22f, 0.15f}, {0.52f, 0.36f, 0.25f},
                            {0.66f, 0.14f, 0.26f}};
  L.radius = U(r_lo[label], r_hi[label]);
  L.aspect = U(1.f, asp[label]);
  L.angle = U(0.f, kPi);
  for (int k = 0; k < 4; ++k) {
    L.amp[k] = irr[label] * U(0.4f, 1.2f) / (1.f + 0.3f * k);
    L.phase[k] = U(0.f, 2 * kPi);
  }
  L.edge = edge[label] * U(0.7f, 1.3f);
  const float dark = U(0.8f, 1.15f);
  for (int c = 0; c < 3; ++c) L.base[c] = std::clamp(base[label][c] * dark + U(-0.03f, 0.03f), 0.f, 1.f);
  const float tone = U(0.82f, 1.04f);
  const float skin[3] = {0.88f, 0.70f, 0.62f};
  for (int c = 0; c < 3; ++c) L.skin[c] = std::clamp(skin[c] * tone + U(-0.03f, 0.03f), 0.f, 1.f);
  L.freq = U(0.8f, 1.25f);
  for (float& ph : L.p) ph = U(0.f, 2 * kPi);
  L.tex = U(0.45f, 1.f);
  L.vignette = g.uniform() < 0.35f;
  L.vig_radius = U(0.8f, 1.0f);
  return L;
}

Photo make_photo(uint64_t seed) {
  Generator g(seed);
  auto U = [&](float lo, float hi) { return lo + (hi - lo) * g.uniform(); };
  Photo P{};
  P.shift_x = U(-0.06f, 0.06f);
  P.shift_y = U(-0.06f, 0.06f);
  P.turn = U(-0.4f, 0.4f);
  P.scale = U(0.9f, 1.1f);
  P.light = U(0.9f, 1.08f);
  for (float& c : P.cast) c = U(-0.03f, 0.03f);
  P.hairs = g.uniform() < 0.3f ? static_cast<int>(1 + g.randint(6)) : 0;
  P.hair_seed = g.next_u64();
  P.noise_seed = g.next_u64();
  return P;
}

// The lesion's colour at lesion coordinates (u, v), normalised border distance d (1 = border).
void paint(const Look& L, float u, float v, float d, float* c) {
  for (int i = 0; i < 3; ++i) c[i] = L.base[i];
  const float f = L.freq;
  switch (L.label) {
    case 0: {  // akiec: red-pink, rough and scaly (white scale, speckle)
      const float speck = hash01(L.tex_seed, static_cast<int64_t>(std::floor(u * 14 * f)),
                                 static_cast<int64_t>(std::floor(v * 14 * f)));
      for (int i = 0; i < 3; ++i) c[i] *= 0.86f + 0.24f * speck;
      static const float scale[3] = {0.93f, 0.90f, 0.86f};
      mix(c, scale, 0.85f * cell_dot(L.tex_seed + 10, u, v, 0.17f / f, 0.24f, 0.45f));
      break;
    }
    case 1: {  // bcc: pearly pink, branching red vessels, blue-grey ovoid nests
      const float a = std::abs(std::sin(6.5f * f * u + 2.2f * std::sin(4.3f * v + L.p[0]) + L.p[1]));
      const float b = std::abs(std::sin(6.0f * f * v + 2.0f * std::sin(3.9f * u + L.p[2]) + L.p[3]));
      static const float vessel[3] = {0.72f, 0.12f, 0.16f}, nest[3] = {0.32f, 0.36f, 0.46f};
      mix(c, vessel, std::max(1.f - smoothstep(0.04f, 0.10f, a), 0.8f * (1.f - smoothstep(0.03f, 0.07f, b))));
      mix(c, nest, 0.9f * cell_dot(L.tex_seed + 20, u, v, 0.36f / f, 0.22f, 0.3f));
      break;
    }
    case 2: {  // bkl: light tan, waxy, cerebriform fissures and milia-like cysts
      const float fis = std::abs(std::sin(5.5f * f * u + 1.8f * std::sin(3.7f * f * v + L.p[0])));
      for (int i = 0; i < 3; ++i) c[i] *= 1.f - 0.3f * (1.f - smoothstep(0.06f, 0.16f, fis));
      for (int i = 0; i < 3; ++i) c[i] *= 0.92f + 0.12f * std::sin(2.1f * u + L.p[1]) * std::sin(1.7f * v + L.p[2]);
      static const float cyst[3] = {0.92f, 0.86f, 0.62f};
      mix(c, cyst, cell_dot(L.tex_seed + 30, u, v, 0.22f / f, 0.2f, 0.35f));
      break;
    }
    case 3: {  // df: light brown ring with a faint network, white scar-like centre
      const float net = grid_line(u, v, 8.f * f, L.p[0], L.p[1]);
      for (int i = 0; i < 3; ++i) c[i] *= 1.f - 0.12f * (1.f - smoothstep(0.08f, 0.16f, net));
      static const float scar[3] = {0.93f, 0.88f, 0.84f};
      mix(c, scar, 0.9f * (1.f - smoothstep(0.22f, 0.5f, d)));
      break;
    }
    case 4: {  // mel: dark, multicoloured: black blotches, blue-grey veil, atypical network
      const float b = 0.6f * std::sin(2.7f * u + L.p[0]) * std::sin(2.3f * v + L.p[1]) +
                      0.4f * std::sin(4.1f * u - 3.3f * v + L.p[2]);
      static const float black[3] = {0.10f, 0.07f, 0.07f}, veil[3] = {0.42f, 0.46f, 0.56f};
      mix(c, black, smoothstep(0.2f, 0.45f, b));
      mix(c, veil, 0.85f * smoothstep(-0.3f, -0.55f, b));
      const float net = grid_line(u + 0.15f * std::sin(3 * v), v, 4.5f * f, L.p[3], L.p[0]);
      for (int i = 0; i < 3; ++i) c[i] *= 1.f - 0.3f * (1.f - smoothstep(0.1f, 0.2f, net));
      break;
    }
    case 5: {  // nv: brown, regular reticular network fading to the border, darker centre
      const float net = grid_line(u, v, 6.f * f, L.p[0], L.p[1]);
      const float line = 1.f - smoothstep(0.08f, 0.16f, net);
      for (int i = 0; i < 3; ++i) c[i] *= (0.88f + 0.18f * d) * (1.f - 0.22f * line * (1.f - 0.6f * d));
      break;
    }
    default: {  // vasc: red-purple lacunae separated by pale septa
      const float cell = 0.3f / f;
      const float fu = u / cell + L.p[0], fv = v / cell + L.p[1];
      const int64_t i = static_cast<int64_t>(std::floor(fu)), j = static_cast<int64_t>(std::floor(fv));
      const float ox = 0.5f + 0.3f * (hash01(L.tex_seed, i, j) - 0.5f), oy = 0.5f + 0.3f * (hash01(L.tex_seed + 1, i, j) - 0.5f);
      const float dist = std::sqrt((fu - i - ox) * (fu - i - ox) + (fv - j - oy) * (fv - j - oy));
      static const float lacuna[3] = {0.45f, 0.06f, 0.22f}, septum[3] = {0.80f, 0.52f, 0.56f};
      mix(c, septum, smoothstep(0.3f, 0.42f, dist));
      mix(c, lacuna, 0.7f * (1.f - smoothstep(0.1f, 0.3f, dist)));
      break;
    }
  }
}

struct Hair {
  float x0, y0, ca, sa, curve, width;
};

}  // namespace

void draw_lesion_image(int label, uint64_t lesion_seed, uint64_t image_seed, int width, int height,
                       std::vector<uint8_t>& rgb) {
  const Look L = make_look(label, lesion_seed);
  const Photo P = make_photo(image_seed);
  const float S = static_cast<float>(std::min(width, height));
  const float cx = (L.cx + P.shift_x) * width, cy = (L.cy + P.shift_y) * height;
  const float R = L.radius * P.scale * S, ang = L.angle + P.turn;
  const float ca = std::cos(ang), sa = std::sin(ang);
  float hk_c[4], hk_s[4];
  for (int k = 0; k < 4; ++k) {
    hk_c[k] = L.amp[k] * std::cos(L.phase[k]);
    hk_s[k] = L.amp[k] * std::sin(L.phase[k]);
  }
  std::vector<Hair> hairs;
  Generator hg(P.hair_seed);
  for (int h = 0; h < P.hairs; ++h) {
    const float t = kPi * hg.uniform();
    hairs.push_back({width * hg.uniform(), height * hg.uniform(), std::cos(t), std::sin(t),
                     (hg.uniform() - 0.5f) * 3.f / S,
                     std::max(0.8f, S * (0.004f + 0.005f * hg.uniform()))});
  }
  static const float hair_col[3] = {0.16f, 0.11f, 0.09f}, dark[3] = {0.04f, 0.03f, 0.03f};
  const float half_diag = 0.5f * std::sqrt(static_cast<float>(width) * width + static_cast<float>(height) * height);
  rgb.resize(static_cast<size_t>(width) * height * 3);
  for (int y = 0; y < height; ++y)
    for (int x = 0; x < width; ++x) {
      float c[3] = {L.skin[0], L.skin[1], L.skin[2]};
      const float px = x + 0.5f - cx, py = y + 0.5f - cy;
      const float u = (px * ca + py * sa) / (R * L.aspect), v = (-px * sa + py * ca) / R;
      const float rho = std::sqrt(u * u + v * v);
      float m = 1.f;
      if (rho > 1e-6f) {  // border radius at this polar angle: 1 + sum_k amp_k cos(k phi - phase_k)
        const float c1 = u / rho, s1 = v / rho;
        float ck = c1 * c1 - s1 * s1, sk = 2 * c1 * s1;  // k = 2
        for (int k = 0; k < 4; ++k) {
          m += ck * hk_c[k] + sk * hk_s[k];
          const float nc = ck * c1 - sk * s1;
          sk = sk * c1 + ck * s1;
          ck = nc;
        }
      }
      const float d = rho / m;
      if (d < 1.f + L.edge) {
        float les[3];
        paint(L, u, v, std::min(d, 1.f), les);
        for (int i = 0; i < 3; ++i) les[i] = L.base[i] + L.tex * (les[i] - L.base[i]);
        mix(c, les, 1.f - smoothstep(1.f - L.edge, 1.f + L.edge, d));
      }
      for (const Hair& h : hairs) {
        const float hx = x - h.x0, hy = y - h.y0;
        const float t = hx * h.ca + hy * h.sa, n = -hx * h.sa + hy * h.ca - h.curve * t * t;
        if (std::abs(n) < h.width) mix(c, hair_col, 0.85f * (1.f - std::abs(n) / h.width));
      }
      if (L.vignette) {
        const float r = std::sqrt((x + 0.5f - 0.5f * width) * (x + 0.5f - 0.5f * width) +
                                  (y + 0.5f - 0.5f * height) * (y + 0.5f - 0.5f * height)) / half_diag;
        mix(c, dark, smoothstep(L.vig_radius - 0.08f, L.vig_radius + 0.02f, r));
      }
      const uint64_t noise = Generator::bits(P.noise_seed, static_cast<uint64_t>(y) * width + x);
      uint8_t* out = &rgb[(static_cast<size_t>(y) * width + x) * 3];
      for (int i = 0; i < 3; ++i) {
        const float nz = 0.07f * (static_cast<float>((noise >> (16 * i)) & 0xFFFF) / 65535.f - 0.5f);
        const float val = c[i] * P.light + P.cast[i] + nz;
        out[i] = static_cast<uint8_t>(std::lround(std::clamp(val, 0.f, 1.f) * 255.f));
      }
    }
}

}  // namespace dermis::datasets::synth
