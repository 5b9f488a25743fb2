// Proves Monitor's typed commands send exactly what QEMU 7.2 expects and read what
// it answers (recorded transcripts replayed by FakeQmpServer, which fails on any
// other command), that refusals and malformed replies surface as the right QmpError
// kind, that MonitorEvents hears SHUTDOWN/STOP/RESUME/RESET and the disconnect, and
// finally that all of it holds against a real `qemu-system-x86_64 -machine none`,
// and that changeMedium/ejectMedium fill and empty a real scsi-cd drive.
#include "qemu/monitor.h"

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <future>
#include <thread>

#include <boost/asio/executor_work_guard.hpp>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "qemu/monitor_events.h"
#include "support/fake_qmp_server.h"
#include "support/temp_dir.h"

extern char** environ;

namespace corral::qemu {
namespace {

using namespace std::chrono_literals;
using nlohmann::json;
using testing::FakeQmpServer;
using ::testing::Contains;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

constexpr auto kMonitorTimeout = std::chrono::milliseconds(10s);

// Runs an io_context on its own thread for the test's lifetime.
class IoThread {
 public:
  IoThread() : thread_([this] { io_.run(); }) {}
  ~IoThread() {
    work_.reset();
    thread_.join();
  }
  boost::asio::io_context& io() { return io_; }

 private:
  boost::asio::io_context io_;
  boost::asio::executor_work_guard<boost::asio::io_context::executor_type> work_ =
      boost::asio::make_work_guard(io_);
  std::thread thread_;
};

class MonitorTest : public ::testing::Test {
 protected:
  void TearDown() override { qmp_->close(); }

  Monitor& connect() {
    server_.start();
    auto g = qmp_->connectSync((dir_ / "q.sock").string(), kMonitorTimeout);
    EXPECT_TRUE(g.ok()) << g.error().message;
    return monitor_;
  }

