// Helpers shared by the test programs: temporary folders, checks that a call fails with a
// dermis::Error whose message contains given words, a watchdog against hangs, and preconditions
// for test cases that need a CPU capability (framework/cpu.h) or an optional tool.
#pragma once

#include <boost/test/unit_test.hpp>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <initializer_list>
#include <iostream>
#include <mutex>
#include <string>
#include <thread>

#include "framework/cpu.h"
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

// Ends the test program with a clear message if it is still alive `seconds` after construction
// (a hang, e.g. a deadlocked thread pool, fails in seconds instead of at meson's timeout).
class Watchdog {
 public:
  Watchdog(int seconds, std::string what) : what_(std::move(what)) {
    thread_ = std::thread([this, seconds] {
      std::unique_lock<std::mutex> lock(mu_);
      if (!cv_.wait_for(lock, std::chrono::seconds(seconds), [this] { return done_; })) {
        std::fprintf(stderr, "watchdog: %s did not finish within %d s (a hang); ending the test program\n",
                     what_.c_str(), seconds);
        std::fflush(stderr);
        std::_Exit(3);
      }
    });
  }
  ~Watchdog() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      done_ = true;
    }
    cv_.notify_all();
    thread_.join();
  }
  Watchdog(const Watchdog&) = delete;
  Watchdog& operator=(const Watchdog&) = delete;

 private:
  std::string what_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool done_ = false;
  std::thread thread_;
};

// Preconditions: BOOST_AUTO_TEST_CASE(name, *testing::needs_bf16()) runs the case only where the
// CPU can; elsewhere Boost.Test reports it skipped (never passed, never failed) and this prints
// "skipped test case NAME: REASON", which ./dermis test lists. tests/test_main.cpp turns a program
// whose cases were all skipped into meson's SKIP.
// The capability is asked when the case is about to run, not at registration (static init).
inline boost::unit_test::precondition needs(std::function<bool()> available, std::function<std::string()> reason) {
  return boost::unit_test::precondition([available, reason](boost::unit_test::test_unit_id id) {
    if (available()) return boost::test_tools::assertion_result(true);
    const std::string why = reason();
    std::cout << "skipped test case " << boost::unit_test::framework::get(id, boost::unit_test::TUT_ANY).p_name.get()
              << ": " << why << std::endl;
    boost::test_tools::assertion_result r(false);
    r.message() << why;
    return r;
  });
}
inline boost::unit_test::precondition needs_bf16() {
  return needs([] { return dermis::cpu::info().bf16; },
               [] { return "no bf16 kernels on this CPU: " + dermis::cpu::summary(); });
}
inline boost::unit_test::precondition needs_winograd() {
  return needs([] { return dermis::cpu::info().winograd; }, [] {
    return "no Winograd convolution on this CPU (oneDNN 2.6 has it for AVX-512 only): " + dermis::cpu::summary();
  });
}

}  // namespace testing
