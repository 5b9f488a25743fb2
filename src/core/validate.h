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

// A kernel command line is passed to QEMU as one argv element; refuse control
// characters and absurd lengths.
Result<void> validateAppend(const std::string& append);

}  // namespace corral::core