  corral::testing::TempDir dir_;
  IoThread io_;
  std::shared_ptr<QmpTransport> qmp_ = QmpTransport::create(io_.io());
  Monitor monitor_{qmp_, kMonitorTimeout};
  FakeQmpServer server_{dir_ / "q.sock"};
};

TEST_F(MonitorTest, RecordedSessionThroughTypedCommands) {
  server_.loadTranscript("qemu72_session");
  Monitor& m = connect();

  auto v = m.queryVersion();
  ASSERT_TRUE(v.ok()) << v.error().message;
  EXPECT_EQ(v->major, 7);
  EXPECT_EQ(v->minor, 2);
  EXPECT_EQ(v->micro, 22);
  EXPECT_THAT(v->package, HasSubstr("Debian"));

  auto s = m.queryStatus();
  ASSERT_TRUE(s.ok()) << s.error().message;
  EXPECT_FALSE(s->running);
  EXPECT_EQ(s->status, "prelaunch");
  ASSERT_TRUE(m.cont().ok());
  EXPECT_TRUE(m.queryStatus()->running);
  ASSERT_TRUE(m.stop().ok());

  auto kvm = m.queryKvm();
  ASSERT_TRUE(kvm.ok());
  EXPECT_TRUE(kvm->present);
  EXPECT_FALSE(kvm->enabled);

  // 7.2 has no query-accels: QEMU refuses it (Monitor::queryAccels does not send it).
  auto accels = qmp_->executeSync("query-accels", nullptr, kMonitorTimeout);
  ASSERT_FALSE(accels.ok());
  EXPECT_EQ(accels.error().errorClass, "CommandNotFound");

  auto b = m.balloon(1048576);
  ASSERT_FALSE(b.ok());
  EXPECT_EQ(b.error().kind, QmpError::Kind::Refused);
  EXPECT_EQ(b.error().errorClass, "DeviceNotActive");
  EXPECT_EQ(m.queryBalloon().error().errorClass, "DeviceNotActive");
  auto resize = m.blockResize("nope", 1048576);
  ASSERT_FALSE(resize.ok());
  EXPECT_EQ(resize.error().errorClass, "GenericError");
  EXPECT_EQ(resize.error().description, "Cannot find device='' nor node-name='nope'");
  // Converted into the project's Result for the layers above.
  Result<void> plain = std::move(resize);
  EXPECT_EQ(plain.error().code, ErrorCode::FailedPrecondition);

  EXPECT_EQ(qmp_->executeSync("frobnicate", nullptr, kMonitorTimeout).error().kind, QmpError::Kind::Refused);
  ASSERT_TRUE(m.systemReset().ok());
  ASSERT_TRUE(m.systemPowerdown().ok());
  ASSERT_TRUE(m.quit().ok());
  auto shutdown = m.waitEvent("SHUTDOWN", {{"data", {{"reason", "host-qmp-quit"}}}}, kMonitorTimeout);
  ASSERT_TRUE(shutdown.ok()) << shutdown.error().message;
  EXPECT_TRUE(server_.waitFinished());
}

TEST_F(MonitorTest, RecordedCapabilityProbe) {
  server_.loadTranscript("qemu72_probe");
  Monitor& m = connect();

  auto accels = m.queryAccels();
  ASSERT_TRUE(accels.ok()) << accels.error().message;
  EXPECT_THAT(*accels, ElementsAre("tcg", "kvm"));

  auto machines = m.queryMachines();
  ASSERT_TRUE(machines.ok()) << machines.error().message;
  EXPECT_GT(machines->size(), 20u);
  auto pc = std::find_if(machines->begin(), machines->end(), [](const MachineType& t) { return t.isDefault; });
  ASSERT_NE(pc, machines->end());
  EXPECT_EQ(pc->alias, "pc");
  EXPECT_TRUE(std::any_of(machines->begin(), machines->end(),
                          [](const MachineType& t) { return t.alias == "q35" && t.cpuMax == 288; }));

  auto cpus = m.queryCpuDefinitions();
  ASSERT_TRUE(cpus.ok()) << cpus.error().message;
  EXPECT_THAT(*cpus, Contains("qemu64"));
  EXPECT_THAT(*cpus, Contains("max"));

  auto devices = m.qomListTypes("device");
  ASSERT_TRUE(devices.ok()) << devices.error().message;
  EXPECT_THAT(*devices, Contains("virtio-blk-pci"));
  EXPECT_THAT(*devices, Contains("virtio-balloon-pci"));

  ASSERT_TRUE(m.quit().ok());
  EXPECT_TRUE(server_.waitFinished());
}

TEST_F(MonitorTest, MalformedReplyIsProtocolNamingTheCommand) {
  server_.handshake().expectAndReply("query-status", {{"status", "running"}});  // no "running"
  server_.expectAndReply("query-balloon", json::object());                       // no "actual"
  Monitor& m = connect();
  auto s = m.queryStatus();
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.error().kind, QmpError::Kind::Protocol);
  EXPECT_THAT(s.error().message, HasSubstr("query-status"));
  EXPECT_EQ(m.queryBalloon().error().kind, QmpError::Kind::Protocol);
  EXPECT_TRUE(server_.waitFinished());
}

TEST_F(MonitorTest, BalloonAndResizeSendTheirArguments) {
  server_.handshake().expect("balloon", {{"value", 536870912}}).reply(json::object());
  server_.expectAndReply("query-balloon", {{"actual", 536870912}});
  server_.expect("block_resize", {{"node-name", "disk0"}, {"size", 10737418240}}).reply(json::object());
  Monitor& m = connect();
  ASSERT_TRUE(m.balloon(512 << 20).ok());
  EXPECT_EQ(*m.queryBalloon(), 512 << 20);
  ASSERT_TRUE(m.blockResize("disk0", 10LL << 30).ok());
  EXPECT_TRUE(server_.waitFinished());
}

// The CD drive's commands: blockdev-change-medium by qdev id, a raw read-only
// medium (never a probed format), and eject with force.
TEST_F(MonitorTest, ChangeMediumAndEjectSendTheirArguments) {
  server_.handshake()
      .expect("blockdev-change-medium", {{"id", "cd-cdrom"},
                                         {"filename", "/var/lib/corral/images/debian-12.iso"},
                                         {"format", "raw"},
                                         {"read-only-mode", "read-only"}})
      .reply(json::object());
  server_.expect("eject", {{"id", "cd-cdrom"}, {"force", true}}).reply(json::object());
  server_.expect("eject", {{"id", "cd-nope"}, {"force", true}})
      .replyError("DeviceNotFound", "Device 'cd-nope' not found");  // QEMU 7.2's own answer
  Monitor& m = connect();
  ASSERT_TRUE(m.changeMedium("cd-cdrom", "/var/lib/corral/images/debian-12.iso").ok());
  ASSERT_TRUE(m.ejectMedium("cd-cdrom").ok());
  auto refused = m.ejectMedium("cd-nope");
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.error().kind, QmpError::Kind::Refused);
  EXPECT_EQ(refused.error().errorClass, "DeviceNotFound");
  EXPECT_TRUE(server_.waitFinished());
  const auto sent = server_.received();
  ASSERT_EQ(sent.size(), 4u);  // qmp_capabilities first
  EXPECT_EQ(sent[1]["execute"], "blockdev-change-medium");
  EXPECT_EQ(sent[1]["arguments"].size(), 4u);
  EXPECT_EQ(sent[2]["arguments"], (json{{"id", "cd-cdrom"}, {"force", true}}));
}

