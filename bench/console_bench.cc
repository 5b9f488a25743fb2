// Consoles: corrald's serial WebSocket against a direct connection to the
// serial socket of a bare QEMU of the same guest, in the same run.
//
// The bare QEMU runs the very argv corrald used for its guest (read from the
// guest's machine.json; paths moved to this benchmark's temp dir, -S dropped),
// so the two guests are the same machine, kernel, initramfs and command line.
// Both run at once, each idle at its shell prompt while the other is measured.
//
// Figures, each a ratio against the direct connection:
//   1. keystroke echo round trip: one key typed into the guest's shell, until
//      its echo is back; median of N (200) keys per side, the sides taking
//      turns in rounds of 20, so that a noisy neighbour weighs on both.
//      Through corrald: WebSocket frame -> corrald -> serial socket -> guest ->
//      corrald's console drain -> the hub's fan-out -> WebSocket frame.
//   2. serial output throughput: the guest's shell prints M MiB (2) with
//      `yes | head -c`; the time from Enter until every viewer has the marker
//      after it, with 1 and with 10 WebSocket viewers attached, against one
//      direct reader. Median of R (3) runs each.
//
// How to read it: under TCG the guest's UART is the bottleneck of figure 2 on
// both sides, so a ratio near 1 says corrald and its viewers do not slow the
// guest down. Figure 1 is mostly the guest's own echo (TCG, its tty); the
// difference is what corrald's proxy adds.
//
// It starts its own corrald (--accel tcg) on a temp state dir and kills and
// reaps every process it made, and removes the temp dir, on every exit path.
// Paths: --bin DIR (default $CORRAL_BINARY_DIR/bin), --guest DIR (default
// <build>/guest). --keys N, --mib M, --runs R.
#include <sys/prctl.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "bench_daemon.h"
#include "bench_support.h"
#include "support/ws_test_client.h"
#include "util/command.h"
#include "util/result.h"
#include "util/unique_fd.h"

namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using corral::Error;
using corral::Result;
using corral::bench::Clock;
using corral::bench::Daemon;
using corral::bench::describe;
using corral::bench::Janitor;
using corral::bench::median;
using corral::bench::msSince;
using corral::bench::Paths;
using corral::bench::readFile;
using corral::bench::tail;
using corral::testing::WsTestClient;
using corral::util::UniqueFd;
using json = nlohmann::json;

constexpr const char* kMarker = "CORRAL-GUEST-READY";
constexpr const char* kVm = "cb";

struct Options {
  int keys = 200;
  int mib = 2;
  int runs = 3;
  std::string keepLog;
};

// ---------------------------------------------------------------------------
// The two ends a key or a flood is measured through.

// A serial console: bytes in, bytes out, with a count of what came out.
class Console {
 public:
  virtual ~Console() = default;
  virtual Result<void> send(const std::string& bytes) = 0;
  // Waits until `total` bytes have come in all; what came is in seen().
  virtual Result<void> waitForBytes(uint64_t total, Clock::time_point deadline) = 0;
  virtual Result<void> waitFor(const std::string& needle, Clock::time_point deadline) = 0;
  // Takes in what comes until nothing has come for `quiet`.
  virtual Result<void> settle(std::chrono::milliseconds quiet) = 0;
  virtual uint64_t received() const = 0;
};

// Direct: the bare QEMU's serial socket.
class DirectConsole final : public Console {
 public:
  explicit DirectConsole(UniqueFd fd) : fd_(std::move(fd)) {}
  Result<void> send(const std::string& bytes) override { return corral::bench::writeAll(fd_.get(), bytes); }
  Result<void> waitForBytes(uint64_t total, Clock::time_point deadline) override {
    while (received_ < total) CORRAL_TRY(readMore(deadline));
    return corral::ok();
  }
  Result<void> waitFor(const std::string& needle, Clock::time_point deadline) override {
    seen_.clear();
    while (seen_.find(needle) == std::string::npos) {
      // Only a needle's length of what was searched can still be part of a match.
      if (seen_.size() > needle.size()) seen_.erase(0, seen_.size() - needle.size());
      CORRAL_TRY(readMore(deadline));
    }
    return corral::ok();
  }
  Result<void> settle(std::chrono::milliseconds quiet) override {
    while (true) {
      auto r = readMore(Clock::now() + quiet);
      if (!r.ok()) return r.error().code == corral::ErrorCode::Timeout ? corral::ok() : r;
      seen_.clear();
    }
  }
  uint64_t received() const override { return received_; }

