// Proves that buildCommandLine turns representative VmSpecs into exactly the argv
// in tests/data/qemu/command_line/<case>.args (one argument per line), and that
// no name or path can leave its QEMU option: commas are doubled inside option
// strings, verbatim options (-kernel, -append, -pidfile) are left alone, and a
// hostile value never adds a key of its own. Also that encrypted disks are opened
// by QEMU's LUKS driver with a key QEMU reads from a file (no key on the argv),
// block devices use host_device, serials and -boot once= are passed on, and a
// cdrom on virtio-scsi can start with an empty tray.
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

#include "support/temp_dir.h"
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
  spec.disks = {{.id = "d,evil=1",
                 .path = "/srv/a,b/disk,file=/etc/shadow",
                 .format = "qcow2,x=y",
                 .encryption = DiskEncryption{"/run/c,d/key,data=hunter2"},
                 .serial = "s,bootindex=1"}};
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
  const std::vector<std::string> kvOptions = {"-name",   "-machine", "-chardev", "-mon", "-device", "-blockdev",
                                              "-netdev", "-smbios",  "-vnc",     "-boot", "-object"};
  // Keys an attacker tried to add above; none of these is ever ours for the option
  // it was smuggled into.
  const std::vector<std::string> injected = {"readonly", "accel", "evil", "x", "romfile", "driver=host_device",
                                             "data", "bootindex"};
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
  auto secret = parseOptionString(optionValue(argv, "-object"));
  EXPECT_EQ(secret.find("file")->second, "/run/c,d/key,data=hunter2");
  EXPECT_EQ(secret.find("id")->second, "disk-d,evil=1-sec");
  auto disk = parseOptionString(optionValue(argv, "-device", 2));
  EXPECT_EQ(disk.find("serial")->second, "s,bootindex=1");
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

// Options of the -blockdev whose node-name is `node`.
std::multimap<std::string, std::string> blockdev(const std::vector<std::string>& argv, const std::string& node) {
  for (size_t i = 0; i + 1 < argv.size(); ++i) {
    if (argv[i] != "-blockdev") continue;
    auto opts = parseOptionString(argv[i + 1]);
    auto n = opts.find("node-name");
    if (n != opts.end() && n->second == node) return opts;
  }
  ADD_FAILURE() << "no -blockdev node-name=" << node;
  return {};
}

std::string one(const std::multimap<std::string, std::string>& opts, const std::string& key) {
  EXPECT_EQ(opts.count(key), 1u) << key;
  auto it = opts.find(key);
  return it == opts.end() ? std::string() : it->second;
}

VmSpec encryptedSpec() {
  VmSpec spec;
  spec.name = "vault";
  spec.uuid = "00000000-0000-4000-8000-000000000004";
  spec.memoryMib = 512;
  spec.accel = Accel::Kvm;
  spec.bootOrder = {BootDevice::Disk};
  spec.disks = {
      {.id = "disk0", .path = "/var/lib/corral/pools/default/vault-disk0.qcow2", .format = "qcow2",
       .encryption = DiskEncryption{"/run/corral/vm/vault/disk0.key"}},
      {.id = "disk1", .path = "/dev/corral-vg/vault-disk1", .format = "raw", .bus = DiskBus::VirtioScsi,
       .hostDevice = true, .encryption = DiskEncryption{"/run/corral/vm/vault/disk1.key"}},
      {.id = "disk2", .path = "/dev/corral-vg/vault-disk2", .format = "raw", .hostDevice = true},
  };
  return spec;
}

TEST(CommandLine, EncryptedDisks) {
  expectGolden("encrypted_disks", buildCommandLine(encryptedSpec(), paths(), LaunchOptions{}));
}

