// GET /metrics end to end against a real corrald and a real guest under TCG:
//  - an admin (root on the unix socket) gets the text format 0.0.4, and
//    `promtool check metrics` (Debian's prometheus package) accepts it
//    without a single complaint;
//  - the running guest's series are there with sane values: state running,
//    configured memory, balloon at that size, CPU seconds above zero, QMP up,
//    its disk's I/O counters; the node and process series too;
//  - the request counter of a route the test just called went up, labelled
//    with the route's pattern, not the path;
//  - a guest whose QEMU is stopped (SIGSTOP) shows corral_vm_qmp_up 0 and the
//    scrape still answers;
//  - a non-admin's token gets 403 and no credentials get 401.
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <optional>
#include <string>

#include <fmt/format.h>
#include <gtest/gtest.h>

#include "support/api_client.h"
#include "support/daemon_harness.h"
#include "util/command.h"

namespace corral::testing {
namespace {

using namespace std::chrono_literals;

constexpr auto kBoot = 90s;
constexpr const char* kReady = "CORRAL-GUEST-READY";
constexpr const char* kPromtool = "/usr/bin/promtool";

// The value of the sample whose name and labels are exactly `series`
// ("name{a=\"b\"}"), or nothing when the scrape has no such line.
std::optional<double> sample(const std::string& text, const std::string& series) {
  std::string needle = series + " ";
  size_t at = 0;
  while ((at = text.find(needle, at)) != std::string::npos) {
    if (at == 0 || text[at - 1] == '\n') {
      size_t end = text.find('\n', at);
      return std::stod(text.substr(at + needle.size(), end - at - needle.size()));
    }
    at += needle.size();
  }
  return std::nullopt;
}

class MetricsScrapeTest : public ::testing::Test {
 protected:
  void SetUp() override {
    port_ = freeLoopbackPort();
    h_.startDaemon({"--listen", fmt::format("127.0.0.1:{}", port_)});
    h_.importGuest("guest");
    root_ = ApiClient::unixSocket(h_.socket());
  }

  void TearDown() override {
    // Everything the test made goes; the harness kills what is left anyway.
    h_.cli({"vm", "stop", "m1", "--force"});
    h_.cli({"vm", "delete", "m1"});
  }

  std::string scrape() {
    auto r = root_.get("/metrics");
    EXPECT_EQ(r.status, 200) << r.body;
    EXPECT_EQ(r.header("content-type"), "text/plain; version=0.0.4; charset=utf-8");
    return r.body;
  }

