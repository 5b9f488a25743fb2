// Proves host/net against the real kernel, inside a network namespace of the
// test's own: main() unshares it before gtest (and any thread) starts, so every
// tap, bridge, address, sysctl and nftables table made here vanishes with the
// process and the host's interfaces are never touched. `ip` and `nft` started
// by the tests (and by the code under test) inherit the namespace. Needs root
// (CAP_NET_ADMIN); without it every test is skipped with the reason.
//
// The expected values are read back independently: `ip -j`, `nft -j`, /proc and
// if_nametoindex(), never through the functions under test.
#include <fcntl.h>
#include <netinet/in.h>
#include <sched.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <arpa/inet.h>
#include <grp.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <thread>

#include <net/if.h>

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include "support/private_netns.h"

#include "host/net.h"
#include "support/files.h"
#include "support/temp_dir.h"
#include "util/command.h"
#include "util/proc.h"

namespace corral::host::net {
namespace {

using Json = nlohmann::json;
using namespace std::chrono_literals;

#define REQUIRE_NETNS()                                       \
  do {                                                        \
    if (!corral::testing::privateNetnsProblem().empty()) {    \
      GTEST_FAIL() << corral::testing::privateNetnsProblem(); \
    }                                                         \
  } while (0)

// Runs a tool and returns its stdout; fails the test on a non-zero exit.
std::string run(const std::string& program, const std::vector<std::string>& args) {
  util::Command c(program);
  c.args(args).stdoutToBuffer().stderrToBuffer().allowFailureStatus();
  auto r = c.run();
  EXPECT_TRUE(r.ok()) << c.toString() << ": " << (r.ok() ? "" : r.error().describe());
  if (!r.ok()) return {};
  EXPECT_TRUE(r->status.success()) << c.toString() << ": " << r->err;
  return r->out;
}

bool succeeds(const std::string& program, const std::vector<std::string>& args) {
  util::Command c(program);
  c.args(args).stdoutToNull().stderrToNull().allowFailureStatus();
  auto r = c.run();
  return r.ok() && r->status.success();
}

// `ip -j [-d] link show dev NAME`, the one object.
Json ipLink(const std::string& name, bool details = false) {
  std::vector<std::string> args{"-j"};
  if (details) args.push_back("-d");
  args.insert(args.end(), {"link", "show", "dev", name});
  Json j = Json::parse(run("ip", args), nullptr, false);
  if (!j.is_array() || j.size() != 1) {
    ADD_FAILURE() << "ip link show " << name << ": " << j.dump();
    return Json::object();
  }
  return j[0];
}

bool hasFlag(const Json& link, const std::string& flag) {
  for (const auto& f : link.value("flags", Json::array()))
    if (f == flag) return true;
  return false;
}

// Polls up to 2 s for a condition the kernel settles asynchronously.
template <class F>
bool eventually(F&& f) {
  const auto deadline = std::chrono::steady_clock::now() + 2s;
  while (!f()) {
    if (std::chrono::steady_clock::now() >= deadline) return false;
    std::this_thread::sleep_for(10ms);
  }
  return true;
}

// Each test starts from an empty namespace (only lo).
class NetTest : public ::testing::Test {
 protected:
  void SetUp() override {
    REQUIRE_NETNS();
    for (const auto& name : listLinks()) {
      if (name != "lo") {
        ASSERT_TRUE(deleteLink(name).ok()) << name;
      }
    }
  }
};

// ---------------------------------------------------------------- names and addresses

// Proves the allow-list: IFNAMSIZ-1 characters at most, the allowed set only.
TEST(NetNames, ValidIfName) {
  for (const char* good : {"a", "tap0", "crl-br.1_x", "abcdefghijklmno"}) EXPECT_TRUE(validIfName(good)) << good;
  for (const char* bad : {"", ".", "..", "abcdefghijklmnop", "a b", "a/b", "a:b", "tap%d", "a\nb", "é"})
    EXPECT_FALSE(validIfName(bad)) << bad;
}

// ---------------------------------------------------------------- taps

// Proves openTap makes a non-persistent, up tap with IFF_NO_PI and IFF_VNET_HDR
// whose fd is close-on-exec, that exists while the fd is open and is gone after.
TEST_F(NetTest, OpenTapLivesWithItsFd) {
  auto tap = openTap("crltap0");
  ASSERT_TRUE(tap.ok()) << tap.error().describe();
  EXPECT_EQ(tap->name, "crltap0");
  EXPECT_TRUE(tap->fd);
  EXPECT_EQ(tap->ifindex, int(::if_nametoindex("crltap0")));
  EXPECT_TRUE(tap->vnetHdr) << "every kernel corral supports has IFF_VNET_HDR";
  EXPECT_TRUE(::fcntl(tap->fd.get(), F_GETFD) & FD_CLOEXEC);
  EXPECT_TRUE(linkExists("crltap0"));

  Json link = ipLink("crltap0", /*details=*/true);
  EXPECT_TRUE(hasFlag(link, "UP")) << link.dump();
  Json info = link["linkinfo"];
  EXPECT_EQ(info["info_kind"], "tun");
  EXPECT_EQ(info["info_data"]["type"], "tap");
  EXPECT_EQ(info["info_data"]["pi"], false);
  EXPECT_EQ(info["info_data"]["vnet_hdr"], true);
  EXPECT_EQ(info["info_data"]["persist"], false);

  tap->fd.reset();
  EXPECT_TRUE(eventually([] { return !linkExists("crltap0"); })) << "tap outlived its last fd";
}

// Proves openTap never attaches to an existing link of that name, and refuses bad names.
TEST_F(NetTest, OpenTapRefusesExistingOrInvalid) {
  auto first = openTap("crltap1");
  ASSERT_TRUE(first.ok()) << first.error().describe();
  auto second = openTap("crltap1");
  ASSERT_FALSE(second.ok());
  EXPECT_EQ(second.error().code, ErrorCode::AlreadyExists);

  run("ip", {"tuntap", "add", "dev", "crlpersist", "mode", "tap"});  // a persistent tap someone left
  auto persistent = openTap("crlpersist");
  ASSERT_FALSE(persistent.ok());
  EXPECT_EQ(persistent.error().code, ErrorCode::AlreadyExists);

  auto bad = openTap("bad name");
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.error().code, ErrorCode::InvalidInput);
  EXPECT_EQ(bad.error().field, "interface");
}

// Proves vhost-net's verdict matches the device: usable exactly when
// /dev/vhost-net opens and answers; the fd handed out is close-on-exec.
TEST_F(NetTest, VhostNetMatchesTheDevice) {
  const bool deviceOpens = util::UniqueFd(::open("/dev/vhost-net", O_RDWR | O_CLOEXEC)).get() >= 0;
  auto fd = openVhostNet();
  EXPECT_EQ(fd.ok(), deviceOpens);
  if (!deviceOpens) {
    EXPECT_FALSE(vhostNetUsable());
    EXPECT_EQ(fd.error().code, ErrorCode::Unavailable);
    EXPECT_NE(fd.error().message.find("/dev/vhost-net"), std::string::npos);
    return;
  }
  EXPECT_TRUE(vhostNetUsable());
  EXPECT_TRUE(::fcntl(fd->get(), F_GETFD) & FD_CLOEXEC);
  auto again = openVhostNet();
  ASSERT_TRUE(again.ok());
  EXPECT_NE(again->get(), fd->get()) << "each NIC needs its own vhost fd";
}

// ---------------------------------------------------------------- bridges and links

// Proves createBridge makes an up bridge, is idempotent, and refuses a non-bridge.
TEST_F(NetTest, CreateBridgeIsIdempotentAndRefusesNonBridge) {
  ASSERT_TRUE(createBridge("crlbr0").ok());
  Json link = ipLink("crlbr0", true);
  EXPECT_EQ(link["linkinfo"]["info_kind"], "bridge");
  EXPECT_TRUE(hasFlag(link, "UP"));
  EXPECT_EQ(link["linkinfo"]["info_data"]["stp_state"], 0);
  const int index = int(::if_nametoindex("crlbr0"));

  run("ip", {"link", "set", "dev", "crlbr0", "down"});
  auto again = createBridge("crlbr0");
  ASSERT_TRUE(again.ok()) << again.error().describe();
  EXPECT_EQ(int(::if_nametoindex("crlbr0")), index) << "the bridge was remade";
  EXPECT_TRUE(hasFlag(ipLink("crlbr0"), "UP")) << "an existing bridge is set up";
  EXPECT_TRUE(isBridge("crlbr0"));

  auto tap = openTap("crltap2");
  ASSERT_TRUE(tap.ok());
  EXPECT_FALSE(isBridge("crltap2"));
  auto onTap = createBridge("crltap2");
  ASSERT_FALSE(onTap.ok());
  EXPECT_EQ(onTap.error().code, ErrorCode::FailedPrecondition);
  EXPECT_FALSE(isBridge("crlnone"));
}

// Proves listLinks and linkExists see this namespace's links, and deleteLink is
// idempotent.
TEST_F(NetTest, ListAndDeleteLinks) {
  ASSERT_TRUE(createBridge("crlbr1").ok());
  auto names = listLinks();
  EXPECT_EQ(names, (std::vector<std::string>{"lo", "crlbr1"}));
  ASSERT_TRUE(deleteLink("crlbr1").ok());
  EXPECT_FALSE(linkExists("crlbr1"));
  EXPECT_FALSE(succeeds("ip", {"link", "show", "dev", "crlbr1"}));
  EXPECT_TRUE(deleteLink("crlbr1").ok()) << "deleting an absent link is fine";
  EXPECT_EQ(deleteLink("no/such").error().code, ErrorCode::InvalidInput);
}

// Proves setMaster enslaves a tap to a bridge (read back from ip -j) and refuses
// a non-bridge master or a missing link.
TEST_F(NetTest, SetMasterOntoBridge) {
  ASSERT_TRUE(createBridge("crlbr2").ok());
  auto tap = openTap("crltap3");
  ASSERT_TRUE(tap.ok());
  EXPECT_EQ(linkMaster("crltap3").valueOr("?"), "");
  auto r = setMaster("crltap3", "crlbr2");
  ASSERT_TRUE(r.ok()) << r.error().describe();
  EXPECT_EQ(ipLink("crltap3").value("master", ""), "crlbr2");
  EXPECT_EQ(linkMaster("crltap3").valueOr("?"), "crlbr2");

  auto other = openTap("crltap4");
  ASSERT_TRUE(other.ok());
  auto notBridge = setMaster("crltap4", "crltap3");
  ASSERT_FALSE(notBridge.ok());
  EXPECT_EQ(notBridge.error().code, ErrorCode::FailedPrecondition);
  EXPECT_FALSE(ipLink("crltap4").contains("master"));
  EXPECT_EQ(setMaster("crlnone", "crlbr2").error().code, ErrorCode::NotFound);
  EXPECT_EQ(setMaster("crltap4", "crlnone").error().code, ErrorCode::NotFound);
  EXPECT_EQ(setLinkUp("crlnone").error().code, ErrorCode::NotFound);
}

// Proves addAddress adds the address once however often it is called.
TEST_F(NetTest, AddAddressIsIdempotent) {
  ASSERT_TRUE(createBridge("crlbr3").ok());
  for (int i = 0; i < 2; ++i) {
    auto r = addAddress("crlbr3", "10.77.0.1/24");
    ASSERT_TRUE(r.ok()) << r.error().describe();
  }
  Json j = Json::parse(run("ip", {"-j", "-4", "address", "show", "dev", "crlbr3"}));
  ASSERT_EQ(j.size(), 1u);
  Json addrs = j[0]["addr_info"];
  ASSERT_EQ(addrs.size(), 1u) << addrs.dump();
  EXPECT_EQ(addrs[0]["local"], "10.77.0.1");
  EXPECT_EQ(addrs[0]["prefixlen"], 24);

  auto bad = addAddress("crlbr3", "10.77.0.1");
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.error().field, "address");
  EXPECT_EQ(addAddress("crlnone", "10.77.0.1/24").error().code, ErrorCode::NotFound);
}

