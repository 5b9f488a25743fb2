// Proves the IPv4 parsing of network settings is strict (no shorthand, leading
// zeros or out-of-range octets slip through to dnsmasq or a guest) and that the
// subnet arithmetic of IP pools is right at its edges.
#include "util/ipv4.h"

#include <gtest/gtest.h>

namespace corral::util {
namespace {

TEST(Ipv4, ParsesAndFormatsDottedQuads) {
  auto a = parseIpv4("ip", "10.77.0.254");
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(a->value, 0x0a4d00feu);
  EXPECT_EQ(a->str(), "10.77.0.254");
  EXPECT_EQ(parseIpv4("ip", "0.0.0.0")->str(), "0.0.0.0");
  EXPECT_EQ(parseIpv4("ip", "255.255.255.255")->value, 0xffffffffu);
}

TEST(Ipv4, RefusesAnythingButFourPlainOctets) {
  for (const char* bad : {"", "10", "10.0.0", "10.0.0.1.2", "10.0.0.256", "10.0.0.01", "10..0.1", "10.0.0.-1",
                          " 10.0.0.1", "10.0.0.1 ", "0x10.0.0.1", "10.0.0.1/24", "1000.0.0.1"}) {
    auto r = parseIpv4("gateway", bad);
    ASSERT_FALSE(r.ok()) << bad;
    EXPECT_EQ(r.error().field, "gateway");
  }
}

TEST(Ipv4, SubnetsKnowTheirHostsAndOverlaps) {
  auto s = parseIpv4Subnet("subnet", "10.77.0.0/24");
  ASSERT_TRUE(s.ok());
  EXPECT_EQ(s->str(), "10.77.0.0/24");
  EXPECT_EQ(s->netmask(), "255.255.255.0");
  EXPECT_EQ(s->firstHost().str(), "10.77.0.1");
  EXPECT_EQ(s->lastHost().str(), "10.77.0.254");
  EXPECT_EQ(s->broadcast().str(), "10.77.0.255");
  EXPECT_TRUE(s->isHost(*parseIpv4("ip", "10.77.0.7")));
  EXPECT_FALSE(s->isHost(*parseIpv4("ip", "10.77.0.0")));
  EXPECT_FALSE(s->isHost(*parseIpv4("ip", "10.77.0.255")));
  EXPECT_FALSE(s->contains(*parseIpv4("ip", "10.77.1.1")));
  EXPECT_TRUE(s->overlaps(*parseIpv4Subnet("subnet", "10.77.0.128/25")));
  EXPECT_TRUE(s->overlaps(*parseIpv4Subnet("subnet", "10.0.0.0/8")));
  EXPECT_FALSE(s->overlaps(*parseIpv4Subnet("subnet", "10.77.1.0/24")));
  auto small = parseIpv4Subnet("subnet", "192.168.5.4/30");
  ASSERT_TRUE(small.ok());
  EXPECT_EQ(small->firstHost().str(), "192.168.5.5");
  EXPECT_EQ(small->lastHost().str(), "192.168.5.6");
}

TEST(Ipv4, SubnetsMustBeExactAndHoldHosts) {
  EXPECT_FALSE(parseIpv4Subnet("subnet", "10.77.0.1/24").ok());  // host bits
  EXPECT_FALSE(parseIpv4Subnet("subnet", "10.77.0.0/31").ok());
  EXPECT_FALSE(parseIpv4Subnet("subnet", "10.0.0.0/7").ok());
  EXPECT_FALSE(parseIpv4Subnet("subnet", "10.77.0.0").ok());
  EXPECT_FALSE(parseIpv4Subnet("subnet", "10.77.0.0/024").ok());
  EXPECT_FALSE(parseIpv4Subnet("subnet", "10.77.0.0/").ok());
  auto r = parseIpv4Subnet("subnet", "10.77.0.9/24");
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message.find("10.77.0.0/24"), std::string::npos) << r.error().message;
}

// An interface address keeps its host bits and takes any prefix; its subnet
// clears them.
TEST(Ipv4, PrefixedAddressesKeepTheirHostBits) {
  auto a = parseIpv4Prefixed("address", "10.77.0.1/24");
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(a->str(), "10.77.0.1/24");
  EXPECT_EQ(a->subnet().str(), "10.77.0.0/24");
  EXPECT_EQ(parseIpv4Prefixed("address", "0.0.0.0/0")->subnet().str(), "0.0.0.0/0");
  EXPECT_EQ(parseIpv4Prefixed("address", "10.1.2.3/32")->subnet().str(), "10.1.2.3/32");
  for (const char* bad : {"10.77.0.1", "10.77.0.1/33", "10.77.0.1/", "10.77.0.1/2x", "10.77.0.1/24\n", "x/24"}) {
    auto r = parseIpv4Prefixed("address", bad);
    ASSERT_FALSE(r.ok()) << bad;
    EXPECT_EQ(r.error().field, "address");
  }
}

}  // namespace
}  // namespace corral::util
