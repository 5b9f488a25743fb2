// See rate_limit.h.
#include "core/rate_limit.h"

#include <algorithm>

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

}  // namespace corral::core
