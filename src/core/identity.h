// Who a caller is and what they may do with users, groups, memberships and API
// tokens (docs/control-plane.md, Identity): turns credentials (a unix peer uid,
// a Bearer token, a session cookie, a login vouched for by a client certificate
// or a trusted proxy) into a Principal, runs password login with its rate
// limits, and applies the access rules to every identity action.
//
// Refusals follow one rule: a thing the caller may not see is NotFound, as if
// it did not exist; an admin-only action on a thing the caller does see (their
// own user, a group they belong to) is Forbidden. Store errors pass through.
//
// Parsing HTTP (headers, cookies, JSON) is api/'s; this class sees values.
// Thread-safe: any handler thread may call any method. The store must outlive it.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include <sys/types.h>

#include "core/principal.h"
#include "core/rate_limit.h"
#include "store/store.h"
#include "util/password.h"
#include "util/result.h"

namespace corral::core {

using WallClock = std::function<std::chrono::system_clock::time_point()>;

// A local account of this host, as the unix-socket peer's uid names it.
struct LocalAccount {
  std::string login;
  uid_t uid = 0;
  std::string shell;
};
// The host's account database (getpwuid_r): nullopt when the uid has none.
std::optional<LocalAccount> lookupLocalAccount(uid_t uid);
// Whether an account is a system one (uid below 1000, Debian's UID_MIN;
// nobody; a nologin or false shell): a daemon's, never a person's, so never a
// corral user through the unix socket (dnsmasq runs as one).
bool isSystemAccount(const LocalAccount& a);

struct IdentityOptions {
  std::chrono::seconds sessionLifetime{std::chrono::hours(12)};
  // How long a verified token is trusted without asking the store again; the
  // bound on how late a revocation made by another daemon takes effect.
  std::chrono::seconds tokenCacheTtl{5};
  // Login throttles (docs/control-plane.md): failures per login from one
  // address (IPv6: one /64), and per address, within failureWindow; and per
  // login from anywhere an exponential backoff (1 s doubling after
  // accountBackoffFree failures, capped at accountBackoffCap), so that no one
  // locks an account out for everyone. accountFailures also bounds wrong
  // current passwords of a password change.
  size_t accountFailures = 5;
  size_t addressFailures = 20;
  std::chrono::seconds failureWindow{std::chrono::minutes(5)};
  size_t accountBackoffFree = 20;
  std::chrono::seconds accountBackoffCap{30};
  util::PasswordCost passwordCost;  // for new hashes; old ones keep theirs
  // The host's accounts for unix-socket peers; tests may replace it (null: lookupLocalAccount).
  std::function<std::optional<LocalAccount>(uid_t)> localAccount;
  SteadyClock steadyClock;  // rate limits and the token cache; default steady_clock
  WallClock wallClock;      // expiry of tokens and sessions; default system_clock
};

struct LoginResult {
  std::string sessionCookie;  // the cookie value; the store keeps only its SHA-256
  std::string csrfToken;
  int64_t maxAgeSeconds = 0;
  store::UserRecord user;
  Principal principal;
};

struct NewUser {
  std::string login;
  std::string displayName;
  std::string email;
  std::string password;  // "" = no password login (tokens, unix socket only)
  bool admin = false;
};

// Fields to change; nullopt leaves one as it is.
struct UserPatch {
  std::optional<std::string> displayName;
  std::optional<std::string> email;
  std::optional<bool> admin;
};

struct NewGroup {
  std::string name;
  std::string description;
};

struct NewToken {
  std::string user;     // "" = the caller
  std::string name;     // a label
  std::string expires;  // "" = never; RFC 3339 time, or a number of days ("30" or "30d")
};

struct CreatedToken {
  store::TokenRecord record;
  std::string secret;  // "crl_<base64url of 32 bytes>"; shown once, never stored
};

// Which tokens to list: the caller's own (both empty), one user's, or everyone's.
struct TokenFilter {
  std::string user;
  bool all = false;
};

class Identity {
 public:
  explicit Identity(store::Store& store, IdentityOptions opts = {});

  // --- Principals. Failures are Unauthenticated with a message for the caller.
  // uid 0 is admin "root" (no row needed); another uid is the user whose login
  // is that uid's local account name.
  Result<Principal> fromUnixPeer(uid_t uid);
  // secret as sent after "Bearer ". Verified tokens are cached for at most
  // tokenCacheTtl; revokeToken drops the entry at once.
  Result<Principal> fromToken(const std::string& secret);
  // The __Host-corral_session cookie's value; the principal carries the session's CSRF token.
  Result<Principal> fromSession(const std::string& cookie);
  // A login vouched for by a trusted reverse proxy (via "proxy").
  Result<Principal> fromLogin(const std::string& login, const std::string& via = "proxy");
  // A verified client certificate's email: the one user with that email (via "cert").
  Result<Principal> fromCertEmail(const std::string& email);

  // --- Console tokens (console_tokens.h) name who minted them; when one is
  // redeemed that identity must still hold. userIdOf: the row id of p's user, 0
  // for root over the unix socket (no row). confirm: the principal (via
  // "console-token") when the user still exists with that id (not deleted, not
  // re-created under the same login) and the API token it was minted with, if
  // any, is neither revoked nor expired; Unauthenticated saying which failed.
  Result<int64_t> userIdOf(const Principal& p);
  Result<Principal> confirm(const std::string& login, int64_t userId, std::optional<int64_t> apiTokenId);

