// Threaded loader (see loader.h).
#include "loader.h"

#include <algorithm>
#include <cmath>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <exception>
#include <map>
#include <thread>
#include <variant>

#include "../error.h"

namespace dermis::data {

void LoaderOptions::validate() const {
  DERMIS_CHECK(batch >= 1, "loader: batch size must be at least 1, got {}", batch);
  DERMIS_CHECK(height >= 8 && width >= 8 && height <= 8192 && width <= 8192,
               "loader: output size {}x{} must be between 8 and 8192 pixels", height, width);
  DERMIS_CHECK(threads >= 1 && threads <= 256, "loader: threads must be in [1, 256], got {}", threads);
  DERMIS_CHECK(prefetch >= 1 && prefetch <= 1024, "loader: prefetch must be in [1, 1024], got {}", prefetch);
  DERMIS_CHECK(num_classes >= 0, "loader: num_classes must not be negative (0: from the labels)");
  DERMIS_CHECK(class_power >= 0 && class_power <= 1, "loader: class_power must be in [0, 1], got {}", class_power);
  DERMIS_CHECK(shard_count >= 1 && shard_rank >= 0 && shard_rank < shard_count,
               "loader: shard {} of {} does not exist", shard_rank, shard_count);
  DERMIS_CHECK(shard_count == 1 || drop_last, "loader: sharding needs drop_last (every shard takes the same steps)");
  DERMIS_CHECK(color_constancy == 0 || (color_constancy >= 1 && color_constancy <= 64),
               "loader: color_constancy (the shades-of-grey power p) must be 0 (off) or in [1, 64], got {}; 6 is "
               "typical",
               color_constancy);
  for (int c = 0; c < 3; ++c)
    DERMIS_CHECK(std::isfinite(norm.mean[c]) && std::isfinite(norm.std[c]) && norm.std[c] > 0,
                 "loader: normalisation std must be positive and finite");
  augment.validate();
}

int default_loader_threads(int cores) { return std::max(1, cores / 2); }

namespace {
uint64_t sample_seed(uint64_t seed, int64_t epoch, int64_t position) {
  return Generator::bits(Generator::bits(seed, static_cast<uint64_t>(epoch)), static_cast<uint64_t>(position));
}
}  // namespace

Loader::Loader(std::vector<Item> items, LoaderOptions o)
    : items_(std::move(items)),
      opt_(std::move(o)),
      cache_mu_(std::make_unique<std::mutex>()),
      report_mu_(std::make_unique<std::mutex>()) {
  opt_.validate();
  DERMIS_CHECK(!items_.empty(), "loader: the dataset is empty (no images to load)");
  if (opt_.num_classes == 0)
    for (const Item& it : items_) opt_.num_classes = std::max(opt_.num_classes, it.label + 1);
  for (size_t i = 0; i < items_.size(); ++i)
    DERMIS_CHECK(items_[i].label >= 0 && items_[i].label < opt_.num_classes,
                 "loader: item {} ({}) has label {} outside [0, {})", i, items_[i].path, items_[i].label,
                 opt_.num_classes);
  if (opt_.cache) cache_.resize(items_.size()), orig_size_.resize(items_.size());
  reported_.assign(items_.size(), false);
}

Loader::~Loader() = default;

std::vector<double> class_draw_weights(const std::vector<int64_t>& counts, double power) {
  DERMIS_CHECK(std::isfinite(power) && power >= 0 && power <= 1, "class_draw_weights: power {} must be in [0, 1]",
               power);
  std::vector<double> w(counts.size(), 0.0);
  for (size_t k = 0; k < counts.size(); ++k)
    if (counts[k] > 0) w[k] = std::pow(static_cast<double>(counts[k]), power);
  return w;
}

int64_t Loader::batches_per_epoch() const {
  const int64_t n = size(), gb = opt_.batch * opt_.shard_count;
  return opt_.drop_last ? n / gb : (n + gb - 1) / gb;
}

std::vector<int64_t> Loader::order(int64_t e) const {
  const int64_t n = size();
  std::vector<int64_t> ord(n);
  if (opt_.train && opt_.class_power < 1) {
    std::vector<std::vector<int64_t>> by_class(opt_.num_classes);
    for (int64_t i = 0; i < n; ++i) by_class[items_[i].label].push_back(i);
    std::vector<int> present;
    for (int c = 0; c < opt_.num_classes; ++c)
      if (!by_class[c].empty()) present.push_back(c);
    Generator g(Generator::bits(opt_.seed ^ 0xBA1A7CEDull, static_cast<uint64_t>(e)));
    if (opt_.class_power == 0) {  // uniform over classes
      for (auto& x : ord) {
        const auto& cls = by_class[present[g.randint(static_cast<int64_t>(present.size()))]];
        x = cls[g.randint(static_cast<int64_t>(cls.size()))];
      }
      return ord;
    }
    std::vector<int64_t> counts(opt_.num_classes);
    for (int c = 0; c < opt_.num_classes; ++c) counts[c] = static_cast<int64_t>(by_class[c].size());
    const std::vector<double> w = class_draw_weights(counts, opt_.class_power);
    std::vector<double> cum(present.size());  // cumulative class weights
    double total = 0;
    for (size_t j = 0; j < present.size(); ++j) cum[j] = total += w[present[j]];
    for (auto& x : ord) {
      const double u = g.uniform() * total;
      const size_t j = std::min(present.size() - 1,
                                static_cast<size_t>(std::upper_bound(cum.begin(), cum.end(), u) - cum.begin()));
      const auto& cls = by_class[present[j]];
      x = cls[g.randint(static_cast<int64_t>(cls.size()))];
    }
    return ord;
  }
  for (int64_t i = 0; i < n; ++i) ord[i] = i;
  if (opt_.train && opt_.shuffle) {
    Generator g(Generator::bits(opt_.seed, static_cast<uint64_t>(e)));
    for (int64_t i = n - 1; i > 0; --i) std::swap(ord[i], ord[g.randint(i + 1)]);
  }
  return ord;
}

std::shared_ptr<const Image> Loader::cached_image(int64_t item) {
  {
    std::lock_guard<std::mutex> lk(*cache_mu_);
    if (cache_[item]) return cache_[item];
  }
  const Item& it = items_[item];
  const auto bytes = read_file(it.path);
  int mw, mh;
  if (opt_.train) {  // enough resolution for the smallest crop
    const int side = static_cast<int>(std::ceil(std::max(opt_.width, opt_.height) / std::sqrt(opt_.augment.scale_min)));
    mw = mh = side;
  } else {
    mw = static_cast<int>(opt_.width), mh = static_cast<int>(opt_.height);
  }
  const JpegInfo info = jpeg_info(bytes, it.path);
  auto img = std::make_shared<const Image>(decode_jpeg(bytes, info, it.path, mw, mh, opt_.decode));
  std::lock_guard<std::mutex> lk(*cache_mu_);
  if (!cache_[item]) {
    cache_[item] = img;
    orig_size_[item] = {info.width, info.height};
  }
  return cache_[item];
}

void Loader::load_sample(int64_t item, int64_t e, int64_t position, float* chw) {
  const Item& it = items_[item];
  const int W = static_cast<int>(opt_.width), H = static_cast<int>(opt_.height);
  const int64_t hw = static_cast<int64_t>(W) * H;
  Generator rng(sample_seed(opt_.seed, e, position));
  std::shared_ptr<const Image> img;
  int ow, oh;
  std::vector<uint8_t> bytes;
  JpegInfo info;
  if (opt_.cache) {
    img = cached_image(item);
    std::lock_guard<std::mutex> lk(*cache_mu_);
    ow = orig_size_[item][0], oh = orig_size_[item][1];
  } else {
    bytes = read_file(it.path);
    info = jpeg_info(bytes, it.path);
    ow = info.width, oh = info.height;
  }
  if (opt_.train) {
    const Warp w = sample_train_warp(ow, oh, W, H, opt_.augment, rng);
    if (!img) {
      const double f = std::max(W, H) / std::min(w.crop_w, w.crop_h);  // output pixels per source pixel
      img = std::make_shared<Image>(decode_jpeg(bytes, info, it.path, static_cast<int>(std::ceil(ow * f)),
                                                static_cast<int>(std::ceil(oh * f)), opt_.decode));
    }
    render_warp(*img, ow, oh, w, W, H, chw);
    if (opt_.color_constancy > 0) apply_gains(chw, hw, shades_of_grey_gains(*img, opt_.color_constancy));
    color_jitter(chw, hw, opt_.augment, rng);
  } else {
    if (!img) {
      int mw = W, mh = H;
      if (opt_.eval_mode == EvalMode::center_crop) {  // the crop must still cover the output
        const double r = static_cast<double>(W) / H, cw = std::min<double>(ow, oh * r), ch = cw / r;
        mw = static_cast<int>(std::ceil(ow * W / cw)), mh = static_cast<int>(std::ceil(oh * H / ch));
      }
      img = std::make_shared<Image>(decode_jpeg(bytes, info, it.path, mw, mh, opt_.decode));
    }
    render_eval(*img, opt_.eval_mode, W, H, chw);
    if (opt_.color_constancy > 0) apply_gains(chw, hw, shades_of_grey_gains(*img, opt_.color_constancy));
  }
  normalize(chw, hw, opt_.norm);
}

// ---- epochs ------------------------------------------------------------------------------------

struct Loader::Epoch::State {
  Loader* L = nullptr;
  int64_t epoch = 0, nb = 0, consumed = 0, next_claim = 0;
  int64_t first = 0;  // first sample of the order this epoch starts at
  std::vector<int64_t> order;
  std::mutex mu;
  std::condition_variable cv_work, cv_ready;
  bool stop = false;
  std::map<int64_t, std::variant<Batch, std::exception_ptr>> ready;
  std::vector<std::thread> threads;

