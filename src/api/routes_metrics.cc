// GET /metrics and the daemon's collectors. See routes_metrics.h.
#include "api/routes_metrics.h"

#include "api/route_util.h"

namespace corral::api {

namespace m = util::metrics;

void addMetricsRoutes(Router& router, m::Registry* registry) {
  router.add("GET", "/metrics", authed([registry](const Request&, const core::Principal& who) {
               if (auto r = adminOnly(who, "may read the metrics"); !r.ok()) return Response::error(r.error());
               if (registry == nullptr) return Response::error(Error::unavailable("this server keeps no metrics"));
               Response resp;
               resp.status = 200;
               resp.contentType = std::string(kMetricsContentType);
               resp.body = registry->render();
               return resp;
             }));
}

}  // namespace corral::api
