// Datasets: the HAM10000 / ISIC readers (against the real metadata when it is present beside the
// checkout, and against every kind of bad input crafted in a temporary folder), the lesion-grouped
// stratified split and k-fold cross-validation, class weights, and the synthetic HAM10000 generator.
#define BOOST_TEST_MODULE datasets
#include <boost/test/unit_test.hpp>

#include "testing.h"

#include <turbojpeg.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <string>

#include "datasets/csv.h"
#include "datasets/ham10000.h"
#include "datasets/split.h"
#include "datasets/synthetic_ham.h"
#include "framework/error.h"

using namespace dermis;
using namespace dermis::datasets;
namespace fs = std::filesystem;

namespace {
using testing::expect_error;
using testing::TempDir;

void write_text(const fs::path& p, const std::string& s) {
  fs::create_directories(p.parent_path());
  std::ofstream(p, std::ios::binary) << s;
}
std::string read_text(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}
// Stand-in image files (the readers only check that they exist and are not empty).
void touch_images(const fs::path& dir, std::initializer_list<const char*> ids) {
  for (const char* id : ids) write_text(dir / (std::string(id) + ".jpg"), "jpeg");
}

// Runs f with stderr sent to a file; returns what was written.
template <class F>
std::string capture_stderr(F&& f) {
  TempDir t;
  const std::string file = (t.path / "stderr.txt").string();
  std::fflush(stderr);
  const int saved = dup(2);
  BOOST_REQUIRE(std::freopen(file.c_str(), "w", stderr) != nullptr);
  f();
  std::fflush(stderr);
  dup2(saved, 2);
  close(saved);
  return read_text(file);
}

// A small valid HAM10000 folder: 3 lesions, 5 images, flat image folder "imgs".
const char* kSmallCsv =
    "lesion_id,image_id,dx,dx_type,age,sex,localization\n"
    "HAM_1,ISIC_1,bkl,histo,80.0,male,scalp\n"
    "HAM_1,ISIC_2,bkl,histo,80.0,male,scalp\n"
    "HAM_2,ISIC_3,nv,follow_up,45.0,female,back\n"
    "HAM_3,ISIC_4,mel,histo,,unknown,face\n"
    "HAM_3,ISIC_5,mel,histo,,unknown,face\n";
void small_dataset(const TempDir& t, const std::string& csv = kSmallCsv) {
  write_text(t.path / "HAM10000_metadata.csv", csv);
  touch_images(t.path / "imgs", {"ISIC_1", "ISIC_2", "ISIC_3", "ISIC_4", "ISIC_5"});
}

void check_split(const Dataset& d, const Split& s, double fraction, double tolerance) {
  BOOST_TEST(s.train.size() + s.val.size() == d.samples.size());
  std::vector<int> side(d.samples.size(), 0);
  for (size_t i : s.train) ++side[i];
  for (size_t i : s.val) side[i] += 2;
  int wrong = 0;
  for (int v : side) wrong += v != 1 && v != 2;
  BOOST_TEST(wrong == 0, "every image on exactly one side");
  std::set<std::string> train_lesions, shared;
  for (size_t i : s.train) train_lesions.insert(d.samples[i].lesion_id);
  for (size_t i : s.val)
    if (train_lesions.count(d.samples[i].lesion_id)) shared.insert(d.samples[i].lesion_id);
  BOOST_TEST(shared.empty(), shared.size() << " lesions on both sides");
  const auto all = d.class_counts(), val = subset(d, s.val).class_counts();
  std::string shares;
  for (int k = 0; k < kNumClasses; ++k) {
    if (all[k] == 0) continue;
    const double share = static_cast<double>(val[k]) / all[k];
    shares += fmt::format(" {} {:.3f}", class_names()[k], share);
    BOOST_TEST(std::abs(share - fraction) <= tolerance,
               class_names()[k] << ": val share " << share << " (" << val[k] << " of " << all[k] << ")");
  }
  BOOST_TEST_MESSAGE("split: " << s.train.size() << " train, " << s.val.size() << " val; val share per class:" << shares);
}
}  // namespace

BOOST_AUTO_TEST_CASE(class_names_and_indices) {
  BOOST_TEST(class_names()[0] == "akiec");
  BOOST_TEST(class_names()[6] == "vasc");
  for (int k = 0; k < kNumClasses; ++k) BOOST_TEST(class_index(class_names()[k]) == k);
  BOOST_TEST(class_index("MEL") == 4);
  BOOST_TEST(class_index("melanoma") == -1);
  BOOST_TEST(class_index("") == -1);
}

namespace {
// The real data set, when it is there: ../shared/data/ham10000 beside the checkout, or $DERMIS_HAM10000.
fs::path ham10000_root() {
  const char* env = std::getenv("DERMIS_HAM10000");
  return env ? fs::path(env) : fs::path(DERMIS_TEST_DATA "/../../shared/data/ham10000").lexically_normal();
}
}  // namespace

