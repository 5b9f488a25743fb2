// What corrald learns about its node at start (QEMU binary and version, the
// accelerator verdict) and the node report built from it for `corral node info`.
#pragma once

#include <string>

#include <nlohmann/json.hpp>

#include "core/vm_manager.h"
#include "daemon/config.h"
#include "host/state_dir.h"
#include "qemu/vm_spec.h"
#include "util/result.h"

namespace corral::daemon {

struct NodeProbe {
  std::string qemuBinary;
  std::string qemuVersion;
  qemu::Accel accel = qemu::Accel::Tcg;
  std::string accelReason;

  std::string accelName() const { return accel == qemu::Accel::Kvm ? "kvm" : "tcg"; }
  nlohmann::json toJson(core::VmManager& vms) const;

  // Probes the QEMU binary (cached by path, size and mtime) and decides the
  // accelerator: --accel kvm|tcg is obeyed (kvm only when it really works),
  // auto trusts KVM only after a real probe guest ran under it.
  static Result<NodeProbe> run(const Config& cfg, const host::StateDir& dir);
};

}  // namespace corral::daemon
