// Parsing and validation of the inputs that create and import take. Every error
// names the field; nothing here has side effects, so a refused request leaves
// nothing behind.
#pragma once

#include <cstdint>

#include "core/vm_manager.h"
#include "core/vm_state.h"
#include "host/host_info.h"
#include "util/result.h"

namespace corral::core {

struct ValidCreate {
  std::string name;
  std::string image;
  uint64_t memoryMib;
  unsigned vcpus;
  OnCrash onCrash;
};

Result<ValidCreate> validateCreate(const CreateVmRequest& req, const ManagerConfig& cfg, const host::HostInfo& host);

// Each naming its field: "memory" (MiB, ManagerConfig's minimum to the host's
// memory), "vcpus" (1 to the host's CPUs), "on_crash", "description" (at most
// 1000 bytes, no control characters but newline and tab).
Result<uint64_t> validateMemory(int64_t memoryMib, const ManagerConfig& cfg, const host::HostInfo& host);
Result<unsigned> validateVcpus(int64_t vcpus, const ManagerConfig& cfg, const host::HostInfo& host);
Result<OnCrash> validateOnCrash(const std::string& onCrash);
Result<void> validateDescription(const std::string& description);

// A kernel command line is passed to QEMU as one argv element; refuse control
// characters and absurd lengths.
Result<void> validateAppend(const std::string& append);

}  // namespace corral::core
