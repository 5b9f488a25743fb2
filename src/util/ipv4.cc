#include "util/ipv4.h"

#include <charconv>

#include <fmt/format.h>

namespace corral::util {

std::string Ipv4::str() const {
  return fmt::format("{}.{}.{}.{}", value >> 24, (value >> 16) & 0xff, (value >> 8) & 0xff, value & 0xff);
}

std::string Ipv4Subnet::str() const { return fmt::format("{}/{}", network.str(), prefix); }

std::string Ipv4Subnet::netmask() const { return Ipv4{mask()}.str(); }

Result<Ipv4> parseIpv4(std::string_view field, std::string_view text) {
  auto bad = [&] {
    return Error::invalidInput(std::string(field), std::string(text), "must be an IPv4 address such as 10.0.0.1");
  };
  uint32_t value = 0;
  std::string_view rest = text;
  for (int i = 0; i < 4; ++i) {
    size_t end = i < 3 ? rest.find('.') : rest.size();
    if (end == std::string_view::npos || end == 0 || end > 3) return bad();
    std::string_view octet = rest.substr(0, end);
    if (octet.size() > 1 && octet.front() == '0') return bad();
    unsigned n = 0;
    auto [ptr, ec] = std::from_chars(octet.data(), octet.data() + octet.size(), n);
    if (ec != std::errc{} || ptr != octet.data() + octet.size() || n > 255) return bad();
    value = (value << 8) | n;
    rest = i < 3 ? rest.substr(end + 1) : std::string_view{};
  }
  return Ipv4{value};
}

std::string Ipv4Prefixed::str() const { return fmt::format("{}/{}", address.str(), prefix); }

Result<Ipv4Prefixed> parseIpv4Prefixed(std::string_view field, std::string_view text) {
  auto bad = [&] {
    return Error::invalidInput(std::string(field), std::string(text),
                               "must be an address with a prefix such as 10.77.0.1/24");
  };
  size_t slash = text.find('/');
  if (slash == std::string_view::npos) return bad();
  auto addr = parseIpv4(field, text.substr(0, slash));
  std::string_view p = text.substr(slash + 1);
  unsigned prefix = 0;
  auto [ptr, ec] = std::from_chars(p.data(), p.data() + p.size(), prefix);
  if (!addr.ok() || p.empty() || ec != std::errc{} || ptr != p.data() + p.size() ||
      (p.size() > 1 && p.front() == '0') || prefix > 32)
    return bad();
  return Ipv4Prefixed{*addr, prefix};
}

Result<Ipv4Subnet> parseIpv4Subnet(std::string_view field, std::string_view text) {
  auto bad = [&](std::string_view why) { return Error::invalidInput(std::string(field), std::string(text), why); };
  auto prefixed = parseIpv4Prefixed(field, text);
  if (!prefixed.ok()) return bad("must be a subnet such as 10.77.0.0/24");
  if (prefixed->prefix < 8 || prefixed->prefix > 30) return bad("prefix length must be between 8 and 30");
  Ipv4Subnet s = prefixed->subnet();
  if (s.network != prefixed->address) return bad(fmt::format("has host bits set: the subnet is {}", s.str()));
  return s;
}

}  // namespace corral::util
