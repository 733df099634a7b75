// JPEG decoding and encoding on libjpeg-turbo's TurboJPEG API.
//
// decode_jpeg uses libjpeg-turbo's DCT-domain scaling (1/8, 1/4, 3/8, 1/2, ... of full size) to
// decode straight to the smallest size at or above what the caller needs, which skips most of the
// inverse-DCT and colour-conversion work for large images. Grayscale and CMYK/YCCK JPEGs are
// converted to RGB. Every failure (missing/empty file, not a JPEG, corrupt or truncated data)
// throws one dermis::Error naming the file.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace dermis::data {

struct Image {
  int width = 0, height = 0;
  std::vector<uint8_t> rgb;  // height * width * 3, row-major, interleaved RGB
};

struct JpegInfo {
  int width = 0, height = 0;
  bool cmyk = false;
};

// Reads a whole file; a missing, unreadable or empty file is an error naming it.
std::vector<uint8_t> read_file(const std::string& path);

// Largest image (width x height of the file) that jpeg_info accepts.
constexpr int64_t kMaxJpegPixels = 100'000'000;

// Header only (size, colour space). Errors name `name`.
JpegInfo jpeg_info(const std::vector<uint8_t>& data, const std::string& name);

// The DCT scale (num/8 style fraction) that decode_jpeg would use for these needs.
struct Scale {
  int num = 1, denom = 1;
  int apply(int dim) const { return (dim * num + denom - 1) / denom; }
};
Scale choose_scale(int width, int height, int min_width, int min_height);

// How a JPEG is decoded. The defaults are training's fast path; standard_decode() gives the pixels
// of the standard decoders (PIL, and so torchvision, OpenCV and browsers on libjpeg-turbo): exactly
// PIL's, which is what evaluate and predict use unless told --decode fast.
struct DecodeOptions {
  bool fast_dct = true;       // libjpeg-turbo's fast integer IDCT (PIL uses the accurate one; the difference is < 1 level)
  bool fast_upsample = true;  // nearest-neighbour chroma upsampling (skips the smoothing filter; colour
                              // edges move by at most one chroma sample, below the augmentation jitter)
  bool dct_scale = true;      // decode at a reduced DCT scale when the output needs fewer pixels (PIL: full size)
};
inline DecodeOptions standard_decode() { return {.fast_dct = false, .fast_upsample = false, .dct_scale = false}; }

// Decodes to RGB at the smallest DCT scale whose output is at least min_width x min_height (full
// size when the image is smaller than that, or without o.dct_scale). min 0 means full size.
Image decode_jpeg(const std::vector<uint8_t>& data, const std::string& name, int min_width = 0, int min_height = 0,
                  DecodeOptions o = {});
// The same with the header already parsed by jpeg_info.
Image decode_jpeg(const std::vector<uint8_t>& data, const JpegInfo& info, const std::string& name, int min_width,
                  int min_height, DecodeOptions o = {});

// Encodes RGB (or, for tests, 1-channel gray / 4-channel CMYK when `channels` says so).
std::vector<uint8_t> encode_jpeg(const uint8_t* pixels, int width, int height, int channels, int quality);
std::vector<uint8_t> encode_jpeg(const Image& img, int quality);


}  // namespace dermis::data
