// VmManager::report: the "vms" section of a Guru Meditation Report. It must
// answer while the daemon is wedged, so it finds each QEMU as the metrics do
// (liveTarget: never waits on a VM's action lock) and asks it a short question
// with a short deadline.
#include <fmt/format.h>

#include <chrono>

#include "core/vm_manager.h"
#include "qemu/qmp_transport.h"
#include "util/proc.h"

namespace corral::core {

namespace {
constexpr std::chrono::milliseconds kQmpProbeTimeout{1000};
}  // namespace

nlohmann::json VmManager::report() {
  nlohmann::json out = nlohmann::json::array();
  auto all = store_.listVms();
  if (!all.ok()) return {{"error", fmt::format("cannot list VMs: {}", all.error().message)}};
  for (const auto& vm : *all) {
    nlohmann::json j{{"name", vm.name},
                     {"uuid", vm.uuid},
                     {"state", vm.state},
                     {"desired_state", vm.desiredState},
                     {"state_reason", vm.stateReason},
                     {"pid", vm.pid ? nlohmann::json(*vm.pid) : nlohmann::json(nullptr)},
                     {"memory_mib", vm.memoryMib},
                     {"vcpus", vm.vcpus}};
    if (vm.pid) {
      auto st = util::readProcStat(static_cast<pid_t>(*vm.pid));
      j["process"] = st.ok() ? nlohmann::json(std::string(1, st->state)) : nlohmann::json("gone");
    }
    auto target = liveTarget(vm.name);
    auto qmp = target ? target->qmp.lock() : nullptr;
    if (!qmp) {
      j["qmp"] = "no machine";
    } else {
      auto started = std::chrono::steady_clock::now();
      auto status = qmp->executeSync("query-status", nlohmann::json::object(), kQmpProbeTimeout);
      std::chrono::duration<double, std::milli> ms = std::chrono::steady_clock::now() - started;
      if (status.ok())
        j["qmp"] = nlohmann::json{{"ok", true}, {"status", status->value("status", "?")}, {"ms", ms.count()}};
      else
        j["qmp"] = nlohmann::json{{"ok", false}, {"error", status.error().message}, {"ms", ms.count()}};
    }
    out.push_back(std::move(j));
  }
  return out;
}

}  // namespace corral::core
