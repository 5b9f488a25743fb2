// Proves core/networks' rules against a real SQLite store and, for nat
// networks, the real kernel (bridges, taps), dnsmasq and nftables, all inside a
// network namespace of this test process's own (main() unshares it before any
// thread starts, so nothing touches the host's interfaces):
//  - every network field is validated and named in the error; only admins
//    create and delete; subnets may not overlap;
//  - a nat network's defaults (gateway, pool, DNS, bridge) and its bring-up
//    and tear-down (bridge with the gateway address, dnsmasq, rules);
//  - NICs: the lowest free pool address, default and explicit hostnames, MACs,
//    collisions, an exhausted pool, forwards on user networks only and one VM
//    per host port, release on detach;
//  - tap names, and reconcile's removal of taps whose VM is not running.
#include "core/networks.h"

#include <sched.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <fstream>

#include <fmt/format.h>
#include <gtest/gtest.h>

#include "support/private_netns.h"

#include "host/dnsmasq.h"
#include "support/temp_dir.h"
#include "util/command.h"

namespace corral::core {
namespace {

namespace fs = std::filesystem;

const Principal kAdmin{.login = "root", .admin = true};
const Principal kUser{.login = "alice"};

class NetworksTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!corral::testing::privateNetnsProblem().empty()) GTEST_FAIL() << corral::testing::privateNetnsProblem();
    // Enterable by others: dnsmasq drops root and rereads its hosts files here.
    fs::permissions(tmp_.path(), fs::perms::owner_all | fs::perms::group_exec | fs::perms::others_exec);
    ASSERT_TRUE(dir_.prepare().ok());
    auto s = store::openSqliteStore((tmp_.path() / "state" / "corral.db").string());
    ASSERT_TRUE(s.ok()) << s.error().describe();
    store_ = std::move(s).take();
    nets_ = std::make_unique<Networks>(*store_, dir_, NetworkConfig{});
    auto img = store_->insertImage(
        store::ImageRecord{.name = "demo", .kind = "direct-boot", .kernel = "/k", .createdAt = store::nowRfc3339()});
    ASSERT_TRUE(img.ok()) << img.error().describe();
  }
  void TearDown() override {
    if (!store_) return;
    auto all = store_->listNetworks();
    if (all.ok())
      for (const auto& n : *all)
        if (n.mode == "nat") (void)host::net::stopDnsmasq((dir_.root() / "networks" / n.name).string());
  }

  store::VmRecord vm(const std::string& name) {
    auto v = store_->insertVm(store::VmRecord{.name = name,
                                              .uuid = "uuid-" + name,
                                              .image = "demo",
                                              .memoryMib = 128,
                                              .vcpus = 1,
                                              .createdAt = store::nowRfc3339(),
                                              .owner = "alice"});
    EXPECT_TRUE(v.ok()) << v.error().describe();
    return v.ok() ? *v : store::VmRecord{};
  }

  Error createError(NetworkRequest r) {
    auto made = nets_->create(kAdmin, r);
    EXPECT_FALSE(made.ok()) << r.name;
    return made.ok() ? Error{} : made.error();
  }

  testing::TempDir tmp_;
  host::StateDir dir_{tmp_.path() / "state"};
  std::unique_ptr<store::Store> store_;
  std::unique_ptr<Networks> nets_;
};

