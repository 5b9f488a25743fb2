// corrald's own sections of the Guru Meditation Report (configuration, node,
// VMs with QMP health, operations in flight, database, last errors), added to
// the generic ones of util/report.h; and what an internal error (a 500) and
// `corral admin report` do with the reporter.
#pragma once

#include <nlohmann/json.hpp>
#include <string>

#include "api/http_error.h"
#include "api/routes_diag.h"
#include "core/operations.h"
#include "core/vm_manager.h"
#include "daemon/config.h"
#include "daemon/node.h"
#include "store/store.h"
#include "util/guru.h"
#include "util/report.h"

namespace corral::daemon {

// Everything the sections read; each must outlive the reporter.
struct ReportSources {
  const Config& cfg;
  const NodeProbe& node;
  core::VmManager& vms;
  core::Operations& ops;
  store::Store& store;
};

void addDaemonSections(util::Reporter& reporter, const ReportSources& src);

// The 500 hook (api::setInternalErrorReporter): saves a report whose context is
// the request (id, method and path, the error) and returns its id. At most one
// a second: a burst of failures reuses the newest report instead of filling the
// disk, and says so in the log.
api::InternalErrorReporter internalErrorReporter(util::GuruMeditation& guru);

// The route's taker for `corral admin report`.
api::ReportTaker reportTaker(util::GuruMeditation& guru);

}  // namespace corral::daemon