BOOST_AUTO_TEST_CASE(real_ham10000_metadata,
                     *testing::needs([] { return fs::is_directory(ham10000_root() / "images_200x150"); }, [] {
                       return "no HAM10000 at " + ham10000_root().string() + " (set DERMIS_HAM10000 to its folder)";
                     })) {
  const fs::path root = ham10000_root();
  const Dataset d = read_ham10000(root.string(), {.images = "images_200x150"});
  BOOST_TEST(d.samples.size() == 10015u);
  BOOST_TEST(d.num_lesions() == 7470);
  const std::array<int64_t, kNumClasses> expected = {327, 514, 1099, 115, 1113, 6705, 142};
  BOOST_TEST(d.class_counts() == expected);
  BOOST_TEST(fs::exists(d.samples.front().path));
  // No image folder named and no part_1/part_2: one error naming the folders that are there.
  expect_error([&] { read_ham10000(root.string()); }, {"HAM10000_images_part_1", "--images", "images_200x150/"});

  const Split s = grouped_split(d, 0.2, 7);
  check_split(d, s, 0.2, 0.02);
  BOOST_TEST(std::abs(static_cast<double>(s.val.size()) / d.samples.size() - 0.2) < 0.01);
  const Split again = grouped_split(d, 0.2, 7), other = grouped_split(d, 0.2, 8);
  BOOST_TEST((again.val == s.val && again.train == s.train), "same seed, same split");
  BOOST_TEST((other.val != s.val), "another seed, another split");
  check_split(d, grouped_split(d, 0.1, 1), 0.1, 0.02);
}

BOOST_AUTO_TEST_CASE(csv_reader) {
  // BOM, CRLF, quoted delimiters, doubled quotes, a quoted newline, blank lines.
  const CsvTable t = parse_csv("\xEF\xBB\xBF" "a, b ,c\r\n1,\"x,y\",\"say \"\"hi\"\"\"\r\n\r\n2,\"two\nlines\",3\r\n\r\n\n",
                               "mem.csv");
  BOOST_TEST(t.header == (std::vector<std::string>{"a", "b", "c"}));
  BOOST_TEST(t.column("B") == 1);
  BOOST_TEST(t.column("d") == -1);
  BOOST_REQUIRE(t.rows.size() == 2u);
  BOOST_TEST(t.rows[0].fields[1] == "x,y");
  BOOST_TEST(t.rows[0].fields[2] == "say \"hi\"");
  BOOST_TEST(t.rows[1].line == 4);
  BOOST_TEST(t.rows[1].fields[1] == "two\nlines");
  BOOST_TEST(parse_csv("a,b\n1,\"\"\n", "m").rows[0].fields[1] == "");
  BOOST_TEST(parse_csv("a\r1\r2", "m").rows.size() == 2u);  // old Mac line ends, no final newline
  expect_error([] { parse_csv("a,b\n1,2\n3\n", "m.csv"); }, {"m.csv", "line 3", "1 fields", "2 columns"});
  expect_error([] { parse_csv("a,b\n1,\"open\n", "m.csv"); }, {"m.csv", "line 2", "closing"});
  expect_error([] { parse_csv("a,b\n1,\"x\"y\n", "m.csv"); }, {"line 2", "after a closing quote"});
  expect_error([] { parse_csv("\n\n", "m.csv"); }, {"m.csv", "empty"});
}

BOOST_AUTO_TEST_CASE(ham10000_reader_layouts) {
  {  // flat folder; columns in another order, quoted, CRLF, BOM, extra column, trailing blank lines
    TempDir t;
    write_text(t.path / "HAM10000_metadata.csv",
               "\xEF\xBB\xBF" "dx,extra,image_id,lesion_id\r\n\"nv\",\"a,b\",ISIC_1,HAM_1\r\n"
               "mel,,\"ISIC_2\",HAM_2\r\nmel,x,ISIC_3,HAM_2\r\n\r\n\r\n");
    touch_images(t.path / "flat", {"ISIC_1", "ISIC_2"});
    write_text(t.path / "flat" / "ISIC_3.JPG", "jpeg");
    const Dataset d = read_ham10000(t.str(), {.images = "flat"});
    BOOST_REQUIRE(d.samples.size() == 3u);
    BOOST_TEST(d.samples[0].label == class_index("nv"));
    BOOST_TEST(d.samples[1].image_id == "ISIC_2");
    BOOST_TEST(d.samples[1].lesion_id == "HAM_2");
    BOOST_TEST(d.samples[2].path == (t.path / "flat" / "ISIC_3.JPG").string());
    BOOST_TEST(d.num_lesions() == 2);
    BOOST_TEST(d.root == t.str());
    // The CSV's own path works as the root; an absolute image folder too.
    BOOST_TEST(read_ham10000((t.path / "HAM10000_metadata.csv").string(), {.images = "flat"}).samples.size() == 3u);
    BOOST_TEST(read_ham10000(t.str(), {.images = (t.path / "flat").string()}).samples.size() == 3u);
  }
  {  // the download's layout: images split between part_1 and part_2, found automatically
    TempDir t;
    write_text(t.path / "HAM10000_metadata.csv", kSmallCsv);
    touch_images(t.path / "HAM10000_images_part_1", {"ISIC_1", "ISIC_2", "ISIC_3"});
    touch_images(t.path / "HAM10000_images_part_2", {"ISIC_4", "ISIC_5"});
    const Dataset d = read_ham10000(t.str());
    BOOST_REQUIRE(d.samples.size() == 5u);
    BOOST_TEST(d.samples[4].path == (t.path / "HAM10000_images_part_2" / "ISIC_5.jpg").string());
    BOOST_TEST(d.class_counts()[class_index("bkl")] == 2);
    BOOST_TEST(d.num_lesions() == 3);
  }
  {  // Harvard Dataverse's tab-separated export
    TempDir t;
    write_text(t.path / "HAM10000_metadata.tab", "lesion_id\timage_id\tdx\n\"HAM_1\"\t\"ISIC_1\"\t\"df\"\n");
    touch_images(t.path / "imgs", {"ISIC_1"});
    BOOST_TEST(read_ham10000(t.str(), {.images = "imgs"}).samples.at(0).label == class_index("df"));
  }
}

