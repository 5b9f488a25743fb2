// util::Command, parent side: building, fork/exec bookkeeping, the I/O pump that
// feeds stdin and drains stdout/stderr without deadlocking, waiting with deadlines
// (a pidfd when the kernel has one), abort and reaping. The child side lives in
// command_child.cc.
#include "util/command.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <mutex>

#include <spdlog/spdlog.h>

#include "util/command_child.h"
#include "util/unique_fd.h"

namespace corral::util {

using Clock = std::chrono::steady_clock;
using Ms = Command::Ms;

// ---------------------------------------------------------------- ExitStatus

std::string ExitStatus::describe() const {
  if (signal == 0) return fmt::format("exited with status {}", exitCode);
  const char* name = ::sigdescr_np(signal);
  return fmt::format("killed by signal {} ({}){}", signal, name ? name : "unknown",
                     coreDumped ? " (core dumped)" : "");
}

ExitStatus ExitStatus::fromWaitStatus(int status) {
  ExitStatus s;
  if (WIFEXITED(status)) {
    s.exitCode = WEXITSTATUS(status);
  } else if (WIFSIGNALED(status)) {
    s.signal = WTERMSIG(status);
    s.coreDumped = WCOREDUMP(status);
    s.exitCode = -1;  // no exit status: it never called exit
  }
  return s;
}

// ---------------------------------------------------------------- dry run

namespace {

std::mutex& dryRunMutex() {
  static std::mutex m;
  return m;
}
DryRunHook& dryRunHook() {
  static DryRunHook hook;
  return hook;
}
DryRunHook currentDryRunHook() {
  std::lock_guard lock(dryRunMutex());
  return dryRunHook();
}

std::string shellQuote(std::string_view s) {
  if (s.empty()) return "''";
  bool plain = std::all_of(s.begin(), s.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           std::string_view("_@%+=:,./-").find(c) != std::string_view::npos;
  });
  if (plain) return std::string(s);
  std::string out = "'";
  for (char c : s) {
    if (c == '\'')
      out += "'\\''";
    else
      out += c;
  }
  out += '\'';
  return out;
}

Error sysError(std::string_view what, int err) {
  return errorf(ErrorCode::Internal, "{}: {}", what, ::strerror(err));
}

// Child-side fds we create must not land on 0..2: the child installs its stdio
// there and would clobber them (possible when the parent runs with 0..2 closed).
Result<void> moveAboveStdio(UniqueFd& fd) {
  if (fd.get() > 2) return ok();
  int moved = ::fcntl(fd.get(), F_DUPFD_CLOEXEC, 3);
  if (moved < 0) return sysError("fcntl(F_DUPFD_CLOEXEC)", errno);
  fd.reset(moved);
  return ok();
}

Result<void> setNonBlocking(int fd) {
  int flags = ::fcntl(fd, F_GETFL);
  if (flags < 0 || ::fcntl(fd, F_SETFL, flags | O_NONBLOCK) < 0) return sysError("fcntl(O_NONBLOCK)", errno);
  return ok();
}

bool readChildRecord(int fd, detail::ChildRecord& r) {
  size_t got = 0;
  auto* p = reinterpret_cast<char*>(&r);
  while (got < sizeof r) {
    ssize_t n = ::read(fd, p + got, sizeof r - got);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;  // EOF (exec happened or the child is gone) or a broken pipe
    got += static_cast<size_t>(n);
  }
  return true;
}

Error childError(const detail::ChildRecord& r) {
  std::string what(r.what, ::strnlen(r.what, sizeof r.what));
  std::string detail(r.detail, ::strnlen(r.detail, sizeof r.detail));
  std::string msg = detail.empty() ? what : fmt::format("{} {}", what, detail);
  if (what == "preExec hook") msg = fmt::format("preExec hook: {}", detail);
  if (r.err != 0) msg += fmt::format(": {}", ::strerror(r.err));
  auto code = static_cast<ErrorCode>(r.code);
  if (code < ErrorCode::InvalidInput || code > ErrorCode::Internal) code = ErrorCode::Internal;
  return Error{code, std::move(msg), {}, {}};
}

Result<std::string> resolveProgram(const std::string& program) {
  if (program.empty()) return Error::invalidInput("program", program, "must not be empty");
  if (program.find('/') != std::string::npos) return program;
  const char* env = ::getenv("PATH");
  std::string_view path = env && *env ? env : "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
  while (true) {
    size_t colon = path.find(':');
    std::string_view dir = path.substr(0, colon);
    if (!dir.empty()) {
      std::string candidate = fmt::format("{}/{}", dir, program);
      struct stat st;
      if (::stat(candidate.c_str(), &st) == 0 && S_ISREG(st.st_mode) && ::access(candidate.c_str(), X_OK) == 0)
        return candidate;
    }
    if (colon == std::string_view::npos) break;
    path.remove_prefix(colon + 1);
  }
  return Error{ErrorCode::NotFound, fmt::format("exec {}: {}", program, ::strerror(ENOENT)), {}, {}};
}

// Writes pid atomically (temp file + rename), 0644; parent side, for dry runs.
Result<void> writePidfileFromParent(const std::string& pidfile, pid_t pid) {
  std::string tmp = pidfile + ".new";
  UniqueFd fd(::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0644));
  if (!fd) return sysError(fmt::format("write pidfile {}", pidfile), errno);
  std::string text = fmt::format("{}\n", pid);
  if (::fchmod(fd.get(), 0644) != 0 || ::write(fd.get(), text.data(), text.size()) != ssize_t(text.size()) ||
      ::close(fd.release()) != 0 || ::rename(tmp.c_str(), pidfile.c_str()) != 0) {
    int err = errno;
    ::unlink(tmp.c_str());
    return sysError(fmt::format("write pidfile {}", pidfile), err);
  }
  return ok();
}

