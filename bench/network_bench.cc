// Networking: guest-to-guest TCP throughput on a corral nat network against the
// same two guests on a bridge and taps made by hand, and what a NIC adds to a
// VM's start; each against a reference measured in the same run.
//
// Everything runs inside a network namespace this benchmark makes (`ip netns
// add`): corrald (through `ip netns exec`), its bridge, taps, dnsmasq and
// nftables table, the bare QEMUs and their bridge and taps. The namespace goes,
// with every process left in it, on every exit path.
//
// Figures:
//   1. guest-to-guest TCP throughput: two guests (the test guest, 128 MiB) with
//      one NIC each on a nat network (10.77.0.0/24). The receiver runs busybox
//      `nc -l -p 5001 >/dev/null` (its stdin a FIFO nobody writes: busybox nc
//      half-closes the connection at EOF on its stdin), the sender pipes M MiB
//      (64) of zeros from dd into `nc PEER 5001`, which ends once the receiver
//      has read everything and closed; the sender's shell times it with
//      /proc/uptime (as scripts/guest/init's dd test does). Median of R (3) runs.
//      Reference, in the same run, alternating with corral's side: the very
//      argv corrald used for the two guests (their machine.json; paths moved
//      to this benchmark's temp dir, -S dropped), started by hand on taps and a
//      bridge made with `ip tuntap`/`ip link`, `-netdev
//      tap,ifname=TAP,script=no,downscript=no`: what an admin doing it by hand
//      gets. corrald runs with --no-vhost-net here, so both sides have QEMU's
//      own tap backend. Each run checks, with the taps' counters, that the
//      bytes went through the bridge under test. When /dev/vhost-net exists,
//      corrald is restarted without the flag and the corral side measured again
//      with vhost-net, against the figure without it.
//   2. NIC setup time per start: `POST /api/v1/vms/NAME/actions/start` (waited
//      for: it answers after QEMU's `cont`, not after the guest boots) of the
//      same guest with no NIC (the reference), with 1 and with 4 nat NICs;
//      median of N (10; a start is cheap, and 3 are too few to tell a NIC's
//      cost from a loaded machine's noise) starts each after one untimed
//      warm-up, in rotating order, each followed by a forced stop. Each start
//      is checked to have made its taps, and the next waits until they are gone.
//
// How to read it: under TCG the guests' emulated CPUs are the bound of figure
// 1 on both sides, so a ratio near 1 says that corral adds nothing to the data
// path (the tap fd corrald opens and passes is the same kernel object as one
// QEMU opens by name). Both guest pairs are up for the whole of figure 1, idle
// while the other pair is measured.
//
// Needs root (a network namespace, bridges, taps). Paths: --bin DIR (corrald,
// corral; default $CORRAL_BINARY_DIR/bin), --guest DIR (the test guest; default
// $CORRAL_BINARY_DIR/guest). --mib M, --runs R, --starts N, --keep-log FILE.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <mutex>
#include <regex>
#include <sstream>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <fmt/format.h>
#include <fmt/ranges.h>
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
using corral::ErrorCode;
using corral::Result;
using corral::bench::Clock;
using corral::bench::Daemon;
using corral::bench::describe;
using corral::bench::Janitor;
using corral::bench::list;
using corral::bench::median;
using corral::bench::msSince;
using corral::bench::Paths;
using corral::bench::readFile;
using corral::bench::tail;
using corral::testing::WsTestClient;
using corral::util::UniqueFd;
using json = nlohmann::json;

constexpr const char* kProg = "network_bench";
constexpr const char* kMarker = "CORRAL-GUEST-READY";
constexpr const char* kNet = "lan";
constexpr const char* kSubnet = "10.77.0.0/24";
// The bare side: its bridge, a tap per guest and the addresses typed into them.
constexpr const char* kBareBridge = "nbbr0";
const std::vector<std::string> kBareTaps{"nbtap0", "nbtap1"};
const std::vector<std::string> kBareIps{"10.78.0.2", "10.78.0.3"};
// The guests: sender, receiver.
const std::vector<std::string> kVms{"na", "nb"};

struct Options {
  int mib = 64;
  int runs = 3;
  int starts = 10;
  std::string keepLog;
};

// ---------------------------------------------------------------------------
// The network namespace.

