// The child side of util::Command: what runs between fork() and execve().
//
// Only prepared memory and async-signal-safe system calls are used here (no
// allocation, no locks, no logging), because the parent may have had other
// threads holding locks at the moment of fork(). Exceptions: the caller's preExec
// hook, and libcap-ng's capng_clear/capng_update/capng_apply/capng_change_id,
// which work on a static per-thread struct and issue plain system calls for what
// we use of them. Every failure is written to the status pipe as one ChildRecord
// and the child ends with _exit(127).
#include "util/command_child.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cap-ng.h>

namespace corral::util::detail {
namespace {

void copyText(char* dst, size_t cap, const char* src) {
  size_t i = 0;
  if (src != nullptr)
    for (; i + 1 < cap && src[i] != '\0'; ++i) dst[i] = src[i];
  dst[i] = '\0';
}

// Decimal text of v into buf (at least 24 bytes); returns the length.
size_t formatNumber(char* buf, unsigned long v) {
  char tmp[24];
  size_t n = 0;
  do {
    tmp[n++] = static_cast<char>('0' + v % 10);
    v /= 10;
  } while (v != 0);
  for (size_t i = 0; i < n; ++i) buf[i] = tmp[n - 1 - i];
  buf[n] = '\0';
  return n;
}

bool writeAll(int fd, const void* data, size_t len) {
  const char* p = static_cast<const char*>(data);
  while (len > 0) {
    ssize_t n = ::write(fd, p, len);
    if (n < 0) {
      if (errno == EINTR) continue;
      return false;
    }
    p += n;
    len -= static_cast<size_t>(n);
  }
  return true;
}

void send(const ChildPlan& plan, const ChildRecord& r) { writeAll(plan.statusFd, &r, sizeof r); }

[[noreturn]] void fail(const ChildPlan& plan, const char* what, const char* detail, int err,
                       ErrorCode code = ErrorCode::Internal) {
  ChildRecord r;
  r.kind = ChildRecord::Failure;
  r.err = err;
  r.code = static_cast<int32_t>(code);
  copyText(r.what, sizeof r.what, what);
  copyText(r.detail, sizeof r.detail, detail);
  send(plan, r);
  ::_exit(127);
}

[[noreturn]] void failNumber(const ChildPlan& plan, const char* what, unsigned long n, int err) {
  char buf[24];
  formatNumber(buf, n);
  fail(plan, what, buf, err);
}

// Default dispositions and an empty mask: the parent's handlers mean nothing in
// the program, and the parent blocked every signal around fork().
void resetSignals() {
  struct sigaction sa = {};
  sa.sa_handler = SIG_DFL;
  sigemptyset(&sa.sa_mask);
  for (int s = 1; s < NSIG; ++s) {
    if (s == SIGKILL || s == SIGSTOP) continue;
    if (::sigaction(s, &sa, nullptr) == 0) continue;
    // glibc refuses its own reserved real-time signals (32, 33), yet an
    // ignored one would still be inherited across exec: ask the kernel directly.
    struct {
      void (*handler)(int);
      unsigned long flags;
      void (*restorer)();
      unsigned long mask;
    } kernelAction = {SIG_DFL, 0, nullptr, 0};
    ::syscall(SYS_rt_sigaction, s, &kernelAction, nullptr, sizeof(kernelAction.mask));
  }
  sigset_t none;
  sigemptyset(&none);
  ::sigprocmask(SIG_SETMASK, &none, nullptr);
}

void closeRange(unsigned lo, unsigned hi) {
  if (lo > hi) return;
  if (::syscall(SYS_close_range, lo, hi, 0) == 0) return;
  // Kernels before 5.9: one by one, up to the descriptor limit.
  struct rlimit rl = {};
  unsigned long max = 65536;
  if (::getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY) max = rl.rlim_cur;
  for (unsigned long fd = lo; fd <= hi && fd < max; ++fd) ::close(static_cast<int>(fd));
}

// Installs stdio, closes every fd >= 3 that is not kept, clears FD_CLOEXEC on the
// passed ones.
void setUpFds(const ChildPlan& plan) {
  // First copy the stdio sources above everything we keep, so that installing
  // one on 0..2 can never clobber another source or a kept fd.
  int above = 2;
  for (size_t i = 0; i < plan.keepCount; ++i) above = plan.keepFds[i] > above ? plan.keepFds[i] : above;
  for (int src : plan.stdioSrc) above = src > above ? src : above;
  int tmp[3];
  for (int i = 0; i < 3; ++i) {
    tmp[i] = ::fcntl(plan.stdioSrc[i], F_DUPFD_CLOEXEC, above + 1);
    if (tmp[i] < 0) failNumber(plan, "duplicate stdio fd", static_cast<unsigned long>(plan.stdioSrc[i]), errno);
  }
  for (int i = 0; i < 3; ++i)
    if (::dup2(tmp[i], i) < 0) failNumber(plan, "install stdio fd", static_cast<unsigned long>(i), errno);

  // Close the gaps between the kept fds (sorted), then everything above the last.
  unsigned lo = 3;
  for (size_t i = 0; i < plan.keepCount; ++i) {
    auto k = static_cast<unsigned>(plan.keepFds[i]);
    if (k < lo) continue;
    if (k > lo) closeRange(lo, k - 1);
    lo = k + 1;
  }
  closeRange(lo, ~0U);

  for (size_t i = 0; i < plan.passCount; ++i)
    if (::fcntl(plan.passFds[i], F_SETFD, 0) != 0)
      failNumber(plan, "keep passed fd", static_cast<unsigned long>(plan.passFds[i]), errno);
}

bool capAllowed(const ChildPlan& plan, int cap) {
  for (size_t i = 0; i < plan.capCount; ++i)
    if (plan.caps[i] == cap) return true;
  return false;
}

void setUpCredentials(const ChildPlan& plan) {
  const bool changeIds = plan.setUid || plan.setGid;
  if (!plan.changeCaps) {
    if (!changeIds) return;
    if (plan.setGid) {
      if (::setgroups(1, &plan.gid) != 0) fail(plan, "setgroups", plan.gidText, errno);
      if (::setresgid(plan.gid, plan.gid, plan.gid) != 0) fail(plan, "setgid", plan.gidText, errno);
    } else if (::setgroups(0, nullptr) != 0) {
      fail(plan, "setgroups", "", errno);
    }
    // Leaving uid 0 clears every capability (no SECBIT_KEEP_CAPS here).
    if (plan.setUid && ::setresuid(plan.uid, plan.uid, plan.uid) != 0) fail(plan, "setuid", plan.uidText, errno);
    return;
  }

  capng_clear(CAPNG_SELECT_BOTH);
  const auto all = static_cast<capng_type_t>(CAPNG_EFFECTIVE | CAPNG_PERMITTED | CAPNG_INHERITABLE |
                                             CAPNG_BOUNDING_SET);
  for (size_t i = 0; i < plan.capCount; ++i)
    if (capng_update(CAPNG_ADD, all, static_cast<unsigned>(plan.caps[i])) != 0)
      failNumber(plan, "capng_update capability", static_cast<unsigned long>(plan.caps[i]), errno);

  // Root gets its permitted set back from the bounding set at exec, so that set
  // must shrink too. Done by hand (PR_CAPBSET_DROP) rather than through
  // capng_apply(CAPNG_SELECT_BOUNDS), which reads /proc with stdio.
  if (::geteuid() == 0) {
    for (int c = 0; c < 64; ++c) {
      if (capAllowed(plan, c)) continue;
      if (::prctl(PR_CAPBSET_DROP, c, 0, 0, 0) != 0) {
        if (errno == EINVAL) break;  // past the kernel's last capability
        failNumber(plan, "drop from the capability bounding set", static_cast<unsigned long>(c), errno);
      }
    }
  }

  if (changeIds) {
    if (plan.setUid && !plan.setGid && ::setgroups(0, nullptr) != 0) fail(plan, "setgroups", "", errno);
    int rc = capng_change_id(plan.setUid ? static_cast<int>(plan.uid) : -1,
                             plan.setGid ? static_cast<int>(plan.gid) : -1, CAPNG_DROP_SUPP_GRP);
    if (rc != 0) fail(plan, "change uid/gid keeping capabilities to", plan.uidText, errno);
    // A non-root program keeps capabilities across exec only as ambient ones.
    if (plan.setUid && plan.uid != 0)
      for (size_t i = 0; i < plan.capCount; ++i)
        if (::prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, plan.caps[i], 0, 0) != 0)
          failNumber(plan, "raise ambient capability", static_cast<unsigned long>(plan.caps[i]), errno);
  } else if (capng_apply(CAPNG_SELECT_CAPS) != 0) {
    fail(plan, "capset", "", errno);
  }
}

const char* limitName(int resource) {
  switch (resource) {
    case RLIMIT_NOFILE: return "RLIMIT_NOFILE";
    case RLIMIT_CORE: return "RLIMIT_CORE";
    case RLIMIT_MEMLOCK: return "RLIMIT_MEMLOCK";
    default: return "rlimit";
  }
}

// In the intermediate child of daemonize(): record the daemon's pid atomically.
bool writePidfile(const ChildPlan& plan, pid_t pid, int* err) {
  int fd = ::open(plan.pidfileTmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0644);
  if (fd < 0) {
    *err = errno;
    return false;
  }
  char buf[32];
  size_t n = formatNumber(buf, static_cast<unsigned long>(pid));
  buf[n++] = '\n';
  bool ok = ::fchmod(fd, 0644) == 0 && writeAll(fd, buf, n);
  if (!ok) *err = errno;
  if (::close(fd) != 0 && ok) {
    ok = false;
    *err = errno;
  }
  if (ok && ::rename(plan.pidfileTmp, plan.pidfile) != 0) {
    ok = false;
    *err = errno;
  }
  if (!ok) ::unlink(plan.pidfileTmp);
  return ok;
}

}  // namespace

