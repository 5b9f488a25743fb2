// Proves host/dnsmasq with the real dnsmasq, inside a network namespace of the
// test's own (main() unshares it before any thread starts): a bridge with the
// gateway's address stands for a `nat` network, and the tests ask dnsmasq DNS
// questions over UDP, with a DNS client written here, so nothing depends on the
// host's resolver. DHCP with real guests is the integration tests' business.
// Needs root; without it the tests that start dnsmasq are skipped with the reason.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <array>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <optional>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "support/private_netns.h"

#include "host/dnsmasq.h"
#include "host/net.h"
#include "support/files.h"
#include "support/temp_dir.h"
#include "util/proc.h"
#include "util/unique_fd.h"

namespace corral::host::net {
namespace {

using namespace std::chrono_literals;
namespace fs = std::filesystem;

constexpr const char* kBridge = "crldns0";
constexpr const char* kGateway = "10.77.0.1";

// The IPv4 address dnsmasq at kGateway:53 gives for `name` (one A query over
// UDP); nullopt for no answer, NXDOMAIN or no reply within 500 ms.
std::optional<std::string> resolveA(const std::string& name) {
  std::string q;
  const uint16_t id = uint16_t(::getpid());
  q += char(id >> 8);
  q += char(id & 0xff);
  q += std::string("\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00", 10);  // RD; one question
  size_t start = 0;
  while (start <= name.size()) {
    size_t dot = std::min(name.find('.', start), name.size());
    q += char(dot - start);
    q += name.substr(start, dot - start);
    start = dot + 1;
  }
  q += std::string("\x00\x00\x01\x00\x01", 5);  // root label, type A, class IN

  util::UniqueFd s(::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  timeval tv{0, 500000};
  ::setsockopt(s.get(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  sockaddr_in to{};
  to.sin_family = AF_INET;
  to.sin_port = htons(53);
  ::inet_pton(AF_INET, kGateway, &to.sin_addr);
  if (::sendto(s.get(), q.data(), q.size(), 0, reinterpret_cast<sockaddr*>(&to), sizeof to) < 0) return std::nullopt;
  unsigned char r[512];
  ssize_t n = ::recv(s.get(), r, sizeof r, 0);
  if (n < 12 || r[0] != uint8_t(q[0]) || r[1] != uint8_t(q[1]) || (r[3] & 0x0f) != 0) return std::nullopt;  // id, rcode
  const int answers = (r[6] << 8) | r[7];
  size_t p = q.size();  // the question comes back as sent
  for (int i = 0; i < answers && p + 12 <= size_t(n); ++i) {
    if ((r[p] & 0xc0) == 0xc0) {
      p += 2;  // a compressed name
    } else {
      while (p < size_t(n) && r[p] != 0) p += r[p] + 1;
      p += 1;
    }
    const int type = (r[p] << 8) | r[p + 1];
    const size_t len = size_t((r[p + 8] << 8) | r[p + 9]);
    p += 10;
    if (type == 1 && len == 4 && p + 4 <= size_t(n))
      return fmt::format("{}.{}.{}.{}", r[p], r[p + 1], r[p + 2], r[p + 3]);
    p += len;
  }
  return std::nullopt;
}

// ---- a guest's DHCPDISCOVER through a tap on the bridge (the tap's fd is the guest's side, as QEMU's is)

uint16_t ipChecksum(const uint8_t* p, size_t n) {
  uint32_t sum = 0;
  for (size_t i = 0; i + 1 < n; i += 2) sum += uint32_t(p[i] << 8 | p[i + 1]);
  while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
  return uint16_t(~sum);
}

// Sends a DHCPDISCOVER from `mac` (broadcast flag set, so the answer is
// broadcast back) and returns the address offered, or nullopt when no DHCPOFFER
// for it arrives within `wait`.
std::optional<std::string> discover(const Tap& tap, const std::array<uint8_t, 6>& mac, std::chrono::milliseconds wait) {
  const uint32_t xid = 0x12345678u ^ mac[5];
  std::vector<uint8_t> dhcp(300, 0);
  dhcp[0] = 1, dhcp[1] = 1, dhcp[2] = 6;  // BOOTREQUEST, Ethernet
  dhcp[4] = uint8_t(xid >> 24), dhcp[5] = uint8_t(xid >> 16), dhcp[6] = uint8_t(xid >> 8), dhcp[7] = uint8_t(xid);
  dhcp[10] = 0x80;                                                    // broadcast flag
  std::copy(mac.begin(), mac.end(), dhcp.begin() + 28);               // chaddr
  const uint8_t options[] = {0x63, 0x82, 0x53, 0x63, 53, 1, 1, 255};  // magic cookie, DHCPDISCOVER, end
  std::copy(std::begin(options), std::end(options), dhcp.begin() + 236);

  std::vector<uint8_t> udp = {0, 68, 0, 67, uint8_t((8 + dhcp.size()) >> 8), uint8_t(8 + dhcp.size()), 0, 0};
  udp.insert(udp.end(), dhcp.begin(), dhcp.end());
  const size_t total = 20 + udp.size();
  std::vector<uint8_t> ip = {
      0x45, 0,  uint8_t(total >> 8), uint8_t(total), 0, 0, 0, 0, 64, 17, 0, 0, 0, 0, 0, 0, 255, 255,
      255,  255};  // 0.0.0.0 -> broadcast
  const uint16_t sum = ipChecksum(ip.data(), ip.size());
  ip[10] = uint8_t(sum >> 8), ip[11] = uint8_t(sum);
  std::vector<uint8_t> frame(tap.vnetHdr ? 10 : 0, 0);  // struct virtio_net_hdr: no offloads
  frame.insert(frame.end(), 6, 0xff);
  frame.insert(frame.end(), mac.begin(), mac.end());
  frame.insert(frame.end(), {0x08, 0x00});
  frame.insert(frame.end(), ip.begin(), ip.end());
  frame.insert(frame.end(), udp.begin(), udp.end());
  if (::write(tap.fd.get(), frame.data(), frame.size()) != ssize_t(frame.size())) return std::nullopt;

  const auto deadline = std::chrono::steady_clock::now() + wait;
  uint8_t buf[2048];
  while (true) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) return std::nullopt;
    pollfd pfd{tap.fd.get(), POLLIN, 0};
    if (::poll(&pfd, 1, int(left.count())) <= 0) continue;
    ssize_t n = ::read(tap.fd.get(), buf, sizeof buf);
    const size_t off = tap.vnetHdr ? 10 : 0;  // then Ethernet (14), IPv4 (20, no options from dnsmasq), UDP (8)
    const uint8_t* e = buf + off;
    if (n < ssize_t(off + 14 + 20 + 8 + 240) || e[12] != 0x08 || e[13] != 0x00 || e[14 + 9] != 17) continue;
    const uint8_t* u = e + 14 + (e[14] & 0x0f) * 4;
    const uint8_t* d = u + 8;
    if (((u[2] << 8) | u[3]) != 68 || d[0] != 2 || uint32_t(d[4] << 24 | d[5] << 16 | d[6] << 8 | d[7]) != xid)
      continue;
    for (const uint8_t* o = d + 240; o + 2 < buf + n && *o != 255; o += o[1] + 2)
      if (o[0] == 53 && o[2] == 2) return fmt::format("{}.{}.{}.{}", d[16], d[17], d[18], d[19]);  // DHCPOFFER
  }
}

// Polls a condition that dnsmasq settles asynchronously (SIGHUP), for up to 5 s.
template <class F>
bool eventually(F&& f) {
  const auto deadline = std::chrono::steady_clock::now() + 5s;
  while (!f()) {
    if (std::chrono::steady_clock::now() >= deadline) return false;
    std::this_thread::sleep_for(20ms);
  }
  return true;
}

uid_t uidOf(pid_t pid) {
  std::ifstream in(fmt::format("/proc/{}/status", pid));
  for (std::string line; std::getline(in, line);)
    if (line.rfind("Uid:", 0) == 0) return uid_t(std::stoul(line.substr(4)));
  return uid_t(-1);
}

DnsmasqConfig baseConfig(const std::string& dir) {
  DnsmasqConfig c;
  c.dir = dir;
  c.bridge = kBridge;
  c.gateway = kGateway;
  c.subnet = "10.77.0.0/24";
  c.domain = "corral.test";
  c.hosts = {{"52:54:00:00:00:0a", "10.77.0.10", "vm1"}};
  return c;
}

// Each test gets the bridge and a fresh state dir (a subdirectory, as the
// daemon's are), and never leaves a dnsmasq behind.
class DnsmasqTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!corral::testing::privateNetnsProblem().empty()) {
      GTEST_FAIL() << corral::testing::privateNetnsProblem();
    }
    ASSERT_TRUE(::access("/usr/sbin/dnsmasq", X_OK) == 0) << "dnsmasq missing: run scripts/install-deps";
    ::chmod(tmp_.path().c_str(), 0711);
    dir_ = (tmp_ / "net").string();
    fs::create_directory(dir_);
    ::chmod(dir_.c_str(), 0700);
    ASSERT_TRUE(createBridge(kBridge).ok());
    ASSERT_TRUE(addAddress(kBridge, std::string(kGateway) + "/24").ok());
  }
  void TearDown() override {
    if (!dir_.empty()) {
      EXPECT_TRUE(stopDnsmasq(dir_).ok());
    }
  }
  testing::TempDir tmp_;
  std::string dir_;
};