// Proves linkStats reads the kernel's counters: a frame written into the tap's
// fd is a received packet of the tap, as `ip -s` reports too.
TEST_F(NetTest, LinkStatsCountsAFrame) {
  auto tap = openTap("crltap5");
  ASSERT_TRUE(tap.ok());
  auto before = linkStats("crltap5");
  ASSERT_TRUE(before.ok()) << before.error().describe();

  std::string frame(tap->vnetHdr ? 10 : 0, '\0');                      // struct virtio_net_hdr: no offloads
  const unsigned char header[] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff,  // broadcast
                                  0x52, 0x54, 0x00, 0x12, 0x34, 0x56,  // from a guest's MAC
                                  0x88, 0xb5};                         // local experimental EtherType
  const std::string eth = std::string(reinterpret_cast<const char*>(header), sizeof header) + std::string(46, 'x');
  frame += eth;
  for (int i = 0; i < 3; ++i) ASSERT_EQ(::write(tap->fd.get(), frame.data(), frame.size()), ssize_t(frame.size()));

  auto after = linkStats("crltap5");
  ASSERT_TRUE(after.ok());
  EXPECT_EQ(after->rxPackets - before->rxPackets, 3u);
  EXPECT_EQ(after->rxBytes - before->rxBytes, 3 * eth.size());
  Json stats = Json::parse(run("ip", {"-j", "-s", "link", "show", "dev", "crltap5"}))[0]["stats64"];
  EXPECT_EQ(stats["rx"]["packets"].get<uint64_t>(), after->rxPackets);
  EXPECT_EQ(stats["rx"]["bytes"].get<uint64_t>(), after->rxBytes);
  EXPECT_EQ(linkStats("crlnone").error().code, ErrorCode::NotFound);
}

