// End to end through the real `corral` CLI, a real corrald and real QEMU guests
// under TCG: boot to the guest's marker, graceful ACPI stop, the hard-stop
// fallback, a forced stop that cuts a hung graceful stop short, a graceful stop
// of a paused guest, pause/resume, reboot, surviving SIGKILL of the daemon, crash
// handling with each on_crash policy, a console flood, and every bad-input case
// leaving nothing behind.
#include <signal.h>

#include <filesystem>

#include <fmt/format.h>
#include <gtest/gtest.h>

#include "support/api_client.h"
#include "support/daemon_harness.h"

namespace corral::testing {
namespace {
using namespace std::chrono_literals;
namespace fs = std::filesystem;

constexpr auto kBoot = 90s;
constexpr const char* kMarker = "CORRAL-GUEST-READY";

class DaemonTest : public ::testing::Test {
 protected:
  void SetUp() override {
    h_.startDaemon();
    h_.importGuest("guest");
  }

  void createStarted(const std::string& name, const std::string& image = "guest",
                     const std::string& onCrash = "restart") {
    auto r = h_.cli({"vm", "create", name, "--image", image, "--memory", "128", "--on-crash", onCrash, "--start"});
    ASSERT_EQ(r.exitCode, 0) << r.err;
    ASSERT_EQ(h_.state(name), "running");
    ASSERT_TRUE(h_.waitForLog(name, kMarker, 1, kBoot)) << h_.cli({"vm", "log", name}).out;
  }

