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
    case ErrorCode::Unauthenticated: return "unauthenticated";
    case ErrorCode::VersionMismatch: return "version_mismatch";
    case ErrorCode::RateLimited: return "rate_limited";
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

Error Error::versionMismatch(int64_t expected, int64_t actual) {
  return {ErrorCode::VersionMismatch,
          fmt::format("the record changed since it was read (version {} expected, now {}); read it again", expected,
                      actual),
          "version", std::to_string(expected)};
}

Error Error::rateLimited(std::string message, int retryAfterSeconds) {
  Error e{ErrorCode::RateLimited, std::move(message), {}, {}};
  e.retryAfterSeconds = retryAfterSeconds;
  return e;
}

Error Error::quotaExceeded(QuotaInfo q, std::string_view subject) {
  Error e{ErrorCode::QuotaExceeded,
          fmt::format("quota exceeded for {}: {} limit {}, in use {}, requested {}", subject, q.resource, q.limit,
                      q.usage, q.requested),
          q.resource, std::to_string(q.requested)};
  e.quota = std::move(q);
  return e;
}

Error Error::context(std::string_view what) const& {
  Error e = *this;
  e.message = fmt::format("{}: {}", what, message);
  return e;
}

std::string Error::describe() const { return fmt::format("{} ({})", message, toString(code)); }

}  // namespace corral
