// What the benchmarks in bench/ share: timing and file helpers, the summaries
// they print, the clean-up that runs on every exit path (normal end, error,
// SIGINT/SIGTERM/SIGHUP), and starting corrald and the corral CLI.
//
// What it leaves to each benchmark: what it measures, its reference, its table,
// and anything only it starts (bare QEMUs, wrk, PostgreSQL).
#pragma once

#include <sys/types.h>

#include <chrono>
#include <filesystem>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "util/command.h"
#include "util/result.h"
#include "util/unique_fd.h"

namespace corral::bench {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

// ---- time, files, environment

// Milliseconds from t0 until now.
double msSince(Clock::time_point t0);

// The whole file; empty when it cannot be read.
std::string readFile(const fs::path& p);

// The last n bytes of s (all of it when shorter).
std::string tail(const std::string& s, size_t n);

// The variable's value, or fallback when it is unset or empty.
std::string envOr(const char* name, std::string fallback);

// /proc/loadavg's three figures; zeros when it cannot be read.
struct LoadAvg {
  double l1 = 0, l5 = 0, l15 = 0;
};
LoadAvg loadAvg();

// A new 0700 directory parent/PREFIX.XXXXXX (mkdtemp).
Result<fs::path> makeTempDir(const fs::path& parent, const std::string& prefix);

// ---- summaries of samples

// The median; 0 for no samples.
double median(std::vector<double> v);

// "min 1.0  median 2.0  max 3.0 UNIT"; "-" for no samples.
std::string describe(std::vector<double> v, const char* unit);

// The samples in order, one decimal each, separated by spaces.
std::string list(const std::vector<double>& v);

// ---- clean-up on every exit path

// SIGKILLs every process but us whose command line contains `needle`, and waits
// (at most 10 s in all) until each is reaped, by us or, not being our child, by
// its parent.
void killAllUnder(const std::string& needle);

// What one run leaves behind: corrald (by pid) and a temp dir. cleanup() kills
// the daemon first, so that it restarts nothing, then every process whose
// command line names the temp dir (corrald's QEMUs are ours to reap when we are
// a child subreaper), then removes the dir. Holds pids and paths only, so that
// the signal thread never touches objects the main thread is using.
class Janitor {
 public:
  static Janitor& get();

  void setRoot(fs::path root);
  void setDaemon(pid_t pid);  // -1: none (its owner has reaped it)

  // Idempotent (what it cleaned is forgotten); safe from the signal thread while
  // the main thread works.
  void cleanup() noexcept;

 private:
  std::mutex mu_;
  fs::path root_;
  pid_t daemon_ = -1;
};

// Blocks SIGINT, SIGTERM and SIGHUP in every thread (call it before starting
// any) and takes them in a thread of its own, which says "PROG: signal N,
// cleaning up" on stderr, runs cleanup (in an ordinary thread: it may allocate
// and walk /proc) and exits with 128 + N. SIGINT and SIGTERM are reset to their
// default first (a shell starts background jobs with SIGINT ignored, and an
// ignored signal is never pending); SIGHUP stays as given (nohup).
void startSignalThread(std::string prog, std::function<void()> cleanup);

// The start of a benchmark that runs corrald and guests: becomes a child
// subreaper (a killed corrald's QEMUs come to us, to be reaped), takes SIGINT,
// SIGTERM and SIGHUP in the signal thread (which cleans up everything the
// Janitor knows), makes its temp dir tmpParent/PREFIX.XXXXXX as the Janitor's
// root (mode tmpMode) and prints "PROG: N cores, loadavg A B C, temp dir D".
// alsoOnSignal runs after the Janitor's cleanup on a signal (what the Janitor
// does not know: a network namespace). An error says why the benchmark cannot run.
Result<fs::path> beginDaemonBench(const std::string& prog, const fs::path& tmpParent, const std::string& prefix,
                                  std::function<void()> alsoOnSignal = {}, fs::perms tmpMode = fs::perms::owner_all);

// A preExec hook: the child gets SIGKILL when we die, even by SIGKILL.
Result<void> dieWithUs();

// SIGKILLs a started child and reaps it (waiting at most 5 s); nothing when
// none runs.
void killAndReap(util::Command& child);

// ---- corrald and the corral CLI

struct Paths {
  fs::path bin;    // corrald, corral
  fs::path guest;  // vmlinuz, initramfs.cpio.gz, cmdline
};

// NotFound, naming the script that builds it, when the test guest lacks a file.
Result<void> checkGuest(const fs::path& guest);

// The guest's kernel command line, without its trailing newline.
std::string guestCmdline(const fs::path& guest);

// `BIN/corrald ARGS` with PATH kept, stdout and stderr appended to `log`, dying
// with us; not started, so that the caller can record its pid as it starts it.
std::unique_ptr<util::Command> corraldCommand(const fs::path& bin, const std::vector<std::string>& args,
                                              const std::string& log);

// Calls answered() every 20 ms until it returns true. Unavailable, with the
// tail of `log`, when corrald exits first or 60 s pass.
Result<void> waitForCorrald(util::Command& corrald, const std::function<bool()>& answered, const std::string& log);

// Runs start() up to 3 times. corrald's start-up probe of QEMU can lose a race
// with QEMU's listen() ("Connection refused"): that is corrald's bug to fix, not
// a reason to measure nothing. Each retry is said on stderr as "PROG: ...".
Result<void> retryCorraldStart(const char* prog, const std::function<Result<void>()>& start);

// `BIN/corral --socket SOCKET ARGS...` with PATH and HOME kept; its stdout. An
// error names the first three arguments.
Result<std::string> runCorral(const fs::path& bin, const std::string& socket, const std::vector<std::string>& args,
                              std::chrono::milliseconds timeout);

// ---- unix sockets: blocking, with deadlines

// Milliseconds left until deadline; 0 when it has passed.
int msLeft(Clock::time_point deadline);

// A connected stream socket to path.
Result<util::UniqueFd> connectUnix(const std::string& path);

// Sends all of data (MSG_NOSIGNAL).
Result<void> writeAll(int fd, std::string_view data);

// Appends what is readable to buf, waiting until deadline for it; false at EOF.
// Timeout when nothing came in time.
Result<bool> readSome(int fd, std::string& buf, Clock::time_point deadline);

}  // namespace corral::bench
