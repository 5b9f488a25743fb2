// Proves that buildCommandLine turns representative VmSpecs into exactly the argv
// in tests/data/qemu/command_line/<case>.args (one argument per line), and that
// no name or path can leave its QEMU option: commas are doubled inside option
// strings, verbatim options (-kernel, -append, -pidfile) are left alone, and a
// hostile value never adds a key of its own.
//
// To rewrite the golden files after an intended change, run the test with
// CORRAL_REGENERATE_GOLDEN=1 in the environment and review the diff:
//   CORRAL_REGENERATE_GOLDEN=1 build/tests/command_line_test
#include "qemu/command_line.h"

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "util/qemu_escape.h"

namespace corral::qemu {
namespace {

using ::testing::Contains;
using ::testing::ElementsAre;
using ::testing::Not;

std::filesystem::path goldenPath(const std::string& name) {
  return std::filesystem::path(CORRAL_SOURCE_DIR) / "tests/data/qemu/command_line" / (name + ".args");
}

// Compares argv with the golden file, or rewrites the file when asked to.
void expectGolden(const std::string& name, const std::vector<std::string>& argv) {
  const std::filesystem::path path = goldenPath(name);
  const char* regen = std::getenv("CORRAL_REGENERATE_GOLDEN");
  if (regen != nullptr && std::string(regen) == "1") {
    std::ofstream out(path, std::ios::trunc);
    for (const auto& a : argv) out << a << '\n';
    ASSERT_TRUE(out.good()) << "cannot write " << path;
    return;
  }
  std::ifstream in(path);
  ASSERT_TRUE(in.good()) << "missing golden file " << path
                         << " (run with CORRAL_REGENERATE_GOLDEN=1 to create it)";
  std::vector<std::string> want;
  for (std::string line; std::getline(in, line);) want.push_back(line);
  EXPECT_EQ(argv, want) << "argv differs from " << path
                        << " (if intended: CORRAL_REGENERATE_GOLDEN=1, then review the diff)";
}

// Splits a QEMU option string the way QemuOpts/keyval do: ',' separates,
// ',,' is a literal comma. Returns key -> values (keys may repeat).
std::multimap<std::string, std::string> parseOptionString(const std::string& s) {
  std::vector<std::string> parts(1);
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == ',') {
      if (i + 1 < s.size() && s[i + 1] == ',') {
        parts.back() += ',';
        ++i;
      } else {
        parts.emplace_back();
      }
    } else {
      parts.back() += s[i];
    }
  }
  std::multimap<std::string, std::string> out;
  for (const auto& p : parts) {
    auto eq = p.find('=');
    if (eq == std::string::npos) {
      out.emplace("", p);  // implied first value (driver, backend)
    } else {
      out.emplace(p.substr(0, eq), p.substr(eq + 1));
    }
  }
  return out;
}

// The value following the n-th occurrence of `opt` in argv.
std::string optionValue(const std::vector<std::string>& argv, const std::string& opt, int n = 0) {
  for (size_t i = 0; i + 1 < argv.size(); ++i) {
    if (argv[i] == opt && n-- == 0) return argv[i + 1];
  }
  ADD_FAILURE() << "no " << opt << " in argv";
  return {};
}

RuntimePaths paths() {
  return RuntimePaths{
      .qmpSocket = "/run/corral/vm/web1/qmp.sock",
      .serialSocket = "/run/corral/vm/web1/serial.sock",
      .vncSocket = "/run/corral/vm/web1/vnc.sock",
      .pidfile = "/run/corral/vm/web1/qemu.pid",
  };
}

VmSpec directBootSpec() {
  VmSpec spec;
  spec.name = "web1";
  spec.uuid = "3f1c2a4e-8d2b-4c1a-9e6f-0a1b2c3d4e5f";
  spec.memoryMib = 128;
  spec.directBoot = DirectBoot{"/var/lib/corral/guest/vmlinuz", "/var/lib/corral/guest/initramfs.cpio.gz",
                               "console=ttyS0 quiet panic=-1"};
  return spec;
}