 private:
  Result<void> readMore(Clock::time_point deadline) {
    const size_t before = seen_.size();
    if (!CORRAL_TRY(corral::bench::readSome(fd_.get(), seen_, deadline)))
      return Error::unavailable("the bare QEMU closed its serial socket");
    received_ += seen_.size() - before;
    return corral::ok();
  }

  UniqueFd fd_;
  std::string seen_;
  uint64_t received_ = 0;
};

// Through corrald: its serial console WebSocket.
class WsConsole final : public Console {
 public:
  explicit WsConsole(std::unique_ptr<WsTestClient> ws) : ws_(std::move(ws)) {}
  Result<void> send(const std::string& bytes) override {
    if (!ws_->send(bytes)) return Error::unavailable("the console WebSocket is closed");
    return corral::ok();
  }
  Result<void> waitForBytes(uint64_t total, Clock::time_point deadline) override {
    if (!ws_->waitForBytes(total, left(deadline))) return Error::timeout("no echo through the WebSocket");
    return corral::ok();
  }
  Result<void> waitFor(const std::string& needle, Clock::time_point deadline) override {
    if (!ws_->waitFor(needle, left(deadline)))
      return Error::timeout(fmt::format("no {} through the WebSocket; its tail: {}", needle, tail(ws_->tail(), 300)));
    return corral::ok();
  }
  Result<void> settle(std::chrono::milliseconds quiet) override {
    for (uint64_t n = ws_->bytesReceived();;) {
      std::this_thread::sleep_for(quiet);
      const uint64_t now = ws_->bytesReceived();
      if (now == n) return corral::ok();
      n = now;
    }
  }
  uint64_t received() const override { return ws_->bytesReceived(); }

 private:
  static std::chrono::milliseconds left(Clock::time_point deadline) {
    return std::chrono::milliseconds(corral::bench::msLeft(deadline));
  }
  std::unique_ptr<WsTestClient> ws_;
};

Result<std::unique_ptr<WsConsole>> openWs(const Daemon& d) {
  const json t = CORRAL_TRY(d.api("POST", fmt::format("/api/v1/vms/{}/console/token", kVm), {{"kind", "serial"}}));
  auto ws = WsTestClient::open(d.socket(), t.value("path", "") + "?token=" + t.value("token", ""));
  if (ws->status() != 101)
    return Error::unavailable(fmt::format("console WebSocket: HTTP {}: {}", ws->status(), ws->body()));
  return std::make_unique<WsConsole>(std::move(ws));
}

// ---------------------------------------------------------------------------
// The bare QEMU.

// The argv corrald used for its guest, with its runtime dir moved to `to`, not
// paused. Refuses an argv that hands QEMU file descriptors (it could not work).
Result<std::vector<std::string>> bareArgv(const fs::path& runtimeDir, const fs::path& to) {
  json j = json::parse(readFile(runtimeDir / "machine.json"), nullptr, false);
  if (j.is_discarded() || !j.contains("argv")) return Error::notFound("no argv in " + (runtimeDir / "machine.json").string());
  std::vector<std::string> out;
  for (std::string a : j["argv"].get<std::vector<std::string>>()) {
    if (a == "-S") continue;
    if (a.find("fd=") != std::string::npos) return Error::failedPrecondition("corrald's argv passes descriptors: " + a);
    const std::string from = runtimeDir.string();
    for (size_t p = a.find(from); p != std::string::npos; p = a.find(from, p + to.string().size()))
      a.replace(p, from.size(), to.string());
    out.push_back(std::move(a));
  }
  return out;
}

struct Bare {
  std::unique_ptr<corral::util::Command> qemu;
  std::unique_ptr<DirectConsole> console;
  ~Bare() {
    if (qemu) corral::bench::killAndReap(*qemu);
  }
};

