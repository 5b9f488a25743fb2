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
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "bench_support.h"
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
using corral::bench::Clock;
using corral::bench::Janitor;
using corral::bench::connectUnix;
using corral::bench::msLeft;
using corral::bench::msSince;
using corral::bench::readSome;
using corral::bench::writeAll;
using corral::bench::Paths;
using corral::bench::readFile;
using corral::bench::tail;
using corral::util::UniqueFd;
using json = nlohmann::json;

// ---------------------------------------------------------------------------
// HTTP/1.1 and QMP over unix sockets: just enough, blocking, with deadlines.

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

class Rig {
 public:
  explicit Rig(Paths paths) : paths_(std::move(paths)) {}
  // corrald first (through its Command, which reaps it), then its QEMUs and
  // the temp dir.
  ~Rig() {
    Janitor::get().setDaemon(-1);
    if (daemon_) corral::bench::killAndReap(*daemon_);
    Janitor::get().cleanup();
  }

  Result<void> setUp() {
    root_ = CORRAL_TRY(corral::bench::makeTempDir("/tmp", "crdb"));
    Janitor::get().setRoot(root_);
    state_ = root_ / "s";
    fs::create_directories(state_);
    CORRAL_TRY(corral::bench::checkGuest(paths_.guest));
    CORRAL_TRY(corral::bench::retryCorraldStart("daemon_bench", [this] { return startDaemon(); }));
    CORRAL_TRY(corral::bench::runCorral(
        paths_.bin, socket(),
        {"image", "import", "guest", "--kernel", (paths_.guest / "vmlinuz").string(), "--initrd",
         (paths_.guest / "initramfs.cpio.gz").string(), "--append", corral::bench::guestCmdline(paths_.guest)},
        120000ms));
    return corral::ok();
  }

  Result<void> startDaemon() {
    Janitor::get().setDaemon(-1);
    if (daemon_) corral::bench::killAndReap(*daemon_);
    daemon_ = corral::bench::corraldCommand(
        paths_.bin, {"--state-dir", state_.string(), "--accel", "tcg", "--log-level", "info"}, daemonLog());
    if (auto r = daemon_->start(); !r.ok()) return r.error().context("start corrald");
    Janitor::get().setDaemon(daemon_->pid());
    return corral::bench::waitForCorrald(*daemon_, [this] {
      auto node = http(socket(), "GET", "/api/v1/node", {}, 5s);
      if (!node.ok() || node->status != 200) return false;
      node_ = json::parse(node->body, nullptr, false);
      return true;
    }, daemonLog());
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
  s.median = corral::bench::median(v);
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
  const std::string build = corral::bench::envOr("CORRAL_BINARY_DIR", CORRAL_BINARY_DIR);
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
  // Signals end the run here too: corrald, every QEMU, the temp dir.
  corral::bench::startSignalThread("daemon_bench", [] { Janitor::get().cleanup(); });

  int rc = 0;
  std::vector<Row> rows;
  {
    Rig rig(paths);
    auto run = [&]() -> Result<void> {
      CORRAL_TRY(rig.setUp());
      const corral::bench::LoadAvg load = corral::bench::loadAvg();
      std::printf("daemon_bench: corrald vs bare QEMU; %u cores, loadavg %.2f %.2f %.2f, accel tcg, qemu %s\n",
                  std::thread::hardware_concurrency(), load.l1, load.l5, load.l15,
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
