// Proves qemu::Machine against a real QEMU (TCG, 128 MiB, the test guest from
// scripts/build-test-guest): it boots to the guest's marker; stops gracefully
// through ACPI and falls back to signals (reported abnormal) when the guest
// ignores ACPI; pauses, resumes and resets with the matching QMP events; reports
// a kill from outside as HostSignal; keeps a flooding console's log within
// 2×max on disk and our memory bounded; cleans up and explains a failed launch;
// reattaches from the runtime record after the first Machine is dropped; and
// refuses a record whose pid now belongs to another process.
//
// The test process makes itself a child subreaper (as corrald does), so that
// the daemonized QEMU becomes its child and its exit status can be read. Every
// QEMU a test starts is SIGKILLed and reaped in TearDown, also when it fails.
#include "qemu/machine.h"

#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <optional>
#include <set>
#include <sstream>
#include <thread>
#include <vector>

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <gtest/gtest.h>

#include <boost/asio/local/stream_protocol.hpp>
#include <boost/asio/write.hpp>

#include "qemu/console_drain.h"
#include "qemu/monitor.h"
#include "qemu/runtime_record.h"
#include "support/temp_dir.h"
#include "util/proc.h"
#include "util/rotating_log.h"

namespace corral::qemu {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using Ms = std::chrono::milliseconds;
using nlohmann::json;

constexpr auto kBootTimeout = 180s;  // TCG on a loaded 2-core machine is slow
constexpr const char* kMarker = "CORRAL-GUEST-READY";

template <class F>
bool pollUntil(F&& done, Ms timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    if (done()) return true;
    std::this_thread::sleep_for(20ms);
  }
  return done();
}

size_t countOf(const std::string& text, const std::string& needle) {
  size_t n = 0;
  for (size_t pos = text.find(needle); pos != std::string::npos; pos = text.find(needle, pos + 1)) ++n;
  return n;
}

uint64_t fileSize(const fs::path& p) {
  std::error_code ec;
  auto s = fs::file_size(p, ec);
  return ec ? 0 : s;
}

// VmRSS of this process in KiB.
long rssKib() {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("VmRSS:", 0) == 0) return std::stol(line.substr(6));
  }
  return -1;
}

class RecordingListener : public MachineListener {
 public:
  void onMachineEvent(const json& event) override {
    std::lock_guard lock(mu_);
    events_.push_back(event.value("event", ""));
    cv_.notify_all();
  }
  void onMachineExit(const ExitInfo& info) override {
    std::lock_guard lock(mu_);
    exits_.push_back(info);
    cv_.notify_all();
  }
  // Waits until `name` was heard at least `count` times.
  bool waitEvent(const std::string& name, size_t count, Ms timeout) {
    std::unique_lock lock(mu_);
    return cv_.wait_for(lock, timeout, [&] {
      return static_cast<size_t>(std::count(events_.begin(), events_.end(), name)) >= count;
    });
  }
  std::optional<ExitInfo> waitExit(Ms timeout) {
    std::unique_lock lock(mu_);
    if (!cv_.wait_for(lock, timeout, [&] { return !exits_.empty(); })) return std::nullopt;
    return exits_.front();
  }
  size_t exitCount() {
    std::lock_guard lock(mu_);
    return exits_.size();
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<std::string> events_;
  std::vector<ExitInfo> exits_;
};

class MachineTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_EQ(::prctl(PR_SET_CHILD_SUBREAPER, 1), 0);
    guestDir_ = testing::testGuestDir();
    ASSERT_TRUE(fs::exists(guestDir_ / "vmlinuz"));
    io_thread_ = std::thread([this] { io_.run(); });
  }

  void TearDown() override {
    // Kill and reap every QEMU this test started, whatever happened.
    for (auto [pid, start] : pids_) {
      if (util::processAlive(pid, start)) ::kill(pid, SIGKILL);
      pollUntil(
          [&] {
            int st = 0;
            pid_t w = ::waitpid(pid, &st, WNOHANG);
            return w == pid || (w < 0 && errno == ECHILD);
          },
          10s);
    }
    guard_.reset();
    io_.stop();
    if (io_thread_.joinable()) io_thread_.join();
  }

  LaunchConfig config(const std::string& extraAppend = "") {
    LaunchConfig cfg;
    cfg.spec.name = "machine-test";
    cfg.spec.memoryMib = 128;
    cfg.spec.accel = Accel::Tcg;  // guests hang under this host's KVM
    cfg.spec.balloon = false;
    cfg.spec.rng = false;
    std::ifstream in(guestDir_ / "cmdline");
    std::string cmdline;
    std::getline(in, cmdline);
    if (!extraAppend.empty()) cmdline += " " + extraAppend;
    cfg.spec.directBoot = DirectBoot{(guestDir_ / "vmlinuz").string(), (guestDir_ / "initramfs.cpio.gz").string(),
                                     cmdline};
    cfg.runtimeDir = dir_.str();
    cfg.qmpTimeout = 30s;
    return cfg;
  }

  std::unique_ptr<Machine> launchOrFail(LaunchConfig cfg) {
    auto m = Machine::launch(io_, std::move(cfg), &listener_);
    if (!m.ok()) {
      ADD_FAILURE() << m.error().describe();
      return nullptr;
    }
    pids_.emplace_back((*m)->pid(), (*m)->startTime());
    return std::move(m).take();
  }

  bool waitForMarker(Machine& m, size_t count = 1) {
    bool seen = pollUntil([&] { return countOf(m.consoleLogTail(1 << 20), kMarker) >= count; }, kBootTimeout);
    if (!seen) ADD_FAILURE() << "no " << kMarker << " x" << count << "; console:\n" << m.consoleLogTail(4096);
    return seen;
  }

  bool runtimeFilesGone() const {
    return !fs::exists(dir_ / Machine::kQmpSocket) && !fs::exists(dir_ / Machine::kSerialSocket) &&
           !fs::exists(dir_ / Machine::kPidfile) && !fs::exists(dir_ / RuntimeRecord::kFileName);
  }

  boost::asio::io_context io_;
  boost::asio::executor_work_guard<boost::asio::io_context::executor_type> guard_{io_.get_executor()};
  std::thread io_thread_;
  testing::TempDir dir_;
  fs::path guestDir_;
  RecordingListener listener_;
  std::vector<std::pair<pid_t, uint64_t>> pids_;
};