Result<std::string> ip(const std::vector<std::string>& args) {
  corral::util::Command c("ip");
  c.args(args).keepEnv({"PATH"}).stdoutToBuffer().stderrToBuffer().timeout(20000ms);
  auto r = c.run();
  if (!r.ok()) return r.error().context(fmt::format("ip {}", fmt::join(args, " ")));
  return std::move(r->out);
}

// The namespace this run works in. remove() kills every process left in it
// (dnsmasq, QEMUs) and deletes it; main and the signal thread both call it,
// whichever comes first does the work. The Janitor (bench_support.h) cannot
// take it: it knows a daemon and a temp dir, and a namespace is neither.
class Namespace {
 public:
  static Namespace& get() {
    static Namespace n;
    return n;
  }

  Result<void> create(const std::string& name) {
    std::lock_guard lock(mu_);
    CORRAL_TRY(ip({"netns", "add", name}));
    name_ = name;
    CORRAL_TRY(ip({"-n", name_, "link", "set", "lo", "up"}));
    return corral::ok();
  }

  void remove() noexcept {
    std::lock_guard lock(mu_);
    if (name_.empty()) return;
    try {
      for (int round = 0; round < 100; ++round) {
        const std::vector<pid_t> left = pids();
        if (left.empty()) break;
        for (pid_t p : left) ::kill(p, SIGKILL);
        std::this_thread::sleep_for(50ms);
        for (pid_t p : left) ::waitpid(p, nullptr, WNOHANG);  // ours when we are their subreaper
      }
      if (auto r = ip({"netns", "del", name_}); !r.ok())
        std::fprintf(stderr, "%s: %s\n", kProg, r.error().message.c_str());
    } catch (const std::exception& e) {
      std::fprintf(stderr, "%s: removing netns %s: %s\n", kProg, name_.c_str(), e.what());
    }
    name_.clear();
  }

 private:
  std::vector<pid_t> pids() const {
    std::vector<pid_t> out;
    auto r = ip({"netns", "pids", name_});
    if (!r.ok()) return out;
    std::istringstream in(*r);
    for (pid_t p = 0; in >> p;) out.push_back(p);
    return out;
  }

  std::mutex mu_;
  std::string name_;
};

// Bytes sent to the guests (the taps' tx counters) by every port of `bridge`.
Result<uint64_t> txBytesToGuests(const std::string& ns, const std::string& bridge) {
  const json links =
      json::parse(CORRAL_TRY(ip({"-n", ns, "-j", "-s", "link", "show", "master", bridge})), nullptr, false);
  if (!links.is_array()) return Error::internal("ip -j -s link show master " + bridge + ": not a list");
  uint64_t sum = 0;
  for (const json& l : links) sum += l.value(json::json_pointer("/stats64/tx/bytes"), uint64_t{0});
  return sum;
}

// corral's taps in the namespace: crl<vm>n<nic>, not its bridges crlbrN.
Result<int> corralTaps(const std::string& ns) {
  const json links = json::parse(CORRAL_TRY(ip({"-n", ns, "-j", "link", "show"})), nullptr, false);
  int n = 0;
  for (const json& l : links) {
    const std::string name = l.is_object() ? l.value("ifname", "") : "";
    n += name.rfind("crl", 0) == 0 && name.rfind("crlbr", 0) != 0;
  }
  return n;
}

// ---------------------------------------------------------------------------
// Serial consoles: corrald's WebSocket, or a bare QEMU's socket.

class Console {
 public:
  explicit Console(std::string name) : name_(std::move(name)) {}
  virtual ~Console() = default;
  virtual Result<void> send(const std::string& bytes) = 0;

  // Waits until the output's tail matches `pattern`; the match and its groups.
  Result<std::vector<std::string>> expect(const std::string& pattern, std::chrono::seconds timeout) {
    const std::regex re(pattern);
    const auto deadline = Clock::now() + timeout;
    while (true) {
      const std::string seen = text();
      std::smatch m;
      if (std::regex_search(seen, m, re)) return std::vector<std::string>(m.begin(), m.end());
      if (Clock::now() >= deadline)
        return Error::timeout(fmt::format("{}: no {:?} on its console in {} s; its tail:\n{}", name_, pattern,
                                          timeout.count(), tail(seen, 1500)));
      CORRAL_TRY(more(std::min(deadline, Clock::now() + 100ms)));
    }
  }

