// Signed, short-lived console tokens: the only credential a console WebSocket
// (serial or VNC) takes, so that a browser or the CLI can open one with a plain
// URL. A token is `<base64url(payload JSON)>.<base64url(HMAC-SHA256(key,
// "corral-console-v1." + first part))>` (no padding); the payload says who
// asked (login, user id, how they authenticated, the API token used), for
// which VM and console, when it was issued and when it expires, plus a random
// nonce. The key is a 32-byte file (0600, made on first use, host/key_store.h);
// rotating it refuses every token minted before.
//
// This class only mints and checks tokens. Whether the user still exists, may
// still see the VM, and whether the VM is the one in the URL are the caller's
// checks (api/), made on the claims verify() returns.
//
// Thread-safe: mint, verify and rotate may be called from any thread at once.
#pragma once

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <shared_mutex>
#include <string>
#include <string_view>
#include <unordered_map>

#include "util/result.h"

namespace corral::core {

enum class ConsoleKind { Serial, Vnc };

// "serial" | "vnc".
std::string_view consoleKindName(ConsoleKind k);
// The inverse of consoleKindName; nullopt for anything else (case matters).
std::optional<ConsoleKind> parseConsoleKind(std::string_view s);

struct ConsoleTokenClaims {
  std::string login;                   // "sub"
  int64_t userId = 0;                  // "uid": 0 for root over the unix socket
  std::string via;                     // "via": how the minting request authenticated (Principal::via)
  std::optional<int64_t> apiTokenId;   // "tok": only when minted with an API token
  std::string vmUuid;                  // "vm"
  ConsoleKind kind = ConsoleKind::Serial;
  int64_t issuedAt = 0;                // "iat", unix seconds
  int64_t expiresAt = 0;               // "exp", unix seconds
  std::string nonce;                   // "n": base64url of 16 random bytes
};

struct ConsoleTokenOptions {
  std::filesystem::path keyFile;  // absolute; 32 random bytes, 0600, made when absent
  std::chrono::seconds ttl{300};  // 10 s .. 24 h (InvalidInput "console_token_ttl" otherwise)
  std::function<std::chrono::system_clock::time_point()> clock;  // null = system_clock::now
};

class ConsoleTokens {
 public:
  // Loads (or makes) the key file. InvalidInput for a relative key file
  // ("console_token_key") or a ttl out of range; FailedPrecondition for a key
  // file of the wrong size or one that group or others may read.
  static Result<std::unique_ptr<ConsoleTokens>> open(ConsoleTokenOptions opts);

  ConsoleTokens(const ConsoleTokens&) = delete;
  ConsoleTokens& operator=(const ConsoleTokens&) = delete;

  struct Minted {
    std::string token;
    int64_t expiresAt = 0;  // unix seconds
  };
  // Fills issuedAt (now), expiresAt (now + ttl) and nonce; the caller's values
  // for those are ignored. InvalidInput when vmUuid is empty.
  Result<Minted> mint(ConsoleTokenClaims claims) const;

  // Checks, in this order: length (<= 4096), shape (two base64url parts),
  // signature, payload (JSON, every field of the right type, v == 1), expiry
  // (exp <= now is expired; iat more than 60 s ahead of now is refused), kind
  // == expected. Every refusal is Unauthenticated with a message naming the
  // check. The payload is parsed only once the signature matched.
  Result<ConsoleTokenClaims> verify(std::string_view token, ConsoleKind expected) const;

  // verify(), and the token is spent: its nonce is remembered until it expires,
  // and a second redeem is Unauthenticated ("already used"). A token copied from
  // a log, a proxy or a browser history opens nothing. What a console route uses.
  Result<ConsoleTokenClaims> redeem(std::string_view token, ConsoleKind expected);

  // Writes a new key (host::replaceSecretKey) and uses it: every token minted
  // before is refused afterwards. On failure the old key stays in use.
  Result<void> rotate();

  std::chrono::seconds ttl() const { return ttl_; }

 private:
  ConsoleTokens(ConsoleTokenOptions opts, std::string key);
  int64_t nowSeconds() const;
  std::string sign(std::string_view payloadPart) const;  // caller holds mu_ (shared or unique)

  std::filesystem::path keyFile_;
  std::chrono::seconds ttl_;
  std::function<std::chrono::system_clock::time_point()> clock_;
  mutable std::shared_mutex mu_;  // guards key_: shared for mint/verify, unique for rotate
  std::string key_;               // 32 bytes; never logged, never in a message
  std::mutex spentMu_;            // guards spent_
  std::unordered_map<std::string, int64_t> spent_;  // redeemed nonces -> their expiry
  size_t sweepAt_ = 1024;
};

}  // namespace corral::core
