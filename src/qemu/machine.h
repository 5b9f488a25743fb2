// Machine: one running QEMU process and everything that must happen around it
// (after QEMU's python/qemu/machine; STYLE.md §5). It launches QEMU detached from
// the daemon (own session, pidfile; a daemon restart never stops a guest), paused,
// connects QMP, lets the caller configure, then sends `cont`. It drains the serial
// console into a bounded, rotated log, notices when the process is gone and why,
// shuts the guest down (ACPI, then TERM, then KILL, reporting an abnormal shutdown
// when it had to signal) and reattaches after a daemon restart from the runtime
// record, checking /proc so that a reused pid is never taken for the guest.
//
// Cleanup: a failed launch kills what it started and removes the runtime files;
// shutdown removes them once the process is gone; the destructor closes the QMP
// and console connections and removes the files only when the process is gone.
// Destructors never throw.
//
// What it leaves to others: the argv (qemu/command_line), the runtime directory
// itself (host/: created 0700 before launch, removed after), the VM's state
// machine and policies (core/), the uid QEMU runs as.
//
// Threads: the daemon runs one io thread for all sockets (more would work too:
// exit detection and the console run on their own strands). launch(), reattach()
// and shutdown() block and are called from worker threads, never from an io
// thread. Listener callbacks run on an io thread and must not block. Exit
// detection waits on a pidfd; the exit status is known when the QEMU process is
// our child, which it is when the daemon (or the test) called
// prctl(PR_SET_CHILD_SUBREAPER) before launching; otherwise /proc is watched and
// a zombie counts as dead.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <boost/asio/io_context.hpp>
#include <nlohmann/json.hpp>

#include "qemu/runtime_record.h"
#include "qemu/vm_spec.h"
#include "util/result.h"

namespace corral::qemu {

class Monitor;
class QmpTransport;

enum class ExitCause {
  GuestPoweroff,  // the guest shut itself down (SHUTDOWN with guest=true)
  HostRequested,  // Machine::shutdown() (or a QMP quit) ended it
  HostSignal,     // someone else killed it (SIGKILL/SIGTERM, SHUTDOWN reason host-signal)
  CrashSignal,    // QEMU died of SIGSEGV/SIGABRT/SIGBUS/SIGILL/SIGFPE
  Unknown,        // exited without saying why (e.g. an error exit, or not our child)
};

std::string_view toString(ExitCause cause);

struct ExitInfo {
  ExitCause cause = ExitCause::Unknown;
  int exitCode = -1;       // -1 when unknown (killed by a signal, or not our child)
  int signal = 0;          // the signal that ended it, 0 when none or unknown
  bool abnormal = false;   // shutdown() had to signal QEMU (ACPI ignored, or force)
  std::string detail;      // for operators: "guest powered off", "killed by signal 9"...
};

class MachineListener {
 public:
  virtual ~MachineListener() = default;
  // Every QMP event (STOP, RESUME, RESET, SHUTDOWN...), on an io thread.
  virtual void onMachineEvent(const nlohmann::json& event) = 0;
  // Once, on an io thread, when the QEMU process is gone (after its runtime
  // files were removed). Not called once the Machine was destroyed.
  virtual void onMachineExit(const ExitInfo& info) = 0;
};

struct LaunchConfig {
  std::string qemuBinary = "qemu-system-x86_64";
  VmSpec spec;
  std::string runtimeDir;  // exists, 0700, owned by the caller; short (unix socket paths)
  std::chrono::milliseconds qmpTimeout{10000};
  size_t consoleLogMaxBytes = 1 << 20;
  bool startPaused = false;  // leave the guest paused after configure (no `cont`)
  std::vector<std::string> extraArgs;  // appended to the argv (tests; per-VM tweaks)
  // The group QEMU runs with (its only one; the uid stays the caller's): what the
  // host firewall knows guests' sockets by (host::net::GuardSpec). nullopt: the caller's.
  std::optional<gid_t> gid;
  // Runs while the guest is still paused, before `cont`; its error fails the launch.
  std::function<Result<void>(Monitor&)> configure;
};

class Machine {
 public:
  // File names inside the runtime directory.
  static constexpr const char* kQmpSocket = "qmp.sock";
  static constexpr const char* kSerialSocket = "serial.sock";
  static constexpr const char* kVncSocket = "vnc.sock";
  static constexpr const char* kPidfile = "qemu.pid";
  static constexpr const char* kQemuLog = "qemu.log";
  static constexpr const char* kConsoleLog = "console.log";

  static RuntimePaths runtimePaths(const std::string& runtimeDir);

