// The JPEG decoder, the augmentations and the threaded loader: decoding and DCT scaling, gray and
// CMYK conversion, every kind of bad file, augmentation geometry, determinism across thread
// counts, error propagation from workers, skipping, caching, balanced sampling, shades-of-grey
// colour constancy.
#define BOOST_TEST_MODULE loader
#include <boost/test/unit_test.hpp>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <numeric>
#include <string>
#include <thread>

#include "framework/data/loader.h"
#include "framework/error.h"
#include "framework/io/atomic_file.h"
#include "testing.h"

using namespace dermis;
using namespace dermis::data;
namespace fs = std::filesystem;

namespace {
using testing::TempDir;
using testing::expect_error;

Image pattern(int w, int h, int seed) {
  Image im;
  im.width = w, im.height = h;
  im.rgb.resize(static_cast<size_t>(w) * h * 3);
  for (int y = 0; y < h; ++y)
    for (int x = 0; x < w; ++x) {
      uint8_t* p = im.rgb.data() + (static_cast<size_t>(y) * w + x) * 3;
      p[0] = static_cast<uint8_t>(40 + (x * 180) / w);
      p[1] = static_cast<uint8_t>(40 + (y * 180) / h);
      p[2] = static_cast<uint8_t>(30 + (seed * 13 + 2 * x + 3 * y) % 150);
    }
  return im;
}

std::string write_jpeg(const TempDir& d, const std::string& name, const Image& im, int q = 92) {
  const std::string f = d.file(name);
  io::write_file_atomic(f, encode_jpeg(im, q));
  return f;
}

void write_bytes(const std::string& f, const std::string& bytes) {
  std::ofstream o(f, std::ios::binary);
  o << bytes;
}


std::vector<Item> make_items(const TempDir& d, int n, int w, int h) {
  std::vector<Item> items;
  for (int i = 0; i < n; ++i) items.push_back({write_jpeg(d, "img" + std::to_string(i) + ".jpg", pattern(w, h, i)), i % 3});
  return items;
}

std::vector<std::vector<float>> run_epoch(Loader& L, int64_t e) {
  std::vector<std::vector<float>> out;
  auto ep = L.epoch(e);
  while (auto b = ep.next()) {
    out.push_back(b->images.to_vector());
    for (int l : b->labels) out.back().push_back(static_cast<float>(l));
  }
  return out;
}
}  // namespace

BOOST_AUTO_TEST_CASE(decode_round_trip_and_scaling) {
  TempDir d;
  const Image src = pattern(96, 72, 1);
  const auto bytes = encode_jpeg(src, 95);
  const Image full = decode_jpeg(bytes, "x.jpg");
  BOOST_TEST(full.width == 96);
  BOOST_TEST(full.height == 72);
  double err = 0;
  for (size_t i = 0; i < src.rgb.size(); ++i) err += std::abs(int(src.rgb[i]) - int(full.rgb[i]));
  BOOST_TEST(err / src.rgb.size() < 4.0, "mean abs error " << err / src.rgb.size());
  // DCT scaling: the smallest scale at or above the request.
  const Scale s = choose_scale(600, 450, 112, 112);
  BOOST_TEST(s.apply(450) >= 112);
  BOOST_TEST((s.num == 1 && s.denom == 4));  // 150x113; 1/8 would give 57 rows
  BOOST_TEST((choose_scale(600, 450, 200, 150).num * 8 == choose_scale(600, 450, 200, 150).denom * 3));  // 3/8
  const Image half = decode_jpeg(bytes, "x.jpg", 40, 30);
  BOOST_TEST(half.width == 48);
  BOOST_TEST(half.height == 36);
  BOOST_TEST(decode_jpeg(bytes, "x.jpg", 1000, 1000).width == 96);  // never upscales
}

