// Small string helpers shared by layers: lists stored as one comma-separated
// column (a network's DNS servers, a NIC's forwards).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace corral::util {

// "a,b,,c" -> {"a", "b", "c"}: empty items are dropped; "" -> {}.
std::vector<std::string> splitList(std::string_view s, char sep = ',');
// {"a", "b"} -> "a,b".
std::string joinList(const std::vector<std::string>& items, char sep = ',');

// The TCP port an endpoint names: "ADDR:PORT", "[V6]:PORT", or a URL's authority
// ("postgres://user:pw@host:5433/db" -> 5433). nullopt when it names none (a URL
// without a port, a unix socket path) or the port is not 1-65535.
std::optional<uint16_t> portOfEndpoint(std::string_view endpoint);

}  // namespace corral::util
