// Diagnostics routes: POST /api/v1/admin/report takes a Guru Meditation Report
// of the daemon (admins only) and answers its JSON view.
#pragma once

#include <functional>
#include <nlohmann/json.hpp>
#include <string>

#include "api/router.h"
#include "util/result.h"

namespace corral::api {

// Takes and saves a report for `requester`; the daemon's (it owns the reporter).
using ReportTaker = std::function<Result<nlohmann::json>(const std::string& requester)>;

// With an empty taker the route answers 503.
void addDiagRoutes(Router& router, ReportTaker takeReport);

}  // namespace corral::api