BOOST_AUTO_TEST_CASE(gray_and_cmyk_are_converted) {
  std::vector<uint8_t> gray(32 * 24);
  for (size_t i = 0; i < gray.size(); ++i) gray[i] = static_cast<uint8_t>(100 + i % 32 + 2 * (i / 32));
  const Image g = decode_jpeg(encode_jpeg(gray.data(), 32, 24, 1, 95), "gray.jpg");
  BOOST_TEST(g.rgb.size() == gray.size() * 3);
  for (size_t i = 0; i < gray.size(); ++i) {
    BOOST_TEST(g.rgb[3 * i] == g.rgb[3 * i + 1]);
    BOOST_TEST(std::abs(int(g.rgb[3 * i]) - int(gray[i])) <= 6);
  }
  // CMYK (Adobe-inverted values, as libjpeg writes them): RGB = C * K / 255.
  std::vector<uint8_t> cmyk(16 * 16 * 4);
  for (size_t i = 0; i < 256; ++i) cmyk[4 * i] = 200, cmyk[4 * i + 1] = 100, cmyk[4 * i + 2] = 50, cmyk[4 * i + 3] = 255;
  const auto bytes = encode_jpeg(cmyk.data(), 16, 16, 4, 98);
  BOOST_TEST(jpeg_info(bytes, "cmyk.jpg").cmyk);
  const Image c = decode_jpeg(bytes, "cmyk.jpg");
  BOOST_TEST(std::abs(int(c.rgb[0]) - 200) <= 4);
  BOOST_TEST(std::abs(int(c.rgb[1]) - 100) <= 4);
  BOOST_TEST(std::abs(int(c.rgb[2]) - 50) <= 4);
}

BOOST_AUTO_TEST_CASE(bad_files_get_clear_errors) {
  TempDir d;
  const auto good = encode_jpeg(pattern(64, 48, 2), 90);
  write_bytes(d.file("empty.jpg"), "");
  write_bytes(d.file("text.jpg"), "lesion_id,image_id,dx\n");
  write_bytes(d.file("image.jpg"), std::string("\x89PNG\r\n\x1a\n", 8) + std::string(100, 'x'));
  write_bytes(d.file("truncated.jpg"), std::string(good.begin(), good.begin() + good.size() / 2));
  std::string bad_header(good.begin(), good.end());
  for (size_t i = 2; i < 40; ++i) bad_header[i] = '\x01';  // destroys the markers after SOI
  write_bytes(d.file("corrupt.jpg"), bad_header);
  auto decode = [&](const std::string& n) { return decode_jpeg(read_file(d.file(n)), d.file(n)); };
  expect_error([&] { decode("empty.jpg"); }, {"empty.jpg", "empty"});
  expect_error([&] { decode("text.jpg"); }, {"text.jpg", "not a JPEG"});
  expect_error([&] { decode("image.jpg"); }, {"image.jpg", "PNG"});
  expect_error([&] { decode("truncated.jpg"); }, {"truncated.jpg", "truncated"});
  expect_error([&] { decode("corrupt.jpg"); }, {"corrupt.jpg", "corrupt"});
  expect_error([&] { read_file(d.file("missing.jpg")); }, {"missing.jpg", "cannot open"});
  // A failure leaves the thread able to decode the next good file (with skip_bad_images, a bad
  // image must not take the next one on its worker with it).
  for (const char* bad : {"truncated.jpg", "corrupt.jpg"}) {
    expect_error([&] { decode(bad); }, {bad});
    const Image ok = decode_jpeg(good, "good.jpg");
    BOOST_TEST(ok.width == 64, "after " << bad);
    BOOST_TEST(ok.height == 48, "after " << bad);
  }
}

