#include "util/strings.h"

#include <charconv>

namespace corral::util {

std::vector<std::string> splitList(std::string_view s, char sep) {
  std::vector<std::string> out;
  while (!s.empty()) {
    size_t end = s.find(sep);
    std::string_view item = s.substr(0, end);
    if (!item.empty()) out.emplace_back(item);
    if (end == std::string_view::npos) break;
    s.remove_prefix(end + 1);
  }
  return out;
}

std::string joinList(const std::vector<std::string>& items, char sep) {
  std::string out;
  for (const auto& item : items) {
    if (!out.empty()) out += sep;
    out += item;
  }
  return out;
}

std::optional<uint16_t> portOfEndpoint(std::string_view s) {
  if (size_t scheme = s.find("://"); scheme != std::string_view::npos) {
    s.remove_prefix(scheme + 3);
    s = s.substr(0, s.find_first_of("/?#"));
    if (size_t at = s.rfind('@'); at != std::string_view::npos) s.remove_prefix(at + 1);
  }
  size_t colon = s.rfind(':');
  if (colon == std::string_view::npos || (s.find(']') != std::string_view::npos && s.find(']') > colon))
    return std::nullopt;
  std::string_view digits = s.substr(colon + 1);
  unsigned v = 0;
  auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), v);
  if (digits.empty() || ec != std::errc{} || end != digits.data() + digits.size() || v == 0 || v > 65535)
    return std::nullopt;
  return static_cast<uint16_t>(v);
}

}  // namespace corral::util