// write() on a pipe whose reader is gone raises SIGPIPE, which would kill a
// process that did not ignore it. Block it for this thread around the write and
// swallow the one we caused, so EPIPE comes back as an error instead.
ssize_t writeNoSigpipe(int fd, const char* data, size_t len) {
  sigset_t pipeSet, old, pending;
  sigemptyset(&pipeSet);
  sigaddset(&pipeSet, SIGPIPE);
  ::pthread_sigmask(SIG_BLOCK, &pipeSet, &old);
  sigpending(&pending);
  bool wasPending = sigismember(&pending, SIGPIPE);
  ssize_t n = ::write(fd, data, len);
  int err = errno;
  if (n < 0 && err == EPIPE && !wasPending) {
    struct timespec zero = {};
    while (::sigtimedwait(&pipeSet, nullptr, &zero) < 0 && errno == EINTR) {
    }
  }
  ::pthread_sigmask(SIG_SETMASK, &old, nullptr);
  errno = err;
  return n;
}

std::string tail(const std::string& s, size_t max) {
  size_t end = s.find_last_not_of(" \n\t\r");
  if (end == std::string::npos) return {};
  size_t begin = end + 1 > max ? end + 1 - max : 0;
  std::string t = s.substr(begin, end + 1 - begin);
  std::replace(t.begin(), t.end(), '\n', ' ');
  return begin > 0 ? "..." + t : t;
}

}  // namespace

// Command::Impl's parts: in a named namespace (not an anonymous one), because a
// member's type may not have internal linkage when this file is compiled as
// part of a unity batch (CMake's UNITY_BUILD, -Wsubobject-linkage).
namespace command_io {
enum class Sink { Null, Buffer, Fd, File, Stdout };
struct Output {
  Sink kind = Sink::Null;
  int fd = -1;
  std::string path;
  bool append = false;
};
enum class Source { Null, Buffer, Fd };
}  // namespace command_io
using command_io::Output;
using command_io::Sink;
using command_io::Source;

void Command::setDryRunForTest(DryRunHook hook) {
  std::lock_guard lock(dryRunMutex());
  dryRunHook() = std::move(hook);
}

// ---------------------------------------------------------------- Impl

struct Command::Impl {
  // ---- what to run
  std::string program;
  std::vector<std::string> argv;  // argv[0] is the program as given
  std::vector<std::string> keptEnv;
  std::vector<std::pair<std::string, std::string>> setEnv;
  std::optional<mode_t> umask;
  std::string workDir;
  std::vector<detail::ChildLimit> limits;
  std::optional<uid_t> uid;
  std::optional<gid_t> gid;
  bool changeCaps = false;
  std::vector<int> caps;
  Source inKind = Source::Null;
  std::string inData;
  int inFd = -1;
  Output out, err;
  struct Passed {
    int fd;
    bool closeInParent;
  };
  std::vector<Passed> passed;
  std::function<Result<void>()> hook;
  std::optional<Ms> timeout;
  bool allowFailure = false;
  bool handshake = false;
  bool daemonize = false;
  std::string pidfile;
  std::optional<Error> deferred;  // the first builder error

