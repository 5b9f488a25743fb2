// A real distribution booted from corral's cloud-init seed: the Debian 12 disk
// image that scripts/build-debian-guest makes (debootstrap, cloud-init reading
// only NoCloud) runs under TCG in a corrald inside a network namespace, on a
// nat network with a domain, owned by a user with an SSH key. Proves, end to
// end and with Debian's own cloud-init rather than a test guest reading the CD:
//  - cloud-init found the seed (the VM's uuid as its instance id) and finished;
//  - the hostname and fqdn of the seed were applied (`hostname`, `hostname -f`);
//  - the owner's key was given to the default user: ssh from the namespace, with
//    the private half, logs in as "debian";
//  - the NIC's address came from network-config (written as a static address
//    into systemd-networkd's files, not leased by DHCP) and answers ssh.
// Slow: a whole Debian boot under TCG (minutes); ctest gives it its own TIMEOUT.
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <gtest/gtest.h>

#include "support/daemon_harness.h"
#include "support/netns.h"
#include "util/command.h"

namespace corral::testing {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using namespace std::chrono_literals;

// A Debian boot plus cloud-init's first run under TCG on a busy host.
constexpr auto kCloudInitDeadline = 360s;
// sshd may still be starting (or the key being written) when the log says so.
constexpr auto kSshDeadline = 90s;

// Where scripts/build-debian-guest put the image (`make debian-guest` writes
// <build>/debian-guest); CORRAL_DEBIAN_GUEST names another file.
fs::path debianImage() {
  const char* env = ::getenv("CORRAL_DEBIAN_GUEST");
  return env ? fs::path(env) : fs::path(CORRAL_BINARY_DIR) / "debian-guest" / "debian.qcow2";
}

class CloudInitDebianTest : public ::testing::Test {
 protected:
  void SetUp() override {
    image_ = debianImage();
    ASSERT_TRUE(fs::exists(image_)) << "the Debian guest image " << image_
                                    << " is missing: run scripts/build-debian-guest " << image_.parent_path().string()
                                    << " (or `make debian-guest`)";
    h_.setNetns(ns_.name());
    h_.startDaemon();
  }

  CliResult ok(const std::vector<std::string>& args) {
    auto r = h_.cli(args);
    EXPECT_EQ(r.exitCode, 0) << fmt::format("corral {}", fmt::join(args, " ")) << "\n" << r.err << r.out;
    return r;
  }

  // Runs `ssh ... debian@addr command` from inside the namespace with the
  // private key key_; exit code -1 with the reason in err when ssh did not run.
  CliResult ssh(const std::string& addr, const std::string& command) {
    util::Command c("ip");
    c.args({"netns", "exec", ns_.name(), "ssh", "-i", key_.string(), "-F", "/dev/null", "-o",
            "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o", "BatchMode=yes", "-o",
            "ConnectTimeout=10", "-o", "LogLevel=ERROR"})
        .arg("debian@" + addr)
        .arg(command)
        .keepEnv({"PATH"})
        .stdoutToBuffer()
        .stderrToBuffer()
        .allowFailureStatus()
        .timeout(60000ms);
    auto r = c.run();
    if (!r.ok()) return {-1, "", r.error().message};
    return {r->status.exitCode, r->out, r->err};
  }

  std::string log(const std::string& vm) { return h_.cli({"vm", "log", vm}).out; }

