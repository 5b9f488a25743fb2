// Internal to util::Command: the plan the parent prepares before fork() and the
// code the child runs between fork() and exec().
//
// Everything the child needs is computed in the parent (argv/envp arrays, the
// sorted list of fds to keep, paths as C strings) so that the child touches no
// allocator and calls only async-signal-safe functions, apart from the caller's
// preExec hook and libcap-ng when capabilities change. The child talks back over a
// close-on-exec pipe in fixed-size records (atomic, below PIPE_BUF).
#pragma once

#include <sys/resource.h>
#include <sys/types.h>

#include <cstddef>
#include <cstdint>
#include <functional>

#include "util/result.h"

namespace corral::util::detail {

struct ChildRecord {
  enum Kind : int32_t { Failure = 1, Ready = 2, DaemonPid = 3 };
  int32_t kind = 0;
  int32_t err = 0;   // errno, 0 when none
  int32_t code = 0;  // ErrorCode, for preExec failures
  int32_t pid = 0;   // DaemonPid
  char what[96] = {};     // "exec", "chdir", ...
  char detail[400] = {};  // the path, id or message involved
};
static_assert(sizeof(ChildRecord) <= 512);

struct ChildLimit {
  int resource;
  rlim_t value;
};

struct ChildPlan {
  const char* path = nullptr;         // resolved executable
  const char* displayName = nullptr;  // the program as given, for messages
  char* const* argv = nullptr;
  char* const* envp = nullptr;

  int stdioSrc[3] = {-1, -1, -1};  // fds to install as 0, 1, 2

  const int* keepFds = nullptr;  // sorted, unique, all >= 3: passed fds + statusFd + handshakeFd
  size_t keepCount = 0;
  const int* passFds = nullptr;  // the ones whose FD_CLOEXEC is cleared
  size_t passCount = 0;

  int statusFd = -1;     // write end of the status pipe (CLOEXEC)
  int handshakeFd = -1;  // read end of the handshake pipe, -1 without handshake

  bool setUmask = false;
  mode_t umaskValue = 0;
  const char* workDir = nullptr;
  ChildLimit limits[3] = {};
  size_t limitCount = 0;

  bool setGid = false;
  gid_t gid = 0;
  bool setUid = false;
  uid_t uid = 0;
  bool changeCaps = false;
  const int* caps = nullptr;  // allowed capabilities (empty: none)
  size_t capCount = 0;
  const char* uidText = nullptr;  // preformatted ids for messages
  const char* gidText = nullptr;

  bool daemonize = false;
  const char* pidfile = nullptr;     // may be null: no pidfile
  const char* pidfileTmp = nullptr;  // written then renamed onto pidfile

  const std::function<Result<void>()>* preExec = nullptr;
};

// Runs in the child after fork(); never returns.
[[noreturn]] void runChild(const ChildPlan& plan) noexcept;

}  // namespace corral::util::detail
