// libFuzzer target: the dataset readers on arbitrary text. The first byte picks the reader:
//   0: HAM10000_metadata.csv (read_ham10000 on a folder holding a few images ISIC_000000[0-3].jpg)
//   1: ISIC 2018 ground-truth CSV (read_isic_ground_truth, same images)
//   2: the tab-separated HAM10000_metadata.tab
//   3: the CSV tokenizer alone
// Any input must end in success or one dermis::Error.
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <string>

#include "datasets/csv.h"
#include "datasets/ham10000.h"
#include "framework/error.h"

namespace fs = std::filesystem;

namespace {
const fs::path& root() {
  static const fs::path r = [] {
    const fs::path p = fs::temp_directory_path() / ("dermis_fuzz_csv_" + std::to_string(::getpid()));
    fs::create_directories(p / "images");
    for (int i = 0; i < 4; ++i) std::ofstream(p / "images" / ("ISIC_000000" + std::to_string(i) + ".jpg")) << "x";
    return p;
  }();
  return r;
}

void write(const fs::path& p, const std::string& text) {
  std::ofstream f(p, std::ios::binary | std::ios::trunc);
  f << text;
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace dermis;
  if (size == 0) return 0;
  const int mode = data[0] % 4;
  const std::string text(reinterpret_cast<const char*>(data) + 1, size - 1);
  const fs::path& r = root();
  try {
    if (mode == 0 || mode == 2) {
      fs::remove(r / "HAM10000_metadata.csv");
      fs::remove(r / "HAM10000_metadata.tab");
      write(r / (mode == 0 ? "HAM10000_metadata.csv" : "HAM10000_metadata.tab"), text);
      datasets::read_ham10000(r.string(), {"images", false});
    } else if (mode == 1) {
      write(r / "truth.csv", text);
      datasets::read_isic_ground_truth((r / "truth.csv").string(), (r / "images").string(), false);
    } else {
      datasets::parse_csv(text, "input.csv");
    }
  } catch (const Error&) {
  }
  return 0;
}