BOOST_AUTO_TEST_CASE(ham10000_reader_errors) {
  const std::string valid = "valid classes: akiec, bcc, bkl, df, mel, nv, vasc";
  {
    TempDir t;
    expect_error([&] { read_ham10000((t.path / "nope").string()); }, {"nope", "does not exist"});
    expect_error([&] { read_ham10000(t.str()); }, {"HAM10000_metadata.csv", "not found"});
  }
  auto bad_csv = [&](const std::string& csv, std::initializer_list<std::string> needles) {
    TempDir t;
    small_dataset(t, csv);
    expect_error([&] { read_ham10000(t.str(), {.images = "imgs"}); }, needles);
  };
  bad_csv("lesion_id,image,dx\nHAM_1,ISIC_1,nv\n", {"HAM10000_metadata.csv", "line 1", "no 'image_id' column"});
  bad_csv("image_id,dx\nISIC_1,nv\n", {"no 'lesion_id' column"});
  bad_csv("lesion_id,image_id,dx\nHAM_1,ISIC_1,nv\nHAM_2,ISIC_2,melanoma\n",
          {"HAM10000_metadata.csv", "line 3", "unknown class 'melanoma'", valid});
  bad_csv("lesion_id,image_id,dx\nHAM_1,ISIC_1,nv\nHAM_2,ISIC_2,mel,extra\n", {"line 3", "4 fields", "3 columns"});
  bad_csv("lesion_id,image_id,dx\nHAM_1,ISIC_1,nv\nHAM_2,ISIC_2\n", {"line 3", "2 fields"});
  bad_csv("lesion_id,image_id,dx\nHAM_1,ISIC_1,nv\nHAM_2,ISIC_2,mel\nHAM_3,ISIC_1,mel\n",
          {"line 4", "ISIC_1 already appeared on line 2"});
  bad_csv("lesion_id,image_id,dx\nHAM_1,ISIC_1,nv\nHAM_1,ISIC_2,mel\n",
          {"line 3", "lesion HAM_1", "'mel'", "'nv' on line 2"});
  bad_csv("lesion_id,image_id,dx\n", {"no images listed"});
  bad_csv("lesion_id,image_id,dx\n\n\n", {"no images listed"});
  bad_csv("", {"empty"});
  bad_csv("lesion_id,image_id,dx\nHAM_1,,nv\n", {"line 2", "empty image_id"});
  {  // image folder problems
    TempDir t;
    small_dataset(t);
    expect_error([&] { read_ham10000(t.str(), {.images = "missing_folder"}); }, {"missing_folder", "does not exist"});
    expect_error([&] { read_ham10000(t.str()); }, {"HAM10000_images_part_1", "--images", "imgs/"});
  }
}

BOOST_AUTO_TEST_CASE(missing_images_error_or_skip) {
  TempDir t;
  small_dataset(t);
  fs::remove(t.path / "imgs" / "ISIC_2.jpg");
  write_text(t.path / "imgs" / "ISIC_4.jpg", "");  // empty file: unusable
  expect_error([&] { read_ham10000(t.str(), {.images = "imgs"}); },
               {"HAM10000_metadata.csv", "line 3", "ISIC_2 has no file ISIC_2.jpg", "2 of 5", "--skip-bad-images"});
  Dataset d;
  const std::string err = capture_stderr([&] { d = read_ham10000(t.str(), {.images = "imgs", .skip_bad_images = true}); });
  BOOST_TEST(d.samples.size() == 3u);
  BOOST_TEST(err.find("warning") != std::string::npos, err);
  BOOST_TEST(err.find("skipping 2 of 5") != std::string::npos, err);
  BOOST_TEST(err.find("ISIC_2.jpg") != std::string::npos, err);
  BOOST_TEST(err.find("ISIC_4.jpg") != std::string::npos, err);
  // Nothing left after skipping: an error, not an empty dataset.
  for (const char* id : {"ISIC_1", "ISIC_3", "ISIC_5"}) fs::remove(t.path / "imgs" / (std::string(id) + ".jpg"));
  capture_stderr([&] {
    expect_error([&] { read_ham10000(t.str(), {.images = "imgs", .skip_bad_images = true}); }, {"none of the 5"});
  });
}

