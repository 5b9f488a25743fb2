// Console tokens; see console_tokens.h. The signature covers a domain prefix
// ("corral-console-v1.") so that an HMAC made with this key for any other
// purpose can never pass for a console token. The payload is JSON and nothing
// else, parsed without exceptions and only after the signature matched.
#include "core/console_tokens.h"

#include <algorithm>

#include <ctime>
#include <limits>
#include <mutex>
#include <utility>

#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include "host/key_store.h"
#include "util/crypto.h"

namespace corral::core {

namespace {

constexpr size_t kKeyBytes = 32;
constexpr size_t kNonceBytes = 16;
constexpr size_t kMaxTokenChars = 4096;
constexpr int kVersion = 1;
constexpr int64_t kFutureSkewSeconds = 60;
constexpr std::string_view kSignPrefix = "corral-console-v1.";
constexpr std::chrono::seconds kMinTtl{10};
constexpr std::chrono::seconds kMaxTtl{std::chrono::hours(24)};

Error refused(std::string message) { return Error::unauthenticated(std::move(message)); }

Error malformed(std::string_view why) { return refused(fmt::format("malformed console token: {}", why)); }

// RFC 3339 UTC of unix seconds; any int64_t (a signed payload may still carry
// an absurd one), falling back to the number where gmtime cannot express it.
std::string unixRfc3339(int64_t secs) {
  const std::time_t t = static_cast<std::time_t>(secs);
  std::tm tm{};
  char buf[64];
  if (::gmtime_r(&t, &tm) == nullptr || std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
    return fmt::format("{} (unix time)", secs);
  return buf;
}

// The field as a signed 64-bit integer; nullopt when absent, not an integer, or
// beyond int64_t.
std::optional<int64_t> intField(const nlohmann::json& j, const char* name) {
  auto it = j.find(name);
  if (it == j.end() || !it->is_number_integer()) return std::nullopt;
  if (it->is_number_unsigned() && it->get<uint64_t>() > uint64_t(std::numeric_limits<int64_t>::max()))
    return std::nullopt;
  return it->get<int64_t>();
}

std::optional<std::string> stringField(const nlohmann::json& j, const char* name) {
  auto it = j.find(name);
  if (it == j.end() || !it->is_string()) return std::nullopt;
  return it->get<std::string>();
}

Error badField(const char* name, const char* type) {
  return malformed(fmt::format("field \"{}\" is missing or not {}", name, type));
}

}  // namespace

std::string_view consoleKindName(ConsoleKind k) {
  switch (k) {
    case ConsoleKind::Serial:
      return "serial";
    case ConsoleKind::Vnc:
      return "vnc";
  }
  return "serial";  // not reached: every kind is a case above
}

std::optional<ConsoleKind> parseConsoleKind(std::string_view s) {
  if (s == "serial") return ConsoleKind::Serial;
  if (s == "vnc") return ConsoleKind::Vnc;
  return std::nullopt;
}

ConsoleTokens::ConsoleTokens(ConsoleTokenOptions opts, std::string key)
    : keyFile_(std::move(opts.keyFile)), ttl_(opts.ttl), clock_(std::move(opts.clock)), key_(std::move(key)) {
  if (!clock_) clock_ = [] { return std::chrono::system_clock::now(); };
}

Result<std::unique_ptr<ConsoleTokens>> ConsoleTokens::open(ConsoleTokenOptions opts) {
  if (opts.keyFile.empty() || !opts.keyFile.is_absolute())
    return Error::invalidInput("console_token_key", opts.keyFile.string(), "must be an absolute path");
  if (opts.ttl < kMinTtl || opts.ttl > kMaxTtl)
    return Error::invalidInput("console_token_ttl", std::to_string(opts.ttl.count()),
                               fmt::format("{} seconds is out of range: must be between {} seconds and {} hours",
                                           opts.ttl.count(), kMinTtl.count(),
                                           std::chrono::duration_cast<std::chrono::hours>(kMaxTtl).count()));
  std::string key = CORRAL_TRY(host::loadOrCreateSecretKey(opts.keyFile, kKeyBytes, "console token key"));
  return std::unique_ptr<ConsoleTokens>(new ConsoleTokens(std::move(opts), std::move(key)));
}

int64_t ConsoleTokens::nowSeconds() const {
  return std::chrono::duration_cast<std::chrono::seconds>(clock_().time_since_epoch()).count();
}

std::string ConsoleTokens::sign(std::string_view payloadPart) const {
  std::string data(kSignPrefix);
  data.append(payloadPart);
  return util::hmacSha256(key_, data);
}

Result<ConsoleTokens::Minted> ConsoleTokens::mint(ConsoleTokenClaims claims) const {
  if (claims.vmUuid.empty()) return Error::invalidInput("vm", "", "a console token needs the VM's uuid");
  const std::string nonce = CORRAL_TRY(util::randomBytes(kNonceBytes));
  claims.issuedAt = nowSeconds();
  claims.expiresAt = claims.issuedAt + ttl_.count();
  claims.nonce = util::base64UrlEncode(nonce);

  // ordered_json keeps the documented field order (docs only; verify does not care).
  nlohmann::ordered_json p;
  p["v"] = kVersion;
  p["sub"] = claims.login;
  p["uid"] = claims.userId;
  p["via"] = claims.via;
  if (claims.apiTokenId) p["tok"] = *claims.apiTokenId;
  p["vm"] = claims.vmUuid;
  p["kind"] = std::string(consoleKindName(claims.kind));
  p["iat"] = claims.issuedAt;
  p["exp"] = claims.expiresAt;
  p["n"] = claims.nonce;
  // Invalid UTF-8 in a string is replaced rather than thrown on; logins and
  // uuids are ASCII by the allow-lists, so this only guards against a bug.
  std::string first = util::base64UrlEncode(p.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace));

