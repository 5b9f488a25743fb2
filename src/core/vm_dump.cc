// VmManager::dump: what `corral vm dump` shows about one VM. Its metadata
// (corral.metadata/v1, core/vm_metadata.h) and, while QEMU runs, the runtime
// record (qemu/runtime_record.h): pid, argv, accelerator, launch time, paths.
//
// Who sees what: everyone who may see the VM (an admin, the owning user, the
// owning group's members, the VM's administrator) sees both; the runtime record
// holds nothing they could not already learn or do, and no secret: disk
// passphrases reach QEMU as `-object secret,file=...` naming a 0600 file that is
// removed once QEMU has read it, never as a value on its command line.
#include <fmt/format.h>

#include <filesystem>

#include "core/vm_manager.h"
#include "core/vm_metadata.h"
#include "core/vm_state.h"
#include "host/host_info.h"
#include "qemu/runtime_record.h"

namespace corral::core {

Result<nlohmann::json> VmManager::dump(const Principal& who, const std::string& name) {
  auto vm = CORRAL_TRY(visible(who, name));
  nlohmann::json out = {{"metadata", nullptr}, {"metadata_source", "store"}, {"runtime", nullptr}};
  auto runDir = CORRAL_TRY(dir_.vmRuntimeDir(vm.name));
  auto state = parseVmState(vm.state).value_or(VmState::Stopped);
  if (hasProcess(state)) {
    // NotFound (no record yet: starting) and a record that does not parse both
    // leave runtime null; the VM's state says the rest.
    if (auto rec = qemu::RuntimeRecord::read(runDir.string()); rec.ok()) {
      nlohmann::json runtime = rec->toJson();
      runtime.erase("metadata");
      out["runtime"] = std::move(runtime);
      // A guest launched by a corral older than its metadata has none: the
      // store's view below stands in.
      if (rec->metadata.is_object() && rec->metadata.contains("schema")) {
        out["metadata"] = VmMetadata::fromJson(rec->metadata).toJson();
        out["metadata_source"] = "runtime record";
      }
    }
  }
  if (out["metadata"].is_null()) {
    auto disks = CORRAL_TRY(store_.listDisks(vm.id));
    out["metadata"] = VmMetadata::build(vm, disks, host::readHostInfo().hostname).toJson();
  }
  return out;
}

}  // namespace corral::core