TEST_F(MachineTest, BootsAndPowersOffThroughAcpi) {
  auto m = launchOrFail(config());
  ASSERT_TRUE(m);
  EXPECT_TRUE(m->alive());
  EXPECT_TRUE(fs::exists(dir_ / RuntimeRecord::kFileName));
  auto rec = RuntimeRecord::read(dir_.str());
  ASSERT_TRUE(rec.ok()) << rec.error().describe();
  EXPECT_EQ(rec->pid, m->pid());
  EXPECT_EQ(rec->startTime, m->startTime());
  EXPECT_EQ(rec->accel, "tcg");
  EXPECT_EQ((fs::status(dir_ / RuntimeRecord::kFileName).permissions() & fs::perms::all),
            fs::perms::owner_read | fs::perms::owner_write);
  ASSERT_TRUE(waitForMarker(*m));

  auto info = m->shutdown({.force = false, .timeout = 120s, .killGrace = 5s});
  ASSERT_TRUE(info.ok()) << info.error().describe();
  EXPECT_EQ(info->cause, ExitCause::GuestPoweroff) << info->detail;
  EXPECT_FALSE(info->abnormal);
  EXPECT_EQ(info->exitCode, 0);
  EXPECT_FALSE(m->alive());
  auto heard = listener_.waitExit(10s);
  ASSERT_TRUE(heard);
  EXPECT_EQ(heard->cause, ExitCause::GuestPoweroff);
  EXPECT_TRUE(runtimeFilesGone());
  EXPECT_TRUE(fs::exists(dir_ / Machine::kConsoleLog));  // kept for post-mortems
  m.reset();
  EXPECT_EQ(listener_.exitCount(), 1u);
}

TEST_F(MachineTest, HardStopWhenGuestIgnoresAcpi) {
  auto m = launchOrFail(config("corral.ignore_acpi"));
  ASSERT_TRUE(m);
  ASSERT_TRUE(waitForMarker(*m));
  auto info = m->shutdown({.force = false, .timeout = 2s, .killGrace = 10s});
  ASSERT_TRUE(info.ok()) << info.error().describe();
  EXPECT_TRUE(info->abnormal);
  EXPECT_EQ(info->cause, ExitCause::HostRequested) << info->detail;
  EXPECT_FALSE(m->alive());
  EXPECT_TRUE(runtimeFilesGone());
}

