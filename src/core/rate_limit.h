// Counts failures per key (an account, an address) in a sliding window and
// says when a key has had too many: the login rate limit of
// docs/control-plane.md. It counts only; deciding what a failure is, and what a
// success resets, is the caller's (core/identity.cc).
//
// Memory stays bounded by the keys that failed within one window: expired
// entries are swept as the map grows. Thread-safe.
#pragma once

#include <chrono>
#include <cstddef>
#include <deque>
#include <functional>
#include <mutex>
#include <string>
#include <unordered_map>

namespace corral::core {

// A monotonic clock that tests can replace (STYLE.md §8).
using SteadyClock = std::function<std::chrono::steady_clock::time_point()>;

class RateLimiter {
 public:
  // At most maxFailures failures per key within window; clock defaults to
  // std::chrono::steady_clock::now.
  RateLimiter(size_t maxFailures, std::chrono::seconds window, SteadyClock clock = {});

  // 0 when key may try again now; otherwise the whole seconds (at least 1) until
  // its oldest counted failure leaves the window.
  int retryAfterSeconds(const std::string& key);

  void recordFailure(const std::string& key);

  // Forgets key's failures (a successful login resets its account).
  void reset(const std::string& key);

 private:
  using TimePoint = std::chrono::steady_clock::time_point;
  void pruneLocked(std::deque<TimePoint>& failures, TimePoint now) const;
  void sweepLocked(TimePoint now);

  const size_t maxFailures_;
  const std::chrono::seconds window_;
  SteadyClock clock_;
  std::mutex mu_;
  std::unordered_map<std::string, std::deque<TimePoint>> failures_;
  size_t sweepAt_ = 1024;  // sweep expired keys when the map reaches this size
};

}  // namespace corral::core
