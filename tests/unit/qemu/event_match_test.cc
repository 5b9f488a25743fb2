// Proves eventMatches is the recursive subset match of QEMU's python
// QEMUMachine.event_match: keys of the match must be present and match recursively,
// extra keys of the event are ignored, null matches anything, leaves compare equal.
#include "qemu/event_match.h"

#include <gtest/gtest.h>

namespace corral::qemu {
namespace {

using nlohmann::json;

const json kShutdown = json::parse(
    R"({"timestamp": {"seconds": 1, "microseconds": 2}, "event": "SHUTDOWN",
        "data": {"guest": true, "reason": "guest-shutdown"}})");

TEST(EventMatch, NullMatchesEverything) {
  EXPECT_TRUE(eventMatches(kShutdown, nullptr));
  EXPECT_TRUE(eventMatches(json(3), nullptr));
}

TEST(EventMatch, EmptyObjectMatchesAnyObject) {
  EXPECT_TRUE(eventMatches(kShutdown, json::object()));
  EXPECT_FALSE(eventMatches(json("SHUTDOWN"), json::object()));
}

TEST(EventMatch, NestedSubset) {
  EXPECT_TRUE(eventMatches(kShutdown, {{"data", {{"reason", "guest-shutdown"}}}}));
  EXPECT_TRUE(eventMatches(kShutdown, {{"event", "SHUTDOWN"}, {"data", {{"guest", true}}}}));
  EXPECT_FALSE(eventMatches(kShutdown, {{"data", {{"reason", "host-qmp-quit"}}}}));
  EXPECT_FALSE(eventMatches(kShutdown, {{"data", {{"guest", false}}}}));
}

TEST(EventMatch, MissingKeyFails) {
  EXPECT_FALSE(eventMatches(kShutdown, {{"data", {{"signal", 15}}}}));
  EXPECT_FALSE(eventMatches(kShutdown, {{"nodata", json::object()}}));
}

TEST(EventMatch, NullValueAsksOnlyForPresence) {
  EXPECT_TRUE(eventMatches(kShutdown, {{"data", {{"reason", nullptr}}}}));
  EXPECT_FALSE(eventMatches(kShutdown, {{"data", {{"signal", nullptr}}}}));
}

TEST(EventMatch, ObjectMatchAgainstLeafFails) {
  EXPECT_FALSE(eventMatches(kShutdown, {{"event", {{"name", "SHUTDOWN"}}}}));
}

TEST(EventMatch, LeavesCompareEqualIncludingType) {
  EXPECT_TRUE(eventMatches(json(1), json(1)));
  EXPECT_FALSE(eventMatches(json(1), json("1")));
  EXPECT_FALSE(eventMatches(json(true), json(1)));
  EXPECT_TRUE(eventMatches(json::array({1, 2}), json::array({1, 2})));
  EXPECT_FALSE(eventMatches(json::array({1, 2, 3}), json::array({1, 2})));  // arrays are leaves
}

}  // namespace
}  // namespace corral::qemu