TEST_F(MachineTest, ForcedShutdownSkipsAcpi) {
  auto cfg = config();
  cfg.startPaused = true;
  auto m = launchOrFail(std::move(cfg));
  ASSERT_TRUE(m);
  auto st = m->monitor().queryStatus();
  ASSERT_TRUE(st.ok()) << st.error().describe();
  EXPECT_FALSE(st->running);
  auto info = m->shutdown({.force = true, .timeout = 60s, .killGrace = 10s});
  ASSERT_TRUE(info.ok()) << info.error().describe();
  EXPECT_TRUE(info->abnormal);
  EXPECT_EQ(info->cause, ExitCause::HostRequested);
}

TEST_F(MachineTest, PausesAndResumesWithEvents) {
  auto m = launchOrFail(config());
  ASSERT_TRUE(m);
  ASSERT_TRUE(waitForMarker(*m));
  ASSERT_TRUE(m->monitor().stop().ok());
  EXPECT_TRUE(listener_.waitEvent("STOP", 1, 30s));
  auto st = m->monitor().queryStatus();
  ASSERT_TRUE(st.ok());
  EXPECT_FALSE(st->running);
  EXPECT_EQ(st->status, "paused");
  ASSERT_TRUE(m->monitor().cont().ok());
  // One RESUME came from the launch's own `cont`.
  EXPECT_TRUE(listener_.waitEvent("RESUME", 2, 30s));
  st = m->monitor().queryStatus();
  ASSERT_TRUE(st.ok());
  EXPECT_TRUE(st->running);
  auto info = m->shutdown({.force = false, .timeout = 120s, .killGrace = 5s});
  ASSERT_TRUE(info.ok()) << info.error().describe();
  EXPECT_EQ(info->cause, ExitCause::GuestPoweroff);
}

TEST_F(MachineTest, RebootShowsTheMarkerAgain) {
  auto m = launchOrFail(config());
  ASSERT_TRUE(m);
  ASSERT_TRUE(waitForMarker(*m));
  ASSERT_TRUE(m->monitor().systemReset().ok());
  EXPECT_TRUE(listener_.waitEvent("RESET", 1, 30s));
  ASSERT_TRUE(waitForMarker(*m, 2));
  EXPECT_TRUE(m->alive());
  auto info = m->shutdown({.force = false, .timeout = 120s, .killGrace = 5s});
  ASSERT_TRUE(info.ok()) << info.error().describe();
  EXPECT_EQ(info->cause, ExitCause::GuestPoweroff);
}

TEST_F(MachineTest, KillFromOutsideIsHostSignal) {
  auto m = launchOrFail(config());
  ASSERT_TRUE(m);
  ASSERT_EQ(::kill(m->pid(), SIGKILL), 0);
  auto info = listener_.waitExit(30s);
  ASSERT_TRUE(info) << "no onMachineExit";
  EXPECT_EQ(info->cause, ExitCause::HostSignal) << info->detail;
  EXPECT_EQ(info->signal, SIGKILL);
  EXPECT_FALSE(info->abnormal);
  EXPECT_FALSE(m->alive());
  EXPECT_TRUE(pollUntil([&] { return runtimeFilesGone(); }, 10s));
  // shutdown() of a guest already gone reports how it ended.
  auto again = m->shutdown({});
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again->cause, ExitCause::HostSignal);
}

TEST_F(MachineTest, CrashSignalIsReportedAsCrash) {
  auto m = launchOrFail(config());
  ASSERT_TRUE(m);
  ASSERT_EQ(::kill(m->pid(), SIGABRT), 0);  // no core file: launch sets RLIMIT_CORE to 0
  auto info = listener_.waitExit(30s);
  ASSERT_TRUE(info) << "no onMachineExit";
  EXPECT_EQ(info->cause, ExitCause::CrashSignal) << info->detail;
  EXPECT_EQ(info->signal, SIGABRT);
}