  // ---- the running child
  bool started = false;
  pid_t pid = -1;  // > 0 while a child of ours is unreaped
  UniqueFd pidfd;
  UniqueFd statusR;
  UniqueFd handshakeW;
  bool readySeen = false;
  bool notified = false;
  UniqueFd stdinW;
  size_t inOffset = 0;
  UniqueFd outR, errR;
  std::string outBuf, errBuf;
  std::optional<ExitStatus> status;
  pid_t daemonPid = -1;
  bool dryRun = false;
  DryRunReply dryReply;

  ~Impl() {
    try {
      if (pid > 0 && !status) (void)abortChild(Ms(2000));
    } catch (...) {  // never throw from a destructor; there is nothing left to do
    }
    closeOwnedPassedFds();
  }

  void defer(Error e) {
    if (!deferred) deferred = std::move(e);
  }

  void closeOwnedPassedFds() {
    for (auto& p : passed)
      if (p.closeInParent && p.fd >= 0) {
        ::close(p.fd);
        p.fd = -1;
      }
  }

  std::map<std::string, std::string> effectiveEnv() const {
    std::map<std::string, std::string> env;
    for (const auto& name : keptEnv)
      if (const char* v = ::getenv(name.c_str())) env[name] = v;
    for (const auto& [k, v] : setEnv) env[k] = v;
    return env;
  }

  std::string toString() const {
    std::string line;
    for (const auto& [k, v] : setEnv) line += fmt::format("{}={} ", k, shellQuote(v));
    for (size_t i = 0; i < argv.size(); ++i) {
      if (i > 0) line += ' ';
      line += shellQuote(argv[i]);
    }
    return line;
  }

  Result<void> validate(bool forRun) const {
    if (deferred) return *deferred;
    if (daemonize && !forRun) return Error::failedPrecondition("daemonize() needs run(), not start()");
    if (daemonize && handshake) return Error::failedPrecondition("daemonize() and handshake() do not mix");
    if (daemonize && (inKind == Source::Buffer || out.kind == Sink::Buffer || err.kind == Sink::Buffer))
      return Error::failedPrecondition("a daemon's stdio cannot be a buffer: use a file, an fd or /dev/null");
    if (handshake && forRun) return Error::failedPrecondition("handshake() needs start(), not run()");
    return ok();
  }

  Result<void> start(bool forRun);
  Result<void> startDryRun(const DryRunHook& dryHook);
  Result<void> readUntilExec();
  Result<ExitStatus> pump(std::optional<Clock::time_point> deadline);
  Result<ExitStatus> abortChild(Ms grace);
  Result<void> checkStatus(const ExitStatus& st) const;
  void writeStdin();
  void reapBlocking();
};

Result<void> Command::Impl::startDryRun(const DryRunHook& dryHook) {
  DryRunCall call;
  call.program = program;
  call.argv = argv;
  call.env = effectiveEnv();
  if (inKind == Source::Buffer) call.stdinData = inData;
  call.workDir = workDir;
  call.uid = uid;
  call.gid = gid;
  for (const auto& p : passed) call.passedFds.push_back(p.fd);
  call.daemonize = daemonize;
  call.pidfile = pidfile;
  call.line = toString();
  dryReply = dryHook(call);
  dryRun = true;
  status = dryReply.status;
  outBuf = dryReply.out;
  errBuf = dryReply.err;
  closeOwnedPassedFds();
  if (daemonize) {
    daemonPid = dryReply.pid;
    if (!pidfile.empty() && dryReply.pid > 0) CORRAL_TRY(writePidfileFromParent(pidfile, dryReply.pid));
  }
  return ok();
}