  // Starts QEMU paused under util::Command (daemonized: own session, pidfile),
  // connects QMP and the console, runs cfg.configure, sends `cont` (unless
  // startPaused) and writes the runtime record. On failure everything started is
  // killed and removed; the Error says the exit status, the argv and the tail of
  // qemu.log. FailedPrecondition when the runtime record names a live guest.
  // Worker thread only. `listener` may be null and must outlive the Machine.
  static Result<std::unique_ptr<Machine>> launch(boost::asio::io_context& io, LaunchConfig cfg,
                                                 MachineListener* listener);

  // Attaches to the guest described by runtimeDir's runtime record. NotFound when
  // there is no record; Unavailable when its process is gone, a zombie or another
  // process with the same pid (start time differs) — the caller then cleans up
  // (cleanupRuntimeDir) and treats the guest as crashed. Worker thread only.
  static Result<std::unique_ptr<Machine>> reattach(boost::asio::io_context& io, const std::string& runtimeDir,
                                                   MachineListener* listener);

  struct ShutdownOptions {
    bool force = false;                           // skip ACPI, go straight to TERM
    std::chrono::milliseconds timeout{60000};     // for the guest to power off after ACPI
    std::chrono::milliseconds killGrace{5000};    // between TERM and KILL
  };
  // Stops the guest: system_powerdown and wait up to timeout, then TERM, wait
  // killGrace, then KILL (ExitInfo::abnormal when it had to signal). Closes the
  // console before waiting. Removes the runtime files once the process is gone.
  // Returns the same ExitInfo as onMachineExit; when the guest was already gone,
  // returns how it ended. Worker thread only.
  Result<ExitInfo> shutdown(ShutdownOptions opts);

  // A handle that SIGKILLs this QEMU (through its pidfd: never a successor),
  // callable from any thread, holding no lock of the caller's, and harmless once
  // the process is gone or the Machine destroyed. The exit counts as corral's
  // doing (not a crash). What a forced stop uses while another action (a
  // graceful stop, a hung QMP command) holds the VM.
  std::function<void()> killer() const;

  // Typed QMP commands. Valid for the Machine's lifetime; use from worker threads
  // (sync) or any thread (async). Fails with Disconnected once QEMU is gone.
  Monitor& monitor();

  pid_t pid() const;
  uint64_t startTime() const;  // /proc/PID/stat start time, ticks since boot
  const std::string& runtimeDir() const;
  const RuntimeRecord& record() const;

  // The newest ≤ maxBytes of the serial console log (rotated file included). Thread-safe.
  std::string consoleLogTail(size_t maxBytes) const;
  // Replaces the console tap (live viewers); nullptr: none. The tap runs on an io thread,
  // under the mutex withConsoleQuiet() holds: it must not block nor call back into
  // the console (ConsoleDrain::Tap).
  void setConsoleTap(std::function<void(std::string_view)> tap);
  // Keystrokes for the guest's serial console (ConsoleDrain::write): false when
  // there is no console, it has ended, or too many bytes already wait for a guest
  // that does not read. Thread-safe, never blocks.
  bool consoleWrite(std::string bytes);
  // Runs fn while no console chunk is between the log and the tap
  // (ConsoleDrain::quiet), so that consoleLogTail() + registering a live viewer
  // inside fn gives that viewer every byte exactly once. Just runs fn when there
  // is no console. fn must be short, must not block and must not call back into
  // the console. Thread-safe.
  void withConsoleQuiet(const std::function<void()>& fn);
  // Serial console bytes read from the guest since launch/reattach (0: no console).
  uint64_t consoleBytesDrained() const;

  // True while the QEMU process runs (not a zombie, same start time). Thread-safe.
  bool alive() const;
  // How it ended, once it did (empty while it runs). Thread-safe.
  std::optional<ExitInfo> exitInfo() const;
  // Blocks until the process is gone or `timeout` passes; the ExitInfo if gone.
  std::optional<ExitInfo> waitForExit(std::chrono::milliseconds timeout);

  // Closes QMP and the console. Does NOT stop a running guest (a daemon restart
  // must not stop guests); removes the runtime files only when the process is gone.
  ~Machine();
  Machine(const Machine&) = delete;
  Machine& operator=(const Machine&) = delete;

  // Removes the sockets, the pidfile and the runtime record (and its temp file);
  // keeps console.log(.1) and qemu.log for post-mortems. Never throws.
  static void cleanupRuntimeDir(const std::string& dir) noexcept;

  struct State;  // shared with io-thread handlers; private to machine.cc

 private:
  explicit Machine(std::shared_ptr<State> state);
  std::shared_ptr<State> s_;
};

}  // namespace corral::qemu
