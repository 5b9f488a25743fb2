// VmSpec: everything QEMU needs to know about one guest, as typed values.
//
// core/ builds a VmSpec from its VM model; qemu/command_line turns it into argv;
// qemu/machine launches it. Nothing here is validated against user input: names
// and paths reaching a VmSpec were checked by core/ and host/ (allow-lists).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace corral::qemu {

enum class Accel { Kvm, Tcg };

struct DirectBoot {
  std::string kernel;  // absolute path
  std::string initrd;  // absolute path, empty for none
  std::string append;  // kernel command line
};

enum class DiskBus { VirtioBlk, VirtioScsi, Ide };
enum class CacheMode { None, Writeback, Writethrough, DirectSync, Unsafe };
enum class DiscardMode { Ignore, Unmap };

// A LUKS-encrypted disk: QEMU's own LUKS driver opens it with a `secret` object
// read from secretFile (0600, in the VM's runtime dir), never from argv.
// format qcow2: qcow2 with encrypt.format=luks; format raw: the "luks" driver
// (raw LUKS, as on an LVM volume).
struct DiskEncryption {
  std::string secretFile;  // absolute path
};

struct Disk {
  std::string id;  // node/device id, [a-z0-9-]
  std::string path;
  std::string format = "qcow2";  // qcow2 | raw
  DiskBus bus = DiskBus::VirtioBlk;
  CacheMode cache = CacheMode::None;
  DiscardMode discard = DiscardMode::Unmap;
  bool readOnly = false;
  bool hostDevice = false;  // path is a block device (an LV): protocol driver host_device
  std::optional<DiskEncryption> encryption;
  std::string serial;  // the guest's /dev/disk/by-id name, [A-Za-z0-9-]; "" none
};

enum class CdromBus { Ide, Scsi };

struct Cdrom {
  std::string id;
  std::string path;  // empty: drive with no medium
  CdromBus bus = CdromBus::Ide;  // Scsi: on the virtio-scsi controller
};

enum class NicModel { VirtioNet, E1000 };

struct PortForward {
  std::string proto = "tcp";  // tcp | udp
  std::string hostAddr = "127.0.0.1";
  uint16_t hostPort = 0;
  uint16_t guestPort = 0;
};

// A NIC: on QEMU user-mode networking (forwards apply), or on a tap the caller
// opened (tapFd >= 0) and, with vhostFd >= 0, served by vhost-net. The fds are
// borrowed: they stay the caller's and must stay open until Machine::launch
// returns; QEMU gets them under the same numbers and nothing else.
struct Nic {
  std::string id;
  NicModel model = NicModel::VirtioNet;
  std::string mac;  // "52:54:00:xx:xx:xx"
  std::vector<PortForward> forwards;
  int tapFd = -1;
  int vhostFd = -1;
  std::string tapName;  // the tap's interface name, for records and logs
};

enum class BootDevice { Disk, Cdrom, Network };

struct CpuTopology {
  unsigned count = 1;
  unsigned sockets = 1;
  unsigned cores = 1;
  unsigned threads = 1;
};

struct Smbios {
  std::string manufacturer = "corral";
  std::string product = "corral VM";
  std::string version;
  std::string serial;
  std::vector<std::string> oemStrings;  // type 11
};

struct VmSpec {
  std::string name;
  std::string uuid;
  uint64_t memoryMib = 128;
  CpuTopology cpus;
  std::string machine = "q35";
  Accel accel = Accel::Tcg;
  std::string cpuModel;  // empty: "host" under KVM, "max" under TCG
  std::optional<DirectBoot> directBoot;
  std::vector<BootDevice> bootOrder;  // ignored with directBoot
  // The first boot only (-boot once=): e.g. {Cdrom} boots the CD once and the
  // next reset goes back to bootOrder. Ignored with directBoot.
  std::vector<BootDevice> bootOnce;
  std::vector<Disk> disks;
  std::vector<Cdrom> cdroms;
  std::vector<Nic> nics;
  bool balloon = true;
  bool rng = true;
  Smbios smbios;
  bool noReboot = false;  // guest reboot ends QEMU instead of resetting
};

// Files of one running guest, all inside its runtime directory.
struct RuntimePaths {
  std::string qmpSocket;
  std::string serialSocket;
  std::string vncSocket;
  std::string pidfile;
};

}  // namespace corral::qemu
