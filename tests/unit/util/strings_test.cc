// Proves the comma-list helpers drop empty items and round-trip, and that an
// endpoint's port is read from the forms corrald is given (listen address, URL).
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

TEST(Endpoint, PortOfListenAddressesAndUrls) {
  EXPECT_EQ(portOfEndpoint("127.0.0.1:8443"), 8443);
  EXPECT_EQ(portOfEndpoint("[::1]:9000"), 9000);
  EXPECT_EQ(portOfEndpoint("postgres://corral:s3cret@db.lab:5433/corral?sslmode=require"), 5433);
  EXPECT_EQ(portOfEndpoint("postgresql://db.lab:6543"), 6543);
  EXPECT_EQ(portOfEndpoint("postgres://u:p@db.lab/corral"), std::nullopt) << "the password is not a port";
  EXPECT_EQ(portOfEndpoint("postgres://[::1]/corral"), std::nullopt);
  EXPECT_EQ(portOfEndpoint("/var/lib/corral/corral.db"), std::nullopt);
  EXPECT_EQ(portOfEndpoint("host:0"), std::nullopt);
  EXPECT_EQ(portOfEndpoint("host:70000"), std::nullopt);
  EXPECT_EQ(portOfEndpoint("host:12x"), std::nullopt);
  EXPECT_EQ(portOfEndpoint(""), std::nullopt);
}

}  // namespace
}  // namespace corral::util
