// qemu::Machine: launch, watch, shut down and reattach one QEMU; see machine.h.
#include "qemu/machine.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/syscall.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <condition_variable>
#include <ctime>
#include <filesystem>
#include <mutex>
#include <optional>
#include <thread>

#include <boost/asio/bind_executor.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/steady_timer.hpp>
#include <spdlog/spdlog.h>

#include "qemu/command_line.h"
#include "qemu/console_drain.h"
#include "qemu/monitor.h"
#include "qemu/qmp_transport.h"
#include "util/command.h"
#include "util/proc.h"
#include "util/rollback.h"
#include "util/rotating_log.h"
#include "util/unique_fd.h"

namespace corral::qemu {

namespace asio = boost::asio;
using Clock = std::chrono::steady_clock;
using Ms = std::chrono::milliseconds;
using nlohmann::json;

namespace {

constexpr size_t kLogTailBytes = 4096;
// After the process is gone, how long exit handling waits for QMP to deliver the
// last events (SHUTDOWN says why) before it decides without them.
constexpr Ms kQmpDrainGrace{2000};
// Fallback polling period when pidfds are unavailable.
constexpr Ms kPollPeriod{100};

std::string joinArgv(const std::vector<std::string>& argv) {
  std::string out;
  for (const auto& a : argv) {
    if (!out.empty()) out += ' ';
    bool plain = !a.empty() && a.find_first_of(" \t\n'\"\\$`") == std::string::npos;
    if (plain) {
      out += a;
    } else {
      out += '\'';
      for (char c : a) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
      out += '\'';
    }
  }
  return out;
}

bool isCrashSignal(int sig) {
  return sig == SIGSEGV || sig == SIGABRT || sig == SIGBUS || sig == SIGILL || sig == SIGFPE || sig == SIGSYS;
}
bool isHostSignal(int sig) { return sig == SIGKILL || sig == SIGTERM || sig == SIGINT || sig == SIGHUP; }

// pidfd_open, or -1 when the kernel lacks it (the caller then polls /proc).
// Raw syscalls: glibc 2.36's <sys/pidfd.h> lacks extern "C" and cannot link from C++.
int openPidfd(pid_t pid) { return static_cast<int>(::syscall(SYS_pidfd_open, pid, 0)); }
int pidfdSendSignal(int pidfd, int sig) { return static_cast<int>(::syscall(SYS_pidfd_send_signal, pidfd, sig, nullptr, 0)); }

// Reaps `pid` if it is our child and finished; the status when reaped.
std::optional<util::ExitStatus> reapIfChild(pid_t pid) {
  int st = 0;
  pid_t w;
  do {
    w = ::waitpid(pid, &st, WNOHANG);
  } while (w < 0 && errno == EINTR);
  if (w == pid) return util::ExitStatus::fromWaitStatus(st);
  return std::nullopt;
}

}  // namespace

std::string_view toString(ExitCause cause) {
  switch (cause) {
    case ExitCause::GuestPoweroff: return "guest-poweroff";
    case ExitCause::HostRequested: return "host-requested";
    case ExitCause::HostSignal: return "host-signal";
    case ExitCause::CrashSignal: return "crash-signal";
    case ExitCause::Unknown: return "unknown";
  }
  return "unknown";
}

// Everything the io thread's handlers touch; they hold it by shared_ptr, so it
// outlives the Machine when a handler is still queued.
struct Machine::State : std::enable_shared_from_this<State> {
  explicit State(asio::io_context& ioc) : io(ioc), strand(asio::make_strand(ioc)) {}

  asio::io_context& io;
  // Exit detection runs here, so it is safe whatever number of threads runs io.
  asio::strand<asio::io_context::executor_type> strand;
  std::string runtimeDir;
  RuntimeRecord record;
  pid_t pid = -1;
  uint64_t startTime = 0;
  Ms qmpTimeout{10000};

