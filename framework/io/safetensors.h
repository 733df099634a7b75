// safetensors files (https://github.com/huggingface/safetensors): 8-byte little-endian header
// length, a JSON header {name: {dtype, shape, data_offsets}, "__metadata__": {str: str}}, then the
// raw little-endian tensor bytes. Any safetensors reader (Python's safetensors, or numpy with a few
// lines) loads what dermis writes. Writes are atomic (temporary file, fsync, rename).
#pragma once

#include <map>
#include <string>
#include <utility>
#include <vector>

#include "../tensor.h"

namespace dermis::io {

struct TensorFile {
  std::vector<std::pair<std::string, Tensor>> tensors;  // in file order
  std::map<std::string, std::string> metadata;
  const Tensor* find(const std::string& name) const;
  const Tensor& at(const std::string& name) const;  // throws naming the missing tensor
  std::string path;
};

// Writes f32 tensors (any layout; stored plain) and string metadata to `path` atomically.
void save_safetensors(const std::string& path, const std::vector<std::pair<std::string, Tensor>>& tensors,
                      const std::map<std::string, std::string>& metadata = {});
// Reads and validates a file; a damaged or truncated file is rejected with a dermis::Error that
// names the file and the problem. F32 tensors, and F16, BF16, F64 and integer ones converted to f32.
TensorFile load_safetensors(const std::string& path);

}  // namespace dermis::io