// Proves start writes the files, dnsmasq runs from its pidfile as an
// unprivileged user, answers the hosts' names (plain and in the domain) on the
// gateway, and refuses names it does not know.
TEST_F(DnsmasqTest, StartServesTheHosts) {
  auto r = startDnsmasq(baseConfig(dir_));
  ASSERT_TRUE(r.ok()) << r.error().describe();
  auto pid = dnsmasqPid(dir_);
  ASSERT_TRUE(pid.has_value());
  EXPECT_EQ(testing::readAll(dir_ + "/dnsmasq.pid"), fmt::format("{}\n", *pid));
  auto st = util::readProcStat(*pid);
  ASSERT_TRUE(st.ok());
  EXPECT_FALSE(st->finished());
  EXPECT_NE(st->session, ::getsid(0)) << "dnsmasq runs in its own session, detached from ours";
  EXPECT_NE(uidOf(*pid), 0u) << "dnsmasq dropped root";

  EXPECT_EQ(testing::readAll(dir_ + "/dhcp-hosts"), "52:54:00:00:00:0a,10.77.0.10,vm1\n");
  EXPECT_EQ(testing::readAll(dir_ + "/hosts"), "10.77.0.10 vm1.corral.test vm1\n");
  EXPECT_EQ(testing::modeOf(dir_ + "/dhcp-hosts"), 0644u);
  EXPECT_EQ(testing::modeOf(dir_ + "/hosts"), 0644u);
  EXPECT_EQ(testing::modeOf(dir_), 0701u) << "made enterable for dnsmasq's user, not listable";
  const std::string conf = testing::readAll(dir_ + "/dnsmasq.conf");
  for (const char* line : {"interface=crldns0\n", "except-interface=lo\n", "bind-interfaces\n", "no-hosts\n",
                           "dhcp-range=10.77.0.0,static,255.255.255.0,12h\n", "dhcp-option=option:router,10.77.0.1\n",
                           "local=/corral.test/\n"})
    EXPECT_NE(conf.find(line), std::string::npos) << line << " missing from\n" << conf;
  EXPECT_EQ(conf.find("dns-server"), std::string::npos) << "no dns: guests ask the gateway";

  EXPECT_EQ(resolveA("vm1"), "10.77.0.10");
  EXPECT_EQ(resolveA("vm1.corral.test"), "10.77.0.10");
  EXPECT_EQ(resolveA("vm9.corral.test"), std::nullopt);
}