  std::shared_ptr<QmpTransport> qmp;
  std::unique_ptr<Monitor> monitor;
  uint64_t eventHandlerId = 0;
  std::shared_ptr<util::RotatingLog> consoleLog;
  std::shared_ptr<ConsoleDrain> console;
  util::UniqueFd pidfd;  // for signals; the watcher below holds a dup

  // strand only.
  std::unique_ptr<asio::posix::stream_descriptor> pidfdWatch;
  std::unique_ptr<asio::steady_timer> timer;
  bool watching = false;
  bool processGone = false;
  bool finalized = false;
  std::optional<util::ExitStatus> status;  // when we reaped it

  mutable std::mutex mu;  // guards what follows
  std::condition_variable cv;
  bool qmpDown = false;
  bool guestShutdown = false;
  std::string shutdownReason;
  bool hostRequested = false;
  bool signalled = false;
  bool detached = false;  // the Machine is gone: handlers stop
  std::optional<ExitInfo> exit;

  std::recursive_mutex listenerMu;  // held while calling the listener
  MachineListener* listener = nullptr;

  // ---- on strand
  void startWatch();
  void armPidfdWait();
  void armTimer(Ms after, void (State::*what)());
  void checkNow();
  void onProcessGone(std::optional<util::ExitStatus> st);
  void finalize();
  // Routes QMP events and the disconnect to this state, held weakly so a
  // detached machine hears nothing more.
  void subscribeQmp();
  void onQmpEvent(const json& ev);
  void onQmpDisconnect();
  void stopWatchOnIo();

