// Consoles end to end against a real corrald and real guests under TCG:
//  - the serial console over its WebSocket: history on attach, keystrokes typed
//    into the guest's shell and its answer read back, several viewers sharing it,
//    a crashed viewer changing nothing for the others or the guest;
//  - every console token refusal: none, forged, another kind, another VM, used once already,
//    expired, its API token revoked, its user deleted, the key rotated, a
//    foreign browser Origin, a stopped guest; a stranger cannot mint one;
//  - RFB through the VNC WebSocket ("RFB 003.008");
//  - 10 viewers plus one that never reads while the guest floods its console:
//    the 10 see all of it, the silent one is dropped, corrald's memory grows by
//    no more than its bounded queues and the guest still answers. The flood is
//    8 MiB by default (twice a viewer's 4 MiB queue): the guest's emulated UART
//    carries about 150 KiB/s under TCG here, so the 50 MiB takes six
//    minutes; CORRAL_CONSOLE_FLOOD_MIB=50 runs that;
//  - viewers are closed with a reason when the guest stops.
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <filesystem>
#include <thread>

#include <fmt/format.h>
#include <gtest/gtest.h>

#include "core/console_tokens.h"
#include "support/api_client.h"
#include "support/daemon_harness.h"
#include "support/ws_test_client.h"

namespace corral::testing {
namespace {

using nlohmann::json;
using namespace std::chrono_literals;
namespace fs = std::filesystem;

constexpr auto kBoot = 90s;
constexpr const char* kMarker = "CORRAL-GUEST-READY";
constexpr int kTokenTtlSeconds = 10;

class ConsoleTest : public ::testing::Test {
 protected:
  void SetUp() override {
    port_ = freeLoopbackPort();
    h_.startDaemon({"--listen", fmt::format("127.0.0.1:{}", port_), "--console-token-ttl",
                    std::to_string(kTokenTtlSeconds)});
    h_.importGuest("guest");
    root_ = ApiClient::unixSocket(h_.socket());
    for (std::string u : {"bob", "carol", "erin"}) {
      ASSERT_EQ(root_.post("/api/v1/users", {{"login", u}, {"email", u + "@example.org"}}).status, 201);
      auto t = root_.post("/api/v1/tokens", {{"user", u}, {"name", "test"}});
      ASSERT_EQ(t.status, 201) << t.body;
      tokens_[u] = t.json().value("token", "");
      tokenIds_[u] = t.json().value("id", int64_t{0});
    }
    ASSERT_EQ(root_.post("/api/v1/groups", {{"name", "lab"}}).status, 201);
    for (std::string u : {"bob", "erin"}) ASSERT_EQ(root_.request("PUT", "/api/v1/groups/lab/members/" + u).status, 204);
  }

  ApiClient as(const std::string& user) const { return ApiClient::tls("127.0.0.1", port_).bearer(tokens_.at(user)); }

  // A VM of the group lab, running and booted to its shell.
  void startVm(const std::string& name) {
    auto r = h_.cli({"vm", "create", name, "--image", "guest", "--memory", "128", "--owner", "lab", "--start"});
    ASSERT_EQ(r.exitCode, 0) << r.err;
    ASSERT_TRUE(h_.waitForLog(name, kMarker, 1, kBoot)) << h_.cli({"vm", "log", name}).out;
  }

  std::string mint(const ApiClient& c, const std::string& vm, const std::string& kind = "serial") {
    auto r = c.post(fmt::format("/api/v1/vms/{}/console/token", vm), {{"kind", kind}});
    EXPECT_EQ(r.status, 200) << r.body;
    json j = r.json();
    EXPECT_EQ(j.value("kind", ""), kind);
    EXPECT_EQ(j.value("path", ""), fmt::format("/api/v1/vms/{}/console/{}", vm, kind));
    return j.value("token", "");
  }

  std::unique_ptr<WsTestClient> open(const std::string& vm, const std::string& kind, const std::string& token,
                                     const std::map<std::string, std::string>& headers = {}, bool read = true) {
    return WsTestClient::open(h_.socket(), fmt::format("/api/v1/vms/{}/console/{}?token={}", vm, kind, token),
                              headers, read);
  }

