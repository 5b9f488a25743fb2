#include "bench_support.h"

#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <thread>

#include <fmt/format.h>
#include <fmt/ranges.h>

namespace corral::bench {

using namespace std::chrono_literals;

double msSince(Clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
}

std::string readFile(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), {}};
}

std::string tail(const std::string& s, size_t n) { return s.size() <= n ? s : s.substr(s.size() - n); }

std::string envOr(const char* name, std::string fallback) {
  const char* v = std::getenv(name);
  return v && *v ? std::string(v) : std::move(fallback);
}

LoadAvg loadAvg() {
  LoadAvg l;
  if (std::FILE* f = std::fopen("/proc/loadavg", "r")) {
    if (std::fscanf(f, "%lf %lf %lf", &l.l1, &l.l5, &l.l15) != 3) l = {};
    std::fclose(f);
  }
  return l;
}

Result<fs::path> makeTempDir(const fs::path& parent, const std::string& prefix) {
  std::string tmpl = (parent / (prefix + ".XXXXXX")).string();
  if (::mkdtemp(tmpl.data()) == nullptr) {
    return errorf(ErrorCode::Internal, "mkdtemp in {}: {}", parent.string(), strerror(errno));
  }
  return fs::path(tmpl);
}

// ---------------------------------------------------------------------------

