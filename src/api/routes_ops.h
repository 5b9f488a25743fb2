// The operations and events routes: GET /api/v1/operations[/{id}[/wait]] and
// the WebSocket GET /api/v1/events. Who sees what: an admin everything; others
// the operations they requested and, for vm.* kinds, those on a VM they may see
// (canSeeVm); an operation the caller may not see is 404, as a VM is. Events are
// filtered with core::canAccess on the VM record the event carries.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "api/router.h"
#include "core/events.h"
#include "core/operations.h"
#include "core/principal.h"
#include "store/store.h"

namespace corral::api {

// {"id", "kind", "target", "requester", "state", "progress", "result" (the
// parsed JSON, or null while there is none), "created_at", "updated_at"}; for
// every route that answers with an operation (202 + Location included).
nlohmann::json toJson(const store::OperationRecord& op);
// The same for one caller: a failed operation's error message keeps only its
// first line for anyone but an admin (the rest is a QEMU command line and log,
// an administrator's business).
nlohmann::json toJsonFor(const store::OperationRecord& op, const core::Principal& who);

// canSeeVm: whether the principal may see the VM of that name now (it may hit
// the store; it is called at most once per distinct target per request), for
// one operation; visibleVms: the names of every VM the principal may see, for a
// non-admin's list (one indexed query, however many operations others have).
// ops, bus and both functions must outlive the router. Every route needs a
// principal (Request::principal); without one it answers 401.
using CanSeeVm = std::function<bool(const core::Principal&, const std::string& vmName)>;
using VisibleVms = std::function<Result<std::vector<std::string>>(const core::Principal&)>;
void addOperationRoutes(Router& router, core::Operations& ops, core::EventBus& bus, CanSeeVm canSeeVm,
                        VisibleVms visibleVms);

}  // namespace corral::api
