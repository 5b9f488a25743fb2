// Error -> HTTP status and error JSON. See http_error.h.
#include "api/http_error.h"

#include <mutex>

#include "util/error_json.h"

#include <string>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

namespace corral::api {

int httpStatus(ErrorCode code) {
  // No default: a new code must be given a status here before it builds.
  switch (code) {
    case ErrorCode::InvalidInput: return 400;
    case ErrorCode::NotFound: return 404;
    case ErrorCode::AlreadyExists: return 409;
    case ErrorCode::FailedPrecondition: return 409;
    case ErrorCode::QuotaExceeded: return 409;
    case ErrorCode::Forbidden: return 403;
    case ErrorCode::Unauthenticated: return 401;
    case ErrorCode::VersionMismatch: return 412;
    case ErrorCode::RateLimited: return 429;
    case ErrorCode::Unavailable: return 503;
    case ErrorCode::Timeout: return 504;
    case ErrorCode::Internal: return 500;
  }
  return 500;
}

namespace {
std::mutex gReporterMu;
InternalErrorReporter gReporter;
}  // namespace

void setInternalErrorReporter(InternalErrorReporter reporter) {
  std::lock_guard lock(gReporterMu);
  gReporter = std::move(reporter);
}

std::string reportInternalError(const Error& e, std::string_view requestId) {
  InternalErrorReporter reporter;
  {
    std::lock_guard lock(gReporterMu);
    reporter = gReporter;
  }
  std::string id;
  if (reporter) {
    try {
      id = reporter(e, requestId);
    } catch (const std::exception& ex) {
      spdlog::error("internal error req={}: saving its report failed: {}", requestId, ex.what());
    }
  }
  return id.empty() ? std::string(requestId) : id;
}

nlohmann::json errorBody(const Error& e, std::string_view requestId, std::string_view reportId) {
  std::string_view shown = reportId.empty() ? requestId : reportId;
  nlohmann::json err = util::errorJson(e, fmt::format("internal error, report id {}", shown.empty() ? "none" : shown));
  if (e.retryAfterSeconds > 0) err["retry_after"] = e.retryAfterSeconds;
  if (!requestId.empty()) err["request_id"] = std::string(requestId);
  if (e.code == ErrorCode::Internal && !shown.empty()) err["report_id"] = std::string(shown);
  return nlohmann::json{{"error", std::move(err)}};
}

void logError(const Error& e, std::string_view requestId) {
  if (e.code == ErrorCode::Internal)
    spdlog::error("internal error req={}: {}", requestId, e.message);
  else
    spdlog::debug("request failed req={}: {}", requestId, e.describe());
}

}  // namespace corral::api