  Batch build(int64_t b) {
    const LoaderOptions& o = L->opt_;
    const int64_t start = first + (b * o.shard_count + o.shard_rank) * o.batch;
    const int64_t end = std::min<int64_t>(start + o.batch, static_cast<int64_t>(order.size()));
    if (start >= end) return {};  // the last, partial global batch may not reach this shard
    const int64_t per = 3 * o.height * o.width;
    Batch out;
    Tensor images = Tensor::empty({end - start, 3, o.height, o.width});
    int64_t k = 0;
    for (int64_t pos = start; pos < end; ++pos) {
      const int64_t item = order[pos];
      try {
        L->load_sample(item, epoch, pos, images.data() + k * per);
      } catch (const Error& e) {
        if (!o.skip_bad_images) throw;
        L->bad_.fetch_add(1);
        ++out.skipped;
        std::lock_guard<std::mutex> lk(*L->report_mu_);
        if (o.warn_skipped && !L->reported_[item]) {
          L->reported_[item] = true;
          std::fprintf(stderr, "warning: skipping a bad image: %s\n", e.what());
        }
        continue;
      }
      out.labels.push_back(L->items_[item].label);
      out.items.push_back(item);
      ++k;
    }
    if (k == end - start) {
      out.images = images;
    } else if (k > 0) {
      out.images = Tensor::empty({k, 3, o.height, o.width});
      std::memcpy(out.images.data(), images.data(), static_cast<size_t>(k * per) * sizeof(float));
    }
    return out;
  }

