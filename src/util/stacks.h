// Native stacks of every thread of this process, for the Guru Meditation Report.
//
// Sampling: the calling thread signals each other task of the process
// (/proc/self/task, tgkill) with a real-time signal chosen at runtime
// (SIGRTMIN+n whose disposition is still the default). The signal's handler
// records raw return addresses with glibc's backtrace() into one preallocated
// slot and posts a semaphore; nothing else runs in the handler. A thread that
// does not answer in time (uninterruptible sleep, the signal blocked, stopped)
// is reported as such; it never hangs the caller. The caller's own stack is
// taken directly. Only one sampling runs at a time (a process-wide mutex).
//
// Symbolizing happens afterwards, outside any handler, with libdw (Dwfl over
// /proc/self/maps) and abi::__cxa_demangle: function, file and line when the
// binary has debug info. Never a forked symbolizer.
//
// What it leaves to others: the report's JSON shape (util/report.h's
// threadsSection) and when to sample (util/guru.h).
//
// The real-time signal's handler stays installed for the life of the process
// once installed: a signal that arrives after its requester gave up on it must
// find a harmless handler, not the default action (which terminates).
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

#include "util/result.h"

namespace corral::util {

// One frame, symbolized. function/file are empty and line 0 when unknown.
struct StackFrame {
  uintptr_t address = 0;  // the raw return address (or the interrupted pc)
  std::string function;   // demangled; the ELF symbol's name when demangling fails
  std::string module;     // the ELF object's path
  std::string file;       // source file, from DWARF line info
  int line = 0;
  bool inlined = false;  // a call the compiler inlined into the next frame (same address)
};

// One native thread of this process.
struct ThreadStack {
  pid_t tid = 0;
  std::string name;                  // /proc/self/task/TID/comm
  char state = '?';                  // as in /proc/self/task/TID/stat: R S D T Z ...
  bool self = false;                 // the thread that took the sample (stack taken directly)
  std::vector<uintptr_t> addresses;  // raw, innermost first; empty when not sampled
  std::vector<StackFrame> frames;    // filled by symbolizeStacks()
  std::string error;                 // why there is no stack ("did not answer in 200 ms")
};

// Picks the sampling signal, installs its handler and loads the unwinder, so
// that the first sampling does none of it (and so that a free real-time signal
// is taken at startup, not while the process is in trouble). Idempotent;
// sampleThreadStacks() calls it too.
Result<void> prepareStackSampling();

// Samples the raw stacks of every thread of this process. Waits up to
// `perThreadTimeout` for each thread. Thread-safe (serialized internally). Fails
// only when the sampling signal cannot be set up (no free real-time signal).
Result<std::vector<ThreadStack>> sampleThreadStacks(std::chrono::milliseconds perThreadTimeout);

// Fills each stack's frames from its addresses, dropping the frames of the
// sampling handler itself. A failure to open the process's modules leaves the
// frames unsymbolized (address only) and says so in the returned error.
Result<void> symbolizeStacks(std::vector<ThreadStack>& stacks);

// The real-time signal used for sampling, for tests and diagnostics; 0 before
// the first sampling.
int stackSamplingSignalForTest();

}  // namespace corral::util
