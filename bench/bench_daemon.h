// A real corrald for a benchmark: started on a state dir under the run's temp
// dir (--accel tcg), driven through its API (the tests' ApiClient over the unix
// socket) and the corral CLI, killed and reaped when this goes. Registered with
// the Janitor, so that a signal mid-run cleans it up too.
#pragma once

#include <filesystem>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "bench_support.h"
#include "util/command.h"
#include "util/result.h"

namespace corral::bench {

class Daemon {
 public:
  // prog: the benchmark's name, for messages. keepLog: where corrald's log is
  // copied when this goes ("" none), on every path. extraArgs: more corrald flags.
  Daemon(std::string prog, Paths paths, fs::path root, std::string keepLog, std::vector<std::string> extraArgs = {});
  ~Daemon();
  Daemon(const Daemon&) = delete;
  Daemon& operator=(const Daemon&) = delete;

  // Runs corrald inside the network namespace `name` (`ip netns exec NAME`,
  // which execs it in place: the pid stays corrald's). Call before start().
  void setNetns(std::string name) { netns_ = std::move(name); }

  Result<void> start();

  // `corral --socket S ARGS...`; its stdout.
  Result<std::string> cli(const std::vector<std::string>& args) const;

  // An API call that must succeed; a 202's operation is waited for and must succeed.
  Result<nlohmann::json> api(std::string_view method, std::string_view target,
                             const nlohmann::json& body = nullptr) const;

  // Imports the test guest (paths.guest) as image `name`.
  Result<void> importGuest(const std::string& name) const;

  std::string socket() const { return (state_ / "corral.sock").string(); }
  const fs::path& stateDir() const { return state_; }
  std::string logPath() const { return (root_ / "corrald.log").string(); }
  std::string logTail() const { return tail(readFile(logPath()), 3000); }
  const nlohmann::json& node() const { return node_; }
  const Paths& paths() const { return paths_; }
  pid_t pid() const { return daemon_ ? daemon_->pid() : -1; }

 private:
  Result<void> startOnce();

  std::string prog_;
  Paths paths_;
  fs::path root_, state_;
  std::string keepLog_;
  std::vector<std::string> extraArgs_;
  std::string netns_;  // "": this process's namespace
  std::unique_ptr<util::Command> daemon_;
  nlohmann::json node_;
};

}  // namespace corral::bench