  void work() {
    while (true) {
      int64_t b;
      {
        std::unique_lock<std::mutex> lk(mu);
        cv_work.wait(lk, [&] { return stop || next_claim >= nb || next_claim < consumed + L->opt_.prefetch; });
        if (stop || next_claim >= nb) return;
        b = next_claim++;
      }
      std::variant<Batch, std::exception_ptr> r;
      try {
        r = build(b);
      } catch (...) {
        r = std::current_exception();
      }
      {
        std::lock_guard<std::mutex> lk(mu);
        ready.emplace(b, std::move(r));
      }
      cv_ready.notify_all();
    }
  }

  void shutdown() {
    {
      std::lock_guard<std::mutex> lk(mu);
      stop = true;
    }
    cv_work.notify_all();
    for (auto& t : threads)
      if (t.joinable()) t.join();
    threads.clear();
  }
};

Loader::Epoch::Epoch(std::unique_ptr<State> s) : s_(std::move(s)) {}
Loader::Epoch::Epoch(Epoch&& o) noexcept = default;
Loader::Epoch::~Epoch() {
  if (s_) s_->shutdown();
}

std::optional<Batch> Loader::Epoch::next() {
  State& s = *s_;
  while (true) {
    std::variant<Batch, std::exception_ptr> r;
    {
      std::unique_lock<std::mutex> lk(s.mu);
      if (s.consumed >= s.nb) return std::nullopt;
      s.cv_ready.wait(lk, [&] { return s.ready.count(s.consumed) > 0; });
      auto it = s.ready.find(s.consumed);
      r = std::move(it->second);
      s.ready.erase(it);
      ++s.consumed;
    }
    s.cv_work.notify_all();
    if (auto* e = std::get_if<std::exception_ptr>(&r)) std::rethrow_exception(*e);
    Batch b = std::move(std::get<Batch>(r));
    if (b.images.defined()) return b;  // a batch whose images were all bad and skipped is passed over
  }
}

Loader::Epoch Loader::epoch(int64_t e, int64_t first_sample) {
  auto s = std::make_unique<Epoch::State>();
  s->L = this;
  s->epoch = e;
  s->order = order(e);
  const int64_t n = static_cast<int64_t>(s->order.size());
  DERMIS_CHECK(first_sample >= 0 && first_sample <= n, "Loader::epoch: first sample {} is outside the epoch's {}",
               first_sample, n);
  s->first = first_sample;
  const int64_t left = n - first_sample, gb = opt_.batch * opt_.shard_count;
  s->nb = opt_.drop_last ? left / gb : (left + gb - 1) / gb;
  Epoch::State* raw = s.get();
  for (int t = 0; t < opt_.threads; ++t) raw->threads.emplace_back([raw] { raw->work(); });
  return Epoch(std::move(s));
}

Normalization compute_normalization(const std::vector<Item>& items, int64_t height, int64_t width, int64_t max_images,
                                    int threads, float color_constancy) {
  DERMIS_CHECK(!items.empty() && max_images >= 1, "compute_normalization: no images");
  std::vector<Item> subset = items;
  Generator g(12345);
  for (int64_t i = static_cast<int64_t>(subset.size()) - 1; i > 0; --i) std::swap(subset[i], subset[g.randint(i + 1)]);
  if (static_cast<int64_t>(subset.size()) > max_images) subset.resize(max_images);
  for (auto& it : subset) it.label = 0;
  LoaderOptions o;
  o.batch = 64, o.height = height, o.width = width, o.threads = threads, o.train = false, o.num_classes = 1;
  o.norm = {{0.f, 0.f, 0.f}, {1.f, 1.f, 1.f}};
  o.color_constancy = color_constancy;
  Loader L(subset, o);
  double sum[3] = {0, 0, 0}, sq[3] = {0, 0, 0};
  int64_t count = 0;
  auto ep = L.epoch(0);
  while (auto b = ep.next()) {
    const float* p = b->images.data();
    const int64_t n = b->images.dim(0), hw = height * width;
    for (int64_t i = 0; i < n; ++i)
      for (int c = 0; c < 3; ++c)
        for (int64_t j = 0; j < hw; ++j) {
          const double v = p[(i * 3 + c) * hw + j];
          sum[c] += v;
          sq[c] += v * v;
        }
    count += n * hw;
  }
  Normalization r;
  for (int c = 0; c < 3; ++c) {
    const double m = sum[c] / count;
    r.mean[c] = static_cast<float>(m);
    r.std[c] = static_cast<float>(std::sqrt(std::max(1e-12, sq[c] / count - m * m)));
  }
  return r;
}

}  // namespace dermis::data
