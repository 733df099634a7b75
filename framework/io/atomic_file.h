// Atomic, durable file writes: the bytes go to PATH.tmp.PID, which is flushed to disk (fsync) and
// renamed over PATH, and then the folder is flushed so the rename survives a power cut. Readers see
// the old file or the new one, never a part. On any failure the temporary file is removed, the old
// PATH (if any) is untouched, and dermis::Error names the file and the reason.
//
//   io::AtomicFile f(path);      // opens PATH.tmp.PID
//   f.write(p, n); ...           // any number of pieces
//   f.commit();                  // fsync, rename, fsync the folder; without it nothing replaces PATH
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace dermis::io {

class AtomicFile {
 public:
  // `simulate_full_disk`: every write fails as if the disk were full (the crash-safety tests).
  explicit AtomicFile(std::string path, bool simulate_full_disk = false);
  ~AtomicFile();  // removes the temporary file unless committed
  AtomicFile(const AtomicFile&) = delete;
  AtomicFile& operator=(const AtomicFile&) = delete;

  void write(const void* data, size_t n);
  void commit();

 private:
  [[noreturn]] void fail(const std::string& what, int err);
  std::string path_, tmp_;
  int fd_ = -1;
  bool full_ = false, committed_ = false;
};

// The whole file at once.
void write_file_atomic(const std::string& path, const std::vector<uint8_t>& bytes);

// For a tool's output-file flag --`flag`: fails, naming the flag, unless `path` (when not empty) is
// a file name whose folder exists and is writable, so that a typo stops the tool before its work.
void check_output_path(const char* flag, const std::string& path);

// Whether two paths name one file ("a.csv" and "./a.csv", or two links to it), whether or not it exists yet.
bool same_file(const std::string& a, const std::string& b);

}  // namespace dermis::io