TEST_F(NetworksTest, EveryFieldIsValidatedAndNamed) {
  struct Case {
    NetworkRequest req;
    std::string field;
  };
  std::vector<Case> cases = {
      {{.name = "Bad_Name", .mode = "user"}, "name"},
      {{.name = "n", .mode = "vxlan"}, "mode"},
      {{.name = "n", .mode = "user", .subnet = "10.1.0.0/24"}, "subnet"},
      {{.name = "n", .mode = "user", .forwardBind = "localhost"}, "forward_bind"},
      {{.name = "n", .mode = "nat"}, "subnet"},
      {{.name = "n", .mode = "nat", .subnet = "10.1.0.1/24"}, "subnet"},
      {{.name = "n", .mode = "nat", .subnet = "10.1.0.0/31"}, "subnet"},
      {{.name = "n", .mode = "nat", .subnet = "10.1.0.0/24", .gateway = "10.2.0.1"}, "gateway"},
      {{.name = "n", .mode = "nat", .subnet = "10.1.0.0/24", .gateway = "10.1.0.255"}, "gateway"},
      {{.name = "n", .mode = "nat", .subnet = "10.1.0.0/24", .poolStart = "10.1.1.5"}, "pool_start"},
      {{.name = "n", .mode = "nat", .subnet = "10.1.0.0/24", .poolStart = "10.1.0.9", .poolEnd = "10.1.0.8"},
       "pool_end"},
      {{.name = "n", .mode = "nat", .subnet = "10.1.0.0/24", .dns = {"8.8.8"}}, "dns"},
      {{.name = "n", .mode = "nat", .subnet = "10.1.0.0/24", .domain = "bad..domain"}, "domain"},
      {{.name = "n", .mode = "nat", .subnet = "10.1.0.0/24", .forwardBind = "0.0.0.0"}, "forward_bind"},
      {{.name = "n", .mode = "nat", .bridge = "crl5n0", .subnet = "10.1.0.0/24"}, "bridge"},
      {{.name = "n", .mode = "nat", .bridge = "lo", .subnet = "10.1.0.0/24"}, "bridge"},
      {{.name = "n", .mode = "bridged", .subnet = "10.1.0.0/24"}, "bridge"},
      {{.name = "n", .mode = "bridged", .bridge = "nosuchbr", .subnet = "10.1.0.0/24"}, "bridge"},
  };
  for (const auto& c : cases) {
    Error e = createError(c.req);
    EXPECT_EQ(e.code, ErrorCode::InvalidInput) << c.field << ": " << e.message;
    EXPECT_EQ(e.field, c.field) << e.message;
  }
  auto denied = nets_->create(kUser, {.name = "mine", .mode = "user"});
  ASSERT_FALSE(denied.ok());
  EXPECT_EQ(denied.error().code, ErrorCode::Forbidden);
  auto dup = nets_->create(kAdmin, {.name = "default", .mode = "user"});
  ASSERT_FALSE(dup.ok());
  EXPECT_EQ(dup.error().code, ErrorCode::AlreadyExists);
}

TEST_F(NetworksTest, NatNetworkComesUpWithDefaultsAndGoesAwayWhole) {
  auto made = nets_->create(kAdmin, {.name = "lan", .mode = "nat", .subnet = "10.90.0.0/24", .domain = "Lab.Test"});
  ASSERT_TRUE(made.ok()) << made.error().describe();
  EXPECT_EQ(made->gateway, "10.90.0.1");
  EXPECT_EQ(made->poolStart, "10.90.0.2");
  EXPECT_EQ(made->poolEnd, "10.90.0.254");
  EXPECT_EQ(made->dns, "10.90.0.1");
  EXPECT_EQ(made->domain, "lab.test");
  EXPECT_EQ(made->bridge, "crlbr0");
  EXPECT_TRUE(host::net::isBridge("crlbr0"));
  std::string dir = (dir_.root() / "networks" / "lan").string();
  EXPECT_TRUE(host::net::dnsmasqPid(dir).has_value());
  auto rules = host::net::natRulesScript({made->subnet});
  ASSERT_TRUE(rules.ok());

  auto overlap = nets_->create(kAdmin, {.name = "lan2", .mode = "nat", .subnet = "10.90.0.128/25"});
  ASSERT_FALSE(overlap.ok());
  EXPECT_EQ(overlap.error().field, "subnet");
  EXPECT_NE(overlap.error().message.find("lan"), std::string::npos);
  auto second = nets_->create(kAdmin, {.name = "lan2", .mode = "nat", .subnet = "10.91.0.0/24"});
  ASSERT_TRUE(second.ok()) << second.error().describe();
  EXPECT_EQ(second->bridge, "crlbr1");

  auto info = nets_->show(kUser, "lan");
  ASSERT_TRUE(info.ok());
  EXPECT_EQ(info->poolSize, 253u);
  EXPECT_EQ(info->poolUsed, 0u);

  ASSERT_FALSE(nets_->remove(kUser, "lan").ok());
  ASSERT_TRUE(nets_->remove(kAdmin, "lan").ok());
  EXPECT_FALSE(host::net::linkExists("crlbr0"));
  EXPECT_FALSE(host::net::dnsmasqPid(dir).has_value());
  EXPECT_FALSE(fs::exists(dir));
  EXPECT_TRUE(host::net::isBridge("crlbr1"));
}

