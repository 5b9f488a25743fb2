// The node engine end to end: corrald's API against bare QEMU, in the same run.
//
// Three figures, each against a reference measured by this same process:
//   1. start latency: the median of N (20) `POST /api/v1/vms/v0/actions/start`
//      calls, from the request to the 200 answer (QEMU has run `cont`), against
//      the bare-QEMU floor: the very argv corrald used (read from the guest's
//      machine.json, already with -S; socket paths moved to this benchmark's temp
//      dir) started here with posix_spawn, then the QMP greeting,
//      qmp_capabilities, `cont` and its reply. Bare and API runs alternate, so
//      that a noisy neighbour weighs on both. Target: ratio <= 1.10.
//   2. a fleet of N guests started at once: N concurrent API start calls, wall
//      time until all are answered, against N bare QEMUs launched at once, each
//      with its handshake and `cont`. Median of R rounds. Target: ratio <= 1.2.
//   3. corrald's VmRSS with the fleet running (right after the last start was
//      answered, and the highest sample over the next seconds while the guests
//      boot and write to their consoles). Target: <= 30 MiB.
//
// How to read it: a ratio compares the two sides of one run; compare ratios
// between machines, never absolute times. Under TCG on few cores the guests
// booting after `cont` eat the CPU, so the fleet figures are mostly QEMU's own
// start-up cost competing for cores.
//
// What it leaves to others: building corrald/corral and the test guest
// (`make bench` does both). It starts its own corrald (--accel tcg) on a temp
// state dir and kills (SIGKILL) and reaps every process it made, and removes the
// temp dir, on every exit path: normal end, error, SIGINT/SIGTERM/SIGHUP.
// Paths: --bin DIR (corrald, corral; default $CORRAL_BINARY_DIR/bin or the build
// dir this was compiled in), --guest DIR (vmlinuz, initramfs.cpio.gz, cmdline;
// default <build>/guest).
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdlib.h>
#include <sys/inotify.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <latch>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "util/command.h"
#include "util/result.h"
#include "util/unique_fd.h"

extern char** environ;

namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using corral::Error;
using corral::ErrorCode;
using corral::Result;
using corral::util::UniqueFd;
using Clock = std::chrono::steady_clock;
using json = nlohmann::json;

double msSince(Clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
}

int msLeft(Clock::time_point deadline) {
  auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
  return left < 0 ? 0 : static_cast<int>(left);
}

std::string readFile(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), {}};
}

std::string tail(const std::string& s, size_t n) { return s.size() <= n ? s : s.substr(s.size() - n); }

// ---------------------------------------------------------------------------
// Every process this benchmark made dies with it. The daemon is killed first, so
// that it cannot restart a guest (on_crash) meanwhile; its QEMUs are then our
// orphans (we are a child subreaper), found by the temp dir in their command
// line, killed and reaped.

class Janitor {
 public:
  static Janitor& get() {
    static Janitor j;
    return j;
  }

  void setRoot(fs::path root) {
    std::lock_guard lock(mu_);
    root_ = std::move(root);
  }
  void setDaemon(corral::util::Command* daemon) {
    std::lock_guard lock(mu_);
    daemon_ = daemon;
  }

  // Idempotent; safe from the signal thread while the main thread works.
  void cleanup() noexcept {
    std::lock_guard lock(mu_);
    if (done_) return;
    done_ = true;
    if (daemon_ != nullptr && daemon_->pid() > 0) {
      ::kill(daemon_->pid(), SIGKILL);
      (void)daemon_->wait(5000ms);
    }
    if (root_.empty()) return;
    killAllUnder(root_.string());
    std::error_code ec;
    fs::remove_all(root_, ec);
  }

  // SIGKILLs and reaps every process whose command line mentions `needle`.
  static void killAllUnder(const std::string& needle) {
    std::vector<pid_t> pids;
    std::error_code ec;
    for (const auto& e : fs::directory_iterator("/proc", ec)) {
      const std::string name = e.path().filename().string();
      if (name.empty() || !std::all_of(name.begin(), name.end(), ::isdigit)) continue;
      const pid_t pid = std::stoi(name);
      if (pid == ::getpid()) continue;
      if (readFile(e.path() / "cmdline").find(needle) != std::string::npos) pids.push_back(pid);
    }
    for (pid_t p : pids) ::kill(p, SIGKILL);
    auto deadline = Clock::now() + 10s;
    for (pid_t p : pids) {
      while (Clock::now() < deadline) {
        pid_t r = ::waitpid(p, nullptr, WNOHANG);
        if (r == p) break;
        // Not our child: someone else reaps it; wait until it is gone.
        if (r < 0 && !fs::exists("/proc/" + std::to_string(p) + "/cmdline")) break;
        if (r < 0 && readFile("/proc/" + std::to_string(p) + "/cmdline").empty()) break;  // a zombie
        std::this_thread::sleep_for(5ms);
      }
    }
  }