TEST_F(MonitorTest, QuitTreatsTheConnectionEndingAsDone) {
  server_.handshake().expect("quit").closeConnection();
  Monitor& m = connect();
  EXPECT_TRUE(m.quit().ok());
}

struct RecordingEvents : MonitorEvents {
  std::mutex mu;
  std::vector<std::string> calls;
  std::promise<void> disconnected;
  void add(std::string s) {
    std::lock_guard lock(mu);
    calls.push_back(std::move(s));
  }
  void onShutdown(bool guest, std::string reason) override { add(fmt::format("shutdown {} {}", guest, reason)); }
  void onStop() override { add("stop"); }
  void onResume() override { add("resume"); }
  void onReset(bool guest) override { add(fmt::format("reset {}", guest)); }
  void onDisconnected() override {
    add("disconnected");
    disconnected.set_value();
  }
};

TEST_F(MonitorTest, MonitorEventsHearsTheGuestAndTheEnd) {
  server_.handshake();
  server_.send({{"event", "STOP"}});
  server_.send({{"event", "RESUME"}});
  server_.send({{"event", "RTC_CHANGE"}, {"data", {{"offset", 1}}}});
  server_.send({{"event", "RESET"}, {"data", {{"guest", true}, {"reason", "guest-reset"}}}});
  server_.send({{"event", "SHUTDOWN"}, {"data", {{"guest", true}, {"reason", "guest-shutdown"}}}});
  server_.closeConnection();
  auto events = std::make_shared<RecordingEvents>();
  monitor_.attachEvents(events);
  connect();
  events->disconnected.get_future().wait();
  std::lock_guard lock(events->mu);
  EXPECT_THAT(events->calls, ElementsAre("stop", "resume", "reset true", "shutdown true guest-shutdown", "disconnected"));
}

TEST(MonitorEventsDispatch, IgnoresUnknownAndMalformed) {
  RecordingEvents sink;
  EXPECT_FALSE(dispatchMonitorEvent(json{{"event", "POWERDOWN"}}, sink));
  EXPECT_FALSE(dispatchMonitorEvent(json::array(), sink));
  EXPECT_FALSE(dispatchMonitorEvent(json{{"event", 3}}, sink));
  EXPECT_TRUE(dispatchMonitorEvent(json{{"event", "SHUTDOWN"}, {"data", "odd"}}, sink));
  EXPECT_THAT(sink.calls, ElementsAre("shutdown false "));
}

// ---------------------------------------------------------------- real QEMU

