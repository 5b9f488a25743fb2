// What corrald measures beyond the API's own counters (HttpServerOptions::
// metrics): VMs (VmManager::collectMetrics), the node and the daemon process
// (/proc), operations, event followers, and every QMP command's latency and errors.
#pragma once

#include <chrono>
#include <vector>

#include "core/events.h"
#include "core/operations.h"
#include "core/vm_manager.h"
#include "util/metrics.h"

namespace corral::daemon {

// The daemon's collectors and the QMP observer (Monitor::setCommandObserver),
// registered for its lifetime. One per daemon: it installs the process-wide QMP
// observer and removes it when it goes.
// registry, vms, ops and events must outlive it; the registry must also outlive every
// thread that sends QMP (the observer records into it).
class DaemonMetrics {
 public:
  DaemonMetrics(util::metrics::Registry& registry, core::VmManager& vms, core::Operations& ops,
                const core::EventBus& events, std::chrono::milliseconds qmpTimeout = std::chrono::seconds(1));
  ~DaemonMetrics();
  DaemonMetrics(const DaemonMetrics&) = delete;
  DaemonMetrics& operator=(const DaemonMetrics&) = delete;

 private:
  std::vector<util::metrics::CollectorHandle> collectors_;
};

}  // namespace corral::daemon
