// What corrald learns about its node at start (QEMU binary and version, the
// accelerator verdict), the node report built from it for `corral node info`,
// and the checks of `corral node verify` (node_verify in node.cc).
#pragma once

#include <string>

#include <nlohmann/json.hpp>

#include "core/vm_manager.h"
#include "daemon/config.h"
#include "host/state_dir.h"
#include "qemu/vm_spec.h"
#include "store/store.h"
#include "util/result.h"

namespace corral::daemon {

struct NodeProbe {
  std::string qemuBinary;
  std::string qemuVersion;
  qemu::Accel accel = qemu::Accel::Tcg;
  std::string accelReason;

  std::string accelName() const { return accel == qemu::Accel::Kvm ? "kvm" : "tcg"; }
  // `corral node info`: the host's capacity and memory committed to guests
  // (running and paused VMs' memory), QEMU, accelerator, VM counts by state.
  // GET /node for `who`: VM counts of the VMs they may see; the host's memory
  // available and committed to guests for admins only (nothing about other tenants).
  nlohmann::json toJson(core::VmManager& vms, const core::Principal& who) const;
  // The whole view, as an admin sees it (reports).
  nlohmann::json toJson(core::VmManager& vms) const;

  // `corral node verify`: {"checks": [{"name", "ok", "warning", "detail"}],
  // "problems": N, "warnings": M}. A check not ok is a problem (the node cannot
  // do something it is asked to); warning marks an ok check worth an admin's
  // look. Looks at the host as it is now (binaries, devices, modes, free space,
  // clock); nothing is changed. Any API thread.
  nlohmann::json verify(const Config& cfg, const host::StateDir& dir, store::Store& store, core::VmManager& vms) const;

  // Probes the QEMU binary (cached by path, size and mtime) and decides the
  // accelerator: --accel kvm|tcg is obeyed (kvm only when it really works),
  // auto trusts KVM only after a real probe guest ran under it.
  static Result<NodeProbe> run(const Config& cfg, const host::StateDir& dir);
};

}  // namespace corral::daemon