double median(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

std::string describe(std::vector<double> v, const char* unit) {
  if (v.empty()) return "-";
  std::sort(v.begin(), v.end());
  return fmt::format("min {:.1f}  median {:.1f}  max {:.1f} {}", v.front(), median(v), v.back(), unit);
}

std::string list(const std::vector<double>& v) {
  std::string out;
  for (double x : v) out += fmt::format("{}{:.1f}", out.empty() ? "" : " ", x);
  return out;
}

// ---------------------------------------------------------------------------

void killAllUnder(const std::string& needle) {
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
  const auto deadline = Clock::now() + 10s;
  for (pid_t p : pids) {
    while (Clock::now() < deadline) {
      const pid_t r = ::waitpid(p, nullptr, WNOHANG);
      if (r == p) break;
      const std::string proc = "/proc/" + std::to_string(p) + "/cmdline";
      if (r < 0 && (!fs::exists(proc) || readFile(proc).empty())) break;  // gone, or a zombie not ours
      std::this_thread::sleep_for(5ms);
    }
  }
}

Janitor& Janitor::get() {
  static Janitor j;
  return j;
}

void Janitor::setRoot(fs::path root) {
  std::lock_guard lock(mu_);
  root_ = std::move(root);
}

void Janitor::setDaemon(pid_t pid) {
  std::lock_guard lock(mu_);
  daemon_ = pid;
}

void Janitor::cleanup() noexcept {
  std::lock_guard lock(mu_);
  if (daemon_ > 0) {
    ::kill(daemon_, SIGKILL);
    ::waitpid(daemon_, nullptr, 0);
    daemon_ = -1;
  }
  if (root_.empty()) return;
  killAllUnder(root_.string());
  std::error_code ec;
  fs::remove_all(root_, ec);
  root_.clear();
}

void startSignalThread(std::string prog, std::function<void()> cleanup) {
  ::signal(SIGINT, SIG_DFL);
  ::signal(SIGTERM, SIG_DFL);
  sigset_t set;
  sigemptyset(&set);
  for (int s : {SIGINT, SIGTERM, SIGHUP}) sigaddset(&set, s);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  std::thread([set, prog = std::move(prog), cleanup = std::move(cleanup)] {
    int sig = 0;
    if (sigwait(&set, &sig) != 0) return;
    std::fprintf(stderr, "%s: signal %d, cleaning up\n", prog.c_str(), sig);
    cleanup();
    ::_exit(128 + sig);
  }).detach();
}

Result<fs::path> beginDaemonBench(const std::string& prog, const fs::path& tmpParent, const std::string& prefix,
                                  std::function<void()> alsoOnSignal, fs::perms tmpMode) {
  ::prctl(PR_SET_CHILD_SUBREAPER, 1);
  startSignalThread(prog, [alsoOnSignal = std::move(alsoOnSignal)] {
    Janitor::get().cleanup();
    if (alsoOnSignal) alsoOnSignal();
  });
  auto made = makeTempDir(tmpParent, prefix);
  if (!made.ok()) return made.error();
  Janitor::get().setRoot(*made);
  std::error_code permErr;
  fs::permissions(*made, tmpMode, permErr);
  const LoadAvg load = loadAvg();
  std::printf("%s: %u cores, loadavg %.2f %.2f %.2f, temp dir %s\n", prog.c_str(), std::thread::hardware_concurrency(),
              load.l1, load.l5, load.l15, made->c_str());
  std::fflush(stdout);
  return made;
}

Result<void> dieWithUs() {
  if (::prctl(PR_SET_PDEATHSIG, SIGKILL) != 0) return Error::internal("prctl(PR_SET_PDEATHSIG)");
  return ok();
}

void killAndReap(util::Command& child) {
  if (child.pid() <= 0) return;
  ::kill(child.pid(), SIGKILL);
  (void)child.wait(5000ms);
}

// ---------------------------------------------------------------------------

Result<void> checkGuest(const fs::path& guest) {
  for (const char* f : {"vmlinuz", "initramfs.cpio.gz", "cmdline"}) {
    if (!fs::exists(guest / f)) {
      return Error::notFound(fmt::format("test guest: no {} (run scripts/build-test-guest {})", (guest / f).string(),
                                         guest.string()));
    }
  }
  return ok();
}

std::string guestCmdline(const fs::path& guest) {
  std::string cmdline = readFile(guest / "cmdline");
  while (!cmdline.empty() && (cmdline.back() == '\n' || cmdline.back() == '\r')) cmdline.pop_back();
  return cmdline;
}

std::unique_ptr<util::Command> corraldCommand(const fs::path& bin, const std::vector<std::string>& args,
                                              const std::string& log) {
  auto c = std::make_unique<util::Command>((bin / "corrald").string());
  c->args(args)
      .keepEnv({"PATH"})
      .stdoutToFile(log, true)  // spdlog writes to stdout
      .stderrToStdout()
      // Its guests outlive a SIGKILLed us as orphans of init; the next run's
      // temp dir is a different one.
      .preExec(dieWithUs);
  return c;
}

Result<void> waitForCorrald(util::Command& corrald, const std::function<bool()>& answered, const std::string& log) {
  const auto deadline = Clock::now() + 60s;
  while (!answered()) {
    auto st = corrald.wait(0ms);
    const bool exited = st.ok() || st.error().code != ErrorCode::Timeout;
    if (exited || Clock::now() > deadline) {
      return Error::unavailable("corrald did not answer; its log:\n" + tail(readFile(log), 3000));
    }
    std::this_thread::sleep_for(20ms);
  }
  return ok();
}

Result<void> retryCorraldStart(const char* prog, const std::function<Result<void>()>& start) {
  for (int attempt = 1;; ++attempt) {
    auto up = start();
    if (up.ok() || attempt == 3) return up;
    std::fprintf(stderr, "%s: corrald start-up failed (attempt %d), retrying: %s\n", prog, attempt,
                 up.error().message.c_str());
  }
}

Result<std::string> runCorral(const fs::path& bin, const std::string& socket, const std::vector<std::string>& args,
                              std::chrono::milliseconds timeout) {
  util::Command c((bin / "corral").string());
  c.args({"--socket", socket}).args(args).keepEnv({"PATH", "HOME"}).stdoutToBuffer().stderrToBuffer().timeout(
      timeout);
  auto r = c.run();
  if (!r.ok()) {
    return r.error().context(
        fmt::format("corral {}", fmt::join(args.begin(), args.begin() + std::min<size_t>(args.size(), 3), " ")));
  }
  return std::move(r->out);
}

// ---- unix sockets

int msLeft(Clock::time_point deadline) {
  auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
  return left < 0 ? 0 : static_cast<int>(left);
}

Result<util::UniqueFd> connectUnix(const std::string& path) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path.size() >= sizeof(addr.sun_path)) return Error::invalidInput("socket", path, "path too long");
  std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
  util::UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd) return errorf(ErrorCode::Internal, "socket: {}", strerror(errno));
  if (::connect(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    return errorf(ErrorCode::Unavailable, "connect {}: {}", path, strerror(errno));
  }
  return fd;
}

Result<void> writeAll(int fd, std::string_view data) {
  while (!data.empty()) {
    ssize_t n = ::send(fd, data.data(), data.size(), MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return errorf(ErrorCode::Unavailable, "send: {}", strerror(errno));
    data.remove_prefix(static_cast<size_t>(n));
  }
  return corral::ok();
}

// Appends what is readable to buf; false at EOF.
Result<bool> readSome(int fd, std::string& buf, Clock::time_point deadline) {
  pollfd p{fd, POLLIN, 0};
  int r = ::poll(&p, 1, msLeft(deadline));
  if (r == 0) return Error::timeout("no reply in time");
  if (r < 0 && errno != EINTR) return errorf(ErrorCode::Internal, "poll: {}", strerror(errno));
  char chunk[8192];
  ssize_t n = ::recv(fd, chunk, sizeof(chunk), 0);
  if (n < 0 && errno == EINTR) return true;
  if (n < 0) return errorf(ErrorCode::Unavailable, "recv: {}", strerror(errno));
  buf.append(chunk, static_cast<size_t>(n));
  return n > 0;
}

}  // namespace corral::bench
