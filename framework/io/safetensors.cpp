// safetensors reader (F32, and other dtypes converted to f32) and atomic writer (F32).
#include "safetensors.h"

#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>

#include <fmt/format.h>

#include "../error.h"
#include "../fault.h"
#include "atomic_file.h"
#include "json.h"
#include "stored_dtype.h"

namespace dermis::io {

const Tensor* TensorFile::find(const std::string& name) const {
  for (auto& [n, t] : tensors)
    if (n == name) return &t;
  return nullptr;
}

const Tensor& TensorFile::at(const std::string& name) const {
  const Tensor* t = find(name);
  DERMIS_CHECK(t != nullptr, "{}: no tensor named '{}' in the file", path, name);
  return *t;
}

void save_safetensors(const std::string& path, const std::vector<std::pair<std::string, Tensor>>& tensors,
                      const std::map<std::string, std::string>& metadata) {
  // The header is written directly (names quoted with json::quote); the parser reads it back.
  std::string h = "{";
  if (!metadata.empty()) {
    h += "\"__metadata__\":{";
    bool first = true;
    for (auto& [k, v] : metadata) {
      if (!first) h += ',';
      first = false;
      h += json::quote(k);
      h += ':';
      h += json::quote(v);
    }
    h += "}";
  }
  std::vector<Tensor> plain;
  std::vector<std::string> seen;
  size_t offset = 0;
  for (auto& [name, t] : tensors) {
    DERMIS_CHECK(t.defined() && t.dtype() == DType::f32, "save_safetensors: tensor '{}' must be a defined f32 tensor",
                 name);
    DERMIS_CHECK(name != "__metadata__" && std::find(seen.begin(), seen.end(), name) == seen.end(),
                 "save_safetensors: duplicate or reserved name '{}'", name);
    seen.push_back(name);
    plain.push_back(t.plain());
    const size_t bytes = static_cast<size_t>(t.numel()) * sizeof(float);
    if (h.size() > 1) h += ',';
    h += json::quote(name);
    h += ":{\"dtype\":\"F32\",\"shape\":[";
    for (size_t i = 0; i < t.shape().size(); ++i) {
      if (i) h += ',';
      h += std::to_string(t.shape()[i]);
    }
    h += fmt::format("],\"data_offsets\":[{},{}]}}", offset, offset + bytes);
    offset += bytes;
  }
  h += "}";
  while ((8 + h.size()) % 8) h += ' ';  // keeps the data 8-byte aligned (allowed by the format)

  const bool kill_midway = fault::trigger("kill_in_save"), fail_midway = fault::trigger("enospc_in_save");
  AtomicFile f(path, fail_midway);
  uint64_t len = h.size();
  unsigned char le[8];
  for (int i = 0; i < 8; ++i) le[i] = static_cast<unsigned char>(len >> (8 * i));
  f.write(le, 8);
  f.write(h.data(), h.size());
  for (size_t i = 0; i < plain.size(); ++i) {
    if (kill_midway && i == plain.size() / 2) ::kill(::getpid(), SIGKILL);
    f.write(plain[i].data(), static_cast<size_t>(plain[i].numel()) * sizeof(float));
  }
  f.commit();
}

TensorFile load_safetensors(const std::string& path) {
  DERMIS_CHECK(!std::filesystem::is_directory(path), "{} is a folder, not a checkpoint file; give a .safetensors file in it",
               path);
  std::ifstream f(path, std::ios::binary);
  DERMIS_CHECK(f.good(), "cannot open {}: {}", path, std::strerror(errno));
  f.seekg(0, std::ios::end);
  const int64_t size = f.tellg();
  f.seekg(0);
  DERMIS_CHECK(size >= 8, "{} is not a safetensors file: only {} bytes (truncated?)", path, size);
  unsigned char le[8];
  f.read(reinterpret_cast<char*>(le), 8);
  uint64_t hlen = 0;
  for (int i = 0; i < 8; ++i) hlen |= static_cast<uint64_t>(le[i]) << (8 * i);
  DERMIS_CHECK(hlen >= 2 && hlen <= static_cast<uint64_t>(size - 8) && hlen <= (100u << 20),
               "{} is damaged or not a safetensors file: header length {} does not fit the {}-byte file", path, hlen,
               size);
  std::string h(hlen, '\0');
  f.read(h.data(), static_cast<std::streamsize>(hlen));
  DERMIS_CHECK(f.good(), "{}: could not read the header (truncated?)", path);
  json::Value header;
  try {
    header = json::parse(h, path + " header");
  } catch (const Error& e) {
    DERMIS_FAIL("{} is damaged or not a safetensors file: {}", path, e.what());
  }
  DERMIS_CHECK(header.is_object(), "{} is damaged: the header is not a JSON object", path);
  const uint64_t data_size = static_cast<uint64_t>(size) - 8 - hlen;

  TensorFile out;
  out.path = path;
  struct Entry {
    std::string name;
    Shape shape;
    uint64_t begin, end;
    StoredDType dtype;
  };
  std::vector<Entry> entries;
  for (auto& [name, v] : header.object()) {
    if (name == "__metadata__") {
      for (auto& [k, m] : v.object("__metadata__")) out.metadata[k] = m.string("metadata value");
      continue;
    }
    try {
      const std::string& dt = v.find("dtype") ? v.find("dtype")->string("dtype") : "";
      StoredDType sd = StoredDType::f32;
      DERMIS_CHECK(stored_dtype_named(dt, &StoredDTypeName::safetensors, sd),
                   "dtype {} is not supported (dermis reads F32, F16, BF16, F64 and integer tensors, as f32)",
                   dt.empty() ? "(missing)" : dt);
      DERMIS_CHECK(v.find("shape") && v.find("data_offsets"), "shape or data_offsets missing");
      Entry e{name, {}, 0, 0, sd};
      const uint64_t es = static_cast<uint64_t>(stored_size(sd));
      uint64_t elements = 1;
      for (auto& d : v.find("shape")->array("shape")) {
        const int64_t x = d.integer("shape entry");
        DERMIS_CHECK(x > 0 && x < (int64_t{1} << 40), "bad dimension {}", x);
        DERMIS_CHECK(e.shape.size() < 8, "more than 8 dimensions");
        // Checked before multiplying, so that no product can overflow.
        DERMIS_CHECK(static_cast<uint64_t>(x) <= data_size / es / elements,
                     "shape needs more than the file's {} data bytes", data_size);
        elements *= static_cast<uint64_t>(x);
        e.shape.push_back(x);
      }
      const auto& offs = v.find("data_offsets")->array("data_offsets");
      DERMIS_CHECK(offs.size() == 2, "data_offsets must have two entries");
      const int64_t b = offs[0].integer("offset"), en = offs[1].integer("offset");
      DERMIS_CHECK(b >= 0 && en >= b && static_cast<uint64_t>(en) <= data_size,
                   "data_offsets [{}, {}] fall outside the {} data bytes (truncated file?)", b, en, data_size);
      DERMIS_CHECK(static_cast<uint64_t>(en - b) == static_cast<uint64_t>(numel_of(e.shape)) * es,
                   "{} bytes stored for shape {}", en - b, to_string(e.shape));
      e.begin = static_cast<uint64_t>(b);
      e.end = static_cast<uint64_t>(en);
      entries.push_back(std::move(e));
    } catch (const Error& err) {
      DERMIS_FAIL("{} is damaged: tensor '{}': {}", path, name, err.what());
    }
  }
  std::sort(entries.begin(), entries.end(), [](const Entry& a, const Entry& b) { return a.begin < b.begin; });
  for (size_t i = 1; i < entries.size(); ++i)
    DERMIS_CHECK(entries[i].begin >= entries[i - 1].end, "{} is damaged: tensors '{}' and '{}' overlap", path,
                 entries[i - 1].name, entries[i].name);
  for (auto& e : entries) {
    Tensor t = Tensor::empty(e.shape);
    f.seekg(static_cast<std::streamoff>(8 + hlen + e.begin));
    if (e.dtype == StoredDType::f32) {
      f.read(reinterpret_cast<char*>(t.data()), static_cast<std::streamsize>(e.end - e.begin));
    } else {  // converted to f32
      std::vector<unsigned char> raw(e.end - e.begin);
      f.read(reinterpret_cast<char*>(raw.data()), static_cast<std::streamsize>(raw.size()));
      const size_t es = static_cast<size_t>(stored_size(e.dtype));
      float* d = t.data();
      for (size_t i = 0; i < raw.size() / es; ++i) d[i] = stored_to_float(raw.data() + i * es, e.dtype);
    }
    DERMIS_CHECK(f.good(), "{}: could not read tensor '{}' (truncated?)", path, e.name);
    out.tensors.emplace_back(e.name, t);
  }
  return out;
}

}  // namespace dermis::io
