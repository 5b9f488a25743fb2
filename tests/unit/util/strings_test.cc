// Proves the comma-list helpers drop empty items and round-trip.
#include "util/strings.h"

#include <gtest/gtest.h>

namespace corral::util {
namespace {

TEST(StringList, SplitDropsEmptyItemsAndJoinRoundTrips) {
  EXPECT_TRUE(splitList("").empty());
  EXPECT_TRUE(splitList(",,").empty());
  EXPECT_EQ(splitList("a"), std::vector<std::string>{"a"});
  EXPECT_EQ(splitList("a,,b,"), (std::vector<std::string>{"a", "b"}));
  EXPECT_EQ(splitList("x.y", '.'), (std::vector<std::string>{"x", "y"}));
  EXPECT_EQ(joinList({"tcp:2222:22", "udp:53:53"}), "tcp:2222:22,udp:53:53");
  EXPECT_EQ(joinList({}), "");
  EXPECT_EQ(splitList(joinList({"1.1.1.1", "9.9.9.9"})), (std::vector<std::string>{"1.1.1.1", "9.9.9.9"}));
}

}  // namespace
}  // namespace corral::util
