// The API's route table: every route in one visible place (STYLE.md §9).
// Handlers parse, hand a typed request to core/, and render the result; they
// hold no business rules.
#pragma once

#include <functional>

#include <nlohmann/json.hpp>

#include "api/router.h"
#include "core/vm_manager.h"

namespace corral::api {

// Facts about this node that only the daemon knows (QEMU version, the
// accelerator verdict); called per request.
using NodeFacts = std::function<nlohmann::json()>;

void addRoutes(Router& router, core::VmManager& vms, NodeFacts nodeFacts);

}  // namespace corral::api