  DaemonHarness h_;
  uint16_t port_ = 0;
  ApiClient root_ = ApiClient::unixSocket("");
};

TEST_F(MetricsScrapeTest, AdminScrapePassesPromtoolAndCarriesTheGuest) {
  auto created = h_.cli({"vm", "create", "m1", "--image", "guest", "--memory", "128", "--start"});
  ASSERT_EQ(created.exitCode, 0) << created.err;
  ASSERT_TRUE(h_.waitForLog("m1", kReady, 1, kBoot)) << h_.cli({"vm", "log", "m1"}).out;

  std::string before = scrape();
  ASSERT_EQ(root_.get("/api/v1/vms/m1").status, 200);
  std::string text = scrape();

  // promtool reads the exposition on stdin; "check metrics" lints it too
  // (names, units, _total, HELP) and prints each problem on a line.
  util::Command promtool{kPromtool};
  promtool.args({"check", "metrics"}).stdinBuffer(text).stdoutToBuffer().stderrToBuffer().allowFailureStatus();
  auto checked = promtool.run();
  ASSERT_TRUE(checked.ok()) << checked.error().describe();
  EXPECT_EQ(checked->status.exitCode, 0) << checked->out << checked->err;
  EXPECT_EQ(checked->out + checked->err, "") << "promtool found problems";

  // The guest.
  EXPECT_EQ(sample(text, R"(corral_vm_state{vm="m1",state="running"})"), 1.0) << text;
  EXPECT_EQ(sample(text, R"(corral_vm_state{vm="m1",state="stopped"})"), 0.0) << text;
  EXPECT_EQ(sample(text, R"(corral_vm_memory_bytes{vm="m1"})"), 128.0 * 1024 * 1024);
  EXPECT_EQ(sample(text, R"(corral_vm_balloon_actual_bytes{vm="m1"})"), 128.0 * 1024 * 1024);
  EXPECT_EQ(sample(text, R"(corral_vm_qmp_up{vm="m1"})"), 1.0);
  auto cpu = sample(text, R"(corral_vm_cpu_seconds_total{vm="m1"})");
  ASSERT_TRUE(cpu.has_value()) << text;
  EXPECT_GT(*cpu, 0.0);
  EXPECT_NE(text.find("corral_vm_disk_read_bytes_total{vm=\"m1\",disk=\""), std::string::npos) << text;
  EXPECT_GE(sample(text, "corral_node_committed_guest_memory_bytes").value_or(0), 128.0 * 1024 * 1024);

  // The node and the daemon process.
  EXPECT_GT(sample(text, "corral_node_memory_total_bytes").value_or(0), 0);
  EXPECT_GE(sample(text, "corral_node_cpus").value_or(0), 1);
  EXPECT_GT(sample(text, "process_resident_memory_bytes").value_or(0), 0);
  EXPECT_GT(sample(text, "process_open_fds").value_or(0), 0);
  EXPECT_GE(sample(text, R"(corral_api_open_connections{transport="unix"})").value_or(0), 1) << "the scrape's own";

  // The request just made, counted under its route pattern; the raw path is no label.
  const std::string vmGet = R"(corral_api_requests_total{method="GET",route="/api/v1/vms/{name}",code="200"})";
  auto after = sample(text, vmGet);
  ASSERT_TRUE(after.has_value()) << text;
  EXPECT_GT(*after, sample(before, vmGet).value_or(0));
  EXPECT_EQ(text.find("route=\"/api/v1/vms/m1\""), std::string::npos);
  EXPECT_TRUE(sample(text, R"(corral_api_request_duration_seconds_count{method="GET",route="/api/v1/vms/{name}"})"));
  // QMP commands the daemon sent to start the guest were timed.
  EXPECT_TRUE(sample(text, R"(corral_qmp_command_duration_seconds_count{command="cont"})")) << text;
}

// A guest whose QEMU does not answer (stopped with SIGSTOP: its QMP socket
// stays open but silent) does not wedge the scrape: it answers, with
// corral_vm_qmp_up 0 for that guest; once QEMU runs again it is 1 again.
TEST_F(MetricsScrapeTest, WedgedGuestShowsQmpDownAndDoesNotWedgeTheScrape) {
  auto created = h_.cli({"vm", "create", "m1", "--image", "guest", "--memory", "128", "--start"});
  ASSERT_EQ(created.exitCode, 0) << created.err;
  ASSERT_TRUE(h_.waitForState("m1", "running", kBoot));
  auto pids = h_.qemuPids();
  ASSERT_EQ(pids.size(), 1u);
  ASSERT_EQ(::kill(pids[0], SIGSTOP), 0);
  std::string text = scrape();
  ASSERT_EQ(::kill(pids[0], SIGCONT), 0);
  EXPECT_EQ(sample(text, R"(corral_vm_qmp_up{vm="m1"})"), 0.0) << text;
  EXPECT_EQ(sample(text, R"(corral_vm_state{vm="m1",state="running"})"), 1.0) << "the store's facts are still there";
  // The scrape's own queries that timed out are counted as QMP errors.
  EXPECT_TRUE(DaemonHarness::waitFor(
      [&] { return sample(scrape(), R"(corral_qmp_errors_total{command="query-balloon",kind="timeout"})") >= 1.0; },
      30s));
  // QEMU answers again (the late replies of the wedged scrape are dropped).
  EXPECT_TRUE(DaemonHarness::waitFor([&] { return sample(scrape(), R"(corral_vm_qmp_up{vm="m1"})") == 1.0; }, 30s));
}

TEST_F(MetricsScrapeTest, OnlyAdminsMayScrape) {
  ASSERT_EQ(root_.post("/api/v1/users", {{"login", "bob"}, {"email", "bob@example.org"}}).status, 201);
  auto t = root_.post("/api/v1/tokens", {{"user", "bob"}, {"name", "test"}});
  ASSERT_EQ(t.status, 201) << t.body;
  std::string token = t.json().value("token", "");

  auto anonymous = ApiClient::tls("127.0.0.1", port_).get("/metrics");
  EXPECT_EQ(anonymous.status, 401) << anonymous.body;
  auto bob = ApiClient::tls("127.0.0.1", port_).bearer(token).get("/metrics");
  EXPECT_EQ(bob.status, 403) << bob.body;
  EXPECT_EQ(bob.body.find("corral_"), std::string::npos);
  EXPECT_EQ(root_.get("/metrics").status, 200);

  EXPECT_EQ(root_.request("DELETE", "/api/v1/users/bob").status, 204);
}

}  // namespace
}  // namespace corral::testing