BOOST_AUTO_TEST_CASE(isic_ground_truth) {
  TempDir t;
  const std::string header = "image,MEL,NV,BCC,AKIEC,BKL,DF,VASC\n";
  write_text(t.path / "gt.csv", header +
                                    "ISIC_1,0.0,1.0,0.0,0.0,0.0,0.0,0.0\n"
                                    "ISIC_2,1.0,0.0,0.0,0.0,0.0,0.0,0.0\n"
                                    "ISIC_3,0,0,0,0,0,0,1\n");
  touch_images(t.path / "img", {"ISIC_1", "ISIC_2", "ISIC_3"});
  const Dataset d = read_isic_ground_truth((t.path / "gt.csv").string(), (t.path / "img").string());
  BOOST_REQUIRE(d.samples.size() == 3u);
  BOOST_TEST(d.samples[0].label == class_index("nv"));
  BOOST_TEST(d.samples[1].label == class_index("mel"));
  BOOST_TEST(d.samples[2].label == class_index("vasc"));
  BOOST_TEST(d.samples[1].lesion_id == "ISIC_2");
  BOOST_TEST(d.num_lesions() == 3);
  // Columns in another order are fine.
  write_text(t.path / "gt2.csv", "VASC,DF,BKL,AKIEC,BCC,NV,MEL,image\n0,0,0,1,0,0,0,ISIC_1\n");
  BOOST_TEST(read_isic_ground_truth((t.path / "gt2.csv").string(), (t.path / "img").string()).samples[0].label ==
             class_index("akiec"));

  auto bad = [&](const std::string& csv, std::initializer_list<std::string> needles) {
    write_text(t.path / "bad.csv", csv);
    expect_error([&] { read_isic_ground_truth((t.path / "bad.csv").string(), (t.path / "img").string()); }, needles);
  };
  bad(header + "ISIC_1,0,1,0,0,0,0,0\nISIC_2,1.0,1.0,0.0,0.0,0.0,0.0,0.0\n",
      {"bad.csv", "line 3", "ISIC_2", "several classes marked 1 (MEL, NV)"});
  bad(header + "ISIC_1,0,0,0,0,0,0,0\n", {"line 2", "no class marked 1"});
  bad(header + "ISIC_1,0,0.5,0,0,0,0,0.5\n", {"line 2", "'0.5'", "0 or 1"});
  bad("image,MEL,NV,BCC,AK,BKL,DF,VASC,SCC,UNK\nISIC_1,0,1,0,0,0,0,0,0,0\n", {"line 1", "no 'AKIEC' column"});
  bad("image,MEL,NV,BCC,AKIEC,BKL,DF,VASC,UNK\nISIC_1,0,1,0,0,0,0,0,0\n", {"line 1", "unknown or repeated column 'UNK'"});
  bad("img,MEL,NV,BCC,AKIEC,BKL,DF,VASC\n", {"no 'image' column"});
  bad(header, {"no images listed"});
  bad(header + "ISIC_1,0,1,0,0,0,0,0\nISIC_1,0,1,0,0,0,0,0\n", {"line 3", "already appeared on line 2"});
  bad(header + "ISIC_9,0,1,0,0,0,0,0\n", {"line 2", "ISIC_9 has no file ISIC_9.jpg"});
  expect_error([&] { read_isic_ground_truth((t.path / "none.csv").string(), t.str()); }, {"none.csv", "not found"});
}

BOOST_AUTO_TEST_CASE(images_fingerprint_depends_on_the_set_of_images_only) {
  Dataset d;
  d.samples = {{"ab", "L0", "x/ab.jpg", 5}, {"c", "L1", "x/c.jpg", 3}, {"a", "L2", "x/a.jpg", 5}, {"bc", "L3", "x/bc.jpg", 0}};
  const std::string fp = images_fingerprint(d, {0, 1});
  BOOST_TEST(fp.starts_with("2:"));
  BOOST_TEST(fp.size() == 2 + 16);
  BOOST_TEST(images_fingerprint(d, {1, 0}) == fp);                   // order of the indices
  BOOST_TEST(images_fingerprint({"c", "ab"}) == fp);                 // from the ids themselves
  BOOST_TEST(images_fingerprint(d, {2, 3}) != fp);                   // "a","bc" against "ab","c": same letters
  BOOST_TEST(images_fingerprint(d, {0}) != fp);                      // a subset
  BOOST_TEST(images_fingerprint(d, {0, 1, 2}) != fp);                // a superset
  BOOST_TEST(images_fingerprint(d, {}) == "0:cbf29ce484222325");     // FNV-1a's offset basis: nothing hashed
  Dataset reordered = d;                                              // rows of the metadata in another order
  std::swap(reordered.samples[0], reordered.samples[1]);
  BOOST_TEST(images_fingerprint(reordered, {0, 1}) == fp);
  expect_error([&] { images_fingerprint(d, {4}); }, {"index 4", "4 images"});
}

BOOST_AUTO_TEST_CASE(split_csv_lists_each_image_with_its_side) {
  Dataset d;
  d.samples = {{"I0", "L0", "imgs/I0.jpg", 5}, {"I1", "L1", "a,b/I1.jpg", 3}, {"I2", "L0", "imgs/I2.jpg", 5},
               {"I3", "L\"3", "imgs/I3.jpg", 0}};
  Split s;
  s.train = {0, 2}, s.val = {1};  // I3 on neither side (e.g. skipped as unreadable): not listed
  BOOST_TEST(split_csv(d, s) ==
             "image_id,lesion_id,dx,split,path\n"
             "I0,L0,nv,train,imgs/I0.jpg\n"
             "I1,L1,df,val,\"a,b/I1.jpg\"\n"
             "I2,L0,nv,train,imgs/I2.jpg\n");
  s.val = {3};
  BOOST_TEST(split_csv(d, s).find("I3,\"L\"\"3\",akiec,val,imgs/I3.jpg\n") != std::string::npos);
  s.test = {3};  // a held-out test image is listed as such
  s.val = {1};
  BOOST_TEST(split_csv(d, s).find("I3,\"L\"\"3\",akiec,test,imgs/I3.jpg\n") != std::string::npos);
  s.test = {2};
  expect_error([&] { split_csv(d, s); }, {"I2 is on both sides"});
  s.test.clear();
  s.val = {4};
  expect_error([&] { split_csv(d, s); }, {"val index 4", "4 images"});
  s.val = {2};
  expect_error([&] { split_csv(d, s); }, {"I2 is on both sides"});
}

