// Storage routes: the image library (import by path or streamed upload, each an
// operation), a VM's disks and its CD drive. See docs/api.yaml.
#pragma once

#include "api/router.h"
#include "core/images.h"
#include "core/vm_manager.h"

namespace corral::api {

void addStorageRoutes(Router& router, core::VmManager& vms, core::Images& images);

}  // namespace corral::api