Result<void> startBare(Bare& b, const std::vector<std::string>& argv, const fs::path& dir) {
  b.qemu = std::make_unique<corral::util::Command>(argv.front());
  b.qemu->args(std::vector<std::string>(argv.begin() + 1, argv.end()))
      .stdoutToFile((dir / "qemu.log").string())
      .stderrToStdout()
      .preExec([]() -> Result<void> {
        // Its own session, as corrald's daemonized QEMUs have: with the
        // scheduler's autogroups a session is what CPU time is shared between,
        // and ours holds this benchmark's reader threads.
        if (::setsid() < 0) return Error::internal("setsid failed");
        return corral::bench::dieWithUs();
      });
  CORRAL_TRY(b.qemu->start());
  const auto deadline = Clock::now() + 30s;
  while (true) {
    auto fd = corral::bench::connectUnix((dir / "serial.sock").string());
    if (fd.ok()) {
      b.console = std::make_unique<DirectConsole>(std::move(fd).take());
      break;
    }
    if (Clock::now() > deadline)
      return Error::unavailable("the bare QEMU's serial socket: " + tail(readFile(dir / "qemu.log"), 800));
    std::this_thread::sleep_for(10ms);
  }
  return b.console->waitFor(kMarker, Clock::now() + 120s);
}

// ---------------------------------------------------------------------------
// The figures.

// One key typed, until its echo is back; the key is then erased (backspace)
// and that echo taken in whole, so that the line stays empty and nothing
// stale is taken for the next key's echo.
Result<double> keystroke(Console& c, char key) {
  CORRAL_TRY(c.settle(20ms));
  const uint64_t before = c.received();
  const auto t0 = Clock::now();
  CORRAL_TRY(c.send(std::string(1, key)));
  CORRAL_TRY(c.waitForBytes(before + 1, Clock::now() + 10s));
  const double ms = msSince(t0);
  const uint64_t echoed = c.received();
  CORRAL_TRY(c.send("\x7f"));
  CORRAL_TRY(c.waitForBytes(echoed + 1, Clock::now() + 10s));
  return ms;
}

// Sends the flood command through `driver` and waits until every viewer has
// the marker that follows it; milliseconds from Enter.
Result<double> flood(Console& driver, const std::vector<Console*>& viewers, int mib, int run) {
  // The marker is computed by the shell, so the echoed command line never holds it.
  const std::string marker = fmt::format("FLOOD-{}-END", run + 1);
  const std::string cmd = fmt::format(
      "yes 0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXY | head -c {}; echo FLOOD-$(({}+1))-END",
      int64_t{mib} << 20, run);
  CORRAL_TRY(driver.send(cmd));
  std::this_thread::sleep_for(200ms);  // the command line's echo, not timed
  const auto t0 = Clock::now();
  CORRAL_TRY(driver.send("\r"));
  for (Console* v : viewers) CORRAL_TRY(v->waitFor(marker, Clock::now() + 600s));
  return msSince(t0);
}

struct Row {
  std::string what, reference, measured, ratio;
};

void printTable(const std::vector<Row>& rows) {
  std::printf("\n| what | direct socket, bare QEMU | through corrald's WebSocket | ratio |\n|---|---|---|---|\n");
  for (const Row& r : rows)
    std::printf("| %s | %s | %s | %s |\n", r.what.c_str(), r.reference.c_str(), r.measured.c_str(), r.ratio.c_str());
}