// A qemu-system-x86_64 started for one test, killed and reaped whatever happens.
class QemuProcess {
 public:
  // Without `machine`: -machine none. `extra` is appended to the argv.
  explicit QemuProcess(const std::string& qmpSocket, std::vector<std::string> extra = {}) {
    std::vector<std::string> args = {"qemu-system-x86_64", "-machine", "none", "-S", "-nodefaults",
                                     "-display", "none", "-qmp", "unix:" + qmpSocket + ",server=on,wait=off"};
    args.insert(args.end(), extra.begin(), extra.end());
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
    int rc = posix_spawnp(&pid_, argv[0], &fa, nullptr, argv.data(), environ);
    posix_spawn_file_actions_destroy(&fa);
    if (rc != 0) pid_ = -1;
  }
  ~QemuProcess() {
    if (pid_ > 0 && !exited_) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
    }
  }
  pid_t pid() const { return pid_; }

  // The exit status once QEMU exits by itself within `timeout`.
  std::optional<int> waitExit(std::chrono::milliseconds timeout) {
    auto deadline = std::chrono::steady_clock::now() + timeout;
    while (std::chrono::steady_clock::now() < deadline) {
      int status = 0;
      if (::waitpid(pid_, &status, WNOHANG) == pid_) {
        exited_ = true;
        return status;
      }
      std::this_thread::sleep_for(5ms);  // polling with a deadline, not sleep-and-hope
    }
    return std::nullopt;
  }

 private:
  pid_t pid_ = -1;
  bool exited_ = false;
};

// QEMU creates the socket a moment after it starts: retries until a deadline.
void connectToQemu(QemuProcess& qemu, IoThread& io, const std::string& sock, std::shared_ptr<QmpTransport>& qmp) {
  auto deadline = std::chrono::steady_clock::now() + 30s;
  while (true) {
    qmp = QmpTransport::create(io.io());
    auto g = qmp->connectSync(sock, 10s);
    if (g.ok()) {
      EXPECT_EQ(g->major, 7);
      return;
    }
    qmp->close();
    ASSERT_EQ(g.error().kind, QmpError::Kind::Disconnected) << g.error().message;
    ASSERT_LT(std::chrono::steady_clock::now(), deadline) << g.error().message;
    ASSERT_FALSE(qemu.waitExit(10ms).has_value()) << "qemu exited before its QMP socket came up";
  }
}

TEST(MonitorRealQemu, VersionStatusQuitAndShutdownEvent) {
  corral::testing::TempDir dir;
  const std::string sock = (dir / "qmp.sock").string();
  QemuProcess qemu(sock);
  ASSERT_GT(qemu.pid(), 0) << "cannot start qemu-system-x86_64";
  IoThread io;
  std::shared_ptr<QmpTransport> qmp;
  ASSERT_NO_FATAL_FAILURE(connectToQemu(qemu, io, sock, qmp));

  Monitor m(qmp, 10s);
  auto v = m.queryVersion();
  ASSERT_TRUE(v.ok()) << v.error().message;
  EXPECT_EQ(v->major, 7);
  EXPECT_EQ(v->minor, 2);
  auto s = m.queryStatus();
  ASSERT_TRUE(s.ok()) << s.error().message;
  EXPECT_FALSE(s->running);
  EXPECT_EQ(s->status, "prelaunch");
  auto kvm = m.queryKvm();
  ASSERT_TRUE(kvm.ok()) << kvm.error().message;
  EXPECT_FALSE(kvm->enabled);  // -machine none
  auto accels = m.queryAccels();
  ASSERT_TRUE(accels.ok()) << accels.error().message;
  EXPECT_THAT(*accels, Contains("tcg"));

  ASSERT_TRUE(m.quit().ok());
  auto shutdown = m.waitEvent("SHUTDOWN", {{"data", {{"guest", false}, {"reason", "host-qmp-quit"}}}}, 10s);
  ASSERT_TRUE(shutdown.ok()) << shutdown.error().message;
  auto status = qemu.waitExit(30s);
  ASSERT_TRUE(status.has_value()) << "qemu did not exit after quit";
  EXPECT_TRUE(WIFEXITED(*status) && WEXITSTATUS(*status) == 0);
  qmp->close();
}

