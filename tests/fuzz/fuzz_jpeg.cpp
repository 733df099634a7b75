// libFuzzer target: the loader's image path on arbitrary bytes. Header parse, DCT-scaled decode (as
// for a 112x150 input), then the training warp with colour jitter and the evaluation resize, into
// small outputs. Any input must end in success or one dermis::Error; never a crash, leak or hang.
#include <cstddef>
#include <cstdint>
#include <vector>

#include "framework/data/augment.h"
#include "framework/data/jpeg.h"
#include "framework/error.h"
#include "framework/random.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace dermis;
  const std::vector<uint8_t> bytes(data, data + size);
  try {
    const data::JpegInfo info = data::jpeg_info(bytes, "input.jpg");
    const data::Image img = data::decode_jpeg(bytes, info, "input.jpg", 150, 112);
    constexpr int W = 40, H = 32;
    std::vector<float> chw(3 * W * H);
    Generator g(size);
    data::AugmentOptions o;
    o.rotate_degrees = 30, o.brightness = o.contrast = o.saturation = 0.2f, o.hue = 0.05f;
    const data::Warp w = data::sample_train_warp(img.width, img.height, W, H, o, g);
    data::render_warp(img, info.width, info.height, w, W, H, chw.data());
    data::color_jitter(chw.data(), W * H, o, g);
    data::render_eval(img, data::EvalMode::center_crop, W, H, chw.data());
  } catch (const Error&) {
  }
  return 0;
}
