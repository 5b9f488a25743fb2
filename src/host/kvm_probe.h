// Decides whether guests on this host run under KVM or TCG, and says why.
//
// A /dev/kvm that opens is not enough: on some hosts (nested virtualisation
// without the right support) KVM guests start but crawl, hundreds of times
// slower than TCG, and never boot. So the verdict comes from running a real,
// tiny guest under KVM: a 64 KiB firmware image of hand-written x86 real-mode
// code that loops a few million times over a memory store and then writes to
// an isa-debug-exit port, which makes QEMU exit with a known status. If it has
// not exited within the deadline (a healthy KVM needs milliseconds), KVM is
// declared unusable and guests fall back to TCG.
//
// The verdict is cached in a JSON file keyed by everything that can change it:
// the QEMU binary (resolved path, size, mtime), the kernel release and the boot
// id (a reboot may fix or break KVM), and the KVM device path. It leaves to
// others what to do with the verdict (core/ puts it in every VmSpec, api/
// shows the reason to the operator).
#pragma once

#include <chrono>
#include <string>

#include "qemu/vm_spec.h"
#include "util/result.h"

namespace corral::host {

struct AccelVerdict {
  qemu::Accel accel = qemu::Accel::Tcg;
  std::string reason;      // one line for the operator, e.g. "KVM probe guest did not finish within 3000 ms"
  bool fromCache = false;  // true when read from the cache file rather than measured now
};

struct KvmProbeOptions {
  std::string qemuBinary = "qemu-system-x86_64";  // a name looked up in PATH, or a path
  std::string kvmDevice = "/dev/kvm";
  std::string cacheDir;  // where kvm-verdict.json lives; empty: no cache
  // How long the probe guest may take under KVM, QEMU's own start included.
  std::chrono::milliseconds deadline{3000};
};

// The verdict for this host, from the cache when its key still matches. Never
// an error because of KVM itself (that yields TCG and the reason); fails only
// when the probe cannot be set up (no temporary directory, unwritable cache).
// Blocks for up to options.deadline plus QEMU's exit; call it from a worker
// thread, once at daemon start.
Result<AccelVerdict> probeAccel(const KvmProbeOptions& options);

// Runs the probe guest once under `accel` and reports whether it completed in
// time: ok() when QEMU exited with the probe's status, Timeout when the deadline
// passed (QEMU is killed), another error with QEMU's exit status and stderr tail
// otherwise. `workDir` receives the firmware image. Exposed for tests.
Result<void> runProbeGuest(const std::string& qemuBinary, qemu::Accel accel, std::chrono::milliseconds deadline,
                           const std::string& workDir);

// The probe firmware: 64 KiB, reset vector at its last 16 bytes. Exposed for tests.
std::string probeFirmwareImage();

}  // namespace corral::host