TEST_F(MachineTest, FailedConfigureKillsQemuAndCleansUp) {
  auto cfg = config();
  pid_t seen = -1;
  bool recordDuringConfigure = false;
  bool pausedDuringConfigure = false;
  cfg.configure = [&](Monitor& mon) -> Result<void> {
    std::ifstream in(dir_ / Machine::kPidfile);
    in >> seen;
    if (seen > 0) {
      if (auto start = util::processStartTime(seen); start.ok()) pids_.emplace_back(seen, *start);
    }
    recordDuringConfigure = fs::exists(dir_ / RuntimeRecord::kFileName);
    auto st = mon.queryStatus();
    pausedDuringConfigure = st.ok() && !st->running;
    return Error::invalidInput("balloon", "1", "test refuses to configure");
  };
  auto m = Machine::launch(io_, std::move(cfg), &listener_);
  ASSERT_FALSE(m.ok());
  EXPECT_NE(m.error().describe().find("test refuses to configure"), std::string::npos) << m.error().describe();
  ASSERT_GT(seen, 0);
  EXPECT_TRUE(recordDuringConfigure);
  EXPECT_TRUE(pausedDuringConfigure);
  // Killed and reaped: no such process, and not a child of ours any more.
  auto gone = util::readProcStat(seen);
  EXPECT_FALSE(gone.ok()) << "pid " << seen << " state " << (gone.ok() ? gone->state : 0) << " ppid " << (gone.ok() ? gone->ppid : 0) << " comm " << (gone.ok() ? gone->comm : "");
  EXPECT_TRUE(runtimeFilesGone());
}

TEST_F(MachineTest, FloodingConsoleStaysBounded) {
  const size_t max = 64 * 1024;
  auto cfg = config("corral.flood");
  cfg.consoleLogMaxBytes = max;
  auto m = launchOrFail(std::move(cfg));
  ASSERT_TRUE(m);
  std::atomic<uint64_t> tapped{0};
  m->setConsoleTap([&](std::string_view chunk) { tapped += chunk.size(); });
  const fs::path log = dir_ / Machine::kConsoleLog;
  const fs::path log1 = dir_.path() / (std::string(Machine::kConsoleLog) + ".1");
  // The baseline once the flood runs: what launching costs (threads, buffers,
  // the sanitizer's arenas) is not what this test bounds; what the flood adds is.
  ASSERT_TRUE(pollUntil([&] { return tapped.load() > 4 * max; }, kBootTimeout))
      << "only " << tapped.load() << " console bytes";
  long rssBefore = rssKib();
  // Many rotations' worth of output, checking the bound all along.
  bool bounded = true;
  bool flooded = pollUntil(
      [&] {
        if (fileSize(log) + fileSize(log1) > 2 * max) bounded = false;
        return tapped.load() > 40 * max;
      },
      kBootTimeout);
  EXPECT_TRUE(flooded) << "only " << tapped.load() << " console bytes";
  EXPECT_TRUE(bounded);
  EXPECT_LE(fileSize(log), max);
  EXPECT_LE(fileSize(log1), max);
  EXPECT_NE(m->consoleLogTail(4096).find("CORRAL-FLOOD-LINE"), std::string::npos);
  long rssAfter = rssKib();
  EXPECT_LT(rssAfter - rssBefore, 20 * 1024) << "RSS grew from " << rssBefore << " to " << rssAfter << " KiB";
  m->setConsoleTap(nullptr);
  auto info = m->shutdown({.force = false, .timeout = 120s, .killGrace = 5s});
  ASSERT_TRUE(info.ok()) << info.error().describe();
  EXPECT_FALSE(m->alive());
}

TEST_F(MachineTest, LaunchWithBadBinaryCleansUpAndExplains) {
  auto cfg = config();
  cfg.qemuBinary = "/nonexistent/qemu-system-x86_64";
  auto m = Machine::launch(io_, std::move(cfg), &listener_);
  ASSERT_FALSE(m.ok());
  const std::string msg = m.error().describe();
  EXPECT_NE(msg.find("argv: /nonexistent/qemu-system-x86_64"), std::string::npos) << msg;
  EXPECT_NE(msg.find("-accel tcg"), std::string::npos) << msg;
  EXPECT_TRUE(runtimeFilesGone());
  EXPECT_EQ(listener_.exitCount(), 0u);
}

TEST_F(MachineTest, LaunchWithBogusOptionReportsStatusArgvAndLog) {
  auto cfg = config();
  cfg.extraArgs = {"-corral-bogus-option"};
  auto m = Machine::launch(io_, std::move(cfg), &listener_);
  ASSERT_FALSE(m.ok());
  const std::string msg = m.error().describe();
  EXPECT_NE(msg.find("-corral-bogus-option"), std::string::npos) << msg;  // the argv
  EXPECT_NE(msg.find("qemu.log tail:"), std::string::npos) << msg;
  EXPECT_NE(msg.find("invalid option"), std::string::npos) << msg;       // QEMU's own words
  EXPECT_NE(msg.find("exited with status 1"), std::string::npos) << msg;
  EXPECT_TRUE(runtimeFilesGone());
  EXPECT_TRUE(fs::exists(dir_ / Machine::kQemuLog));
}

