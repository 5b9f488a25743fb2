// The query-status round trip through Monitor/QmpTransport's synchronous API
// against a minimal blocking unix-socket client (write a line, read a line, parse
// nothing) talking to the same QEMU, in the same run.
//
// How to read it: the raw client is the floor (QEMU's own monitor dominates it, some
// 190 us); the ratio printed at the end, transport / raw, is what the client costs
// on top: the hop to the io_context's strand and back to the caller's thread, JSON
// serialisation and parsing, id matching and the per-command timer. The target is
// 1.10x or less. One QEMU (`-machine none -S`) with two QMP sockets, since a QMP
// socket serves one client at a time; it is started with util::Command and stopped
// when the benchmark ends.
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <memory>
#include <string>
#include <thread>

#include <benchmark/benchmark.h>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>

#include "qemu/monitor.h"
#include "qemu/qmp_transport.h"
#include "util/command.h"

namespace {

using namespace std::chrono_literals;
using corral::qemu::Monitor;
using corral::qemu::QmpTransport;

// One QEMU for the whole run, with an io_context thread for the transport side.
class Rig {
 public:
  static Rig& get() {
    static Rig rig;
    return rig;
  }

  bool ok() const { return error_.empty(); }
  const std::string& error() const { return error_; }
  Monitor& monitor() { return *monitor_; }
  int rawFd() const { return rawFd_; }

  ~Rig() {
    if (monitor_) (void)monitor_->quit();
    if (qmp_) qmp_->close();
    if (rawFd_ >= 0) ::close(rawFd_);
    work_.reset();
    if (ioThread_.joinable()) ioThread_.join();
    if (qemu_ && qemu_->pid() > 0) (void)qemu_->wait(5000ms);
    qemu_.reset();  // aborts (TERM, KILL) a QEMU still running
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }

 private:
  Rig() {
    char tmpl[] = "/tmp/crlb.XXXXXX";
    if (::mkdtemp(tmpl) == nullptr) {
      error_ = "mkdtemp failed";
      return;
    }
    dir_ = tmpl;
    const std::string a = dir_ + "/a.sock";
    const std::string b = dir_ + "/b.sock";
    qemu_ = std::make_unique<corral::util::Command>("/usr/bin/qemu-system-x86_64");
    qemu_->args({"-machine", "none", "-S", "-nodefaults", "-display", "none"});
    qemu_->arg("-qmp").arg("unix:" + a + ",server=on,wait=off");
    qemu_->arg("-qmp").arg("unix:" + b + ",server=on,wait=off");
    qemu_->stdoutToNull().stderrToNull();
    if (auto r = qemu_->start(); !r.ok()) {
      error_ = r.error().describe();
      return;
    }
    ioThread_ = std::thread([this] { io_.run(); });

    // QEMU's sockets appear a moment after exec: retry with a deadline.
    auto deadline = std::chrono::steady_clock::now() + 30s;
    while (true) {
      qmp_ = QmpTransport::create(io_);
      auto g = qmp_->connectSync(a, 10s);
      if (g.ok()) break;
      qmp_->close();
      if (std::chrono::steady_clock::now() > deadline) {
        error_ = g.error().message;
        return;
      }
      std::this_thread::sleep_for(10ms);
    }
    monitor_ = std::make_unique<Monitor>(qmp_, 10s);

    while ((rawFd_ = rawConnect(b)) < 0) {
      if (std::chrono::steady_clock::now() > deadline) {
        error_ = "raw client cannot connect to " + b;
        return;
      }
      std::this_thread::sleep_for(10ms);
    }
    std::string line;
    if (!rawReadLine(line) || line.find("\"QMP\"") == std::string::npos ||
        !rawWrite("{\"execute\":\"qmp_capabilities\"}\n") || !rawReadLine(line)) {
      error_ = "raw client handshake failed";
    }
  }

  static int rawConnect(const std::string& path) {
    int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::strncpy(addr.sun_path, path.c_str(), sizeof(addr.sun_path) - 1);
    if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
      ::close(fd);
      return -1;
    }
    return fd;
  }

 public:
  bool rawWrite(std::string_view s) const {
    while (!s.empty()) {
      ssize_t n = ::write(rawFd_, s.data(), s.size());
      if (n <= 0) return false;
      s.remove_prefix(static_cast<std::size_t>(n));
    }
    return true;
  }
  // Reads one line; whatever follows it in the same read is kept for the next.
  bool rawReadLine(std::string& line) {
    while (true) {
      if (auto nl = rawBuf_.find('\n'); nl != std::string::npos) {
        line.assign(rawBuf_, 0, nl);
        rawBuf_.erase(0, nl + 1);
        return true;
      }
      char buf[4096];
      ssize_t n = ::read(rawFd_, buf, sizeof(buf));
      if (n <= 0) return false;
      rawBuf_.append(buf, static_cast<std::size_t>(n));
    }
  }

 private:
  std::string error_;
  std::string dir_;
  std::unique_ptr<corral::util::Command> qemu_;
  boost::asio::io_context io_;
  boost::asio::executor_work_guard<boost::asio::io_context::executor_type> work_ =
      boost::asio::make_work_guard(io_);
  std::thread ioThread_;
  std::shared_ptr<QmpTransport> qmp_;
  std::unique_ptr<Monitor> monitor_;
  int rawFd_ = -1;
  std::string rawBuf_;
};

double gRawNs = 0;
double gMonitorNs = 0;

void BM_QueryStatusRaw(benchmark::State& state) {
  Rig& rig = Rig::get();
  if (!rig.ok()) {
    state.SkipWithError(rig.error().c_str());
    return;
  }
  std::string line;
  auto t0 = std::chrono::steady_clock::now();
  for (auto _ : state) {
    if (!rig.rawWrite("{\"execute\":\"query-status\"}\n") || !rig.rawReadLine(line)) {
      state.SkipWithError("raw round trip failed");
      return;
    }
    benchmark::DoNotOptimize(line.data());
  }
  gRawNs = std::chrono::duration<double, std::nano>(std::chrono::steady_clock::now() - t0).count() /
           static_cast<double>(state.iterations());
}
BENCHMARK(BM_QueryStatusRaw)->Unit(benchmark::kMicrosecond)->UseRealTime();

void BM_QueryStatusMonitor(benchmark::State& state) {
  Rig& rig = Rig::get();
  if (!rig.ok()) {
    state.SkipWithError(rig.error().c_str());
    return;
  }
  auto t0 = std::chrono::steady_clock::now();
  for (auto _ : state) {
    auto s = rig.monitor().queryStatus();
    if (!s.ok()) {
      state.SkipWithError(s.error().message.c_str());
      return;
    }
    benchmark::DoNotOptimize(s->running);
  }
  gMonitorNs = std::chrono::duration<double, std::nano>(std::chrono::steady_clock::now() - t0).count() /
               static_cast<double>(state.iterations());
}
BENCHMARK(BM_QueryStatusMonitor)->Unit(benchmark::kMicrosecond)->UseRealTime();

}  // namespace

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  if (gRawNs > 0 && gMonitorNs > 0) {
    std::printf("query-status round trip: raw %.1f us, Monitor %.1f us, ratio %.3fx (target <= 1.10x)\n",
                gRawNs / 1000, gMonitorNs / 1000, gMonitorNs / gRawNs);
  }
  return 0;
}