BOOST_AUTO_TEST_CASE(grouped_split_small) {
  TempDir t;
  small_dataset(t);
  const Dataset d = read_ham10000(t.str(), {.images = "imgs"});
  expect_error([&] { grouped_split(d, 0.0, 1); }, {"val_fraction 0", "(0, 1)"});
  expect_error([&] { grouped_split(d, 1.0, 1); }, {"val_fraction 1"});
  // A synthetic-like dataset: 60 lesions of 1-3 images over 3 classes.
  Dataset big;
  for (int l = 0; l < 60; ++l)
    for (int i = 0; i <= l % 3; ++i)
      big.samples.push_back({fmt::format("I{}_{}", l, i), fmt::format("L{}", l), "", l % 7 == 0 ? 0 : 1 + l % 2});
  for (uint64_t seed = 0; seed < 5; ++seed) check_split(big, grouped_split(big, 0.25, seed), 0.25, 0.08);
  // Too few images for a validation set.
  Dataset tiny;
  tiny.samples.push_back({"a", "a", "", 0});
  tiny.samples.push_back({"b", "b", "", 1});
  expect_error([&] { grouped_split(tiny, 0.2, 0); }, {"validation", "empty"});
}

namespace {
// 150 lesions of 1 to 4 images over 4 classes of different sizes.
Dataset kfold_dataset() {
  Dataset d;
  for (int l = 0; l < 150; ++l) {
    const int label = l % 5 == 0 ? 0 : l % 3 == 0 ? 2 : l % 11 == 0 ? 6 : 5;
    for (int i = 0; i <= (l * 7) % 4; ++i)
      d.samples.push_back({fmt::format("I{}_{}", l, i), fmt::format("L{}", l), "", label});
  }
  return d;
}
}  // namespace

BOOST_AUTO_TEST_CASE(grouped_kfold_partitions_lesions_and_balances_classes) {
  const Dataset d = kfold_dataset();
  const size_t n = d.samples.size();
  // The largest lesion (in images) of each class: the bound on its per-fold imbalance.
  std::map<std::string, int64_t> lesion_size;
  for (const Sample& s : d.samples) lesion_size[s.lesion_id]++;
  std::array<int64_t, kNumClasses> largest{};
  for (const Sample& s : d.samples) largest[s.label] = std::max(largest[s.label], lesion_size[s.lesion_id]);
  for (int folds : {2, 5, 7}) {
    std::vector<int> val_count(n, 0);
    std::vector<std::array<int64_t, kNumClasses>> per_fold;
    for (int f = 0; f < folds; ++f) {
      const Split s = grouped_kfold(d, folds, f, 3);
      check_split(d, s, 1.0 / folds, 1.0);  // partition and lesion grouping; balance checked below
      BOOST_TEST(std::is_sorted(s.train.begin(), s.train.end()));
      BOOST_TEST(std::is_sorted(s.val.begin(), s.val.end()));
      for (size_t i : s.val) ++val_count[i];
      per_fold.push_back(subset(d, s.val).class_counts());
    }
    int wrong = 0;
    for (int c : val_count) wrong += c != 1;
    BOOST_TEST(wrong == 0, folds << " folds: " << wrong << " images not in validation exactly once");
    const auto all = d.class_counts();
    for (int k = 0; k < kNumClasses; ++k) {
      int64_t lo = all[k], hi = 0;
      for (const auto& c : per_fold) lo = std::min(lo, c[k]), hi = std::max(hi, c[k]);
      BOOST_TEST(hi - lo <= largest[k], folds << " folds, " << class_names()[k] << ": fold sizes " << lo << " to " << hi
                                              << ", largest lesion " << largest[k]);
    }
  }
  // Deterministic, and the seed matters.
  for (int f = 0; f < 5; ++f) {
    const Split a = grouped_kfold(d, 5, f, 11), b = grouped_kfold(d, 5, f, 11);
    BOOST_TEST((a.train == b.train && a.val == b.val), "fold " << f << " differs between two calls");
  }
  BOOST_TEST((grouped_kfold(d, 5, 0, 11).val != grouped_kfold(d, 5, 0, 12).val));
  // A synthetic HAM10000-like set (seven classes, some of a few images): the folds are about
  // equally large overall too, and the large classes close to a fifth each.
  TempDir t;
  write_synthetic_ham10000(t.str(), {.count = 240, .width = 32, .height = 32, .seed = 5});
  const Dataset syn = read_ham10000(t.str());
  for (int f = 0; f < 5; ++f) {
    const Split s = grouped_kfold(syn, 5, f, 1);
    check_split(syn, s, 0.2, 1.0);
    BOOST_TEST(std::abs(static_cast<double>(s.val.size()) - 48) <= 6,
               "fold " << f << ": " << s.val.size() << " images");
    const auto all = syn.class_counts(), val = subset(syn, s.val).class_counts();
    for (int k = 0; k < kNumClasses; ++k)
      if (all[k] >= 40) BOOST_TEST(std::abs(static_cast<double>(val[k]) / all[k] - 0.2) <= 0.05, class_names()[k]);
  }
}

