// Fault injection (see fault.h).
#include "fault.h"

#include <atomic>
#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>
#include <string>

namespace dermis::fault {

std::optional<int64_t> value(const char* name) {
  const char* env = std::getenv("DERMIS_FAULT");
  if (!env || !*env) return std::nullopt;
  const std::string s(env), n(name);
  size_t pos = 0;
  while (pos <= s.size()) {
    const size_t end = std::min(s.find(',', pos), s.size());
    const std::string item = s.substr(pos, end - pos);
    const size_t eq = item.find('=');
    if (item.substr(0, eq) == n) return eq == std::string::npos ? 1 : std::strtoll(item.c_str() + eq + 1, nullptr, 10);
    pos = end + 1;
  }
  return std::nullopt;
}

bool trigger(const char* name) {
  const auto v = value(name);
  if (!v) return false;
  static std::mutex mu;
  static std::map<std::string, int64_t> calls;
  std::lock_guard<std::mutex> lk(mu);
  return ++calls[name] == *v;
}

}  // namespace dermis::fault