TEST_F(NetworksTest, NicsTakeTheLowestFreeAddressAndGiveItBack) {
  ASSERT_TRUE(nets_
                  ->create(kAdmin, {.name = "tiny",
                                    .mode = "nat",
                                    .subnet = "10.92.0.0/29",
                                    .poolStart = "10.92.0.2",
                                    .poolEnd = "10.92.0.4"})
                  .ok());
  auto a = vm("a"), b = vm("b"), c = vm("c");
  auto a0 = nets_->attach(a, {.network = "tiny"}, "nic0");
  ASSERT_TRUE(a0.ok()) << a0.error().describe();
  EXPECT_EQ(a0->ip, "10.92.0.2");
  EXPECT_EQ(a0->hostname, "a");
  EXPECT_EQ(a0->mac.substr(0, 9), "52:54:00:");
  auto a1 = nets_->attach(a, {.network = "tiny"}, "nic1");
  ASSERT_TRUE(a1.ok()) << a1.error().describe();
  EXPECT_EQ(a1->hostname, "a-nic1");
  EXPECT_EQ(a1->ip, "10.92.0.3");

  auto clash = nets_->attach(b, {.network = "tiny", .hostname = "A"}, "nic0");
  ASSERT_FALSE(clash.ok());
  EXPECT_EQ(clash.error().code, ErrorCode::AlreadyExists);
  EXPECT_EQ(clash.error().field, "hostname");
  // Names a guest could use to stand in for the gateway or a proxy are no one's.
  for (const char* reserved : {"wpad", "Gateway", "tiny", "localhost"}) {
    auto r = nets_->attach(b, {.network = "tiny", .hostname = reserved}, "nic0");
    ASSERT_FALSE(r.ok()) << reserved;
    EXPECT_EQ(r.error().field, "hostname") << reserved;
    EXPECT_NE(r.error().message.find("reserved"), std::string::npos) << r.error().message;
  }
  auto taken = nets_->attach(b, {.network = "tiny", .ip = "10.92.0.3"}, "nic0");
  ASSERT_FALSE(taken.ok());
  EXPECT_EQ(taken.error().field, "ip");
  auto outside = nets_->attach(b, {.network = "tiny", .ip = "10.92.0.6"}, "nic0");
  ASSERT_FALSE(outside.ok());
  EXPECT_EQ(outside.error().field, "ip");
  auto badMac = nets_->attach(b, {.network = "tiny", .mac = "01:00:5e:00:00:01"}, "nic0");
  ASSERT_FALSE(badMac.ok());
  EXPECT_EQ(badMac.error().field, "mac");
  auto forward = nets_->attach(b, {.network = "tiny", .forwards = {"tcp:2222:22"}}, "nic0");
  ASSERT_FALSE(forward.ok());
  EXPECT_EQ(forward.error().field, "forward");

  auto b0 = nets_->attach(b, {.network = "tiny", .mac = "52:54:00:AB:CD:EF"}, "nic0");
  ASSERT_TRUE(b0.ok()) << b0.error().describe();
  EXPECT_EQ(b0->ip, "10.92.0.4");
  EXPECT_EQ(b0->mac, "52:54:00:ab:cd:ef");
  auto full = nets_->attach(c, {.network = "tiny"}, "nic0");
  ASSERT_FALSE(full.ok());
  EXPECT_EQ(full.error().field, "network");
  EXPECT_NE(full.error().message.find("no free address"), std::string::npos) << full.error().message;

  // dnsmasq's static leases follow the NICs.
  std::string hosts = (dir_.root() / "networks" / "tiny" / "dhcp-hosts").string();
  ASSERT_TRUE(nets_->detach(*a1).ok());
  auto c0 = nets_->attach(c, {.network = "tiny"}, "nic0");
  ASSERT_TRUE(c0.ok()) << c0.error().describe();
  EXPECT_EQ(c0->ip, "10.92.0.3");
  EXPECT_EQ(nets_->show(kAdmin, "tiny")->nics.size(), 3u);
  std::ifstream in(hosts);
  std::string leases((std::istreambuf_iterator<char>(in)), {});
  EXPECT_NE(leases.find(c0->mac + ",10.92.0.3,c"), std::string::npos) << leases;
  EXPECT_EQ(leases.find(a1->mac), std::string::npos) << leases;

  auto busy = nets_->remove(kAdmin, "tiny");
  ASSERT_FALSE(busy.ok());
  EXPECT_EQ(busy.error().code, ErrorCode::FailedPrecondition);
}

