#include "util/redact.h"

namespace corral::util {

std::string maskUrlPassword(std::string_view url) {
  std::string out(url);
  size_t scheme = out.find("://");
  if (scheme != std::string::npos) {
    size_t authority = scheme + 3;
    size_t end = out.find_first_of("/?#", authority);
    size_t at = out.rfind('@', end == std::string::npos ? std::string::npos : end);
    if (at != std::string::npos && at >= authority) {
      size_t colon = out.find(':', authority);
      if (colon != std::string::npos && colon < at) out.replace(colon + 1, at - colon - 1, kMasked);
    }
  }
  size_t query = out.find('?');
  if (query == std::string::npos) return out;
  for (size_t pos = query + 1; pos < out.size();) {
    size_t amp = out.find('&', pos);
    size_t stop = amp == std::string::npos ? out.size() : amp;
    size_t eq = out.find('=', pos);
    if (eq != std::string::npos && eq < stop && std::string_view(out).substr(pos, eq - pos) == "password") {
      out.replace(eq + 1, stop - eq - 1, kMasked);
      stop = eq + 1 + kMasked.size();
    }
    pos = stop + 1;
  }
  return out;
}

}  // namespace corral::util
