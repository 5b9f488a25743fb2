// GET /metrics: the daemon's metrics in the Prometheus text format 0.0.4, for
// admins only (an admin's API token, an admin's session, or an admin on the
// unix socket). The registry and the text format are util/metrics.h's; what
// the API itself records (requests, connections) is HttpServerOptions::metrics;
// the daemon's collectors are daemon/metrics.h.
#pragma once

#include "api/router.h"
#include "util/metrics.h"

namespace corral::api {

// The exposition's content type (text format 0.0.4).
inline constexpr std::string_view kMetricsContentType = "text/plain; version=0.0.4; charset=utf-8";

// Adds GET /metrics. registry null: the route answers 503 (a router built
// without a daemon, as in the OpenAPI test). registry must outlive the router.
void addMetricsRoutes(Router& router, util::metrics::Registry* registry);

}  // namespace corral::api