BOOST_AUTO_TEST_CASE(flip_and_rot90_geometry_is_exact) {
  // Whole-image crops at the image's own size: a flip must reproduce the mirrored pixels exactly,
  // a quarter turn the rotated ones.
  const int W = 16, H = 12;
  const Image im = pattern(W, H, 3);
  AugmentOptions o;
  o.scale_min = o.scale_max = 1.f;
  o.ratio_min = o.ratio_max = static_cast<float>(W) / H;
  o.vflip = false, o.rot90 = false;
  int flipped = 0, plain = 0;
  std::vector<float> out(3 * W * H);
  for (uint64_t seed = 0; seed < 16; ++seed) {
    Generator rng(seed);
    const Warp w = sample_train_warp(W, H, W, H, o, rng);
    render_warp(im, W, H, w, W, H, out.data());
    const bool f = w.a11 < 0;
    (f ? flipped : plain)++;
    for (int y = 0; y < H; ++y)
      for (int x = 0; x < W; ++x)
        for (int c = 0; c < 3; ++c) {
          const int sx = f ? W - 1 - x : x;
          BOOST_TEST(out[c * W * H + y * W + x] == im.rgb[(y * W + sx) * 3 + c]);
        }
  }
  BOOST_TEST(flipped > 0);
  BOOST_TEST(plain > 0);
  // Quarter turns on a square image: a permutation of the source pixels.
  const Image sq = pattern(12, 12, 4);
  AugmentOptions r;
  r.scale_min = r.scale_max = 1.f;
  r.ratio_min = r.ratio_max = 1.f;
  r.hflip = r.vflip = false;
  std::vector<float> o2(3 * 144);
  for (uint64_t seed = 0; seed < 8; ++seed) {
    Generator rng(seed);
    const Warp w = sample_train_warp(12, 12, 12, 12, r, rng);
    render_warp(sq, 12, 12, w, 12, 12, o2.data());
    for (int y = 0; y < 12; ++y)
      for (int x = 0; x < 12; ++x) {
        const double sx = w.src_x(x, y) - 0.5, sy = w.src_y(x, y) - 0.5;  // the source pixel centre
        const int ix = static_cast<int>(std::lround(sx)), iy = static_cast<int>(std::lround(sy));
        BOOST_TEST(std::abs(sx - ix) < 1e-9);
        BOOST_TEST(o2[y * 12 + x] == sq.rgb[(iy * 12 + ix) * 3]);
      }
  }
}

BOOST_AUTO_TEST_CASE(area_resize_averages_blocks) {
  const Image im = pattern(8, 6, 5);
  std::vector<float> out(3 * 4 * 3);
  resize_area(im, 0, 0, 8, 6, 4, 3, out.data());
  for (int y = 0; y < 3; ++y)
    for (int x = 0; x < 4; ++x)
      for (int c = 0; c < 3; ++c) {
        float s = 0;
        for (int dy = 0; dy < 2; ++dy)
          for (int dx = 0; dx < 2; ++dx) s += im.rgb[((2 * y + dy) * 8 + 2 * x + dx) * 3 + c];
        BOOST_TEST(out[c * 12 + y * 4 + x] == s / 4, boost::test_tools::tolerance(1e-4f));
      }
}

BOOST_AUTO_TEST_CASE(batches_identical_for_any_thread_count) {
  TempDir d;
  auto items = make_items(d, 21, 80, 60);
  LoaderOptions o;
  o.batch = 4, o.height = 32, o.width = 40, o.seed = 7, o.augment.rotate_degrees = 20, o.augment.hue = 0.05f;
  std::vector<std::vector<std::vector<float>>> runs;
  for (int t : {1, 2, 3}) {
    o.threads = t;
    Loader L(items, o);
    BOOST_TEST(L.batches_per_epoch() == 6);
    runs.push_back(run_epoch(L, 0));
    runs.push_back(run_epoch(L, 1));
  }
  BOOST_TEST(runs[0].size() == 6u);
  BOOST_TEST(runs[0].back().size() == 1u * 3 * 32 * 40 + 1);  // last batch: 21 = 5 * 4 + 1
  for (size_t i = 2; i < runs.size(); i += 2) {
    BOOST_TEST((runs[i] == runs[0]), "epoch 0 differs with " << i / 2 + 1 << " threads");
    BOOST_TEST((runs[i + 1] == runs[1]), "epoch 1 differs with " << i / 2 + 1 << " threads");
  }
  BOOST_TEST((runs[0] != runs[1]), "two epochs should differ (order and augmentation)");
  o.seed = 8;
  Loader L2(items, o);
  BOOST_TEST((run_epoch(L2, 0) != runs[0]));
}

