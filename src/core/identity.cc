// See identity.h.
#include "core/identity.h"

#include <pwd.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <ctime>

#include <fmt/format.h>

#include "util/crypto.h"
#include "util/names.h"
#include "util/ssh_key.h"

namespace corral::core {

namespace {

constexpr size_t kSecretBytes = 32;
constexpr std::string_view kTokenPrefix = "crl_";
constexpr size_t kMinPassword = 8;
constexpr size_t kMaxPasswordBytes = 1024;  // bounds what one login makes argon2 chew
constexpr size_t kMaxDisplayName = 100;
constexpr size_t kMaxTokenName = 64;
constexpr size_t kMaxSshKeyName = 64;
constexpr size_t kMaxGroupDescription = 200;
constexpr size_t kMaxTokenCache = 4096;
constexpr int64_t kMaxTokenDays = 3650;

// The one answer to a failed login, whatever failed, so that it does not tell
// which logins exist.
constexpr const char* kLoginFailed = "login or password is wrong";

// Decodes the UTF-8 sequence at s[i] and advances i past it; -1 when malformed
// (bad lead byte, truncated, overlong, surrogate or past U+10FFFF).
long nextCodePoint(std::string_view s, size_t& i) {
  auto c = static_cast<unsigned char>(s[i]);
  int extra = c < 0x80 ? 0 : (c >> 5) == 0x6 ? 1 : (c >> 4) == 0xe ? 2 : (c >> 3) == 0x1e ? 3 : -1;
  if (extra < 0 || i + static_cast<size_t>(extra) >= s.size()) return -1;
  long cp = extra == 0 ? c : extra == 1 ? (c & 0x1f) : extra == 2 ? (c & 0x0f) : (c & 0x07);
  for (int k = 1; k <= extra; ++k) {
    auto d = static_cast<unsigned char>(s[i + k]);
    if ((d & 0xc0) != 0x80) return -1;
    cp = (cp << 6) | (d & 0x3f);
  }
  static constexpr long kMin[] = {0, 0x80, 0x800, 0x10000};
  if (cp < kMin[extra] || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return -1;
  i += extra + 1;
  return cp;
}

// Free text shown to people (display names, labels): valid UTF-8, no control
// characters (they can rewrite a terminal), at most maxChars characters.
Result<void> validateText(std::string_view field, std::string_view text, size_t maxChars) {
  size_t count = 0;
  for (size_t i = 0; i < text.size();) {
    long cp = nextCodePoint(text, i);
    if (cp < 0) return Error::invalidInput(std::string(field), std::string(text), "must be valid UTF-8");
    if (cp < 0x20 || cp == 0x7f || (cp >= 0x80 && cp < 0xa0))
      return Error::invalidInput(std::string(field), std::string(text), "must not contain control characters");
    ++count;
  }
  if (count > maxChars)
    return Error::invalidInput(std::string(field), std::string(text), fmt::format("at most {} characters", maxChars));
  return ok();
}

size_t countChars(std::string_view s) {
  size_t n = 0;
  for (char c : s) n += (static_cast<unsigned char>(c) & 0xc0) != 0x80;
  return n;
}

// Never echo a password back in an error.
Result<void> validatePassword(std::string_view field, std::string_view pw) {
  if (countChars(pw) < kMinPassword)
    return Error::invalidInput(std::string(field), "", fmt::format("must be at least {} characters", kMinPassword));
  if (pw.size() > kMaxPasswordBytes)
    return Error::invalidInput(std::string(field), "", fmt::format("must be at most {} bytes", kMaxPasswordBytes));
  return ok();
}

Result<std::string> newSecret() {
  std::string raw = CORRAL_TRY(util::randomBytes(kSecretBytes));
  return util::base64UrlEncode(raw);
}

bool wellFormedSecret(std::string_view encoded) {
  auto raw = util::base64UrlDecode(encoded);
  return raw && raw->size() == kSecretBytes;
}

Error noUser(const std::string& login) { return Error::notFound(fmt::format("no user '{}'", login)); }
Error noGroup(const std::string& name) { return Error::notFound(fmt::format("no group '{}'", name)); }

}  // namespace

std::string formatRfc3339(std::chrono::system_clock::time_point t) {
  std::time_t secs = std::chrono::system_clock::to_time_t(t);
  std::tm tm{};
  gmtime_r(&secs, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

std::optional<std::chrono::system_clock::time_point> parseRfc3339(const std::string& text) {
  int y, mo, d, h, mi, s, used = 0;
  if (std::sscanf(text.c_str(), "%4d-%2d-%2d%*1[Tt]%2d:%2d:%2d%n", &y, &mo, &d, &h, &mi, &s, &used) != 6 ||
      used != 19)
    return std::nullopt;
  if (mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || s > 60 || y < 1970) return std::nullopt;
  size_t i = 19;
  if (i < text.size() && text[i] == '.') {
    ++i;
    size_t start = i;
    while (i < text.size() && text[i] >= '0' && text[i] <= '9') ++i;
    if (i == start) return std::nullopt;
  }
  long offset = 0;
  if (i < text.size() && (text[i] == 'Z' || text[i] == 'z')) {
    ++i;
  } else if (i + 6 == text.size() && (text[i] == '+' || text[i] == '-') && text[i + 3] == ':') {
    int oh = 0, om = 0;
    if (std::sscanf(text.c_str() + i + 1, "%2d:%2d", &oh, &om) != 2 || oh > 23 || om > 59) return std::nullopt;
    offset = (oh * 3600L + om * 60L) * (text[i] == '+' ? 1 : -1);
    i += 6;
  } else {
    return std::nullopt;
  }
  if (i != text.size()) return std::nullopt;
  std::tm tm{};
  tm.tm_year = y - 1900;
  tm.tm_mon = mo - 1;
  tm.tm_mday = d;
  tm.tm_hour = h;
  tm.tm_min = mi;
  tm.tm_sec = s;
  std::time_t t = timegm(&tm);
  if (tm.tm_mday != d) return std::nullopt;  // timegm normalised e.g. Feb 30
  return std::chrono::system_clock::from_time_t(t - offset);
}

std::optional<LocalAccount> lookupLocalAccount(uid_t uid) {
  long size = sysconf(_SC_GETPW_R_SIZE_MAX);
  std::vector<char> buf(size > 0 ? static_cast<size_t>(size) : 16384);
  struct passwd pw {};
  struct passwd* found = nullptr;
  int rc;
  while ((rc = getpwuid_r(uid, &pw, buf.data(), buf.size(), &found)) == ERANGE && buf.size() < (1u << 20))
    buf.resize(buf.size() * 2);
  if (rc != 0 || !found) return std::nullopt;
  return LocalAccount{found->pw_name, found->pw_uid, found->pw_shell ? found->pw_shell : ""};
}

bool isSystemAccount(const LocalAccount& a) {
  constexpr uid_t kFirstPersonUid = 1000;  // Debian's UID_MIN
  constexpr uid_t kNobody = 65534;
  auto endsWith = [&](std::string_view tail) {
    return a.shell.size() >= tail.size() && a.shell.compare(a.shell.size() - tail.size(), tail.size(), tail) == 0;
  };
  return a.uid < kFirstPersonUid || a.uid == kNobody || endsWith("/nologin") || endsWith("/false");
}

Identity::Identity(store::Store& store, IdentityOptions opts)
    : store_(store),
      opts_(std::move(opts)),
      pairLimiter_(opts_.accountFailures, opts_.failureWindow, opts_.steadyClock),
      addressLimiter_(opts_.addressFailures, opts_.failureWindow, opts_.steadyClock),
      accountBackoff_(opts_.accountBackoffFree, std::chrono::seconds(1), opts_.accountBackoffCap, opts_.failureWindow,
                      opts_.steadyClock),
      passwordLimiter_(opts_.accountFailures, opts_.failureWindow, opts_.steadyClock) {
  if (!opts_.steadyClock) opts_.steadyClock = [] { return std::chrono::steady_clock::now(); };
  if (!opts_.localAccount) opts_.localAccount = lookupLocalAccount;
  if (!opts_.wallClock) opts_.wallClock = [] { return std::chrono::system_clock::now(); };
}

std::string Identity::nowRfc3339() const { return formatRfc3339(opts_.wallClock()); }

bool Identity::expired(const std::string& expiresAt) const {
  if (expiresAt.empty()) return false;
  auto t = parseRfc3339(expiresAt);
  return !t || *t <= opts_.wallClock();  // an unreadable expiry fails closed
}

Result<Principal> Identity::principalOf(const store::UserRecord& user, const std::string& via) {
  Principal p;
  p.login = user.login;
  p.admin = user.admin;
  p.groups = CORRAL_TRY(store_.groupsOf(user.login));
  p.via = via;
  return p;
}

// ---------------------------------------------------------------- principals

Result<Principal> Identity::fromUnixPeer(uid_t uid) {
  if (uid == 0) {
    Principal p;
    p.login = "root";
    p.admin = true;
    p.via = "unix";
    return p;
  }
  if (uid == static_cast<uid_t>(-1)) return Error::unauthenticated("the unix peer's uid is unknown");
  auto account = opts_.localAccount(uid);
  if (!account) return Error::unauthenticated(fmt::format("uid {} has no local account", uid));
  const std::string& login = account->login;
  if (isSystemAccount(*account))
    return Error::unauthenticated(
        fmt::format("local account '{}' (uid {}) is a system account: it cannot act through corral", login, uid));
  auto user = CORRAL_TRY(store_.findUser(login));
  if (!user) return Error::unauthenticated(fmt::format("no corral user for local account '{}' (uid {})", login, uid));
  return principalOf(*user, "unix");
}

Result<Principal> Identity::fromToken(const std::string& secret) {
  if (!secret.starts_with(kTokenPrefix) || !wellFormedSecret(std::string_view(secret).substr(kTokenPrefix.size())))
    return Error::unauthenticated("malformed API token (expected crl_...)");
  std::string hash = util::sha256Hex(secret);
  auto now = opts_.steadyClock();
  uint64_t generation;
  {
    std::lock_guard lock(mu_);
    generation = cacheGeneration_;
    if (auto it = tokenCache_.find(hash); it != tokenCache_.end()) {
      if (now - it->second.verifiedAt < opts_.tokenCacheTtl && !expired(it->second.expiresAt))
        return it->second.principal;
      tokenCache_.erase(it);
    }
  }
  auto rec = CORRAL_TRY(store_.findTokenByHash(hash));
  if (!rec) return Error::unauthenticated("unknown API token");
  if (!rec->revokedAt.empty()) return Error::unauthenticated("this API token was revoked");
  if (expired(rec->expiresAt)) return Error::unauthenticated("this API token has expired");
  auto user = CORRAL_TRY(store_.findUser(rec->login));
  if (!user) return Error::unauthenticated("this API token's user no longer exists");
  Principal p = CORRAL_TRY(principalOf(*user, "token"));
  p.tokenId = rec->id;
  {
    std::lock_guard lock(mu_);
    // A revocation (or a change to users) while we read the store must not be
    // undone by caching what we read before it.
    if (generation == cacheGeneration_) {
      if (tokenCache_.size() >= kMaxTokenCache) tokenCache_.clear();
      tokenCache_[hash] = CachedToken{p, rec->expiresAt, now};
    }
  }
  return p;
}

Result<Principal> Identity::fromSession(const std::string& cookie) {
  const char* gone = "your session has expired or ended; log in again";
  if (!wellFormedSecret(cookie)) return Error::unauthenticated(gone);
  std::string hash = util::sha256Hex(cookie);
  auto session = CORRAL_TRY(store_.findSession(hash));
  if (!session) return Error::unauthenticated(gone);
  if (expired(session->expiresAt)) {
    CORRAL_TRY(store_.deleteSession(hash));
    return Error::unauthenticated(gone);
  }
  auto user = CORRAL_TRY(store_.findUser(session->login));
  if (!user) return Error::unauthenticated(gone);
  Principal p = CORRAL_TRY(principalOf(*user, "session"));
  p.csrfToken = session->csrfToken;
  return p;
}

Result<Principal> Identity::fromLogin(const std::string& login, const std::string& via) {
  if (!util::validateLogin("login", login).ok())
    return Error::unauthenticated(fmt::format("'{}' is not a valid login", login));
  auto user = CORRAL_TRY(store_.findUser(login));
  if (!user) return Error::unauthenticated(fmt::format("no corral user '{}'", login));
  return principalOf(*user, via);
}

Result<int64_t> Identity::userIdOf(const Principal& p) {
  if (p.via == "unix" && p.login == "root") return int64_t{0};
  auto user = CORRAL_TRY(store_.findUser(p.login));
  if (!user) return Error::unauthenticated(fmt::format("no corral user '{}'", p.login));
  return user->id;
}

Result<Principal> Identity::confirm(const std::string& login, int64_t userId, std::optional<int64_t> apiTokenId) {
  Principal p;
  if (userId == 0 && login == "root") {
    p.login = "root";
    p.admin = true;
  } else {
    if (!util::validateLogin("login", login).ok())
      return Error::unauthenticated(fmt::format("'{}' is not a valid login", login));
    auto user = CORRAL_TRY(store_.findUser(login));
    if (!user || user->id != userId)
      return Error::unauthenticated(fmt::format("user '{}' no longer exists", login));
    p = CORRAL_TRY(principalOf(*user, "console-token"));
  }
  p.via = "console-token";
  if (apiTokenId) {
    auto tok = CORRAL_TRY(store_.findToken(*apiTokenId));
    if (!tok || !tok->revokedAt.empty())
      return Error::unauthenticated("the API token this was minted with has been revoked");
    if (expired(tok->expiresAt)) return Error::unauthenticated("the API token this was minted with has expired");
  }
  return p;
}

Result<Principal> Identity::fromCertEmail(const std::string& email) {
  // No index on email: this path is off by default and serves few users.
  auto users = CORRAL_TRY(store_.listUsers());
  const store::UserRecord* match = nullptr;
  for (const auto& u : users) {
    if (!u.email.empty() && u.email == email) {
      if (match) return Error::unauthenticated(fmt::format("more than one user has the email {}", email));
      match = &u;
    }
  }
  if (!match) return Error::unauthenticated(fmt::format("no corral user has the certificate's email {}", email));
  return principalOf(*match, "cert");
}

// ---------------------------------------------------------------- sessions

void Identity::burnDummyVerify(const std::string& password) {
  std::call_once(dummyOnce_, [this] {
    auto h = util::hashPassword("corral-dummy-password", opts_.passwordCost);
    if (h.ok()) dummyHash_ = *h;
  });
  (void)util::verifyPassword(dummyHash_, password);
}

Result<LoginResult> Identity::login(const std::string& login, const std::string& password,
                                    const std::string& address) {
  // Keys are bounded so that a flood of huge logins cannot bloat the limiter.
  // The throttles come before any argon2 work, also for unknown logins.
  const std::string accountKey = login.substr(0, 64);
  const std::string addressKey = addressThrottleKey(address).substr(0, 64);
  const std::string pairKey = accountKey + "|" + addressKey;
  int wait = std::max({pairLimiter_.retryAfterSeconds(pairKey), addressLimiter_.retryAfterSeconds(addressKey),
                       accountBackoff_.retryAfterSeconds(accountKey)});
  if (wait > 0)
    return Error::rateLimited(fmt::format("too many failed logins; try again in {} seconds", wait), wait);

  std::optional<store::UserRecord> user;
  if (util::validateLogin("login", login).ok() && password.size() <= kMaxPasswordBytes)
    user = CORRAL_TRY(store_.findUser(login));
  bool good = false;
  if (user && !user->passwordHash.empty()) {
    good = util::verifyPassword(user->passwordHash, password);
  } else {
    burnDummyVerify(password);  // the same time for an unknown login as for a wrong password
  }
  if (!good) {
    pairLimiter_.recordFailure(pairKey);
    addressLimiter_.recordFailure(addressKey);
    accountBackoff_.recordFailure(accountKey);
    return Error::unauthenticated(kLoginFailed);
  }
  pairLimiter_.reset(pairKey);
  accountBackoff_.reset(accountKey);

  LoginResult r;
  r.sessionCookie = CORRAL_TRY(newSecret());
  r.csrfToken = CORRAL_TRY(newSecret());
  r.maxAgeSeconds = opts_.sessionLifetime.count();
  auto now = opts_.wallClock();
  store::SessionRecord s;
  s.idHash = util::sha256Hex(r.sessionCookie);
  s.login = user->login;
  s.csrfToken = r.csrfToken;
  s.createdAt = formatRfc3339(now);
  s.expiresAt = formatRfc3339(now + opts_.sessionLifetime);
  // Sessions that ran out are dropped here, the one place that makes new ones.
  CORRAL_TRY(store_.deleteExpiredSessions(s.createdAt));
  CORRAL_TRY(store_.insertSession(s));
  r.user = *user;
  r.principal = CORRAL_TRY(principalOf(*user, "session"));
  r.principal.csrfToken = r.csrfToken;
  return r;
}

Result<void> Identity::logout(const std::string& cookie) {
  if (!wellFormedSecret(cookie)) return ok();
  auto r = store_.deleteSession(util::sha256Hex(cookie));
  if (!r.ok() && r.error().code != ErrorCode::NotFound) return r;
  return ok();
}

// ---------------------------------------------------------------- users

Result<store::UserRecord> Identity::visibleUser(const Principal& caller, const std::string& login) {
  if (!caller.admin && login != caller.login) return noUser(login);
  auto user = CORRAL_TRY(store_.findUser(login));
  if (!user) return noUser(login);
  return *user;
}

Result<store::UserRecord> Identity::createUser(const Principal& caller, const NewUser& u) {
  if (!caller.admin) return Error::forbidden("only an admin may create users");
  CORRAL_TRY(util::validateLogin("login", u.login));
  if (u.login == "root")
    return Error::invalidInput("login", u.login, "is the host's administrator, admin through the unix socket already");
  if (!u.email.empty()) CORRAL_TRY(util::validateEmail("email", u.email));
  CORRAL_TRY(validateText("display_name", u.displayName, kMaxDisplayName));
  if (!u.password.empty()) CORRAL_TRY(validatePassword("password", u.password));
  // Users and groups share one namespace (a VM owner is one unambiguous name).
  if (CORRAL_TRY(store_.findGroup(u.login)))
    return Error::alreadyExists("login", u.login, fmt::format("'{}' is already the name of a group", u.login));
  store::UserRecord rec;
  rec.login = u.login;
  rec.displayName = u.displayName;
  rec.email = u.email;
  rec.admin = u.admin;
  rec.createdAt = nowRfc3339();
  if (!u.password.empty()) rec.passwordHash = CORRAL_TRY(util::hashPassword(u.password, opts_.passwordCost));
  return store_.insertUser(rec);
}

Result<std::vector<store::UserRecord>> Identity::listUsers(const Principal& caller) {
  if (caller.admin) return store_.listUsers();
  std::vector<store::UserRecord> out;
  if (auto self = CORRAL_TRY(store_.findUser(caller.login))) out.push_back(std::move(*self));
  return out;
}

Result<store::UserRecord> Identity::getUser(const Principal& caller, const std::string& login) {
  return visibleUser(caller, login);
}

Result<store::UserRecord> Identity::updateUser(const Principal& caller, const std::string& login,
                                               const UserPatch& patch, int64_t expectedVersion) {
  store::UserRecord user = CORRAL_TRY(visibleUser(caller, login));
  bool adminChanges = patch.admin && *patch.admin != user.admin;
  if (adminChanges && !caller.admin) {
    Error e = Error::forbidden("only an admin may change who is an admin");
    e.field = "admin";
    e.value = *patch.admin ? "true" : "false";
    return e;
  }
  if (patch.displayName) {
    CORRAL_TRY(validateText("display_name", *patch.displayName, kMaxDisplayName));
    user.displayName = *patch.displayName;
  }
  if (patch.email) {
    if (!patch.email->empty()) CORRAL_TRY(util::validateEmail("email", *patch.email));
    user.email = *patch.email;
  }
  if (patch.admin) user.admin = *patch.admin;
  auto updated = CORRAL_TRY(store_.updateUser(user, expectedVersion));
  if (adminChanges) dropTokenCache();  // cached principals carry the admin flag
  return updated;
}

Result<void> Identity::setPassword(const Principal& caller, const std::string& login, const std::string& password,
                                   const std::string& currentPassword) {
  store::UserRecord user = CORRAL_TRY(visibleUser(caller, login));
  CORRAL_TRY(validatePassword("password", password));
  if (!caller.admin) {
    // A stolen session or token must not be enough to take the account over,
    // nor to guess the password here without the login rate limit.
    if (currentPassword.empty()) return Error::invalidInput("current_password", "", "is required");
    std::string key = login.substr(0, 64);
    if (int wait = passwordLimiter_.retryAfterSeconds(key); wait > 0)
      return Error::rateLimited(fmt::format("too many wrong passwords; try again in {} seconds", wait), wait);
    if (user.passwordHash.empty() || !util::verifyPassword(user.passwordHash, currentPassword)) {
      passwordLimiter_.recordFailure(key);
      Error e = Error::forbidden("current_password: wrong password");
      e.field = "current_password";
      return e;
    }
  }
  user.passwordHash = CORRAL_TRY(util::hashPassword(password, opts_.passwordCost));
  CORRAL_TRY(store_.updateUser(user, 0));
  // Whoever held a session with the old password holds nothing now.
  return store_.deleteSessionsOf(login);
}

Result<void> Identity::deleteUser(const Principal& caller, const std::string& login) {
  CORRAL_TRY(visibleUser(caller, login));
  if (!caller.admin) return Error::forbidden("only an admin may delete users");
  if (login == caller.login) return Error::failedPrecondition("you cannot delete your own user");
  CORRAL_TRY(store_.deleteUser(login));
  dropTokenCache();
  return ok();
}

// ---------------------------------------------------------------- groups

Result<store::GroupRecord> Identity::visibleGroup(const Principal& caller, const std::string& name) {
  auto group = CORRAL_TRY(store_.findGroup(name));
  if (!group) return noGroup(name);
  if (!caller.admin && std::find(group->members.begin(), group->members.end(), caller.login) == group->members.end())
    return noGroup(name);
  return *group;
}

Result<store::GroupRecord> Identity::createGroup(const Principal& caller, const NewGroup& g) {
  if (!caller.admin) return Error::forbidden("only an admin may create groups");
  CORRAL_TRY(util::validateLogin("name", g.name));
  CORRAL_TRY(validateText("description", g.description, kMaxGroupDescription));
  if (CORRAL_TRY(store_.findUser(g.name)))
    return Error::alreadyExists("name", g.name, fmt::format("'{}' is already a user's login", g.name));
  store::GroupRecord rec;
  rec.name = g.name;
  rec.description = g.description;
  rec.createdAt = nowRfc3339();
  return store_.insertGroup(rec);
}

Result<std::vector<store::GroupRecord>> Identity::listGroups(const Principal& caller) {
  auto groups = CORRAL_TRY(store_.listGroups());
  if (caller.admin) return groups;
  std::vector<store::GroupRecord> mine;
  for (auto& g : groups)
    if (std::find(g.members.begin(), g.members.end(), caller.login) != g.members.end()) mine.push_back(std::move(g));
  return mine;
}

Result<store::GroupRecord> Identity::getGroup(const Principal& caller, const std::string& name) {
  return visibleGroup(caller, name);
}

Result<void> Identity::deleteGroup(const Principal& caller, const std::string& name) {
  CORRAL_TRY(visibleGroup(caller, name));
  if (!caller.admin) return Error::forbidden("only an admin may delete groups");
  CORRAL_TRY(store_.deleteGroup(name));
  dropTokenCache();
  return ok();
}

Result<void> Identity::addMember(const Principal& caller, const std::string& group, const std::string& login) {
  CORRAL_TRY(visibleGroup(caller, group));
  if (!caller.admin) return Error::forbidden("only an admin may change a group's members");
  CORRAL_TRY(util::validateLogin("login", login));
  CORRAL_TRY(store_.addMember(group, login));
  dropTokenCache();  // cached principals carry their groups
  return ok();
}

Result<void> Identity::removeMember(const Principal& caller, const std::string& group, const std::string& login) {
  CORRAL_TRY(visibleGroup(caller, group));
  if (!caller.admin) return Error::forbidden("only an admin may change a group's members");
  CORRAL_TRY(util::validateLogin("login", login));
  CORRAL_TRY(store_.removeMember(group, login));
  dropTokenCache();
  return ok();
}

// ---------------------------------------------------------------- tokens

Result<std::string> Identity::parseExpiry(const std::string& expires) const {
  if (expires.empty()) return std::string();
  auto now = opts_.wallClock();
  std::string digits = expires;
  if (digits.ends_with('d')) digits.pop_back();
  if (!digits.empty() && digits.size() <= 6 && std::all_of(digits.begin(), digits.end(), [](char c) {
        return c >= '0' && c <= '9';
      })) {
    int64_t days = std::stoll(digits);
    if (days < 1 || days > kMaxTokenDays)
      return Error::invalidInput("expires", expires, fmt::format("must be 1 to {} days", kMaxTokenDays));
    return formatRfc3339(now + std::chrono::hours(24 * days));
  }
  auto t = parseRfc3339(expires);
  if (!t) return Error::invalidInput("expires", expires, "must be an RFC 3339 time or a number of days");
  if (*t <= now) return Error::invalidInput("expires", expires, "must be in the future");
  if (*t > now + std::chrono::hours(24 * kMaxTokenDays))
    return Error::invalidInput("expires", expires, fmt::format("must be within {} days", kMaxTokenDays));
  return formatRfc3339(*t);
}

Result<CreatedToken> Identity::createToken(const Principal& caller, const NewToken& t) {
  std::string login = t.user.empty() ? caller.login : t.user;
  if (!caller.admin && login != caller.login) return noUser(login);
  if (!t.user.empty()) CORRAL_TRY(util::validateLogin("user", t.user));
  CORRAL_TRY(validateText("name", t.name, kMaxTokenName));
  std::string expiresAt = CORRAL_TRY(parseExpiry(t.expires));
  auto user = CORRAL_TRY(store_.findUser(login));
  // "root" over the unix socket has no row, and a token must belong to one:
  // say how to get one instead of only that the user is missing.
  if (!user && t.user.empty() && caller.via == "unix" && caller.admin)
    return Error::failedPrecondition(fmt::format(
        "{} on the unix socket is an administrator without a user account, and a token belongs to a user: make "
        "an admin user (`corral user add NAME --admin`) and create the token for it (`corral token create --user "
        "NAME`)",
        login));
  if (!user) return noUser(login);

  CreatedToken out;
  out.secret = std::string(kTokenPrefix) + CORRAL_TRY(newSecret());
  store::TokenRecord rec;
  rec.login = login;
  rec.name = t.name;
  rec.secretHash = util::sha256Hex(out.secret);
  rec.createdAt = nowRfc3339();
  rec.expiresAt = expiresAt;
  out.record = CORRAL_TRY(store_.insertToken(rec));
  return out;
}

Result<std::vector<store::TokenRecord>> Identity::listTokens(const Principal& caller, const TokenFilter& filter) {
  if (filter.all) {
    if (!caller.admin) return Error::forbidden("only an admin may list everyone's tokens");
    return store_.listTokens("");
  }
  std::string login = filter.user.empty() ? caller.login : filter.user;
  if (login != caller.login) CORRAL_TRY(visibleUser(caller, login));
  return store_.listTokens(login);
}

Result<void> Identity::revokeToken(const Principal& caller, int64_t id) {
  auto token = CORRAL_TRY(store_.findToken(id));
  if (!token || (!caller.admin && token->login != caller.login))
    return Error::notFound(fmt::format("no token {}", id));
  if (!token->revokedAt.empty())
    return Error::failedPrecondition(fmt::format("token {} was revoked already, at {}", id, token->revokedAt));
  CORRAL_TRY(store_.revokeToken(id, nowRfc3339()));
  std::lock_guard lock(mu_);
  ++cacheGeneration_;
  std::erase_if(tokenCache_, [id](const auto& kv) { return kv.second.principal.tokenId == id; });
  return ok();
}

// ---------------------------------------------------------------- SSH keys

Result<store::SshKeyRecord> Identity::addSshKey(const Principal& who, const std::string& login,
                                                const std::string& line, const std::string& name) {
  CORRAL_TRY(visibleUser(who, login));
  util::SshPublicKey key = CORRAL_TRY(util::parseSshPublicKey(line));
  // The comment is printable ASCII (parseSshPublicKey), so cutting bytes cuts characters.
  std::string label = name.empty() ? key.comment.substr(0, kMaxSshKeyName) : name;
  CORRAL_TRY(validateText("name", label, kMaxSshKeyName));
  store::SshKeyRecord rec;
  rec.login = login;
  rec.name = label;
  rec.key = key.line();
  rec.fingerprint = key.fingerprint;
  rec.createdAt = nowRfc3339();
  return store_.insertSshKey(rec);
}

Result<std::vector<store::SshKeyRecord>> Identity::sshKeys(const Principal& who, const std::string& login) {
  CORRAL_TRY(visibleUser(who, login));
  return store_.listSshKeys(login);
}

Result<void> Identity::removeSshKey(const Principal& who, const std::string& login, int64_t id) {
  CORRAL_TRY(visibleUser(who, login));
  return store_.deleteSshKey(login, id);
}

Result<std::vector<std::string>> Identity::authorizedKeysFor(const std::string& ownerKind, const std::string& owner) {
  std::vector<std::string> logins;
  if (ownerKind == "user") {
    logins.push_back(owner);
  } else if (ownerKind == "group") {
    auto group = CORRAL_TRY(store_.findGroup(owner));
    if (!group) return noGroup(owner);
    logins = group->members;
  } else {
    return Error::invalidInput("owner_kind", ownerKind, "must be user or group");
  }
  std::vector<std::string> lines;
  std::vector<std::string> seen;  // fingerprints: one key shared by two members is authorized once
  for (const auto& login : logins) {
    auto keys = CORRAL_TRY(store_.listSshKeys(login));
    for (auto& k : keys) {
      if (std::find(seen.begin(), seen.end(), k.fingerprint) != seen.end()) continue;
      seen.push_back(k.fingerprint);
      lines.push_back(std::move(k.key));
    }
  }
  return lines;
}

void Identity::dropTokenCache() {
  std::lock_guard lock(mu_);
  ++cacheGeneration_;
  tokenCache_.clear();
}

}  // namespace corral::core