Result<void> Command::Impl::start(bool forRun) {
  if (started) return Error::failedPrecondition(fmt::format("{} was already started", program));
  started = true;
  if (auto v = validate(forRun); !v.ok()) {
    closeOwnedPassedFds();
    return v;
  }
  if (auto dryHook = currentDryRunHook()) return startDryRun(dryHook);

  if (spdlog::should_log(spdlog::level::debug)) spdlog::debug("run: {}", toString());

  // Everything the child needs, prepared here where allocating is allowed.
  auto path = resolveProgram(program);
  if (!path.ok()) {
    closeOwnedPassedFds();
    return std::move(path).error();
  }
  std::vector<char*> argvPtrs;
  for (auto& a : argv) argvPtrs.push_back(a.data());
  argvPtrs.push_back(nullptr);
  std::vector<std::string> envStrings;
  for (const auto& [k, v] : effectiveEnv()) envStrings.push_back(k + "=" + v);
  std::vector<char*> envPtrs;
  for (auto& e : envStrings) envPtrs.push_back(e.data());
  envPtrs.push_back(nullptr);

  detail::ChildPlan plan;
  plan.path = path->c_str();
  plan.displayName = program.c_str();
  plan.argv = argvPtrs.data();
  plan.envp = envPtrs.data();

  // Child-side ends, closed in the parent right after fork().
  std::vector<UniqueFd> childEnds;
  int devNull = -1;
  auto openDevNull = [&]() -> Result<int> {
    if (devNull < 0) {
      UniqueFd fd(::open("/dev/null", O_RDWR | O_CLOEXEC));
      if (!fd) return sysError("open /dev/null", errno);
      devNull = fd.get();
      childEnds.push_back(std::move(fd));
    }
    return devNull;
  };
  auto fail = [&](Error e) -> Result<void> {
    closeOwnedPassedFds();
    stdinW.reset();
    outR.reset();
    errR.reset();
    return e;
  };
#define CMD_TRY(expr)                                             \
  ({                                                              \
    auto&& cmd_r_ = (expr);                                       \
    if (!cmd_r_.ok()) return fail(std::move(cmd_r_).error());     \
    std::move(cmd_r_).take();                                     \
  })

  switch (inKind) {
    case Source::Null: plan.stdioSrc[0] = CMD_TRY(openDevNull()); break;
    case Source::Fd: plan.stdioSrc[0] = inFd; break;
    case Source::Buffer: {
      auto p = CMD_TRY(makePipe());
      CMD_TRY(setNonBlocking(p.write.get()));
      plan.stdioSrc[0] = p.read.get();
      childEnds.push_back(std::move(p.read));
      stdinW = std::move(p.write);
      break;
    }
  }
  auto sinkFd = [&](const Output& o, UniqueFd& parentEnd) -> Result<int> {
    switch (o.kind) {
      case Sink::Null: return openDevNull();
      case Sink::Fd: return o.fd;
      case Sink::Stdout: return plan.stdioSrc[1];
      case Sink::File: {
        int flags = O_WRONLY | O_CREAT | O_CLOEXEC | O_NOCTTY | (o.append ? O_APPEND : O_TRUNC);
        UniqueFd fd(::open(o.path.c_str(), flags, 0600));
        if (!fd) return sysError(fmt::format("open {}", o.path), errno);
        int n = fd.get();
        childEnds.push_back(std::move(fd));
        return n;
      }
      case Sink::Buffer: {
        auto p = CORRAL_TRY(makePipe());
        CORRAL_TRY(setNonBlocking(p.read.get()));
        int n = p.write.get();
        childEnds.push_back(std::move(p.write));
        parentEnd = std::move(p.read);
        return n;
      }
    }
    return Error::internal("unknown output kind");
  };
  plan.stdioSrc[1] = CMD_TRY(sinkFd(out, outR));
  plan.stdioSrc[2] = CMD_TRY(sinkFd(err, errR));

  auto statusPipe = CMD_TRY(makePipe());
  CMD_TRY(moveAboveStdio(statusPipe.write));
  statusR = std::move(statusPipe.read);
  plan.statusFd = statusPipe.write.get();
  UniqueFd handshakeR;
  if (handshake) {
    auto hs = CMD_TRY(makePipe());
    CMD_TRY(moveAboveStdio(hs.read));
    handshakeR = std::move(hs.read);
    handshakeW = std::move(hs.write);
    plan.handshakeFd = handshakeR.get();
  }

  std::vector<int> passFds, keepFds;
  for (const auto& p : passed) {
    if (::fcntl(p.fd, F_GETFD) < 0)
      return fail(Error::invalidInput("passFd", std::to_string(p.fd), ::strerror(errno)));
    passFds.push_back(p.fd);
  }
  keepFds = passFds;
  keepFds.push_back(plan.statusFd);
  if (plan.handshakeFd >= 0) keepFds.push_back(plan.handshakeFd);
  std::sort(keepFds.begin(), keepFds.end());
  keepFds.erase(std::unique(keepFds.begin(), keepFds.end()), keepFds.end());
  plan.keepFds = keepFds.data();
  plan.keepCount = keepFds.size();
  plan.passFds = passFds.data();
  plan.passCount = passFds.size();

  if (umask) {
    plan.setUmask = true;
    plan.umaskValue = *umask;
  }
  if (!workDir.empty()) plan.workDir = workDir.c_str();
  for (const auto& l : limits) plan.limits[plan.limitCount++] = l;
  std::string uidText = uid ? std::to_string(*uid) : "";
  std::string gidText = gid ? std::to_string(*gid) : "";
  plan.setUid = uid.has_value();
  plan.uid = uid.value_or(0);
  plan.setGid = gid.has_value();
  plan.gid = gid.value_or(0);
  plan.uidText = uidText.c_str();
  plan.gidText = gidText.c_str();
  plan.changeCaps = changeCaps;
  plan.caps = caps.data();
  plan.capCount = caps.size();
  std::string pidfileTmp = pidfile + ".new";
  plan.daemonize = daemonize;
  if (daemonize && !pidfile.empty()) {
    plan.pidfile = pidfile.c_str();
    plan.pidfileTmp = pidfileTmp.c_str();
  }
  if (hook) plan.preExec = &hook;

  // Block every signal across fork(): a handler of the parent must never run in
  // the child before the child has reset the dispositions.
  sigset_t all, old;
  sigfillset(&all);
  ::pthread_sigmask(SIG_SETMASK, &all, &old);
  pid_t child = ::fork();
  if (child == 0) detail::runChild(plan);
  int forkErr = errno;
  ::pthread_sigmask(SIG_SETMASK, &old, nullptr);

  statusPipe.write.reset();
  handshakeR.reset();
  childEnds.clear();
  closeOwnedPassedFds();
  if (child < 0) return fail(sysError("fork", forkErr));
  pid = child;
#undef CMD_TRY

  if (daemonize) {
    // Records until EOF: the daemon's pid from the intermediate child, or a
    // failure from either of them. EOF means the daemon exec'd and the
    // intermediate child exited.
    std::optional<Error> failure;
    detail::ChildRecord r;
    while (readChildRecord(statusR.get(), r)) {
      if (r.kind == detail::ChildRecord::DaemonPid) daemonPid = r.pid;
      if (r.kind == detail::ChildRecord::Failure && !failure) failure = childError(r);
    }
    statusR.reset();
    reapBlocking();
    if (!failure && daemonPid <= 0) failure = Error::internal("daemonize: the daemon's pid never came back");
    if (failure) {
      if (daemonPid > 0 && !pidfile.empty()) ::unlink(pidfile.c_str());
      daemonPid = -1;
      return *failure;
    }
    spdlog::debug("daemon pid {}: {}", daemonPid, program);
    return ok();
  }

  pidfd.reset(static_cast<int>(::syscall(SYS_pidfd_open, pid, 0)));  // -1: polled instead
  if (handshake) return ok();  // the exec outcome comes with notifyChild()
  return readUntilExec();
}