 private:
  std::mutex mu_;
  fs::path root_;
  corral::util::Command* daemon_ = nullptr;
  bool done_ = false;
};

// Signals are blocked in every thread and taken here, so that cleanup runs in an
// ordinary thread (it allocates and walks /proc: nothing for a signal handler).
void startSignalThread() {
  // A shell starts background jobs with SIGINT ignored; an ignored signal is
  // never pending, so sigwait would not see it. SIGHUP stays as given (nohup).
  ::signal(SIGINT, SIG_DFL);
  ::signal(SIGTERM, SIG_DFL);
  sigset_t set;
  sigemptyset(&set);
  for (int s : {SIGINT, SIGTERM, SIGHUP}) sigaddset(&set, s);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  std::thread([set] {
    int sig = 0;
    if (sigwait(&set, &sig) != 0) return;
    std::fprintf(stderr, "daemon_bench: signal %d, cleaning up\n", sig);
    Janitor::get().cleanup();
    ::_exit(128 + sig);
  }).detach();
}

// ---------------------------------------------------------------------------
// Unix sockets, HTTP/1.1 and QMP: just enough, blocking, with deadlines.

Result<UniqueFd> connectUnix(const std::string& path) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path.size() >= sizeof(addr.sun_path)) return Error::invalidInput("socket", path, "path too long");
  std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd) return corral::errorf(ErrorCode::Internal, "socket: {}", strerror(errno));
  if (::connect(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    return corral::errorf(ErrorCode::Unavailable, "connect {}: {}", path, strerror(errno));
  }
  return fd;
}

