// Proves the corral CLI's control-plane commands end to end against a real
// corrald: as root over the unix socket (user, group, member, token, quota), and
// as a user through a TLS remote added with its certificate pinned (vm create
// with owner and contact, start/stop waited for as operations, vm modify with
// --if-version, quota show, op list/wait, events, token revoke -> exit 1), with
// the exit codes and the -o json|csv outputs a script relies on.
#include <filesystem>
#include <fstream>

#include <fmt/format.h>
#include <gtest/gtest.h>

#include "support/api_client.h"
#include "support/daemon_harness.h"

namespace corral::testing {
namespace {

using nlohmann::json;
using namespace std::chrono_literals;
namespace fs = std::filesystem;

std::string binDir() { return std::string(CORRAL_BINARY_DIR) + "/bin"; }

class CliControl : public ::testing::Test {
 protected:
  void SetUp() override {
    port_ = freeLoopbackPort();
    h_.startDaemon({"--listen", fmt::format("127.0.0.1:{}", port_)});
    h_.importGuest("guest");
    config_ = (h_.dir() / "corral-config.json").string();
  }

  // `corral ARGS` as a remote user: no --socket, the config file of this test.
  CliResult remote(const std::vector<std::string>& args, const std::string& stdinText = "") {
    util::Command c(binDir() + "/corral");
    c.args(args).setEnv("CORRAL_CONFIG", config_).stdoutToBuffer().stderrToBuffer().allowFailureStatus().timeout(
        200000ms);
    if (!stdinText.empty()) c.stdinBuffer(stdinText);
    auto r = c.run();
    if (!r.ok()) return {-1, "", r.error().message};
    return {r->status.exitCode, r->out, r->err};
  }