// Proves a second start replaces the running dnsmasq (the old one is gone),
// and stop leaves no process and no pidfile.
TEST_F(DnsmasqTest, RestartReplacesAndStopEnds) {
  ASSERT_TRUE(startDnsmasq(baseConfig(dir_)).ok());
  auto first = dnsmasqPid(dir_);
  ASSERT_TRUE(first);
  auto firstStart = util::processStartTime(*first);
  ASSERT_TRUE(firstStart.ok());

  auto r = startDnsmasq(baseConfig(dir_));
  ASSERT_TRUE(r.ok()) << r.error().describe();
  auto second = dnsmasqPid(dir_);
  ASSERT_TRUE(second);
  EXPECT_NE(*second, *first);
  EXPECT_FALSE(util::processAlive(*first, *firstStart)) << "the old dnsmasq still runs";
  EXPECT_EQ(resolveA("vm1"), "10.77.0.10");

  auto secondStart = util::processStartTime(*second);
  ASSERT_TRUE(secondStart.ok());
  ASSERT_TRUE(stopDnsmasq(dir_).ok());
  EXPECT_FALSE(util::processAlive(*second, *secondStart));
  EXPECT_FALSE(dnsmasqPid(dir_));
  EXPECT_FALSE(fs::exists(dir_ + "/dnsmasq.pid"));
  EXPECT_TRUE(stopDnsmasq(dir_).ok()) << "stopping a stopped dnsmasq is fine";
}

