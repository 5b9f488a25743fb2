#include "daemon/node.h"

#include <map>

#include <fmt/format.h>

#include "core/vm_state.h"
#include "host/host_info.h"
#include "host/kvm_probe.h"
#include "qemu/probe.h"
#include "util/build_info.h"

namespace corral::daemon {

Result<NodeProbe> NodeProbe::run(const Config& cfg, const host::StateDir& dir) {
  NodeProbe n;
  qemu::Probe probe({.cacheDir = dir.cacheDir().string()});
  auto caps = probe.capabilities(cfg.qemuBinary);
  if (!caps.ok()) return caps.error().context(fmt::format("probe QEMU binary {}", cfg.qemuBinary));
  n.qemuBinary = caps->binary.path;
  n.qemuVersion = fmt::format("{}.{}.{}", caps->version.major, caps->version.minor, caps->version.micro);
  if (!caps->version.package.empty()) n.qemuVersion += " (" + caps->version.package + ")";

  if (cfg.accel == "tcg") {
    n.accel = qemu::Accel::Tcg;
    n.accelReason = "TCG chosen with --accel tcg";
    return n;
  }
  auto verdict = host::probeAccel({.qemuBinary = n.qemuBinary, .cacheDir = dir.cacheDir().string()});
  if (!verdict.ok()) return verdict.error().context("accelerator probe");
  if (cfg.accel == "kvm" && verdict->accel != qemu::Accel::Kvm)
    return Error::unavailable(fmt::format("--accel kvm: KVM does not work here: {}", verdict->reason));
  n.accel = verdict->accel;
  n.accelReason = verdict->reason + (verdict->fromCache ? " (cached verdict)" : "");
  return n;
}

nlohmann::json NodeProbe::toJson(core::VmManager& vms, const core::Principal& who) const {
  auto host = host::readHostInfo();
  nlohmann::json counts = nlohmann::json::object();
  for (auto s : core::kAllVmStates) counts[std::string(core::toString(s))] = 0;
  uint64_t committedMib = 0;
  // The VMs the caller may see: every one for an admin, their own for anyone else.
  if (auto visible = vms.list(who); visible.ok()) {
    for (const auto& vm : *visible) {
      counts[vm.state] = counts[vm.state].get<int>() + 1;
      // A paused guest keeps its memory; a starting one is about to take it.
      auto s = core::parseVmState(vm.state);
      if (s && core::hasProcess(*s)) committedMib += vm.memoryMib;
    }
  }
  nlohmann::json facts = {{"hostname", host.hostname},
                          {"qemu_binary", qemuBinary},
                          {"qemu_version", qemuVersion},
                          {"accelerator", accelName()},
                          {"accelerator_reason", accelReason},
                          {"cpus", host.cpus},
                          {"memory_total_mib", host.memoryTotalMib},
                          {"vms", counts},
                          {"version", util::build::kVersion},
                          {"commit", util::build::kCommit}};
  // The host's memory use is every tenant's guests: the admins' business.
  if (who.admin) {
    facts["memory_available_mib"] = host.memoryAvailableMib;
    facts["memory_committed_mib"] = committedMib;
  }
  return facts;
}

nlohmann::json NodeProbe::toJson(core::VmManager& vms) const {
  const core::Principal node{.login = "root", .admin = true, .groups = {}, .via = "node", .tokenId = {}, .csrfToken = {}};
  return toJson(vms, node);
}

}  // namespace corral::daemon