Result<std::vector<Row>> run(const Paths& paths, const fs::path& root, const Options& o) {
  Daemon d("console_bench", paths, root, o.keepLog);
  CORRAL_TRY(d.start());
  std::printf("  corrald %s, accel tcg\n", d.node().value("qemu_version", std::string("?")).c_str());
  CORRAL_TRY(d.importGuest("guest"));
  CORRAL_TRY(d.cli({"vm", "create", kVm, "--image", "guest", "--memory", "128", "--start"}));
  auto ours = CORRAL_TRY(openWs(d));  // its history holds the marker once the guest is up
  CORRAL_TRY(ours->waitFor(kMarker, Clock::now() + 120s));

  Bare bare;
  const fs::path bareDir = root / "bare";
  fs::create_directories(bareDir);
  const std::vector<std::string> argv = CORRAL_TRY(bareArgv(d.stateDir() / "run" / kVm, bareDir));
  CORRAL_TRY(startBare(bare, argv, bareDir));
  std::printf("  both guests at their shell\n");
  std::fflush(stdout);

  // 1. Keystroke echo.
  std::vector<double> direct, ws;
  for (int i = 0; i < 5; ++i) {  // warm-up: the shells' line editors, the caches
    CORRAL_TRY(keystroke(*bare.console, 'w'));
    CORRAL_TRY(keystroke(*ours, 'w'));
  }
  for (int done = 0; done < o.keys;) {
    const int n = std::min(20, o.keys - done);
    for (int i = 0; i < n; ++i) {
      const double ms = CORRAL_TRY(keystroke(*bare.console, static_cast<char>('a' + i)));
      direct.push_back(ms);
    }
    for (int i = 0; i < n; ++i) {
      const double ms = CORRAL_TRY(keystroke(*ours, static_cast<char>('a' + i)));
      ws.push_back(ms);
    }
    done += n;
  }
  std::printf("  keystroke echo, %d keys each\n    direct     %s\n    WebSocket  %s\n", o.keys,
              describe(direct, "ms").c_str(), describe(ws, "ms").c_str());
  std::vector<Row> rows;
  rows.push_back(Row{fmt::format("keystroke echo round trip, median of {}", o.keys),
                     fmt::format("{:.2f} ms", median(direct)), fmt::format("{:.2f} ms", median(ws)),
                     fmt::format("{:.2f}x", median(ws) / median(direct))});
  std::fflush(stdout);

  // 2. Throughput: the direct reader, then 1 and 10 WebSocket viewers.
  std::vector<std::unique_ptr<WsConsole>> more;
  for (int i = 0; i < 9; ++i) more.push_back(CORRAL_TRY(openWs(d)));
  auto mibPerS = [&](double ms) { return o.mib / (ms / 1000.0); };
  std::vector<double> ref, one, ten;
  for (int r = 0; r < o.runs; ++r) {
    const double refMs = CORRAL_TRY(flood(*bare.console, {bare.console.get()}, o.mib, r));
    const double oneMs = CORRAL_TRY(flood(*ours, {ours.get()}, o.mib, 2 * r));
    std::vector<Console*> all{ours.get()};
    for (auto& m : more) all.push_back(m.get());
    const double tenMs = CORRAL_TRY(flood(*ours, all, o.mib, 2 * r + 1));
    ref.push_back(mibPerS(refMs));
    one.push_back(mibPerS(oneMs));
    ten.push_back(mibPerS(tenMs));
    std::printf("  run %d: direct %.2f, 1 viewer %.2f, 10 viewers %.2f MiB/s\n", r + 1, ref.back(), one.back(),
                ten.back());
    std::fflush(stdout);
  }
  for (auto [what, v] : {std::pair{"1 viewer", &one}, std::pair{"10 viewers", &ten}}) {
    rows.push_back(Row{fmt::format("serial output, {} MiB, {}, median of {}", o.mib, what, o.runs),
                       fmt::format("{:.2f} MiB/s", median(ref)), fmt::format("{:.2f} MiB/s", median(*v)),
                       fmt::format("{:.2f}x", median(*v) / median(ref))});
  }
  return rows;
}

int usage() {
  std::fprintf(stderr,
               "usage: console_bench [--bin DIR] [--guest DIR] [--tmp DIR] [--keys N] [--mib M] [--runs R]"
               " [--keep-log FILE]\n");
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  const std::string build = corral::bench::envOr("CORRAL_BINARY_DIR", CORRAL_BINARY_DIR);
  Paths paths{fs::path(build) / "bin", fs::path(build) / "guest"};
  Options o;
  std::string tmp = "/tmp";
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--help" || a == "-h" || i + 1 >= argc) return usage();
    const char* v = argv[++i];
    if (a == "--bin") paths.bin = v;
    else if (a == "--guest") paths.guest = v;
    else if (a == "--tmp") tmp = v;
    else if (a == "--keys") o.keys = std::max(1, std::atoi(v));
    else if (a == "--mib") o.mib = std::max(1, std::atoi(v));
    else if (a == "--runs") o.runs = std::max(1, std::atoi(v));
    else if (a == "--keep-log") o.keepLog = v;
    else return usage();
  }

  auto made = corral::bench::beginDaemonBench("console_bench", tmp, "crcb");
  if (!made.ok()) {
    std::fprintf(stderr, "console_bench: %s\n", made.error().message.c_str());
    return 1;
  }
  int rc = 0;
  std::vector<Row> rows;
  try {  // a malformed reply (nlohmann throws) still ends in the cleanup below
    auto r = run(paths, *made, o);
    if (r.ok()) rows = std::move(r).take();
    else {
      std::fprintf(stderr, "console_bench: %s\n", r.error().describe().c_str());
      rc = 1;
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "console_bench: %s\n", e.what());
    rc = 1;
  }
  Janitor::get().cleanup();
  if (!rows.empty()) printTable(rows);
  return rc;
}