Result<void> writeAll(int fd, std::string_view data) {
  while (!data.empty()) {
    ssize_t n = ::send(fd, data.data(), data.size(), MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return corral::errorf(ErrorCode::Unavailable, "send: {}", strerror(errno));
    data.remove_prefix(static_cast<size_t>(n));
  }
  return corral::ok();
}

// Appends what is readable to buf; false at EOF.
Result<bool> readSome(int fd, std::string& buf, Clock::time_point deadline) {
  pollfd p{fd, POLLIN, 0};
  int r = ::poll(&p, 1, msLeft(deadline));
  if (r == 0) return Error::timeout("no reply in time");
  if (r < 0 && errno != EINTR) return corral::errorf(ErrorCode::Internal, "poll: {}", strerror(errno));
  char chunk[8192];
  ssize_t n = ::recv(fd, chunk, sizeof(chunk), 0);
  if (n < 0 && errno == EINTR) return true;
  if (n < 0) return corral::errorf(ErrorCode::Unavailable, "recv: {}", strerror(errno));
  buf.append(chunk, static_cast<size_t>(n));
  return n > 0;
}

struct HttpReply {
  int status = 0;
  std::string body;
};

// One request on a fresh connection (the connect is part of what a client pays).
Result<HttpReply> http(const std::string& sock, std::string_view method, std::string_view target,
                       std::string_view body = {}, std::chrono::milliseconds timeout = 120s) {
  const auto deadline = Clock::now() + timeout;
  UniqueFd fd = CORRAL_TRY(connectUnix(sock));
  std::string req = fmt::format(
      "{} {} HTTP/1.1\r\nHost: corrald\r\nContent-Type: application/json\r\nContent-Length: {}\r\n"
      "Connection: close\r\n\r\n{}",
      method, target, body.size(), body);
  CORRAL_TRY(writeAll(fd.get(), req));
  std::string buf;
  size_t headerEnd = std::string::npos;
  std::optional<size_t> length;
  while (true) {
    if (headerEnd == std::string::npos && (headerEnd = buf.find("\r\n\r\n")) != std::string::npos) {
      std::string head = buf.substr(0, headerEnd);
      std::transform(head.begin(), head.end(), head.begin(), ::tolower);
      if (auto p = head.find("\r\ncontent-length:"); p != std::string::npos) {
        length = std::strtoul(head.c_str() + p + 17, nullptr, 10);
      }
    }
    if (headerEnd != std::string::npos && length && buf.size() >= headerEnd + 4 + *length) break;
    bool more = CORRAL_TRY(readSome(fd.get(), buf, deadline));
    if (!more) break;
  }
  if (headerEnd == std::string::npos || buf.compare(0, 9, "HTTP/1.1 ") != 0) {
    return Error::unavailable(fmt::format("{} {}: not an HTTP reply: {:?}", method, target, tail(buf, 200)));
  }
  HttpReply reply;
  reply.status = std::atoi(buf.c_str() + 9);
  reply.body = buf.substr(headerEnd + 4);
  return reply;
}

// http() that wants a 2xx.
// One API call that must succeed; a 202 (an operation) is waited for, and its
// failure is the call's.
Result<HttpReply> call(const std::string& sock, std::string_view method, std::string_view target,
                       std::string_view body = {}) {
  HttpReply r = CORRAL_TRY(http(sock, method, target, body));
  if (r.status == 202) {
    auto op = json::parse(r.body, nullptr, false);
    if (!op.is_object() || !op.contains("id")) return Error::unavailable(fmt::format("{} {}: 202 without an operation", method, target));
    r = CORRAL_TRY(http(sock, "GET", fmt::format("/api/v1/operations/{}/wait?timeout=120", op["id"].get<std::string>())));
    op = json::parse(r.body, nullptr, false);
    if (r.status == 200 && op.value("state", "") != "succeeded") r.status = 500;
  }
  if (r.status / 100 != 2) {
    return Error::unavailable(fmt::format("{} {}: HTTP {}: {}", method, target, r.status, r.body));
  }
  return r;
}

// A QMP line (JSON object) reader over a blocking socket.
class QmpLines {
 public:
  explicit QmpLines(int fd) : fd_(fd) {}

  Result<json> next(Clock::time_point deadline) {
    while (true) {
      if (auto nl = buf_.find('\n'); nl != std::string::npos) {
        std::string line = buf_.substr(0, nl);
        buf_.erase(0, nl + 1);
        auto j = json::parse(line, nullptr, false);
        if (j.is_discarded()) return Error::unavailable("QMP: not JSON: " + line);
        return j;
      }
      bool more = CORRAL_TRY(readSome(fd_, buf_, deadline));
      if (!more) return Error::unavailable("QMP: QEMU closed the monitor");
    }
  }

  // Sends a command and returns once its reply (not an event) came.
  Result<void> execute(std::string_view command, Clock::time_point deadline) {
    CORRAL_TRY(writeAll(fd_, fmt::format("{{\"execute\":\"{}\"}}\n", command)));
    while (true) {
      json j = CORRAL_TRY(next(deadline));
      if (j.contains("return")) return corral::ok();
      if (j.contains("error")) return Error::unavailable(fmt::format("QMP {}: {}", command, j.dump()));
    }
  }

 private:
  int fd_;
  std::string buf_;
};

// ---------------------------------------------------------------------------
// The bare-QEMU floor.

// The argv corrald used, with its runtime dir moved to `dir`.
std::vector<std::string> relocate(const std::vector<std::string>& argv, const std::string& from,
                                  const std::string& to) {
  std::vector<std::string> out;
  for (std::string a : argv) {
    for (size_t p = a.find(from); p != std::string::npos; p = a.find(from, p + to.size())) {
      a.replace(p, from.size(), to);
    }
    out.push_back(std::move(a));
  }
  return out;
}

struct BareQemu {
  pid_t pid = -1;
  double startMs = 0;  // posix_spawn to the reply of `cont`

  BareQemu() = default;
  BareQemu(BareQemu&& o) noexcept : pid(std::exchange(o.pid, -1)), startMs(o.startMs) {}
  BareQemu& operator=(BareQemu&&) = delete;
  ~BareQemu() {
    if (pid > 0) {
      ::kill(pid, SIGKILL);
      ::waitpid(pid, nullptr, 0);
    }
  }
};

// posix_spawn (vfork-style, an empty environment, stdio to a log file, default
// signal mask, a new session), then the QMP socket, greeting, qmp_capabilities, cont.
Result<BareQemu> startBare(const std::vector<std::string>& argvTemplate, const std::string& templateDir,
                           const std::string& dir) {
  fs::create_directories(dir);
  std::vector<std::string> argv = relocate(argvTemplate, templateDir, dir);
  const std::string qmpPath = dir + "/qmp.sock";
  UniqueFd watch(::inotify_init1(IN_CLOEXEC | IN_NONBLOCK));
  if (!watch || ::inotify_add_watch(watch.get(), dir.c_str(), IN_CREATE) < 0) {
    return corral::errorf(ErrorCode::Internal, "inotify on {}: {}", dir, strerror(errno));
  }
  std::vector<char*> cargv;
  for (auto& a : argv) cargv.push_back(a.data());
  cargv.push_back(nullptr);
  char* envp[] = {nullptr};

  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  const std::string log = dir + "/qemu.log";
  posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_addopen(&fa, 1, log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0600);
  posix_spawn_file_actions_adddup2(&fa, 1, 2);
  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  sigset_t none, defaults;
  sigemptyset(&none);
  sigemptyset(&defaults);
  for (int s : {SIGINT, SIGTERM, SIGHUP, SIGPIPE}) sigaddset(&defaults, s);
  posix_spawnattr_setsigmask(&attr, &none);
  posix_spawnattr_setsigdefault(&attr, &defaults);
  // Its own session, as corrald's daemonized QEMUs have: with the scheduler's
  // autogroups (sched_autogroup_enabled), a session is what CPU time is shared
  // between, so N bare QEMUs in our session would get one share where corrald's
  // N get N.
  posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSID);

  BareQemu q;
  const auto t0 = Clock::now();
  const auto deadline = t0 + 60s;
  int rc = ::posix_spawn(&q.pid, argv[0].c_str(), &fa, &attr, cargv.data(), envp);
  posix_spawn_file_actions_destroy(&fa);
  posix_spawnattr_destroy(&attr);
  if (rc != 0) {
    q.pid = -1;
    return corral::errorf(ErrorCode::Internal, "posix_spawn {}: {}", argv[0], strerror(rc));
  }
  // The socket appears a little after the process. Wait for it on inotify
  // rather than on a timer, so that neither a retry interval nor N threads busy
  // polling raise the floor.
  UniqueFd fd;
  while (true) {
    auto c = connectUnix(qmpPath);
    if (c.ok()) {
      fd = std::move(c).take();
      break;
    }
    if (::waitpid(q.pid, nullptr, WNOHANG) == q.pid) {
      q.pid = -1;
      return Error::unavailable("bare qemu exited during startup: " + tail(readFile(log), 800));
    }
    if (Clock::now() > deadline) return Error::timeout("bare qemu: no QMP socket in 60 s");
    if (fs::exists(qmpPath)) {
      std::this_thread::sleep_for(100us);  // bound, not yet listening
      continue;
    }
    pollfd p{watch.get(), POLLIN, 0};
    if (::poll(&p, 1, 10) > 0) {
      char events[4096];
      (void)!::read(watch.get(), events, sizeof(events));
    }
  }
  QmpLines qmp(fd.get());
  json greeting = CORRAL_TRY(qmp.next(deadline));
  if (!greeting.contains("QMP")) return Error::unavailable("bare qemu: no QMP greeting: " + greeting.dump());
  CORRAL_TRY(qmp.execute("qmp_capabilities", deadline));
  CORRAL_TRY(qmp.execute("cont", deadline));
  q.startMs = msSince(t0);
  return q;
}

