// Synthetic HAM10000 writer (see synthetic_ham.h): plans lesions and metadata sequentially from the
// seed, draws and encodes the JPEGs in parallel (TurboJPEG), writes the CSV last into a ".partial"
// folder and renames that into place.
#include "synthetic_ham.h"

#include <turbojpeg.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <vector>

#include "datasets/synthetic_draw.h"
#include "framework/error.h"
#include "framework/random.h"

namespace dermis::datasets {

namespace fs = std::filesystem;

namespace {

constexpr int kGeneratorVersion = 1;  // bump when the drawing or the plan changes
constexpr int64_t kFirstImageNumber = 24306;  // HAM10000's ids run ISIC_0024306 .. ISIC_0034320
const char* const kMarker = "dermis_synthetic.txt";
// Written first into DIR.partial, so that a leftover of an interrupted run is known to be ours.
const char* const kPartialMarker = "dermis_synthetic_partial.txt";

struct PlannedImage {
  std::string image_id, part;  // part: "HAM10000_images_part_1" or "..._2"
  uint64_t seed;
};
struct PlannedLesion {
  int label;
  uint64_t seed;
  std::string lesion_id, dx_type, age, sex, localization;
  std::vector<PlannedImage> images;
};

// Images per class: largest-remainder rounding of the mix, at least one of each class.
std::array<int64_t, kNumClasses> class_quota(int64_t count) {
  const auto& mix = synthetic_class_mix();
  std::array<int64_t, kNumClasses> q{};
  std::array<double, kNumClasses> frac{};
  int64_t used = 0;
  for (int k = 0; k < kNumClasses; ++k) {
    const double x = mix[k] * static_cast<double>(count);
    q[k] = std::max<int64_t>(1, static_cast<int64_t>(std::floor(x)));
    frac[k] = x - std::floor(x);
    used += q[k];
  }
  while (used < count) {  // hand out the rest by largest remainder
    const int k = static_cast<int>(std::max_element(frac.begin(), frac.end()) - frac.begin());
    ++q[k];
    frac[k] = -1;
    ++used;
  }
  while (used > count) {  // only when a class was raised to 1: take from the largest class
    --q[std::max_element(q.begin(), q.end()) - q.begin()];
    --used;
  }
  return q;
}

std::vector<PlannedLesion> plan(const SyntheticOptions& o) {
  Generator g(o.seed);
  auto pick = [&](std::initializer_list<std::pair<const char*, double>> choices) {
    double r = g.uniform();
    for (auto& [name, p] : choices) {
      if (r < p) return std::string(name);
      r -= p;
    }
    return std::string(choices.begin()->first);
  };
  static const char* kPlaces[] = {"back", "lower extremity", "trunk", "upper extremity", "abdomen", "face",
                                  "chest", "foot", "neck", "scalp", "hand", "ear", "genital", "acral", "unknown"};
  const auto quota = class_quota(o.count);
  std::vector<PlannedLesion> lesions;
  for (int k = 0; k < kNumClasses; ++k) {
    for (int64_t left = quota[k]; left > 0;) {
      // Images per lesion: 1 (80%), 2 (12%), 3 (5%), 4 (2%), 5 (1%): about 1.32 on average.
      const double r = g.uniform();
      int64_t n = r < 0.80 ? 1 : r < 0.92 ? 2 : r < 0.97 ? 3 : r < 0.99 ? 4 : 5;
      n = std::min(n, left);
      left -= n;
      PlannedLesion l;
      l.label = k;
      l.seed = g.next_u64();
      const std::string& dx = class_names()[k];
      if (dx == "nv") l.dx_type = pick({{"follow_up", 0.5}, {"histo", 0.4}, {"consensus", 0.1}});
      else if (dx == "bkl") l.dx_type = pick({{"histo", 0.6}, {"consensus", 0.25}, {"confocal", 0.15}});
      else if (dx == "df" || dx == "vasc") l.dx_type = pick({{"histo", 0.5}, {"consensus", 0.5}});
      else l.dx_type = "histo";
      l.age = g.uniform() < 0.005 ? "" : fmt::format("{}.0", 5 * (3 + g.randint(15)));
      l.sex = pick({{"male", 0.54}, {"female", 0.45}, {"unknown", 0.01}});
      l.localization = kPlaces[g.randint(std::size(kPlaces))];
      l.images.resize(static_cast<size_t>(n));
      for (auto& im : l.images) im.seed = g.next_u64();
      lesions.push_back(std::move(l));
    }
  }
  for (size_t i = lesions.size(); i > 1; --i) std::swap(lesions[i - 1], lesions[g.randint(static_cast<int64_t>(i))]);
  // Ids: lesions HAM_0000000.. in CSV order; images get a random permutation of the ISIC numbers,
  // the lower half in part 1 and the upper half in part 2 (as the real download is split).
  std::vector<int64_t> numbers(static_cast<size_t>(o.count));
  for (int64_t i = 0; i < o.count; ++i) numbers[i] = i;
  for (size_t i = numbers.size(); i > 1; --i) std::swap(numbers[i - 1], numbers[g.randint(static_cast<int64_t>(i))]);
  size_t next = 0;
  for (size_t li = 0; li < lesions.size(); ++li) {
    lesions[li].lesion_id = fmt::format("HAM_{:07d}", li);
    for (auto& im : lesions[li].images) {
      const int64_t num = numbers[next++];
      im.image_id = fmt::format("ISIC_{:07d}", kFirstImageNumber + num);
      im.part = num < (o.count + 1) / 2 ? "HAM10000_images_part_1" : "HAM10000_images_part_2";
    }
  }
  return lesions;
}

std::string marker_text(const SyntheticOptions& o) {
  return fmt::format(
      "dermis synthetic HAM10000: generated images, not real data (tools/make_synthetic)\n"
      "generator_version={}\ncount={}\nwidth={}\nheight={}\nseed={}\nquality={}\n",
      kGeneratorVersion, o.count, o.width, o.height, o.seed, o.quality);
}

std::string read_text(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

void write_file(const fs::path& p, const void* data, size_t size) {
  std::FILE* f = std::fopen(p.c_str(), "wb");
  DERMIS_CHECK(f != nullptr, "cannot create '{}': {}; check the folder's permissions", p.string(), std::strerror(errno));
  const bool ok = std::fwrite(data, 1, size, f) == size;
  const int err = errno;
  DERMIS_CHECK(std::fclose(f) == 0 && ok, "cannot write '{}': {}; check free disk space", p.string(),
               std::strerror(ok ? errno : err));
}

struct TjCompressor {
  tjhandle h = tjInitCompress();
  ~TjCompressor() {
    if (h) tjDestroy(h);
  }
};

// Draws and encodes every image into `dir` (OpenMP over images; the first error is rethrown).
void write_images(const fs::path& dir, const std::vector<PlannedLesion>& lesions, const SyntheticOptions& o) {
  struct Job {
    const PlannedLesion* lesion;
    const PlannedImage* image;
  };
  std::vector<Job> jobs;
  for (const auto& l : lesions)
    for (const auto& im : l.images) jobs.push_back({&l, &im});
  std::string error;
  std::atomic<bool> failed{false};
#pragma omp parallel
  {
    TjCompressor tj;
    std::vector<uint8_t> rgb;
#pragma omp for schedule(dynamic, 4)
    for (int64_t i = 0; i < static_cast<int64_t>(jobs.size()); ++i) {
      if (failed.load()) continue;
      try {
        const Job& j = jobs[i];
        DERMIS_CHECK(tj.h != nullptr, "TurboJPEG: cannot create a compressor: {}", tjGetErrorStr2(nullptr));
        synth::draw_lesion_image(j.lesion->label, j.lesion->seed, j.image->seed, o.width, o.height, rgb);
        unsigned char* jpeg = nullptr;
        unsigned long size = 0;
        const int rc = tjCompress2(tj.h, rgb.data(), o.width, 0, o.height, TJPF_RGB, &jpeg, &size, TJSAMP_420,
                                   o.quality, 0);
        if (rc != 0) {
          if (jpeg) tjFree(jpeg);
          DERMIS_FAIL("TurboJPEG: cannot encode {}: {}", j.image->image_id, tjGetErrorStr2(tj.h));
        }
        try {
          write_file(dir / j.image->part / (j.image->image_id + ".jpg"), jpeg, size);
        } catch (...) {
          tjFree(jpeg);
          throw;
        }
        tjFree(jpeg);
      } catch (const std::exception& e) {
#pragma omp critical(dermis_synthetic_error)
        if (error.empty()) error = e.what();
        failed.store(true);
      }
    }
  }
  if (!error.empty()) throw Error(error);
}

}  // namespace

const std::array<double, kNumClasses>& synthetic_class_mix() {
  //                                                  akiec bcc   bkl   df    mel   nv    vasc
  static const std::array<double, kNumClasses> mix = {0.08, 0.10, 0.15, 0.06, 0.15, 0.40, 0.06};
  return mix;
}

bool synthetic_ham10000_matches(const std::string& root, const SyntheticOptions& o) {
  std::error_code ec;
  const fs::path r(root);
  return fs::is_regular_file(r / "HAM10000_metadata.csv", ec) && fs::is_directory(r / "HAM10000_images_part_1", ec) &&
         fs::is_regular_file(r / kMarker, ec) && read_text(r / kMarker) == marker_text(o);
}

void write_synthetic_ham10000(const std::string& root_arg, const SyntheticOptions& o) {
  DERMIS_CHECK(!root_arg.empty(), "write_synthetic_ham10000: empty output folder name; pass a folder to create");
  DERMIS_CHECK(o.count >= kNumClasses && o.count <= 10000000,
               "synthetic HAM10000: count {} is out of range [{}, 10000000]; every class needs an image", o.count,
               kNumClasses);
  DERMIS_CHECK(o.width >= 16 && o.width <= 8192 && o.height >= 16 && o.height <= 8192,
               "synthetic HAM10000: image size {}x{} is out of range (16..8192 pixels a side)", o.width, o.height);
  DERMIS_CHECK(o.quality >= 1 && o.quality <= 100, "synthetic HAM10000: JPEG quality {} is out of range [1, 100]",
               o.quality);
  fs::path root(root_arg);
  if (root.filename().empty()) root = root.parent_path();  // "out/" -> "out"
  fs::path partial = root, old = root;
  partial += ".partial";
  old += ".old";
  std::error_code ec;
  bool replace = false;
  if (fs::exists(root, ec)) {
    const bool ours = fs::is_regular_file(root / kMarker, ec);
    const bool empty_dir = fs::is_directory(root, ec) && fs::is_empty(root, ec);
    DERMIS_CHECK(empty_dir || (ours && o.overwrite),
                 "'{}' already exists{}; {}", root.string(), ours ? " (a synthetic dataset)" : " and is not a dermis synthetic dataset",
                 ours ? "pass overwrite (--force) to replace it, or choose another folder"
                      : "choose another output folder (it is never replaced)");
    replace = !empty_dir;
  }
  // DIR.partial and DIR.old are removed only when they are this generator's own leftovers: a folder
  // holding one of its markers, or nothing but the names it writes (an interrupted run of any
  // version, killed before or after it wrote a marker).
  const auto leftover = [&](const fs::path& p) {
    if (!fs::exists(p, ec)) return;
    bool ours = fs::is_directory(p, ec);
    if (ours && !fs::is_regular_file(p / kPartialMarker, ec) && !fs::is_regular_file(p / kMarker, ec))
      for (const auto& e : fs::directory_iterator(p, ec)) {
        const std::string n = e.path().filename().string();
        ours = ours && (n == "HAM10000_images_part_1" || n == "HAM10000_images_part_2" || n == "HAM10000_metadata.csv");
      }
    DERMIS_CHECK(ours && !ec,
                 "'{}' exists and is not a leftover of an interrupted synthetic dataset; move it away or choose "
                 "another output folder (it is never removed)",
                 p.string());
    fs::remove_all(p, ec);
    DERMIS_CHECK(!ec, "cannot remove the leftover '{}': {}", p.string(), ec.message());
  };
  leftover(partial);
  if (replace) leftover(old);
  if (fs::exists(root, ec) && !replace) fs::remove(root, ec);  // an empty folder, refilled below
  if (root.has_parent_path()) {
    fs::create_directories(root.parent_path(), ec);
    DERMIS_CHECK(!ec, "cannot create folder '{}': {}", root.parent_path().string(), ec.message());
  }
  try {
    fs::create_directories(partial, ec);
    DERMIS_CHECK(!ec, "cannot create folder '{}': {}; check the permissions", partial.string(), ec.message());
    write_file(partial / kPartialMarker, "", 0);
    for (const char* part : {"HAM10000_images_part_1", "HAM10000_images_part_2"}) {
      fs::create_directories(partial / part, ec);
      DERMIS_CHECK(!ec, "cannot create folder '{}': {}; check the permissions", (partial / part).string(), ec.message());
    }
    const auto lesions = plan(o);
    write_images(partial, lesions, o);
    std::string csv = "lesion_id,image_id,dx,dx_type,age,sex,localization\n";
    for (const auto& l : lesions)
      for (const auto& im : l.images)
        csv += fmt::format("{},{},{},{},{},{},{}\n", l.lesion_id, im.image_id, class_names()[l.label], l.dx_type, l.age,
                           l.sex, l.localization);
    const std::string marker = marker_text(o);
    write_file(partial / kMarker, marker.data(), marker.size());
    write_file(partial / "HAM10000_metadata.csv", csv.data(), csv.size());  // last: the CSV means "complete"
    if (replace) {
      fs::rename(root, old, ec);
      DERMIS_CHECK(!ec, "cannot move the old '{}' aside: {}", root.string(), ec.message());
    }
    fs::rename(partial, root, ec);
    DERMIS_CHECK(!ec, "cannot rename '{}' to '{}': {}", partial.string(), root.string(), ec.message());
    fs::remove(root / kPartialMarker, ec);
    if (replace) fs::remove_all(old, ec);
  } catch (...) {
    fs::remove_all(partial, ec);
    throw;
  }
}

}  // namespace dermis::datasets
