// SSH public keys for tests: a well-formed ed25519 key line made without
// ssh-keygen, its 32 key bytes all `fill` (so each fill is a distinct key).
#pragma once

#include <string>

namespace corral::testing {

// "ssh-ed25519 AAAA... comment" (no comment part when comment is empty).
std::string ed25519KeyLine(char fill, const std::string& comment = "");

}  // namespace corral::testing
