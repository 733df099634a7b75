// libFuzzer target: the checkpoint reader on arbitrary bytes. The safetensors parser, then, when the
// file parses, the dermis checkpoint layer (metadata, model rebuild, weight shapes). Any input must
// end in success or one dermis::Error.
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <string>

#include "framework/error.h"
#include "framework/io/safetensors.h"
#include "tools/experiment/checkpoint.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace dermis;
  static const std::string path =
      (std::filesystem::temp_directory_path() / ("dermis_fuzz_" + std::to_string(::getpid()) + ".safetensors"))
          .string();
  {
    std::ofstream f(path, std::ios::binary | std::ios::trunc);
    f.write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(size));
  }
  try {
    io::load_safetensors(path);
    experiment::load_checkpoint(path);
  } catch (const Error&) {
  }
  return 0;
}
