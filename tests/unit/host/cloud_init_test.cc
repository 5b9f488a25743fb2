// Proves the cloud-init seed: meta-data, user-data and network-config render
// to the exact expected text and (where python3-yaml is installed) parse back
// as YAML to exactly the values given, hostile strings included (quotes,
// newlines, "!!python/object", "#", non-ASCII); and that writeSeedIso makes an
// ISO with volume id "cidata", Rock Ridge and Joliet names, the three files
// byte for byte, skips an unchanged seed without touching it and rewrites a
// changed one.
#include "host/cloud_init.h"

#include <fcntl.h>
#include <sys/stat.h>

#include <algorithm>
#include <filesystem>
#include <string>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "support/files.h"
#include "support/temp_dir.h"
#include "util/command.h"

namespace corral::host {
namespace {

using corral::testing::readAll;
using corral::testing::TempDir;
using nlohmann::json;

SeedConfig sample() {
  SeedConfig c;
  c.instanceId = "corral-7f3e";
  c.hostname = "web1";
  c.fqdn = "web1.corral.lan";
  c.sshKeys = {"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIEXAMPLE alice@laptop", "ssh-rsa AAAAB3Nza bob"};
  SeedNic n;
  n.name = "nic0";
  n.mac = "52:54:00:AB:cd:01";
  n.address = "10.77.0.5/24";
  n.gateway = "10.77.0.1";
  n.dns = {"10.77.0.1"};
  n.search = {"corral.lan"};
  SeedNic d;
  d.mac = "52:54:00:00:00:02";  // no name, DHCP
  c.nics = {n, d};
  return c;
}

// python3 with PyYAML (Debian's python3-yaml), for reading YAML back the way cloud-init does.
bool havePyYaml() {
  util::Command c("python3");
  c.keepEnv({"PATH", "HOME", "PYENV_ROOT"}).args({"-c", "import yaml"}).allowFailureStatus();
  auto r = c.run();
  return r.ok() && r->status.success();
}

// The document yaml.safe_load reads from text, as JSON.
json yamlLoad(const std::string& text) {
  util::Command c("python3");
  c.keepEnv({"PATH", "HOME", "PYENV_ROOT"})
      .args({"-c", "import sys, json, yaml; print(json.dumps(yaml.safe_load(sys.stdin.read())))"})
      .stdinBuffer(text)
      .stdoutToBuffer()
      .stderrToBuffer();
  auto r = c.run();
  EXPECT_TRUE(r.ok()) << (r.ok() ? "" : r.error().describe()) << "\n" << text;
  return r.ok() ? json::parse(r->out) : json();
}

// Runs xorriso on an ISO with the given reading options; stdout and stderr together.
std::string xorriso(std::initializer_list<std::string_view> args) {
  util::Command c("xorriso");
  c.args(args).stdoutToBuffer().stderrToStdout();
  auto r = c.run();
  EXPECT_TRUE(r.ok()) << (r.ok() ? "" : r.error().describe());
  return r.ok() ? r->out : "";
}

struct timespec mtimeOf(const std::string& path) {
  struct stat st {};
  EXPECT_EQ(::stat(path.c_str(), &st), 0) << path;
  return st.st_mtim;
}

TEST(CloudInit, RendersExactText) {
  SeedConfig c = sample();
  EXPECT_EQ(renderMetaData(c), "instance-id: \"corral-7f3e\"\nlocal-hostname: \"web1\"\n");
  EXPECT_EQ(renderUserData(c),
            "#cloud-config\n"
            "hostname: \"web1\"\n"
            "fqdn: \"web1.corral.lan\"\n"
            "manage_etc_hosts: true\n"
            "ssh_authorized_keys:\n"
            "  - \"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIEXAMPLE alice@laptop\"\n"
            "  - \"ssh-rsa AAAAB3Nza bob\"\n");
  EXPECT_EQ(renderNetworkConfig(c),
            "version: 2\n"
            "ethernets:\n"
            "  \"nic0\":\n"
            "    match:\n"
            "      macaddress: \"52:54:00:ab:cd:01\"\n"
            "    dhcp4: false\n"
            "    addresses:\n"
            "      - \"10.77.0.5/24\"\n"
            "    routes:\n"
            "      - to: \"0.0.0.0/0\"\n"
            "        via: \"10.77.0.1\"\n"
            "    nameservers:\n"
            "      addresses:\n"
            "        - \"10.77.0.1\"\n"
            "      search:\n"
            "        - \"corral.lan\"\n"
            "  \"nic1\":\n"
            "    match:\n"
            "      macaddress: \"52:54:00:00:00:02\"\n"
            "    dhcp4: true\n");
}

TEST(CloudInit, EmptyListsAndOptionalFieldsRenderValidly) {
  SeedConfig c;
  c.instanceId = "i";
  c.hostname = "h";
  EXPECT_EQ(renderUserData(c), "#cloud-config\nhostname: \"h\"\nmanage_etc_hosts: true\nssh_authorized_keys: []\n");
  EXPECT_EQ(renderNetworkConfig(c), "version: 2\nethernets: {}\n");
  SeedNic n;
  n.mac = "52:54:00:00:00:09";
  n.address = "192.168.1.9/24";  // static, no gateway: no routes key
  c.nics = {n};
  EXPECT_EQ(renderNetworkConfig(c),
            "version: 2\nethernets:\n  \"nic0\":\n    match:\n      macaddress: \"52:54:00:00:00:09\"\n"
            "    dhcp4: false\n    addresses:\n      - \"192.168.1.9/24\"\n");
}

TEST(CloudInit, RenderedYamlParsesBackToTheValues) {
  if (!havePyYaml()) GTEST_SKIP() << "python3-yaml is not installed";
  SeedConfig c = sample();
  EXPECT_EQ(yamlLoad(renderMetaData(c)), json({{"instance-id", "corral-7f3e"}, {"local-hostname", "web1"}}));
  EXPECT_EQ(yamlLoad(renderUserData(c)), json({{"hostname", "web1"},
                                               {"fqdn", "web1.corral.lan"},
                                               {"manage_etc_hosts", true},
                                               {"ssh_authorized_keys", c.sshKeys}}));
  json net = {{"version", 2},
              {"ethernets",
               {{"nic0",
                 {{"match", {{"macaddress", "52:54:00:ab:cd:01"}}},
                  {"dhcp4", false},
                  {"addresses", {"10.77.0.5/24"}},
                  {"routes", json::array({{{"to", "0.0.0.0/0"}, {"via", "10.77.0.1"}}})},
                  {"nameservers", {{"addresses", {"10.77.0.1"}}, {"search", {"corral.lan"}}}}}},
                {"nic1", {{"match", {{"macaddress", "52:54:00:00:00:02"}}}, {"dhcp4", true}}}}}};
  EXPECT_EQ(yamlLoad(renderNetworkConfig(c)), net);
  SeedConfig empty;
  empty.instanceId = "i";
  empty.hostname = "h";
  EXPECT_EQ(yamlLoad(renderNetworkConfig(empty)), json({{"version", 2}, {"ethernets", json::object()}}));
  EXPECT_EQ(yamlLoad(renderUserData(empty))["ssh_authorized_keys"], json::array());
}

TEST(CloudInit, HostileStringsStayQuotedValues) {
  const std::string evil = "x\"\nruncmd: [\"rm -rf /\"]\n!!python/object/apply:os.system ['id'] # ' \\ \t é";
  SeedConfig c;
  c.instanceId = evil;
  c.hostname = "!!python/object/apply:os.system";
  c.fqdn = "a: b\n- c";
  c.sshKeys = {evil, "ssh-ed25519 AAAA\"}\n#"};
  SeedNic n;
  n.name = "nic0\": {}\nx";
  n.mac = "52:54:00:00:00:01\ndhcp4: true";
  n.address = "10.0.0.2/24\"";
  n.gateway = "10.0.0.1\n";
  n.dns = {"8.8.8.8\n  - evil"};
  c.nics = {n};
  for (const std::string& text : {renderMetaData(c), renderUserData(c), renderNetworkConfig(c)}) {
    // Every line is a fixed key or list dash followed by one JSON string: none
    // starts with a hostile fragment, and all bytes are ASCII.
    EXPECT_EQ(text.find("\n!!"), std::string::npos) << text;
    EXPECT_EQ(text.find("\nruncmd"), std::string::npos) << text;
    EXPECT_EQ(text.find("\ndhcp4"), std::string::npos) << text;
    for (unsigned char ch : text) EXPECT_LT(ch, 0x80) << text;
  }
  EXPECT_NE(renderMetaData(c).find("local-hostname: \"!!python/object/apply:os.system\"\n"), std::string::npos);
  if (!havePyYaml()) GTEST_SKIP() << "python3-yaml is not installed; exact-text checks only";
  json meta = yamlLoad(renderMetaData(c));
  EXPECT_EQ(meta, json({{"instance-id", evil}, {"local-hostname", c.hostname}}));
  json user = yamlLoad(renderUserData(c));
  EXPECT_EQ(user, json({{"hostname", c.hostname},
                        {"fqdn", c.fqdn},
                        {"manage_etc_hosts", true},
                        {"ssh_authorized_keys", c.sshKeys}}));
  json net = yamlLoad(renderNetworkConfig(c));
  ASSERT_TRUE(net["ethernets"].is_object());
  ASSERT_EQ(net["ethernets"].size(), 1u);
  const json& e = net["ethernets"][n.name];
  EXPECT_EQ(e["match"]["macaddress"], n.mac);
  EXPECT_EQ(e["dhcp4"], false);
  EXPECT_EQ(e["addresses"], json({n.address}));
  EXPECT_EQ(e["routes"][0]["via"], n.gateway);
  EXPECT_EQ(e["nameservers"]["addresses"], json(n.dns));
}

TEST(CloudInit, WriteSeedIsoMakesACidataIsoWithTheThreeFiles) {
  TempDir dir;
  SeedConfig c = sample();
  std::string iso = (dir / "seed.iso").string();
  auto r = writeSeedIso(c, iso);
  ASSERT_TRUE(r.ok()) << r.error().describe();
  EXPECT_TRUE(*r);
  EXPECT_EQ(corral::testing::modeOf(iso), 0644u);

  std::string pvd = xorriso({"-indev", iso, "-pvd_info"});
  EXPECT_NE(pvd.find("Volume Id    : cidata\n"), std::string::npos) << pvd;

  std::string out = (dir / "out").string();
  xorriso({"-osirrox", "on", "-read_fs", "nojoliet", "-indev", iso, "-extract", "/", out});  // Rock Ridge names
  EXPECT_EQ(readAll(out + "/meta-data"), renderMetaData(c));
  EXPECT_EQ(readAll(out + "/user-data"), renderUserData(c));
  EXPECT_EQ(readAll(out + "/network-config"), renderNetworkConfig(c));
  std::string joliet = xorriso({"-read_fs", "norock", "-indev", iso, "-ls", "/"});
  EXPECT_NE(joliet.find("'network-config'"), std::string::npos) << "Joliet names: " << joliet;

  // Only the ISO and its digest are left beside it: the work dir is gone.
  std::vector<std::string> names;
  for (const auto& entry : std::filesystem::directory_iterator(dir.path()))
    names.push_back(entry.path().filename().string());
  std::sort(names.begin(), names.end());
  EXPECT_EQ(names, (std::vector<std::string>{"out", "seed.iso", "seed.iso.digest"}));
}

TEST(CloudInit, WriteSeedIsoSkipsAnUnchangedSeedAndRewritesAChangedOne) {
  TempDir dir;
  SeedConfig c = sample();
  std::string iso = (dir / "seed.iso").string();
  ASSERT_TRUE(writeSeedIso(c, iso).ok());
  // An mtime in the past, so that a rewrite within the same clock tick still shows.
  struct timespec old[2] = {{1000000000, 0}, {1000000000, 0}};
  ASSERT_EQ(::utimensat(AT_FDCWD, iso.c_str(), old, 0), 0);
  std::string before = readAll(iso);

  auto again = writeSeedIso(c, iso);
  ASSERT_TRUE(again.ok()) << again.error().describe();
  EXPECT_FALSE(*again);
  EXPECT_EQ(mtimeOf(iso).tv_sec, 1000000000);
  EXPECT_EQ(readAll(iso), before);

  c.sshKeys.push_back("ssh-ed25519 AAAAnewkey carol");
  auto changed = writeSeedIso(c, iso);
  ASSERT_TRUE(changed.ok()) << changed.error().describe();
  EXPECT_TRUE(*changed);
  EXPECT_NE(mtimeOf(iso).tv_sec, 1000000000);
  EXPECT_NE(readAll(iso), before);
  std::string out = (dir / "out").string();
  xorriso({"-osirrox", "on", "-indev", iso, "-extract", "/", out});
  EXPECT_NE(readAll(out + "/user-data").find("carol"), std::string::npos);

  // The ISO gone (the digest left behind) is rebuilt, not trusted to the digest.
  std::filesystem::remove(iso);
  auto rebuilt = writeSeedIso(c, iso);
  ASSERT_TRUE(rebuilt.ok());
  EXPECT_TRUE(*rebuilt);
  EXPECT_TRUE(std::filesystem::exists(iso));
}

TEST(CloudInit, WriteSeedIsoRefusesAnIncompleteConfig) {
  TempDir dir;
  SeedConfig c = sample();
  c.hostname = "";
  auto r = writeSeedIso(c, (dir / "seed.iso").string());
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().field, "hostname");
  c = sample();
  c.nics[1].mac = "";
  r = writeSeedIso(c, (dir / "seed.iso").string());
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().field, "nics[1].mac");
  EXPECT_FALSE(std::filesystem::exists(dir / "seed.iso"));
}

}  // namespace
}  // namespace corral::host
