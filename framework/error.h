// dermis::Error and the always-on DERMIS_CHECK macro.
//
// Every misuse of the library (bad shapes, wrong rank, bad flags, bad files) throws dermis::Error
// with a message saying what went wrong, where, and what to do. Checks stay on in release builds.
#pragma once

#include <fmt/format.h>

#include <stdexcept>
#include <string>

namespace dermis {

class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& what) : std::runtime_error(what) {}
};

namespace detail {
[[noreturn]] void throw_error(const char* file, int line, const std::string& msg);
}  // namespace detail

}  // namespace dermis

// DERMIS_CHECK(cond, "fmt {}", args...) throws dermis::Error when cond is false.
#define DERMIS_CHECK(cond, ...)                                                  \
  do {                                                                           \
    if (!(cond)) [[unlikely]]                                                    \
      ::dermis::detail::throw_error(__FILE__, __LINE__, ::fmt::format(__VA_ARGS__)); \
  } while (0)

#ifdef __CPPCHECK__  // ./dermis lint: cppcheck does not follow throw_error's [[noreturn]] through the macro
#define DERMIS_FAIL(...) throw ::dermis::Error(::fmt::format(__VA_ARGS__))
#else
#define DERMIS_FAIL(...) ::dermis::detail::throw_error(__FILE__, __LINE__, ::fmt::format(__VA_ARGS__))
#endif