// ---------------------------------------------------------------------------
// The daemon side.

struct Paths {
  fs::path bin;    // corrald, corral
  fs::path guest;  // vmlinuz, initramfs.cpio.gz, cmdline
};

class Rig {
 public:
  explicit Rig(Paths paths) : paths_(std::move(paths)) {}
  ~Rig() { Janitor::get().cleanup(); }

  Result<void> setUp() {
    char tmpl[] = "/tmp/crdb.XXXXXX";
    if (::mkdtemp(tmpl) == nullptr) return corral::errorf(ErrorCode::Internal, "mkdtemp: {}", strerror(errno));
    root_ = tmpl;
    Janitor::get().setRoot(root_);
    state_ = root_ / "s";
    fs::create_directories(state_);
    for (const char* f : {"vmlinuz", "initramfs.cpio.gz", "cmdline"}) {
      if (!fs::exists(paths_.guest / f)) {
        return Error::notFound(fmt::format("test guest: no {} (run scripts/build-test-guest {})",
                                           (paths_.guest / f).string(), paths_.guest.string()));
      }
    }
    // corrald's start-up probe of QEMU can lose a race with QEMU's listen()
    // ("Connection refused"): that is corrald's bug to fix, not a reason to
    // measure nothing. Retry, and say so.
    for (int attempt = 1;; ++attempt) {
      auto up = startDaemon();
      if (up.ok()) break;
      if (attempt == 3) return up;
      std::fprintf(stderr, "daemon_bench: corrald start-up failed (attempt %d), retrying: %s\n", attempt,
                   up.error().message.c_str());
    }
    std::string cmdline = readFile(paths_.guest / "cmdline");
    while (!cmdline.empty() && (cmdline.back() == '\n' || cmdline.back() == '\r')) cmdline.pop_back();
    corral::util::Command imp((paths_.bin / "corral").string());
    imp.args({"--socket", socket(), "image", "import", "guest", "--kernel", (paths_.guest / "vmlinuz").string(),
              "--initrd", (paths_.guest / "initramfs.cpio.gz").string(), "--append", cmdline})
        .stdoutToBuffer()
        .stderrToBuffer()
        .timeout(120000ms);
    if (auto r = imp.run(); !r.ok()) return r.error().context("corral image import");
    return corral::ok();
  }

