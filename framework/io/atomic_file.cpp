// Atomic, durable file writes (see atomic_file.h).
#include "atomic_file.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>

#include "../error.h"

namespace dermis::io {

AtomicFile::AtomicFile(std::string path, bool simulate_full_disk)
    : path_(std::move(path)), tmp_(path_ + ".tmp." + std::to_string(::getpid())), full_(simulate_full_disk) {
  fd_ = ::open(tmp_.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  DERMIS_CHECK(fd_ >= 0, "cannot write {}: {} (check that the folder exists and is writable)", tmp_,
               std::strerror(errno));
}

AtomicFile::~AtomicFile() {
  if (committed_) return;
  if (fd_ >= 0) ::close(fd_);
  ::unlink(tmp_.c_str());
}

[[noreturn]] void AtomicFile::fail(const std::string& what, int err) {
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
  ::unlink(tmp_.c_str());
  DERMIS_FAIL("{} {} failed: {}{}; the previous file, if any, is untouched", what, path_, std::strerror(err),
              err == ENOSPC ? " (the disk is full)" : "");
}

void AtomicFile::write(const void* data, size_t n) {
  DERMIS_CHECK(fd_ >= 0 && !committed_, "AtomicFile: write to {} after it was committed or failed", path_);
  const char* c = static_cast<const char*>(data);
  while (n > 0) {
    ssize_t w = ::write(fd_, c, n);
    if (w < 0 && errno == EINTR) continue;
    if (full_) w = -1, errno = ENOSPC;
    if (w <= 0) fail("writing", w < 0 ? errno : EIO);
    c += w;
    n -= static_cast<size_t>(w);
  }
}

void AtomicFile::commit() {
  DERMIS_CHECK(fd_ >= 0 && !committed_, "AtomicFile: {} was already committed or failed", path_);
  if (::fsync(fd_) != 0) fail("writing", errno);
  const int fd = fd_;
  fd_ = -1;
  if (::close(fd) != 0) fail("writing", errno);
  if (::rename(tmp_.c_str(), path_.c_str()) != 0) fail("moving into place", errno);
  committed_ = true;
  // Make the rename itself durable: without this a power cut can lose the new directory entry.
  const size_t slash = path_.find_last_of('/');
  const std::string dir = slash == std::string::npos ? "." : (slash == 0 ? "/" : path_.substr(0, slash));
  const int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY);
  if (dfd >= 0) {
    ::fsync(dfd);
    ::close(dfd);
  }
}

void write_file_atomic(const std::string& path, const std::vector<uint8_t>& bytes) {
  AtomicFile f(path);
  f.write(bytes.data(), bytes.size());
  f.commit();
}

void check_output_path(const char* flag, const std::string& path) {
  namespace fs = std::filesystem;
  if (path.empty()) return;
  const fs::path dir = fs::path(path).parent_path();
  DERMIS_CHECK(!fs::is_directory(path), "flag --{}: {} is a folder; give a file name", flag, path);
  DERMIS_CHECK(dir.empty() || fs::exists(dir), "flag --{}: the folder {} does not exist; create it or give another path",
               flag, dir.string());
  DERMIS_CHECK(dir.empty() || fs::is_directory(dir), "flag --{}: {} is not a folder; give another path", flag,
               dir.string());
  DERMIS_CHECK(::access(dir.empty() ? "." : dir.c_str(), W_OK) == 0,
               "flag --{}: the folder {} is not writable; give another path", flag, dir.empty() ? "." : dir.string());
}

bool same_file(const std::string& a, const std::string& b) {
  namespace fs = std::filesystem;
  std::error_code ea, eb;
  if (fs::exists(a, ea) && fs::exists(b, eb)) return fs::equivalent(a, b, ea);
  const fs::path ca = fs::weakly_canonical(fs::absolute(a), ea), cb = fs::weakly_canonical(fs::absolute(b), eb);
  return !ea && !eb ? ca == cb : fs::absolute(a).lexically_normal() == fs::absolute(b).lexically_normal();
}

}  // namespace dermis::io