  DaemonHarness h_;
};

TEST_F(DaemonTest, BootsToMarkerAndStopsGracefullyThroughAcpi) {
  createStarted("web");
  auto vm = h_.vm("web");
  EXPECT_EQ(vm["accelerator"], "tcg");
  EXPECT_TRUE(vm["pid"].is_number());
  auto r = h_.cli({"vm", "stop", "web", "--timeout", "60"});
  ASSERT_EQ(r.exitCode, 0) << r.err;
  vm = h_.vm("web");
  EXPECT_EQ(vm["state"], "stopped");
  EXPECT_EQ(vm["state_reason"], "") << "a graceful stop needs no kill";
  EXPECT_TRUE(vm["pid"].is_null());
  EXPECT_TRUE(h_.qemuPids().empty());
  // The console log stays readable after the stop.
  EXPECT_NE(h_.cli({"vm", "log", "web"}).out.find(kMarker), std::string::npos);
}

TEST_F(DaemonTest, HardStopFallbackWhenGuestIgnoresAcpi) {
  h_.importGuest("deaf", "corral.ignore_acpi");
  createStarted("deaf", "deaf");
  auto r = h_.cli({"vm", "stop", "deaf", "--timeout", "3"});
  ASSERT_EQ(r.exitCode, 0) << r.err;
  auto vm = h_.vm("deaf");
  EXPECT_EQ(vm["state"], "stopped");
  EXPECT_NE(vm["state_reason"].get<std::string>().find("killed"), std::string::npos) << vm.dump();
  EXPECT_TRUE(h_.qemuPids().empty());
}

// Proves `stop --force` works at once while a graceful stop of a guest that
// ignores ACPI holds the VM (it used to answer "it is stopping" and leave the
// guest to its hour-long stop), and that the graceful stop's operation then ends.
TEST_F(DaemonTest, ForceStopCutsAGracefulStopShort) {
  h_.importGuest("deaf", "corral.ignore_acpi");
  createStarted("deaf", "deaf");
  auto root = ApiClient::unixSocket(h_.socket());
  auto graceful = root.post("/api/v1/vms/deaf/actions/stop", {{"timeout", 3600}});
  ASSERT_EQ(graceful.status, 202) << graceful.body;
  const std::string op = graceful.json().value("id", "");
  ASSERT_TRUE(DaemonHarness::waitFor([&] { return h_.state("deaf") == "stopping"; }, 30s));

  auto forced = h_.cli({"vm", "stop", "deaf", "--force"});
  ASSERT_EQ(forced.exitCode, 0) << forced.err;
  EXPECT_EQ(h_.state("deaf"), "stopped");
  EXPECT_TRUE(h_.qemuPids().empty());
  auto ended = root.get(fmt::format("/api/v1/operations/{}/wait?timeout=30", op));
  ASSERT_EQ(ended.status, 200) << ended.body;
  EXPECT_EQ(ended.json().value("state", ""), "succeeded") << ended.body;
}

// Proves a graceful stop of a paused guest resumes it so that it hears the
// power button: it powers off by itself, nothing is killed.
TEST_F(DaemonTest, GracefulStopOfAPausedGuestResumesItFirst) {
  createStarted("nap");
  ASSERT_EQ(h_.cli({"vm", "pause", "nap"}).exitCode, 0);
  auto r = h_.cli({"vm", "stop", "nap", "--timeout", "30"});
  ASSERT_EQ(r.exitCode, 0) << r.err;
  auto vm = h_.vm("nap");
  EXPECT_EQ(vm["state"], "stopped");
  EXPECT_EQ(vm["state_reason"], "") << "powered off by the guest, not killed: " << vm.dump();
}

TEST_F(DaemonTest, PauseResumeAndReboot) {
  createStarted("pr");
  ASSERT_EQ(h_.cli({"vm", "pause", "pr"}).exitCode, 0);
  EXPECT_EQ(h_.state("pr"), "paused");
  auto again = h_.cli({"vm", "pause", "pr"});
  EXPECT_EQ(again.exitCode, 1);
  EXPECT_NE(again.err.find("paused"), std::string::npos) << "a refused action says the current state";
  ASSERT_EQ(h_.cli({"vm", "resume", "pr"}).exitCode, 0);
  EXPECT_EQ(h_.state("pr"), "running");
  ASSERT_EQ(h_.cli({"vm", "reboot", "pr"}).exitCode, 0);
  EXPECT_TRUE(h_.waitForLog("pr", kMarker, 2, kBoot)) << "the guest booted a second time";
  EXPECT_EQ(h_.state("pr"), "running");
  ASSERT_EQ(h_.cli({"vm", "stop", "pr", "--force"}).exitCode, 0);
}

TEST_F(DaemonTest, GuestsSurviveSigkillOfDaemonAndAreReattached) {
  for (auto n : {"g1", "g2", "g3"}) createStarted(n);
  std::map<std::string, int64_t> pids;
  for (auto n : {"g1", "g2", "g3"}) pids[n] = h_.vm(n)["pid"].get<int64_t>();
  h_.killDaemon();
  EXPECT_EQ(h_.qemuPids().size(), 3u) << "killing corrald must not stop its guests";
  h_.startDaemon();
  for (auto n : {"g1", "g2", "g3"}) {
    auto vm = h_.vm(n);
    EXPECT_EQ(vm["state"], "running") << vm.dump();
    EXPECT_EQ(vm["pid"].get<int64_t>(), pids[n]) << "reattached, not restarted";
  }
  // Reattached guests answer QMP: pause/resume and a graceful stop work.
  ASSERT_EQ(h_.cli({"vm", "pause", "g1"}).exitCode, 0);
  ASSERT_EQ(h_.cli({"vm", "resume", "g1"}).exitCode, 0);
  for (auto n : {"g1", "g2", "g3"}) {
    auto r = h_.cli({"vm", "stop", n, "--timeout", "60"});
    EXPECT_EQ(r.exitCode, 0) << r.err;
    EXPECT_EQ(h_.state(n), "stopped");
  }
  EXPECT_TRUE(h_.qemuPids().empty());
}

TEST_F(DaemonTest, QemuKilledFromOutsideIsCrashedAndOnCrashHonoured) {
  createStarted("keep", "guest", "preserve");
  createStarted("halt", "guest", "stop");
  createStarted("again", "guest", "restart");
  auto oldAgain = h_.vm("again")["pid"].get<int64_t>();
  for (auto n : {"keep", "halt", "again"}) ::kill(static_cast<pid_t>(h_.vm(n)["pid"].get<int64_t>()), SIGKILL);

  EXPECT_TRUE(h_.waitForState("keep", "crashed", 30s)) << h_.vm("keep").dump();
  EXPECT_NE(h_.vm("keep")["state_reason"].get<std::string>().find("killed"), std::string::npos);
  EXPECT_TRUE(h_.waitForState("halt", "stopped", 30s)) << h_.vm("halt").dump();
  EXPECT_NE(h_.vm("halt")["state_reason"].get<std::string>().find("on_crash=stop"), std::string::npos);
  EXPECT_TRUE(DaemonHarness::waitFor(
      [&] {
        auto vm = h_.vm("again");
        return vm["state"] == "running" && vm["pid"].is_number() && vm["pid"].get<int64_t>() != oldAgain;
      },
      30s))
      << h_.vm("again").dump();
  EXPECT_TRUE(h_.waitForLog("again", kMarker, 1, kBoot));
  // A crashed VM can be started again.
  ASSERT_EQ(h_.cli({"vm", "start", "keep"}).exitCode, 0);
  EXPECT_EQ(h_.state("keep"), "running");
}

TEST_F(DaemonTest, ConsoleFloodDoesNotGrowDaemonMemory) {
  h_.importGuest("noisy", "corral.flood");
  ASSERT_EQ(h_.cli({"vm", "create", "noisy", "--image", "noisy", "--memory", "128", "--start"}).exitCode, 0);
  ASSERT_TRUE(h_.waitForLog("noisy", "CORRAL-FLOOD", 1, kBoot));
  const fs::path run = fs::path(h_.stateDir()) / "run" / "noisy";
  auto sizeOf = [&](const char* f) {
    std::error_code ec;
    auto sz = fs::file_size(run / f, ec);
    return ec ? uintmax_t{0} : sz;
  };
  long before = rssKib(h_.daemonPid());
  // The daemon drains the flood for a while: until it has appended 512 KiB to
  // the console log (a wait on what it did, not a sleep). A log that shrank
  // between two looks was rotated: what it holds now is new.
  uintmax_t last = sizeOf("console.log"), drained = 0;
  EXPECT_TRUE(DaemonHarness::waitFor(
      [&] {
        const uintmax_t now = sizeOf("console.log");
        drained += now >= last ? now - last : now;
        last = now;
        return drained >= (512u << 10);
      },
      60s));
  long after = rssKib(h_.daemonPid());
  EXPECT_LT(after - before, 16 * 1024) << "daemon RSS grew from " << before << " to " << after << " KiB";
  EXPECT_LE(sizeOf("console.log") + sizeOf("console.log.1"), 2u << 20) << "the console log is bounded";
  EXPECT_EQ(h_.cli({"vm", "stop", "noisy", "--force"}).exitCode, 0);
}

TEST_F(DaemonTest, BadInputNamesTheFieldAndLeavesNothingBehind) {
  struct Case {
    std::vector<std::string> args;
    std::string field;
  };
  ASSERT_EQ(h_.cli({"vm", "create", "taken", "--image", "guest", "--memory", "128"}).exitCode, 0);
  std::vector<Case> cases = {
      {{"vm", "create", "a;b", "--image", "guest", "--memory", "128"}, "name"},
      {{"vm", "create", "../x", "--image", "guest", "--memory", "128"}, "name"},
      {{"vm", "create", "$(x)", "--image", "guest", "--memory", "128"}, "name"},
      {{"vm", "create", "taken", "--image", "guest", "--memory", "128"}, "name"},
      {{"vm", "create", "small", "--image", "guest", "--memory", "16"}, "memory"},
      {{"vm", "create", "huge", "--image", "guest", "--memory", "64G"}, "memory"},
      {{"vm", "create", "orphan", "--image", "nope", "--memory", "128"}, "image"},
      {{"vm", "create", "badimg", "--image", "../etc", "--memory", "128"}, "image"},
      {{"vm", "create", "cpus", "--image", "guest", "--memory", "128", "--vcpus", "64"}, "vcpus"},
  };
  for (const auto& c : cases) {
    auto r = h_.cli(c.args);
    EXPECT_EQ(r.exitCode, 1) << c.args[2] << ": " << r.err;
    EXPECT_NE(r.err.find("field: " + c.field), std::string::npos) << c.args[2] << ": " << r.err;
  }
  auto vms = h_.cliJson({"vm", "list"});
  ASSERT_EQ(vms["vms"].size(), 1u) << vms.dump();
  EXPECT_EQ(vms["vms"][0]["name"], "taken");
  std::error_code ec;
  for (const auto& d : fs::directory_iterator(fs::path(h_.stateDir()) / "run", ec))
    ADD_FAILURE() << "left behind: " << d.path();
  EXPECT_TRUE(h_.qemuPids().empty());
  // Unknown VMs are 404s with a clear message, for every verb.
  for (auto verb : {"info", "start", "stop", "pause", "resume", "reboot", "delete", "log"}) {
    auto r = h_.cli({"vm", verb, "ghost"});
    EXPECT_EQ(r.exitCode, 1) << verb;
    EXPECT_NE(r.err.find("not found"), std::string::npos) << verb << ": " << r.err;
  }
}

TEST_F(DaemonTest, DeleteRemovesRowAndRuntimeDirAndImageInUseIsKept) {
  createStarted("tmp");
  auto busy = h_.cli({"vm", "delete", "tmp"});
  EXPECT_EQ(busy.exitCode, 1) << "a running VM is not deleted";
  auto inUse = h_.cli({"image", "delete", "guest"});
  EXPECT_EQ(inUse.exitCode, 1);
  EXPECT_NE(inUse.err.find("tmp"), std::string::npos) << "names the VMs using it: " << inUse.err;
  ASSERT_EQ(h_.cli({"vm", "stop", "tmp", "--force"}).exitCode, 0);
  ASSERT_EQ(h_.cli({"vm", "delete", "tmp"}).exitCode, 0);
  EXPECT_FALSE(fs::exists(fs::path(h_.stateDir()) / "run" / "tmp"));
  EXPECT_EQ(h_.cli({"vm", "info", "tmp"}).exitCode, 1);
  EXPECT_EQ(h_.cli({"image", "delete", "guest"}).exitCode, 0);
}

}  // namespace
}  // namespace corral::testing