// Reads the status pipe until EOF (exec happened) or a failure record.
Result<void> Command::Impl::readUntilExec() {
  detail::ChildRecord r;
  while (readChildRecord(statusR.get(), r)) {
    if (r.kind == detail::ChildRecord::Failure) {
      statusR.reset();
      reapBlocking();  // the child _exit()s right after writing
      return childError(r);
    }
  }
  statusR.reset();
  return ok();
}

void Command::Impl::reapBlocking() {
  if (pid <= 0) return;
  int st = 0;
  while (::waitpid(pid, &st, 0) < 0 && errno == EINTR) {
  }
  status = ExitStatus::fromWaitStatus(st);
  pid = -1;
  pidfd.reset();
  handshakeW.reset();
  stdinW.reset();
}

void Command::Impl::writeStdin() {
  while (stdinW && inOffset < inData.size()) {
    size_t chunk = std::min<size_t>(inData.size() - inOffset, 1 << 16);
    ssize_t n = writeNoSigpipe(stdinW.get(), inData.data() + inOffset, chunk);
    if (n > 0) {
      inOffset += static_cast<size_t>(n);
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno == EAGAIN) return;
    stdinW.reset();  // EPIPE: the program stopped reading; that is its right
    return;
  }
  stdinW.reset();  // all written: EOF for the program
}

namespace {
// Reads what is available; closes fd at EOF or on error.
void drain(UniqueFd& fd, std::string& buf) {
  char chunk[65536];
  while (fd) {
    ssize_t n = ::read(fd.get(), chunk, sizeof chunk);
    if (n > 0) {
      buf.append(chunk, static_cast<size_t>(n));
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno == EAGAIN) return;
    fd.reset();
  }
}
}  // namespace