// Proves forwarding is switched on in the caller's namespace (a new one starts off).
TEST_F(NetTest, EnableIpv4Forwarding) {
  ASSERT_TRUE(enableIpv4Forwarding().ok());
  EXPECT_EQ(testing::readAll("/proc/sys/net/ipv4/ip_forward"), "1\n");
}

// ---------------------------------------------------------------- nftables

struct NatTable {
  bool exists = false;
  std::map<std::string, Json> chains;              // name -> chain object
  std::map<std::string, std::vector<Json>> rules;  // chain name -> its rules' expr
};

NatTable readNatTable() {
  NatTable t;
  util::Command c("nft");
  c.args({"-j", "list", "table", "ip", "corral"}).stdoutToBuffer().stderrToBuffer().allowFailureStatus();
  auto r = c.run();
  if (!r.ok() || !r->status.success()) return t;
  t.exists = true;
  const Json listing = Json::parse(r->out);
  for (const auto& item : listing["nftables"]) {
    if (item.contains("chain")) t.chains[item["chain"]["name"].get<std::string>()] = item["chain"];
    if (item.contains("rule")) t.rules[item["rule"]["chain"].get<std::string>()].push_back(item["rule"]["expr"]);
  }
  return t;
}

// The prefix a rule's first match compares saddr/daddr with: "10.77.0.0/24".
std::string matchPrefix(const Json& match) {
  const Json& p = match["match"]["right"]["prefix"];
  return fmt::format("{}/{}", p["addr"].get<std::string>(), p["len"].get<int>());
}

