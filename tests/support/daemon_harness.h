// A real corrald on a temp state dir, driven through the real `corral` CLI, for
// integration tests. Every process it made (the daemon, every QEMU whose pidfile
// is under its state dir) is killed and reaped when the harness goes, also when
// the test failed half-way.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "support/temp_dir.h"
#include "util/command.h"

namespace corral::testing {

struct CliResult {
  int exitCode = -1;
  std::string out;
  std::string err;
};

class DaemonHarness {
 public:
  DaemonHarness();
  ~DaemonHarness();

  // Starts corrald (--accel tcg, plus extraArgs) and waits until its socket answers.
  // Inside network namespace `netns` (`ip netns exec`) when one is set.
  void startDaemon(const std::vector<std::string>& extraArgs = {});
  void setNetns(std::string netns) { netns_ = std::move(netns); }
  // SIGKILL, as an operator's mistake or an OOM kill would; guests keep running.
  void killDaemon();
  pid_t daemonPid() const;
  // What corrald wrote so far: its log (stdout) and its stderr (reports' text view).
  std::string daemonLog() const;
  std::string daemonStderr() const;

  // Runs `corral --socket S ARGS...` and returns its exit code and output.
  CliResult cli(const std::vector<std::string>& args);
  // `corral ... -o json` parsed; fails the test when the command fails.
  nlohmann::json cliJson(const std::vector<std::string>& args);

  // Imports the test guest as an image; extraAppend is added to its cmdline.
  void importGuest(const std::string& image, const std::string& extraAppend = "");

  nlohmann::json vm(const std::string& name) { return cliJson({"vm", "info", name}); }
  std::string state(const std::string& name) { return vm(name).value("state", ""); }

  // Polls until pred() or the deadline; returns pred()'s last answer.
  static bool waitFor(const std::function<bool()>& pred, std::chrono::milliseconds deadline);
  bool waitForState(const std::string& name, const std::string& state, std::chrono::milliseconds deadline);
  bool waitForLog(const std::string& name, const std::string& needle, int occurrences,
                  std::chrono::milliseconds deadline);

  const TempDir& dir() const { return dir_; }
  std::string stateDir() const { return (dir_ / "state").string(); }
  std::string socket() const { return (dir_ / "state" / "corral.sock").string(); }
  // Pids of every QEMU with a pidfile under the state dir.
  std::vector<pid_t> qemuPids() const;

 private:
  void reapChildren();

  TempDir dir_;
  std::string netns_;
  std::unique_ptr<util::Command> daemon_;
};

// /proc/PID/status VmRSS in KiB; 0 when unreadable.
long rssKib(pid_t pid);

}  // namespace corral::testing