  Result<void> startDaemon() {
    Janitor::get().setDaemon(nullptr);
    if (daemon_ && daemon_->pid() > 0) {
      ::kill(daemon_->pid(), SIGKILL);
      (void)daemon_->wait(5000ms);
    }
    daemon_ = std::make_unique<corral::util::Command>((paths_.bin / "corrald").string());
    daemon_->args({"--state-dir", state_.string(), "--accel", "tcg", "--log-level", "info"})
        .keepEnv({"PATH"})
        .stdoutToFile(daemonLog(), true)  // spdlog writes to stdout
        .stderrToStdout()
        // Dies with us even when we are SIGKILLed (its guests then stay behind
        // as orphans of init; the next run's temp dir is a different one).
        .preExec([]() -> Result<void> {
          ::prctl(PR_SET_PDEATHSIG, SIGKILL);
          return corral::ok();
        });
    Janitor::get().setDaemon(daemon_.get());
    if (auto r = daemon_->start(); !r.ok()) return r.error().context("start corrald");
    const auto deadline = Clock::now() + 60s;
    while (true) {
      auto node = http(socket(), "GET", "/api/v1/node", {}, 5s);
      if (node.ok() && node->status == 200) {
        node_ = json::parse(node->body, nullptr, false);
        return corral::ok();
      }
      auto st = daemon_->wait(0ms);
      const bool exited = st.ok() || st.error().code != ErrorCode::Timeout;
      if (exited || Clock::now() > deadline) {
        return Error::unavailable("corrald did not answer; its log:\n" + daemonLogTail());
      }
      std::this_thread::sleep_for(20ms);
    }
  }

  Result<void> createVms(int n) {
    for (int i = static_cast<int>(created_); i < n; ++i) {
      json body{{"name", vmName(i)}, {"image", "guest"}, {"memory", 128}};
      CORRAL_TRY(call(socket(), "POST", "/api/v1/vms", body.dump()));
      ++created_;
    }
    return corral::ok();
  }

  // The API start call, timed from the connect to the complete answer.
  Result<double> start(int i) {
    const auto t0 = Clock::now();
    HttpReply r = CORRAL_TRY(http(socket(), "POST", fmt::format("/api/v1/vms/{}/actions/start", vmName(i))));
    // 202 with an operation: the start is done when the operation is.
    auto op = json::parse(r.body, nullptr, false);
    if (r.status == 202 && op.is_object() && op.contains("id")) {
      r = CORRAL_TRY(http(socket(), "GET", fmt::format("/api/v1/operations/{}/wait?timeout=120", op["id"].get<std::string>())));
      op = json::parse(r.body, nullptr, false);
    }
    const double ms = msSince(t0);
    if (r.status != 200 || !op.is_object() || op.value("state", "") != "succeeded") {
      return Error::unavailable(fmt::format("start {}: HTTP {}: {}\ncorrald log:\n{}", vmName(i), r.status, r.body,
                                            daemonLogTail()));
    }
    return ms;
  }

  Result<void> stop(int i) {
    CORRAL_TRY(call(socket(), "POST", fmt::format("/api/v1/vms/{}/actions/stop", vmName(i)), R"({"force":true})"));
    return corral::ok();
  }

  // The argv of a running guest, and the runtime dir its paths live in.
  Result<std::vector<std::string>> argvOf(int i) const {
    auto j = json::parse(readFile(runtimeDir(i) + "/machine.json"), nullptr, false);
    if (j.is_discarded() || !j.contains("argv")) return Error::notFound("no machine.json argv for " + vmName(i));
    return j["argv"].get<std::vector<std::string>>();
  }