// Proves applyNatRules installs one table with a masquerade per subnet (from it,
// to outside it) and forward accepts, replaces it whole on the next call, and
// removes it for an empty list.
TEST_F(NetTest, ApplyNatRulesReplacesTheTable) {
  ASSERT_TRUE(applyNatRules({"10.78.5.1/16", "10.77.0.0/24", "10.77.0.0/24"}).ok());
  NatTable t = readNatTable();
  ASSERT_TRUE(t.exists);
  ASSERT_TRUE(t.chains.count("postrouting") && t.chains.count("forward"));
  EXPECT_EQ(t.chains["postrouting"]["type"], "nat");
  EXPECT_EQ(t.chains["postrouting"]["hook"], "postrouting");
  EXPECT_EQ(t.chains["forward"]["type"], "filter");
  EXPECT_EQ(t.chains["forward"]["hook"], "forward");
  EXPECT_EQ(t.chains["forward"]["policy"], "accept");
  const auto& post = t.rules["postrouting"];
  ASSERT_EQ(post.size(), 2u) << "one masquerade per distinct subnet";
  std::vector<std::string> masqueraded;
  for (const auto& expr : post) {
    ASSERT_EQ(expr.size(), 3u) << expr.dump();
    EXPECT_EQ(expr[0]["match"]["left"]["payload"]["field"], "saddr");
    EXPECT_EQ(expr[0]["match"]["op"], "==");
    EXPECT_EQ(expr[1]["match"]["left"]["payload"]["field"], "daddr");
    EXPECT_EQ(expr[1]["match"]["op"], "!=");
    EXPECT_EQ(matchPrefix(expr[0]), matchPrefix(expr[1]));
    EXPECT_TRUE(expr[2].contains("masquerade"));
    masqueraded.push_back(matchPrefix(expr[0]));
  }
  EXPECT_EQ(masqueraded, (std::vector<std::string>{"10.77.0.0/24", "10.78.0.0/16"}));
  EXPECT_EQ(t.rules["forward"].size(), 4u);

  ASSERT_TRUE(applyNatRules({"10.79.0.0/24"}).ok());
  t = readNatTable();
  ASSERT_EQ(t.rules["postrouting"].size(), 1u) << "the old rules were replaced, not kept";
  EXPECT_EQ(matchPrefix(t.rules["postrouting"][0][0]), "10.79.0.0/24");

  auto bad = applyNatRules({"10.80.0.0/24", "nonsense"});
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.error().field, "subnet");
  EXPECT_EQ(readNatTable().rules["postrouting"].size(), 1u) << "a refused list changes nothing";

  ASSERT_TRUE(applyNatRules({}).ok());
  EXPECT_FALSE(readNatTable().exists);
  EXPECT_TRUE(applyNatRules({}).ok()) << "removing an absent table is fine";
}