TEST(EscapeOptionValue, DoublesEveryComma) {
  EXPECT_EQ(util::escapeOptionValue(""), "");
  EXPECT_EQ(util::escapeOptionValue("plain"), "plain");
  EXPECT_EQ(util::escapeOptionValue(","), ",,");
  EXPECT_EQ(util::escapeOptionValue("a,b,,c"), "a,,b,,,,c");
  EXPECT_EQ(util::escapeOptionValue("x=y"), "x=y");
}

TEST(CommandLine, MinimalDirectBoot) {
  expectGolden("minimal_direct_boot", buildCommandLine(directBootSpec(), paths(), LaunchOptions{}));
}

TEST(CommandLine, DisksOnAllBuses) {
  VmSpec spec;
  spec.name = "db1";
  spec.uuid = "00000000-0000-4000-8000-000000000001";
  spec.memoryMib = 2048;
  spec.cpus = {4, 1, 2, 2};
  spec.accel = Accel::Kvm;
  spec.bootOrder = {BootDevice::Disk};
  spec.disks = {
      {.id = "root", .path = "/srv/disks/db1-root.qcow2", .format = "qcow2", .bus = DiskBus::VirtioBlk,
       .cache = CacheMode::None, .discard = DiscardMode::Unmap},
      {.id = "data", .path = "/srv/disks/db1-data.raw", .format = "raw", .bus = DiskBus::VirtioScsi,
       .cache = CacheMode::Writeback, .discard = DiscardMode::Ignore},
      {.id = "logs", .path = "/srv/disks/db1-logs.qcow2", .format = "qcow2", .bus = DiskBus::VirtioScsi,
       .cache = CacheMode::Unsafe, .discard = DiscardMode::Unmap},
      {.id = "legacy", .path = "/srv/disks/db1-legacy.qcow2", .format = "qcow2", .bus = DiskBus::Ide,
       .cache = CacheMode::Writethrough, .discard = DiscardMode::Ignore},
      {.id = "seed", .path = "/srv/disks/db1-seed.raw", .format = "raw", .bus = DiskBus::VirtioBlk,
       .cache = CacheMode::DirectSync, .discard = DiscardMode::Ignore, .readOnly = true},
  };
  expectGolden("disks_all_buses", buildCommandLine(spec, paths(), LaunchOptions{}));
}

TEST(CommandLine, CdromsAndBootOrder) {
  VmSpec spec;
  spec.name = "installer";
  spec.uuid = "00000000-0000-4000-8000-000000000002";
  spec.memoryMib = 1024;
  spec.machine = "pc";
  spec.bootOrder = {BootDevice::Cdrom, BootDevice::Disk, BootDevice::Network};
  spec.disks = {{.id = "root", .path = "/srv/disks/installer.qcow2"}};
  spec.cdroms = {
      {.id = "install", .path = "/srv/images/debian-12.4-amd64-netinst.iso", .bus = CdromBus::Ide},
      {.id = "empty", .path = "", .bus = CdromBus::Ide},
      {.id = "drivers", .path = "/srv/images/drivers.iso", .bus = CdromBus::Scsi},
  };
  spec.nics = {{.id = "0", .mac = "52:54:00:12:34:56"}};
  expectGolden("cdroms_boot_order", buildCommandLine(spec, paths(), LaunchOptions{}));
}

TEST(CommandLine, TwoNicsWithForwards) {
  VmSpec spec = directBootSpec();
  spec.nics = {
      {.id = "0",
       .model = NicModel::VirtioNet,
       .mac = "52:54:00:00:00:01",
       .forwards = {{.hostPort = 2222, .guestPort = 22}, {.hostPort = 8080, .guestPort = 80}}},
      {.id = "1",
       .model = NicModel::E1000,
       .mac = "52:54:00:00:00:02",
       .forwards = {{.proto = "udp", .hostAddr = "0.0.0.0", .hostPort = 5353, .guestPort = 53}}},
  };
  expectGolden("two_nics_forwards", buildCommandLine(spec, paths(), LaunchOptions{}));
}

