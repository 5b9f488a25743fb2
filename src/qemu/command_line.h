// buildCommandLine: a typed VmSpec and the guest's runtime paths become QEMU's
// argv. A pure function: it touches no file, starts nothing and validates
// nothing (core/ and host/ checked every name and path against allow-lists
// before they reached the VmSpec). It does guarantee that no value can leave
// its option: every name or path inside a "key=value,..." option string is
// escaped (util::escapeOptionValue), is given with an explicit key (never as
// an option's implied first value, where a '=' in it would be read as a key),
// and options QEMU takes verbatim (-kernel, -initrd, -append, -pidfile) are
// passed as they are. No key ever reaches the argv: an encrypted disk's secret
// object names the file QEMU reads it from (Disk::encryption).
//
// Launching (util::Command, own session, pidfile) is qemu::Machine's job; the
// golden files in tests/data/qemu/command_line/ show the exact output.
//
// The guest starts with -nodefaults -no-user-config and a seccomp sandbox that
// denies spawning, privilege changes and obsolete syscalls, so QEMU can never
// run a helper (no bridge helper, no scripts): taps come in as file descriptors.
#pragma once

#include <string>
#include <vector>

#include "qemu/vm_spec.h"

namespace corral::qemu {

struct LaunchOptions {
  std::string binary = "qemu-system-x86_64";  // argv[0]
  // -S: the vCPUs stay stopped until QMP `cont`, so the caller can configure the
  // guest (balloon, passwords, pinning) before it runs a single instruction.
  bool startPaused = true;
};

// The full argv, argv[0] included. Deterministic: the same inputs give the same
// vector. Empty RuntimePaths members leave their option out (no QMP, no serial
// socket, no VNC, no pidfile).
std::vector<std::string> buildCommandLine(const VmSpec& spec, const RuntimePaths& paths,
                                          const LaunchOptions& options);

// The names QEMU knows a guest's parts by, for QMP commands issued later
// (block_resize takes the format node, blockdev-change-medium and device_del the
// device id, set_link the NIC id). QEMU limits node names to 31 characters, so
// a disk or cdrom id should stay within 21.
std::string diskDeviceId(const Disk& disk);       // "disk-<id>"
std::string diskNodeName(const Disk& disk);       // "disk-<id>-fmt": the top (format) node
std::string diskFileNodeName(const Disk& disk);   // "disk-<id>-file": the protocol node
std::string diskSecretId(const Disk& disk);       // "disk-<id>-sec": an encrypted disk's secret object
std::string cdromDeviceId(const Cdrom& cdrom);    // "cd-<id>"
std::string cdromNodeName(const Cdrom& cdrom);    // "cd-<id>-fmt" (only while a medium is in)
std::string nicDeviceId(const Nic& nic);          // "nic-<id>"
std::string nicNetdevId(const Nic& nic);          // "net-<id>"
inline constexpr const char* kScsiControllerId = "scsi0";
inline constexpr const char* kSerialChardevId = "serial0";
inline constexpr const char* kQmpChardevId = "qmp";
inline constexpr const char* kBalloonDeviceId = "balloon0";

}  // namespace corral::qemu
