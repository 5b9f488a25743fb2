// OpenSSH public keys as users paste them ("ssh-ed25519 AAAA... alice@laptop"):
// parses and validates one line before it is stored and, later, written into a
// guest's authorized_keys through the cloud-init seed. The line is refused
// unless it is exactly type, base64 blob and an optional comment: no
// authorized_keys options ("from=", "command="), no newline, printable ASCII.
// The blob is decoded and walked in the SSH wire format (RFC 4253 §6.6, RFC
// 5656, PROTOCOL.u2f), so that a key of one type cannot pose as another, an
// ECDSA point lies on its curve and an RSA key has at least 2048 bits.
//
// What it leaves to others: which user owns a key and how many (core/identity),
// storage (store/). Pure and thread-safe.
#pragma once

#include <string>
#include <string_view>

#include "util/result.h"

namespace corral::util {

struct SshPublicKey {
  std::string type;         // "ssh-ed25519", "ssh-rsa", ...
  std::string blob;         // standard base64 with padding, re-encoded canonically
  std::string comment;      // "" when none
  std::string fingerprint;  // "SHA256:<base64 without padding>", as `ssh-keygen -l` prints it

  // "type blob[ comment]": the canonical line, what is stored and handed to guests.
  std::string line() const;
};

inline constexpr size_t kMaxSshKeyLine = 16 * 1024;
inline constexpr size_t kMaxSshKeyComment = 200;
inline constexpr unsigned kMinRsaBits = 2048;

// Parses one line. Leading and trailing blanks (space, tab) are ignored, and
// blanks separate the fields. Errors: InvalidInput with field "key", the start
// of the line as value and a reason for the person who pasted it.
Result<SshPublicKey> parseSshPublicKey(std::string_view line);

}  // namespace corral::util