  const std::string& name() const { return name_; }

 protected:
  // The newest output (at least the last 64 KiB).
  virtual std::string text() = 0;
  // Waits for more output, at most until `until`.
  virtual Result<void> more(Clock::time_point until) = 0;

  std::string name_;
};

class DirectConsole final : public Console {
 public:
  DirectConsole(std::string name, UniqueFd fd) : Console(std::move(name)), fd_(std::move(fd)) {}
  Result<void> send(const std::string& bytes) override { return corral::bench::writeAll(fd_.get(), bytes); }

 protected:
  std::string text() override { return buf_; }
  Result<void> more(Clock::time_point until) override {
    auto r = corral::bench::readSome(fd_.get(), buf_, until);
    if (!r.ok()) return r.error().code == ErrorCode::Timeout ? corral::ok() : Result<void>(r.error());
    if (!*r) return Error::unavailable(name_ + ": the bare QEMU closed its serial socket");
    if (buf_.size() > (256u << 10)) buf_.erase(0, buf_.size() - (64u << 10));
    return corral::ok();
  }

 private:
  UniqueFd fd_;
  std::string buf_;
};

class WsConsole final : public Console {
 public:
  WsConsole(std::string name, std::unique_ptr<WsTestClient> ws) : Console(std::move(name)), ws_(std::move(ws)) {}
  Result<void> send(const std::string& bytes) override {
    if (!ws_->send(bytes)) return Error::unavailable(name_ + ": the console WebSocket is closed");
    return corral::ok();
  }

 protected:
  std::string text() override { return ws_->tail(); }
  Result<void> more(Clock::time_point until) override {
    if (ws_->closed()) return Error::unavailable(name_ + ": the console WebSocket closed");
    ws_->waitForBytes(ws_->bytesReceived() + 1, std::chrono::milliseconds(corral::bench::msLeft(until)));
    return corral::ok();
  }

 private:
  std::unique_ptr<WsTestClient> ws_;
};

Result<std::unique_ptr<Console>> openWs(const Daemon& d, const std::string& vm) {
  const json t = CORRAL_TRY(d.api("POST", fmt::format("/api/v1/vms/{}/console/token", vm), {{"kind", "serial"}}));
  auto ws = WsTestClient::open(d.socket(), t.value("path", "") + "?token=" + t.value("token", ""));
  if (ws->status() != 101)
    return Error::unavailable(fmt::format("{}: console WebSocket: HTTP {}: {}", vm, ws->status(), ws->body()));
  return std::unique_ptr<Console>(std::make_unique<WsConsole>("corral guest " + vm, std::move(ws)));
}

// Each command's marker number, unique in the run.
int nextTag() {
  static int n = 0;
  return ++n;
}

// Types cmd + " && echo TAG-$((N+0))-OK" (the shell computes the marker, so
// the echo of the typed line never holds it) and waits for the marker.
Result<void> runShell(Console& c, const std::string& cmd, std::chrono::seconds timeout) {
  const int n = nextTag();
  CORRAL_TRY(c.send(fmt::format("{} && echo NB-C$(({}+0))-OK\r", cmd, n)));
  CORRAL_TRY(c.expect(fmt::format("NB-C{}-OK", n), timeout));
  return corral::ok();
}

// ---------------------------------------------------------------------------
// The bare QEMUs.

