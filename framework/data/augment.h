// Image augmentation and preparation for dermatoscopy: random resized crop, flips, 90-degree and
// free rotations (all folded into ONE affine resampling pass), colour jitter, shades-of-grey colour
// constancy, normalisation; and the deterministic evaluation transforms (resize, or center crop).
//
// Coordinates are continuous: pixel i covers [i, i + 1). A Warp maps an output pixel centre
// (u + 0.5, v + 0.5) to a point in the ORIGINAL image (before any DCT scaling), so the same warp
// applies to whatever scale the JPEG was decoded at.
#pragma once

#include <array>
#include <cstdint>

#include "../random.h"
#include "jpeg.h"

namespace dermis::data {

struct AugmentOptions {
  bool hflip = true;             // p = 0.5
  bool vflip = true;             // p = 0.5
  bool rot90 = true;             // k * 90 degrees, k uniform in 0..3
  float rotate_degrees = 0.f;    // extra rotation uniform in [-d, d] (borders replicate the edge)
  float scale_min = 0.5f;        // random resized crop: area fraction in [scale_min, scale_max]
  float scale_max = 1.0f;
  float ratio_min = 3.f / 4.f;   // and aspect ratio (w/h, log-uniform) in [ratio_min, ratio_max]
  float ratio_max = 4.f / 3.f;
  float brightness = 0.1f;       // colour jitter: factors uniform in [1 - x, 1 + x]
  float contrast = 0.1f;
  float saturation = 0.1f;
  float hue = 0.f;               // hue rotation uniform in [-x, x] turns (x <= 0.5)
  void validate() const;         // throws naming the bad option
};

// Per-channel normalisation of [0, 1] RGB: (x - mean) / std.
struct Normalization {
  // Defaults: HAM10000's approximate channel statistics (the loader can compute them from a
  // training set instead: compute_normalization in loader.h).
  std::array<float, 3> mean = {0.76f, 0.55f, 0.57f};
  std::array<float, 3> std = {0.14f, 0.15f, 0.17f};
};

enum class EvalMode { resize, center_crop };

// Affine map from output pixel coordinates to original-image coordinates.
struct Warp {
  double a11 = 1, a12 = 0, b1 = 0, a21 = 0, a22 = 1, b2 = 0;
  double src_x(double u, double v) const { return a11 * u + a12 * v + b1; }
  double src_y(double u, double v) const { return a21 * u + a22 * v + b2; }
  // The original-image region the output covers, in pixels (for choosing the decode scale).
  double crop_w = 0, crop_h = 0;
};

// Draws a training warp (crop box, flips, rot90, rotation) for a src_w x src_h image.
Warp sample_train_warp(int src_w, int src_h, int out_w, int out_h, const AugmentOptions& o, Generator& rng);

// Renders `src` (decoded at `src` size from an original orig_w x orig_h image) through the warp with
// bilinear interpolation into a 3 x out_h x out_w float image with values in [0, 255].
void render_warp(const Image& src, int orig_w, int orig_h, const Warp& w, int out_w, int out_h, float* chw);

// Area-weighted (box filter) resize of a region of src to out_w x out_h; bilinear when enlarging.
// Region in src pixels: x0, y0, width, height.
void resize_area(const Image& src, double x0, double y0, double rw, double rh, int out_w, int out_h, float* chw);

// Evaluation: the whole image resized to the output (EvalMode::resize, aspect ratio follows the
// output size) or the largest centred region with the output's aspect ratio (center_crop).
void render_eval(const Image& src, EvalMode mode, int out_w, int out_h, float* chw);

// Colour jitter on a 3 x hw image in [0, 255] (brightness, contrast, saturation, hue, in that order;
// result clamped to [0, 255]).
void color_jitter(float* chw, int64_t hw, const AugmentOptions& o, Generator& rng);

// Shades-of-grey colour constancy (Finlayson & Trezzi 2004): the illuminant estimate of channel c
// is the Minkowski p-mean e_c = (mean over pixels of x_c^p)^(1/p) of the image's values in
// [0, 255] (p = 1: grey world; p -> infinity: max-RGB; 6 is typical for dermatoscopy). With e
// scaled to unit L2 norm, gain_c = 1 / (sqrt(3) * e_c): a neutral grey image gets gains 1, and an
// image with a colour cast comes out with equal channel p-means. Computed in double. A channel that
// is 0 everywhere keeps gain 1 (there is nothing to scale); so does every channel of a black image.
// power must be in [1, 64]; the image must not be empty.
std::array<float, 3> shades_of_grey_gains(const Image& img, float power);

// x_c * gain_c per channel of a 3 x hw image in [0, 255], clamped to [0, 255].
void apply_gains(float* chw, int64_t hw, const std::array<float, 3>& gains);

// x / 255, then (x - mean) / std per channel.
void normalize(float* chw, int64_t hw, const Normalization& n);

}  // namespace dermis::data
