// See rate_limit.h.
#include "core/rate_limit.h"

#include <arpa/inet.h>

#include <algorithm>
#include <cstring>

namespace corral::core {

RateLimiter::RateLimiter(size_t maxFailures, std::chrono::seconds window, SteadyClock clock)
    : maxFailures_(maxFailures), window_(window), clock_(std::move(clock)) {
  if (!clock_) clock_ = [] { return std::chrono::steady_clock::now(); };
}

void RateLimiter::pruneLocked(std::deque<TimePoint>& failures, TimePoint now) const {
  while (!failures.empty() && failures.front() + window_ <= now) failures.pop_front();
}

void RateLimiter::sweepLocked(TimePoint now) {
  for (auto it = failures_.begin(); it != failures_.end();) {
    pruneLocked(it->second, now);
    it = it->second.empty() ? failures_.erase(it) : std::next(it);
  }
  // Grow the threshold with what is really live, so a flood of distinct keys
  // costs one sweep per doubling rather than one per failure.
  sweepAt_ = std::max<size_t>(1024, failures_.size() * 2);
}

int RateLimiter::retryAfterSeconds(const std::string& key) {
  std::lock_guard lock(mu_);
  auto it = failures_.find(key);
  if (it == failures_.end()) return 0;
  TimePoint now = clock_();
  pruneLocked(it->second, now);
  if (it->second.size() < maxFailures_) {
    if (it->second.empty()) failures_.erase(it);
    return 0;
  }
  // The (size - max + 1)th oldest failure must leave before one more try fits.
  TimePoint freeAt = it->second[it->second.size() - maxFailures_] + window_;
  auto wait = std::chrono::duration_cast<std::chrono::milliseconds>(freeAt - now).count();
  return std::max<int>(1, static_cast<int>((wait + 999) / 1000));
}

void RateLimiter::recordFailure(const std::string& key) {
  std::lock_guard lock(mu_);
  TimePoint now = clock_();
  if (failures_.size() >= sweepAt_) sweepLocked(now);
  auto& f = failures_[key];
  pruneLocked(f, now);
  f.push_back(now);
  // Older failures beyond the limit change nothing about when the key is free.
  while (f.size() > maxFailures_) f.pop_front();
}

void RateLimiter::reset(const std::string& key) {
  std::lock_guard lock(mu_);
  failures_.erase(key);
}

Backoff::Backoff(size_t free, std::chrono::seconds base, std::chrono::seconds cap, std::chrono::seconds forget,
                 SteadyClock clock)
    : free_(free), base_(base), cap_(cap), forget_(forget), clock_(std::move(clock)) {
  if (!clock_) clock_ = [] { return std::chrono::steady_clock::now(); };
}

std::chrono::milliseconds Backoff::waitOf(const Entry& e) const {
  if (e.failures < free_) return std::chrono::milliseconds(0);
  const size_t k = std::min<size_t>(e.failures - free_, 30);  // 2^30 s is past any cap
  return std::min<std::chrono::milliseconds>(base_ * (int64_t{1} << k), cap_);
}

int Backoff::retryAfterSeconds(const std::string& key) {
  std::lock_guard lock(mu_);
  auto it = entries_.find(key);
  if (it == entries_.end()) return 0;
  const TimePoint now = clock_();
  if (now - it->second.last >= forget_) {
    entries_.erase(it);
    return 0;
  }
  auto left = std::chrono::duration_cast<std::chrono::milliseconds>(it->second.last + waitOf(it->second) - now);
  return left.count() <= 0 ? 0 : static_cast<int>((left.count() + 999) / 1000);
}

void Backoff::recordFailure(const std::string& key) {
  std::lock_guard lock(mu_);
  const TimePoint now = clock_();
  if (entries_.size() >= sweepAt_) {
    for (auto it = entries_.begin(); it != entries_.end();)
      it = now - it->second.last >= forget_ ? entries_.erase(it) : std::next(it);
    sweepAt_ = std::max<size_t>(1024, entries_.size() * 2);
  }
  Entry& e = entries_[key];
  if (e.failures > 0 && now - e.last >= forget_) e.failures = 0;
  ++e.failures;
  e.last = now;
}

void Backoff::reset(const std::string& key) {
  std::lock_guard lock(mu_);
  entries_.erase(key);
}

std::string addressThrottleKey(const std::string& address) {
  in6_addr v6{};
  if (address.find(':') == std::string::npos || ::inet_pton(AF_INET6, address.c_str(), &v6) != 1) return address;
  static const uint8_t kMapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
  if (std::memcmp(v6.s6_addr, kMapped, sizeof kMapped) == 0) {
    char buf[INET_ADDRSTRLEN];
    ::inet_ntop(AF_INET, v6.s6_addr + 12, buf, sizeof buf);
    return buf;
  }
  std::memset(v6.s6_addr + 8, 0, 8);
  char buf[INET6_ADDRSTRLEN];
  ::inet_ntop(AF_INET6, &v6, buf, sizeof buf);
  return std::string(buf) + "/64";
}

}  // namespace corral::core
