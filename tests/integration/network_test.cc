// Networking end to end: a real corrald inside a network namespace the test
// made (`ip netns add`, `ip netns exec`), real guests under TCG, real bridges,
// taps, dnsmasq and nftables, all inside that namespace (it goes, with every
// process left in it, when the test ends). Proves:
//  - two guests on a nat network get their pool addresses by DHCP, ping each
//    other and the gateway, resolve each other's hostnames through dnsmasq; the
//    masquerade table is installed; a stopped guest's tap is gone;
//  - a host port forward reaches a server in a user-mode guest, and a second
//    VM cannot take the same host port;
//  - a user-mode guest reaches the outside world but not the host's own
//    services (its loopback behind 10.0.2.2, its addresses on links); a nat
//    guest reaches its gateway's DNS but no other service of the host;
//  - a bridged guest is on the LAN of another namespace the test made (the LAN
//    reaches its HTTP server);
//  - taps are gone after SIGKILL of QEMU, and a daemon restart removes taps a
//    dead guest left behind;
//  - the admin's NIC hook runs per tap with the fixed environment; its failure
//    fails the start and leaves no tap;
//  - an exhausted pool and a hostname collision refuse the create and leave no
//    VM behind; a NIC's address goes back to the pool when it is removed; a
//    network with NICs cannot be deleted;
//  - the cloud-init seed CD carries the instance id, hostname, the owner's SSH
//    key and the NIC's address.
#include <signal.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>
#include <thread>

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <gtest/gtest.h>

#include "support/api_client.h"
#include "support/daemon_harness.h"
#include "support/netns.h"
#include "support/ws_test_client.h"
#include "util/command.h"

namespace corral::testing {
namespace {

using nlohmann::json;
using namespace std::chrono_literals;

constexpr auto kBoot = 90s;
constexpr const char* kMarker = "CORRAL-GUEST-READY";
constexpr const char* kKey =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIDMyyHuYxPFCaZV2zxQLuSEzlcSD3R8kf1jz3wxu4N1v alice@lab";

class NetworkTest : public ::testing::Test {
 protected:
  void SetUp() override {
    h_.setNetns(ns_.name());
    h_.startDaemon();
    h_.importGuest("guest");
  }

  CliResult ok(const std::vector<std::string>& args) {
    auto r = h_.cli(args);
    EXPECT_EQ(r.exitCode, 0) << fmt::format("corral {}", fmt::join(args, " ")) << "\n" << r.err << r.out;
    return r;
  }

  void startVm(const std::string& name, std::vector<std::string> extra) {
    std::vector<std::string> args = {"vm", "create", name, "--image", "guest", "--memory", "128", "--start"};
    args.insert(args.end(), extra.begin(), extra.end());
    ok(args);
    ASSERT_TRUE(h_.waitForLog(name, kMarker, 1, kBoot)) << h_.cli({"vm", "log", name}).out;
  }

  json nics(const std::string& vm) { return h_.cliJson({"vm", "nic", "list", vm}).value("nics", json::array()); }

  // The guest's serial shell: types cmd, which must end by echoing
  // "<tag>-$((a*b))", and waits for "<tag>-<a*b>" (never in the typed text).
  bool shell(const std::string& vm, const std::string& cmd, const std::string& tag, int a, int b,
             std::chrono::seconds timeout = 60s) {
    auto root = ApiClient::unixSocket(h_.socket());
    auto t = root.post(fmt::format("/api/v1/vms/{}/console/token", vm), {{"kind", "serial"}});
    if (t.status != 200) {
      ADD_FAILURE() << t.body;
      return false;
    }
    auto ws = WsTestClient::open(
        h_.socket(), fmt::format("/api/v1/vms/{}/console/serial?token={}", vm, t.json().value("token", "")), {}, true);
    if (!ws) return false;
    ws->send(fmt::format("{} && echo {}-$(({}*{}))\r", cmd, tag, a, b));
    return ws->waitFor(fmt::format("{}-{}", tag, a * b), timeout);
  }

