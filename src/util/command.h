// util::Command: the only way corral starts a process (after libvirt's virCommand).
//
// A Command is built with calls that never fail (argv, environment, stdio, fds,
// credentials, limits, capabilities, hooks); the first error found while building
// or starting surfaces from run() or start(). No shell is ever involved: the
// program is resolved against the parent's PATH and started with execve and an
// argv. The child starts with an empty environment (keepEnv() lets names through),
// /dev/null on its stdio, every fd >= 3 closed except the ones passed with
// passFd(), default signal dispositions and an empty signal mask. Errors in the
// child before exec (chdir, setuid, exec itself, the preExec hook) come back to
// the parent over a close-on-exec pipe and are returned as an Error that says what
// failed ("exec qemu-system-x86_64: No such file or directory").
//
// What it leaves to others: which uid a VM runs as (host/uid_pool), the argv of
// QEMU (qemu/command_line), cgroups (use handshake() to place the pid first),
// logging of the program's own output.
//
// Threads: one Command belongs to one thread at a time. Starting commands from
// several threads at once is safe (the child path after fork uses only prepared
// memory and async-signal-safe calls, except the caller's preExec hook and the
// few libcap-ng calls made when capabilities are changed).
#pragma once

#include <sys/resource.h>
#include <sys/types.h>

#include <chrono>
#include <functional>
#include <initializer_list>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <fmt/format.h>

#include "util/result.h"

namespace corral::util {

// How a process ended.
struct ExitStatus {
  int exitCode = 0;         // exit status when signal == 0, -1 otherwise
  int signal = 0;           // the signal that killed it, 0 when it exited
  bool coreDumped = false;  // with signal: whether it dumped core

  bool success() const { return signal == 0 && exitCode == 0; }
  // "exited with status 1", "killed by signal 9 (Killed)", "... (core dumped)"
  std::string describe() const;
  // From a waitpid() status word.
  static ExitStatus fromWaitStatus(int status);

  friend bool operator==(const ExitStatus&, const ExitStatus&) = default;
};

// What run() returns.
struct CommandResult {
  ExitStatus status;
  std::string out;       // stdout, when stdoutToBuffer() (else empty)
  std::string err;       // stderr, when stderrToBuffer() (else empty)
  pid_t daemonPid = -1;  // with daemonize(): the pid of the detached program
};

// Dry-run for tests: what the hook sees instead of a process being started.
struct DryRunCall {
  std::string program;                      // as given to the constructor
  std::vector<std::string> argv;            // argv[0] is the program as given
  std::map<std::string, std::string> env;   // the effective environment
  std::string stdinData;                    // stdinBuffer() contents (empty otherwise)
  std::string workDir;                      // empty when unchanged
  std::optional<uid_t> uid;
  std::optional<gid_t> gid;
  std::vector<int> passedFds;
  bool daemonize = false;
  std::string pidfile;                      // with daemonize
  std::string line;                         // toString()
};

struct DryRunReply {
  ExitStatus status;
  std::string out;
  std::string err;
  pid_t pid = 0;  // returned as daemonPid / pid(); with daemonize and a pidfile,
                  // written to the pidfile when > 0
};

using DryRunHook = std::function<DryRunReply(const DryRunCall&)>;

class Command {
 public:
  using Ms = std::chrono::milliseconds;

  // program: a name looked up in the parent's PATH when run, or a path with a '/'.
  explicit Command(std::string program);
  // A started, unwaited child is aborted (TERM, then KILL after 2 s) and reaped
  // here: a Command never leaves a zombie behind and never throws.
  ~Command();
  Command(Command&&) noexcept;
  Command& operator=(Command&&) noexcept;
  Command(const Command&) = delete;
  Command& operator=(const Command&) = delete;

  // ---- argv
  Command& arg(std::string a);
  template <class... A>
  Command& argFormat(fmt::format_string<A...> f, A&&... a) {
    return arg(fmt::format(f, std::forward<A>(a)...));
  }
  Command& argPair(std::string key, std::string value);  // two arguments
  Command& args(const std::vector<std::string>& as);
  Command& args(std::initializer_list<std::string_view> as);

  // ---- environment (empty unless kept or set)
  Command& keepEnv(std::initializer_list<std::string_view> names);  // from the parent, if set there
  Command& keepEnv(const std::vector<std::string>& names);
  Command& setEnv(std::string key, std::string value);  // wins over keepEnv