  long rssKib(const char* key = "VmRSS:") const {
    std::ifstream st("/proc/" + std::to_string(daemon_->pid()) + "/status");
    std::string k;
    long v = 0;
    while (st >> k) {
      if (k == key) {
        st >> v;
        return v;
      }
      st.ignore(4096, '\n');
    }
    return 0;
  }

  static std::string vmName(int i) { return fmt::format("v{}", i); }
  std::string runtimeDir(int i) const { return (state_ / "run" / vmName(i)).string(); }
  std::string socket() const { return (state_ / "corral.sock").string(); }
  const fs::path& root() const { return root_; }
  const json& node() const { return node_; }
  std::string daemonLog() const { return (root_ / "corrald.log").string(); }
  std::string daemonLogTail() const { return tail(readFile(daemonLog()), 3000); }

 private:
  Paths paths_;
  fs::path root_, state_;
  std::unique_ptr<corral::util::Command> daemon_;
  json node_;
  size_t created_ = 0;
};

// ---------------------------------------------------------------------------
// Statistics and the table.

struct Stats {
  double min = 0, median = 0, p90 = 0, max = 0;
};

Stats stats(std::vector<double> v) {
  Stats s;
  if (v.empty()) return s;
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  s.min = v.front();
  s.max = v.back();
  s.median = n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
  s.p90 = v[std::min(n - 1, static_cast<size_t>(0.9 * static_cast<double>(n)))];
  return s;
}

std::string describe(const Stats& s) {
  return fmt::format("min {:.1f}  median {:.1f}  p90 {:.1f}  max {:.1f} ms", s.min, s.median, s.p90, s.max);
}

struct Row {
  std::string what;
  std::string reference;
  std::string measured;
  std::string ratio;
  std::string target;
  bool met = false;
};

// ---------------------------------------------------------------------------
// The benchmarks.

struct Options {
  int iterations = 20;  // start latency samples per side
  int fleet = 20;       // guests started at once
  int rounds = 3;       // fleet rounds per side
  double rssWindowS = 3;
  bool strict = false;  // exit 1 when a target is missed
  std::string keepLog;  // copy corrald's log here before cleanup
};

// 1. One guest: API start vs the bare floor, alternating.
Result<Row> benchStartLatency(Rig& rig, const Options& o) {
  CORRAL_TRY(rig.createVms(1));
  // Warm-up (page cache for QEMU, kernel and initrd; the daemon's first start),
  // and the argv the floor will use.
  CORRAL_TRY(rig.start(0));
  const std::vector<std::string> argv = CORRAL_TRY(rig.argvOf(0));
  CORRAL_TRY(rig.stop(0));
  const std::string from = rig.runtimeDir(0);
  const std::string bareRoot = (rig.root() / "b").string();
  { BareQemu warm = CORRAL_TRY(startBare(argv, from, bareRoot + "/w")); }

  std::vector<double> api, bare;
  for (int i = 0; i < o.iterations; ++i) {
    auto runBare = [&]() -> Result<void> {
      BareQemu q = CORRAL_TRY(startBare(argv, from, fmt::format("{}/{}", bareRoot, i)));
      bare.push_back(q.startMs);
      return corral::ok();
    };
    auto runApi = [&]() -> Result<void> {
      api.push_back(CORRAL_TRY(rig.start(0)));
      return rig.stop(0);
    };
    if (i % 2 == 0) {
      CORRAL_TRY(runBare());
      CORRAL_TRY(runApi());
    } else {
      CORRAL_TRY(runApi());
      CORRAL_TRY(runBare());
    }
  }
  Stats a = stats(api), b = stats(bare);
  std::printf("  start latency, %d samples each\n    bare QEMU  %s\n    corrald    %s\n", o.iterations,
              describe(b).c_str(), describe(a).c_str());
  const double ratio = a.median / b.median;
  return Row{fmt::format("start latency, median of {}", o.iterations), fmt::format("{:.1f} ms", b.median),
             fmt::format("{:.1f} ms", a.median), fmt::format("{:.2f}x", ratio), "<= 1.10x", ratio <= 1.10};
}

