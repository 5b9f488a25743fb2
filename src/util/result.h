// Errors as values: Error{code, message, field, value} inside Result<T>.
//
// The codes are few on purpose (STYLE.md §7); only api/http_error.cc maps them to
// HTTP statuses. Messages are written for the person at the keyboard and name the
// field when there is one. CORRAL_TRY propagates an error to the caller.
#pragma once

#include <cassert>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <variant>

#include <fmt/format.h>

namespace corral {

enum class ErrorCode {
  InvalidInput,
  NotFound,
  AlreadyExists,
  FailedPrecondition,
  QuotaExceeded,
  Forbidden,
  Unauthenticated,   // no or bad credentials (401)
  VersionMismatch,   // a stale If-Match / version (412)
  RateLimited,       // too many attempts; retry later (429)
  Unavailable,
  Timeout,
  Internal,
};

std::string_view toString(ErrorCode code);

// The numbers of a QuotaExceeded refusal: which resource, its limit, what the
// subject uses now and what the refused change asked for (same unit as limit).
struct QuotaInfo {
  std::string resource;  // "vms", "running", "memory_total", "memory_vm", "disk_total", "disk_vm"
  int64_t limit = 0;
  int64_t usage = 0;
  int64_t requested = 0;
};

struct Error {
  ErrorCode code = ErrorCode::Internal;
  std::string message;
  std::string field;  // the input field at fault, empty when none
  std::string value;  // the offending value, as given
  std::optional<QuotaInfo> quota;  // QuotaExceeded only
  int retryAfterSeconds = 0;       // RateLimited only

  static Error invalidInput(std::string field, std::string value, std::string_view reason);
  static Error notFound(std::string message) { return {ErrorCode::NotFound, std::move(message), {}, {}}; }
  static Error alreadyExists(std::string field, std::string value, std::string message) {
    return {ErrorCode::AlreadyExists, std::move(message), std::move(field), std::move(value)};
  }
  static Error failedPrecondition(std::string message) {
    return {ErrorCode::FailedPrecondition, std::move(message), {}, {}};
  }
  static Error unavailable(std::string message) { return {ErrorCode::Unavailable, std::move(message), {}, {}}; }
  static Error timeout(std::string message) { return {ErrorCode::Timeout, std::move(message), {}, {}}; }
  static Error internal(std::string message) { return {ErrorCode::Internal, std::move(message), {}, {}}; }
  static Error forbidden(std::string message) { return {ErrorCode::Forbidden, std::move(message), {}, {}}; }
  static Error unauthenticated(std::string message) {
    return {ErrorCode::Unauthenticated, std::move(message), {}, {}};
  }
  static Error versionMismatch(int64_t expected, int64_t actual);
  static Error rateLimited(std::string message, int retryAfterSeconds);
  // "<resource>: limit L, in use U, requested R" (unit is the resource's: MiB, GiB, count).
  static Error quotaExceeded(QuotaInfo q, std::string_view subject);

  // "context: message", keeping code and field; for adding what was being done.
  Error context(std::string_view what) const&;

  std::string describe() const;
};

template <class... A>
Error errorf(ErrorCode code, fmt::format_string<A...> f, A&&... a) {
  return Error{code, fmt::format(f, std::forward<A>(a)...), {}, {}};
}

template <class T>
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::in_place_index<0>, std::move(value)) {}  // NOLINT: implicit by design
  Result(Error error) : v_(std::in_place_index<1>, std::move(error)) {}  // NOLINT

  bool ok() const { return v_.index() == 0; }
  explicit operator bool() const { return ok(); }

  T& value() & { assert(ok()); return std::get<0>(v_); }
  const T& value() const& { assert(ok()); return std::get<0>(v_); }
  T&& value() && { assert(ok()); return std::get<0>(std::move(v_)); }
  T take() && { return std::get<0>(std::move(v_)); }
  T valueOr(T other) const& { return ok() ? std::get<0>(v_) : std::move(other); }

  const Error& error() const& { assert(!ok()); return std::get<1>(v_); }
  Error&& error() && { assert(!ok()); return std::get<1>(std::move(v_)); }

  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }

 private:
  std::variant<T, Error> v_;
};

template <>
class [[nodiscard]] Result<void> {
 public:
  Result() = default;
  Result(Error error) : e_(std::move(error)) {}  // NOLINT: implicit by design

  bool ok() const { return !e_.has_value(); }
  explicit operator bool() const { return ok(); }
  void take() && {}
  const Error& error() const& { assert(!ok()); return *e_; }
  Error&& error() && { assert(!ok()); return std::move(*e_); }

 private:
  std::optional<Error> e_;
};

inline Result<void> ok() { return {}; }

}  // namespace corral

// Evaluates a Result expression; on error returns the error from the enclosing
// function, otherwise yields the value (or void).
#define CORRAL_TRY(expr)                                  \
  ({                                                      \
    auto&& corral_try_r_ = (expr);                        \
    if (!corral_try_r_.ok()) return std::move(corral_try_r_).error(); \
    std::move(corral_try_r_).take();                      \
  })