// The argv corrald used for a guest, its runtime dir moved to `to`, not paused,
// its tap NICs opened by name (taps[i] for the i-th) by QEMU itself instead of
// fds corrald passed. Refuses any other descriptor passed in (it could not work).
Result<std::vector<std::string>> bareArgv(const fs::path& runtimeDir, const fs::path& to,
                                          const std::vector<std::string>& taps) {
  const json j = json::parse(readFile(runtimeDir / "machine.json"), nullptr, false);
  if (j.is_discarded() || !j.contains("argv"))
    return Error::notFound("no argv in " + (runtimeDir / "machine.json").string());
  std::vector<std::string> out;
  size_t tap = 0;
  bool netdev = false;
  for (std::string a : j["argv"].get<std::vector<std::string>>()) {
    const bool isNetdevValue = std::exchange(netdev, a == "-netdev");
    if (a == "-S") continue;
    if (isNetdevValue && a.rfind("tap,", 0) == 0) {
      // "tap,id=net-nic0,fd=N[,vhost=on,vhostfd=M]": only its id is kept.
      std::string id;
      std::istringstream opts(a);
      for (std::string o; std::getline(opts, o, ',');)
        if (o.rfind("id=", 0) == 0) id = o;
      if (id.empty() || tap >= taps.size()) return Error::internal("cannot rewrite -netdev " + a);
      out.push_back(fmt::format("tap,{},ifname={},script=no,downscript=no", id, taps[tap++]));
      continue;
    }
    if (a.find("fd=") != std::string::npos)
      return Error::failedPrecondition("corrald's argv passes a descriptor: " + a);
    const std::string from = runtimeDir.string();
    for (size_t p = a.find(from); p != std::string::npos; p = a.find(from, p + to.string().size()))
      a.replace(p, from.size(), to.string());
    out.push_back(std::move(a));
  }
  if (tap != taps.size())
    return Error::internal(fmt::format("{} tap NICs in corrald's argv, not {}", tap, taps.size()));
  return out;
}

struct Bare {
  std::unique_ptr<corral::util::Command> qemu;
  std::unique_ptr<Console> console;
  ~Bare() {
    if (qemu) corral::bench::killAndReap(*qemu);
  }
};

// Starts a bare QEMU inside the namespace and connects to its serial socket.
Result<void> startBare(Bare& b, const std::string& ns, const std::string& name, const std::vector<std::string>& argv,
                       const fs::path& dir) {
  b.qemu = std::make_unique<corral::util::Command>("ip");
  b.qemu->args({"netns", "exec", ns})
      .args(argv)
      .keepEnv({"PATH"})
      .stdoutToFile((dir / "qemu.log").string())
      .stderrToStdout()
      .preExec([]() -> Result<void> {
        // Its own session, as corrald's daemonized QEMUs have (the scheduler's
        // autogroups share CPU time between sessions).
        if (::setsid() < 0) return Error::internal("setsid failed");
        return corral::bench::dieWithUs();
      });
  CORRAL_TRY(b.qemu->start());
  const auto deadline = Clock::now() + 30s;
  while (true) {
    auto fd = corral::bench::connectUnix((dir / "serial.sock").string());
    if (fd.ok()) {
      b.console = std::make_unique<DirectConsole>("bare guest " + name, std::move(fd).take());
      return corral::ok();
    }
    if (Clock::now() > deadline)
      return Error::unavailable(name + ": the bare QEMU's serial socket: " + tail(readFile(dir / "qemu.log"), 800));
    std::this_thread::sleep_for(10ms);
  }
}

// ---------------------------------------------------------------------------
// Figure 1: one transfer.

struct Side {
  std::string label;
  Console* sender = nullptr;
  Console* receiver = nullptr;
  std::string receiverIp;
  std::string bridge;  // whose taps' counters must show the bytes
};

struct Transfer {
  double guestS = 0;  // as the sending guest timed it
  double hostMs = 0;  // from Enter until its marker reached us
};