// Feeds stdin and drains stdout/stderr until the child exits, then reaps it.
// Returns Timeout (the child still running) when the deadline passes first.
Result<ExitStatus> Command::Impl::pump(std::optional<Clock::time_point> deadline) {
  if (status) return *status;
  if (pid <= 0) return Error::failedPrecondition(fmt::format("{} is not running", program));
  if (stdinW && inOffset >= inData.size()) stdinW.reset();
  while (true) {
    pollfd fds[4];
    nfds_t n = 0;
    int inIdx = -1, outIdx = -1, errIdx = -1, pidIdx = -1;
    if (stdinW) fds[inIdx = int(n++)] = {stdinW.get(), POLLOUT, 0};
    if (outR) fds[outIdx = int(n++)] = {outR.get(), POLLIN, 0};
    if (errR) fds[errIdx = int(n++)] = {errR.get(), POLLIN, 0};
    if (pidfd) fds[pidIdx = int(n++)] = {pidfd.get(), POLLIN, 0};

    int waitMs = -1;
    if (deadline) {
      auto left = std::chrono::ceil<Ms>(*deadline - Clock::now()).count();
      waitMs = int(std::clamp<long long>(left, 0, 1 << 30));
    }
    // Without a pidfd (kernels before 5.3) the exit is noticed by polling.
    if (!pidfd) waitMs = waitMs < 0 ? 10 : std::min(waitMs, 10);

    int ready = ::poll(fds, n, waitMs);
    if (ready < 0 && errno != EINTR) return sysError("poll", errno);
    if (ready > 0) {
      if (inIdx >= 0 && fds[inIdx].revents) writeStdin();
      if (outIdx >= 0 && fds[outIdx].revents) drain(outR, outBuf);
      if (errIdx >= 0 && fds[errIdx].revents) drain(errR, errBuf);
    }
    if (!pidfd || (pidIdx >= 0 && fds[pidIdx].revents)) {
      int st = 0;
      pid_t w = ::waitpid(pid, &st, WNOHANG);
      if (w == pid) {
        status = ExitStatus::fromWaitStatus(st);
        pid = -1;
        pidfd.reset();
        handshakeW.reset();
        stdinW.reset();
        // Everything the program wrote before exiting is in the pipes now. A
        // grandchild may still hold them open: take what is there, do not wait.
        drain(outR, outBuf);
        drain(errR, errBuf);
        outR.reset();
        errR.reset();
        return *status;
      }
      if (w < 0 && errno != EINTR) return sysError(fmt::format("waitpid {}", pid), errno);
    }
    if (deadline && Clock::now() >= *deadline)
      return Error::timeout(fmt::format("{} still running (pid {})", program, pid));
  }
}

Result<ExitStatus> Command::Impl::abortChild(Ms grace) {
  if (pid <= 0 || status) return Error::failedPrecondition(fmt::format("{} is not running", program));
  handshakeW.reset();  // a child waiting for the handshake exits on EOF
  ::kill(pid, SIGTERM);
  auto r = pump(Clock::now() + grace);
  if (!r.ok() && r.error().code == ErrorCode::Timeout) {
    spdlog::warn("{} (pid {}) ignored SIGTERM for {} ms; sending SIGKILL", program, pid, grace.count());
    ::kill(pid, SIGKILL);
    r = pump(std::nullopt);
  }
  return r;
}

Result<void> Command::Impl::checkStatus(const ExitStatus& st) const {
  if (st.success() || allowFailure) return ok();
  std::string msg = fmt::format("{} {}", program, st.describe());
  if (std::string t = tail(errBuf, 512); !t.empty()) msg += fmt::format(": {}", t);
  return Error::internal(std::move(msg));
}

// ---------------------------------------------------------------- Command

Command::Command(std::string program) : impl_(std::make_unique<Impl>()) {
  impl_->argv.push_back(program);
  impl_->program = std::move(program);
}
Command::~Command() = default;
Command::Command(Command&&) noexcept = default;
Command& Command::operator=(Command&&) noexcept = default;

Command& Command::arg(std::string a) {
  impl_->argv.push_back(std::move(a));
  return *this;
}
Command& Command::argPair(std::string key, std::string value) {
  impl_->argv.push_back(std::move(key));
  impl_->argv.push_back(std::move(value));
  return *this;
}
Command& Command::args(const std::vector<std::string>& as) {
  impl_->argv.insert(impl_->argv.end(), as.begin(), as.end());
  return *this;
}
Command& Command::args(std::initializer_list<std::string_view> as) {
  for (auto a : as) impl_->argv.emplace_back(a);
  return *this;
}

