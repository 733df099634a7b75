// Minimal command-line flag parsing for the tools and the benchmarks: --name VALUE or --name=VALUE,
// typed getters with range checks, --help text, and one clear error (naming the flag) for anything
// unknown or invalid; run_main, which turns any error into one line and exit code 2.
#pragma once

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <map>
#include <string>
#include <vector>

#include "distributed.h"
#include "error.h"
#include "ops.h"

namespace dermis::cli {

struct Flag {
  std::string name, value, help;
  bool is_bool = false;
  bool seen = false;
};

class Args {
 public:
  Args(std::string usage) : usage_(std::move(usage)) {}
  void add(const std::string& name, const std::string& def, const std::string& help) {
    flags_[name] = {name, def, help, false, false};
    order_.push_back(name);
  }
  void add_bool(const std::string& name, const std::string& help) {
    flags_[name] = {name, "false", help, true, false};
    order_.push_back(name);
  }
  // Returns false when --help was given (help already printed).
  bool parse(int argc, char** argv) {
    for (int i = 1; i < argc; ++i) {
      std::string a = argv[i];
      if (a == "--help" || a == "-h") {
        print_help();
        return false;
      }
      DERMIS_CHECK(a.rfind("--", 0) == 0, "unexpected argument '{}'; flags look like --name VALUE (see --help)", a);
      std::string name = a.substr(2), value;
      bool has_value = false;
      if (auto eq = name.find('='); eq != std::string::npos) {
        value = name.substr(eq + 1);
        name.resize(eq);
        has_value = true;
      }
      auto it = flags_.find(name);
      DERMIS_CHECK(it != flags_.end(), "unknown flag --{} (see --help for the list)", name);
      if (it->second.is_bool) {
        it->second.value = has_value ? value : "true";
      } else {
        if (!has_value) {
          DERMIS_CHECK(i + 1 < argc, "flag --{} needs a value", name);
          value = argv[++i];
        }
        it->second.value = value;
      }
      it->second.seen = true;
    }
    return true;
  }
  std::string str(const std::string& n) const { return flags_.at(n).value; }
  // Whether the command line gave the flag (as opposed to its default).
  bool given(const std::string& n) const { return flags_.at(n).seen; }
  // Fails when `n` was given while `applies` is false: a flag the chosen mode would ignore is an
  // error, never silently dropped. `why` completes "flag --N ...", e.g. "applies only with --data".
  void reject_unless(const std::string& n, bool applies, const std::string& why) const {
    DERMIS_CHECK(applies || !given(n), "flag --{} {}; leave it out", n, why);
  }
  bool flag(const std::string& n) const {
    const std::string& v = flags_.at(n).value;
    DERMIS_CHECK(v == "true" || v == "false" || v == "1" || v == "0", "flag --{}: expected true or false, got '{}'", n, v);
    return v == "true" || v == "1";
  }
  long integer(const std::string& n, long lo, long hi) const {
    const std::string& v = flags_.at(n).value;
    char* end = nullptr;
    errno = 0;
    long x = std::strtol(v.c_str(), &end, 10);
    DERMIS_CHECK(!v.empty() && *end == '\0' && errno == 0, "flag --{}: '{}' is not an integer", n, v);
    DERMIS_CHECK(x >= lo && x <= hi, "flag --{}: {} is out of range [{}, {}]", n, x, lo, hi);
    return x;
  }
  double real(const std::string& n, double lo, double hi) const {
    const std::string& v = flags_.at(n).value;
    char* end = nullptr;
    double x = std::strtod(v.c_str(), &end);
    DERMIS_CHECK(!v.empty() && *end == '\0' && std::isfinite(x), "flag --{}: '{}' is not a finite number", n, v);
    DERMIS_CHECK(x >= lo && x <= hi, "flag --{}: {} is out of range [{}, {}]", n, x, lo, hi);
    return x;
  }

 private:
  void print_help() const {
    std::string s = usage_ + "\n\nFlags:\n";
    for (auto& n : order_) {
      const Flag& f = flags_.at(n);
      // The default is shown unless the help text already explains it or there is none.
      const bool show = !f.is_bool && !f.value.empty() && f.help.find("default") == std::string::npos;
      s += fmt::format("  --{:<18} {}{}\n", f.is_bool ? n : n + " V", f.help,
                       show ? fmt::format(" (default: {})", f.value) : "");
    }
    s += "  --help               show this help\n";
    fmt::print("{}", s);
  }
  std::string usage_;
  std::map<std::string, Flag> flags_;
  std::vector<std::string> order_;
};

// Runs a tool's body; any error becomes one line "NAME: error: ..." on stderr and exit code 2.
template <class F>
int run_main(const char* name, F&& body) {
  try {
    return body();
  } catch (const std::exception& e) {
    if (dist::size() > 1) {  // one failing rank ends the whole job rather than leave the others waiting
      std::fprintf(stderr, "%s: error (rank %d of %d): %s\n", name, dist::rank(), dist::size(), e.what());
      dist::abort_job(2);
    }
    std::fprintf(stderr, "%s: error: %s\n", name, e.what());
    return 2;
  }
}

// The --conv flag of train and the benchmarks: auto (Winograd where oneDNN has it) or direct.
inline ConvAlgorithm conv_algorithm_flag(const std::string& v) {
  return parse_choice<ConvAlgorithm>(v, "flag --conv");
}

}  // namespace dermis::cli