  // corral's taps in the namespace (crl<vm>n<nic>), with their bridge.
  std::map<std::string, std::string> taps() {
    std::map<std::string, std::string> out;
    for (const auto& l : ns_.ipJson({"link", "show"})) {
      std::string name = l.value("ifname", "");
      if (name.rfind("crl", 0) == 0 && name.rfind("crlbr", 0) != 0) out[name] = l.value("master", "");
    }
    return out;
  }

  std::string nft(const std::vector<std::string>& args) {
    util::Command c("ip");
    c.args({"netns", "exec", ns_.name(), "nft"}).args(args).keepEnv({"PATH"}).stdoutToBuffer().stderrToBuffer();
    auto r = c.allowFailureStatus().run();
    return r.ok() ? r->out : "";
  }

  Netns ns_{"corral-net"};  // declared first: it goes after the daemon and its guests
  DaemonHarness h_;
};

TEST_F(NetworkTest, NatGuestsGetPoolAddressesByDhcpAndReachEachOtherAndTheGateway) {
  ok({"network", "create", "lan", "--mode", "nat", "--subnet", "10.77.0.0/24", "--pool-start", "10.77.0.10",
      "--pool-end", "10.77.0.20", "--domain", "lab.test"});
  auto net = h_.cliJson({"network", "show", "lan"});
  EXPECT_EQ(net.value("gateway", ""), "10.77.0.1");
  EXPECT_EQ(net.value("pool_size", 0), 11);
  std::string bridge = net.value("bridge", "");
  ASSERT_FALSE(bridge.empty());
  auto addrs = ns_.ipJson({"addr", "show", "dev", bridge});
  ASSERT_EQ(addrs.size(), 1u);
  bool hasGateway = false;
  for (const auto& a : addrs[0]["addr_info"]) hasGateway |= a.value("local", "") == "10.77.0.1";
  EXPECT_TRUE(hasGateway) << addrs.dump();
  EXPECT_NE(nft({"list", "table", "ip", "corral"}).find("10.77.0.0/24"), std::string::npos) << nft({"list", "ruleset"});

  startVm("a", {"--network", "lan"});
  startVm("b", {"--network", "lan"});
  auto na = nics("a"), nb = nics("b");
  ASSERT_EQ(na.size(), 1u);
  ASSERT_EQ(nb.size(), 1u);
  EXPECT_EQ(na[0].value("ip", ""), "10.77.0.10");
  EXPECT_EQ(nb[0].value("ip", ""), "10.77.0.11");
  EXPECT_EQ(na[0].value("hostname", ""), "a");
  EXPECT_EQ(h_.cliJson({"network", "show", "lan"}).value("pool_used", 0), 2);

  // DHCP gave each guest exactly its pool address.
  EXPECT_TRUE(h_.waitForLog("a", "CORRAL-NET eth0 10.77.0.10", 1, kBoot)) << h_.cli({"vm", "log", "a"}).out;
  EXPECT_TRUE(h_.waitForLog("b", "CORRAL-NET eth0 10.77.0.11", 1, kBoot)) << h_.cli({"vm", "log", "b"}).out;
  auto t = taps();
  EXPECT_EQ(t.size(), 2u);
  for (const auto& [tap, master] : t) EXPECT_EQ(master, bridge) << tap;

  EXPECT_TRUE(shell("a", "ping -c 2 -W 3 10.77.0.11 >/dev/null", "PEER", 6, 7)) << h_.cli({"vm", "log", "a"}).out;
  EXPECT_TRUE(shell("b", "ping -c 2 -W 3 10.77.0.10 >/dev/null", "PEER", 5, 9)) << h_.cli({"vm", "log", "b"}).out;
  EXPECT_TRUE(shell("a", "ping -c 2 -W 3 10.77.0.1 >/dev/null", "GW", 3, 4)) << h_.cli({"vm", "log", "a"}).out;
  // dnsmasq answers the hostnames, short and in the network's domain.
  EXPECT_TRUE(shell("a", "nslookup b.lab.test 10.77.0.1 | grep -q 10.77.0.11", "DNS", 4, 4))
      << h_.cli({"vm", "log", "a"}).out;
  // ...and nothing else of the host's: a service on every host address is refused.
  {
    AcceptCounter hostService(ns_, "0.0.0.0", 18084);
    EXPECT_TRUE(shell("a", "! nc 10.77.0.1 18084 </dev/null", "HOSTSVC", 5, 5)) << h_.cli({"vm", "log", "a"}).out;
    EXPECT_EQ(hostService.accepted(), 0);
  }

  // The taps' counters, in the guest's view, in /metrics.
  auto metrics = ApiClient::unixSocket(h_.socket()).get("/metrics");
  ASSERT_EQ(metrics.status, 200);
  for (const char* family : {"corral_vm_nic_transmit_bytes_total", "corral_vm_nic_receive_packets_total"}) {
    std::string series = fmt::format("{}{{vm=\"a\",nic=\"nic0\",network=\"lan\"}} ", family);
    size_t at = metrics.body.find(series);
    ASSERT_NE(at, std::string::npos) << series << "\n" << metrics.body;
    EXPECT_GT(std::stod(metrics.body.substr(at + series.size())), 0) << series;
  }

  ok({"vm", "stop", "b", "--force"});
  EXPECT_TRUE(DaemonHarness::waitFor([&] { return taps().size() == 1; }, 20s)) << ns_.ip({"link", "show"});
}

TEST_F(NetworkTest, UserModeForwardReachesAGuestServer) {
  // The default network of a fresh install is user-mode.
  auto nets = h_.cliJson({"network", "list"}).value("networks", json::array());
  ASSERT_EQ(nets.size(), 1u);
  EXPECT_EQ(nets[0].value("name", ""), "default");
  EXPECT_EQ(nets[0].value("mode", ""), "user");

  startVm("web", {"--forward", "tcp:18080:80"});
  auto n = nics("web");
  ASSERT_EQ(n.size(), 1u);
  EXPECT_EQ(n[0].value("network", ""), "default");
  EXPECT_EQ(n[0]["forwards"], json::array({"tcp:18080:80"}));
  EXPECT_TRUE(h_.waitForLog("web", "CORRAL-NET eth0 10.0.2.15", 1, kBoot)) << h_.cli({"vm", "log", "web"}).out;
  EXPECT_TRUE(taps().empty());

  std::string answer;
  EXPECT_TRUE(DaemonHarness::waitFor(
      [&] {
        answer = ns_.httpGet("127.0.0.1", 18080).value_or("");
        return answer.find("CORRAL-HTTP-OK") != std::string::npos;
      },
      60s))
      << answer;

  // One host port, one VM.
  auto clash = h_.cli({"vm", "create", "web2", "--image", "guest", "--memory", "128", "--forward", "tcp:18080:22"});
  EXPECT_NE(clash.exitCode, 0);
  EXPECT_NE(clash.err.find("18080"), std::string::npos) << clash.err;
  EXPECT_NE(h_.cli({"vm", "info", "web2"}).exitCode, 0);
  auto bad = h_.cli({"vm", "create", "web3", "--image", "guest", "--memory", "128", "--forward", "tcp:80:80"});
  EXPECT_NE(bad.exitCode, 0);
  EXPECT_NE(bad.err.find("forward"), std::string::npos) << bad.err;
}

// Proves a guest on the default user-mode network reaches the outside world (a
// server in another namespace, routed through the host) and none of the host's
// own services: not one bound to the host's 127.0.0.1 (which slirp offers the
// guest as 10.0.2.2), not one on the host's address on a link. The servers count
// what arrived, so "refused" is the host's word, not only the guest's.
TEST_F(NetworkTest, UserModeGuestReachesTheOutsideButNotTheHost) {
  Netns outside("corral-out");
  ns_.ip({"link", "add", "veth-h", "type", "veth", "peer", "name", "veth-o", "netns", outside.name()});
  ns_.ip({"addr", "add", "192.0.2.1/24", "dev", "veth-h"});
  ns_.ip({"link", "set", "veth-h", "up"});
  outside.ip({"addr", "add", "192.0.2.2/24", "dev", "veth-o"});
  outside.ip({"link", "set", "veth-o", "up"});
  AcceptCounter world(outside, "192.0.2.2", 18083);
  AcceptCounter hostLoopback(ns_, "127.0.0.1", 18081);
  AcceptCounter hostLink(ns_, "0.0.0.0", 18082);

  startVm("probe", {});
  ASSERT_TRUE(h_.waitForLog("probe", "CORRAL-NET eth0 10.0.2.15", 1, kBoot)) << h_.cli({"vm", "log", "probe"}).out;
  EXPECT_TRUE(shell("probe", "nc 192.0.2.2 18083 </dev/null", "WORLD", 6, 6)) << h_.cli({"vm", "log", "probe"}).out;
  EXPECT_EQ(world.accepted(), 1);
  EXPECT_TRUE(shell("probe", "! nc 10.0.2.2 18081 </dev/null", "LOOP", 7, 8)) << h_.cli({"vm", "log", "probe"}).out;
  EXPECT_TRUE(shell("probe", "! nc 192.0.2.1 18082 </dev/null", "LINK", 8, 9)) << h_.cli({"vm", "log", "probe"}).out;
  EXPECT_EQ(hostLoopback.accepted(), 0);
  EXPECT_EQ(hostLink.accepted(), 0);
  // The host itself still reaches its own services (the rules are the guests' only).
  (void)ns_.httpGet("127.0.0.1", 18081, 2000);
  EXPECT_TRUE(DaemonHarness::waitFor([&] { return hostLoopback.accepted() == 1; }, 10s));
}

TEST_F(NetworkTest, BridgedGuestIsOnTheLanOfAnotherNamespace) {
  Netns lan("corral-lan");
  ns_.ip({"link", "add", "br-lan", "type", "bridge"});
  ns_.ip({"link", "set", "br-lan", "up"});
  ns_.ip({"link", "add", "veth-c", "type", "veth", "peer", "name", "veth-l", "netns", lan.name()});
  ns_.ip({"link", "set", "veth-c", "master", "br-lan", "up"});
  lan.ip({"addr", "add", "192.168.77.1/24", "dev", "veth-l"});
  lan.ip({"link", "set", "veth-l", "up"});

  ok({"network", "create", "office", "--mode", "bridged", "--bridge", "br-lan", "--subnet", "192.168.77.0/24",
      "--gateway", "192.168.77.1", "--pool-start", "192.168.77.50", "--pool-end", "192.168.77.60"});
  auto missing = h_.cli(
      {"network", "create", "nowhere", "--mode", "bridged", "--bridge", "br-none", "--subnet", "192.168.78.0/24"});
  EXPECT_NE(missing.exitCode, 0);
  EXPECT_NE(missing.err.find("bridge"), std::string::npos) << missing.err;

  startVm("w", {"--network", "office"});
  auto n = nics("w");
  ASSERT_EQ(n.size(), 1u);
  EXPECT_EQ(n[0].value("ip", ""), "192.168.77.50");
  auto t = taps();
  ASSERT_EQ(t.size(), 1u);
  EXPECT_EQ(t.begin()->second, "br-lan");

  // No DHCP on this LAN: once the guest gave up asking, it takes its pool
  // address by hand (a real guest reads it from the cloud-init seed).
  ASSERT_TRUE(h_.waitForLog("w", "CORRAL-NET-NONE eth0", 1, kBoot)) << h_.cli({"vm", "log", "w"}).out;
  EXPECT_TRUE(
      shell("w", "ifconfig eth0 192.168.77.50 netmask 255.255.255.0 up && ping -c 2 -W 3 192.168.77.1", "LAN", 7, 7))
      << h_.cli({"vm", "log", "w"}).out;
  std::string answer = lan.httpGet("192.168.77.50", 80).value_or("");
  EXPECT_NE(answer.find("CORRAL-HTTP-OK"), std::string::npos) << answer;
  ok({"vm", "stop", "w", "--force"});
}

TEST_F(NetworkTest, TapsGoWithTheirQemuAndADaemonRestartRemovesLeftovers) {
  ok({"network", "create", "lan", "--mode", "nat", "--subnet", "10.79.0.0/24"});
  startVm("k", {"--network", "lan", "--on-crash", "stop"});
  ASSERT_EQ(taps().size(), 1u);

  auto pids = h_.qemuPids();
  ASSERT_EQ(pids.size(), 1u);
  ::kill(pids[0], SIGKILL);
  EXPECT_TRUE(DaemonHarness::waitFor([&] { return taps().empty(); }, 20s)) << ns_.ip({"link", "show"});
  EXPECT_TRUE(h_.waitForState("k", "crashed", 30s) || h_.state("k") == "stopped") << h_.state("k");

  // Daemon gone, guest killed while it was away, and a tap left behind (as a
  // hook script or a crash between open and launch could): the restart clears it.
  ok({"vm", "start", "k"});  // a start begins with a fresh console log
  ASSERT_TRUE(h_.waitForLog("k", kMarker, 1, kBoot)) << h_.cli({"vm", "log", "k"}).out;
  ASSERT_EQ(taps().size(), 1u);
  h_.killDaemon();
  for (pid_t p : h_.qemuPids()) ::kill(p, SIGKILL);
  ns_.ip({"tuntap", "add", "dev", "crl999n0", "mode", "tap"});
  EXPECT_FALSE(taps().empty());
  h_.startDaemon();
  EXPECT_TRUE(DaemonHarness::waitFor([&] { return taps().empty(); }, 20s)) << ns_.ip({"link", "show"});
  // The restarted daemon brought the network back up (bridge, dnsmasq).
  auto net = h_.cliJson({"network", "show", "lan"});
  auto links = ns_.links();
  EXPECT_NE(std::find(links.begin(), links.end(), net.value("bridge", "?")), links.end());
}

// The admin's hook runs once per tap NIC at each start with exactly the
// documented environment, and a failing hook fails the start.
TEST_F(NetworkTest, NicHookSeesTheFixedEnvironment) {
  std::filesystem::path out = h_.dir() / "hook.env";
  std::filesystem::path hook = h_.dir() / "hook";
  {
    std::ofstream f(hook);
    f << "#!/bin/sh\nenv | sort > " << out.string() << "\n[ -e " << (h_.dir() / "fail").string()
      << " ] && exit 3\nexit 0\n";
  }
  std::filesystem::permissions(hook, std::filesystem::perms::owner_all);
  h_.killDaemon();
  h_.startDaemon({"--network-hook", hook.string()});
  ok({"network", "create", "lan", "--mode", "nat", "--subnet", "10.81.0.0/24"});
  startVm("h", {"--network", "lan"});
  std::ifstream in(out);
  std::string env((std::istreambuf_iterator<char>(in)), {});
  auto nic = nics("h").at(0);
  std::string tap = taps().begin()->first;
  for (const std::string& line : std::vector<std::string>{"INSTANCE=h", "MAC=" + nic.value("mac", "?"), "MODE=nat",
                                                           "INTERFACE=" + tap, "IP=10.81.0.2", "LINK=crlbr0",
                                                           "BRIDGE=crlbr0", "TAGS="})
    EXPECT_NE(env.find(line + "\n"), std::string::npos) << line << "\n" << env;
  EXPECT_NE(env.find("INTERFACE_INDEX="), std::string::npos) << env;
  // Nothing of corrald's own environment leaks in.
  size_t vars = std::count(env.begin(), env.end(), '\n');
  EXPECT_LE(vars, 12u) << env;

  ok({"vm", "stop", "h", "--force"});
  std::ofstream(h_.dir() / "fail") << "";
  auto refused = h_.cli({"vm", "start", "h"});
  EXPECT_NE(refused.exitCode, 0);
  EXPECT_NE(refused.err.find("hook"), std::string::npos) << refused.err;
  EXPECT_TRUE(taps().empty());
}

TEST_F(NetworkTest, ExhaustedPoolAndHostnameCollisionLeaveNothingBehind) {
  ok({"network", "create", "tiny", "--mode", "nat", "--subnet", "10.78.0.0/29", "--pool-start", "10.78.0.2",
      "--pool-end", "10.78.0.3"});
  ok({"vm", "create", "p1", "--image", "guest", "--memory", "128", "--network", "tiny"});
  ok({"vm", "create", "p2", "--image", "guest", "--memory", "128", "--network", "tiny"});
  EXPECT_EQ(nics("p1")[0].value("ip", ""), "10.78.0.2");
  EXPECT_EQ(nics("p2")[0].value("ip", ""), "10.78.0.3");

  auto full = h_.cli({"vm", "create", "p3", "--image", "guest", "--memory", "128", "--network", "tiny"});
  EXPECT_NE(full.exitCode, 0);
  EXPECT_NE(full.err.find("no free address"), std::string::npos) << full.err;
  EXPECT_NE(h_.cli({"vm", "info", "p3"}).exitCode, 0);
  EXPECT_EQ(h_.cliJson({"vm", "list"}).value("vms", json::array()).size(), 2u);

  // The address comes back with the NIC.
  ok({"vm", "nic", "remove", "p2", "nic0"});
  EXPECT_TRUE(nics("p2").empty());
  auto taken =
      h_.cli({"vm", "create", "p4", "--image", "guest", "--memory", "128", "--network", "tiny", "--hostname", "P1"});
  EXPECT_NE(taken.exitCode, 0);
  EXPECT_NE(taken.err.find("hostname"), std::string::npos) << taken.err;
  EXPECT_NE(h_.cli({"vm", "info", "p4"}).exitCode, 0);
  ok({"vm", "create", "p4", "--image", "guest", "--memory", "128", "--network", "tiny", "--hostname", "www"});
  EXPECT_EQ(nics("p4")[0].value("ip", ""), "10.78.0.3");
  EXPECT_EQ(nics("p4")[0].value("hostname", ""), "www");

  auto bad = h_.cli({"vm", "nic", "add", "p2", "--network", "tiny", "--ip", "10.78.0.9"});
  EXPECT_NE(bad.exitCode, 0);
  EXPECT_NE(bad.err.find("ip"), std::string::npos) << bad.err;

  auto busy = h_.cli({"network", "delete", "tiny"});
  EXPECT_NE(busy.exitCode, 0);
  EXPECT_NE(busy.err.find("p1"), std::string::npos) << busy.err;
  for (std::string vm : {"p1", "p2", "p4"}) ok({"vm", "delete", vm});
  std::string bridge = h_.cliJson({"network", "show", "tiny"}).value("bridge", "");
  ok({"network", "delete", "tiny"});
  ASSERT_FALSE(bridge.empty());
  auto links = ns_.links();
  EXPECT_EQ(std::find(links.begin(), links.end(), bridge), links.end());
  EXPECT_EQ(nft({"list", "table", "ip", "corral"}).find("10.78.0.0"), std::string::npos);
}

TEST_F(NetworkTest, CloudInitSeedCarriesIdentityKeysAndAddress) {
  std::filesystem::path keyFile = h_.dir() / "id.pub";
  { std::ofstream(keyFile) << kKey << "\n"; }
  ok({"user", "add", "alice", "--email", "alice@example.org"});
  ok({"user", "key", "add", "--user", "alice", keyFile.string()});
  ok({"network", "create", "lan", "--mode", "nat", "--subnet", "10.80.0.0/24", "--domain", "lab.test"});
  startVm("seeded", {"--network", "lan", "--hostname", "db1", "--owner", "alice"});
  std::string uuid = h_.vm("seeded").value("uuid", "");
  ASSERT_FALSE(uuid.empty());
  EXPECT_TRUE(shell("seeded",
                    "for d in /dev/sr*; do mount -t iso9660 -o ro $d /mnt 2>/dev/null && [ -e /mnt/meta-data ] && "
                    "break; umount /mnt 2>/dev/null; done; cat /mnt/meta-data /mnt/user-data /mnt/network-config",
                    "SEED", 8, 8))
      << h_.cli({"vm", "log", "seeded"}).out;
  std::string log = h_.cli({"vm", "log", "seeded"}).out;
  EXPECT_NE(log.find(uuid), std::string::npos) << log;
  EXPECT_NE(log.find("db1.lab.test"), std::string::npos) << log;
  EXPECT_NE(log.find("AAAAC3NzaC1lZDI1NTE5AAAAIDMyyHuYxPFCaZV2zxQLuSEzlcSD3R8kf1jz3wxu4N1v"), std::string::npos);
  EXPECT_NE(log.find("10.80.0.2/24"), std::string::npos) << log;
}

}  // namespace
}  // namespace corral::testing
