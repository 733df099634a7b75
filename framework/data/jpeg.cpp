// TurboJPEG decode (with DCT scaling, gray/CMYK conversion, strict error reporting) and encode.
#include "jpeg.h"

#include <turbojpeg.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>

#include "../error.h"

namespace dermis::data {

namespace {
// One decompressor and one compressor per thread (TurboJPEG handles are not thread-safe).
struct Handles {
  tjhandle dec = nullptr, enc = nullptr;
  ~Handles() {
    if (dec) tjDestroy(dec);
    if (enc) tjDestroy(enc);
  }
};
thread_local Handles t_handles;

tjhandle decompressor() {
  if (!t_handles.dec) t_handles.dec = tjInitDecompress();
  DERMIS_CHECK(t_handles.dec != nullptr, "could not initialise libjpeg-turbo: {}", tjGetErrorStr2(nullptr));
  return t_handles.dec;
}

// After a failed call a TurboJPEG handle can keep state that makes it misread the next image (a
// good JPEG then reports 0x0 pixels); the thread's next call gets a fresh handle instead.
void reset_decompressor() {
  if (t_handles.dec) tjDestroy(t_handles.dec);
  t_handles.dec = nullptr;
}

tjhandle compressor() {
  if (!t_handles.enc) t_handles.enc = tjInitCompress();
  DERMIS_CHECK(t_handles.enc != nullptr, "could not initialise libjpeg-turbo: {}", tjGetErrorStr2(nullptr));
  return t_handles.enc;
}

void check_signature(const std::vector<uint8_t>& d, const std::string& name) {
  DERMIS_CHECK(!d.empty(), "{}: the file is empty; replace it or remove it from the dataset", name);
  if (d.size() >= 8 && std::memcmp(d.data(), "\x89PNG\r\n\x1a\n", 8) == 0)
    DERMIS_FAIL("{}: this is a PNG image, not a JPEG; convert it to JPEG (or remove it from the dataset)", name);
  DERMIS_CHECK(d.size() >= 3 && d[0] == 0xFF && d[1] == 0xD8 && d[2] == 0xFF,
               "{}: not a JPEG file (it does not start with the JPEG marker FF D8 FF); replace it or remove it", name);
}
}  // namespace

std::vector<uint8_t> read_file(const std::string& path) {
  DERMIS_CHECK(!std::filesystem::is_directory(path), "{}: is a folder, not an image file; give the image files in it", path);
  std::ifstream f(path, std::ios::binary | std::ios::ate);
  DERMIS_CHECK(f.good(), "{}: cannot open the file ({})", path, std::strerror(errno));
  const std::streamsize n = f.tellg();
  DERMIS_CHECK(n >= 0, "{}: cannot read the file size", path);
  std::vector<uint8_t> b(static_cast<size_t>(n));
  f.seekg(0);
  if (n > 0) f.read(reinterpret_cast<char*>(b.data()), n);
  DERMIS_CHECK(f.good() || n == 0, "{}: read error ({})", path, std::strerror(errno));
  return b;
}

JpegInfo jpeg_info(const std::vector<uint8_t>& d, const std::string& name) {
  check_signature(d, name);
  int w = 0, h = 0, sub = 0, cs = 0;
  if (tjDecompressHeader3(decompressor(), d.data(), static_cast<unsigned long>(d.size()), &w, &h, &sub, &cs) != 0) {
    const std::string why = tjGetErrorStr2(decompressor());
    reset_decompressor();
    DERMIS_FAIL("{}: corrupt JPEG header ({}); replace it or remove it from the dataset", name, why);
  }
  DERMIS_CHECK(w > 0 && h > 0, "{}: JPEG reports an empty image ({}x{})", name, w, h);
  // A header can claim up to 65535x65535; decoding that would need gigabytes.
  DERMIS_CHECK(static_cast<int64_t>(w) * h <= kMaxJpegPixels,
               "{}: the JPEG claims {}x{} pixels, more than dermis decodes ({} megapixels); downscale it or remove it",
               name, w, h, kMaxJpegPixels / 1000000);
  return {w, h, cs == TJCS_CMYK || cs == TJCS_YCCK};
}

Scale choose_scale(int width, int height, int min_width, int min_height) {
  if (min_width <= 0 && min_height <= 0) return {1, 1};  // full size requested
  int n = 0;
  const tjscalingfactor* f = tjGetScalingFactors(&n);
  Scale best{1, 1};
  long best_px = static_cast<long>(width) * height;
  for (int i = 0; i < n; ++i) {
    const Scale s{f[i].num, f[i].denom};
    if (s.num > s.denom) continue;  // never upscale while decoding
    const int w = s.apply(width), h = s.apply(height);
    if (w < min_width || h < min_height) continue;
    if (static_cast<long>(w) * h < best_px) best = s, best_px = static_cast<long>(w) * h;
  }
  return best;
}

Image decode_jpeg(const std::vector<uint8_t>& d, const std::string& name, int min_width, int min_height,
                  DecodeOptions o) {
  return decode_jpeg(d, jpeg_info(d, name), name, min_width, min_height, o);
}

Image decode_jpeg(const std::vector<uint8_t>& d, const JpegInfo& info, const std::string& name, int min_width,
                  int min_height, DecodeOptions o) {
  const Scale s = o.dct_scale ? choose_scale(info.width, info.height, min_width, min_height) : Scale{};
  Image img;
  img.width = s.apply(info.width);
  img.height = s.apply(info.height);
  const int flags =
      TJFLAG_STOPONWARNING | (o.fast_dct ? TJFLAG_FASTDCT : 0) | (o.fast_upsample ? TJFLAG_FASTUPSAMPLE : 0);
  std::vector<uint8_t> cmyk;
  unsigned char* out;
  int pf;
  if (info.cmyk) {
    cmyk.resize(static_cast<size_t>(img.width) * img.height * 4);
    out = cmyk.data();
    pf = TJPF_CMYK;
  } else {
    img.rgb.resize(static_cast<size_t>(img.width) * img.height * 3);
    out = img.rgb.data();
    pf = TJPF_RGB;
  }
  if (tjDecompress2(decompressor(), d.data(), static_cast<unsigned long>(d.size()), out, img.width, 0, img.height,
                    pf, flags) != 0) {
    const bool warning = tjGetErrorCode(decompressor()) == TJERR_WARNING;
    const std::string why = tjGetErrorStr2(decompressor());
    reset_decompressor();
    DERMIS_FAIL("{}: {} JPEG data ({}); replace the file or remove it from the dataset", name,
                warning ? "truncated or damaged" : "corrupt", why);
  }
  if (info.cmyk) {  // Adobe-style (inverted) CMYK, as written by Photoshop and libjpeg: R = C * K / 255
    img.rgb.resize(static_cast<size_t>(img.width) * img.height * 3);
    for (size_t i = 0, n = static_cast<size_t>(img.width) * img.height; i < n; ++i) {
      const unsigned k = cmyk[4 * i + 3];
      for (int c = 0; c < 3; ++c) img.rgb[3 * i + c] = static_cast<uint8_t>((cmyk[4 * i + c] * k + 127) / 255);
    }
  }
  return img;
}

std::vector<uint8_t> encode_jpeg(const uint8_t* pixels, int width, int height, int channels, int quality) {
  DERMIS_CHECK(width > 0 && height > 0 && (channels == 1 || channels == 3 || channels == 4) && quality >= 1 &&
                   quality <= 100,
               "encode_jpeg: bad image {}x{}x{} or quality {}", width, height, channels, quality);
  const int pf = channels == 1 ? TJPF_GRAY : channels == 3 ? TJPF_RGB : TJPF_CMYK;
  const int sub = channels == 1 ? TJSAMP_GRAY : TJSAMP_420;
  unsigned char* buf = nullptr;
  unsigned long size = 0;
  if (tjCompress2(compressor(), pixels, width, 0, height, pf, &buf, &size, sub, quality, 0) != 0)
    DERMIS_FAIL("JPEG encoding failed: {}", tjGetErrorStr2(compressor()));
  std::vector<uint8_t> out(buf, buf + size);
  tjFree(buf);
  return out;
}

std::vector<uint8_t> encode_jpeg(const Image& img, int quality) {
  return encode_jpeg(img.rgb.data(), img.width, img.height, 3, quality);
}

}  // namespace dermis::data