TEST(CommandLine, SmbiosWithOemStrings) {
  VmSpec spec = directBootSpec();
  spec.smbios.manufacturer = "SIPB";
  spec.smbios.product = "corral VM";
  spec.smbios.version = "1.0";
  spec.smbios.serial = "ds=nocloud;s=http://10.0.2.2:8000/";
  spec.smbios.oemStrings = {"corral.metadata/v1", "io.systemd.credential:hostname=web1"};
  expectGolden("smbios_oem_strings", buildCommandLine(spec, paths(), LaunchOptions{}));
}

// Everything a user could have named carries a comma and a would-be key.
VmSpec hostileSpec() {
  VmSpec spec;
  spec.name = "a,b,readonly=on";
  spec.uuid = "00000000-0000-4000-8000-000000000003";
  spec.machine = "q35,accel=kvm";
  spec.cpuModel = "max,+vmx";
  spec.directBoot = DirectBoot{"/g,x/vmlinuz,1", "/g,x/initrd,1", "console=ttyS0,115200 a=b,c"};
  spec.disks = {{.id = "d,evil=1", .path = "/srv/a,b/disk,file=/etc/shadow", .format = "qcow2,x=y"}};
  spec.cdroms = {{.id = "c,x", .path = "/srv/iso,1/x.iso,driver=host_device", .bus = CdromBus::Scsi}};
  spec.nics = {{.id = "n,1",
                .mac = "52:54:00:00:00:01,romfile=/etc/passwd",
                .forwards = {{.hostAddr = "127.0.0.1,hostfwd=tcp::1-:2", .hostPort = 1, .guestPort = 2}}}};
  spec.smbios.manufacturer = "Acme, Inc.";
  spec.smbios.product = "p,type=2";
  spec.smbios.serial = "s,n";
  spec.smbios.oemStrings = {"one,two", "x,path=/etc/shadow"};
  return spec;
}

RuntimePaths hostilePaths() {
  return RuntimePaths{
      .qmpSocket = "/run/c,d/qmp.sock,server=off",
      .serialSocket = "/run/c,d/serial.sock",
      .vncSocket = "/run/c,d/v=x,password=on",
      .pidfile = "/run/c,d/qemu.pid",
  };
}

TEST(CommandLine, CommasInNamesAndPaths) {
  expectGolden("escaping", buildCommandLine(hostileSpec(), hostilePaths(), LaunchOptions{}));
}

TEST(CommandLine, NoHostileValueAddsAKey) {
  const auto argv = buildCommandLine(hostileSpec(), hostilePaths(), LaunchOptions{});
  const std::vector<std::string> kvOptions = {"-name", "-machine", "-chardev", "-mon",   "-device",
                                              "-blockdev", "-netdev", "-smbios", "-vnc", "-boot"};
  // Keys an attacker tried to add above; none of these is ever ours for the option
  // it was smuggled into.
  const std::vector<std::string> injected = {"readonly", "accel", "evil", "x", "romfile", "driver=host_device"};
  for (size_t i = 1; i + 1 < argv.size(); ++i) {
    if (std::find(kvOptions.begin(), kvOptions.end(), argv[i]) == kvOptions.end()) continue;
    const auto opts = parseOptionString(argv[i + 1]);
    for (const auto& [key, value] : opts) {
      EXPECT_THAT(injected, Not(Contains(key))) << argv[i] << " " << argv[i + 1];
    }
    if (argv[i] == "-smbios") {
      for (const auto& [key, value] : opts) {
        EXPECT_THAT((std::vector<std::string>{"type", "manufacturer", "product", "version", "serial", "value"}),
                    Contains(key))
            << argv[i + 1];
      }
    }
    // Each key appears once, except QEMU's list options.
    for (const auto& [key, value] : opts) {
      if (key == "hostfwd") continue;
      EXPECT_EQ(opts.count(key), 1u) << "key " << key << " repeated in " << argv[i] << " " << argv[i + 1];
    }
  }
  auto name = parseOptionString(optionValue(argv, "-name"));
  EXPECT_EQ(name.find("guest")->second, "a,b,readonly=on");
  auto qmp = parseOptionString(optionValue(argv, "-chardev", 0));
  EXPECT_EQ(qmp.find("path")->second, "/run/c,d/qmp.sock,server=off");
  EXPECT_EQ(qmp.find("server")->second, "on");
  auto vnc = parseOptionString(optionValue(argv, "-vnc"));
  EXPECT_THAT(vnc, ElementsAre(std::pair<const std::string, std::string>("vnc", "unix:/run/c,d/v=x,password=on")));
  auto netdev = parseOptionString(optionValue(argv, "-netdev"));
  EXPECT_EQ(netdev.count("hostfwd"), 1u);
}