TEST_F(NetworksTest, ForwardsAreUserModeOnlyAndOneVmPerHostPort) {
  auto a = vm("a"), b = vm("b");
  auto a0 = nets_->attach(a, {.forwards = {"tcp:2222:22", "udp:5353:53"}}, "nic0");
  ASSERT_TRUE(a0.ok()) << a0.error().describe();
  EXPECT_EQ(a0->network, "default");
  EXPECT_EQ(a0->forwards, "tcp:2222:22,udp:5353:53");
  EXPECT_EQ(a0->ip, "");
  EXPECT_EQ(a0->hostname, "");
  auto again = nets_->attach(b, {.forwards = {"tcp:2222:80"}}, "nic0");
  ASSERT_FALSE(again.ok());
  EXPECT_EQ(again.error().field, "forward");
  EXPECT_TRUE(nets_->attach(b, {.forwards = {"udp:2222:80"}}, "nic0").ok());  // another protocol
  for (const char* bad : {"tcp:80:80", "tcp:1023:80", "tcp:5432:5432", "udp:5432:53", "sctp:2000:1", "tcp:2000",
                          "tcp:2000:0", "tcp:x:1", "tcp:70000:1"}) {
    auto r = nets_->attach(b, {.forwards = {bad}}, "nic1");
    ASSERT_FALSE(r.ok()) << bad;
    EXPECT_EQ(r.error().field, "forward") << bad;
  }
  auto host = nets_->attach(b, {.hostname = "x"}, "nic1");
  ASSERT_FALSE(host.ok());
  EXPECT_EQ(host.error().field, "hostname");
  auto missing = nets_->attach(b, {.network = "nowhere"}, "nic1");
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.error().field, "network");
}

// Proves the admin's forward range and reserved ports (corrald's own, the
// database's) bound what a new forward may take, with the reason named.
TEST_F(NetworksTest, ForwardsStayInTheConfiguredRangeAndOffReservedPorts) {
  NetworkConfig cfg;
  cfg.forwardPortMin = 20000;
  cfg.forwardPortMax = 20999;
  cfg.reservedPorts = {5432, 20443};
  nets_ = std::make_unique<Networks>(*store_, dir_, cfg);
  auto a = vm("a");
  auto low = nets_->attach(a, {.forwards = {"tcp:19999:22"}}, "nic0");
  ASSERT_FALSE(low.ok());
  EXPECT_EQ(low.error().field, "forward");
  EXPECT_NE(low.error().message.find("from 20000 to 20999"), std::string::npos) << low.error().message;
  EXPECT_FALSE(nets_->attach(a, {.forwards = {"tcp:21000:22"}}, "nic0").ok());
  auto reserved = nets_->attach(a, {.forwards = {"tcp:20443:443"}}, "nic0");
  ASSERT_FALSE(reserved.ok());
  EXPECT_NE(reserved.error().message.find("reserved"), std::string::npos) << reserved.error().message;
  EXPECT_TRUE(nets_->attach(a, {.forwards = {"tcp:20000:22", "udp:20999:53"}}, "nic0").ok());

  NetworkConfig parsed;
  ASSERT_TRUE(parseForwardPorts("20000-20999", parsed).ok());
  EXPECT_EQ(parsed.forwardPortMin, 20000);
  EXPECT_EQ(parsed.forwardPortMax, 20999);
  for (const char* bad : {"", "20000", "2-1", "0-10", "1-65536", "a-b", "10-20-30", "-5"}) {
    auto r = parseForwardPorts(bad, parsed);
    ASSERT_FALSE(r.ok()) << bad;
    EXPECT_EQ(r.error().field, "forward_ports") << bad;
  }
  EXPECT_EQ(parsed.forwardPortMax, 20999) << "a refused range changes nothing";
}

TEST_F(NetworksTest, TapNamesAndStaleTapRemoval) {
  EXPECT_EQ(Networks::tapName(42, "nic3"), "crl42n3");
  EXPECT_LE(Networks::tapName(9999999999, "nic7").size(), 15u);
  EXPECT_EQ(Networks::nextNicName({}), "nic0");
  EXPECT_EQ(Networks::nextNicName({store::NicRecord{.name = "nic0"}, store::NicRecord{.name = "nic2"}}), "nic1");

  for (const char* tap : {"crl5n0", "crl6n0", "crl6n1", "crlx"}) {
    util::Command c("ip");
    auto r = c.args({"tuntap", "add", "dev", tap, "mode", "tap"}).keepEnv({"PATH"}).run();
    ASSERT_TRUE(r.ok()) << tap << ": " << r.error().message;
  }
  nets_->removeStaleTaps({5});
  EXPECT_TRUE(host::net::linkExists("crl5n0"));
  EXPECT_FALSE(host::net::linkExists("crl6n0"));
  EXPECT_FALSE(host::net::linkExists("crl6n1"));
  EXPECT_TRUE(host::net::linkExists("crlx"));  // not corral's name
  nets_->removeTaps(5);
  EXPECT_FALSE(host::net::linkExists("crl5n0"));
  EXPECT_TRUE(host::net::deleteLink("crlx").ok());
}

}  // namespace
}  // namespace corral::core

int main(int argc, char** argv) { return corral::testing::runTestsInPrivateNetns(argc, argv); }