TEST_F(MachineTest, ReattachesAfterTheFirstMachineIsDropped) {
  auto m = launchOrFail(config());
  ASSERT_TRUE(m);
  ASSERT_TRUE(waitForMarker(*m));
  const pid_t pid = m->pid();
  const uint64_t start = m->startTime();
  m.reset();  // like a daemon restart: the guest must survive
  ASSERT_TRUE(util::processAlive(pid, start));
  EXPECT_TRUE(fs::exists(dir_ / Machine::kQmpSocket));

  // A second launch into the same runtime dir is refused while the guest lives.
  auto twice = Machine::launch(io_, config(), &listener_);
  ASSERT_FALSE(twice.ok());
  EXPECT_EQ(twice.error().code, ErrorCode::FailedPrecondition);

  RecordingListener second;
  auto r = Machine::reattach(io_, dir_.str(), &second);
  ASSERT_TRUE(r.ok()) << r.error().describe();
  auto& again = *r;
  EXPECT_EQ(again->pid(), pid);
  EXPECT_TRUE(again->alive());
  auto st = again->monitor().queryStatus();
  ASSERT_TRUE(st.ok()) << st.error().describe();
  EXPECT_TRUE(st->running);
  EXPECT_NE(again->consoleLogTail(1 << 20).find(kMarker), std::string::npos);
  auto info = again->shutdown({.force = false, .timeout = 120s, .killGrace = 5s});
  ASSERT_TRUE(info.ok()) << info.error().describe();
  EXPECT_EQ(info->cause, ExitCause::GuestPoweroff) << info->detail;
  EXPECT_TRUE(second.waitExit(10s));
  EXPECT_EQ(listener_.exitCount(), 0u);  // the dropped Machine says nothing more
  EXPECT_TRUE(runtimeFilesGone());
}

TEST_F(MachineTest, ReattachRefusesAReusedPid) {
  // No record at all.
  auto none = Machine::reattach(io_, dir_.str(), &listener_);
  ASSERT_FALSE(none.ok());
  EXPECT_EQ(none.error().code, ErrorCode::NotFound);

  // A record whose pid is alive (this very test) but started at another time:
  // the pid was reused, this is not our guest.
  auto self = util::readProcStat(::getpid());
  ASSERT_TRUE(self.ok());
  RuntimeRecord rec;
  rec.argv = {"qemu-system-x86_64"};
  rec.pid = ::getpid();
  rec.startTime = self->startTime + 12345;
  rec.paths = Machine::runtimePaths(dir_.str());
  ASSERT_TRUE(rec.write(dir_.str()).ok());
  auto reused = Machine::reattach(io_, dir_.str(), &listener_);
  ASSERT_FALSE(reused.ok());
  EXPECT_EQ(reused.error().code, ErrorCode::Unavailable) << reused.error().describe();
  EXPECT_TRUE(util::processAlive(::getpid(), self->startTime));  // and nobody was signalled

  // A dead pid, once ours, is refused too.
  pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) ::_exit(0);
  auto childStart = util::processStartTime(child);
  int st = 0;
  ASSERT_EQ(::waitpid(child, &st, 0), child);
  rec.pid = child;
  rec.startTime = childStart.ok() ? *childStart : 1;
  ASSERT_TRUE(rec.write(dir_.str()).ok());
  auto dead = Machine::reattach(io_, dir_.str(), &listener_);
  ASSERT_FALSE(dead.ok());
  EXPECT_EQ(dead.error().code, ErrorCode::Unavailable);
  Machine::cleanupRuntimeDir(dir_.str());
  EXPECT_TRUE(runtimeFilesGone());
}

// ---- Pieces of Machine that need no QEMU.

