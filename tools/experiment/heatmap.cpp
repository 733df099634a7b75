// Attention heatmaps (see heatmap.h).
#include "heatmap.h"

#include <algorithm>
#include <cmath>

#include "evaluation.h"
#include "framework/metrics.h"
#include "framework/ops.h"

namespace dermis::experiment {

namespace {
// Bilinear sample of an h x w map at output resolution H x W (align corners = false).
std::vector<float> upsample(const std::vector<float>& m, int h, int w, int H, int W) {
  std::vector<float> out(static_cast<size_t>(H) * W);
  for (int y = 0; y < H; ++y)
    for (int x = 0; x < W; ++x) {
      const float sy = std::clamp((y + 0.5f) * h / H - 0.5f, 0.f, h - 1.f), sx = std::clamp((x + 0.5f) * w / W - 0.5f, 0.f, w - 1.f);
      const int y0 = static_cast<int>(sy), x0 = static_cast<int>(sx), y1 = std::min(y0 + 1, h - 1), x1 = std::min(x0 + 1, w - 1);
      const float fy = sy - y0, fx = sx - x0;
      out[static_cast<size_t>(y) * W + x] = (1 - fy) * ((1 - fx) * m[y0 * w + x0] + fx * m[y0 * w + x1]) +
                                            fy * ((1 - fx) * m[y1 * w + x0] + fx * m[y1 * w + x1]);
    }
  return out;
}

// A perceptual blue-cyan-yellow-red ramp for t in [0, 1].
void colour(float t, float rgb[3]) {
  t = std::clamp(t, 0.f, 1.f);
  rgb[0] = std::clamp(1.5f - std::abs(4 * t - 3), 0.f, 1.f);
  rgb[1] = std::clamp(1.5f - std::abs(4 * t - 2), 0.f, 1.f);
  rgb[2] = std::clamp(1.5f - std::abs(4 * t - 1), 0.f, 1.f);
}
}  // namespace

HeatmapMethod parse_heatmap_method(const std::string& s) {
  if (s == "grad_cam" || s == "gradcam") return HeatmapMethod::grad_cam;
  if (s == "attention") return HeatmapMethod::attention;
  DERMIS_FAIL("flag --heatmap-method: unknown method '{}'; use grad_cam or attention", s);
}

Heatmap attention_heatmap(models::Classifier& model, const Tensor& x, const data::Normalization& norm, int scale,
                          HeatmapMethod method) {
  DERMIS_CHECK(x.ndim() == 4 && x.dim(0) == 1 && x.dim(1) == 3, "heatmap: expected one image (1, 3, H, W)");
  model.eval();
  Heatmap out;
  std::vector<float> map;
  int mh = 0, mw = 0;
  nn::CBAM* cbam = model.last_cbam();
  if (method == HeatmapMethod::attention && cbam && !cbam->options.channel_only) {
    NoGrad ng;
    cbam->capture_attention = true;
    Var logits = model.forward(Var(x));
    cbam->capture_attention = false;
    out.probs = softmax_rows(logits.value());
    const Tensor& a = cbam->last_attention;
    mh = static_cast<int>(a.dim(2)), mw = static_cast<int>(a.dim(3));
    map = a.to_vector();
    out.method = "cbam_spatial_attention";
  } else {
    // Grad-CAM: weights = spatial mean of d(score of the top class)/d(features); map = relu(sum_k w_k A_k).
    Var f = model.features(Var(x));
    f.retain_grad();
    Var logits = model.head(f);
    out.probs = softmax_rows(logits.value());
    const int top = metrics::decide(out.probs.data(), out.probs.size());
    Tensor seed = Tensor::zeros(logits.shape());
    seed.data()[top] = 1.f;
    logits.backward(seed);
    Tensor A = f.value().plain(), G = f.grad().plain();
    const int64_t C = A.dim(1);
    mh = static_cast<int>(A.dim(2)), mw = static_cast<int>(A.dim(3));
    const int64_t hw = static_cast<int64_t>(mh) * mw;
    map.assign(hw, 0.f);
    for (int64_t c = 0; c < C; ++c) {
      double w = 0;
      for (int64_t i = 0; i < hw; ++i) w += G.data()[c * hw + i];
      w /= hw;
      for (int64_t i = 0; i < hw; ++i) map[i] += static_cast<float>(w) * A.data()[c * hw + i];
    }
    for (auto& v : map) v = std::max(v, 0.f);
    out.method = "grad_cam";
  }
  // Normalise the map to [0, 1] for display.
  const auto [lo, hi] = std::minmax_element(map.begin(), map.end());
  const float a = *lo, span = std::max(*hi - *lo, 1e-6f);
  for (auto& v : map) v = (v - a) / span;

  const int H = static_cast<int>(x.dim(2)), W = static_cast<int>(x.dim(3));
  const int OH = H * scale, OW = W * scale;
  const std::vector<float> up = upsample(map, mh, mw, OH, OW);
  const Tensor xp = x.plain();  // keeps the storage alive while px is read
  const float* px = xp.data();
  out.overlay.width = OW, out.overlay.height = OH;
  out.overlay.rgb.resize(static_cast<size_t>(OW) * OH * 3);
  for (int y = 0; y < OH; ++y)
    for (int xx = 0; xx < OW; ++xx) {
      const int sy = y / scale, sx = xx / scale;  // nearest input pixel
      float heat[3];
      colour(up[static_cast<size_t>(y) * OW + xx], heat);
      for (int c = 0; c < 3; ++c) {
        const float img = std::clamp(px[(c * H + sy) * W + sx] * norm.std[c] + norm.mean[c], 0.f, 1.f);
        out.overlay.rgb[(static_cast<size_t>(y) * OW + xx) * 3 + c] =
            static_cast<uint8_t>(std::lround(255 * (0.6f * img + 0.4f * heat[c])));
      }
    }
  return out;
}

}  // namespace dermis::experiment