// Listener up on the receiver, then the timed send; MiB gone through the
// bridge's taps are checked against what was sent.
Result<Transfer> transfer(const std::string& ns, const Side& s, int mib) {
  const int n = nextTag();
  // Busybox nc ends its side at EOF on stdin: a FIFO opened read-write never
  // gives one. The listener is up once the kernel lists port 5001 (0x1389) in
  // LISTEN (0A), over IPv4 or IPv6.
  CORRAL_TRY(s.receiver->send(fmt::format(
      "mkfifo /tmp/nbf 2>/dev/null; nc -l -p 5001 <>/tmp/nbf >/dev/null & "
      "until grep -qs ':1389 0*:0000 0A' /proc/net/tcp /proc/net/tcp6; do usleep 10000; done; echo NB-L$(({}+0))-OK\r",
      n)));
  CORRAL_TRY(s.receiver->expect(fmt::format("NB-L{}-OK", n), 60s));
  const uint64_t before = CORRAL_TRY(txBytesToGuests(ns, s.bridge));
  CORRAL_TRY(s.sender->send(
      fmt::format("read a x </proc/uptime; dd if=/dev/zero bs=1M count={} 2>/dev/null | nc {} 5001; s=$?; "
                  "read b x </proc/uptime; echo NB-S$(({}+0)) $s $a $b",
                  mib, s.receiverIp, n)));
  std::this_thread::sleep_for(200ms);  // the typed line's echo, not timed
  const auto t0 = Clock::now();
  CORRAL_TRY(s.sender->send("\r"));
  const auto m = CORRAL_TRY(s.sender->expect(fmt::format(R"(NB-S{} (\d+) (\d+\.\d+) (\d+\.\d+)\s)", n), 600s));
  Transfer t;
  t.hostMs = msSince(t0);
  if (m[1] != "0") return Error::internal(fmt::format("{}: nc to {} failed (status {})", s.label, s.receiverIp, m[1]));
  t.guestS = std::stod(m[3]) - std::stod(m[2]);
  const uint64_t after = CORRAL_TRY(txBytesToGuests(ns, s.bridge));
  if (after - before < static_cast<uint64_t>(mib) << 20)
    return Error::internal(fmt::format("{}: the taps of {} carried {} bytes to the guests, fewer than the {} MiB sent",
                                       s.label, s.bridge, after - before, mib));
  if (t.guestS <= 0) return Error::internal(fmt::format("{}: the guest timed {} s", s.label, t.guestS));
  return t;
}

// ---------------------------------------------------------------------------
// The table.

struct Row {
  std::string what, reference, measured, ratio;
};

void printTable(const std::vector<Row>& rows) {
  std::printf("\n| benchmark | reference (same run) | corral | ratio |\n|---|---|---|---|\n");
  for (const Row& r : rows)
    std::printf("| %s | %s | %s | %s |\n", r.what.c_str(), r.reference.c_str(), r.measured.c_str(), r.ratio.c_str());
}

// ---------------------------------------------------------------------------
// The run.

Result<json> vmNics(const Daemon& d, const std::string& vm) {
  const json v = CORRAL_TRY(d.api("GET", "/api/v1/vms/" + vm));
  return v.value("nics", json::array());
}

// Connects to the consoles of the corral guests (started already) and waits
// until each has its lease (the console's history holds the boot's lines);
// the receiver's (the last guest's) address.
Result<std::string> waitForLeases(const Daemon& d, std::vector<std::unique_ptr<Console>>& consoles) {
  std::string addr;
  for (const std::string& vm : kVms) {
    const json nics = CORRAL_TRY(vmNics(d, vm));
    if (nics.size() != 1 || nics[0].value("ip", "").empty())
      return Error::internal(vm + ": not one NIC with an address: " + nics.dump());
    addr = nics[0].value("ip", "");
    consoles.push_back(CORRAL_TRY(openWs(d, vm)));
    CORRAL_TRY(consoles.back()->expect(
        fmt::format("CORRAL-NET eth0 {} ", std::regex_replace(addr, std::regex(R"(\.)"), R"(\.)")), 180s));
  }
  return addr;
}

// One timed transfer, said on stdout; MiB/s.
Result<double> measure(const std::string& ns, const Side& s, int mib, int run) {
  const Transfer t = CORRAL_TRY(transfer(ns, s, mib));
  const double mibs = mib / t.guestS;
  std::printf("    run %d, %-12s %6.1f MiB/s (the guest timed %.2f s; its marker reached us after %.0f ms)\n", run,
              s.label.c_str(), mibs, t.guestS, t.hostMs);
  std::fflush(stdout);
  return mibs;
}

