// The one place that maps an Error to an HTTP status and to the error JSON the
// API returns (STYLE.md §7):
//   {"error": {"code": "invalid_input", "message": "...", "field": "...", "value": "..."}}
// Internal errors never show their message (it may hold paths, argv or worse):
// the body says "internal error, report id <id>" and logError() writes the real
// message to the log under the same id.
#pragma once

#include <functional>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "util/result.h"

namespace corral::api {

// InvalidInput 400, Unauthenticated 401, Forbidden 403, NotFound 404,
// AlreadyExists/FailedPrecondition/QuotaExceeded 409, VersionMismatch 412,
// RateLimited 429, Internal 500, Unavailable 503, Timeout 504.
// A QuotaExceeded body adds "resource", "limit", "usage", "request"; a
// RateLimited one "retry_after" (seconds, also sent as Retry-After).
int httpStatus(ErrorCode code);

// The response body for e. Pure: does not log (see logError). Every key is
// always present: "field" and "value" are null unless the error names a field,
// and "request_id" is added when known.
// reportId (internal errors only) is the report shown to the caller; "" shows requestId.
nlohmann::json errorBody(const Error& e, std::string_view requestId, std::string_view reportId = {});

// What an internal error does besides being logged: the daemon saves a Guru
// Meditation Report with the request's context and returns its id, which the
// caller is shown ("internal error, report id ID"). Set once at start; without
// one the request id stands in.
using InternalErrorReporter = std::function<std::string(const Error& e, std::string_view requestId)>;
void setInternalErrorReporter(InternalErrorReporter reporter);

// The report id for an internal error e of request requestId: the reporter's,
// or requestId when there is none or it failed.
std::string reportInternalError(const Error& e, std::string_view requestId);

// Logs what the operator needs to see: Internal at error level with the real
// message and the request id (the report id shown to the caller), the others at
// debug (they are the caller's business and are already in the access log).
void logError(const Error& e, std::string_view requestId);

}  // namespace corral::api