void runChild(const ChildPlan& plan) noexcept {
  resetSignals();

  if (plan.daemonize) {
    pid_t daemon = ::fork();
    if (daemon < 0) fail(plan, "fork", "", errno);
    if (daemon > 0) {
      // Intermediate child: write the pidfile, tell the parent, and go away so
      // that the daemon is reparented to init (or the nearest subreaper).
      int err = 0;
      if (plan.pidfile != nullptr && !writePidfile(plan, daemon, &err)) {
        ::kill(daemon, SIGKILL);
        fail(plan, "write pidfile", plan.pidfile, err);
      }
      ChildRecord r;
      r.kind = ChildRecord::DaemonPid;
      r.pid = daemon;
      send(plan, r);
      ::_exit(0);
    }
    // The daemon leads its own session: no controlling terminal, no signals
    // sent to the parent's process group.
    if (::setsid() < 0) fail(plan, "setsid", "", errno);
  }

  setUpFds(plan);

  if (plan.setUmask) ::umask(plan.umaskValue);
  if (plan.workDir != nullptr && ::chdir(plan.workDir) != 0) fail(plan, "chdir", plan.workDir, errno);
  for (size_t i = 0; i < plan.limitCount; ++i) {
    struct rlimit rl = {plan.limits[i].value, plan.limits[i].value};
    if (::setrlimit(plan.limits[i].resource, &rl) != 0)
      fail(plan, "setrlimit", limitName(plan.limits[i].resource), errno);
  }

  setUpCredentials(plan);

  if (plan.preExec != nullptr && *plan.preExec) {
    Result<void> r = (*plan.preExec)();
    if (!r.ok()) fail(plan, "preExec hook", r.error().message.c_str(), 0, r.error().code);
  }

  if (plan.handshakeFd >= 0) {
    ChildRecord r;
    r.kind = ChildRecord::Ready;
    send(plan, r);
    char go = 0;
    ssize_t n;
    do n = ::read(plan.handshakeFd, &go, 1);
    while (n < 0 && errno == EINTR);
    if (n != 1) ::_exit(127);  // the parent gave up on us
    ::close(plan.handshakeFd);
  }

  ::execve(plan.path, plan.argv, plan.envp);
  fail(plan, "exec", plan.displayName, errno, errno == ENOENT ? ErrorCode::NotFound : ErrorCode::Internal);
}

}  // namespace corral::util::detail