TEST(CommandLine, VerbatimOptionsAreNotEscaped) {
  const auto argv = buildCommandLine(hostileSpec(), hostilePaths(), LaunchOptions{});
  EXPECT_EQ(optionValue(argv, "-kernel"), "/g,x/vmlinuz,1");
  EXPECT_EQ(optionValue(argv, "-initrd"), "/g,x/initrd,1");
  EXPECT_EQ(optionValue(argv, "-append"), "console=ttyS0,115200 a=b,c");
  EXPECT_EQ(optionValue(argv, "-pidfile"), "/run/c,d/qemu.pid");
  // -cpu cannot be escaped: what follows a comma would be read as CPU features.
  EXPECT_EQ(optionValue(argv, "-cpu"), "max");
}

TEST(CommandLine, DefaultsFollowTheAccelerator) {
  VmSpec spec = directBootSpec();
  EXPECT_EQ(optionValue(buildCommandLine(spec, paths(), {}), "-cpu"), "max");
  EXPECT_EQ(optionValue(buildCommandLine(spec, paths(), {}), "-accel"), "tcg");
  spec.accel = Accel::Kvm;
  EXPECT_EQ(optionValue(buildCommandLine(spec, paths(), {}), "-cpu"), "host");
  EXPECT_EQ(optionValue(buildCommandLine(spec, paths(), {}), "-accel"), "kvm");
}

TEST(CommandLine, OptionalPartsAreLeftOut) {
  VmSpec spec = directBootSpec();
  spec.uuid.clear();
  spec.balloon = false;
  spec.rng = false;
  spec.noReboot = true;
  spec.directBoot->initrd.clear();
  spec.directBoot->append.clear();
  const auto argv = buildCommandLine(spec, RuntimePaths{}, LaunchOptions{.binary = "/opt/q/bin/qemu", .startPaused = false});
  EXPECT_EQ(argv.front(), "/opt/q/bin/qemu");
  for (const char* absent : {"-uuid", "-initrd", "-append", "-pidfile", "-chardev", "-mon", "-vnc", "-S", "-object",
                             "-boot", "-netdev"}) {
    EXPECT_THAT(argv, Not(Contains(std::string(absent))));
  }
  EXPECT_THAT(argv, Contains(std::string("-no-reboot")));
  EXPECT_THAT(argv, Not(Contains(std::string("virtio-balloon-pci,id=balloon0"))));
  EXPECT_EQ(argv, buildCommandLine(spec, RuntimePaths{}, LaunchOptions{.binary = "/opt/q/bin/qemu", .startPaused = false}));
}

TEST(CommandLine, QmpNamesMatchTheArgv) {
  Disk disk{.id = "root", .path = "/d.qcow2"};
  Cdrom cd{.id = "iso", .path = "/x.iso"};
  Nic nic{.id = "0"};
  EXPECT_EQ(diskDeviceId(disk), "disk-root");
  EXPECT_EQ(diskNodeName(disk), "disk-root-fmt");
  EXPECT_EQ(diskFileNodeName(disk), "disk-root-file");
  EXPECT_EQ(cdromDeviceId(cd), "cd-iso");
  EXPECT_EQ(cdromNodeName(cd), "cd-iso-fmt");
  EXPECT_EQ(nicDeviceId(nic), "nic-0");
  EXPECT_EQ(nicNetdevId(nic), "net-0");
  VmSpec spec = directBootSpec();
  spec.disks = {disk};
  spec.cdroms = {cd};
  spec.nics = {nic};
  const auto argv = buildCommandLine(spec, paths(), {});
  auto blk = parseOptionString(optionValue(argv, "-device", 1));
  EXPECT_EQ(blk.find("drive")->second, diskNodeName(disk));
  EXPECT_EQ(blk.find("id")->second, diskDeviceId(disk));
}

}  // namespace
}  // namespace corral::qemu