  // The guest's shell answers: type an arithmetic echo and wait for its result
  // (which is not in the typed text, so the tty's echo of it cannot match).
  static bool answers(WsTestClient& ws, int a, int b, const std::string& tag, bool binary = true) {
    ws.send(fmt::format("echo $(({}*{})){}\r", a, b, tag), binary);
    return ws.waitFor(fmt::format("{}{}", a * b, tag), 30s);
  }

  DaemonHarness h_;
  uint16_t port_ = 0;
  ApiClient root_ = ApiClient::unixSocket("");
  std::map<std::string, std::string> tokens_;
  std::map<std::string, int64_t> tokenIds_;
};

TEST_F(ConsoleTest, SerialRoundTripHistoryAndSharedViewers) {
  startVm("sv");
  auto a = open("sv", "serial", mint(as("bob"), "sv"));
  ASSERT_EQ(a->status(), 101) << a->body();
  EXPECT_TRUE(a->waitFor(kMarker, 10s)) << "history on attach holds the boot marker: " << a->tail();
  auto b = open("sv", "serial", mint(root_, "sv"));
  ASSERT_EQ(b->status(), 101) << b->body();

  ASSERT_TRUE(answers(*a, 6, 7, "ZZ")) << a->tail();
  EXPECT_TRUE(b->waitFor("42ZZ", 10s)) << "the other viewer sees the same output";
  // Text frames are keystrokes too (xterm.js sends strings).
  ASSERT_TRUE(answers(*b, 7, 9, "QQ", /*binary=*/false)) << b->tail();
  EXPECT_TRUE(a->waitFor("63QQ", 10s));

  // A viewer that vanishes without a goodbye changes nothing for the rest.
  a->abort();
  ASSERT_TRUE(answers(*b, 11, 11, "RR")) << b->tail();
  EXPECT_EQ(h_.state("sv"), "running");
}

TEST_F(ConsoleTest, EveryTokenRefusal) {
  startVm("tv");
  ASSERT_EQ(h_.cli({"vm", "create", "other", "--image", "guest", "--memory", "96", "--owner", "lab"}).exitCode, 0);
  auto status = [&](const std::string& vm, const std::string& kind, const std::string& token,
                    const std::map<std::string, std::string>& headers = {}) {
    auto ws = open(vm, kind, token, headers);
    return std::make_pair(ws->status(), ws->body());
  };

  auto missing = WsTestClient::open(h_.socket(), "/api/v1/vms/tv/console/serial");
  EXPECT_EQ(missing->status(), 401) << missing->body();
  EXPECT_NE(missing->body().find("token"), std::string::npos) << missing->body();

  std::string good = mint(as("bob"), "tv");
  std::string forged = good;
  forged[forged.size() / 3] = forged[forged.size() / 3] == 'A' ? 'B' : 'A';
  EXPECT_EQ(status("tv", "serial", forged).first, 401) << "a payload byte changed";
  std::string badMac = good;
  badMac.back() = badMac.back() == 'A' ? 'B' : 'A';
  EXPECT_EQ(status("tv", "serial", badMac).first, 401) << "a signature byte changed";
  EXPECT_EQ(status("tv", "serial", "not-a-token").first, 401);

  EXPECT_EQ(status("tv", "vnc", good).first, 401) << "a serial token does not open the VNC console";
  EXPECT_EQ(status("tv", "serial", mint(as("bob"), "other")).first, 403) << "a token for another VM";
  EXPECT_EQ(status("other", "serial", mint(as("bob"), "other")).first, 409) << "a stopped guest has no console";
  EXPECT_EQ(status("tv", "serial", good, {{"Origin", "https://evil.example"}}).first, 403)
      << "a page from another site";
  EXPECT_EQ(as("carol").post("/api/v1/vms/tv/console/token", {{"kind", "serial"}}).status, 404)
      << "a stranger cannot mint one";
  EXPECT_EQ(as("bob").post("/api/v1/vms/tv/console/token", {{"kind", "spice"}}).status, 400);

  // Still good after all that: the refusals above were about their own tokens.
  EXPECT_EQ(status("tv", "serial", good).first, 101);
  // ...and now spent: a console token opens one connection.
  auto reused = status("tv", "serial", good);
  EXPECT_EQ(reused.first, 401);
  EXPECT_NE(reused.second.find("already used"), std::string::npos) << reused.second;

  // Its API token revoked: a console token minted with it dies with it.
  std::string viaRevoked = mint(as("bob"), "tv");
  ASSERT_EQ(root_.request("DELETE", fmt::format("/api/v1/tokens/{}", tokenIds_["bob"])).status, 204);
  EXPECT_EQ(status("tv", "serial", viaRevoked).first, 401);

  // Its user deleted.
  std::string erins = mint(as("erin"), "tv"), erinsNext = mint(as("erin"), "tv");
  ASSERT_EQ(status("tv", "serial", erins).first, 101);
  ASSERT_EQ(root_.request("DELETE", "/api/v1/users/erin").status, 204);
  EXPECT_EQ(status("tv", "serial", erinsNext).first, 401);

  // The key rotated: every outstanding token is void, new ones work.
  std::string beforeRotation = mint(root_, "tv");
  ASSERT_EQ(root_.request("POST", "/api/v1/admin/console-key/rotate").status, 204);
  EXPECT_EQ(status("tv", "serial", beforeRotation).first, 401);
  EXPECT_EQ(status("tv", "serial", mint(root_, "tv")).first, 101);

  // Expiry, without waiting out a TTL: the daemon's own key read by this test
  // with a clock moved by `shift` (expiry at the exact second is core's unit
  // test, with an injected clock).
  auto tokensAt = [&](std::chrono::seconds shift) {
    auto t = core::ConsoleTokens::open({.keyFile = fs::path(h_.stateDir()) / "keys" / "console.key",
                                        .ttl = std::chrono::seconds(kTokenTtlSeconds),
                                        .clock = [shift] { return std::chrono::system_clock::now() + shift; }});
    EXPECT_TRUE(t.ok()) << t.error().message;
    return t.ok() ? std::move(t).take() : nullptr;
  };
  // A token minted (with that key) an hour ago is refused as expired.
  auto hourAgo = tokensAt(-1h);
  ASSERT_TRUE(hourAgo);
  auto old = hourAgo->mint({.login = "root", .via = "unix", .vmUuid = h_.vm("tv").value("uuid", "")});
  ASSERT_TRUE(old.ok()) << old.error().message;
  auto expired = status("tv", "serial", old->token);
  EXPECT_EQ(expired.first, 401);
  EXPECT_NE(expired.second.find("expired"), std::string::npos) << expired.second;
  // The daemon mints with --console-token-ttl: valid now, void a TTL later.
  std::string fresh = mint(root_, "tv");
  auto now = tokensAt(0s), afterTtl = tokensAt(std::chrono::seconds(kTokenTtlSeconds + 1));
  ASSERT_TRUE(now && afterTtl);
  EXPECT_TRUE(now->verify(fresh, core::ConsoleKind::Serial).ok());
  auto late = afterTtl->verify(fresh, core::ConsoleKind::Serial);
  ASSERT_FALSE(late.ok());
  EXPECT_NE(late.error().message.find("expired"), std::string::npos) << late.error().message;
}

TEST_F(ConsoleTest, VncWebSocketCarriesRfb) {
  startVm("gv");
  auto ws = open("gv", "vnc", mint(as("bob"), "gv", "vnc"));
  ASSERT_EQ(ws->status(), 101) << ws->body();
  EXPECT_TRUE(ws->waitFor("RFB 003.008\n", 10s)) << "QEMU's VNC server greets through the socket: " << ws->tail();
  // The client's version answer goes through too: the server then offers its
  // security types (a count byte and at least one type), so the stream is two-way.
  uint64_t before = ws->bytesReceived();
  ws->send("RFB 003.008\n");
  EXPECT_TRUE(DaemonHarness::waitFor([&] { return ws->bytesReceived() >= before + 2; }, 10s));
}

// MiB the guest floods its console with: CORRAL_CONSOLE_FLOOD_MIB, else 8.
uint64_t floodMib() {
  const char* v = std::getenv("CORRAL_CONSOLE_FLOOD_MIB");
  const long n = v != nullptr ? std::atol(v) : 0;
  return n > 0 ? static_cast<uint64_t>(n) : 8;
}

TEST_F(ConsoleTest, TenViewersGetAFloodASilentOneIsDroppedMemoryStaysBounded) {
  const uint64_t mib = floodMib();
  startVm("fv");
  std::vector<std::unique_ptr<WsTestClient>> viewers;
  for (int i = 0; i < 10; ++i) {
    viewers.push_back(open("fv", "serial", mint(root_, "fv")));
    ASSERT_EQ(viewers.back()->status(), 101) << viewers.back()->body();
  }
  auto silent = open("fv", "serial", mint(root_, "fv"), {}, /*read=*/false);
  ASSERT_EQ(silent->status(), 101);

  const long baseline = rssKib(h_.daemonPid());
  std::atomic<bool> flooding{true};
  std::atomic<long> peakRss{0};
  std::thread sampler([&] {
    while (flooding.load()) {
      peakRss = std::max(peakRss.load(), rssKib(h_.daemonPid()));
      std::this_thread::sleep_for(100ms);
    }
  });
  // Lines of 64 bytes (more on the wire: the tty adds a CR per line); the
  // marker after it is computed by the shell, so the echoed command line
  // never holds it.
  viewers[0]->send(fmt::format(
      "yes 0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXY | head -c {}; echo FLOOD-$((1+1))-DONE\r",
      mib << 20));
  const auto deadline = std::chrono::seconds(60 + 20 * mib);  // about 3x what TCG needs here
  bool allDone = true;
  for (auto& v : viewers) allDone = v->waitFor("FLOOD-2-DONE", deadline) && allDone;
  flooding = false;
  sampler.join();
  ASSERT_TRUE(allDone) << "viewer 0 got " << viewers[0]->bytesReceived() << " bytes";
  for (auto& v : viewers) EXPECT_GE(v->bytesReceived(), mib << 20);

  silent->startReading();
  EXPECT_TRUE(silent->waitClosed(30s)) << "a viewer that stops reading is dropped";
  EXPECT_LT(silent->bytesReceived(), mib << 20);
  // What corrald may hold: 11 WebSocket queues of at most 4 MiB each, and slack.
  // Holding the flood for the ten (or the silent one) would be 10x more.
  const long grownKib = peakRss.load() - baseline;
  std::printf("corrald RSS %ld KiB before the flood, peak %ld KiB during it (%lu MiB to 10 viewers)\n", baseline,
              peakRss.load(), static_cast<unsigned long>(mib));
  EXPECT_LT(grownKib, (11 * 4 + 8) * 1024) << "corrald's RSS grew by this many KiB";
  EXPECT_TRUE(answers(*viewers[3], 8, 8, "AFTER")) << "the guest still answers";
}

TEST_F(ConsoleTest, ViewersAreToldWhenTheGuestStops) {
  startVm("st");
  auto serial = open("st", "serial", mint(root_, "st"));
  auto vnc = open("st", "vnc", mint(root_, "st", "vnc"));
  ASSERT_EQ(serial->status(), 101);
  ASSERT_EQ(vnc->status(), 101);
  ASSERT_EQ(h_.cli({"vm", "stop", "st", "--force"}).exitCode, 0);
  EXPECT_TRUE(serial->waitClosed(30s));
  EXPECT_EQ(serial->closeReason(), "the guest stopped");
  EXPECT_TRUE(vnc->waitClosed(30s));
}

}  // namespace
}  // namespace corral::testing
