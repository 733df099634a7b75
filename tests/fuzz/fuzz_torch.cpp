// libFuzzer target: the torch.save (.pth) reader on arbitrary bytes (zip directory, pickle, storage
// views), then, when it parses, the mapping onto a model (names, shapes). Any input must end in
// success or one dermis::Error.
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <string>

#include "framework/error.h"
#include "framework/io/torch_file.h"
#include "models/pretrained.h"
#include "models/registry.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace dermis;
  static const std::string path =
      (std::filesystem::temp_directory_path() / ("dermis_fuzz_" + std::to_string(::getpid()) + ".pth")).string();
  static const std::shared_ptr<models::Classifier> model = models::create("cbam_small", 7);
  {
    std::ofstream f(path, std::ios::binary | std::ios::trunc);
    f.write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(size));
  }
  try {
    const io::TensorFile t = io::load_torch(path);
    models::load_pretrained(*model, t);
  } catch (const Error&) {
  }
  return 0;
}