  std::string mac;
  {
    std::shared_lock lock(mu_);
    mac = sign(first);
  }
  Minted out;
  out.token = std::move(first);
  out.token += '.';
  out.token += util::base64UrlEncode(mac);
  out.expiresAt = claims.expiresAt;
  if (out.token.size() > kMaxTokenChars)
    return Error::invalidInput("console_token", "",
                               fmt::format("the token would be {} characters, more than the {} a console accepts",
                                           out.token.size(), kMaxTokenChars));
  return out;
}

Result<ConsoleTokenClaims> ConsoleTokens::redeem(std::string_view token, ConsoleKind expected) {
  ConsoleTokenClaims claims = CORRAL_TRY(verify(token, expected));
  const int64_t now = nowSeconds();
  std::lock_guard lock(spentMu_);
  if (spent_.size() >= sweepAt_) {
    std::erase_if(spent_, [&](const auto& e) { return e.second <= now; });
    sweepAt_ = std::max<size_t>(1024, spent_.size() * 2);
  }
  if (!spent_.emplace(claims.nonce, claims.expiresAt).second)
    return Error::unauthenticated("console token already used: mint a new one for each console connection");
  return claims;
}

Result<ConsoleTokenClaims> ConsoleTokens::verify(std::string_view token, ConsoleKind expected) const {
  // 1. Length, before any work on it.
  if (token.empty()) return malformed("it is empty");
  if (token.size() > kMaxTokenChars)
    return malformed(fmt::format("it is {} characters long, more than {}", token.size(), kMaxTokenChars));

  // 2. Shape: exactly two non-empty base64url parts.
  const size_t dot = token.find('.');
  if (dot == std::string_view::npos || token.find('.', dot + 1) != std::string_view::npos)
    return malformed("expected two base64url parts separated by one '.'");
  const std::string_view first = token.substr(0, dot);
  const std::string_view second = token.substr(dot + 1);
  if (first.empty() || second.empty()) return malformed("a part is empty");
  auto payload = util::base64UrlDecode(first);
  auto mac = util::base64UrlDecode(second);
  if (!payload || !mac) return malformed("a part is not base64url");

  // 3. Signature, in constant time (a MAC of another length simply does not match).
  bool match = false;
  {
    std::shared_lock lock(mu_);
    match = util::constantTimeEquals(sign(first), *mac);
  }
  if (!match) return refused("console token signature does not match (forged, or the key was rotated)");

  // 4. Payload: JSON, every field of its type, version 1.
  const nlohmann::json j = nlohmann::json::parse(*payload, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) return malformed("the payload is not a JSON object");
  auto v = intField(j, "v");
  if (!v) return badField("v", "an integer");
  if (*v != kVersion)
    return refused(fmt::format("console token version {} is not supported (this server reads version {})", *v,
                               kVersion));
  ConsoleTokenClaims c;
  auto sub = stringField(j, "sub");
  if (!sub) return badField("sub", "a string");
  c.login = std::move(*sub);
  auto uid = intField(j, "uid");
  if (!uid) return badField("uid", "an integer");
  c.userId = *uid;
  auto via = stringField(j, "via");
  if (!via) return badField("via", "a string");
  c.via = std::move(*via);
  if (j.contains("tok")) {
    auto tok = intField(j, "tok");
    if (!tok) return malformed("field \"tok\" is not an integer");
    c.apiTokenId = *tok;
  }
  auto vm = stringField(j, "vm");
  if (!vm || vm->empty()) return badField("vm", "a non-empty string");
  c.vmUuid = std::move(*vm);
  auto kindName = stringField(j, "kind");
  if (!kindName) return badField("kind", "a string");
  auto kind = parseConsoleKind(*kindName);
  if (!kind) return malformed("field \"kind\" is neither \"serial\" nor \"vnc\"");
  c.kind = *kind;
  auto iat = intField(j, "iat");
  if (!iat) return badField("iat", "an integer");
  c.issuedAt = *iat;
  auto exp = intField(j, "exp");
  if (!exp) return badField("exp", "an integer");
  c.expiresAt = *exp;
  auto n = stringField(j, "n");
  if (!n) return badField("n", "a string");
  c.nonce = std::move(*n);

  // 5. Time.
  const int64_t now = nowSeconds();
  if (c.expiresAt <= now)
    return refused(fmt::format("console token expired at {}; ask for a new one", unixRfc3339(c.expiresAt)));
  if (c.issuedAt > now + kFutureSkewSeconds)
    return refused(fmt::format(
        "console token was issued at {}, later than this server's time {} (check the clocks of the hosts)",
        unixRfc3339(c.issuedAt), unixRfc3339(now)));

  // 6. Kind.
  if (c.kind != expected)
    return refused(fmt::format("console token is for the {} console, not {}", consoleKindName(c.kind),
                               consoleKindName(expected)));
  return c;
}

Result<void> ConsoleTokens::rotate() {
  // Held across the file write so that two rotations cannot leave the file and
  // the key in memory different; mint and verify wait for the short write.
  std::unique_lock lock(mu_);
  key_ = CORRAL_TRY(host::replaceSecretKey(keyFile_, kKeyBytes));
  spdlog::info("rotated the console token key at {}: every console token minted before is refused",
               keyFile_.string());
  return ok();
}

}  // namespace corral::core
