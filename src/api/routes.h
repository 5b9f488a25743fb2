// The API's route table: every route in one visible place (STYLE.md §9).
// Handlers parse, hand a typed request to core/, and render the result; they
// hold no business rules.
#pragma once

#include <functional>

#include <nlohmann/json.hpp>

#include "api/router.h"
#include "api/routes_console.h"
#include "api/routes_metrics.h"
#include "api/routes_diag.h"
#include "core/console_tokens.h"
#include "core/events.h"
#include "core/identity.h"
#include "core/operations.h"
#include "core/images.h"
#include "core/vm_manager.h"

namespace corral::api {

// Facts about this node that only the daemon knows (QEMU version, the
// accelerator verdict), as the caller may see them; called per request.
using NodeFacts = std::function<nlohmann::json(const core::Principal&)>;
// `corral node verify`'s checks (admins); called per request.
using NodeVerify = std::function<nlohmann::json()>;

// The VM, image, node and quota routes. Long actions (start, stop, reboot,
// create with "start") run as operations on ops and answer 202.
void addRoutes(Router& router, core::VmManager& vms, core::Operations& ops, NodeFacts nodeFacts);

// What the whole API serves; each must outlive the router.
struct Services {
  core::VmManager& vms;
  core::Images& images;
  core::Operations& ops;
  core::EventBus& events;
  core::Identity& identity;
  core::ConsoleTokens& consoleTokens;
  NodeFacts nodeFacts;
  NodeVerify nodeVerify = {};  // `corral node verify` (admins); empty: the route answers 503
  ConsoleRouteOptions console = {};
  ReportTaker report = {};  // `corral admin report`; empty: the route answers 503
  util::metrics::Registry* metrics = nullptr;  // GET /metrics; null: the route answers 503
};

// Every route corrald serves: VMs, images, node, quotas (above), identity
// (routes_identity.h), operations and events (routes_ops.h). The daemon and the
// OpenAPI test both build their table here, so they cannot drift apart.
void addAllRoutes(Router& router, const Services& s);

}  // namespace corral::api