// Runs f(i) for i in [0, n) on n threads released at once; returns the wall time
// from the release until the last one finished, and each one's result.
template <class F>
double fanOut(int n, F f) {
  std::latch ready(n), go(1);
  std::vector<std::thread> threads;
  for (int i = 0; i < n; ++i) {
    threads.emplace_back([&, i] {
      ready.count_down();
      go.wait();
      f(i);
    });
  }
  ready.wait();
  const auto t0 = Clock::now();
  go.count_down();
  for (auto& t : threads) t.join();
  return msSince(t0);
}

struct FleetResult {
  Row wall;
  Row rss;
};

// 2 and 3. N guests at once: API vs bare, alternating; the daemon's RSS.
Result<FleetResult> benchFleet(Rig& rig, const Options& o) {
  CORRAL_TRY(rig.createVms(o.fleet));
  CORRAL_TRY(rig.start(0));
  const std::vector<std::string> argv = CORRAL_TRY(rig.argvOf(0));
  CORRAL_TRY(rig.stop(0));
  const std::string from = rig.runtimeDir(0);

  std::vector<double> apiWall, bareWall, apiEach, bareEach;
  long rssAfter = 0, rssPeak = 0;
  for (int r = 0; r < o.rounds; ++r) {
    auto runBare = [&]() -> Result<void> {
      std::vector<std::optional<BareQemu>> qs(o.fleet);
      std::vector<std::optional<Error>> errs(o.fleet);
      double wall = fanOut(o.fleet, [&](int i) {
        auto q = startBare(argv, from, fmt::format("{}/f{}/{}", rig.root().string(), r, i));
        if (q.ok()) {
          qs[i].emplace(std::move(q).take());
        } else {
          errs[i] = q.error();
        }
      });
      for (auto& e : errs) {
        if (e) return e->context("bare fleet");
      }
      bareWall.push_back(wall);
      for (auto& q : qs) bareEach.push_back(q->startMs);
      return corral::ok();  // qs goes: every bare QEMU is killed and reaped
    };
    auto runApi = [&]() -> Result<void> {
      std::vector<double> each(o.fleet);
      std::vector<std::optional<Error>> errs(o.fleet);
      double wall = fanOut(o.fleet, [&](int i) {
        auto ms = rig.start(i);
        if (ms.ok()) {
          each[i] = *ms;
        } else {
          errs[i] = ms.error();
        }
      });
      long after = rig.rssKib();
      long peak = after;
      for (auto t0 = Clock::now(); msSince(t0) < o.rssWindowS * 1000;) {
        std::this_thread::sleep_for(100ms);
        peak = std::max(peak, rig.rssKib());
      }
      for (int i = 0; i < o.fleet; ++i) {
        if (auto s = rig.stop(i); !s.ok() && !errs[i]) errs[i] = s.error();
      }
      for (auto& e : errs) {
        if (e) return e->context("API fleet");
      }
      apiWall.push_back(wall);
      apiEach.insert(apiEach.end(), each.begin(), each.end());
      rssAfter = std::max(rssAfter, after);
      rssPeak = std::max(rssPeak, peak);
      return corral::ok();
    };
    if (r % 2 == 0) {
      CORRAL_TRY(runBare());
      CORRAL_TRY(runApi());
    } else {
      CORRAL_TRY(runApi());
      CORRAL_TRY(runBare());
    }
  }
  Stats a = stats(apiWall), b = stats(bareWall);
  std::printf("  %d guests at once, %d rounds each (wall time until all answered)\n    bare QEMU  %s\n"
              "    corrald    %s\n  one guest's start within a fleet\n    bare QEMU  %s\n    corrald    %s\n",
              o.fleet, o.rounds, describe(b).c_str(), describe(a).c_str(), describe(stats(bareEach)).c_str(),
              describe(stats(apiEach)).c_str());
  std::printf("  corrald VmRSS with %d guests running: %.1f MiB right after the last start, %.1f MiB peak over "
              "the next %.0f s, VmHWM %.1f MiB\n",
              o.fleet, rssAfter / 1024.0, rssPeak / 1024.0, o.rssWindowS, rig.rssKib("VmHWM:") / 1024.0);
  const double ratio = a.median / b.median;
  FleetResult out;
  out.wall = Row{fmt::format("{} guests at once, median of {}", o.fleet, o.rounds),
                 fmt::format("{:.0f} ms", b.median), fmt::format("{:.0f} ms", a.median),
                 fmt::format("{:.2f}x", ratio), "<= 1.20x", ratio <= 1.2};
  const double peakMib = rssPeak / 1024.0;
  out.rss = Row{fmt::format("corrald RSS, {} guests running", o.fleet), "-",
                fmt::format("{:.1f} MiB", peakMib), "-", "<= 30 MiB", peakMib <= 30};
  return out;
}

