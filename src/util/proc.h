// Reading another process's identity from /proc: its state, parent, session and
// start time (/proc/PID/stat) and its argv (/proc/PID/cmdline).
//
// A pid alone does not name a process: pids are reused. Code that must know
// whether "its" process still runs records the start time next to the pid and
// asks processAlive(pid, startTime). kill(pid, 0) is never proof of life: it
// succeeds for a zombie and for whatever process got the pid next. Starting,
// signalling and reaping processes are util::Command's and the caller's business.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "util/result.h"

namespace corral::util {

struct ProcStat {
  pid_t pid = 0;
  std::string comm;      // without the parentheses; may hold spaces and ')'
  char state = '?';      // R S D Z T t X I ...
  pid_t ppid = 0;
  pid_t pgrp = 0;
  pid_t session = 0;
  uint64_t startTime = 0;  // clock ticks since boot (field 22); stable for a process's life

  // A zombie ('Z') or a dying task ('X') has finished running: only its exit status is left.
  bool finished() const { return state == 'Z' || state == 'X'; }
};

// The whole text of a small file such as /proc/stat or a /sys attribute;
// nullopt when it cannot be opened.
std::optional<std::string> readTextFile(const std::string& path);

// Parses the text of /proc/PID/stat. InvalidInput when it is malformed.
Result<ProcStat> parseProcStat(std::string_view text);

// Reads /proc/PID/stat. NotFound when no such process exists.
Result<ProcStat> readProcStat(pid_t pid);

// Reads /proc/PID/cmdline split at NULs. NotFound when no such process exists;
// an empty vector for a zombie or a kernel thread.
Result<std::vector<std::string>> readProcCmdline(pid_t pid);

// True when `pid` runs (is not a zombie) and started at `expectedStartTime`
// (ticks since boot, as in ProcStat::startTime). A different start time means
// the pid was reused by another process: false. Thread-safe.
bool processAlive(pid_t pid, uint64_t expectedStartTime);

// The start time of `pid`, for recording next to it. NotFound when it is gone.
Result<uint64_t> processStartTime(pid_t pid);

}  // namespace corral::util
