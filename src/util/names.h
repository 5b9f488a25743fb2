// Allow-lists for every name a user gives, checked before the name reaches a path,
// a command line or a QEMU option string (DESIGN.md, Security rules).
#pragma once

#include <string_view>

#include "util/result.h"

namespace corral::util {

// VM names are DNS labels: 1-63 of [a-z0-9-], starting and ending alphanumeric,
// so that a name is also a valid hostname and a safe file name.
Result<void> validateVmName(std::string_view field, std::string_view name);

// Hostnames of NICs: 1-63 of letters, digits and '-', starting and ending with
// a letter or digit (an RFC 1123 label). Case is kept; callers compare lowercase.
Result<void> validateHostname(std::string_view field, std::string_view name);

// Image names additionally allow '.' and '_' inside (e.g. "debian-12.4"), never
// leading, never "..".
Result<void> validateImageName(std::string_view field, std::string_view name);

// User logins and group names (one namespace): 1-32 of [a-z0-9_-], starting
// with a letter or '_', as Debian's adduser allows, so a login is also the name
// of a local account that the unix socket maps to.
Result<void> validateLogin(std::string_view field, std::string_view name);

// Email addresses for contacts and users: local@domain, the local part from
// [A-Za-z0-9._%+-], the domain two or more DNS labels; at most 254 bytes. No
// quoting, comments or IP literals: an address is shown and mailed, never parsed
// by a shell.
Result<void> validateEmail(std::string_view field, std::string_view email);

}  // namespace corral::util