// A TCP listener on addr:port (0: any free port) in this namespace; its port.
std::pair<util::UniqueFd, uint16_t> listenTcp(const char* addr, uint16_t port) {
  util::UniqueFd fd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  int one = 1;
  ::setsockopt(fd.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_port = htons(port);
  ::inet_pton(AF_INET, addr, &sa.sin_addr);
  EXPECT_EQ(::bind(fd.get(), reinterpret_cast<sockaddr*>(&sa), sizeof sa), 0) << addr << ":" << port << " " << errno;
  EXPECT_EQ(::listen(fd.get(), 8), 0);
  socklen_t len = sizeof sa;
  ::getsockname(fd.get(), reinterpret_cast<sockaddr*>(&sa), &len);
  return {std::move(fd), ntohs(sa.sin_port)};
}

// connect() to addr:port from a child process whose only group is gid (as a
// QEMU is started): 0 when it connected, else the errno.
int connectAsGroup(gid_t gid, const char* addr, uint16_t port) {
  pid_t pid = ::fork();
  if (pid == 0) {
    if (::setgroups(1, &gid) != 0 || ::setresgid(gid, gid, gid) != 0) ::_exit(250);
    int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in sa{};
    sa.sin_family = AF_INET;
    sa.sin_port = htons(port);
    ::inet_pton(AF_INET, addr, &sa.sin_addr);
    ::_exit(::connect(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) == 0 ? 0 : errno);
  }
  int status = 0;
  ::waitpid(pid, &status, 0);
  return WIFEXITED(status) ? WEXITSTATUS(status) : 255;
}

// Proves the guard table keeps sockets of the guests' group off this host's own
// addresses (loopback and an address on a link alike) while root's sockets and
// the guests' DNS still connect, that the table has its three chains, and that a
// refused spec (gid 0, a bad subnet) leaves the installed rules as they were.
TEST_F(NetTest, GuardRulesRefuseTheGuestGroupTheHostsOwnAddresses) {
  constexpr gid_t kGuest = 199999;
  ASSERT_TRUE(setLinkUp("lo").ok());
  ASSERT_TRUE(createBridge("crlbrg0").ok());
  ASSERT_TRUE(addAddress("crlbrg0", "10.66.0.1/24").ok());
  auto [lo, loPort] = listenTcp("127.0.0.1", 0);
  auto [any, anyPort] = listenTcp("0.0.0.0", 0);
  auto [dns, dnsPort] = listenTcp("127.0.0.1", 53);
  ASSERT_EQ(connectAsGroup(kGuest, "127.0.0.1", loPort), 0) << "before the rules, the guest's group connects";

  ASSERT_TRUE(applyGuardRules({.guestGid = kGuest,
                               .nat = {{.bridge = "crlbrg0", .subnet = "10.66.0.0/24", .gateway = "10.66.0.1"}}})
                  .ok());
  EXPECT_EQ(connectAsGroup(kGuest, "127.0.0.1", loPort), ECONNREFUSED);
  EXPECT_EQ(connectAsGroup(kGuest, "10.66.0.1", anyPort), ECONNREFUSED) << "a host address on a link";
  EXPECT_EQ(connectAsGroup(kGuest, "127.0.0.1", dnsPort), 0) << "DNS stays reachable";
  EXPECT_EQ(connectAsGroup(0, "127.0.0.1", loPort), 0) << "root's sockets are untouched";
  EXPECT_EQ(connectAsGroup(kGuest + 1, "10.66.0.1", anyPort), 0) << "only the guests' group is refused";

  Json listing = Json::parse(run("nft", {"-j", "list", "table", "inet", "corral_guard"}));
  std::map<std::string, std::string> hooks;
  for (const auto& item : listing["nftables"])
    if (item.contains("chain")) hooks[item["chain"]["name"]] = item["chain"]["hook"];
  EXPECT_EQ(hooks, (std::map<std::string, std::string>{{"forward", "forward"}, {"input", "input"}, {"output", "output"}}));

  auto root = applyGuardRules({.guestGid = 0, .nat = {}});
  ASSERT_FALSE(root.ok());
  EXPECT_EQ(root.error().field, "guest_gid");
  auto bad = applyGuardRules({.guestGid = kGuest, .nat = {{.bridge = "crlbrg0", .subnet = "x", .gateway = "10.66.0.1"}}});
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.error().field, "subnet");
  EXPECT_EQ(connectAsGroup(kGuest, "127.0.0.1", loPort), ECONNREFUSED) << "a refused spec changes nothing";
  ASSERT_TRUE(run("nft", {"delete", "table", "inet", "corral_guard"}).empty());
  EXPECT_EQ(connectAsGroup(kGuest, "127.0.0.1", loPort), 0);
}

