// IPv4 addresses and subnets as numbers, for the IP pools of networks: parsing
// (strict dotted quads, no leading zeros, no shorthand), formatting and the
// arithmetic of a subnet's hosts.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "util/result.h"

namespace corral::util {

struct Ipv4 {
  uint32_t value = 0;  // host byte order
  auto operator<=>(const Ipv4&) const = default;
  std::string str() const;
};

struct Ipv4Subnet {
  Ipv4 network;  // host bits zero
  unsigned prefix = 0;
  uint32_t mask() const { return prefix == 0 ? 0 : ~uint32_t{0} << (32 - prefix); }
  Ipv4 broadcast() const { return Ipv4{network.value | ~mask()}; }
  // Usable host addresses: not the network's nor the broadcast address.
  Ipv4 firstHost() const { return Ipv4{network.value + 1}; }
  Ipv4 lastHost() const { return Ipv4{broadcast().value - 1}; }
  bool contains(Ipv4 a) const { return (a.value & mask()) == network.value; }
  bool isHost(Ipv4 a) const { return contains(a) && a != network && a != broadcast(); }
  bool overlaps(const Ipv4Subnet& o) const { return contains(o.network) || o.contains(network); }
  std::string str() const;      // "10.77.0.0/24"
  std::string netmask() const;  // "255.255.255.0"
};

// An interface address with its prefix length, host bits as written
// ("10.77.0.1/24": the gateway on its subnet).
struct Ipv4Prefixed {
  Ipv4 address;
  unsigned prefix = 0;  // 0..32
  Ipv4Subnet subnet() const {
    Ipv4Subnet s{Ipv4{}, prefix};
    s.network = Ipv4{address.value & s.mask()};
    return s;
  }
  std::string str() const;  // "10.77.0.1/24"
};

// "10.0.0.1": four decimal octets 0-255 without leading zeros. Errors name field.
Result<Ipv4> parseIpv4(std::string_view field, std::string_view text);
// "10.77.0.1/24", any prefix 0..32, host bits allowed.
Result<Ipv4Prefixed> parseIpv4Prefixed(std::string_view field, std::string_view text);
// "10.77.0.0/24", prefix 8..30 (a pool needs hosts), host bits zero.
Result<Ipv4Subnet> parseIpv4Subnet(std::string_view field, std::string_view text);

}  // namespace corral::util