Result<std::vector<Row>> run(const Paths& paths, const fs::path& root, const std::string& ns, const Options& o) {
  CORRAL_TRY(corral::bench::checkGuest(paths.guest));
  auto d = std::make_unique<Daemon>(kProg, paths, root, o.keepLog, std::vector<std::string>{"--no-vhost-net"});
  d->setNetns(ns);
  CORRAL_TRY(d->start());
  std::printf("  corrald %s, accel tcg, --no-vhost-net, in netns %s\n",
              d->node().value("qemu_version", std::string("?")).c_str(), ns.c_str());
  const bool vhost = fs::exists("/dev/vhost-net");
  if (!vhost) std::printf("  vhost-net: not available on this host (no /dev/vhost-net)\n");
  std::fflush(stdout);
  CORRAL_TRY(d->importGuest("guest"));
  CORRAL_TRY(d->api("POST", "/api/v1/networks", json{{"name", kNet}, {"mode", "nat"}, {"subnet", kSubnet}}));
  const std::string bridge = CORRAL_TRY(d->api("GET", std::string("/api/v1/networks/") + kNet)).value("bridge", "");
  if (bridge.empty()) return Error::internal("network lan has no bridge");

  // ---- 1. throughput
  for (const std::string& vm : kVms)
    CORRAL_TRY(
        d->api("POST", "/api/v1/vms",
               json{{"name", vm}, {"image", "guest"}, {"memory", 128}, {"nics", json::array({{{"network", kNet}}})}}));
  // Started first: their argv is the bare guests'.
  for (const std::string& vm : kVms)
    CORRAL_TRY(d->api("POST", fmt::format("/api/v1/vms/{}/actions/start", vm), json::object()));

  CORRAL_TRY(ip({"-n", ns, "link", "add", kBareBridge, "type", "bridge"}));
  CORRAL_TRY(ip({"-n", ns, "link", "set", kBareBridge, "up"}));
  std::vector<Bare> bare(kVms.size());
  for (size_t i = 0; i < kVms.size(); ++i) {
    CORRAL_TRY(ip({"-n", ns, "tuntap", "add", "dev", kBareTaps[i], "mode", "tap"}));
    CORRAL_TRY(ip({"-n", ns, "link", "set", kBareTaps[i], "master", kBareBridge, "up"}));
    const fs::path dir = root / ("bare-" + kVms[i]);
    fs::create_directories(dir);
    const auto argv = CORRAL_TRY(bareArgv(d->stateDir() / "run" / kVms[i], dir, {kBareTaps[i]}));
    CORRAL_TRY(startBare(bare[i], ns, kVms[i], argv, dir));
  }
  std::printf(
      "  bare QEMUs: corrald's argv of %s and %s, -netdev tap,ifname=%s|%s,script=no,downscript=no on bridge %s\n",
      kVms[0].c_str(), kVms[1].c_str(), kBareTaps[0].c_str(), kBareTaps[1].c_str(), kBareBridge);
  std::fflush(stdout);

  // The corral guests get their leases from corrald's dnsmasq; the bare ones
  // ask in vain (20 tries), then get their addresses typed in.
  std::vector<std::unique_ptr<Console>> ours;
  const std::string corralPeer = CORRAL_TRY(waitForLeases(*d, ours));
  for (size_t i = 0; i < bare.size(); ++i) {
    CORRAL_TRY(bare[i].console->expect(kMarker, 180s));
    CORRAL_TRY(bare[i].console->expect("CORRAL-NET-NONE eth0", 120s));
    CORRAL_TRY(runShell(*bare[i].console, fmt::format("ifconfig eth0 {} netmask 255.255.255.0 up", kBareIps[i]), 60s));
  }
  std::printf("  four guests up: corral's %s -> %s %s on %s, the bare ones' %s -> %s %s on %s\n", kVms[0].c_str(),
              kVms[1].c_str(), corralPeer.c_str(), bridge.c_str(), kVms[0].c_str(), kVms[1].c_str(),
              kBareIps[1].c_str(), kBareBridge);
  std::fflush(stdout);

  const Side corralSide{"corral", ours[0].get(), ours[1].get(), corralPeer, bridge};
  const Side bareSide{"bare", bare[0].console.get(), bare[1].console.get(), kBareIps[1], kBareBridge};
  // Warm-up, untimed: ARP, the guests' nc and dd paths.
  CORRAL_TRY(transfer(ns, corralSide, 1));
  CORRAL_TRY(transfer(ns, bareSide, 1));
  std::printf("  guest-to-guest TCP, %d MiB of zeros through busybox nc, %d runs each, alternating\n", o.mib, o.runs);
  std::vector<double> ref, mine;
  for (int r = 0; r < o.runs; ++r) {
    for (int k = 0; k < 2; ++k) {  // bare first, then corral first, ...
      if ((r + k) % 2 == 0)
        ref.push_back(CORRAL_TRY(measure(ns, bareSide, o.mib, r + 1)));
      else
        mine.push_back(CORRAL_TRY(measure(ns, corralSide, o.mib, r + 1)));
    }
  }
  std::printf("    bare QEMU, bridge + taps by hand  %s  [%s]\n    corral nat network                %s  [%s]\n",
              describe(ref, "MiB/s").c_str(), list(ref).c_str(), describe(mine, "MiB/s").c_str(), list(mine).c_str());
  std::vector<Row> rows;
  rows.push_back(Row{fmt::format("guest-to-guest TCP, {} MiB busybox nc, median of {}", o.mib, o.runs),
                     fmt::format("bare QEMU, own bridge + taps: {:.1f} MiB/s", median(ref)),
                     fmt::format("{:.1f} MiB/s", median(mine)), fmt::format("{:.2f}x", median(mine) / median(ref))});
  std::fflush(stdout);
  bare.clear();  // the bare QEMUs go
  ours.clear();
  for (const std::string& vm : kVms)
    CORRAL_TRY(d->api("POST", fmt::format("/api/v1/vms/{}/actions/stop", vm), json{{"force", true}}));

  if (vhost) {
    // corrald again, vhost-net as configured by default; the same guests.
    d.reset();
    d = std::make_unique<Daemon>(kProg, paths, root, o.keepLog);
    d->setNetns(ns);
    CORRAL_TRY(d->start());
    for (const std::string& vm : kVms)
      CORRAL_TRY(d->api("POST", fmt::format("/api/v1/vms/{}/actions/start", vm), json::object()));
    const std::string argv = readFile(d->stateDir() / "run" / kVms[0] / "machine.json");
    if (argv.find("vhost=on") == std::string::npos) {
      std::printf("  vhost-net: /dev/vhost-net exists, but corrald did not use it (its log says why)\n");
    } else {
      const std::string peer = CORRAL_TRY(waitForLeases(*d, ours));
      const Side vhostSide{"corral+vhost", ours[0].get(), ours[1].get(), peer, bridge};
      CORRAL_TRY(transfer(ns, vhostSide, 1));
      std::vector<double> v;
      for (int r = 0; r < o.runs; ++r) v.push_back(CORRAL_TRY(measure(ns, vhostSide, o.mib, r + 1)));
      std::printf("    corral with vhost-net             %s  [%s]\n", describe(v, "MiB/s").c_str(), list(v).c_str());
      rows.push_back(Row{fmt::format("the same with vhost-net, median of {}", o.runs),
                         fmt::format("corral without (--no-vhost-net): {:.1f} MiB/s", median(mine)),
                         fmt::format("{:.1f} MiB/s", median(v)), fmt::format("{:.2f}x", median(v) / median(mine))});
      ours.clear();
    }
    for (const std::string& vm : kVms)
      CORRAL_TRY(d->api("POST", fmt::format("/api/v1/vms/{}/actions/stop", vm), json{{"force", true}}));
  }

  // ---- 2. NIC setup time per start
  struct Case {
    std::string vm, label;
    int nics;
    std::vector<double> ms;
  };
  std::vector<Case> cases{{"s0", "no NIC", 0, {}}, {"s1", "1 nat NIC", 1, {}}, {"s4", "4 nat NICs", 4, {}}};
  for (const Case& c : cases) {
    json body{{"name", c.vm}, {"image", "guest"}, {"memory", 128}};
    if (c.nics == 0)
      body["no_network"] = true;
    else
      body["nics"] = json::array();
    for (int i = 0; i < c.nics; ++i) body["nics"].push_back({{"network", kNet}});
    CORRAL_TRY(d->api("POST", "/api/v1/vms", body));
    const json nics = CORRAL_TRY(vmNics(*d, c.vm));
    if (static_cast<int>(nics.size()) != c.nics)
      return Error::internal(fmt::format("{}: {} NICs instead of {}: {}", c.vm, nics.size(), c.nics, nics.dump()));
  }
  // One start: timed, its taps checked, then a forced stop and the taps gone.
  auto startOnce = [&](Case& c, bool timed) -> Result<void> {
    const auto t0 = Clock::now();
    CORRAL_TRY(d->api("POST", fmt::format("/api/v1/vms/{}/actions/start", c.vm), json::object()));
    const double ms = msSince(t0);
    const int taps = CORRAL_TRY(corralTaps(ns));
    CORRAL_TRY(d->api("POST", fmt::format("/api/v1/vms/{}/actions/stop", c.vm), json{{"force", true}}));
    if (taps != c.nics) return Error::internal(fmt::format("{}: {} taps while running, not {}", c.vm, taps, c.nics));
    const auto deadline = Clock::now() + 20s;
    while (CORRAL_TRY(corralTaps(ns)) != 0) {
      if (Clock::now() > deadline) return Error::timeout(c.vm + ": its taps are still there 20 s after its stop");
      std::this_thread::sleep_for(20ms);
    }
    if (timed) c.ms.push_back(ms);
    return corral::ok();
  };
  for (Case& c : cases) CORRAL_TRY(startOnce(c, false));
  const int starts = o.starts;
  for (int r = 0; r < starts; ++r)
    for (size_t k = 0; k < cases.size(); ++k) CORRAL_TRY(startOnce(cases[(r + k) % cases.size()], true));
  std::printf("  POST /api/v1/vms/NAME/actions/start (answered after cont), %d starts each, rotating; corrald %s\n",
              starts, vhost ? "with vhost-net as configured by default" : "--no-vhost-net");
  for (const Case& c : cases)
    std::printf("    %-11s %s  [%s]\n", c.label.c_str(), describe(c.ms, "ms").c_str(), list(c.ms).c_str());
  const double m0 = median(cases[0].ms);
  for (size_t k = 1; k < cases.size(); ++k) {
    const double m = median(cases[k].ms);
    const double perNic = (m - m0) / cases[k].nics;
    std::printf("    %s: %+.1f ms per NIC\n", cases[k].label.c_str(), perNic);
    rows.push_back(Row{fmt::format("API start, {}, median of {} ({:+.1f} ms per NIC)", cases[k].label, starts, perNic),
                       fmt::format("no NIC: {:.1f} ms", m0), fmt::format("{:.1f} ms", m),
                       fmt::format("{:.2f}x", m / m0)});
  }
  return rows;
}

