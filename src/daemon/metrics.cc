#include "daemon/metrics.h"

#include "qemu/monitor.h"

namespace corral::daemon {

namespace m = util::metrics;

DaemonMetrics::DaemonMetrics(m::Registry& registry, core::VmManager& vms, core::Operations& ops,
                             const core::EventBus& events, std::chrono::milliseconds qmpTimeout) {
  auto& latency = registry.histogram("corral_qmp_command_duration_seconds",
                                     "Time from sending a QMP command to its reply (or its failure).", {"command"});
  auto& errors = registry.counter("corral_qmp_errors_total",
                                  "QMP commands that failed: refused by QEMU, disconnected, timed out or protocol.",
                                  {"command", "kind"});
  // The commands are corral's own (a fixed set), so they are fit for labels.
  // The registry outlives every thread that sends QMP (main.cc declares it first).
  qemu::Monitor::setCommandObserver(std::make_shared<const qemu::Monitor::CommandObserver>(
      [&latency, &errors](std::string_view command, double seconds, const qemu::QmpError* error) {
        latency.labels({command}).observe(seconds);
        if (error != nullptr) errors.labels({command, qemu::toString(error->kind)}).inc();
      }));

  collectors_.push_back(registry.addCollector(m::collectProcess));
  collectors_.push_back(registry.addCollector(m::collectNode));
  collectors_.push_back(
      registry.addCollector([&vms, qmpTimeout](m::Emitter& out) { vms.collectMetrics(out, qmpTimeout); }));
  collectors_.push_back(registry.addCollector([&ops](m::Emitter& out) {
    auto c = ops.counts();
    auto& inFlight = out.family("corral_operations_in_flight", m::Type::Gauge,
                                "Operations of this daemon now pending or running, by kind and state.");
    for (const auto& [key, n] : c.inFlight)
      inFlight.samples.push_back({"", {{"kind", key.first}, {"state", key.second}}, double(n)});
    auto& finished = out.family("corral_operations_finished_total", m::Type::Counter,
                                "Operations this daemon ran to the end since it started, by kind and result.");
    for (const auto& [key, n] : c.finished)
      finished.samples.push_back({"", {{"kind", key.first}, {"result", key.second}}, double(n)});
  }));
  collectors_.push_back(registry.addCollector([&events](m::Emitter& out) {
    out.family("corral_event_subscribers", m::Type::Gauge,
               "Followers of the events stream (GET /api/v1/events) connected to this daemon now.")
        .samples.push_back({"", {}, double(events.subscribers())});
  }));
}

DaemonMetrics::~DaemonMetrics() {
  qemu::Monitor::setCommandObserver(nullptr);
  collectors_.clear();  // waits for a scrape running one of them
}

}  // namespace corral::daemon