BOOST_AUTO_TEST_CASE(test_set_is_held_out_before_the_split_and_shared_across_seeds) {
  const Dataset d = kfold_dataset();
  const size_t n = d.samples.size();
  std::vector<size_t> first_test;
  for (uint64_t seed : {0, 1, 2})
    for (int fold : {-1, 0, 3}) {  // -1: a val_fraction split of the rest, else a fold of 5
      const Split s = with_test_set(d, 0.2, 7, [&](const Dataset& rest) {
        return fold < 0 ? grouped_split(rest, 0.25, seed) : grouped_kfold(rest, 5, fold, seed);
      });
      // Every image on exactly one side, each side ascending, no lesion on two sides.
      std::vector<int> seen(n, 0);
      std::map<std::string, int> side;  // lesion -> 0 train, 1 val, 2 test (must not vary)
      int i_side = 0;
      for (const auto* v : {&s.train, &s.val, &s.test}) {
        BOOST_TEST(std::is_sorted(v->begin(), v->end()));
        BOOST_TEST(!v->empty());
        for (size_t i : *v) {
          BOOST_TEST(i < n);
          ++seen[i];
          const auto it = side.try_emplace(d.samples[i].lesion_id, i_side).first;
          BOOST_TEST(it->second == i_side, "lesion " << d.samples[i].lesion_id << " on two sides");
        }
        ++i_side;
      }
      BOOST_TEST(std::count(seen.begin(), seen.end(), 1) == static_cast<long>(n));
      // The test set is the same whatever the seed or fold of the rest's split.
      if (first_test.empty()) first_test = s.test;
      BOOST_TEST((s.test == first_test), "seed " << seed << " fold " << fold << " moved the test set");
      // About a fifth of every class with enough images is in the test set.
      const auto all = d.class_counts(), test = subset(d, s.test).class_counts();
      for (int k = 0; k < kNumClasses; ++k)
        if (all[k] >= 40) BOOST_TEST(std::abs(static_cast<double>(test[k]) / all[k] - 0.2) <= 0.05, class_names()[k]);
    }
  // Another test seed, another test set; a bad fraction names itself.
  const auto rest = [](const Dataset& r) { return grouped_split(r, 0.25, 0); };
  BOOST_TEST((with_test_set(d, 0.2, 8, rest).test != first_test));
  expect_error([&] { with_test_set(d, 0.0, 0, rest); }, {"test_fraction 0", "(0, 1)"});
}

BOOST_AUTO_TEST_CASE(grouped_kfold_errors_name_the_parameter) {
  const Dataset d = kfold_dataset();
  expect_error([&] { grouped_kfold(d, 1, 0, 0); }, {"grouped_kfold", "folds 1", "[2, 20]"});
  expect_error([&] { grouped_kfold(d, 21, 0, 0); }, {"folds 21", "[2, 20]"});
  expect_error([&] { grouped_kfold(d, 5, 5, 0); }, {"fold 5", "[0, 5)"});
  expect_error([&] { grouped_kfold(d, 5, -1, 0); }, {"fold -1", "[0, 5)"});
  expect_error([&] { grouped_kfold(Dataset{}, 5, 0, 0); }, {"grouped_kfold", "no images"});
  // Two lesions in three folds: one fold has no validation images.
  Dataset two;
  two.samples = {{"a", "A", "", 0}, {"b", "B", "", 0}};
  int empty = 0;
  for (int f = 0; f < 3; ++f) {
    try {
      grouped_kfold(two, 3, f, 0);
    } catch (const Error& e) {
      ++empty;
      BOOST_TEST(std::string(e.what()).find("validation set of fold") != std::string::npos, e.what());
      BOOST_TEST(std::string(e.what()).find("fewer folds") != std::string::npos, e.what());
    }
  }
  BOOST_TEST(empty == 1);
  // One lesion: the fold holding it leaves no training images.
  Dataset one;
  one.samples = {{"a", "A", "", 0}, {"b", "A", "", 0}};
  expect_error([&] { grouped_kfold(one, 2, 0, 0); }, {"training set of fold 0", "empty"});
  expect_error([&] { grouped_kfold(one, 2, 1, 0); }, {"validation set of fold 1", "empty"});
}