void printTable(const std::vector<Row>& rows) {
  std::printf("\n%-36s %14s %14s %8s %10s  %s\n", "benchmark", "bare QEMU", "corrald", "ratio", "target", "");
  for (const auto& r : rows) {
    std::printf("%-36s %14s %14s %8s %10s  %s\n", r.what.c_str(), r.reference.c_str(), r.measured.c_str(),
                r.ratio.c_str(), r.target.c_str(), r.met ? "met" : "MISSED");
  }
}

std::string envOr(const char* name, std::string fallback) {
  const char* v = std::getenv(name);
  return v && *v ? std::string(v) : std::move(fallback);
}

int usage() {
  std::fprintf(stderr,
               "usage: daemon_bench [--bin DIR] [--guest DIR] [--iterations N] [--fleet N] [--rounds N]\n"
               "                    [--only start|fleet] [--strict] [--keep-log FILE]\n"
               "  --bin: where corrald and corral are (default $CORRAL_BINARY_DIR/bin)\n"
               "  --guest: the test guest (default $CORRAL_BINARY_DIR/guest)\n"
               "  --strict: exit 1 when a target is missed\n"
               "  --keep-log: copy corrald's log to FILE before cleaning up\n");
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  const std::string build = envOr("CORRAL_BINARY_DIR", CORRAL_BINARY_DIR);
  Paths paths{fs::path(build) / "bin", fs::path(build) / "guest"};
  Options o;
  std::string only;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto value = [&]() -> const char* { return i + 1 < argc ? argv[++i] : nullptr; };
    const char* v = nullptr;
    if (a == "--strict") {
      o.strict = true;
    } else if (a == "--help" || a == "-h") {
      return usage();
    } else if ((v = value()) == nullptr) {
      return usage();
    } else if (a == "--bin") {
      paths.bin = v;
    } else if (a == "--guest") {
      paths.guest = v;
    } else if (a == "--iterations") {
      o.iterations = std::max(1, std::atoi(v));
    } else if (a == "--fleet") {
      o.fleet = std::max(1, std::atoi(v));
    } else if (a == "--rounds") {
      o.rounds = std::max(1, std::atoi(v));
    } else if (a == "--keep-log") {
      o.keepLog = v;
    } else if (a == "--only") {
      only = v;
    } else {
      return usage();
    }
  }

  // QEMUs orphaned by a killed corrald come to us, so that we reap them.
  ::prctl(PR_SET_CHILD_SUBREAPER, 1);
  startSignalThread();

  int rc = 0;
  std::vector<Row> rows;
  {
    Rig rig(paths);
    auto run = [&]() -> Result<void> {
      CORRAL_TRY(rig.setUp());
      double l1 = 0, l5 = 0, l15 = 0;
      if (std::FILE* f = std::fopen("/proc/loadavg", "r")) {
        if (std::fscanf(f, "%lf %lf %lf", &l1, &l5, &l15) != 3) l1 = l5 = l15 = 0;
        std::fclose(f);
      }
      std::printf("daemon_bench: corrald vs bare QEMU; %u cores, loadavg %.2f %.2f %.2f, accel tcg, qemu %s\n",
                  std::thread::hardware_concurrency(), l1, l5, l15,
                  rig.node().value("qemu_version", std::string("?")).c_str());
      if (only.empty() || only == "start") rows.push_back(CORRAL_TRY(benchStartLatency(rig, o)));
      if (only.empty() || only == "fleet") {
        FleetResult f = CORRAL_TRY(benchFleet(rig, o));
        rows.push_back(f.wall);
        rows.push_back(f.rss);
      }
      return corral::ok();
    };
    if (auto r = run(); !r.ok()) {
      std::fprintf(stderr, "daemon_bench: %s\n", r.error().describe().c_str());
      rc = 1;
    }
    if (!o.keepLog.empty()) {
      std::error_code ec;
      fs::copy_file(rig.daemonLog(), o.keepLog, fs::copy_options::overwrite_existing, ec);
    }
  }  // the Rig goes: corrald and every QEMU are killed and reaped, the temp dir removed
  if (!rows.empty()) printTable(rows);
  if (rc == 0 && o.strict && !std::all_of(rows.begin(), rows.end(), [](const Row& r) { return r.met; })) rc = 1;
  return rc;
}