// Proves update adds a host to the running dnsmasq by SIGHUP (same pid) and it
// answers for the new name; a changed setting other than the hosts restarts it.
TEST_F(DnsmasqTest, UpdateReloadsHostsOrRestarts) {
  auto cfg = baseConfig(dir_);
  ASSERT_TRUE(startDnsmasq(cfg).ok());
  auto pid = dnsmasqPid(dir_);
  ASSERT_TRUE(pid);
  EXPECT_EQ(resolveA("vm2"), std::nullopt);

  cfg.hosts.push_back({"52:54:00:00:00:0b", "10.77.0.11", "vm2"});
  auto r = updateDnsmasq(cfg);
  ASSERT_TRUE(r.ok()) << r.error().describe();
  EXPECT_EQ(dnsmasqPid(dir_), pid) << "a hosts change must not restart dnsmasq";
  EXPECT_TRUE(eventually([] { return resolveA("vm2.corral.test") == std::optional<std::string>("10.77.0.11"); }));
  EXPECT_EQ(testing::readAll(dir_ + "/dhcp-hosts"),
            "52:54:00:00:00:0a,10.77.0.10,vm1\n52:54:00:00:00:0b,10.77.0.11,vm2\n");

  cfg.hosts.erase(cfg.hosts.begin());
  ASSERT_TRUE(updateDnsmasq(cfg).ok());
  EXPECT_TRUE(eventually([] { return !resolveA("vm1").has_value(); })) << "a removed host is forgotten";

  cfg.dns = {"192.0.2.53"};
  ASSERT_TRUE(updateDnsmasq(cfg).ok());
  auto restarted = dnsmasqPid(dir_);
  ASSERT_TRUE(restarted);
  EXPECT_NE(restarted, pid) << "a settings change needs a restart";
  EXPECT_NE(testing::readAll(dir_ + "/dnsmasq.conf").find("dhcp-option=option:dns-server,192.0.2.53\n"),
            std::string::npos);
  EXPECT_EQ(resolveA("vm2"), "10.77.0.11");
}

// Proves DHCP hands each known MAC its static address and ignores any other
// MAC: a DHCPDISCOVER written into a tap on the bridge, as a guest would.
TEST_F(DnsmasqTest, DhcpOffersOnlyStaticLeases) {
  auto tap = openTap("crldhcp0");
  ASSERT_TRUE(tap.ok()) << tap.error().describe();
  ASSERT_TRUE(setMaster("crldhcp0", kBridge).ok());
  ASSERT_TRUE(startDnsmasq(baseConfig(dir_)).ok());
  EXPECT_EQ(discover(*tap, {0x52, 0x54, 0x00, 0x00, 0x00, 0x0a}, 5s), "10.77.0.10");
  EXPECT_EQ(discover(*tap, {0x52, 0x54, 0x00, 0x00, 0x00, 0x0f}, 1s), std::nullopt) << "an unknown MAC got an address";
}

// Proves update starts dnsmasq when none runs.
TEST_F(DnsmasqTest, UpdateStartsWhenNotRunning) {
  ASSERT_FALSE(dnsmasqPid(dir_));
  auto r = updateDnsmasq(baseConfig(dir_));
  ASSERT_TRUE(r.ok()) << r.error().describe();
  EXPECT_TRUE(dnsmasqPid(dir_));
  EXPECT_EQ(resolveA("vm1"), "10.77.0.10");
}

