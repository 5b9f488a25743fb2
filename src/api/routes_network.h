// Network routes: admin-defined networks (list, show, create, delete) and a
// VM's NICs (list, add, remove). See docs/api.yaml.
#pragma once

#include "api/router.h"
#include "core/vm_manager.h"

namespace corral::api {

void addNetworkRoutes(Router& router, core::VmManager& vms);

}  // namespace corral::api