BOOST_AUTO_TEST_CASE(eval_mode_is_deterministic_and_ordered) {
  TempDir d;
  auto items = make_items(d, 10, 64, 48);
  LoaderOptions o;
  o.batch = 4, o.height = 24, o.width = 32, o.train = false, o.threads = 2;
  Loader L(items, o);
  auto ep = L.epoch(0);
  int64_t next = 0;
  while (auto b = ep.next())
    for (auto i : b->items) BOOST_TEST(i == next++);
  BOOST_TEST(next == 10);
  BOOST_TEST((run_epoch(L, 0) == run_epoch(L, 3)));
  o.eval_mode = EvalMode::center_crop;
  Loader C(items, o);
  BOOST_TEST(run_epoch(C, 0).size() == 3u);
}

BOOST_AUTO_TEST_CASE(worker_errors_reach_the_consumer) {
  testing::Watchdog dog(60, "worker_errors_reach_the_consumer");  // a lost error would hang next()
  TempDir d;
  auto items = make_items(d, 12, 48, 36);
  write_bytes(items[5].path, "not a jpeg");
  LoaderOptions o;
  o.batch = 4, o.height = 16, o.width = 16, o.threads = 2, o.shuffle = false;
  {
    Loader L(items, o);
    auto ep = L.epoch(0);
    BOOST_TEST(ep.next().has_value());
    expect_error([&] { ep.next(); }, {"img5.jpg", "not a JPEG"});
  }  // the epoch and loader are destroyed cleanly after the error (no hang)
  o.skip_bad_images = true;
  Loader S(items, o);
  int64_t seen = 0;
  auto ep = S.epoch(0);
  while (auto b = ep.next()) {
    seen += b->images.dim(0);
    for (auto i : b->items) BOOST_TEST(i != 5);
  }
  BOOST_TEST(seen == 11);
  BOOST_TEST(S.bad_images() == 1);
  fs::remove(items[7].path);  // a file that disappears is skipped too
  run_epoch(S, 1);
  BOOST_TEST(S.bad_images() == 3);
}

BOOST_AUTO_TEST_CASE(early_exit_does_not_hang) {
  testing::Watchdog dog(60, "early_exit_does_not_hang");  // each epoch below takes milliseconds
  TempDir d;
  auto items = make_items(d, 40, 48, 36);
  LoaderOptions o;
  o.batch = 2, o.height = 16, o.width = 16, o.threads = 3, o.prefetch = 2;
  Loader L(items, o);
  for (int e = 0; e < 3; ++e) {
    auto ep = L.epoch(e);
    ep.next();
  }
  Loader L2(items, o);
  auto ep = L2.epoch(0);  // never consumed at all
}

BOOST_AUTO_TEST_CASE(cache_serves_later_epochs_from_memory) {
  TempDir d;
  auto items = make_items(d, 8, 64, 48);
  LoaderOptions o;
  o.batch = 3, o.height = 24, o.width = 24, o.threads = 2, o.cache = true;
  Loader L(items, o);
  auto first = run_epoch(L, 0);
  for (auto& it : items) fs::remove(it.path);
  auto second = run_epoch(L, 1);  // files are gone: only the cache can serve this
  BOOST_TEST(second.size() == first.size());
  BOOST_TEST(L.bad_images() == 0);
}

