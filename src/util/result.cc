#include "util/result.h"

namespace corral {

std::string_view toString(ErrorCode code) {
  switch (code) {
    case ErrorCode::InvalidInput: return "invalid_input";
    case ErrorCode::NotFound: return "not_found";
    case ErrorCode::AlreadyExists: return "already_exists";
    case ErrorCode::FailedPrecondition: return "failed_precondition";
    case ErrorCode::QuotaExceeded: return "quota_exceeded";
    case ErrorCode::Forbidden: return "forbidden";
    case ErrorCode::Unavailable: return "unavailable";
    case ErrorCode::Timeout: return "timeout";
    case ErrorCode::Internal: return "internal";
  }
  return "internal";
}

Error Error::invalidInput(std::string field, std::string value, std::string_view reason) {
  std::string message = fmt::format("{}: {}", field, reason);
  return {ErrorCode::InvalidInput, std::move(message), std::move(field), std::move(value)};
}

Error Error::context(std::string_view what) const& {
  Error e = *this;
  e.message = fmt::format("{}: {}", what, message);
  return e;
}

std::string Error::describe() const { return fmt::format("{} ({})", message, toString(code)); }

}  // namespace corral