// ---------------------------------------------------------------- NIC hook

class NicHookTest : public ::testing::Test {
 protected:
  // A script at dir/name with `body` after the shebang line, made executable.
  std::string script(const std::string& name, const std::string& body) {
    auto path = (dir_ / name).string();
    std::ofstream(path) << "#!/bin/sh\n" << body;
    ::chmod(path.c_str(), 0755);
    return path;
  }
  testing::TempDir dir_;
};

// Proves the hook gets exactly the documented environment: /proc/$$/environ is
// what the script was started with, before the shell adds anything of its own.
TEST_F(NicHookTest, PassesExactlyTheDocumentedEnvironment) {
  const std::string out = (dir_ / "env").string();
  auto hook = script("ifup", fmt::format("tr '\\0' '\\n' < /proc/$$/environ > {}\n", out));
  NicHookEnv env{.instance = "vm1",
                 .mac = "52:54:00:12:34:56",
                 .mode = "nat",
                 .interface = "crl-vm1-0",
                 .ip = "10.77.0.10",
                 .link = "lan",
                 .bridge = "crlbr0",
                 .tags = "",
                 .interfaceIndex = 7};
  auto r = runNicHook(hook, env, 5s);
  ASSERT_TRUE(r.ok()) << r.error().describe();
  std::map<std::string, std::string> got;
  std::istringstream lines(testing::readAll(out));
  for (std::string line; std::getline(lines, line);) {
    auto eq = line.find('=');
    ASSERT_NE(eq, std::string::npos) << line;
    got[line.substr(0, eq)] = line.substr(eq + 1);
  }
  const std::map<std::string, std::string> want{{"INSTANCE", "vm1"},
                                                {"MAC", "52:54:00:12:34:56"},
                                                {"MODE", "nat"},
                                                {"INTERFACE", "crl-vm1-0"},
                                                {"INTERFACE_INDEX", "7"},
                                                {"IP", "10.77.0.10"},
                                                {"LINK", "lan"},
                                                {"BRIDGE", "crlbr0"},
                                                {"TAGS", ""},
                                                {"PATH", "/usr/sbin:/usr/bin:/sbin:/bin"}};
  EXPECT_EQ(got, want);
}