// qcow2 + LUKS: the qcow2 node itself decrypts, with encrypt.* naming the secret
// object, which reads its key from the file as raw bytes.
TEST(CommandLine, EncryptedQcow2UsesQcow2Luks) {
  const VmSpec spec = encryptedSpec();
  const auto argv = buildCommandLine(spec, paths(), {});
  const Disk& d = spec.disks[0];
  auto secret = parseOptionString(optionValue(argv, "-object", 0));
  EXPECT_EQ(one(secret, ""), "secret");
  EXPECT_EQ(one(secret, "id"), diskSecretId(d));
  EXPECT_EQ(one(secret, "file"), "/run/corral/vm/vault/disk0.key");
  EXPECT_EQ(one(secret, "format"), "raw");
  auto fmtNode = blockdev(argv, diskNodeName(d));
  EXPECT_EQ(one(fmtNode, "driver"), "qcow2");
  EXPECT_EQ(one(fmtNode, "encrypt.format"), "luks");
  EXPECT_EQ(one(fmtNode, "encrypt.key-secret"), "disk-disk0-sec");
  EXPECT_EQ(one(fmtNode, "file"), diskFileNodeName(d));
  EXPECT_EQ(one(blockdev(argv, diskFileNodeName(d)), "driver"), "file");
}

// Raw LUKS on a block device (an LV): protocol host_device, format driver luks.
TEST(CommandLine, EncryptedRawOnBlockDeviceUsesLuksDriver) {
  const VmSpec spec = encryptedSpec();
  const auto argv = buildCommandLine(spec, paths(), {});
  const Disk& d = spec.disks[1];
  auto secret = parseOptionString(optionValue(argv, "-object", 1));
  EXPECT_EQ(one(secret, "id"), "disk-disk1-sec");
  EXPECT_EQ(one(secret, "file"), "/run/corral/vm/vault/disk1.key");
  auto fileNode = blockdev(argv, diskFileNodeName(d));
  EXPECT_EQ(one(fileNode, "driver"), "host_device");
  EXPECT_EQ(one(fileNode, "filename"), "/dev/corral-vg/vault-disk1");
  auto fmtNode = blockdev(argv, diskNodeName(d));
  EXPECT_EQ(one(fmtNode, "driver"), "luks");
  EXPECT_EQ(one(fmtNode, "key-secret"), "disk-disk1-sec");
  EXPECT_EQ(fmtNode.count("encrypt.format"), 0u);
  // An unencrypted block device stays plain raw, with no secret.
  auto plain = blockdev(argv, diskNodeName(spec.disks[2]));
  EXPECT_EQ(one(plain, "driver"), "raw");
  EXPECT_EQ(plain.count("key-secret"), 0u);
  EXPECT_EQ(one(blockdev(argv, diskFileNodeName(spec.disks[2])), "driver"), "host_device");
  EXPECT_EQ(optionValue(argv, "-object", 2), "rng-random,id=rng0,filename=/dev/urandom");
}

// A key cannot reach the argv: DiskEncryption holds nothing but the key file's
// path, and buildCommandLine never opens files, so a real key file's contents
// appear nowhere in the argv; the secret object has only id, file and format.
TEST(CommandLine, NoSecretValueOnTheArgv) {
  static_assert(sizeof(DiskEncryption) == sizeof(std::string), "DiskEncryption must carry only the key file path");
  corral::testing::TempDir dir;
  const std::string key = "c0rral-T0p-Secret-Key-5a0f9e";
  const std::string keyFile = (dir / "disk0.key").string();
  {
    std::ofstream out(keyFile);
    out << key;
    ASSERT_TRUE(out.good());
  }
  VmSpec spec = encryptedSpec();
  spec.disks[0].encryption->secretFile = keyFile;
  spec.disks[1].encryption->secretFile = keyFile;
  const auto argv = buildCommandLine(spec, paths(), {});
  for (const auto& a : argv) EXPECT_EQ(a.find(key), std::string::npos) << a;
  int secrets = 0;
  for (size_t i = 0; i + 1 < argv.size(); ++i) {
    if (argv[i] != "-object" || !argv[i + 1].starts_with("secret,")) continue;
    ++secrets;
    std::vector<std::string> keys;
    for (const auto& [k, v] : parseOptionString(argv[i + 1])) keys.push_back(k);
    EXPECT_THAT(keys, ::testing::UnorderedElementsAre("", "id", "file", "format")) << argv[i + 1];
    EXPECT_EQ(one(parseOptionString(argv[i + 1]), "file"), keyFile);
  }
  EXPECT_EQ(secrets, 2);
}