Command& Command::keepEnv(std::initializer_list<std::string_view> names) {
  for (auto n : names) impl_->keptEnv.emplace_back(n);
  return *this;
}
Command& Command::keepEnv(const std::vector<std::string>& names) {
  impl_->keptEnv.insert(impl_->keptEnv.end(), names.begin(), names.end());
  return *this;
}
Command& Command::setEnv(std::string key, std::string value) {
  if (key.empty() || key.find('=') != std::string::npos || key.find('\0') != std::string::npos)
    impl_->defer(Error::invalidInput("env", key, "a variable name must be non-empty and without '='"));
  auto& set = impl_->setEnv;
  auto it = std::find_if(set.begin(), set.end(), [&](const auto& kv) { return kv.first == key; });
  if (it != set.end())
    it->second = std::move(value);
  else
    set.emplace_back(std::move(key), std::move(value));
  return *this;
}

Command& Command::umask(mode_t mode) {
  impl_->umask = mode & 0777;
  return *this;
}
Command& Command::workDir(std::string path) {
  impl_->workDir = std::move(path);
  return *this;
}

namespace {
void setLimit(std::vector<detail::ChildLimit>& limits, int resource, rlim_t value) {
  for (auto& l : limits)
    if (l.resource == resource) {
      l.value = value;
      return;
    }
  limits.push_back({resource, value});
}
}  // namespace

Command& Command::maxFiles(rlim_t n) {
  setLimit(impl_->limits, RLIMIT_NOFILE, n);
  return *this;
}
Command& Command::maxCore(rlim_t bytes) {
  setLimit(impl_->limits, RLIMIT_CORE, bytes);
  return *this;
}
Command& Command::maxMemlock(rlim_t bytes) {
  setLimit(impl_->limits, RLIMIT_MEMLOCK, bytes);
  return *this;
}
Command& Command::uid(uid_t u) {
  impl_->uid = u;
  return *this;
}
Command& Command::gid(gid_t g) {
  impl_->gid = g;
  return *this;
}
Command& Command::clearCaps() {
  impl_->changeCaps = true;
  impl_->caps.clear();
  return *this;
}
Command& Command::allowCaps(std::vector<int> caps) {
  for (int c : caps)
    if (c < 0 || c > 63) impl_->defer(Error::invalidInput("caps", std::to_string(c), "not a capability number"));
  impl_->changeCaps = true;
  impl_->caps = std::move(caps);
  return *this;
}

Command& Command::stdinBuffer(std::string data) {
  impl_->inKind = Source::Buffer;
  impl_->inData = std::move(data);
  return *this;
}
Command& Command::stdinFd(int fd) {
  if (fd < 0) impl_->defer(Error::invalidInput("stdin", std::to_string(fd), "not a file descriptor"));
  impl_->inKind = Source::Fd;
  impl_->inFd = fd;
  return *this;
}

namespace {
void setOutput(Command::Impl& d, Output& o, Sink kind, int fd = -1, std::string path = {}, bool append = false) {
  if (kind == Sink::Fd && fd < 0) d.defer(Error::invalidInput("output", std::to_string(fd), "not a file descriptor"));
  if (kind == Sink::File && path.empty()) d.defer(Error::invalidInput("output", path, "empty file name"));
  o = Output{kind, fd, std::move(path), append};
}
}  // namespace

Command& Command::stdoutToBuffer() {
  setOutput(*impl_, impl_->out, Sink::Buffer);
  return *this;
}
Command& Command::stdoutToFd(int fd) {
  setOutput(*impl_, impl_->out, Sink::Fd, fd);
  return *this;
}
Command& Command::stdoutToFile(std::string path, bool append) {
  setOutput(*impl_, impl_->out, Sink::File, -1, std::move(path), append);
  return *this;
}
Command& Command::stdoutToNull() {
  setOutput(*impl_, impl_->out, Sink::Null);
  return *this;
}
Command& Command::stderrToBuffer() {
  setOutput(*impl_, impl_->err, Sink::Buffer);
  return *this;
}
Command& Command::stderrToFd(int fd) {
  setOutput(*impl_, impl_->err, Sink::Fd, fd);
  return *this;
}
Command& Command::stderrToFile(std::string path, bool append) {
  setOutput(*impl_, impl_->err, Sink::File, -1, std::move(path), append);
  return *this;
}
Command& Command::stderrToNull() {
  setOutput(*impl_, impl_->err, Sink::Null);
  return *this;
}
Command& Command::stderrToStdout() {
  setOutput(*impl_, impl_->err, Sink::Stdout);
  return *this;
}

