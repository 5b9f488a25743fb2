// Small string helpers shared by layers: lists stored as one comma-separated
// column (a network's DNS servers, a NIC's forwards).
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace corral::util {

// "a,b,,c" -> {"a", "b", "c"}: empty items are dropped; "" -> {}.
std::vector<std::string> splitList(std::string_view s, char sep = ',');
// {"a", "b"} -> "a,b".
std::string joinList(const std::vector<std::string>& items, char sep = ',');

}  // namespace corral::util