  DaemonHarness h_;
  uint16_t port_ = 0;
  std::string config_;
};

TEST_F(CliControl, RootAdministersUsersAndAUserWorksThroughAPinnedRemote) {
  auto alice = h_.cli({"user", "add", "alice", "--email", "alice@example.org"});  // stdin: /dev/null
  ASSERT_EQ(alice.exitCode, 0) << alice.err;
  EXPECT_NE(alice.err.find("has no password"), std::string::npos) << "a user made without one is told so: " << alice.err;
  // root on the socket has no account of its own for a token: told what to do.
  auto rootToken = h_.cli({"token", "create", "--name", "mine"});
  EXPECT_EQ(rootToken.exitCode, 1);
  EXPECT_NE(rootToken.err.find("corral user add NAME --admin"), std::string::npos) << rootToken.err;
  ASSERT_EQ(h_.cli({"group", "add", "lab", "--description", "the lab"}).exitCode, 0);
  ASSERT_EQ(h_.cli({"group", "member", "add", "lab", "alice"}).exitCode, 0);
  auto dup = h_.cli({"group", "add", "alice"});
  EXPECT_EQ(dup.exitCode, 1) << "a group may not take a user's name";
  auto csv = h_.cli({"group", "list", "-o", "csv"});
  EXPECT_EQ(csv.out, "NAME,DESCRIPTION,MEMBERS\r\nlab,the lab,alice\r\n");  // RFC 4180
  // A set changes what it names and nothing else: two sets make both limits.
  ASSERT_EQ(h_.cli({"quota", "set", "--user", "alice", "--max-vms", "3"}).exitCode, 0);
  ASSERT_EQ(h_.cli({"quota", "set", "--user", "alice", "--max-running", "1"}).exitCode, 0);
  auto limits = h_.cliJson({"quota", "show", "--user", "alice"})["limits"];
  EXPECT_EQ(limits["max_vms"], 3) << limits.dump();
  EXPECT_EQ(limits["max_running"], 1) << limits.dump();
  auto token = h_.cliJson({"token", "create", "--user", "alice", "--name", "laptop"});
  std::string secret = token.value("token", "");
  ASSERT_EQ(secret.rfind("crl_", 0), 0u) << token.dump();

  // The remote: the token from stdin, the self-signed certificate pinned.
  auto added = remote({"remote", "add", "lab", fmt::format("https://127.0.0.1:{}", port_), "--token-stdin",
                       "--accept-certificate"},
                      secret + "\n");
  ASSERT_EQ(added.exitCode, 0) << added.err;
  EXPECT_EQ(fs::status(config_).permissions() & fs::perms::all, fs::perms::owner_read | fs::perms::owner_write);
  std::ifstream cfg(config_);
  std::string cfgText((std::istreambuf_iterator<char>(cfg)), {});
  EXPECT_NE(cfgText.find("fingerprint"), std::string::npos);
  ASSERT_EQ(remote({"remote", "use", "lab"}).exitCode, 0);
  auto listed = remote({"remote", "list"});
  EXPECT_EQ(listed.out.find(secret), std::string::npos) << "remote list must not print the token";
  auto wrongPin = remote({"remote", "add", "bad", fmt::format("https://127.0.0.1:{}", port_), "--token-stdin",
                          "--fingerprint", std::string(95, 'A')},
                         secret + "\n");
  EXPECT_NE(wrongPin.exitCode, 0);

  auto created = remote({"vm", "create", "web", "--image", "guest", "--memory", "96", "--owner", "lab", "--contact",
                         "lab@example.org", "-o", "json"});
  ASSERT_EQ(created.exitCode, 0) << created.err;
  auto vm = json::parse(created.out);
  EXPECT_EQ(vm["owner"], "lab");
  EXPECT_EQ(vm["contact"], "lab@example.org");
  ASSERT_EQ(remote({"vm", "create", "db", "--image", "guest", "--memory", "96"}).exitCode, 0);

  auto started = remote({"vm", "start", "web", "-o", "json"});
  ASSERT_EQ(started.exitCode, 0) << started.err;
  EXPECT_EQ(json::parse(started.out)["state"], "running");
  // alice's own quota allows one running VM (the group's VM counts against lab).
  ASSERT_EQ(remote({"vm", "start", "db"}).exitCode, 0);
  ASSERT_EQ(h_.cli({"vm", "create", "db2", "--image", "guest", "--memory", "96", "--owner", "alice"}).exitCode, 0);
  auto over = remote({"vm", "start", "db2"});
  EXPECT_EQ(over.exitCode, 1);
  EXPECT_NE(over.err.find("max_running"), std::string::npos) << over.err;
  auto quota = remote({"quota", "show", "-o", "json"});
  ASSERT_EQ(quota.exitCode, 0) << quota.err;
  EXPECT_EQ(json::parse(quota.out)["usage"]["running"], 1);

  auto ops = remote({"op", "list", "-o", "json"});
  ASSERT_EQ(ops.exitCode, 0) << ops.err;
  auto opList = json::parse(ops.out);
  if (opList.is_object()) opList = opList["operations"];
  ASSERT_TRUE(opList.is_array() && !opList.empty()) << ops.out;
  std::string opId = opList[0]["id"];
  EXPECT_EQ(remote({"op", "wait", opId}).exitCode, 0);

  // Events: a follower sees the stop of the group's VM. Waited for, never slept
  // for: the daemon counts the follower in /metrics once its WebSocket is open,
  // and the follower's output file shows each event as it prints it.
  const std::string followedFile = (h_.dir() / "events.out").string();
  util::Command follower(binDir() + "/corral");
  follower.args({"events", "-o", "json"}).setEnv("CORRAL_CONFIG", config_).stdoutToFile(followedFile)
      .stderrToBuffer().allowFailureStatus().timeout(60000ms);
  ASSERT_TRUE(follower.start().ok());
  auto root = ApiClient::unixSocket(h_.socket());
  ASSERT_TRUE(DaemonHarness::waitFor(
      [&] { return root.get("/metrics").body.find("\ncorral_event_subscribers 1\n") != std::string::npos; }, 30s))
      << root.get("/metrics").body;
  auto stopped = remote({"vm", "stop", "web", "--force"});
  EXPECT_EQ(stopped.exitCode, 0) << stopped.err;
  ASSERT_EQ(remote({"vm", "stop", "db", "--force"}).exitCode, 0);
  auto followedText = [&] {
    std::ifstream in(followedFile);
    return std::string((std::istreambuf_iterator<char>(in)), {});
  };
  EXPECT_TRUE(DaemonHarness::waitFor(
      [&] { return followedText().find(R"("vm":"db")") != std::string::npos; }, 30s))
      << followedText();
  ::kill(follower.pid(), SIGINT);
  auto followed = follower.wait(10000ms);
  ASSERT_TRUE(followed.ok()) << followed.error().message;
  EXPECT_EQ(followed->exitCode, 0) << follower.err();
  EXPECT_NE(followedText().find(R"("type":"vm.stopped")"), std::string::npos) << followedText();
  EXPECT_NE(followedText().find(R"("vm":"web")"), std::string::npos) << followedText();

  auto info = json::parse(remote({"vm", "info", "web", "-o", "json"}).out);
  int64_t version = info["version"];
  auto stale = remote({"vm", "modify", "web", "--description", "x", "--if-version", std::to_string(version - 1)});
  EXPECT_EQ(stale.exitCode, 1);
  auto modified = remote({"vm", "modify", "web", "--name", "www", "--if-version", std::to_string(version), "-o",
                          "json"});
  ASSERT_EQ(modified.exitCode, 0) << modified.err;
  EXPECT_EQ(json::parse(modified.out)["name"], "www");

  // Revoked: the remote's token no longer works.
  const std::string tokenId = std::to_string(token.value("id", int64_t{0}));
  ASSERT_EQ(h_.cli({"token", "revoke", tokenId}).exitCode, 0);
  auto refused = remote({"vm", "list"});
  EXPECT_EQ(refused.exitCode, 1);
  EXPECT_NE(refused.err.find("token"), std::string::npos) << refused.err;
  // The list shows it revoked, and a second revoke is an error saying when.
  auto tokens = h_.cli({"token", "list", "--user", "alice"});
  EXPECT_NE(tokens.out.find("revoked"), std::string::npos) << tokens.out;
  auto again = h_.cli({"token", "revoke", tokenId});
  EXPECT_EQ(again.exitCode, 1);
  EXPECT_NE(again.err.find("revoked already"), std::string::npos) << again.err;
}

}  // namespace
}  // namespace corral::testing
