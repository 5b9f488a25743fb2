// The login throttles of docs/control-plane.md: RateLimiter counts failures
// per key (an address, an account from one address) in a sliding window and
// says when a key has had too many; Backoff makes each consecutive failure of a
// key (an account from anywhere) cost an exponentially longer, capped wait, so
// that nobody can lock an account out for everyone. They count only; deciding
// what a failure is, and what a success resets, is the caller's
// (core/identity.cc).
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

// After `free` consecutive failures of a key, the next try waits base·2^k from
// the last failure (k = failures − free), never more than cap; a success
// (reset) forgets the key, and so does a pause of `forget` with no failure.
// Memory stays bounded the same way as RateLimiter's. Thread-safe.
class Backoff {
 public:
  Backoff(size_t free, std::chrono::seconds base, std::chrono::seconds cap, std::chrono::seconds forget,
          SteadyClock clock = {});
  int retryAfterSeconds(const std::string& key);  // 0: may try now
  void recordFailure(const std::string& key);
  void reset(const std::string& key);

 private:
  using TimePoint = std::chrono::steady_clock::time_point;
  struct Entry {
    size_t failures = 0;
    TimePoint last{};
  };
  std::chrono::milliseconds waitOf(const Entry& e) const;

  const size_t free_;
  const std::chrono::seconds base_, cap_, forget_;
  SteadyClock clock_;
  std::mutex mu_;
  std::unordered_map<std::string, Entry> entries_;
  size_t sweepAt_ = 1024;
};

// The key an address is throttled by: an IPv4 address as it is; an IPv6
// address's /64 ("2001:db8:1:2::/64"), which one client usually holds whole;
// anything else (a unix peer "unix:UID") unchanged.
std::string addressThrottleKey(const std::string& address);

}  // namespace corral::core