  Netns ns_{"corral-deb"};  // declared first: it goes after the daemon and its guest
  DaemonHarness h_;
  fs::path image_;
  fs::path key_;
};

TEST_F(CloudInitDebianTest, DebianGuestAppliesHostnameKeyAndAddressFromTheSeed) {
  // A real key pair: the public half goes to corral, the private half logs in.
  key_ = h_.dir() / "id_alice";
  util::Command keygen("ssh-keygen");
  keygen.args({"-q", "-t", "ed25519", "-N", "", "-C", "alice@lab", "-f", key_.string()})
      .keepEnv({"PATH"})
      .stdoutToBuffer()
      .stderrToBuffer();
  auto made = keygen.run();
  ASSERT_TRUE(made.ok()) << made.error().message;
  std::string pub;
  {
    std::ifstream in(key_.string() + ".pub");
    std::getline(in, pub);
  }
  ASSERT_EQ(pub.rfind("ssh-ed25519 ", 0), 0u) << pub;

  ok({"user", "add", "alice", "--email", "alice@example.org"});
  ok({"user", "key", "add", "--user", "alice", key_.string() + ".pub"});
  ok({"network", "create", "lan", "--mode", "nat", "--subnet", "10.81.0.0/24", "--domain", "lab.test"});
  ok({"image", "import", "debian", "--disk", image_.string()});
  ok({"vm", "create", "deb", "--image", "debian", "--memory", "512", "--network", "lan", "--hostname", "web1",
      "--owner", "alice", "--start"});

  std::string uuid = h_.vm("deb").value("uuid", "");
  auto nics = h_.cliJson({"vm", "nic", "list", "deb"}).value("nics", json::array());
  ASSERT_EQ(nics.size(), 1u);
  std::string addr = nics[0].value("ip", "");
  ASSERT_EQ(addr.rfind("10.81.0.", 0), 0u) << nics.dump();

  // cloud-init says on the console when its last stage is done ("Cloud-init
  // v. 22.4.2 finished at ... Datasource DataSourceNoCloud [seed=/dev/sr0]...").
  bool finished = h_.waitForLog("deb", " finished at ", 1, kCloudInitDeadline);
  std::string console = log("deb");
  ASSERT_TRUE(finished && console.find("Cloud-init v.") != std::string::npos)
      << "cloud-init did not finish within " << kCloudInitDeadline.count() << "s; the console:\n"
      << console;
  EXPECT_NE(console.find("DataSourceNoCloud"), std::string::npos) << console;
  // Seed content this cloud-init refuses shows as a failed stage and a traceback
  // on the console, not as a failure of its own: name those lines.
  std::string complaints;
  std::istringstream consoleLines(console);
  for (std::string line; std::getline(consoleLines, line);) {
    for (const char* bad : {"failed stage", "Traceback", "[ERROR]", "[WARNING]", "Error:"}) {
      if (line.find(bad) != std::string::npos) {
        complaints += line + "\n";
        break;
      }
    }
  }
  EXPECT_TRUE(complaints.empty()) << "cloud-init complained about the seed:\n" << complaints;

  // The key and the address: ssh in, as Debian's default user.
  CliResult r;
  bool in = DaemonHarness::waitFor(
      [&] {
        r = ssh(addr,
                "hostname; hostname -f; cat /var/lib/cloud/data/instance-id; "
                "cat /etc/systemd/network/*cloud-init*.network");
        return r.exitCode == 0;
      },
      kSshDeadline);
  ASSERT_TRUE(in) << "ssh debian@" << addr << " failed (exit " << r.exitCode << "): " << r.err << "\nthe console:\n"
                  << log("deb");
  std::istringstream lines(r.out);
  std::string hostname, fqdn, instanceId;
  std::getline(lines, hostname);
  std::getline(lines, fqdn);
  std::getline(lines, instanceId);
  EXPECT_EQ(hostname, "web1") << r.out;
  EXPECT_EQ(fqdn, "web1.lab.test") << r.out;
  EXPECT_EQ(instanceId, uuid) << r.out;
  // networkd was given the seed's address and gateway, not told to ask DHCP.
  EXPECT_NE(r.out.find(fmt::format("Address={}/24", addr)), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("Gateway=10.81.0.1"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("DHCP=no"), std::string::npos) << r.out;

  // A key that is not alice's is refused: the login above proves her key, not
  // an open door.
  fs::path other = h_.dir() / "id_other";
  util::Command keygen2("ssh-keygen");
  keygen2.args({"-q", "-t", "ed25519", "-N", "", "-f", other.string()}).keepEnv({"PATH"}).stdoutToBuffer();
  ASSERT_TRUE(keygen2.run().ok());
  std::swap(key_, other);
  auto refused = ssh(addr, "true");
  std::swap(key_, other);
  EXPECT_NE(refused.exitCode, 0) << refused.out;
  EXPECT_NE(refused.err.find("Permission denied"), std::string::npos) << refused.err;

  ok({"vm", "stop", "deb", "--force"});
}

}  // namespace
}  // namespace corral::testing