namespace {
// Items that share one JPEG, with the labels given by `sizes` (sizes[k] items of class k).
std::vector<Item> labelled_items(const TempDir& d, const std::vector<int>& sizes) {
  const std::string f = write_jpeg(d, "a.jpg", pattern(16, 16, 1));
  std::vector<Item> items;
  for (int k = 0; k < static_cast<int>(sizes.size()); ++k)
    for (int i = 0; i < sizes[k]; ++i) items.push_back({f, k});
  return items;
}

// How often each class and each item is drawn over epochs 0..epochs-1 of L's training order.
struct Draws {
  std::map<int, int> per_class;
  std::map<int64_t, int> per_item;
};
Draws count_draws(const Loader& L, const std::vector<Item>& items, int epochs) {
  Draws d;
  for (int e = 0; e < epochs; ++e) {
    const auto ord = L.order(e);
    BOOST_TEST(ord.size() == items.size());
    for (auto i : ord) d.per_class[items[i].label]++, d.per_item[i]++;
  }
  return d;
}
}  // namespace

BOOST_AUTO_TEST_CASE(balanced_sampling_evens_out_classes) {
  TempDir d;
  const auto items = labelled_items(d, {270, 20, 10});
  LoaderOptions o;
  o.class_power = 0, o.num_classes = 3;
  Loader L(items, o);
  auto counts = count_draws(L, items, 10).per_class;
  for (int c = 0; c < 3; ++c) BOOST_TEST(std::abs(counts[c] / 3000.0 - 1.0 / 3) < 0.03, "class " << c << ": " << counts[c]);
}

BOOST_AUTO_TEST_CASE(square_root_sampling_follows_the_square_root_of_the_counts) {
  TempDir d;
  // Counts 400, 100, 25 (class 3 absent): square roots 20, 10, 5, so probabilities 4/7, 2/7, 1/7.
  const auto items = labelled_items(d, {400, 100, 25});
  LoaderOptions o;
  o.class_power = 0.5, o.num_classes = 4;
  Loader L(items, o);
  const int epochs = 20;
  auto [counts, seen] = count_draws(L, items, epochs);
  const double total = 525.0 * epochs, want[3] = {4 / 7., 2 / 7., 1 / 7.};
  for (int c = 0; c < 3; ++c)
    BOOST_TEST(std::abs(counts[c] / total - want[c]) < 0.015, "class " << c << ": " << counts[c] / total);
  BOOST_TEST(counts[3] == 0);
  // Within a class, items are drawn uniformly: every class-2 item turns up (75 draws of 25 per epoch).
  for (int i = 500; i < 525; ++i) BOOST_TEST(seen[i] > 0, "item " << i);
  // The order is a function of (seed, epoch); a new epoch draws anew.
  BOOST_TEST(L.order(3) == L.order(3));
  BOOST_TEST(L.order(3) != L.order(4));
}

BOOST_AUTO_TEST_CASE(class_power_outside_0_1_is_rejected) {
  TempDir d;
  const auto items = labelled_items(d, {2, 2});
  for (double p : {-0.1, 1.5, std::nan("")}) {
    LoaderOptions o;
    o.class_power = p;
    expect_error([&] { Loader L(items, o); }, {"class_power must be in [0, 1]"});
  }
}

BOOST_AUTO_TEST_CASE(normalisation_statistics) {
  TempDir d;
  Image flat;
  flat.width = 32, flat.height = 32;
  flat.rgb.assign(32 * 32 * 3, 0);
  for (size_t i = 0; i < flat.rgb.size(); i += 3) flat.rgb[i] = 200, flat.rgb[i + 1] = 100, flat.rgb[i + 2] = 50;
  std::vector<Item> items = {{write_jpeg(d, "flat.jpg", flat, 100), 0}};
  const Normalization n = compute_normalization(items, 16, 16, 10, 1);
  BOOST_TEST(std::abs(n.mean[0] - 200 / 255.f) < 0.01);
  BOOST_TEST(std::abs(n.mean[1] - 100 / 255.f) < 0.01);
  BOOST_TEST(std::abs(n.mean[2] - 50 / 255.f) < 0.01);
  BOOST_TEST(n.std[0] < 0.01);
}

