// Console routes: minting console tokens, and the serial and VNC WebSockets that
// redeem them (docs/api.yaml; the design is in docs/consoles.md).
#pragma once

#include <cstddef>

#include "api/router.h"
#include "core/console_tokens.h"
#include "core/identity.h"
#include "core/vm_manager.h"

namespace corral::api {

struct ConsoleRouteOptions {
  size_t historyBytes = 64 * 1024;  // serial history sent to a viewer on attach
};

// POST /api/v1/vms/{name}/console/token, the two console WebSockets, and the
// admin's key rotation.
void addConsoleRoutes(Router& router, core::VmManager& vms, core::ConsoleTokens& tokens, core::Identity& identity,
                      ConsoleRouteOptions opts);

}  // namespace corral::api
