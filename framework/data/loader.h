// The threaded image loader: worker threads decode JPEGs (TurboJPEG, DCT-scaled to what the output
// needs), augment and normalise them into NCHW float batches, a bounded number of batches ahead
// of the consumer.
//
// Determinism: a batch depends only on (seed, epoch, batch index): the epoch's order comes from
// (seed, epoch) and each sample's augmentation from (seed, epoch, position). Workers build whole
// batches and hand them over in order, so the batches are identical for any number of threads.
//
// Errors: a worker's failure (bad JPEG, missing file) is carried to the consumer and rethrown by
// next() at that batch, naming the file. With skip_bad_images a bad image is left out of its batch
// (the batch is one smaller), counted, and reported once on stderr.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "../tensor.h"
#include "augment.h"

namespace dermis::data {

struct Item {
  std::string path;
  int label = 0;
};

struct LoaderOptions {
  int64_t batch = 32;
  int64_t height = 112, width = 112;  // output size
  int threads = 1;                    // worker threads (see default_loader_threads)
  int prefetch = 4;                   // batches decoded ahead of the consumer (>= 1)
  bool train = true;                  // augment; otherwise the deterministic eval transform
  bool shuffle = true;                // new order every epoch (train)
  bool drop_last = false;             // drop a final partial batch
  // Class mix of a training epoch. 1: every item once, in shuffled order. Below 1: each sample
  // draws a class with probability proportional to n_k^class_power, then an item of that class,
  // with replacement (0.5: square-root sampling; 0: uniform over the classes present).
  double class_power = 1;
  int num_classes = 0;                // labels lie in [0, num_classes); 0: one more than the largest label
  bool cache = false;                 // keep decoded images in memory after the first epoch
  bool skip_bad_images = false;
  bool warn_skipped = true;           // with skip_bad_images: one stderr line per skipped image
  AugmentOptions augment{};
  Normalization norm{};
  // Shades-of-grey colour constancy (shades_of_grey_gains in augment.h): the Minkowski power p,
  // 0 = off, else in [1, 64] (6 is typical). The gains come from the whole decoded image (before
  // crop and warp) and scale the rendered sample before colour jitter (train) or normalisation.
  // Without cache the image is decoded at each sample's own DCT scale, with cache once at the
  // scale the smallest crop (or the eval output) needs; DCT downscaling averages pixels, which
  // lowers the p-mean of high-contrast images a little, so the gains with cache differ slightly
  // from those without.
  float color_constancy = 0;
  EvalMode eval_mode = EvalMode::resize;
  DecodeOptions decode{};
  uint64_t seed = 0;
  // Data-parallel shard: of each global batch of batch * shard_count consecutive samples of the
  // epoch's order, this loader yields the shard_rank-th slice of `batch` samples (so shard_count
  // loaders with batch B see exactly the batches of one loader with batch shard_count * B).
  int shard_rank = 0, shard_count = 1;
  void validate() const;
};

// How a class-sampled epoch (LoaderOptions::class_power < 1) weighs the classes: n_k^power for a
// class of n_k > 0 items, 0 for an empty one; a class is drawn with probability weight / sum. The
// loader draws with these, and the logit-adjusted loss takes its prior from them
// (datasets::sampled_class_prior).
std::vector<double> class_draw_weights(const std::vector<int64_t>& counts, double power);


struct Batch {
  Tensor images;               // (n, 3, height, width), normalised
  std::vector<int> labels;     // n
  std::vector<int64_t> items;  // indices into the loader's items
  int64_t skipped = 0;         // bad images left out of this batch
};

// Loader threads for a machine with `cores` cores when training also runs there: half the cores
// (at least one), leaving the rest to oneDNN's OpenMP threads.
int default_loader_threads(int cores);

class Loader {
 public:
  Loader(std::vector<Item> items, LoaderOptions o);
  ~Loader();
  Loader(const Loader&) = delete;
  Loader& operator=(const Loader&) = delete;

  int64_t size() const { return static_cast<int64_t>(items_.size()); }
  int64_t batches_per_epoch() const;  // of this shard (= global batches of the epoch)
  const LoaderOptions& options() const { return opt_; }
  const std::vector<Item>& items() const { return items_; }
  int64_t bad_images() const { return bad_.load(); }

  // One pass over the data. Destroying an Epoch (or an exception) stops and joins its workers.
  class Epoch {
   public:
    ~Epoch();
    Epoch(Epoch&&) noexcept;
    Epoch& operator=(Epoch&&) = delete;
    std::optional<Batch> next();  // nullopt after the last batch

   private:
    friend class Loader;
    struct State;
    explicit Epoch(std::unique_ptr<State> s);
    std::unique_ptr<State> s_;
  };
  // Epoch e, starting at sample `first_sample` of its order (a run resumed mid-epoch, with the same
  // or another shard count: the samples from there on are those of an uninterrupted epoch).
  Epoch epoch(int64_t e, int64_t first_sample = 0);

  // The sample order of epoch e (indices into items), as the workers use it.
  std::vector<int64_t> order(int64_t e) const;

 private:
  friend struct Epoch::State;
  void load_sample(int64_t item, int64_t e, int64_t position, float* chw);
  std::shared_ptr<const Image> cached_image(int64_t item);

  std::vector<Item> items_;
  LoaderOptions opt_;
  std::vector<std::shared_ptr<const Image>> cache_;
  std::vector<std::array<int, 2>> orig_size_;  // original (width, height) of cached images
  std::unique_ptr<std::mutex> cache_mu_;
  std::atomic<int64_t> bad_{0};
  std::unique_ptr<std::mutex> report_mu_;
  std::vector<bool> reported_;
};

// Per-channel mean and std of [0, 1] RGB over up to max_images items (eval transform at the
// loader's output size), for LoaderOptions::norm. color_constancy is LoaderOptions::color_constancy
// of the loaders that will use the statistics (0: off), so that they describe the corrected images.
Normalization compute_normalization(const std::vector<Item>& items, int64_t height, int64_t width,
                                    int64_t max_images, int threads, float color_constancy = 0);

}  // namespace dermis::data
