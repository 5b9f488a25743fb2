// Certificate fingerprints as `corral remote add` pins them: the SHA-256 of the
// certificate's DER encoding, written as 32 upper-case hex pairs joined by ':'
// (what `openssl x509 -fingerprint -sha256` prints after the '='). Users may
// paste one with or without colons, in either case, with an optional
// "sha256:" or "SHA256 Fingerprint=" prefix. Header-only for the unit tests.
#pragma once

#include <openssl/evp.h>
#include <openssl/x509.h>

#include <cctype>
#include <string>
#include <string_view>

#include <fmt/format.h>

#include "util/result.h"

namespace corral::cli {

inline std::string formatFingerprint(const unsigned char *digest, size_t n) {
  std::string out;
  for (size_t i = 0; i < n; ++i)
    out += fmt::format("{}{:02X}", i ? ":" : "", digest[i]);
  return out;
}

// The canonical form of a fingerprint the user gave; InvalidInput naming
// `option` when it is not 32 bytes of hex.
inline Result<std::string>
normalizeFingerprint(std::string_view text,
                     std::string_view option = "--fingerprint") {
  std::string_view s = text;
  for (std::string_view prefix :
       {"sha256 fingerprint=", "sha256:", "sha256="}) {
    if (s.size() >= prefix.size()) {
      bool match = true;
      for (size_t i = 0; i < prefix.size() && match; ++i)
        match = std::tolower(static_cast<unsigned char>(s[i])) == prefix[i];
      if (match) {
        s.remove_prefix(prefix.size());
        break;
      }
    }
  }
  std::string hex;
  for (char c : s) {
    if (c == ':' || c == ' ')
      continue;
    if (!std::isxdigit(static_cast<unsigned char>(c)))
      return Error::invalidInput(std::string(option), std::string(text),
                                 "is not a hex SHA-256 fingerprint");
    hex += char(std::toupper(static_cast<unsigned char>(c)));
  }
  if (hex.size() != 64)
    return Error::invalidInput(
        std::string(option), std::string(text),
        fmt::format("has {} hex digits; a SHA-256 fingerprint has 64",
                    hex.size()));
  std::string out;
  for (size_t i = 0; i < hex.size(); i += 2) {
    if (i)
      out += ':';
    out += hex.substr(i, 2);
  }
  return out;
}

// True when both name the same certificate. Fingerprints are public: no need
// for a constant-time comparison.
inline bool fingerprintsMatch(std::string_view a, std::string_view b) {
  auto na = normalizeFingerprint(a);
  auto nb = normalizeFingerprint(b);
  return na.ok() && nb.ok() && *na == *nb;
}

// SHA-256 of the certificate's DER; empty when OpenSSL cannot digest it.
inline std::string certificateFingerprint(X509 *cert) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int n = 0;
  if (cert == nullptr || X509_digest(cert, EVP_sha256(), md, &n) != 1)
    return {};
  return formatFingerprint(md, n);
}

} // namespace corral::cli
