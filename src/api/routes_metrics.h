// GET /metrics: the daemon's metrics in the Prometheus text format 0.0.4, for
// admins only (an admin's API token, an admin's session, or an admin on the
// unix socket). The registry and the text format are util/metrics.h's; what
// the API itself records (requests, connections) is HttpServerOptions::metrics.
#pragma once

#include <chrono>

#include "api/router.h"
#include "core/operations.h"
#include "core/vm_manager.h"
#include "qemu/monitor.h"
#include "util/metrics.h"

namespace corral::api {

// The exposition's content type (text format 0.0.4).
inline constexpr std::string_view kMetricsContentType = "text/plain; version=0.0.4; charset=utf-8";

// Adds GET /metrics. registry null: the route answers 503 (a router built
// without a daemon, as in the OpenAPI test). registry must outlive the router.
void addMetricsRoutes(Router& router, util::metrics::Registry* registry);

// What corrald measures beyond the API: VMs (VmManager::collectMetrics), the
// node and the daemon process (/proc), operations, and every QMP command's
// latency and errors (a Monitor::setCommandObserver hook). One per daemon:
// it installs the process-wide QMP observer and removes it when it goes.
// registry, vms and ops must outlive it; the registry must also outlive every
// thread that sends QMP (the observer records into it).
class DaemonMetrics {
 public:
  DaemonMetrics(util::metrics::Registry& registry, core::VmManager& vms, core::Operations& ops,
                std::chrono::milliseconds qmpTimeout = std::chrono::seconds(1));
  ~DaemonMetrics();
  DaemonMetrics(const DaemonMetrics&) = delete;
  DaemonMetrics& operator=(const DaemonMetrics&) = delete;

 private:
  std::vector<util::metrics::CollectorHandle> collectors_;
};

}  // namespace corral::api