BOOST_AUTO_TEST_CASE(class_weights_values) {
  // counts 10, 20, 70, 0, 0, 0, 0: N = 100, K = 3 classes present.
  const std::array<int64_t, kNumClasses> counts = {10, 20, 70, 0, 0, 0, 0};
  const auto w1 = class_weights(counts, 1.0);
  BOOST_TEST(w1[0] == 100.0 / 30, boost::test_tools::tolerance(1e-6));
  BOOST_TEST(w1[1] == 100.0 / 60, boost::test_tools::tolerance(1e-6));
  BOOST_TEST(w1[2] == 100.0 / 210, boost::test_tools::tolerance(1e-6));
  BOOST_TEST(w1[3] == 0.f);
  BOOST_TEST(10 * w1[0] + 20 * w1[1] + 70 * w1[2] == 100.0, boost::test_tools::tolerance(1e-5));
  const auto w5 = class_weights(counts, 0.5);
  BOOST_TEST(w5[0] == std::sqrt(100.0 / 30), boost::test_tools::tolerance(1e-6));
  BOOST_TEST(w5[2] == std::sqrt(100.0 / 210), boost::test_tools::tolerance(1e-6));
  for (float w : class_weights({5, 5, 5, 5, 5, 5, 5}, 1.0)) BOOST_TEST(w == 1.f);
  for (float w : class_weights({1, 2, 3, 4, 5, 6, 7}, 0.0)) BOOST_TEST(w == 1.f);
  expect_error([] { class_weights({}, 1.0); }, {"every class count is 0"});
  expect_error([&] { class_weights(counts, -1.0); }, {"exponent -1"});
}

BOOST_AUTO_TEST_CASE(logit_offsets_values) {
  // tau * log(n_k / total), total 1000; an empty class counts as half a sample.
  const std::array<int64_t, kNumClasses> counts = {100, 50, 0, 200, 150, 400, 100};
  const auto b = logit_offsets(counts, 1.0);
  const double want[kNumClasses] = {std::log(0.1), std::log(0.05), std::log(0.0005), std::log(0.2),
                                    std::log(0.15), std::log(0.4), std::log(0.1)};
  for (int k = 0; k < kNumClasses; ++k) BOOST_TEST(b[k] == want[k], boost::test_tools::tolerance(1e-6));
  const auto h = logit_offsets(counts, 0.5);
  for (int k = 0; k < kNumClasses; ++k) BOOST_TEST(h[k] == 0.5 * want[k], boost::test_tools::tolerance(1e-6));
  for (float x : logit_offsets(counts, 0.0)) BOOST_TEST(x == 0.f);
  expect_error([] { logit_offsets({}, 1.0); }, {"every class count is 0"});
  expect_error([&] { logit_offsets(counts, -1.0); }, {"tau -1"});
  // Square-root sampling: the stream's prior is sqrt(n_k) / sum_j sqrt(n_j) over the classes present.
  double root_total = 0;
  for (auto n : counts) root_total += std::sqrt(static_cast<double>(n));
  const auto r = logit_offsets(counts, 1.0, 0.5);
  for (int k = 0; k < kNumClasses; ++k)
    BOOST_TEST(r[k] == std::log(std::sqrt(std::max<double>(0.5, counts[k])) / root_total),
               boost::test_tools::tolerance(1e-6));
  // Balanced sampling (power 0): a uniform prior over the 6 classes present, the same offset for all.
  for (float x : logit_offsets(counts, 1.0, 0.0)) BOOST_TEST(x == -std::log(6.0), boost::test_tools::tolerance(1e-6));
  expect_error([&] { logit_offsets(counts, 1.0, 1.5); }, {"power 1.5"});
}

