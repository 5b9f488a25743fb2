// VmSpec -> QEMU argv; see command_line.h for what it guarantees.
#include "qemu/command_line.h"

#include <cstdint>
#include <string_view>

#include <fmt/format.h>

#include "util/qemu_escape.h"

namespace corral::qemu {

namespace {

// One "a=b,c=d" option string. Keys and the leading word are constants of this
// file; every value goes through escapeOptionValue, whatever its origin, so a
// future caller cannot forget it for the one value that mattered.
class OptionString {
 public:
  OptionString() = default;
  // `head` is an option's implied first value (a driver or backend name): only
  // ever a constant, never a name or path from the spec.
  explicit OptionString(std::string_view head) : s_(head) {}

  OptionString& set(std::string_view key, std::string_view value) {
    if (!s_.empty()) s_ += ',';
    s_ += key;
    s_ += '=';
    s_ += util::escapeOptionValue(value);
    return *this;
  }
  OptionString& set(std::string_view key, uint64_t value) { return set(key, std::to_string(value)); }
  OptionString& set(std::string_view key, bool value) { return set(key, value ? "on" : "off"); }
  // Without this, a string literal would pick the bool overload.
  OptionString& set(std::string_view key, const char* value) { return set(key, std::string_view(value)); }

  std::string str() const { return s_; }

 private:
  std::string s_;
};

struct CacheFlags {
  bool direct;      // O_DIRECT on the image
  bool noFlush;     // ignore guest flushes
  bool writeCache;  // the guest sees a volatile write cache (and flushes it)
};

// The same table QEMU's -drive cache= shorthand expands to.
CacheFlags cacheFlags(CacheMode mode) {
  switch (mode) {
    case CacheMode::None: return {true, false, true};
    case CacheMode::Writeback: return {false, false, true};
    case CacheMode::Writethrough: return {false, false, false};
    case CacheMode::DirectSync: return {true, false, false};
    case CacheMode::Unsafe: return {false, true, true};
  }
  return {true, false, true};
}

const char* discardValue(DiscardMode mode) {
  switch (mode) {
    case DiscardMode::Ignore: return "ignore";
    case DiscardMode::Unmap: return "unmap";
  }
  return "ignore";
}

char bootLetter(BootDevice device) {
  switch (device) {
    case BootDevice::Disk: return 'c';
    case BootDevice::Cdrom: return 'd';
    case BootDevice::Network: return 'n';
  }
  return 'c';
}

const char* nicDriver(NicModel model) {
  switch (model) {
    case NicModel::VirtioNet: return "virtio-net-pci";
    case NicModel::E1000: return "e1000";
  }
  return "virtio-net-pci";
}

// A CPU model cannot be escaped: QEMU splits -cpu at the first comma and reads
// the rest as CPU features, with no quoting. VmSpec has no feature list, so
// anything past a comma is not ours to pass on.
std::string cpuModelFor(const VmSpec& spec) {
  std::string model = spec.cpuModel.empty() ? (spec.accel == Accel::Kvm ? "host" : "max") : spec.cpuModel;
  if (auto comma = model.find(','); comma != std::string::npos) model.resize(comma);
  return model;
}

void add(std::vector<std::string>& argv, std::string_view opt, std::string value) {
  argv.emplace_back(opt);
  argv.push_back(std::move(value));
}

bool usesScsi(const VmSpec& spec) {
  for (const auto& d : spec.disks)
    if (d.bus == DiskBus::VirtioScsi) return true;
  for (const auto& c : spec.cdroms)
    if (c.bus == CdromBus::Scsi) return true;
  return false;
}

// QEMU does not skip full IDE buses when it places an IDE device itself (on
// q35 every AHCI port is its own one-unit bus), so each IDE device gets its
// slot here, in spec order: disks first, then cdroms.
class IdeSlots {
 public:
  explicit IdeSlots(std::string_view machine) : q35_(machine.find("q35") != std::string_view::npos) {}

