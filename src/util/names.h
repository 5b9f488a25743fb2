// Allow-lists for every name a user gives, checked before the name reaches a path,
// a command line or a QEMU option string (DESIGN.md, Security rules).
#pragma once

#include <string_view>

#include "util/result.h"

namespace corral::util {

// VM names are DNS labels: 1-63 of [a-z0-9-], starting and ending alphanumeric,
// so that a name is also a valid hostname and a safe file name.
Result<void> validateVmName(std::string_view field, std::string_view name);

// Image names additionally allow '.' and '_' inside (e.g. "debian-12.4"), never
// leading, never "..".
Result<void> validateImageName(std::string_view field, std::string_view name);

}  // namespace corral::util