  // ---- process attributes, applied in the child before exec
  Command& umask(mode_t mode);
  Command& workDir(std::string path);
  Command& maxFiles(rlim_t n);         // RLIMIT_NOFILE, soft and hard
  Command& maxCore(rlim_t bytes);      // RLIMIT_CORE
  Command& maxMemlock(rlim_t bytes);   // RLIMIT_MEMLOCK
  Command& uid(uid_t u);               // setuid; supplementary groups are dropped
  Command& gid(gid_t g);               // setgroups({g}) + setgid
  Command& clearCaps();                // no capabilities at all (bounding set too when root)
  Command& allowCaps(std::vector<int> caps);  // only these (CAP_NET_ADMIN, ...); kept across uid()

  // ---- stdio. Default for all three: /dev/null. Borrowed fds stay the caller's
  // and must stay open until start()/run() returns.
  Command& stdinBuffer(std::string data);  // written by the parent while it reads output
  Command& stdinFd(int fd);
  Command& stdoutToBuffer();
  Command& stdoutToFd(int fd);
  Command& stdoutToFile(std::string path, bool append = false);  // created 0600
  Command& stdoutToNull();
  Command& stderrToBuffer();
  Command& stderrToFd(int fd);
  Command& stderrToFile(std::string path, bool append = false);
  Command& stderrToNull();
  Command& stderrToStdout();  // 2>&1, whatever stdout is

  // Keeps fd open in the child under the same number (its FD_CLOEXEC is cleared
  // there). fd must be >= 3. closeInParent: the Command takes ownership and closes
  // it once the child is started (or when the Command dies unstarted).
  Command& passFd(int fd, bool closeInParent = false);

  // Runs in the child just before exec, after fds, limits and credentials are set
  // up. Its Error aborts the child and is returned by start()/run(). It runs in a
  // forked copy of a possibly multi-threaded process: keep it to system calls.
  Command& preExec(std::function<Result<void>()> hook);

  // run(): kill the program (TERM, then KILL after 2 s) after this long and return
  // ErrorCode::Timeout.
  Command& timeout(Ms ms);
  // A non-zero exit or a death by signal is not an error for run()/wait().
  Command& allowFailureStatus();

  // start() stops the child right before exec until notifyChild(); the pid can be
  // put into a cgroup or recorded meanwhile. Not with daemonize().
  Command& handshake();

  // run() starts the program detached in its own session (double fork, setsid),
  // writes its pid to pidfile (mode 0644, atomically) before returning and
  // returns it as CommandResult::daemonPid. Its stdio must not be buffers. An
  // empty pidfile writes none. Not with start().
  Command& daemonize(std::string pidfile);

  // A shell-quoted line for humans and logs ("K=V prog 'a b'"); never re-parsed.
  // Shows only the variables given with setEnv().
  std::string toString() const;

  // ---- synchronous
  // Starts, feeds stdin, collects output, waits. A non-zero exit or death by
  // signal is an Error naming the status and the tail of stderr, unless
  // allowFailureStatus(). Once per Command.
  Result<CommandResult> run();

  // ---- asynchronous
  // Starts the program; without handshake(), returns once exec succeeded (or with
  // the child's error). Once per Command.
  Result<void> start();
  // With handshake(): waits until the child is ready to exec.
  Result<void> waitForChildReady();
  // With handshake(): lets the child exec; returns its exec error, if any.
  Result<void> notifyChild();
  // Waits for the program to end, feeding stdin and collecting output meanwhile
  // (read them with out()/err()). With a timeout, returns ErrorCode::Timeout and
  // leaves the program running. Status policy as for run().
  Result<ExitStatus> wait(std::optional<Ms> timeout = std::nullopt);
  // TERM, then KILL once grace has passed, then reap. FailedPrecondition when
  // there is no running child.
  Result<ExitStatus> abort(Ms grace = Ms(2000));
  // The child's pid; -1 before start() and after it was reaped.
  pid_t pid() const;
  // Output collected so far by wait() (with stdoutToBuffer()/stderrToBuffer()).
  const std::string& out() const;
  const std::string& err() const;

  // Test hook: while set, no process is started; start()/run() hand a DryRunCall
  // to the hook and act on its reply. A process-wide global meant for tests only:
  // set it while no other thread is starting a Command.
  static void setDryRunForTest(DryRunHook hook);

  struct Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

// Installs a dry-run hook for the lifetime of the guard (tests only).
class ScopedDryRunForTest {
 public:
  explicit ScopedDryRunForTest(DryRunHook hook) { Command::setDryRunForTest(std::move(hook)); }
  ~ScopedDryRunForTest() { Command::setDryRunForTest(nullptr); }
  ScopedDryRunForTest(const ScopedDryRunForTest&) = delete;
  ScopedDryRunForTest& operator=(const ScopedDryRunForTest&) = delete;
};

}  // namespace corral::util