  void place(OptionString& dev) {
    const uint64_t i = next_++;
    if (q35_) {
      dev.set("bus", fmt::format("ide.{}", i));  // ich9-ahci: ide.0 .. ide.5, one unit each
    } else {
      dev.set("bus", fmt::format("ide.{}", i / 2)).set("unit", i % 2);  // piix: 2 buses x 2 units
    }
  }

 private:
  bool q35_;
  uint64_t next_ = 0;
};

// How one image is opened: the -blockdev pair (protocol node + format node).
struct ImageNodes {
  std::string fileNode;
  std::string fmtNode;
  std::string path;
  std::string format;       // qcow2 | raw
  bool hostDevice = false;  // protocol driver host_device (a block device) instead of file
  std::string secretId;     // non-empty: LUKS-encrypted, the key in this secret object
  CacheFlags cache{};
  DiscardMode discard = DiscardMode::Ignore;
  bool readOnly = false;
};

void addBlockdevs(std::vector<std::string>& argv, const ImageNodes& n) {
  add(argv, "-blockdev",
      OptionString()
          .set("driver", n.hostDevice ? "host_device" : "file")
          .set("node-name", n.fileNode)
          .set("filename", n.path)
          .set("cache.direct", n.cache.direct)
          .set("cache.no-flush", n.cache.noFlush)
          .set("discard", discardValue(n.discard))
          .set("read-only", n.readOnly)
          .str());
  OptionString node;
  // Raw LUKS (a whole LUKS volume, as on an LV) is its own format driver; a
  // qcow2 image keeps its LUKS header and keys inside (encrypt.*).
  const bool rawLuks = !n.secretId.empty() && n.format == "raw";
  node.set("driver", rawLuks ? std::string_view("luks") : std::string_view(n.format))
      .set("node-name", n.fmtNode)
      .set("file", n.fileNode);
  if (rawLuks) {
    node.set("key-secret", n.secretId);
  } else if (!n.secretId.empty()) {
    node.set("encrypt.format", "luks").set("encrypt.key-secret", n.secretId);
  }
  node.set("cache.direct", n.cache.direct)
      .set("cache.no-flush", n.cache.noFlush)
      .set("discard", discardValue(n.discard))
      .set("read-only", n.readOnly);
  add(argv, "-blockdev", node.str());
}

}  // namespace

std::string diskDeviceId(const Disk& disk) { return "disk-" + disk.id; }
std::string diskNodeName(const Disk& disk) { return "disk-" + disk.id + "-fmt"; }
std::string diskFileNodeName(const Disk& disk) { return "disk-" + disk.id + "-file"; }
std::string diskSecretId(const Disk& disk) { return "disk-" + disk.id + "-sec"; }
std::string cdromDeviceId(const Cdrom& cdrom) { return "cd-" + cdrom.id; }
std::string cdromNodeName(const Cdrom& cdrom) { return "cd-" + cdrom.id + "-fmt"; }
std::string nicDeviceId(const Nic& nic) { return "nic-" + nic.id; }
std::string nicNetdevId(const Nic& nic) { return "net-" + nic.id; }

std::vector<std::string> buildCommandLine(const VmSpec& spec, const RuntimePaths& paths,
                                          const LaunchOptions& options) {
  std::vector<std::string> argv;
  argv.push_back(options.binary);

  // Identity and hygiene.
  add(argv, "-name", OptionString().set("guest", spec.name).set("debug-threads", true).str());
  if (!spec.uuid.empty()) add(argv, "-uuid", spec.uuid);  // verbatim; QEMU parses a UUID
  add(argv, "-msg", "timestamp=on");
  argv.emplace_back("-nodefaults");
  argv.emplace_back("-no-user-config");
  add(argv, "-sandbox", "on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny");

  // Machine.
  // dump-guest-core=off: a QEMU crash must not write the guest's memory to disk.
  add(argv, "-machine", OptionString().set("type", spec.machine).set("dump-guest-core", false).str());
  add(argv, "-accel", spec.accel == Accel::Kvm ? "kvm" : "tcg");
  add(argv, "-cpu", cpuModelFor(spec));
  add(argv, "-m", fmt::format("size={}M", spec.memoryMib));
  add(argv, "-smp",
      fmt::format("cpus={},sockets={},cores={},threads={}", spec.cpus.count, spec.cpus.sockets, spec.cpus.cores,
                  spec.cpus.threads));

  // Boot. -kernel/-initrd/-append are taken verbatim by QEMU (no option
  // parsing), so escaping them would corrupt them.
  if (spec.directBoot) {
    add(argv, "-kernel", spec.directBoot->kernel);
    if (!spec.directBoot->initrd.empty()) add(argv, "-initrd", spec.directBoot->initrd);
    if (!spec.directBoot->append.empty()) add(argv, "-append", spec.directBoot->append);
  } else if (!spec.bootOrder.empty() || !spec.bootOnce.empty()) {
    // Per-class order, read by SeaBIOS from CMOS. Devices carry no bootindex:
    // QEMU's docs warn that mixing the two leaves the order undefined.
    std::string order;
    for (BootDevice d : spec.bootOrder) order += bootLetter(d);
    if (order.empty()) order = "c";
    OptionString boot;
    boot.set("order", order);
    // once=: QEMU sets this order for the first boot and puts `order` back on
    // the first system reset (a reboot inside the guest included).
    if (!spec.bootOnce.empty()) {
      std::string once;
      for (BootDevice d : spec.bootOnce) once += bootLetter(d);
      boot.set("once", once);
    }
    add(argv, "-boot", boot.str());
  }

  // Runtime files.
  if (!paths.pidfile.empty()) add(argv, "-pidfile", paths.pidfile);  // verbatim
  if (!paths.qmpSocket.empty()) {
    add(argv, "-chardev",
        OptionString("socket")
            .set("id", kQmpChardevId)
            .set("path", paths.qmpSocket)
            .set("server", true)
            .set("wait", false)
            .str());
    add(argv, "-mon", OptionString().set("chardev", kQmpChardevId).set("mode", "control").str());
  }
  if (!paths.serialSocket.empty()) {
    add(argv, "-chardev",
        OptionString("socket")
            .set("id", kSerialChardevId)
            .set("path", paths.serialSocket)
            .set("server", true)
            .set("wait", false)
            .str());
    add(argv, "-device", OptionString("isa-serial").set("chardev", kSerialChardevId).str());
  }
  add(argv, "-display", "none");
  if (!paths.vncSocket.empty()) {
    // "vnc=" spelled out: as the implied first value a '=' in the path would
    // turn part of it into a key.
    add(argv, "-vnc", OptionString().set("vnc", "unix:" + paths.vncSocket).str());
  }

  // Storage.
  if (usesScsi(spec)) {
    add(argv, "-device", OptionString("virtio-scsi-pci").set("id", kScsiControllerId).str());
  }
  uint64_t scsiTarget = 0;
  IdeSlots ide(spec.machine);
  const std::string scsiBus = std::string(kScsiControllerId) + ".0";
  for (const Disk& disk : spec.disks) {
    CacheFlags cache = cacheFlags(disk.cache);
    std::string secretId;
    if (disk.encryption) {
      // The key is read by QEMU from the file; only its path is on the argv.
      secretId = diskSecretId(disk);
      add(argv, "-object",
          OptionString("secret").set("id", secretId).set("file", disk.encryption->secretFile).set("format", "raw").str());
    }
    addBlockdevs(argv, ImageNodes{.fileNode = diskFileNodeName(disk),
                                  .fmtNode = diskNodeName(disk),
                                  .path = disk.path,
                                  .format = disk.format,
                                  .hostDevice = disk.hostDevice,
                                  .secretId = secretId,
                                  .cache = cache,
                                  .discard = disk.discard,
                                  .readOnly = disk.readOnly});
    OptionString dev;
    switch (disk.bus) {
      case DiskBus::VirtioBlk: dev = OptionString("virtio-blk-pci"); break;
      case DiskBus::VirtioScsi:
        dev = OptionString("scsi-hd");
        dev.set("bus", scsiBus).set("channel", uint64_t{0}).set("scsi-id", scsiTarget++).set("lun", uint64_t{0});
        break;
      case DiskBus::Ide:
        dev = OptionString("ide-hd");
        ide.place(dev);
        break;
    }
    dev.set("drive", diskNodeName(disk)).set("id", diskDeviceId(disk)).set("write-cache", cache.writeCache);
    if (!disk.serial.empty()) dev.set("serial", disk.serial);
    add(argv, "-device", dev.str());
  }
  for (const Cdrom& cd : spec.cdroms) {
    std::string fileNode = "cd-" + cd.id + "-file";
    if (!cd.path.empty()) {
      addBlockdevs(argv, ImageNodes{.fileNode = fileNode,
                                    .fmtNode = cdromNodeName(cd),
                                    .path = cd.path,
                                    .format = "raw",
                                    .cache = cacheFlags(CacheMode::Writeback),
                                    .discard = DiscardMode::Ignore,
                                    .readOnly = true});
    }
    OptionString dev;
    switch (cd.bus) {
      case CdromBus::Ide:
        dev = OptionString("ide-cd");
        ide.place(dev);
        break;
      case CdromBus::Scsi:
        dev = OptionString("scsi-cd");
        dev.set("bus", scsiBus).set("channel", uint64_t{0}).set("scsi-id", scsiTarget++).set("lun", uint64_t{0});
        break;
    }
    // No drive: an empty tray, filled later with blockdev-change-medium.
    if (!cd.path.empty()) dev.set("drive", cdromNodeName(cd));
    dev.set("id", cdromDeviceId(cd));
    add(argv, "-device", dev.str());
  }

  // Network: a tap the caller opened (its fd passed down, vhost-net's too), or
  // user-mode, whose forwards always name their host address.
  for (const Nic& nic : spec.nics) {
    OptionString netdev(nic.tapFd >= 0 ? "tap" : "user");
    netdev.set("id", nicNetdevId(nic));
    if (nic.tapFd >= 0) {
      netdev.set("fd", std::to_string(nic.tapFd));
      if (nic.vhostFd >= 0) netdev.set("vhost", "on").set("vhostfd", std::to_string(nic.vhostFd));
    }
    for (const PortForward& f : nic.forwards) {
      netdev.set("hostfwd", fmt::format("{}:{}:{}-:{}", f.proto, f.hostAddr, f.hostPort, f.guestPort));
    }
    add(argv, "-netdev", netdev.str());
    OptionString dev(nicDriver(nic.model));
    dev.set("netdev", nicNetdevId(nic)).set("id", nicDeviceId(nic));
    if (!nic.mac.empty()) dev.set("mac", nic.mac);
    add(argv, "-device", dev.str());
  }

  // Other devices.
  if (spec.balloon) add(argv, "-device", OptionString("virtio-balloon-pci").set("id", kBalloonDeviceId).str());
  if (spec.rng) {
    add(argv, "-object", "rng-random,id=rng0,filename=/dev/urandom");
    add(argv, "-device", "virtio-rng-pci,rng=rng0");
  }

  // SMBIOS type 1 (system); its UUID follows -uuid. Type 11: one per OEM string.
  {
    OptionString t1;
    t1.set("type", uint64_t{1});
    if (!spec.smbios.manufacturer.empty()) t1.set("manufacturer", spec.smbios.manufacturer);
    if (!spec.smbios.product.empty()) t1.set("product", spec.smbios.product);
    if (!spec.smbios.version.empty()) t1.set("version", spec.smbios.version);
    if (!spec.smbios.serial.empty()) t1.set("serial", spec.smbios.serial);
    add(argv, "-smbios", t1.str());
    for (const std::string& oem : spec.smbios.oemStrings) {
      add(argv, "-smbios", OptionString().set("type", uint64_t{11}).set("value", oem).str());
    }
  }

  if (spec.noReboot) argv.emplace_back("-no-reboot");
  if (options.startPaused) argv.emplace_back("-S");
  return argv;
}

}  // namespace corral::qemu
