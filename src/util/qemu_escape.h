// Escaping of values inside QEMU's comma-separated option strings.
//
// QEMU parses `-device`, `-chardev`, `-blockdev`, `-netdev`, `-smbios`, `-vnc`...
// as "key=value,key=value" (QemuOpts or keyval); a comma inside a value is
// written as two commas. Escaping every value that comes from a name or a path
// keeps it from ending its option early and adding options of its own. Options
// that QEMU takes verbatim (-kernel, -initrd, -append, -pidfile) must NOT be
// escaped; qemu/command_line knows which is which.
#pragma once

#include <string>
#include <string_view>

namespace corral::util {

// Returns `value` with every ',' doubled, for use after "key=" in a QEMU
// option string. Never fails; any byte sequence is accepted.
std::string escapeOptionValue(std::string_view value);

}  // namespace corral::util