BOOST_AUTO_TEST_CASE(bad_options_are_rejected) {
  TempDir d;
  auto items = make_items(d, 2, 16, 16);
  LoaderOptions o;
  o.batch = 0;
  expect_error([&] { Loader L(items, o); }, {"batch size"});
  o = {};
  o.augment.scale_min = 0;
  expect_error([&] { Loader L(items, o); }, {"crop scale"});
  o = {};
  expect_error([&] { Loader L({}, o); }, {"empty"});
  items[0].label = 9;
  o.num_classes = 7;
  expect_error([&] { Loader L(items, o); }, {"label 9", "outside [0, 7)"});
  o = {};  // num_classes from the labels: 10 here, but never a negative label
  { Loader L(items, o); }
  items[0].label = -1;
  expect_error([&] { Loader L(items, o); }, {"label -1"});
}

namespace {
// The image as a 3 x h x w float image in [0, 255].
std::vector<float> planar(const Image& im) {
  const size_t hw = static_cast<size_t>(im.width) * im.height;
  std::vector<float> out(3 * hw);
  for (size_t i = 0; i < hw; ++i)
    for (int c = 0; c < 3; ++c) out[c * hw + i] = im.rgb[3 * i + c];
  return out;
}

// A gray image (a smooth pattern in [40, 180]) with each channel scaled by cast[c].
Image cast_image(int w, int h, const std::array<double, 3>& cast) {
  Image im;
  im.width = w, im.height = h;
  im.rgb.resize(static_cast<size_t>(w) * h * 3);
  for (int y = 0; y < h; ++y)
    for (int x = 0; x < w; ++x) {
      const double g = 40 + 140.0 * ((x * 3 + y * 5) % 47) / 46;
      for (int c = 0; c < 3; ++c)
        im.rgb[(static_cast<size_t>(y) * w + x) * 3 + c] = static_cast<uint8_t>(std::lround(g * cast[c]));
    }
  return im;
}

std::array<double, 3> channel_means(const float* chw, int64_t hw) {
  std::array<double, 3> m{};
  for (int c = 0; c < 3; ++c) m[c] = std::accumulate(chw + c * hw, chw + (c + 1) * hw, 0.0) / static_cast<double>(hw);
  return m;
}
}  // namespace

BOOST_AUTO_TEST_CASE(shades_of_grey_matches_a_naive_reference) {
  Generator rng(21);
  Image im;
  im.width = 37, im.height = 23;
  im.rgb.resize(37 * 23 * 3);
  for (size_t i = 0; i < im.rgb.size(); ++i)  // channels of different brightness, so gains differ
    im.rgb[i] = static_cast<uint8_t>(std::min<int64_t>(255, rng.randint(160) + 40 * static_cast<int64_t>(i % 3)));
  const int64_t hw = 37 * 23;
  for (float p : {1.f, 6.f, 13.5f, 64.f}) {
    double e[3] = {0, 0, 0}, norm = 0;
    for (int c = 0; c < 3; ++c) {
      for (int64_t i = 0; i < hw; ++i) e[c] += std::pow(static_cast<double>(im.rgb[3 * i + c]), p);
      e[c] = std::pow(e[c] / hw, 1.0 / p);
      norm += e[c] * e[c];
    }
    const auto gains = shades_of_grey_gains(im, p);
    std::vector<float> out = planar(im);
    apply_gains(out.data(), hw, gains);
    for (int c = 0; c < 3; ++c) {
      const double want = 1 / (std::sqrt(3.0) * e[c] / std::sqrt(norm));
      BOOST_TEST(std::abs(gains[c] / want - 1) < 1e-6,
                 "p " << p << " channel " << c << ": " << gains[c] << " vs " << want);
      for (int64_t i = 0; i < hw; ++i) {
        const double x = std::clamp(im.rgb[3 * i + c] * want, 0.0, 255.0);
        BOOST_TEST(std::abs(out[c * hw + i] - x) < 1e-3, "p " << p << " channel " << c << " pixel " << i);
      }
    }
  }
  expect_error([&] { shades_of_grey_gains(im, 0.5f); }, {"power 0.5", "[1, 64]"});
  expect_error([&] { shades_of_grey_gains(Image{}, 6.f); }, {"empty"});
}