// Proves a pidfile naming a process that is not this dir's dnsmasq is never
// taken for it nor signalled.
TEST_F(DnsmasqTest, StalePidfileIsNotTrusted) {
  std::ofstream(dir_ + "/dnsmasq.pid") << ::getpid() << "\n";
  EXPECT_FALSE(dnsmasqPid(dir_));
  ASSERT_TRUE(stopDnsmasq(dir_).ok());  // we are still here to check
  EXPECT_FALSE(fs::exists(dir_ + "/dnsmasq.pid"));

  // Another dir's dnsmasq is not this dir's either.
  ASSERT_TRUE(startDnsmasq(baseConfig(dir_)).ok());
  const std::string other = (tmp_ / "other").string();
  fs::create_directory(other);
  fs::copy_file(dir_ + "/dnsmasq.pid", other + "/dnsmasq.pid");
  EXPECT_FALSE(dnsmasqPid(other));
  EXPECT_TRUE(stopDnsmasq(other).ok());
  EXPECT_TRUE(dnsmasqPid(dir_)) << "stopping another dir killed this dir's dnsmasq";
}

// Proves dnsmasq's own reason reaches the caller when it refuses to start.
TEST_F(DnsmasqTest, StartFailureSaysWhy) {
  auto cfg = baseConfig(dir_);
  cfg.bridge = "crlnobridge";
  auto r = startDnsmasq(cfg);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message.find("dnsmasq"), std::string::npos) << r.error().message;
  EXPECT_NE(r.error().message.find("crlnobridge"), std::string::npos) << r.error().message;
  EXPECT_FALSE(dnsmasqPid(dir_));
}

// Proves a directory above the state dir that dnsmasq's user cannot enter is
// reported before dnsmasq starts (it could not reread its hosts files).
TEST_F(DnsmasqTest, RefusesAStateDirDnsmasqCannotReach) {
  ::chmod(tmp_.path().c_str(), 0700);
  auto r = startDnsmasq(baseConfig(dir_));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, ErrorCode::FailedPrecondition);
  EXPECT_NE(r.error().message.find(tmp_.str()), std::string::npos) << r.error().message;
  EXPECT_FALSE(dnsmasqPid(dir_));
}

// Proves values that could write another line or field of dnsmasq's files, or
// that are not what core/ promises, are refused with the field named.
TEST(DnsmasqConfigTest, RefusesBadValues) {
  auto expectField = [](DnsmasqConfig c, const char* field) {
    auto r = dnsmasqConfText(c);
    ASSERT_FALSE(r.ok()) << field;
    EXPECT_EQ(r.error().code, ErrorCode::InvalidInput) << field;
    EXPECT_EQ(r.error().field, field) << r.error().describe();
  };
  const auto good = baseConfig("/var/lib/corral/networks/lan");
  ASSERT_TRUE(dnsmasqConfText(good).ok());
  auto c = good;
  c.hosts[0].hostname = "vm1\naddn-hosts=/etc/shadow";
  expectField(c, "hostname");
  c = good, c.hosts[0].hostname = "vm1,evil";
  expectField(c, "hostname");
  c = good, c.hosts[0].hostname = "VM1";
  expectField(c, "hostname");
  c = good, c.hosts[0].mac = "52:54:00:00:00";
  expectField(c, "mac");
  c = good, c.hosts[0].ip = "10.77.1.10";
  expectField(c, "ip");
  c = good, c.hosts[0].ip = "10.77.0.1";
  expectField(c, "ip");
  c = good, c.hosts.push_back({"52:54:00:00:00:0b", "10.77.0.10", "vm2"});
  expectField(c, "ip");
  c = good, c.hosts.push_back({"52:54:00:00:00:0A", "10.77.0.11", "vm2"});
  expectField(c, "mac");
  c = good, c.domain = "corral.test\nserver=/x/1.2.3.4";
  expectField(c, "domain");
  c = good, c.domain = "a..b";
  expectField(c, "domain");
  c = good, c.dns = {"1.1.1.1,8.8.8.8"};
  expectField(c, "dns");
  c = good, c.gateway = "10.78.0.1";
  expectField(c, "gateway");
  c = good, c.subnet = "10.77.0.0";
  expectField(c, "subnet");
  c = good, c.bridge = "br 0";
  expectField(c, "bridge");
  c = good, c.dir = "relative/dir";
  expectField(c, "dir");
  c = good, c.dir = "/var/lib/corral/a\nb";
  expectField(c, "dir");
}

}  // namespace
}  // namespace corral::host::net

int main(int argc, char** argv) { return corral::testing::runTestsInPrivateNetns(argc, argv); }
