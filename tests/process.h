// Running a program from a test: its stdout line by line (to act on progress), its stderr, its exit
// code or the signal that ended it, with a timeout so that a hang fails instead of stalling.
#pragma once

#include <boost/test/unit_test.hpp>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <sstream>
#include <string>
#include <vector>

namespace testing {

struct Outcome {
  int exit_code = -1;    // when it exited
  bool timed_out = false;
  int signal = 0;        // when a signal ended it
  std::string out, err;  // stdout, stderr
};

// Runs `bin` with `args` and the environment additions `env` ("NAME=value"; DERMIS_FAULT is cleared
// unless given). If `trigger` is given, each stdout line is passed to it as it arrives; when it
// returns true the process gets `sig`. A process still running after `timeout_s` is killed (and
// `timed_out` set), so a hang fails the test instead of stalling it.
inline Outcome run_process(const std::string& bin, const std::vector<std::string>& args,
                           const std::vector<std::string>& env = {},
                           std::function<bool(const std::string&)> trigger = {}, int sig = SIGKILL,
                           int timeout_s = 600) {
  const std::string err_file =
      std::filesystem::temp_directory_path() / ("dermis_process_err_" + std::to_string(::getpid()));
  int pipefd[2];
  BOOST_REQUIRE(::pipe(pipefd) == 0);
  const pid_t pid = ::fork();
  BOOST_REQUIRE(pid >= 0);
  if (pid == 0) {
    ::dup2(pipefd[1], 1);
    ::close(pipefd[0]);
    ::close(pipefd[1]);
    std::FILE* e = std::freopen(err_file.c_str(), "w", stderr);
    (void)e;
    ::unsetenv("DERMIS_FAULT");
    for (auto& kv : env) ::putenv(const_cast<char*>(kv.c_str()));
    std::vector<char*> argv{const_cast<char*>(bin.c_str())};
    for (auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    ::execvp(bin.c_str(), argv.data());
    std::_Exit(127);
  }
  ::close(pipefd[1]);
  Outcome o;
  // Watchdog: a helper process that kills the child after the timeout.
  const pid_t watchdog = ::fork();
  if (watchdog == 0) {
    ::sleep(static_cast<unsigned>(timeout_s));
    ::kill(pid, SIGKILL);
    std::_Exit(0);
  }
  std::FILE* f = ::fdopen(pipefd[0], "r");
  char* line = nullptr;
  size_t cap = 0;
  bool sent = false;
  while (::getline(&line, &cap, f) > 0) {
    o.out += line;
    if (trigger && !sent && trigger(line)) {
      ::kill(pid, sig);
      sent = true;
    }
  }
  std::free(line);
  std::fclose(f);
  int status = 0;
  ::waitpid(pid, &status, 0);
  int wd = 0;
  if (::waitpid(watchdog, &wd, WNOHANG) == watchdog) {
    o.timed_out = true;
  } else {
    ::kill(watchdog, SIGKILL);
    ::waitpid(watchdog, &wd, 0);
  }
  if (WIFEXITED(status)) o.exit_code = WEXITSTATUS(status);
  if (WIFSIGNALED(status)) o.signal = WTERMSIG(status);
  std::ifstream ef(err_file);
  std::stringstream ss;
  ss << ef.rdbuf();
  o.err = ss.str();
  std::remove(err_file.c_str());
  BOOST_TEST_MESSAGE("stdout:\n" << o.out << "stderr:\n" << o.err);
  return o;
}

}  // namespace testing