  // --- Sessions. address keys the per-address limit ("" counts as one address).
  // RateLimited (with retryAfterSeconds) before any password is checked when
  // the account or the address had too many failures; Unauthenticated with one
  // message whether the login is unknown, has no password or the password is wrong.
  Result<LoginResult> login(const std::string& login, const std::string& password, const std::string& address);
  // Ends the session of that cookie; an unknown one is fine.
  Result<void> logout(const std::string& cookie);

  // --- Users.
  Result<store::UserRecord> createUser(const Principal& caller, const NewUser& u);
  Result<std::vector<store::UserRecord>> listUsers(const Principal& caller);
  Result<store::UserRecord> getUser(const Principal& caller, const std::string& login);
  // expectedVersion 0 skips the check; a stale one is VersionMismatch.
  Result<store::UserRecord> updateUser(const Principal& caller, const std::string& login, const UserPatch& patch,
                                       int64_t expectedVersion);
  // A non-admin changes only their own password and must give the current one
  // (wrong: Forbidden, field current_password, counted like a failed login).
  // Ends every session of the user.
  Result<void> setPassword(const Principal& caller, const std::string& login, const std::string& password,
                           const std::string& currentPassword);
  Result<void> deleteUser(const Principal& caller, const std::string& login);

  // --- Groups and memberships.
  Result<store::GroupRecord> createGroup(const Principal& caller, const NewGroup& g);
  Result<std::vector<store::GroupRecord>> listGroups(const Principal& caller);
  Result<store::GroupRecord> getGroup(const Principal& caller, const std::string& name);
  Result<void> deleteGroup(const Principal& caller, const std::string& name);
  Result<void> addMember(const Principal& caller, const std::string& group, const std::string& login);
  Result<void> removeMember(const Principal& caller, const std::string& group, const std::string& login);

  // --- API tokens.
  Result<CreatedToken> createToken(const Principal& caller, const NewToken& t);
  Result<std::vector<store::TokenRecord>> listTokens(const Principal& caller, const TokenFilter& filter);
  // Revoking a revoked token is fine.
  Result<void> revokeToken(const Principal& caller, int64_t id);

  // --- SSH public keys (util/ssh_key.h), handed to VMs through their cloud-init
  // seed. A user manages their own, an admin anyone's; another user's are
  // NotFound, as if the user did not exist. addSshKey: line is one OpenSSH public
  // key line (stored canonically, InvalidInput field "key" when refused); name
  // "" takes the key's comment (cut to 64 characters); AlreadyExists (field
  // "key") when the user has that key already. removeSshKey: NotFound when the
  // user has no key with that id.
  Result<store::SshKeyRecord> addSshKey(const Principal& who, const std::string& login, const std::string& line,
                                        const std::string& name);
  Result<std::vector<store::SshKeyRecord>> sshKeys(const Principal& who, const std::string& login);
  Result<void> removeSshKey(const Principal& who, const std::string& login, int64_t id);
  // For core/ itself (no caller to check): the key lines to authorize in a VM
  // of that owner. ownerKind "user": the user's keys ("root" and a user without
  // keys have none); "group": the keys of every member, in member order, each
  // key (by fingerprint) once. NotFound for an unknown group; InvalidInput for
  // another ownerKind.
  Result<std::vector<std::string>> authorizedKeysFor(const std::string& ownerKind, const std::string& owner);

 private:
  struct CachedToken {
    Principal principal;
    std::string expiresAt;
    std::chrono::steady_clock::time_point verifiedAt;
  };

  std::string nowRfc3339() const;
  bool expired(const std::string& expiresAt) const;
  Result<Principal> principalOf(const store::UserRecord& user, const std::string& via);
  Result<store::UserRecord> visibleUser(const Principal& caller, const std::string& login);
  Result<store::GroupRecord> visibleGroup(const Principal& caller, const std::string& name);
  Result<std::string> parseExpiry(const std::string& expires) const;
  void burnDummyVerify(const std::string& password);
  void dropTokenCache();

  store::Store& store_;
  IdentityOptions opts_;
  RateLimiter pairLimiter_;      // login + address key
  RateLimiter addressLimiter_;   // address key
  Backoff accountBackoff_;       // login, from anywhere
  RateLimiter passwordLimiter_;  // wrong current passwords, per login

  std::mutex mu_;
  std::unordered_map<std::string, CachedToken> tokenCache_;  // by secret hash
  uint64_t cacheGeneration_ = 0;  // bumped by every drop, so a lookup racing one caches nothing
  std::once_flag dummyOnce_;
  std::string dummyHash_;  // verified against when the login is unknown, for equal timing
};

// Formats t as RFC 3339 in UTC with seconds ("2026-11-23T10:00:00Z").
std::string formatRfc3339(std::chrono::system_clock::time_point t);
// Parses "YYYY-MM-DDTHH:MM:SS[.frac](Z|±HH:MM)"; nullopt for anything else.
std::optional<std::chrono::system_clock::time_point> parseRfc3339(const std::string& text);

}  // namespace corral::core