TEST(CommandLine, SerialBootOnceAndEmptyScsiCdrom) {
  VmSpec spec;
  spec.name = "rescue";
  spec.uuid = "00000000-0000-4000-8000-000000000005";
  spec.memoryMib = 256;
  spec.bootOrder = {BootDevice::Disk};
  spec.bootOnce = {BootDevice::Cdrom};
  spec.disks = {{.id = "disk0", .path = "/srv/disks/rescue-disk0.qcow2", .serial = "corral-disk0"},
                {.id = "disk1", .path = "/srv/disks/rescue-disk1.qcow2", .bus = DiskBus::VirtioScsi,
                 .serial = "corral-disk1"}};
  spec.cdroms = {{.id = "cdrom", .path = "", .bus = CdromBus::Scsi}};
  const auto argv = buildCommandLine(spec, paths(), {});
  expectGolden("serial_boot_once", argv);
  EXPECT_EQ(optionValue(argv, "-boot"), "order=c,once=d");
  EXPECT_EQ(one(parseOptionString(optionValue(argv, "-device", 2)), "serial"), "corral-disk0");
  auto scsiDisk = parseOptionString(optionValue(argv, "-device", 3));
  EXPECT_EQ(one(scsiDisk, ""), "scsi-hd");
  EXPECT_EQ(one(scsiDisk, "serial"), "corral-disk1");
  // The empty tray: a scsi-cd with no drive, which blockdev-change-medium on
  // "cd-cdrom" fills later.
  auto cd = parseOptionString(optionValue(argv, "-device", 4));
  EXPECT_EQ(one(cd, ""), "scsi-cd");
  EXPECT_EQ(one(cd, "id"), "cd-cdrom");
  EXPECT_EQ(cd.count("drive"), 0u);
  EXPECT_EQ(one(cd, "scsi-id"), "1");
}

// once= needs an order to return to: with none given it is the disk ("c");
// direct boot ignores both.
TEST(CommandLine, BootOnceDefaultsAndDirectBoot) {
  VmSpec spec;
  spec.name = "x";
  spec.bootOnce = {BootDevice::Cdrom, BootDevice::Network};
  EXPECT_EQ(optionValue(buildCommandLine(spec, paths(), {}), "-boot"), "order=c,once=dn");
  spec.bootOnce.clear();
  EXPECT_THAT(buildCommandLine(spec, paths(), {}), Not(Contains(std::string("-boot"))));
  spec = directBootSpec();
  spec.bootOrder = {BootDevice::Disk};
  spec.bootOnce = {BootDevice::Cdrom};
  EXPECT_THAT(buildCommandLine(spec, paths(), {}), Not(Contains(std::string("-boot"))));
  // Without a serial the device has no serial key at all.
  spec.disks = {{.id = "d", .path = "/d.qcow2"}};
  EXPECT_EQ(parseOptionString(optionValue(buildCommandLine(spec, paths(), {}), "-device", 1)).count("serial"), 0u);
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

// A tap NIC is a tap netdev on the fd the caller opened, with vhost-net's fd when
// given, and never user-mode forwards; without vhost it says nothing of vhost.
TEST(CommandLine, TapNicsUseTheirPassedFds) {
  VmSpec spec;
  spec.name = "t";
  spec.uuid = "00000000-0000-4000-8000-000000000004";
  spec.nics = {{.id = "nic0", .mac = "52:54:00:00:00:0a", .tapFd = 17, .vhostFd = 18, .tapName = "crl1n0"},
               {.id = "nic1", .model = NicModel::E1000, .mac = "52:54:00:00:00:0b", .tapFd = 19}};
  const auto argv = buildCommandLine(spec, RuntimePaths{}, LaunchOptions{});
  auto first = parseOptionString(optionValue(argv, "-netdev", 0));
  EXPECT_EQ(first.find("")->second, "tap");
  EXPECT_EQ(first.find("fd")->second, "17");
  EXPECT_EQ(first.find("vhost")->second, "on");
  EXPECT_EQ(first.find("vhostfd")->second, "18");
  EXPECT_EQ(first.count("hostfwd"), 0u);
  auto second = parseOptionString(optionValue(argv, "-netdev", 1));
  EXPECT_EQ(second.find("fd")->second, "19");
  EXPECT_EQ(second.count("vhost"), 0u);
  EXPECT_EQ(second.count("vhostfd"), 0u);
}

}  // namespace
}  // namespace corral::qemu