BOOST_AUTO_TEST_CASE(synthetic_ham10000_round_trip) {
  TempDir t;
  const SyntheticOptions o{.count = 240, .width = 64, .height = 48, .seed = 3};
  const fs::path root = t.path / "synth";
  write_synthetic_ham10000(root.string() + "/", o);  // a trailing slash names the same folder
  BOOST_TEST(fs::is_regular_file(root / "HAM10000_metadata.csv"));
  BOOST_TEST(!fs::exists(t.path / "synth.partial"));
  BOOST_TEST(synthetic_ham10000_matches(root.string(), o));
  SyntheticOptions other = o;
  other.seed = 4;
  BOOST_TEST(!synthetic_ham10000_matches(root.string(), other));
  const std::string csv = read_text(root / "HAM10000_metadata.csv");
  BOOST_TEST(csv.rfind("lesion_id,image_id,dx,dx_type,age,sex,localization\n", 0) == 0u);

  size_t part1 = 0, part2 = 0;
  for (auto& e : fs::directory_iterator(root / "HAM10000_images_part_1")) part1 += e.path().extension() == ".jpg";
  for (auto& e : fs::directory_iterator(root / "HAM10000_images_part_2")) part2 += e.path().extension() == ".jpg";
  BOOST_TEST(part1 == 120u);
  BOOST_TEST(part2 == 120u);

  const Dataset d = read_ham10000(root.string());
  BOOST_REQUIRE(d.samples.size() == 240u);
  const auto counts = d.class_counts();
  for (int k = 0; k < kNumClasses; ++k)
    BOOST_TEST(std::abs(counts[k] - synthetic_class_mix()[k] * 240) <= 1.0, class_names()[k] << ": " << counts[k]);
  BOOST_TEST(counts[class_index("nv")] == 96);
  const int64_t lesions = d.num_lesions();
  BOOST_TEST(lesions < 220);  // about 1.3 images per lesion: some lesions have several
  BOOST_TEST(lesions > 150);
  check_split(d, grouped_split(d, 0.2, 1), 0.2, 0.1);

  // A real JPEG of the requested size.
  const std::string jpeg = read_text(d.samples[0].path);
  tjhandle h = tjInitDecompress();
  int w = 0, hgt = 0, sub = 0, cs = 0;
  BOOST_TEST(tjDecompressHeader3(h, reinterpret_cast<const unsigned char*>(jpeg.data()),
                                 static_cast<unsigned long>(jpeg.size()), &w, &hgt, &sub, &cs) == 0);
  tjDestroy(h);
  BOOST_TEST(w == 64);
  BOOST_TEST(hgt == 48);
  BOOST_TEST(sub == TJSAMP_420);

  // Deterministic: the same seed writes the same bytes; another seed something else.
  write_synthetic_ham10000((t.path / "again").string(), o);
  BOOST_TEST(read_text(t.path / "again" / "HAM10000_metadata.csv") == csv);
  BOOST_TEST(read_text(t.path / "again" / fs::relative(d.samples[5].path, root)) == read_text(d.samples[5].path));
  write_synthetic_ham10000((t.path / "other").string(), other);
  BOOST_TEST(read_text(t.path / "other" / "HAM10000_metadata.csv") != csv);

  // Existing folders: an earlier synthetic set only with overwrite; anything else never.
  expect_error([&] { write_synthetic_ham10000(root.string(), o); }, {"already exists", "--force"});
  write_synthetic_ham10000(root.string(), {.count = 20, .width = 32, .height = 32, .seed = 1, .overwrite = true});
  BOOST_TEST(read_ham10000(root.string()).samples.size() == 20u);
  BOOST_TEST(!fs::exists(t.path / "synth.old"));
  write_text(t.path / "mine" / "notes.txt", "keep");
  expect_error([&] { write_synthetic_ham10000((t.path / "mine").string(), {.count = 20, .overwrite = true}); },
               {"not a dermis synthetic dataset"});
  BOOST_TEST(read_text(t.path / "mine" / "notes.txt") == "keep");
  // DIR.partial and DIR.old are removed only when the generator left them: an interrupted run's
  // DIR.partial is replaced; a folder of the user's that happens to be named so is refused and kept.
  write_text(t.path / "cut.partial" / "dermis_synthetic_partial.txt", "");
  write_text(t.path / "cut.partial" / "HAM10000_images_part_1" / "half.jpg", "x");
  write_synthetic_ham10000((t.path / "cut").string(), {.count = 20, .width = 32, .height = 32});
  BOOST_TEST(!fs::exists(t.path / "cut.partial"));
  BOOST_TEST(read_ham10000((t.path / "cut").string()).samples.size() == 20u);
  BOOST_TEST(!fs::exists(t.path / "cut" / "dermis_synthetic_partial.txt"));
  // A leftover without a marker (killed before writing it, or by an older version): only the
  // generator's own names, so replaced too; an empty DIR.partial as well.
  write_text(t.path / "cut2.partial" / "HAM10000_images_part_2" / "half.jpg", "x");
  write_synthetic_ham10000((t.path / "cut2").string(), {.count = 20, .width = 32, .height = 32});
  BOOST_TEST(!fs::exists(t.path / "cut2.partial"));
  fs::create_directories(t.path / "cut3.partial");
  write_synthetic_ham10000((t.path / "cut3").string(), {.count = 20, .width = 32, .height = 32});
  BOOST_TEST(read_ham10000((t.path / "cut3").string()).samples.size() == 20u);
  write_text(t.path / "notes.partial" / "notes.txt", "keep");
  expect_error([&] { write_synthetic_ham10000((t.path / "notes").string(), {.count = 20}); },
               {"notes.partial' exists and is not a leftover", "move it away"});
  BOOST_TEST(read_text(t.path / "notes.partial" / "notes.txt") == "keep");
  BOOST_TEST(!fs::exists(t.path / "notes"));
  // An empty output folder is kept when the refusal comes before anything is written.
  fs::create_directories(t.path / "notes");
  expect_error([&] { write_synthetic_ham10000((t.path / "notes").string(), {.count = 20}); }, {"notes.partial' exists"});
  BOOST_TEST(fs::is_directory(t.path / "notes"));
  fs::remove(t.path / "notes");
  write_text(t.path / "cut.old" / "notes.txt", "keep");
  expect_error([&] { write_synthetic_ham10000((t.path / "cut").string(), {.count = 20, .overwrite = true}); },
               {"cut.old' exists and is not a leftover"});
  BOOST_TEST(read_text(t.path / "cut.old" / "notes.txt") == "keep");
  BOOST_TEST(read_ham10000((t.path / "cut").string()).samples.size() == 20u);
  // The earlier dataset moved aside by an interrupted --force run (it holds the marker) is removed.
  fs::remove_all(t.path / "cut.old");
  fs::copy(t.path / "cut", t.path / "cut.old", fs::copy_options::recursive);
  write_synthetic_ham10000((t.path / "cut").string(), {.count = 21, .width = 32, .height = 32, .overwrite = true});
  BOOST_TEST(!fs::exists(t.path / "cut.old"));
  BOOST_TEST(read_ham10000((t.path / "cut").string()).samples.size() == 21u);
  expect_error([&] { write_synthetic_ham10000((t.path / "x").string(), {.count = 3}); }, {"count 3"});
  expect_error([&] { write_synthetic_ham10000((t.path / "x").string(), {.count = 10, .width = 8}); }, {"8x450"});
}