BOOST_AUTO_TEST_CASE(shades_of_grey_neutralises_a_cast_and_keeps_grey) {
  const int W = 48, H = 40;
  const int64_t hw = W * H;
  for (float p : {1.f, 6.f}) {
    const Image cast = cast_image(W, H, {1.2, 1.0, 0.8});
    std::vector<float> out = planar(cast);
    apply_gains(out.data(), hw, shades_of_grey_gains(cast, p));
    const auto m = channel_means(out.data(), hw);
    for (int c = 1; c < 3; ++c)
      BOOST_TEST(std::abs(m[c] / m[0] - 1) < 0.01,
                 "p " << p << ": channel means " << m[0] << " " << m[1] << " " << m[2]);
    const Image grey = cast_image(W, H, {1, 1, 1});
    const auto g = shades_of_grey_gains(grey, p);
    for (int c = 0; c < 3; ++c) BOOST_TEST(g[c] == 1.f, boost::test_tools::tolerance(1e-6f));
    std::vector<float> same = planar(grey);
    apply_gains(same.data(), hw, g);
    const std::vector<float> before = planar(grey);
    for (int64_t i = 0; i < 3 * hw; ++i) BOOST_TEST(std::abs(same[i] - before[i]) < 1e-3);
  }
  // A black channel (nothing to scale) and a black image keep gain 1; nothing becomes NaN.
  Image black = cast_image(8, 8, {1, 0, 1});
  auto g = shades_of_grey_gains(black, 6.f);
  BOOST_TEST(g[1] == 1.f);
  BOOST_TEST(g[0] == g[2]);
  BOOST_TEST(std::isfinite(g[0]));
  black = cast_image(8, 8, {0, 0, 0});
  g = shades_of_grey_gains(black, 6.f);
  for (float x : g) BOOST_TEST(x == 1.f);
}

BOOST_AUTO_TEST_CASE(color_constancy_off_leaves_the_loader_unchanged) {
  TempDir d;
  auto items = make_items(d, 7, 80, 60);
  LoaderOptions base;
  base.batch = 3, base.height = 24, base.width = 32, base.seed = 5, base.threads = 2;
  LoaderOptions off = base;
  off.color_constancy = 0;
  for (bool train : {true, false}) {
    base.train = off.train = train;
    Loader A(items, base), B(items, off);
    const auto a = run_epoch(A, 0);
    BOOST_TEST((a == run_epoch(B, 0)), (train ? "train" : "eval"));
    LoaderOptions on = off;
    on.color_constancy = 6;
    Loader C(items, on);
    BOOST_TEST((a != run_epoch(C, 0)), (train ? "train" : "eval") << ": colour constancy has no effect");
  }
  // Evaluation output is the plain pipeline: decode, resize, normalise.
  base.train = false;
  Loader E(items, base);
  auto b = E.epoch(0).next();
  BOOST_REQUIRE(b.has_value());
  const Image img = decode_jpeg(read_file(items[0].path), items[0].path, 32, 24, base.decode);
  std::vector<float> want(3 * 24 * 32);
  render_eval(img, base.eval_mode, 32, 24, want.data());
  normalize(want.data(), 24 * 32, base.norm);
  const std::vector<float> got = b->images.to_vector();
  BOOST_TEST((std::vector<float>(got.begin(), got.begin() + 3 * 24 * 32) == want));
}

