// The one JSON shape of an Error, shared by the API's error body and an
// operation's failed result: {"code", "message", "field", "value"} (field and
// value null when the error names none), plus the quota numbers of a
// QuotaExceeded. An Internal error's message never leaves the process: the
// caller says what to show instead (a report id) and logs the real one.
#pragma once

#include <string_view>

#include <nlohmann/json.hpp>

#include "util/result.h"

namespace corral::util {

nlohmann::json errorJson(const Error& e, std::string_view internalMessage);

}  // namespace corral::util