  // ---- any thread
  void signalGuest(int sig);
  std::optional<ExitInfo> waitExit(Ms timeout);
  void detach() noexcept;
  bool running() const;
};

bool Machine::State::running() const {
  {
    std::lock_guard lock(mu);
    if (exit) return false;
  }
  return util::processAlive(pid, startTime);
}

void Machine::State::startWatch() {
  watching = true;
  if (pidfd) {
    int dupFd = ::fcntl(pidfd.get(), F_DUPFD_CLOEXEC, 3);
    if (dupFd >= 0) pidfdWatch = std::make_unique<asio::posix::stream_descriptor>(strand, dupFd);
  }
  checkNow();  // arms the pidfd (or the poll timer) when QEMU still runs
}

void Machine::State::armPidfdWait() {
  pidfdWatch->async_wait(asio::posix::stream_descriptor::wait_read,
                         asio::bind_executor(strand, [self = shared_from_this()](const boost::system::error_code& ec) {
                           if (ec || self->processGone) return;
                           {
                             std::lock_guard lock(self->mu);
                             if (self->detached) return;
                           }
                           self->checkNow();
                         }));
}

void Machine::State::armTimer(Ms after, void (State::*what)()) {
  if (!timer) timer = std::make_unique<asio::steady_timer>(strand);
  timer->expires_after(after);
  timer->async_wait(asio::bind_executor(strand, [self = shared_from_this(), what](const boost::system::error_code& ec) {
    if (ec) return;
    {
      std::lock_guard lock(self->mu);
      if (self->detached) return;
    }
    ((*self).*what)();
  }));
}

// Is the process gone? Reaps it when it is our child (subreaper), else asks /proc.
void Machine::State::checkNow() {
  if (processGone || !watching) return;
  int st = 0;
  pid_t w;
  do {
    w = ::waitpid(pid, &st, WNOHANG);
  } while (w < 0 && errno == EINTR);
  if (w == pid) {
    onProcessGone(util::ExitStatus::fromWaitStatus(st));
    return;
  }
  if (w < 0) {
    // Not our child (reattached after a daemon restart, or no subreaper): /proc is
    // all we have, and a zombie counts as dead (init reaps orphans slowly).
    if (!util::processAlive(pid, startTime)) {
      onProcessGone(std::nullopt);
      return;
    }
  } else if (!util::processAlive(pid, startTime)) {
    // Our child's leader is a zombie but waitpid must wait for its other threads
    // to exit: a moment's polling, not the pidfd (which may already be readable).
    armTimer(Ms(5), &State::checkNow);
    return;
  }
  // Still running. With a pidfd we hear of the exit; without, poll.
  if (!pidfdWatch) {
    armTimer(kPollPeriod, &State::checkNow);
  } else {
    armPidfdWait();
  }
}

void Machine::State::onProcessGone(std::optional<util::ExitStatus> st) {
  processGone = true;
  status = st;
  if (pidfdWatch) {
    boost::system::error_code ec;
    pidfdWatch->close(ec);
  }
  bool waitForQmp;
  {
    std::lock_guard lock(mu);
    waitForQmp = !qmpDown;
  }
  // QMP's last events (SHUTDOWN and its reason) may still sit unread in the
  // socket: the EOF that follows them ends the wait, the grace bounds it.
  if (waitForQmp) {
    armTimer(kQmpDrainGrace, &State::finalize);
  } else {
    finalize();
  }
}

void Machine::State::onQmpDisconnect() {
  {
    std::lock_guard lock(mu);
    qmpDown = true;
    if (detached) return;
  }
  if (!watching) return;
  if (processGone) {
    if (timer) timer->cancel();
    finalize();
  } else {
    checkNow();
  }
}

void Machine::State::finalize() {
  if (finalized) return;
  finalized = true;
  ExitInfo info;
  {
    std::lock_guard lock(mu);
    if (status) {
      info.exitCode = status->signal ? -1 : status->exitCode;
      info.signal = status->signal;
    }
    int sig = info.signal;
    if (sig != 0 && isCrashSignal(sig)) {
      info.cause = ExitCause::CrashSignal;
      info.detail = fmt::format("qemu crashed: {}", status->describe());
    } else if (guestShutdown) {
      info.cause = ExitCause::GuestPoweroff;
      info.detail = fmt::format("guest powered off ({})", shutdownReason);
    } else if (hostRequested || shutdownReason == "host-qmp-quit") {
      info.cause = ExitCause::HostRequested;
      info.detail = signalled ? "stopped by corral with a signal" : "stopped by corral";
    } else if (shutdownReason == "host-signal" || (sig != 0 && isHostSignal(sig))) {
      info.cause = ExitCause::HostSignal;
      info.detail = status ? fmt::format("qemu {} on the host", status->describe()) : "qemu killed by a signal";
    } else {
      info.cause = ExitCause::Unknown;
      info.detail = status ? fmt::format("qemu {}", status->describe())
                           : "qemu is gone; its exit status is unknown (not our child)";
    }
    info.abnormal = signalled;
  }
  spdlog::info("vm={} qemu pid {} ended: {} ({})", record.name, pid, toString(info.cause), info.detail);
  if (console) console->close();
  if (qmp) qmp->close();
  // Files first, then the news: whoever wakes up on the exit finds them gone.
  Machine::cleanupRuntimeDir(runtimeDir);
  {
    std::lock_guard lock(mu);
    exit = info;
  }
  cv.notify_all();
  std::lock_guard lock(listenerMu);
  if (listener) listener->onMachineExit(info);
}

void Machine::State::subscribeQmp() {
  std::weak_ptr<State> weak = shared_from_this();
  eventHandlerId = qmp->onEvent([weak](const json& ev) {
    if (auto s = weak.lock()) s->onQmpEvent(ev);
  });
  qmp->onDisconnect([weak](const QmpError&) {
    if (auto s = weak.lock()) asio::post(s->strand, [s] { s->onQmpDisconnect(); });
  });
}

void Machine::State::onQmpEvent(const json& ev) {
  std::string name = ev.value("event", "");
  if (name == "SHUTDOWN") {
    const json& data = ev.contains("data") ? ev.at("data") : json::object();
    std::lock_guard lock(mu);
    guestShutdown = data.value("guest", false);
    shutdownReason = data.value("reason", "");
  }
  std::lock_guard lock(listenerMu);
  if (listener) listener->onMachineEvent(ev);
}

void Machine::State::stopWatchOnIo() {
  boost::system::error_code ec;
  if (pidfdWatch) pidfdWatch->close(ec);
  if (timer) timer->cancel();
}

void Machine::State::signalGuest(int sig) {
  {
    std::lock_guard lock(mu);
    if (exit) return;
  }
  if (pidfd) {
    // A pidfd names this very process: no risk of signalling a successor.
    if (pidfdSendSignal(pidfd.get(), sig) == 0 || errno == ESRCH) return;
  }
  if (util::processAlive(pid, startTime)) ::kill(pid, sig);
}

std::optional<ExitInfo> Machine::State::waitExit(Ms timeout) {
  std::unique_lock lock(mu);
  cv.wait_for(lock, timeout, [&] { return exit.has_value(); });
  return exit;
}

void Machine::State::detach() noexcept {
  {
    std::lock_guard lock(mu);
    detached = true;
  }
  {
    std::lock_guard lock(listenerMu);
    listener = nullptr;
  }
  try {
    if (console) console->close();
    if (qmp) {
      if (eventHandlerId) qmp->removeEventHandler(eventHandlerId);
      qmp->close();
    }
    if (strand.running_in_this_thread()) {
      stopWatchOnIo();
    } else {
      asio::post(strand, [self = shared_from_this()] { self->stopWatchOnIo(); });
    }
  } catch (const std::exception& e) {
    spdlog::warn("vm={} detaching from qemu pid {}: {}", record.name, pid, e.what());
  }
}

// ---------------------------------------------------------------------------

Machine::Machine(std::shared_ptr<State> state) : s_(std::move(state)) {}

Machine::~Machine() {
  if (!s_) return;
  s_->detach();
  if (!s_->running()) {
    // Gone already (maybe unnoticed yet): reap our zombie, drop its sockets.
    reapIfChild(s_->pid);
    cleanupRuntimeDir(s_->runtimeDir);
  }
}

RuntimePaths Machine::runtimePaths(const std::string& runtimeDir) {
  RuntimePaths p;
  p.qmpSocket = runtimeDir + "/" + kQmpSocket;
  p.serialSocket = runtimeDir + "/" + kSerialSocket;
  p.vncSocket = runtimeDir + "/" + kVncSocket;
  p.pidfile = runtimeDir + "/" + kPidfile;
  return p;
}

void Machine::cleanupRuntimeDir(const std::string& dir) noexcept {
  if (dir.empty()) return;
  for (const char* name : {kQmpSocket, kSerialSocket, kVncSocket, kPidfile}) {
    ::unlink((dir + "/" + name).c_str());
  }
  ::unlink((dir + "/" + kPidfile + ".new").c_str());
  ::unlink(RuntimeRecord::pathIn(dir).c_str());
  ::unlink((RuntimeRecord::pathIn(dir) + ".tmp").c_str());
}

namespace {

// Connects QMP to a QEMU that is starting: the socket appears some time after
// the process does. Retries until the deadline, giving up early when QEMU dies.
Result<std::shared_ptr<QmpTransport>> connectQmpWhileStarting(asio::io_context& io, const std::string& path,
                                                              pid_t pid, uint64_t startTime, int pidfd,
                                                              Ms timeout) {
  auto deadline = Clock::now() + timeout;
  std::string lastError = "socket never appeared";
  while (true) {
    if (!util::processAlive(pid, startTime)) {
      return Error::unavailable("qemu exited during startup");
    }
    auto left = std::chrono::duration_cast<Ms>(deadline - Clock::now());
    if (left <= Ms(0)) break;
    struct stat st {};
    if (::stat(path.c_str(), &st) == 0 && S_ISSOCK(st.st_mode)) {
      auto qmp = QmpTransport::create(io);
      auto greeting = qmp->connectSync(path, left);
      if (greeting.ok()) return qmp;
      lastError = greeting.error().describe();
      qmp->close();
      if (greeting.error().kind != QmpError::Kind::Disconnected) break;
    }
    // Sleep on the pidfd: a dying QEMU wakes us at once. The period is short
    // because QEMU creates the socket ~40 ms after exec and every ms of
    // oversleep is start latency; a stat() every 2 ms costs nothing.
    constexpr int kStartPollMs = 2;
    if (pidfd >= 0) {
      struct pollfd pfd {pidfd, POLLIN, 0};
      ::poll(&pfd, 1, kStartPollMs);
    } else {
      std::this_thread::sleep_for(Ms(kStartPollMs));
    }
  }
  return Error::timeout(fmt::format("QMP socket {} not ready within {} ms: {}", path, timeout.count(), lastError));
}

// Kills a QEMU that failed to launch and waits for it to be gone (≤ 10 s).
std::optional<util::ExitStatus> killAndReap(pid_t pid, uint64_t startTime, int pidfd) {
  if (pidfd >= 0) {
    pidfdSendSignal(pidfd, SIGKILL);
  } else if (util::processAlive(pid, startTime)) {
    ::kill(pid, SIGKILL);
  }
  auto deadline = Clock::now() + std::chrono::seconds(10);
  while (Clock::now() < deadline) {
    int st = 0;
    pid_t w = ::waitpid(pid, &st, WNOHANG);
    if (w == pid) return util::ExitStatus::fromWaitStatus(st);
    // Our child shows 'Z' before it is reapable (its other threads are still
    // exiting): keep waiting for waitpid. Someone else's: /proc is all we have.
    if (w < 0 && errno == ECHILD && !util::processAlive(pid, startTime)) return std::nullopt;
    std::this_thread::sleep_for(Ms(5));
  }
  return std::nullopt;
}

// After an early exit: the status when it is our child (waits briefly for the
// zombie to be reapable).
std::optional<util::ExitStatus> reapAfterExit(pid_t pid) {
  auto deadline = Clock::now() + std::chrono::seconds(2);
  while (Clock::now() < deadline) {
    int st = 0;
    pid_t w = ::waitpid(pid, &st, WNOHANG);
    if (w == pid) return util::ExitStatus::fromWaitStatus(st);
    if (w < 0 && errno == ECHILD) return std::nullopt;  // not ours: init reaps it
    std::this_thread::sleep_for(Ms(5));
  }
  return std::nullopt;
}

}  // namespace

Result<std::unique_ptr<Machine>> Machine::launch(asio::io_context& io, LaunchConfig cfg,
                                                 MachineListener* listener) {
  namespace fs = std::filesystem;
  const std::string& dir = cfg.runtimeDir;
  std::error_code fsErr;
  if (dir.empty() || !fs::is_directory(dir, fsErr)) {
    return Error::invalidInput("runtimeDir", dir, "is not a directory");
  }
  if (auto old = RuntimeRecord::read(dir); old.ok() && util::processAlive(old->pid, old->startTime)) {
    return Error::failedPrecondition(
        fmt::format("vm={}: a qemu (pid {}) still runs from {}", cfg.spec.name, old->pid, dir));
  }
  cleanupRuntimeDir(dir);  // sockets of a guest that died with the daemon

  RuntimePaths paths = runtimePaths(dir);
  RuntimePaths argvPaths = paths;
  argvPaths.pidfile.clear();  // util::Command writes the pidfile; two writers would race
  LaunchOptions opts;
  opts.binary = cfg.qemuBinary;
  opts.startPaused = true;
  std::vector<std::string> argv = buildCommandLine(cfg.spec, argvPaths, opts);
  argv.insert(argv.end(), cfg.extraArgs.begin(), cfg.extraArgs.end());
  const std::string qemuLog = dir + "/" + kQemuLog;
  const std::string consoleLogPath = dir + "/" + kConsoleLog;

  util::Rollback rb;
  rb.add([dir] { cleanupRuntimeDir(dir); });

  // Every failure says what failed, how QEMU ended, its argv and its last words.
  auto fail = [&](std::string_view what, std::optional<util::ExitStatus> st,
                  ErrorCode code = ErrorCode::Unavailable, bool started = true) {
    std::string statusText = !started ? "qemu never started" : st ? "qemu " + st->describe() : "qemu exit status unknown";
    std::string tail = util::RotatingLog::readTail(qemuLog, kLogTailBytes);
    return Error{code,
                 fmt::format("vm={}: launch failed: {} ({})\nargv: {}\nqemu.log tail:\n{}", cfg.spec.name, what,
                             statusText, joinArgv(argv), tail.empty() ? "(empty)" : tail),
                 {},
                 {}};
  };

  util::Command cmd(cfg.qemuBinary);
  cmd.args(std::vector<std::string>(argv.begin() + 1, argv.end()));
  cmd.umask(0077);  // sockets and files QEMU makes are the guest's alone
  cmd.maxCore(0);   // a QEMU core dump would hold the guest's memory
  cmd.stdoutToFile(qemuLog);
  cmd.stderrToStdout();
  cmd.daemonize(paths.pidfile);
  if (cfg.gid) cmd.gid(*cfg.gid);
  for (const Nic& nic : cfg.spec.nics) {
    if (nic.tapFd >= 0) cmd.passFd(nic.tapFd);
    if (nic.vhostFd >= 0) cmd.passFd(nic.vhostFd);
  }
  spdlog::info("vm={} launching: {}", cfg.spec.name, cmd.toString());
  auto ran = cmd.run();
  if (!ran.ok()) return fail(ran.error().message, std::nullopt, ran.error().code, /*started=*/false);
  const pid_t pid = ran->daemonPid;

  util::UniqueFd pidfd(openPidfd(pid));
  auto startTime = util::processStartTime(pid);
  if (!startTime.ok()) return fail("qemu exited at once", reapAfterExit(pid));
  uint64_t start = *startTime;
  // No pidfd here: the undo may outlive the descriptor; pid + start time identify it.
  rb.add([pid, start] { killAndReap(pid, start, -1); });

  auto qmp = connectQmpWhileStarting(io, paths.qmpSocket, pid, start, pidfd.get(), cfg.qmpTimeout);
  if (!qmp.ok()) {
    if (!util::processAlive(pid, start)) return fail(qmp.error().message, reapAfterExit(pid));
    return fail(qmp.error().describe(), killAndReap(pid, start, pidfd.get()));
  }

  auto state = std::make_shared<State>(io);
  state->runtimeDir = dir;
  state->pid = pid;
  state->startTime = start;
  state->qmpTimeout = cfg.qmpTimeout;
  state->qmp = std::move(qmp).take();
  state->monitor = std::make_unique<Monitor>(state->qmp, cfg.qmpTimeout);
  state->pidfd = std::move(pidfd);
  state->listener = listener;
  rb.add([state] { state->detach(); });
  state->subscribeQmp();

  // The serial chardev exists before QMP answers (chardevs come first), and the
  // vCPUs are stopped (-S): no console byte is lost.
  auto log = util::RotatingLog::open(consoleLogPath, cfg.consoleLogMaxBytes);
  if (!log.ok()) return fail(log.error().describe(), killAndReap(pid, start, state->pidfd.get()));
  state->consoleLog = std::shared_ptr<util::RotatingLog>(std::move(log).take());
  auto console = ConsoleDrain::start(io, paths.serialSocket, state->consoleLog);
  if (!console.ok()) return fail(console.error().describe(), killAndReap(pid, start, state->pidfd.get()));
  state->console = std::move(console).take();

  // Recorded before configure and `cont`: a daemon that dies from here on can
  // still find (and reattach to, or clean up) this QEMU.
  RuntimeRecord& rec = state->record;
  rec.argv = argv;
  rec.pid = pid;
  rec.startTime = start;
  rec.paths = paths;
  rec.consoleLog = consoleLogPath;
  rec.consoleLogMaxBytes = cfg.consoleLogMaxBytes;
  rec.qemuLog = qemuLog;
  rec.summarize(cfg.spec);
  rec.launchTimeUnix = static_cast<int64_t>(std::time(nullptr));
  if (auto w = rec.write(dir); !w.ok()) {
    return fail(w.error().describe(), killAndReap(pid, start, state->pidfd.get()));
  }

  if (cfg.configure) {
    auto configured = cfg.configure(*state->monitor);
    if (!configured.ok()) {
      return fail("configure: " + configured.error().describe(), killAndReap(pid, start, state->pidfd.get()));
    }
  }
  if (!cfg.startPaused) {
    auto cont = state->monitor->cont();
    if (!cont.ok()) return fail("cont: " + cont.error().describe(), killAndReap(pid, start, state->pidfd.get()));
  }

  asio::post(state->strand, [state] { state->startWatch(); });
  rb.commit();
  spdlog::info("vm={} qemu pid {} running", rec.name, pid);
  return std::unique_ptr<Machine>(new Machine(std::move(state)));
}

Result<std::unique_ptr<Machine>> Machine::reattach(asio::io_context& io, const std::string& runtimeDir,
                                                   MachineListener* listener) {
  RuntimeRecord rec = CORRAL_TRY(RuntimeRecord::read(runtimeDir));
  // The pidfd first, the identity check second: if the pid is reused in between,
  // the start time tells.
  util::UniqueFd pidfd(openPidfd(rec.pid));
  if (!util::processAlive(rec.pid, rec.startTime)) {
    // Our own zombie (same daemon process, after a Machine was dropped): reap it.
    if (auto st = util::readProcStat(rec.pid);
        st.ok() && st->finished() && st->ppid == ::getpid() && st->startTime == rec.startTime) {
      reapIfChild(rec.pid);
    }
    return Error::unavailable(fmt::format("vm={}: qemu pid {} (started at tick {}) is no longer running", rec.name,
                                          rec.pid, rec.startTime));
  }

  auto state = std::make_shared<State>(io);
  state->runtimeDir = runtimeDir;
  state->pid = rec.pid;
  state->startTime = rec.startTime;
  state->pidfd = std::move(pidfd);
  state->record = rec;

  auto qmp = QmpTransport::create(io);
  auto greeting = qmp->connectSync(rec.paths.qmpSocket, state->qmpTimeout);
  if (!greeting.ok()) {
    qmp->close();
    return Error::unavailable(
        fmt::format("vm={}: cannot reattach to qemu pid {}: {}", rec.name, rec.pid, greeting.error().describe()));
  }
  state->qmp = qmp;
  state->monitor = std::make_unique<Monitor>(state->qmp, state->qmpTimeout);
  state->listener = listener;
  util::Rollback rb;
  rb.add([state] { state->detach(); });
  state->subscribeQmp();

  // A missing console is not worth refusing a running guest over.
  if (!rec.consoleLog.empty()) {
    auto log = util::RotatingLog::open(rec.consoleLog, rec.consoleLogMaxBytes ? rec.consoleLogMaxBytes : 1 << 20);
    if (log.ok()) {
      state->consoleLog = std::shared_ptr<util::RotatingLog>(std::move(log).take());
      auto console = ConsoleDrain::start(io, rec.paths.serialSocket, state->consoleLog);
      if (console.ok()) {
        state->console = std::move(console).take();
      } else {
        spdlog::warn("vm={} reattach: console: {}", rec.name, console.error().describe());
      }
    } else {
      spdlog::warn("vm={} reattach: console log: {}", rec.name, log.error().describe());
    }
  }

  asio::post(state->strand, [state] { state->startWatch(); });
  rb.commit();
  spdlog::info("vm={} reattached to qemu pid {}", rec.name, rec.pid);
  return std::unique_ptr<Machine>(new Machine(std::move(state)));
}

Result<ExitInfo> Machine::shutdown(ShutdownOptions opts) {
  State& s = *s_;
  if (auto done = s.waitExit(Ms(0))) return *done;
  {
    std::lock_guard lock(s.mu);
    s.hostRequested = true;
  }
  // Close the console first: QEMU must never block its exit on a console write.
  if (s.console) s.console->close();

  if (!opts.force) {
    auto asked = s.monitor->systemPowerdown();
    if (!asked.ok()) {
      spdlog::warn("vm={} system_powerdown: {}", s.record.name, asked.error().describe());
    }
    if (auto done = s.waitExit(asked.ok() ? opts.timeout : Ms(1000))) return *done;
    spdlog::warn("vm={} guest did not power off within {} ms; sending SIGTERM", s.record.name,
                 opts.timeout.count());
  }
  {
    std::lock_guard lock(s.mu);
    s.signalled = true;
  }
  s.signalGuest(SIGTERM);
  if (auto done = s.waitExit(opts.killGrace)) return *done;
  spdlog::warn("vm={} qemu pid {} ignored SIGTERM for {} ms; sending SIGKILL", s.record.name, s.pid,
               opts.killGrace.count());
  s.signalGuest(SIGKILL);
  if (auto done = s.waitExit(std::chrono::seconds(30))) return *done;
  return Error::internal(fmt::format("vm={}: qemu pid {} still there 30 s after SIGKILL (is the io thread running?)",
                                     s.record.name, s.pid));
}

std::function<void()> Machine::killer() const {
  return [s = s_] {
    {
      std::lock_guard lock(s->mu);
      if (s->exit) return;
      s->hostRequested = true;
      s->signalled = true;
    }
    spdlog::warn("vm={} qemu pid {}: forced off (SIGKILL)", s->record.name, s->pid);
    s->signalGuest(SIGKILL);
  };
}

Monitor& Machine::monitor() { return *s_->monitor; }
pid_t Machine::pid() const { return s_->pid; }
uint64_t Machine::startTime() const { return s_->startTime; }
const std::string& Machine::runtimeDir() const { return s_->runtimeDir; }
const RuntimeRecord& Machine::record() const { return s_->record; }

std::string Machine::consoleLogTail(size_t maxBytes) const {
  if (s_->consoleLog) return s_->consoleLog->readTail(maxBytes);
  return util::RotatingLog::readTail(s_->runtimeDir + "/" + kConsoleLog, maxBytes);
}

void Machine::setConsoleTap(std::function<void(std::string_view)> tap) {
  if (s_->console) s_->console->setTap(std::move(tap));
}

// State::console is set before the Machine exists and never replaced, so these
// read it without a lock, like setConsoleTap.
bool Machine::consoleWrite(std::string bytes) {
  return s_->console && s_->console->write(std::move(bytes));
}

void Machine::withConsoleQuiet(const std::function<void()>& fn) {
  if (s_->console) {
    s_->console->quiet(fn);
  } else {
    fn();
  }
}

uint64_t Machine::consoleBytesDrained() const { return s_->console ? s_->console->bytesDrained() : 0; }

bool Machine::alive() const { return s_->running(); }

std::optional<ExitInfo> Machine::exitInfo() const {
  std::lock_guard lock(s_->mu);
  return s_->exit;
}

std::optional<ExitInfo> Machine::waitForExit(Ms timeout) { return s_->waitExit(timeout); }

}  // namespace corral::qemu