int usage() {
  std::fprintf(stderr,
               "usage: network_bench [--bin DIR] [--guest DIR] [--tmp DIR] [--mib M] [--runs R] [--starts N]"
               " [--keep-log FILE]\n"
               "  --mib: MiB per transfer (64); --runs: transfers per side (3); --starts: starts per case (10)\n");
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
    if (a == "--bin")
      paths.bin = v;
    else if (a == "--guest")
      paths.guest = v;
    else if (a == "--tmp")
      tmp = v;
    else if (a == "--mib")
      o.mib = std::max(1, std::atoi(v));
    else if (a == "--runs")
      o.runs = std::max(1, std::atoi(v));
    else if (a == "--starts")
      o.starts = std::max(1, std::atoi(v));
    else if (a == "--keep-log")
      o.keepLog = v;
    else
      return usage();
  }
  if (::geteuid() != 0) {
    std::fprintf(stderr, "%s: needs root (it makes a network namespace, bridges and taps)\n", kProg);
    return 1;
  }

  // The namespace goes on a signal too. dnsmasq, which corrald runs as its own
  // user, rereads its hosts files under the state dir: every directory above
  // them must let it through.
  auto made = corral::bench::beginDaemonBench(
      kProg, tmp, "crnb", [] { Namespace::get().remove(); },
      fs::perms::owner_all | fs::perms::group_exec | fs::perms::others_exec);
  if (!made.ok()) {
    std::fprintf(stderr, "%s: %s\n", kProg, made.error().message.c_str());
    return 1;
  }

  int rc = 0;
  std::vector<Row> rows;
  const std::string ns = fmt::format("crnb-{}", ::getpid());
  try {  // a malformed reply (nlohmann throws) still ends in the cleanup below
    auto r = [&]() -> Result<std::vector<Row>> {
      CORRAL_TRY(Namespace::get().create(ns));
      return run(paths, *made, ns, o);
    }();
    if (r.ok())
      rows = std::move(r).take();
    else {
      std::fprintf(stderr, "%s: %s\n", kProg, r.error().describe().c_str());
      rc = 1;
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "%s: %s\n", kProg, e.what());
    rc = 1;
  }
  Janitor::get().cleanup();   // corrald, every QEMU, the temp dir
  Namespace::get().remove();  // what is left in the namespace (dnsmasq), and the namespace
  if (!rows.empty()) printTable(rows);
  return rc;
}