Command& Command::passFd(int fd, bool closeInParent) {
  if (fd < 3)
    impl_->defer(Error::invalidInput("passFd", std::to_string(fd), "must be >= 3 (use stdinFd/stdoutToFd for 0..2)"));
  impl_->passed.push_back({fd, closeInParent});
  return *this;
}
Command& Command::preExec(std::function<Result<void>()> hook) {
  impl_->hook = std::move(hook);
  return *this;
}
Command& Command::timeout(Ms ms) {
  impl_->timeout = ms;
  return *this;
}
Command& Command::allowFailureStatus() {
  impl_->allowFailure = true;
  return *this;
}
Command& Command::handshake() {
  impl_->handshake = true;
  return *this;
}
Command& Command::daemonize(std::string pidfile) {
  impl_->daemonize = true;
  impl_->pidfile = std::move(pidfile);
  return *this;
}

std::string Command::toString() const { return impl_->toString(); }

Result<CommandResult> Command::run() {
  Impl& d = *impl_;
  CORRAL_TRY(d.start(/*forRun=*/true));
  if (d.daemonize) {
    ExitStatus st = d.status.value_or(ExitStatus{});
    CORRAL_TRY(d.checkStatus(st));
    return CommandResult{st, {}, {}, d.daemonPid};
  }
  std::optional<Clock::time_point> deadline;
  if (d.timeout) deadline = Clock::now() + *d.timeout;
  auto st = d.pump(deadline);
  if (!st.ok()) {
    if (st.error().code != ErrorCode::Timeout) return std::move(st).error();
    (void)d.abortChild(Ms(2000));
    return Error::timeout(fmt::format("{} timed out after {} ms and was killed", d.program, d.timeout->count()));
  }
  CORRAL_TRY(d.checkStatus(*st));
  return CommandResult{*st, std::move(d.outBuf), std::move(d.errBuf), -1};
}

Result<void> Command::start() { return impl_->start(/*forRun=*/false); }

Result<void> Command::waitForChildReady() {
  Impl& d = *impl_;
  if (d.dryRun) return ok();
  if (!d.handshake || !d.started || d.readySeen || !d.statusR)
    return Error::failedPrecondition("waitForChildReady() needs handshake() and start(), once");
  detail::ChildRecord r;
  while (readChildRecord(d.statusR.get(), r)) {
    if (r.kind == detail::ChildRecord::Ready) {
      d.readySeen = true;
      return ok();
    }
    if (r.kind == detail::ChildRecord::Failure) {
      d.statusR.reset();
      d.reapBlocking();
      return childError(r);
    }
  }
  d.statusR.reset();
  d.reapBlocking();
  return Error::internal(fmt::format("{} ended before the handshake", d.program));
}

Result<void> Command::notifyChild() {
  Impl& d = *impl_;
  if (d.dryRun) return ok();
  if (!d.readySeen || d.notified) return Error::failedPrecondition("notifyChild() needs waitForChildReady() first, once");
  d.notified = true;
  char go = 1;
  ssize_t n;
  do n = writeNoSigpipe(d.handshakeW.get(), &go, 1);
  while (n < 0 && errno == EINTR);
  int err = errno;
  d.handshakeW.reset();
  if (n != 1) {
    d.statusR.reset();
    d.reapBlocking();
    return sysError(fmt::format("handshake with {}", d.program), err);
  }
  return d.readUntilExec();
}

Result<ExitStatus> Command::wait(std::optional<Ms> timeout) {
  Impl& d = *impl_;
  if (!d.started) return Error::failedPrecondition(fmt::format("{} was not started", d.program));
  if (d.handshake && !d.notified && !d.status)
    return Error::failedPrecondition("wait() before notifyChild(): the child is held before exec");
  std::optional<Clock::time_point> deadline;
  if (timeout) deadline = Clock::now() + *timeout;
  ExitStatus st = CORRAL_TRY(d.pump(deadline));
  CORRAL_TRY(d.checkStatus(st));
  return st;
}

Result<ExitStatus> Command::abort(Ms grace) { return impl_->abortChild(grace); }

pid_t Command::pid() const {
  if (impl_->dryRun) return impl_->dryReply.pid;
  return impl_->pid;
}
const std::string& Command::out() const { return impl_->outBuf; }
const std::string& Command::err() const { return impl_->errBuf; }

}  // namespace corral::util