TEST(RuntimeRecordTest, RoundTripsThroughAPrivateFile) {
  testing::TempDir dir;
  RuntimeRecord rec;
  rec.argv = {"qemu-system-x86_64", "-name", "guest=a b"};
  rec.pid = 4242;
  rec.startTime = 987654321;
  rec.paths = Machine::runtimePaths(dir.str());
  rec.consoleLog = dir.str() + "/console.log";
  rec.consoleLogMaxBytes = 4096;
  rec.qemuLog = dir.str() + "/qemu.log";
  VmSpec spec;
  spec.name = "vm1";
  spec.uuid = "11111111-2222-3333-4444-555555555555";
  spec.memoryMib = 256;
  spec.cpus.count = 2;
  rec.summarize(spec);
  rec.launchTimeUnix = 1700000000;
  rec.metadata = {{"corral.metadata/v1", {{"owner", "alice"}}}};
  ASSERT_TRUE(rec.write(dir.str()).ok());
  EXPECT_EQ(fs::status(dir / RuntimeRecord::kFileName).permissions() & fs::perms::all,
            fs::perms::owner_read | fs::perms::owner_write);
  EXPECT_FALSE(fs::exists(dir.str() + "/machine.json.tmp"));
  auto back = RuntimeRecord::read(dir.str());
  ASSERT_TRUE(back.ok()) << back.error().describe();
  EXPECT_EQ(back->toJson(), rec.toJson());
  EXPECT_EQ(back->accel, "tcg");
  EXPECT_EQ(back->cpus, 2u);
  EXPECT_EQ(back->paths.qmpSocket, dir.str() + "/qmp.sock");
}

TEST(RuntimeRecordTest, RefusesGarbageAndSaysNotFoundWhenMissing) {
  testing::TempDir dir;
  auto missing = RuntimeRecord::read(dir.str());
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.error().code, ErrorCode::NotFound);
  {
    std::ofstream out(dir / RuntimeRecord::kFileName);
    out << "{not json";
  }
  auto bad = RuntimeRecord::read(dir.str());
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.error().code, ErrorCode::InvalidInput);
  {
    std::ofstream out(dir / RuntimeRecord::kFileName);
    out << R"({"version": 1, "argv": [], "pid": 0, "start_time": 1, "paths": {"qmp": "x"}})";
  }
  EXPECT_FALSE(RuntimeRecord::read(dir.str()).ok());  // pid 0 is no process
}

// A peer that writes much more than the socket buffer holds: the drain keeps up,
// the log stays bounded, the tap sees every byte, and close() stops it all.
TEST(ConsoleDrainTest, DrainsEverythingIntoABoundedLog) {
  namespace asio = boost::asio;
  using stream = asio::local::stream_protocol;
  testing::TempDir dir;
  const std::string sock = dir.str() + "/s.sock";
  asio::io_context io;
  auto guard = asio::make_work_guard(io);
  std::thread ioThread([&] { io.run(); });
  stream::acceptor acceptor(io, stream::endpoint(sock));

  const size_t max = 8192;
  auto log = util::RotatingLog::open(dir.str() + "/console.log", max);
  ASSERT_TRUE(log.ok());
  std::shared_ptr<util::RotatingLog> shared(std::move(log).take());
  auto drain = ConsoleDrain::start(io, sock, shared);
  ASSERT_TRUE(drain.ok()) << drain.error().describe();
  std::atomic<uint64_t> tapped{0};
  (*drain)->setTap([&](std::string_view chunk) { tapped += chunk.size(); });

  stream::socket peer(io);
  acceptor.accept(peer);
  const size_t total = 4 * 1024 * 1024;
  std::string chunk(4096, 'x');
  for (size_t sent = 0; sent < total; sent += chunk.size()) {
    chunk.back() = static_cast<char>('a' + (sent / chunk.size()) % 26);
    asio::write(peer, asio::buffer(chunk));  // blocks if the drain ever stops reading
  }
  EXPECT_TRUE(pollUntil([&] { return (*drain)->bytesDrained() == total; }, 30s));
  EXPECT_EQ(tapped.load(), total);
  EXPECT_LE(fileSize(dir / "console.log"), max);
  EXPECT_LE(fileSize(dir / "console.log.1"), max);
  EXPECT_EQ(shared->readTail(1), std::string(1, chunk.back()));

  (*drain)->close();
  EXPECT_TRUE((*drain)->finished());
  boost::system::error_code ec;
  asio::write(peer, asio::buffer(chunk), ec);  // may fail (peer closed) or be dropped
  EXPECT_EQ((*drain)->bytesDrained(), total);

  peer.close();
  acceptor.close();
  guard.reset();
  io.stop();
  ioThread.join();
}

TEST(ConsoleDrainTest, NoListenerIsUnavailable) {
  testing::TempDir dir;
  boost::asio::io_context io;
  auto log = util::RotatingLog::open(dir.str() + "/c.log", 100);
  ASSERT_TRUE(log.ok());
  auto drain = ConsoleDrain::start(io, dir.str() + "/none.sock", std::move(log).take());
  ASSERT_FALSE(drain.ok());
  EXPECT_EQ(drain.error().code, ErrorCode::Unavailable);
}

}  // namespace
}  // namespace corral::qemu
