// HAM10000 and ISIC 2018 Task 3 readers (see ham10000.h): parse the CSV, validate every row, then
// find each image in a listing of the image folder(s), so 10015 images cost one directory scan.
#include "ham10000.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <unordered_map>

#include <fmt/ranges.h>

#include "datasets/csv.h"
#include "framework/error.h"

namespace dermis::datasets {

namespace fs = std::filesystem;

namespace {
// The header as read, for messages: bytes that are not printable ASCII shown as \xHH (a binary
// file passed as CSV must not put raw bytes on the terminal), at most 200 characters.
std::string shown_header(const CsvTable& t) {
  std::string out;
  for (size_t i = 0; i < t.header.size() && out.size() < 200; ++i) {
    if (i) out += ',';
    for (unsigned char ch : t.header[i]) out += (ch >= 0x20 && ch < 0x7f) ? std::string(1, static_cast<char>(ch))
                                                                              : fmt::format("\\x{:02x}", ch);
  }
  return out.size() > 200 ? out.substr(0, 200) + "..." : out;
}


std::string lower(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

std::string valid_classes() {
  std::string s;
  for (const auto& n : class_names()) s += (s.empty() ? "" : ", ") + n;
  return s;
}

std::string join_paths(const std::vector<fs::path>& v) {
  std::string s;
  for (const auto& p : v) s += (s.empty() ? "" : " and ") + p.string() + "/";
  return s;
}

// The JPEG files of some folders, by file stem (first folder wins when a stem repeats).
struct ImageIndex {
  std::vector<fs::path> folders;
  struct File {
    std::string path;
    uintmax_t size = 0;
  };
  std::unordered_map<std::string, File> files;
};

ImageIndex index_folders(const std::vector<fs::path>& folders) {
  ImageIndex idx;
  idx.folders = folders;
  for (const fs::path& dir : folders) {
    std::error_code ec;
    DERMIS_CHECK(fs::is_directory(dir, ec), "image folder '{}' does not exist or is not a folder; check the path",
                 dir.string());
    fs::directory_iterator it(dir, ec), end;
    DERMIS_CHECK(!ec, "cannot list image folder '{}': {}; check its permissions", dir.string(), ec.message());
    for (; it != end; it.increment(ec)) {
      DERMIS_CHECK(!ec, "cannot list image folder '{}': {}", dir.string(), ec.message());
      const fs::path& p = it->path();
      const std::string ext = lower(p.extension().string());
      if (ext != ".jpg" && ext != ".jpeg") continue;
      std::error_code ec2;
      if (!it->is_regular_file(ec2)) continue;
      const uintmax_t size = it->file_size(ec2);
      idx.files.try_emplace(p.stem().string(), ImageIndex::File{p.string(), ec2 ? 0 : size});
    }
  }
  return idx;
}

// A validated CSV row waiting for its image file.
struct Entry {
  std::string image_id, lesion_id;
  int label;
  int64_t line;
};

// Looks up every entry's image; errors or warns (skip) about missing / empty files.
Dataset attach_images(const std::string& root, const std::string& csv, std::vector<Entry> entries,
                      const ImageIndex& idx, bool skip_bad_images) {
  DERMIS_CHECK(!entries.empty(), "{}: no images listed (only a header); expected one row per image", csv);
  Dataset d;
  d.root = root;
  d.samples.reserve(entries.size());
  std::vector<const Entry*> bad;
  for (const Entry& e : entries) {
    auto it = idx.files.find(e.image_id);
    if (it == idx.files.end() || it->second.size == 0) {
      bad.push_back(&e);
      continue;
    }
    d.samples.push_back({e.image_id, e.lesion_id, it->second.path, e.label});
  }
  if (bad.empty()) return d;
  const std::string where = join_paths(idx.folders);
  if (!skip_bad_images) {
    const Entry& e = *bad.front();
    auto it = idx.files.find(e.image_id);
    DERMIS_FAIL(
        "{}: line {}: image {} {}; {} of {} listed images are missing or empty in {} — point the image folder option "
        "(--images) at the folder holding them, or skip them (skip_bad_images, --skip-bad-images)",
        csv, e.line, e.image_id,
        it == idx.files.end() ? fmt::format("has no file {}.jpg", e.image_id)
                              : fmt::format("is an empty file ({})", it->second.path),
        bad.size(), entries.size(), where);
  }
  std::string names;
  for (size_t i = 0; i < bad.size() && i < 10; ++i) names += (i ? ", " : "") + bad[i]->image_id + ".jpg";
  if (bad.size() > 10) names += fmt::format(", ... ({} more)", bad.size() - 10);
  fmt::print(stderr, "warning: {}: skipping {} of {} images whose files are missing or empty in {}: {}\n", csv,
             bad.size(), entries.size(), where, names);
  DERMIS_CHECK(!d.samples.empty(), "{}: none of the {} listed images was found in {}; check the image folder", csv,
               entries.size(), where);
  return d;
}

// The image folders for read_ham10000.
std::vector<fs::path> image_folders(const fs::path& root, const std::string& images) {
  std::error_code ec;
  if (!images.empty()) {
    fs::path p = fs::path(images).is_absolute() ? fs::path(images) : root / images;
    DERMIS_CHECK(fs::is_directory(p, ec), "image folder '{}' does not exist; pass an existing folder name under {} "
                 "(or an absolute path) as the image folder (--images)", p.string(), root.string());
    return {p};
  }
  for (const char* stem : {"HAM10000_images_part_", "ham10000_images_part_"}) {
    std::vector<fs::path> found;
    for (const char* part : {"1", "2"}) {
      fs::path p = root / (std::string(stem) + part);
      if (fs::is_directory(p, ec)) found.push_back(p);
    }
    if (!found.empty()) return found;
  }
  std::vector<std::string> subdirs;
  for (fs::directory_iterator it(root, ec), end; !ec && it != end; it.increment(ec))
    if (it->is_directory(ec)) subdirs.push_back(it->path().filename().string() + "/");
  std::sort(subdirs.begin(), subdirs.end());
  std::string list;
  for (const auto& s : subdirs) list += (list.empty() ? "" : ", ") + s;
  DERMIS_FAIL("{}: no HAM10000_images_part_1/ or HAM10000_images_part_2/ folder; name the image folder "
              "(--images NAME, e.g. --images images_200x150){}",
              root.string(), subdirs.empty() ? std::string(" — the folder has no subfolders")
                                             : " — subfolders here: " + list);
}

}  // namespace

Dataset read_ham10000(const std::string& root_arg, const ReadOptions& o) {
  std::error_code ec;
  fs::path root(root_arg);
  DERMIS_CHECK(!root_arg.empty(), "HAM10000: empty dataset folder name; pass the folder holding HAM10000_metadata.csv");
  DERMIS_CHECK(fs::exists(root, ec), "HAM10000 folder '{}' does not exist; pass the folder holding "
               "HAM10000_metadata.csv (download HAM10000 from doi:10.7910/DVN/DBW86T, or write a synthetic one "
               "with tools/make_synthetic)", root_arg);
  fs::path csv;
  char delimiter = ',';
  if (fs::is_regular_file(root, ec)) {  // the CSV itself was given: its folder is the root
    csv = root;
    root = root.has_parent_path() ? root.parent_path() : fs::path(".");
  } else {
    csv = root / "HAM10000_metadata.csv";
    if (!fs::exists(csv, ec) && fs::exists(root / "HAM10000_metadata.tab", ec)) {
      csv = root / "HAM10000_metadata.tab";  // the Dataverse's tab-separated export
      delimiter = '\t';
    }
    DERMIS_CHECK(fs::is_regular_file(csv, ec), "{}: not found; '{}' should hold HAM10000_metadata.csv beside "
                 "HAM10000_images_part_1/ and HAM10000_images_part_2/ (or one image folder) — check the folder",
                 csv.string(), root_arg);
  }
  const CsvTable t = read_csv(csv.string(), delimiter);
  const std::string& path = t.path;
  const int c_lesion = t.column("lesion_id"), c_image = t.column("image_id"), c_dx = t.column("dx");
  for (auto [c, name] : {std::pair{c_lesion, "lesion_id"}, {c_image, "image_id"}, {c_dx, "dx"}})
    DERMIS_CHECK(c >= 0, "{}: line {}: the header has no '{}' column; HAM10000 metadata needs the columns lesion_id, "
                 "image_id and dx (got: {})", path, t.header_line, name, shown_header(t));

  std::vector<Entry> entries;
  entries.reserve(t.rows.size());
  std::unordered_map<std::string, int64_t> image_line;                 // image_id -> line
  std::unordered_map<std::string, std::pair<int, int64_t>> lesion_dx;  // lesion_id -> (label, first line)
  for (const CsvRow& r : t.rows) {
    Entry e{trim(r.fields[c_image]), trim(r.fields[c_lesion]), -1, r.line};
    const std::string dx = trim(r.fields[c_dx]);
    DERMIS_CHECK(!e.image_id.empty(), "{}: line {}: empty image_id; every row needs one", path, r.line);
    DERMIS_CHECK(!e.lesion_id.empty(), "{}: line {}: empty lesion_id for image {}; every row needs one", path, r.line,
                 e.image_id);
    e.label = class_index(dx);
    DERMIS_CHECK(e.label >= 0, "{}: line {}: unknown class '{}' in column dx for image {}; valid classes: {}", path,
                 r.line, dx, e.image_id, valid_classes());
    auto [it, fresh] = image_line.try_emplace(e.image_id, r.line);
    DERMIS_CHECK(fresh, "{}: line {}: image_id {} already appeared on line {}; each image must be listed once", path,
                 r.line, e.image_id, it->second);
    auto [lt, new_lesion] = lesion_dx.try_emplace(e.lesion_id, e.label, r.line);
    DERMIS_CHECK(new_lesion || lt->second.first == e.label,
                 "{}: line {}: lesion {} has dx '{}' here but '{}' on line {}; all images of one lesion must share "
                 "its diagnosis — fix the metadata",
                 path, r.line, e.lesion_id, class_names()[e.label], class_names()[lt->second.first], lt->second.second);
    entries.push_back(std::move(e));
  }
  DERMIS_CHECK(!entries.empty(), "{}: no images listed (only a header); expected one row per image", path);
  const ImageIndex idx = index_folders(image_folders(root, o.images));
  return attach_images(root.string(), path, std::move(entries), idx, o.skip_bad_images);
}

Dataset read_isic_ground_truth(const std::string& csv, const std::string& images_dir, bool skip_bad_images) {
  static const char* kIsic[kNumClasses] = {"MEL", "NV", "BCC", "AKIEC", "BKL", "DF", "VASC"};
  const std::string expected = "image,MEL,NV,BCC,AKIEC,BKL,DF,VASC";
  std::error_code ec;
  DERMIS_CHECK(fs::is_regular_file(csv, ec), "ISIC ground truth '{}' not found; pass the path of the ground-truth CSV "
               "(e.g. ISIC2018_Task3_Training_GroundTruth.csv)", csv);
  const CsvTable t = read_csv(csv);
  const int c_image = t.column("image");
  DERMIS_CHECK(c_image >= 0, "{}: line {}: the header has no 'image' column; ISIC 2018 Task 3 ground truth has the "
               "header {} (got: {})", csv, t.header_line, expected, shown_header(t));
  std::vector<int> label_of_column(t.header.size(), -1);  // column -> class index
  for (int k = 0; k < kNumClasses; ++k) {
    const int c = t.column(kIsic[k]);
    DERMIS_CHECK(c >= 0, "{}: line {}: the header has no '{}' column; ISIC 2018 Task 3 ground truth has the header "
                 "{} (got: {})", csv, t.header_line, kIsic[k], expected, shown_header(t));
    label_of_column[c] = class_index(kIsic[k]);
  }
  for (size_t c = 0; c < t.header.size(); ++c)
    DERMIS_CHECK(static_cast<int>(c) == c_image || label_of_column[c] >= 0,
                 "{}: line {}: unknown or repeated column '{}' in the header; ISIC 2018 Task 3 ground truth has exactly the "
                 "columns {} (other ISIC years have other classes)", csv, t.header_line, t.header[c], expected);

  std::vector<Entry> entries;
  entries.reserve(t.rows.size());
  std::unordered_map<std::string, int64_t> image_line;
  for (const CsvRow& r : t.rows) {
    const std::string id = trim(r.fields[c_image]);
    DERMIS_CHECK(!id.empty(), "{}: line {}: empty image name; every row needs one", csv, r.line);
    int label = -1;
    std::string marked;
    for (size_t c = 0; c < t.header.size(); ++c) {
      if (label_of_column[c] < 0) continue;
      const std::string v = trim(r.fields[c]);
      char* end = nullptr;
      const double x = std::strtod(v.c_str(), &end);
      DERMIS_CHECK(!v.empty() && *end == '\0' && (x == 0.0 || x == 1.0),
                   "{}: line {}: column {} of image {} is '{}'; ground-truth values must be 0 or 1 (e.g. 0.0, 1.0)",
                   csv, r.line, t.header[c], id, v);
      if (x == 1.0) {
        marked += (marked.empty() ? "" : ", ") + t.header[c];
        label = label < 0 ? label_of_column[c] : -2;
      }
    }
    DERMIS_CHECK(label >= 0, "{}: line {}: image {} has {}; each row must mark exactly one class with 1", csv, r.line,
                 id, marked.empty() ? std::string("no class marked 1") : "several classes marked 1 (" + marked + ")");
    auto [it, fresh] = image_line.try_emplace(id, r.line);
    DERMIS_CHECK(fresh, "{}: line {}: image {} already appeared on line {}; each image must be listed once", csv,
                 r.line, id, it->second);
    entries.push_back({id, id, label, r.line});
  }
  DERMIS_CHECK(!entries.empty(), "{}: no images listed (only a header); expected one row per image", csv);
  const ImageIndex idx = index_folders({fs::path(images_dir)});
  return attach_images(images_dir, csv, std::move(entries), idx, skip_bad_images);
}

}  // namespace dermis::datasets