// Proves a failing hook is an error naming the script, its status and its output
// (stdout and stderr both).
TEST_F(NicHookTest, NonZeroExitIsAnErrorWithOutput) {
  auto hook = script("fail", "echo to-stdout\necho no bridge here >&2\nexit 3\n");
  auto r = runNicHook(hook, {}, 5s);
  ASSERT_FALSE(r.ok());
  const std::string& m = r.error().message;
  EXPECT_NE(m.find(hook), std::string::npos) << m;
  EXPECT_NE(m.find("status 3"), std::string::npos) << m;
  EXPECT_NE(m.find("to-stdout"), std::string::npos) << m;
  EXPECT_NE(m.find("no bridge here"), std::string::npos) << m;
}

// Proves a hook that overruns its timeout is killed, with what it started, and
// reported as Timeout with what it printed, well before it would have finished.
TEST_F(NicHookTest, TimeoutKillsTheHook) {
  const std::string marker = (dir_ / "finished").string();
  const std::string childPid = (dir_ / "child").string();
  auto hook =
      script("slow", fmt::format("echo starting\nsleep 30 &\necho $! > {}\nwait\ntouch {}\n", childPid, marker));
  const auto t0 = std::chrono::steady_clock::now();
  auto r = runNicHook(hook, {}, 300ms);
  const auto took = std::chrono::steady_clock::now() - t0;
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, ErrorCode::Timeout);
  EXPECT_NE(r.error().message.find("starting"), std::string::npos) << r.error().message;
  EXPECT_LT(took, 10s);
  EXPECT_FALSE(std::filesystem::exists(marker));
  const pid_t sleeper = std::stoi(testing::readAll(childPid));
  EXPECT_TRUE(eventually([&] {
    auto st = util::readProcStat(sleeper);
    return !st.ok() || st->finished();
  })) << "the hook's background child survived";
}

// Proves only an absolute path to an executable file is run.
TEST_F(NicHookTest, RefusesRelativeOrNonExecutable) {
  EXPECT_EQ(runNicHook("ifup", {}, 1s).error().field, "nic_hook");
  auto path = (dir_ / "plain").string();
  std::ofstream(path) << "#!/bin/sh\n";
  EXPECT_EQ(runNicHook(path, {}, 1s).error().code, ErrorCode::InvalidInput);
  EXPECT_EQ(runNicHook(dir_.str(), {}, 1s).error().code, ErrorCode::InvalidInput);
}

}  // namespace
}  // namespace corral::host::net

int main(int argc, char** argv) { return corral::testing::runTestsInPrivateNetns(argc, argv); }
