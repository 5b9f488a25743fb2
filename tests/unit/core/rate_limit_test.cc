// Proves the sliding-window limiter with an injected clock (no sleeps): a key is
// refused after maxFailures failures within the window, the retry time counts
// down to when the oldest failure leaves the window, reset frees a key, and
// keys do not affect each other.
#include "core/rate_limit.h"

#include <gtest/gtest.h>

namespace corral::core {
namespace {

using namespace std::chrono_literals;

struct FakeClock {
  std::chrono::steady_clock::time_point now{} ;
  SteadyClock fn() {
    return [this] { return now; };
  }
};

TEST(RateLimiter, RefusesAfterMaxFailuresUntilTheOldestAgesOut) {
  FakeClock clock;
  RateLimiter rl(3, 300s, clock.fn());
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(rl.retryAfterSeconds("alice"), 0);
    rl.recordFailure("alice");
    clock.now += 10s;  // failures at 0, 10, 20
  }
  // Now 30 s: the oldest (t=0) leaves at 300 s.
  EXPECT_EQ(rl.retryAfterSeconds("alice"), 270);
  clock.now += 269s;
  EXPECT_EQ(rl.retryAfterSeconds("alice"), 1);
  clock.now += 1s;
  EXPECT_EQ(rl.retryAfterSeconds("alice"), 0);  // 2 failures left in the window
  rl.recordFailure("alice");
  EXPECT_EQ(rl.retryAfterSeconds("alice"), 10);  // the t=10 failure leaves at 310
}

TEST(RateLimiter, RoundsPartialSecondsUp) {
  FakeClock clock;
  RateLimiter rl(1, 5s, clock.fn());
  rl.recordFailure("k");
  clock.now += 4500ms;
  EXPECT_EQ(rl.retryAfterSeconds("k"), 1);
  clock.now += 500ms;
  EXPECT_EQ(rl.retryAfterSeconds("k"), 0);
}

TEST(RateLimiter, ResetFreesTheKey) {
  FakeClock clock;
  RateLimiter rl(2, 60s, clock.fn());
  rl.recordFailure("bob");
  rl.recordFailure("bob");
  EXPECT_GT(rl.retryAfterSeconds("bob"), 0);
  rl.reset("bob");
  EXPECT_EQ(rl.retryAfterSeconds("bob"), 0);
}

TEST(RateLimiter, KeysAreIndependent) {
  FakeClock clock;
  RateLimiter rl(1, 60s, clock.fn());
  rl.recordFailure("10.0.0.1");
  EXPECT_GT(rl.retryAfterSeconds("10.0.0.1"), 0);
  EXPECT_EQ(rl.retryAfterSeconds("10.0.0.2"), 0);
}

TEST(RateLimiter, ManyExpiredKeysAreSwept) {
  FakeClock clock;
  RateLimiter rl(1, 1s, clock.fn());
  for (int i = 0; i < 5000; ++i) {
    rl.recordFailure("k" + std::to_string(i));
    clock.now += 2s;  // each earlier key has expired by the next failure
  }
  // Behaviour stays right across sweeps: the last key is limited, an old one free.
  EXPECT_EQ(rl.retryAfterSeconds("k4999"), 0);  // 2 s passed since: expired
  rl.recordFailure("k4999");
  EXPECT_EQ(rl.retryAfterSeconds("k4999"), 1);
  EXPECT_EQ(rl.retryAfterSeconds("k0"), 0);
}

}  // namespace
}  // namespace corral::core