BOOST_AUTO_TEST_CASE(color_constancy_in_the_loader) {
  TempDir d;
  std::vector<Item> items;
  for (int i = 0; i < 6; ++i) {
    const double k = 0.1 * i;
    const Image im = cast_image(80, 60, {1.1 + k / 2, 1.0, 0.9 - k});
    items.push_back({write_jpeg(d, "cast" + std::to_string(i) + ".jpg", im, 98), i % 2});
  }
  for (auto& it : make_items(d, 5, 64, 48)) items.push_back(it);
  LoaderOptions o;
  o.batch = 4, o.height = 24, o.width = 32, o.seed = 9, o.color_constancy = 6;
  o.augment.hue = 0.05f;
  // Identical for any number of threads, in training and evaluation, with and without cache.
  for (bool train : {true, false})
    for (bool cache : {false, true}) {
      o.train = train, o.cache = cache;
      std::vector<std::vector<std::vector<float>>> runs;
      for (int t : {1, 3}) {
        o.threads = t;
        Loader L(items, o);
        runs.push_back(run_epoch(L, 0));
        runs.push_back(run_epoch(L, 1));
      }
      BOOST_TEST((runs[0] == runs[2] && runs[1] == runs[3]),
                 (train ? "train" : "eval") << (cache ? " with cache" : "") << ": 1 and 3 threads differ");
    }
  // Evaluation of the cast images (no normalisation): equal channel means.
  o.train = false, o.cache = false, o.threads = 2;
  o.norm = {{0.f, 0.f, 0.f}, {1.f, 1.f, 1.f}};
  Loader E(items, o);
  auto ep = E.epoch(0);
  const auto b = ep.next();
  BOOST_REQUIRE(b.has_value());
  const int64_t hw = 24 * 32;
  for (int64_t i = 0; i < b->images.dim(0); ++i) {
    const auto m = channel_means(b->images.data() + i * 3 * hw, hw);
    for (int c = 1; c < 3; ++c)
      BOOST_TEST(std::abs(m[c] / m[0] - 1) < 0.02,
                 "image " << i << ": channel means " << m[0] << " " << m[1] << " " << m[2]);
  }
  // The cache still serves later epochs from memory, with the same corrected images.
  o.cache = true;
  Loader C(items, o);
  const auto first = run_epoch(C, 0);
  for (auto& it : items) fs::remove(it.path);
  BOOST_TEST((run_epoch(C, 1) == first));
  BOOST_TEST(C.bad_images() == 0);
}

BOOST_AUTO_TEST_CASE(color_constancy_power_is_validated) {
  TempDir d;
  const auto items = labelled_items(d, {2, 2});
  for (float p : {-1.f, 0.5f, 64.5f, std::nanf("")}) {
    LoaderOptions o;
    o.color_constancy = p;
    expect_error([&] { Loader L(items, o); }, {"color_constancy", "0 (off) or in [1, 64]"});
  }
  for (float p : {1.f, 6.f, 64.f}) {
    LoaderOptions o;
    o.color_constancy = p;
    Loader L(items, o);
  }
}

BOOST_AUTO_TEST_CASE(normalisation_statistics_of_corrected_images) {
  // A flat (200, 100, 50) image becomes flat grey |x| / sqrt(3) = 132.3 in every channel.
  TempDir d;
  Image flat;
  flat.width = 32, flat.height = 32;
  flat.rgb.assign(32 * 32 * 3, 0);
  for (size_t i = 0; i < flat.rgb.size(); i += 3) flat.rgb[i] = 200, flat.rgb[i + 1] = 100, flat.rgb[i + 2] = 50;
  std::vector<Item> items = {{write_jpeg(d, "flat.jpg", flat, 100), 0}};
  const Normalization n = compute_normalization(items, 16, 16, 10, 1, 6.f);
  const double want = std::sqrt(200.0 * 200 + 100 * 100 + 50 * 50) / std::sqrt(3.0) / 255;
  for (int c = 0; c < 3; ++c) BOOST_TEST(std::abs(n.mean[c] - want) < 0.01, "channel " << c << ": " << n.mean[c]);
}