// The medium of drive `device` in query-block: its file, "" when the drive is
// empty; nullopt when QEMU has no such drive.
std::optional<std::string> medium(QmpTransport& qmp, const std::string& device) {
  auto r = qmp.executeSync("query-block", nullptr, 10s);
  EXPECT_TRUE(r.ok()) << r.error().message;
  if (!r.ok()) return std::nullopt;
  for (const auto& d : *r) {
    if (d.value("qdev", "") != device) continue;
    if (!d.contains("inserted")) return std::string();
    EXPECT_TRUE(d["inserted"].value("ro", false)) << d.dump();
    EXPECT_EQ(d["inserted"].value("drv", ""), "raw") << d.dump();
    return d["inserted"].value("file", "");
  }
  return std::nullopt;
}

// A scsi-cd on virtio-scsi started with an empty tray (no drive=, as
// buildCommandLine makes it) takes a medium, gives it up to a forced eject, and
// takes another; an unknown drive is a refusal, not a broken connection.
TEST(MonitorRealQemu, ChangeMediumAndEjectOnAnEmptyScsiCdrom) {
  corral::testing::TempDir dir;
  const std::string sock = (dir / "qmp.sock").string();
  const std::string iso = (dir / "a.iso").string();
  {
    std::ofstream out(iso);
    out << std::string(2048 * 20, 'x');  // any file will do as a raw medium
    ASSERT_TRUE(out.good());
  }
  QemuProcess qemu(sock, {"-machine", "q35", "-accel", "tcg", "-device", "virtio-scsi-pci,id=scsi0", "-device",
                          "scsi-cd,bus=scsi0.0,channel=0,scsi-id=0,lun=0,id=cd-cdrom"});
  ASSERT_GT(qemu.pid(), 0) << "cannot start qemu-system-x86_64";
  IoThread io;
  std::shared_ptr<QmpTransport> qmp;
  ASSERT_NO_FATAL_FAILURE(connectToQemu(qemu, io, sock, qmp));
  Monitor m(qmp, 10s);

  EXPECT_EQ(medium(*qmp, "cd-cdrom"), std::string());
  auto changed = m.changeMedium("cd-cdrom", iso);
  ASSERT_TRUE(changed.ok()) << changed.error().message;
  EXPECT_EQ(medium(*qmp, "cd-cdrom"), iso);
  auto ejected = m.ejectMedium("cd-cdrom");
  ASSERT_TRUE(ejected.ok()) << ejected.error().message;
  EXPECT_EQ(medium(*qmp, "cd-cdrom"), std::string());
  ASSERT_TRUE(m.changeMedium("cd-cdrom", iso).ok());
  EXPECT_EQ(medium(*qmp, "cd-cdrom"), iso);
  // Ejecting an empty drive is fine too (a second eject).
  ASSERT_TRUE(m.ejectMedium("cd-cdrom").ok());
  EXPECT_TRUE(m.ejectMedium("cd-cdrom").ok());

  auto nope = m.changeMedium("cd-nope", iso);
  ASSERT_FALSE(nope.ok());
  EXPECT_EQ(nope.error().kind, QmpError::Kind::Refused) << nope.error().message;
  EXPECT_EQ(nope.error().errorClass, "DeviceNotFound");
  auto missing = m.changeMedium("cd-cdrom", (dir / "missing.iso").string());
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.error().kind, QmpError::Kind::Refused) << missing.error().message;
  EXPECT_EQ(medium(*qmp, "cd-cdrom"), std::string());  // a failed change leaves the drive empty

  ASSERT_TRUE(m.quit().ok());
  ASSERT_TRUE(qemu.waitExit(30s).has_value()) << "qemu did not exit after quit";
  qmp->close();
}

}  // namespace
}  // namespace corral::qemu
