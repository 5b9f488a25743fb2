// Password hashing with argon2id (libargon2), stored as libargon2's encoded
// string ("$argon2id$v=19$m=65536,t=3,p=1$<salt>$<hash>"), so the parameters
// travel with each hash and can be raised later without breaking old ones.
// Verification is libargon2's, which compares in constant time.
//
// Hashing costs about m KiB of memory and t passes over it: with the defaults
// 64 MiB and a few hundred milliseconds per call, by design. Thread-safe.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "util/result.h"

namespace corral::util {

struct PasswordCost {
  uint32_t timeCost = 3;        // passes (t)
  uint32_t memoryKib = 65536;   // m, KiB
  uint32_t parallelism = 1;     // p
};

// The encoded argon2id hash of password with a fresh 16-byte random salt and a
// 32-byte hash. Internal when libargon2 or the random generator fails.
Result<std::string> hashPassword(std::string_view password, const PasswordCost& cost = {});

// true when password matches the encoded argon2id hash; false for a wrong
// password and for anything that is not a valid argon2id encoding (including "").
bool verifyPassword(std::string_view encoded, std::string_view password);

}  // namespace corral::util
