#include "daemon/diagnostics.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <chrono>
#include <memory>
#include <mutex>

#include "api/routes_ops.h"
#include "util/logging.h"
#include "util/redact.h"

namespace corral::daemon {
namespace {

using Clock = std::chrono::steady_clock;

nlohmann::json databaseSection(const Config& cfg, store::Store& store) {
  bool postgres = cfg.db.rfind("postgres", 0) == 0;
  nlohmann::json j{{"kind", postgres ? "postgresql" : "sqlite"},
                   {"location", cfg.db.empty() ? "<state_dir>/corral.db" : util::maskUrlPassword(cfg.db)}};
  auto started = Clock::now();
  auto version = store.schemaVersion();
  std::chrono::duration<double, std::milli> ms = Clock::now() - started;
  j["answered_in_ms"] = ms.count();
  if (version.ok()) {
    j["reachable"] = true;
    j["schema_version"] = *version;
  } else {
    j["reachable"] = false;
    j["error"] = version.error().message;
  }
  return j;
}

nlohmann::json operationsSection(core::Operations& ops) {
  nlohmann::json j{{"in_flight", ops.inFlight()}};
  auto recent = ops.list(100);
  if (!recent.ok()) {
    j["error"] = recent.error().message;
    return j;
  }
  nlohmann::json live = nlohmann::json::array(), failed = nlohmann::json::array();
  for (const auto& op : *recent) {
    nlohmann::json o = api::toJson(op);
    if (op.state == "pending" || op.state == "running")
      live.push_back(std::move(o));
    else if (op.state == "failed" && failed.size() < 10)
      failed.push_back(std::move(o));
  }
  j["live"] = std::move(live);
  j["recently_failed"] = std::move(failed);
  return j;
}

}  // namespace

void addDaemonSections(util::Reporter& reporter, const ReportSources& src) {
  util::addGenericSections(reporter);
  reporter.add("configuration", [&cfg = src.cfg] { return toJson(cfg); });
  reporter.add("node", [&node = src.node, &vms = src.vms] { return node.toJson(vms); });
  reporter.add("vms", [&vms = src.vms] { return vms.report(); });
  reporter.add("operations", [&ops = src.ops] { return operationsSection(ops); });
  reporter.add("database", [&cfg = src.cfg, &store = src.store] { return databaseSection(cfg, store); });
  reporter.add("last_errors", [] { return nlohmann::json(util::log::recentProblems()); });
}

api::InternalErrorReporter internalErrorReporter(util::GuruMeditation& guru) {
  struct Last {
    std::mutex mu;
    Clock::time_point at{};
    std::string id;
  };
  auto last = std::make_shared<Last>();
  return [&guru, last](const Error& e, std::string_view requestId) -> std::string {
    {
      std::lock_guard lock(last->mu);
      if (!last->id.empty() && Clock::now() - last->at < std::chrono::seconds(1)) {
        spdlog::error("internal error req={}: no new report (one was saved under a second ago): see report {}",
                      requestId, last->id);
        return last->id;
      }
      last->at = Clock::now();
    }
    nlohmann::json context{{"request_id", requestId}, {"request", util::log::requestWhat()}, {"error", e.message}};
    auto saved = guru.capture("internal error", std::move(context));
    if (!saved.ok()) {
      spdlog::error("internal error req={}: saving a report failed: {}", requestId, saved.error().message);
      return {};
    }
    spdlog::error("internal error req={}: report {} saved at {}", requestId, saved->report.id, saved->path);
    std::lock_guard lock(last->mu);
    last->id = saved->report.id;
    return saved->report.id;
  };
}

api::ReportTaker reportTaker(util::GuruMeditation& guru) {
  return [&guru](const std::string& requester) -> Result<nlohmann::json> {
    auto saved = guru.capture("api", {{"requested_by", requester}});
    if (!saved.ok()) return saved.error();
    spdlog::info("report {} saved at {}", saved->report.id, saved->path);
    nlohmann::json j = saved->report.toJson();
    j["path"] = saved->path;
    return j;
  };
}

}  // namespace corral::daemon
