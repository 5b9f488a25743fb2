// Sampling and symbolizing native stacks; see stacks.h.
#include "util/stacks.h"

#include <cxxabi.h>
#include <dirent.h>
#include <dwarf.h>
#include <elfutils/libdw.h>
#include <elfutils/libdwfl.h>
#include <execinfo.h>
#include <semaphore.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <map>
#include <memory>
#include <mutex>
#include <sstream>

#include "util/proc.h"

namespace corral::util {
namespace {

constexpr int kMaxFrames = 128;

// Phases of a request in SampleSlot::word's low byte; the requested tid sits above.
constexpr uint64_t kIdle = 0;
constexpr uint64_t kArmed = 1;    // the reporter waits for `tid`
constexpr uint64_t kWriting = 2;  // `tid`'s handler claimed the slot and is unwinding
constexpr uint64_t kDone = 3;     // frames and depth are valid

constexpr uint64_t pack(pid_t tid, uint64_t phase) { return (static_cast<uint64_t>(tid) << 8) | phase; }

// The one request in flight. Preallocated so that the handler allocates nothing.
// tid and phase live in one atomic word: a late handler of a thread that timed
// out can never claim a request meant for another thread.
struct SampleSlot {
  SampleSlot() { ::sem_init(&done, 0, 0); }
  std::atomic<uint64_t> word{kIdle};
  void* frames[kMaxFrames] = {};
  int depth = 0;
  sem_t done;
};

// The only global the sampling handler needs: where it writes. Never freed
// once published (a handler may still hold the pointer); replaced by a fresh
// slot only when one is abandoned to a handler stuck mid-unwind.
std::atomic<SampleSlot*> gSampleSlot{nullptr};

// The handler: claims the slot when it is armed for this very thread, records
// return addresses, posts. backtrace() was called once at setup so that
// libgcc_s is loaded and the unwinder does not allocate here.
[[gnu::noinline]] void onSampleSignal(int, siginfo_t*, void*) {
  int savedErrno = errno;
  SampleSlot* slot = gSampleSlot.load(std::memory_order_acquire);
  if (slot != nullptr) {
    pid_t self = ::gettid();
    uint64_t expected = pack(self, kArmed);
    if (slot->word.compare_exchange_strong(expected, pack(self, kWriting), std::memory_order_acq_rel)) {
      int n = ::backtrace(slot->frames, kMaxFrames);
      slot->depth = n < 0 ? 0 : n;
      slot->word.store(pack(self, kDone), std::memory_order_release);
      ::sem_post(&slot->done);
    }
  }
  errno = savedErrno;
}

// Process-wide sampling state: the signal and the serialization of requests
// (there is one slot and one signal per process, so one sampler at a time).
struct Sampler {
  std::mutex mu;
  int signo = 0;
};

Sampler& sampler() {
  static Sampler* s = new Sampler;  // never destroyed: a late report may run during exit
  return *s;
}

// Under sampler().mu.
Result<void> setUp(Sampler& s) {
  if (s.signo != 0) return ok();
  void* warm[4];
  (void)::backtrace(warm, 4);  // loads libgcc_s now, not inside a handler
  gSampleSlot.store(new SampleSlot, std::memory_order_release);
  for (int sig = SIGRTMIN + 4; sig <= SIGRTMAX; ++sig) {
    struct sigaction old {};
    if (::sigaction(sig, nullptr, &old) != 0) continue;
    if ((old.sa_flags & SA_SIGINFO) != 0 || old.sa_handler != SIG_DFL) continue;
    struct sigaction sa {};
    sa.sa_sigaction = onSampleSignal;
    sa.sa_flags = SA_RESTART | SA_SIGINFO;
    ::sigemptyset(&sa.sa_mask);
    if (::sigaction(sig, &sa, nullptr) != 0) continue;
    s.signo = sig;
    return ok();
  }
  return Error::unavailable("stack sampling: no free real-time signal");
}

std::vector<pid_t> listTasks() {
  std::vector<pid_t> tids;
  DIR* d = ::opendir("/proc/self/task");
  if (d == nullptr) return tids;
  while (struct dirent* e = ::readdir(d)) {
    char* end = nullptr;
    long v = std::strtol(e->d_name, &end, 10);
    if (end != e->d_name && *end == '\0' && v > 0) tids.push_back(static_cast<pid_t>(v));
  }
  ::closedir(d);
  std::sort(tids.begin(), tids.end());
  return tids;
}

void describeTask(ThreadStack& t) {
  std::string comm = readTextFile(fmt::format("/proc/self/task/{}/comm", t.tid)).value_or("");
  while (!comm.empty() && comm.back() == '\n') comm.pop_back();
  t.name = comm;
  auto st = parseProcStat(readTextFile(fmt::format("/proc/self/task/{}/stat", t.tid)).value_or(""));
  if (st.ok()) t.state = st->state;
}

timespec deadlineAfter(std::chrono::milliseconds d) {
  timespec now{};
  ::clock_gettime(CLOCK_MONOTONIC, &now);
  int64_t ns = now.tv_nsec + static_cast<int64_t>(d.count()) * 1000000;
  now.tv_sec += static_cast<time_t>(ns / 1000000000);
  now.tv_nsec = static_cast<long>(ns % 1000000000);
  return now;
}

// True when the semaphore was posted before the timeout.
bool waitPosted(sem_t* sem, std::chrono::milliseconds timeout) {
  timespec deadline = deadlineAfter(timeout);
  while (true) {
    if (::sem_clockwait(sem, CLOCK_MONOTONIC, &deadline) == 0) return true;
    if (errno != EINTR) return false;
  }
}

// Asks thread `tid` for its stack through the slot; under sampler().mu.
void sampleOne(int signo, ThreadStack& t, std::chrono::milliseconds timeout) {
  SampleSlot* slot = gSampleSlot.load(std::memory_order_acquire);
  slot->depth = 0;
  slot->word.store(pack(t.tid, kArmed), std::memory_order_release);
  if (::tgkill(::getpid(), t.tid, signo) != 0) {
    int err = errno;
    slot->word.store(kIdle, std::memory_order_release);
    t.error = err == ESRCH ? "exited before it could be sampled" : fmt::format("tgkill: {}", std::strerror(err));
    return;
  }
  if (!waitPosted(&slot->done, timeout)) {
    uint64_t expected = pack(t.tid, kArmed);
    if (slot->word.compare_exchange_strong(expected, kIdle, std::memory_order_acq_rel)) {
      // Never claimed: a later delivery finds the slot idle (or armed for another tid) and does nothing.
      t.error = fmt::format("did not answer in {} ms (state {})", timeout.count(), t.state);
      return;
    }
    // Its handler claimed the slot just now and is unwinding: give it a little longer.
    if (!waitPosted(&slot->done, timeout)) {
      // Stuck inside the unwinder: the slot is its for good; later requests use a fresh one.
      gSampleSlot.store(new SampleSlot, std::memory_order_release);
      t.error = fmt::format("started answering but did not finish in {} ms", 2 * timeout.count());
      return;
    }
  }
  int depth = slot->depth;
  t.addresses.reserve(static_cast<size_t>(depth));
  for (int i = 0; i < depth; ++i) t.addresses.push_back(reinterpret_cast<uintptr_t>(slot->frames[i]));
  slot->word.store(kIdle, std::memory_order_release);
}

std::string demangle(const char* name) {
  int status = 0;
  std::unique_ptr<char, decltype(&std::free)> out(abi::__cxa_demangle(name, nullptr, nullptr, &status), &std::free);
  return status == 0 && out ? std::string(out.get()) : std::string(name);
}

// A DIE's name for a frame: its linkage name demangled (qualified, with the
// parameter types), else its plain name; both through the abstract origin of an
// inlined instance.
std::string dieName(Dwarf_Die* die) {
  Dwarf_Attribute attr;
  if (dwarf_attr_integrate(die, DW_AT_linkage_name, &attr) != nullptr ||
      dwarf_attr_integrate(die, DW_AT_MIPS_linkage_name, &attr) != nullptr) {
    if (const char* s = dwarf_formstring(&attr)) return demangle(s);
  }
  if (dwarf_attr_integrate(die, DW_AT_name, &attr) != nullptr) {
    if (const char* s = dwarf_formstring(&attr)) return s;
  }
  return {};
}

// The frames of one pc: the calls inlined at it (innermost first, marked
// inlined), then the function the code belongs to. Each frame carries the
// source position inside it, so a wait inlined from a header shows the
// header's line on the inlined frame and the caller's own line on the caller.
std::vector<StackFrame> lookUp(Dwfl* dwfl, uintptr_t address, uintptr_t pc) {
  StackFrame base;
  base.address = address;
  Dwfl_Module* mod = dwfl_addrmodule(dwfl, pc);
  if (mod == nullptr) return {base};
  const char* modName = dwfl_module_info(mod, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr);
  if (modName != nullptr) base.module = modName;
  if (const char* sym = dwfl_module_addrname(mod, pc)) base.function = demangle(sym);
  std::string file;
  int lineNo = 0;
  if (Dwfl_Line* line = dwfl_module_getsrc(mod, pc)) {
    if (const char* f = dwfl_lineinfo(line, nullptr, &lineNo, nullptr, nullptr, nullptr)) file = f;
  }

  std::vector<StackFrame> out;
  Dwarf_Addr bias = 0;
  Dwarf_Die* cu = dwfl_module_addrdie(mod, pc, &bias);
  Dwarf_Die* scopes = nullptr;
  int n = cu != nullptr ? dwarf_getscopes(cu, pc - bias, &scopes) : 0;
  if (n > 0) {
    // dwarf_getscopes continues from an inlined instance into its abstract
    // definition; the chain of concrete callers comes from the innermost DIE.
    Dwarf_Die innermost = scopes[0];
    std::free(scopes);
    scopes = nullptr;
    n = dwarf_getscopes_die(&innermost, &scopes);
  }
  Dwarf_Files* files = nullptr;
  size_t nfiles = 0;
  if (n > 0 && dwarf_getsrcfiles(cu, &files, &nfiles) != 0) files = nullptr;
  for (int i = 0; i < n; ++i) {
    int tag = dwarf_tag(&scopes[i]);
    if (tag == DW_TAG_subprogram) break;
    if (tag != DW_TAG_inlined_subroutine) continue;
    StackFrame f = base;
    f.function = dieName(&scopes[i]);
    f.file = file;
    f.line = lineNo;
    f.inlined = true;
    out.push_back(std::move(f));
    // Where it was inlined is the caller's position.
    Dwarf_Attribute attr;
    Dwarf_Word v = 0;
    lineNo = dwarf_formudata(dwarf_attr(&scopes[i], DW_AT_call_line, &attr), &v) == 0 ? static_cast<int>(v) : 0;
    file.clear();
    if (files != nullptr && dwarf_formudata(dwarf_attr(&scopes[i], DW_AT_call_file, &attr), &v) == 0) {
      if (const char* f2 = dwarf_filesrc(files, v, nullptr, nullptr)) file = f2;
    }
  }
  std::free(scopes);
  base.file = file;
  base.line = lineNo;
  out.push_back(std::move(base));
  return out;
}

}  // namespace

Result<std::vector<ThreadStack>> sampleThreadStacks(std::chrono::milliseconds perThreadTimeout) {
  Sampler& s = sampler();
  std::lock_guard lock(s.mu);
  CORRAL_TRY(setUp(s));
  pid_t self = ::gettid();
  std::vector<ThreadStack> out;
  for (pid_t tid : listTasks()) {
    ThreadStack t;
    t.tid = tid;
    describeTask(t);
    if (tid == self) {
      t.self = true;
      void* frames[kMaxFrames];
      int n = ::backtrace(frames, kMaxFrames);
      for (int i = 0; i < n; ++i) t.addresses.push_back(reinterpret_cast<uintptr_t>(frames[i]));
    } else if (t.state == 'Z' || t.state == 'X') {
      t.error = "exited";
    } else {
      sampleOne(s.signo, t, perThreadTimeout);
    }
    out.push_back(std::move(t));
  }
  return out;
}

namespace {

// One libdw session for the life of the process: parsing every module's DWARF
// is most of a report's cost, so it is done once. Each report re-reports the
// process's modules (libdw keeps the ones it already has) and keeps the frames
// it resolved while the executable mappings stay the same.
struct Symbolizer {
  std::mutex mu;
  std::unique_ptr<Dwfl, decltype(&dwfl_end)> dwfl{nullptr, &dwfl_end};
  Dwfl_Callbacks callbacks{};
  std::string mappings;                                 // executable mappings the frames were resolved under
  std::map<uintptr_t, std::vector<StackFrame>> frames;  // pc -> its frames (inlined ones first)
};

Symbolizer& symbolizer() {
  static Symbolizer* s = new Symbolizer;  // never destroyed: a report may run while the process exits
  return *s;
}

// The executable, file-backed mappings of this process: what a pc resolves against.
std::string executableMappings() {
  std::ifstream in("/proc/self/maps");
  std::string line, out;
  while (std::getline(in, line))
    if (line.find(" r-xp ") != std::string::npos || line.find(" r-xs ") != std::string::npos) out += line + "\n";
  return out;
}

}  // namespace

Result<void> symbolizeStacks(std::vector<ThreadStack>& stacks) {
  Symbolizer& sym = symbolizer();
  std::lock_guard lock(sym.mu);
  if (!sym.dwfl) {
    sym.callbacks.find_elf = dwfl_linux_proc_find_elf;
    sym.callbacks.find_debuginfo = dwfl_standard_find_debuginfo;
    sym.dwfl.reset(dwfl_begin(&sym.callbacks));
  }
  std::string mappings = executableMappings();
  if (mappings != sym.mappings) {
    sym.frames.clear();
    sym.mappings = std::move(mappings);
  }
  bool usable = false;
  if (sym.dwfl) {
    dwfl_report_begin(sym.dwfl.get());
    int rc = dwfl_linux_proc_report(sym.dwfl.get(), ::getpid());
    usable = dwfl_report_end(sym.dwfl.get(), nullptr, nullptr) == 0 && rc == 0;
  }
  if (!usable) sym.frames.clear();
  Dwfl* dwfl = sym.dwfl.get();
  auto& cache = sym.frames;  // threads share most of their frames, and reports most of theirs
  for (ThreadStack& t : stacks) {
    t.frames.clear();
    for (size_t i = 0; i < t.addresses.size(); ++i) {
      uintptr_t a = t.addresses[i];
      // A return address points after the call; a-1 is inside it (and inside the right line).
      uintptr_t pc = i == 0 ? a : a - 1;
      auto it = cache.find(pc);
      if (it == cache.end()) {
        std::vector<StackFrame> fs = usable ? lookUp(dwfl, a, pc) : std::vector<StackFrame>{{.address = a}};
        it = cache.emplace(pc, std::move(fs)).first;
      }
      for (const StackFrame& f : it->second) {
        t.frames.push_back(f);
        t.frames.back().address = a;
      }
    }
    // A signalled thread's stack starts in the handler and the kernel's signal trampoline: drop them.
    if (!t.self) {
      size_t limit = std::min<size_t>(t.frames.size(), 6);
      for (size_t i = 0; i < limit; ++i) {
        if (t.frames[i].function.find("onSampleSignal") != std::string::npos) {
          size_t drop = std::min(t.frames.size(), i + 2);  // the handler and the trampoline after it
          t.frames.erase(t.frames.begin(), t.frames.begin() + static_cast<std::ptrdiff_t>(drop));
          break;
        }
      }
    }
  }
  if (!usable) {
    cache.clear();  // bare addresses: the next report tries again
    return Error::internal(fmt::format("symbolizing: cannot read this process's modules: {}", dwfl_errmsg(-1)));
  }
  return ok();
}

Result<void> prepareStackSampling() {
  Sampler& s = sampler();
  std::lock_guard lock(s.mu);
  return setUp(s);
}

int stackSamplingSignalForTest() {
  Sampler& s = sampler();
  std::lock_guard lock(s.mu);
  return s.signo;
}

}  // namespace corral::util
