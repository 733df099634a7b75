// Helpers shared by the test programs: temporary folders and checks that a call fails with a
// dermis::Error whose message contains given words.
#pragma once

#include <boost/test/unit_test.hpp>
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <initializer_list>
#include <string>

#include "framework/error.h"

namespace testing {

// A fresh temporary folder, removed with everything in it at scope exit.
struct TempDir {
  std::filesystem::path path;
  TempDir() {
    static std::atomic<int> n{0};
    path = std::filesystem::temp_directory_path() /
           ("dermis_test_" + std::to_string(::getpid()) + "_" + std::to_string(n++));
    std::filesystem::remove_all(path);
    std::filesystem::create_directories(path);
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  std::string str() const { return path.string(); }
  std::string file(const std::string& name) const { return (path / name).string(); }
  std::string operator/(const std::string& name) const { return file(name); }
};

// Checks that f() throws dermis::Error and that its message contains every needle.
template <class F>
void expect_error(F&& f, std::initializer_list<std::string> needles) {
  try {
    f();
    BOOST_ERROR("expected a dermis::Error, nothing was thrown");
  } catch (const dermis::Error& e) {
    BOOST_TEST_MESSAGE("error message: " << e.what());  // shown with --log_level=message
    for (const auto& n : needles)
      BOOST_TEST(std::string(e.what()).find(n) != std::string::npos, "message '" << e.what() << "' lacks '" << n << "'");
  }
}
template <class F>
void expect_error(F&& f, const std::string& needle) {
  expect_error(std::forward<F>(f), {needle});
}

}  // namespace testing
