#include "api/routes_diag.h"

#include <spdlog/spdlog.h>

#include "api/route_util.h"

namespace corral::api {

void addDiagRoutes(Router& router, ReportTaker takeReport) {
  router.add("POST", "/api/v1/admin/report", authed([takeReport](const Request&, const core::Principal& who) {
               if (auto r = adminOnly(who, "may take a report"); !r.ok()) return Response::error(r.error());
               if (!takeReport) return Response::error(Error::unavailable("reports are not set up on this daemon"));
               auto report = takeReport(who.login);
               if (!report.ok()) return Response::error(report.error());
               spdlog::info("report {} taken by {}", report->value("id", "?"), who.login);
               return Response::json(200, *report);
             }));
}

}  // namespace corral::api
