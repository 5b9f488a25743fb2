// Small cryptographic helpers over OpenSSL's libcrypto: random bytes, SHA-256,
// HMAC-SHA-256, base64url and a constant-time comparison. They exist so that
// secrets (API tokens, session cookies, CSRF tokens, signed console tickets) are
// made and compared one way everywhere. Hashing passwords is util/password.h's.
//
// Every function is thread-safe (libcrypto 3 needs no locking setup).
#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>

#include "util/result.h"

namespace corral::util {

// n bytes from the OpenSSL CSPRNG. Internal when the generator refuses (it is not
// seeded), which callers must treat as fatal for the secret they were making.
Result<std::string> randomBytes(size_t n);

// Lowercase hex SHA-256 of data (64 characters).
std::string sha256Hex(std::string_view data);

// The raw 32-byte HMAC-SHA-256 of data under key.
std::string hmacSha256(std::string_view key, std::string_view data);

// base64url (RFC 4648 §5) without '=' padding.
std::string base64UrlEncode(std::string_view bytes);

// The inverse of base64UrlEncode. nullopt for any character outside the
// alphabet, padding, an impossible length, or non-zero unused trailing bits (so
// that every byte string has exactly one accepted encoding).
std::optional<std::string> base64UrlDecode(std::string_view text);

// a == b in time that depends only on the lengths (CRYPTO_memcmp), for comparing
// a secret the caller sent with the one expected.
bool constantTimeEquals(std::string_view a, std::string_view b);

}  // namespace corral::util
