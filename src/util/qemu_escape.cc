// Comma doubling for QEMU option values; see qemu_escape.h.
#include "util/qemu_escape.h"

namespace corral::util {

std::string escapeOptionValue(std::string_view value) {
  std::string out;
  out.reserve(value.size() + 4);
  for (char c : value) {
    out += c;
    if (c == ',') out += ',';
  }
  return out;
}

}  // namespace corral::util
