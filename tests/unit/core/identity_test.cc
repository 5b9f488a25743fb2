// Proves core::Identity against a real SQLite store in a temporary directory,
// with injected clocks (no sleeps): principals from the unix peer, tokens
// (format, hash-only storage, expiry, revocation, the ≤ 5 s cache), sessions
// (login, expiry, logout, CSRF token), the login rate limits per account and
// per address, password changes dropping sessions, the user/group namespace,
// and the code of every refusal (Forbidden for an admin action on a thing the
// caller sees, NotFound for what they may not see).
#include "core/identity.h"

#include <pwd.h>

#include <fmt/format.h>
#include <gtest/gtest.h>

#include "support/temp_dir.h"
#include "util/crypto.h"

namespace corral::core {
namespace {

using namespace std::chrono_literals;

class IdentityTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto s = store::openSqliteStore((dir_ / "corral.db").string());
    ASSERT_TRUE(s.ok()) << s.error().describe();
    store_ = std::move(*s);
    IdentityOptions opts;
    opts.passwordCost = {1, 64, 1};  // the real cost is util/password_test's business
    opts.steadyClock = [this] { return steady_; };
    opts.wallClock = [this] { return wall_; };
    id_ = std::make_unique<Identity>(*store_, opts);
    root_ = *id_->fromUnixPeer(0);
    addUser("alice", "alice-password");
    addUser("bob", "bob-password");
  }

  store::UserRecord addUser(const std::string& login, const std::string& password, bool admin = false) {
    NewUser u;
    u.login = login;
    u.password = password;
    u.admin = admin;
    u.email = login + "@example.org";
    auto r = id_->createUser(root_, u);
    EXPECT_TRUE(r.ok()) << r.error().describe();
    return r.ok() ? *r : store::UserRecord{};
  }

  Principal as(const std::string& login) {
    auto p = id_->fromLogin(login, "proxy");
    EXPECT_TRUE(p.ok()) << p.error().describe();
    return p.ok() ? *p : Principal{};
  }

  testing::TempDir dir_;
  std::unique_ptr<store::Store> store_;
  std::unique_ptr<Identity> id_;
  Principal root_;
  std::chrono::steady_clock::time_point steady_{std::chrono::hours(1)};
  std::chrono::system_clock::time_point wall_{std::chrono::sys_days{std::chrono::year{2026} / 3 / 1}};
};

template <class T>
ErrorCode codeOf(const Result<T>& r) {
  EXPECT_FALSE(r.ok());
  return r.ok() ? ErrorCode::Internal : r.error().code;
}

// ------------------------------------------------------------- unix peers

TEST_F(IdentityTest, UnixRootIsAdminWithoutARow) {
  auto p = id_->fromUnixPeer(0);
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(p->login, "root");
  EXPECT_TRUE(p->admin);
  EXPECT_EQ(p->via, "unix");
  EXPECT_FALSE(*store_->findUser("root"));
}

// Proves a person's local account maps to the corral user of its login (the
// account database is replaced: a unit test adds no account to the host).
TEST_F(IdentityTest, UnixUidMapsToTheUserOfItsLogin) {
  IdentityOptions opts;
  opts.localAccount = [](uid_t uid) -> std::optional<LocalAccount> {
    if (uid == 4242) return LocalAccount{"carol", 4242, "/bin/bash"};
    return std::nullopt;
  };
  Identity id(*store_, opts);
  auto before = id.fromUnixPeer(4242);
  ASSERT_EQ(codeOf(before), ErrorCode::Unauthenticated);
  EXPECT_NE(before.error().message.find("'carol'"), std::string::npos) << before.error().message;
  addUser("carol", "");
  auto p = id.fromUnixPeer(4242);
  ASSERT_TRUE(p.ok()) << p.error().describe();
  EXPECT_EQ(p->login, "carol");
  EXPECT_FALSE(p->admin);
  EXPECT_EQ(p->via, "unix");
}

// Proves system accounts (the real `nobody`, and by rule: low uids, nologin
// shells) never act through the socket even when a corral user has their
// login, and that no corral user can be called root.
TEST_F(IdentityTest, SystemAccountsAndRootNeverBecomeCorralUsersOnTheSocket) {
  struct passwd* pw = getpwnam("nobody");
  ASSERT_NE(pw, nullptr) << "this test needs the 'nobody' account";
  addUser("nobody", "");
  auto nobody = id_->fromUnixPeer(pw->pw_uid);
  ASSERT_EQ(codeOf(nobody), ErrorCode::Unauthenticated);
  EXPECT_NE(nobody.error().message.find("system account"), std::string::npos) << nobody.error().message;
  EXPECT_TRUE(isSystemAccount({"dnsmasq", 105, "/usr/sbin/nologin"}));
  EXPECT_TRUE(isSystemAccount({"svc", 2000, "/usr/sbin/nologin"}));
  EXPECT_TRUE(isSystemAccount({"old", 2001, "/bin/false"}));
  EXPECT_TRUE(isSystemAccount({"daemon", 1, "/bin/sh"}));
  EXPECT_FALSE(isSystemAccount({"carol", 1000, "/bin/bash"}));
  NewUser root;
  root.login = "root";
  auto refused = id_->createUser(root_, root);
  ASSERT_EQ(codeOf(refused), ErrorCode::InvalidInput);
  EXPECT_EQ(refused.error().field, "login");
}

TEST_F(IdentityTest, UnixUidWithoutAccountIsUnauthenticated) {
  uid_t uid = 54321;
  while (getpwuid(uid)) ++uid;
  EXPECT_EQ(codeOf(id_->fromUnixPeer(uid)), ErrorCode::Unauthenticated);
  EXPECT_EQ(codeOf(id_->fromUnixPeer(static_cast<uid_t>(-1))), ErrorCode::Unauthenticated);
}

// ------------------------------------------------------------- tokens

TEST_F(IdentityTest, TokenIsShownOnceAndStoredAsItsHash) {
  auto t = id_->createToken(as("alice"), {"", "laptop", ""});
  ASSERT_TRUE(t.ok()) << t.error().describe();
  EXPECT_EQ(t->secret.rfind("crl_", 0), 0u);
  EXPECT_EQ(t->secret.size(), 4u + 43u);  // base64url of 32 bytes
  EXPECT_EQ(t->record.login, "alice");
  EXPECT_EQ(t->record.name, "laptop");
  EXPECT_EQ(t->record.secretHash, util::sha256Hex(t->secret));
  auto listed = id_->listTokens(as("alice"), {});
  ASSERT_TRUE(listed.ok());
  ASSERT_EQ(listed->size(), 1u);
  EXPECT_EQ(listed->front().secretHash.find(t->secret), std::string::npos);

  auto p = id_->fromToken(t->secret);
  ASSERT_TRUE(p.ok()) << p.error().describe();
  EXPECT_EQ(p->login, "alice");
  EXPECT_EQ(p->via, "token");
  EXPECT_EQ(p->tokenId, t->record.id);
}

TEST_F(IdentityTest, MalformedAndUnknownTokensAreUnauthenticated) {
  std::string a43(43, 'A');  // base64url of 32 zero bytes: well formed, but no such token
  for (std::string bad : {std::string(), std::string("crl_"), std::string("crl_short"), "abc_" + a43,
                          "crl_" + a43.substr(1) + "=", "crl_" + a43, "Crl_" + a43})
    EXPECT_EQ(codeOf(id_->fromToken(bad)), ErrorCode::Unauthenticated) << bad;
}

TEST_F(IdentityTest, RevokedTokenIsRefusedAtOnce) {
  auto t = id_->createToken(as("alice"), {});
  ASSERT_TRUE(t.ok());
  ASSERT_TRUE(id_->fromToken(t->secret).ok());  // now cached
  ASSERT_TRUE(id_->revokeToken(as("alice"), t->record.id).ok());
  auto p = id_->fromToken(t->secret);
  ASSERT_EQ(codeOf(p), ErrorCode::Unauthenticated);
  EXPECT_NE(p.error().message.find("revoked"), std::string::npos);
  // Revoking again is refused, saying when it was; the list shows it too.
  auto again = id_->revokeToken(as("alice"), t->record.id);
  ASSERT_EQ(codeOf(again), ErrorCode::FailedPrecondition);
  EXPECT_NE(again.error().message.find("revoked already"), std::string::npos) << again.error().message;
  auto listed = id_->listTokens(as("alice"), {});
  ASSERT_TRUE(listed.ok());
  EXPECT_FALSE(listed->front().revokedAt.empty());
}

TEST_F(IdentityTest, RevocationByAnotherDaemonTakesEffectWithinTheCacheTtl) {
  auto t = id_->createToken(as("alice"), {});
  ASSERT_TRUE(t.ok());
  ASSERT_TRUE(id_->fromToken(t->secret).ok());
  // Straight in the store, as another daemon sharing it would.
  ASSERT_TRUE(store_->revokeToken(t->record.id, store::nowRfc3339()).ok());
  steady_ += 4s;
  EXPECT_TRUE(id_->fromToken(t->secret).ok());  // still inside the 5 s cache
  steady_ += 1s;
  EXPECT_EQ(codeOf(id_->fromToken(t->secret)), ErrorCode::Unauthenticated);
}

TEST_F(IdentityTest, ExpiredTokenIsRefusedEvenWhenCached) {
  auto t = id_->createToken(as("alice"), {"", "", "1"});
  ASSERT_TRUE(t.ok()) << t.error().describe();
  EXPECT_EQ(t->record.expiresAt, formatRfc3339(wall_ + 24h));
  ASSERT_TRUE(id_->fromToken(t->secret).ok());
  wall_ += 24h;
  auto p = id_->fromToken(t->secret);
  ASSERT_EQ(codeOf(p), ErrorCode::Unauthenticated);
  EXPECT_NE(p.error().message.find("expired"), std::string::npos);
  steady_ += 10s;  // and from the store, not only the cache
  EXPECT_EQ(codeOf(id_->fromToken(t->secret)), ErrorCode::Unauthenticated);
}

TEST_F(IdentityTest, TokenExpiryForms) {
  auto alice = as("alice");
  auto days = id_->createToken(alice, {"", "", "30d"});
  ASSERT_TRUE(days.ok());
  EXPECT_EQ(days->record.expiresAt, formatRfc3339(wall_ + 30 * 24h));
  auto at = id_->createToken(alice, {"", "", "2026-04-01T12:00:00+02:00"});
  ASSERT_TRUE(at.ok()) << at.error().describe();
  EXPECT_EQ(at->record.expiresAt, "2026-04-01T10:00:00Z");
  for (std::string bad : {"0", "3651", "yesterday", "2026-02-01T00:00:00Z", "2026-13-01T00:00:00Z", "-1"}) {
    auto r = id_->createToken(alice, {"", "", bad});
    ASSERT_EQ(codeOf(r), ErrorCode::InvalidInput) << bad;
    EXPECT_EQ(r.error().field, "expires");
  }
}

TEST_F(IdentityTest, TokenPermissions) {
  auto alice = as("alice");
  auto bob = as("bob");
  // Tokens for someone else: admins only; to others that user does not exist.
  EXPECT_EQ(codeOf(id_->createToken(alice, {"bob", "", ""})), ErrorCode::NotFound);
  auto forBob = id_->createToken(root_, {"bob", "ci", ""});
  ASSERT_TRUE(forBob.ok());
  EXPECT_EQ(forBob->record.login, "bob");
  // root over the socket has no row, so no tokens of its own: it is told what
  // to do instead.
  auto own = id_->createToken(root_, {});
  ASSERT_EQ(codeOf(own), ErrorCode::FailedPrecondition);
  EXPECT_NE(own.error().message.find("corral user add NAME --admin"), std::string::npos) << own.error().message;
  EXPECT_EQ(codeOf(id_->createToken(root_, {"nobody-here", "", ""})), ErrorCode::NotFound);

  ASSERT_TRUE(id_->createToken(alice, {}).ok());
  EXPECT_EQ(id_->listTokens(alice, {})->size(), 1u);
  EXPECT_EQ(id_->listTokens(bob, {})->size(), 1u);
  EXPECT_EQ(codeOf(id_->listTokens(alice, {"bob", false})), ErrorCode::NotFound);
  EXPECT_EQ(codeOf(id_->listTokens(alice, {"", true})), ErrorCode::Forbidden);
  EXPECT_EQ(id_->listTokens(root_, {"bob", false})->size(), 1u);
  EXPECT_EQ(id_->listTokens(root_, {"", true})->size(), 2u);
  EXPECT_EQ(codeOf(id_->listTokens(root_, {"ghost", false})), ErrorCode::NotFound);

  EXPECT_EQ(codeOf(id_->revokeToken(alice, forBob->record.id)), ErrorCode::NotFound);
  EXPECT_EQ(codeOf(id_->revokeToken(alice, 999999)), ErrorCode::NotFound);
  EXPECT_TRUE(id_->fromToken(forBob->secret).ok());
  EXPECT_TRUE(id_->revokeToken(root_, forBob->record.id).ok());
  EXPECT_EQ(codeOf(id_->fromToken(forBob->secret)), ErrorCode::Unauthenticated);
  EXPECT_EQ(codeOf(id_->createToken(alice, {"", std::string("tab\there"), ""})), ErrorCode::InvalidInput);
}

// ------------------------------------------------------------- sessions and login

TEST_F(IdentityTest, LoginMakesASessionWithCsrfToken) {
  auto r = id_->login("alice", "alice-password", "192.0.2.1");
  ASSERT_TRUE(r.ok()) << r.error().describe();
  EXPECT_EQ(r->user.login, "alice");
  EXPECT_EQ(r->maxAgeSeconds, 12 * 3600);
  EXPECT_FALSE(r->csrfToken.empty());
  EXPECT_NE(r->csrfToken, r->sessionCookie);
  // The store keeps the cookie's hash, never the cookie.
  auto stored = store_->findSession(util::sha256Hex(r->sessionCookie));
  ASSERT_TRUE(stored.ok());
  ASSERT_TRUE(*stored);
  EXPECT_FALSE(store_->findSession(r->sessionCookie).value());

  auto p = id_->fromSession(r->sessionCookie);
  ASSERT_TRUE(p.ok()) << p.error().describe();
  EXPECT_EQ(p->login, "alice");
  EXPECT_EQ(p->via, "session");
  EXPECT_EQ(p->csrfToken, r->csrfToken);

  ASSERT_TRUE(id_->logout(r->sessionCookie).ok());
  EXPECT_EQ(codeOf(id_->fromSession(r->sessionCookie)), ErrorCode::Unauthenticated);
  EXPECT_TRUE(id_->logout(r->sessionCookie).ok());  // twice is fine
  EXPECT_EQ(codeOf(id_->fromSession("garbage")), ErrorCode::Unauthenticated);
}

TEST_F(IdentityTest, SessionExpires) {
  auto r = id_->login("alice", "alice-password", "192.0.2.1");
  ASSERT_TRUE(r.ok());
  wall_ += 12h - 1s;
  EXPECT_TRUE(id_->fromSession(r->sessionCookie).ok());
  wall_ += 1s;
  EXPECT_EQ(codeOf(id_->fromSession(r->sessionCookie)), ErrorCode::Unauthenticated);
}

TEST_F(IdentityTest, UnknownUserAndWrongPasswordLookTheSame) {
  auto wrong = id_->login("alice", "not-her-password", "192.0.2.1");
  auto unknown = id_->login("mallory", "whatever-it-is", "192.0.2.1");
  auto nopw = (addUser("carol", ""), id_->login("carol", "", "192.0.2.1"));
  auto invalid = id_->login("../etc", "x", "192.0.2.1");
  for (const auto* r : {&wrong, &unknown, &nopw, &invalid}) {
    ASSERT_EQ(codeOf(*r), ErrorCode::Unauthenticated);
    EXPECT_EQ(r->error().message, wrong.error().message);
    EXPECT_TRUE(r->error().field.empty());
  }
}

// Proves an attacker's failures lock the account from the attacker's address
// only: the owner logs in from elsewhere at once.
TEST_F(IdentityTest, AccountRateLimitAfterFiveFailuresHoldsForThatAddressOnly) {
  for (int i = 0; i < 5; ++i) {
    EXPECT_EQ(codeOf(id_->login("alice", "wrong-password", "192.0.2.1")), ErrorCode::Unauthenticated);
    steady_ += 1s;
  }
  auto r = id_->login("alice", "alice-password", "192.0.2.1");
  ASSERT_EQ(codeOf(r), ErrorCode::RateLimited);
  EXPECT_EQ(r.error().retryAfterSeconds, 300 - 5);
  EXPECT_TRUE(id_->login("alice", "alice-password", "198.51.100.7").ok()) << "the owner, elsewhere";
  EXPECT_TRUE(id_->login("bob", "bob-password", "192.0.2.1").ok());  // others are not
  steady_ += 295s;
  EXPECT_TRUE(id_->login("alice", "alice-password", "192.0.2.1").ok());
}

// Proves guessing one account from many addresses meets an exponential
// backoff (1 s, 2 s, 4 s ... after 20 failures) that is capped, never a lock.
TEST_F(IdentityTest, DistributedGuessingOfOneAccountBacksOffWithACap) {
  for (int i = 0; i < 20; ++i)
    EXPECT_EQ(codeOf(id_->login("alice", "guess", fmt::format("198.51.100.{}", i))), ErrorCode::Unauthenticated);
  std::vector<int> waits;
  for (int i = 0; i < 8; ++i) {
    auto r = id_->login("alice", "alice-password", "192.0.2.50");
    ASSERT_EQ(codeOf(r), ErrorCode::RateLimited) << i;
    waits.push_back(r.error().retryAfterSeconds);
    steady_ += std::chrono::seconds(r.error().retryAfterSeconds);
    EXPECT_EQ(codeOf(id_->login("alice", "guess", fmt::format("203.0.113.{}", i))), ErrorCode::Unauthenticated);
  }
  EXPECT_EQ(waits, (std::vector<int>{1, 2, 4, 8, 16, 30, 30, 30}));
  steady_ += 30s;
  EXPECT_TRUE(id_->login("alice", "alice-password", "192.0.2.50").ok()) << "the wait over, the owner is in";
}

// Proves one IPv6 client cannot escape the address limit by changing the low
// 64 bits of its address, and that an IPv4-mapped address counts as IPv4.
TEST_F(IdentityTest, Ipv6AddressesAreThrottledByTheirSlash64) {
  for (int i = 0; i < 20; ++i)
    EXPECT_EQ(codeOf(id_->login("user" + std::to_string(i / 4), "guess", fmt::format("2001:db8:1:2::{:x}", i + 1))),
              ErrorCode::Unauthenticated);
  EXPECT_EQ(codeOf(id_->login("bob", "bob-password", "2001:db8:1:2:ffff::1")), ErrorCode::RateLimited);
  EXPECT_TRUE(id_->login("bob", "bob-password", "2001:db8:1:3::1").ok()) << "another /64";
  EXPECT_EQ(addressThrottleKey("2001:db8:1:2:aaaa:bbbb:cccc:dddd"), "2001:db8:1:2::/64");
  EXPECT_EQ(addressThrottleKey("::ffff:192.0.2.9"), "192.0.2.9");
  EXPECT_EQ(addressThrottleKey("192.0.2.9"), "192.0.2.9");
  EXPECT_EQ(addressThrottleKey("unix:1000"), "unix:1000");
}

TEST_F(IdentityTest, SuccessResetsTheAccountCount) {
  for (int i = 0; i < 4; ++i) EXPECT_FALSE(id_->login("alice", "wrong-password", "192.0.2.1").ok());
  EXPECT_TRUE(id_->login("alice", "alice-password", "192.0.2.1").ok());
  for (int i = 0; i < 4; ++i)
    EXPECT_EQ(codeOf(id_->login("alice", "wrong-password", "192.0.2.1")), ErrorCode::Unauthenticated);
  EXPECT_TRUE(id_->login("alice", "alice-password", "192.0.2.1").ok());
}

TEST_F(IdentityTest, AddressRateLimitAfterTwentyFailures) {
  // Spraying many logins from one address: 20 failures, 4 per login so no
  // account reaches its own limit.
  for (int i = 0; i < 20; ++i)
    EXPECT_EQ(codeOf(id_->login("user" + std::to_string(i / 4), "guess-" + std::to_string(i), "203.0.113.9")),
              ErrorCode::Unauthenticated);
  auto r = id_->login("bob", "bob-password", "203.0.113.9");
  ASSERT_EQ(codeOf(r), ErrorCode::RateLimited);
  EXPECT_EQ(r.error().retryAfterSeconds, 300);
  EXPECT_TRUE(id_->login("bob", "bob-password", "203.0.113.10").ok());
  steady_ += 300s;
  EXPECT_TRUE(id_->login("bob", "bob-password", "203.0.113.9").ok());
}

// ------------------------------------------------------------- passwords

TEST_F(IdentityTest, PasswordChangeNeedsTheCurrentOneAndDropsSessions) {
  auto alice = as("alice");
  auto s1 = id_->login("alice", "alice-password", "192.0.2.1");
  auto s2 = id_->login("alice", "alice-password", "192.0.2.2");
  ASSERT_TRUE(s1.ok() && s2.ok());

  auto missing = id_->setPassword(alice, "alice", "new-password-1", "");
  ASSERT_EQ(codeOf(missing), ErrorCode::InvalidInput);
  EXPECT_EQ(missing.error().field, "current_password");
  auto wrong = id_->setPassword(alice, "alice", "new-password-1", "not-it-at-all");
  ASSERT_EQ(codeOf(wrong), ErrorCode::Forbidden);
  EXPECT_EQ(wrong.error().field, "current_password");
  auto tooShort = id_->setPassword(alice, "alice", "short", "alice-password");
  ASSERT_EQ(codeOf(tooShort), ErrorCode::InvalidInput);
  EXPECT_EQ(tooShort.error().field, "password");
  EXPECT_TRUE(tooShort.error().value.empty());  // a password is never echoed
  EXPECT_TRUE(id_->fromSession(s1->sessionCookie).ok());

  ASSERT_TRUE(id_->setPassword(alice, "alice", "new-password-1", "alice-password").ok());
  EXPECT_EQ(codeOf(id_->fromSession(s1->sessionCookie)), ErrorCode::Unauthenticated);
  EXPECT_EQ(codeOf(id_->fromSession(s2->sessionCookie)), ErrorCode::Unauthenticated);
  EXPECT_EQ(codeOf(id_->login("alice", "alice-password", "192.0.2.1")), ErrorCode::Unauthenticated);
  EXPECT_TRUE(id_->login("alice", "new-password-1", "192.0.2.1").ok());

  // Someone else's: NotFound for a user, fine for an admin without the current one.
  EXPECT_EQ(codeOf(id_->setPassword(alice, "bob", "new-password-2", "bob-password")), ErrorCode::NotFound);
  ASSERT_TRUE(id_->setPassword(root_, "bob", "new-password-2", "").ok());
  EXPECT_TRUE(id_->login("bob", "new-password-2", "192.0.2.1").ok());
}

TEST_F(IdentityTest, WrongCurrentPasswordsAreRateLimited) {
  auto alice = as("alice");
  for (int i = 0; i < 5; ++i)
    EXPECT_EQ(codeOf(id_->setPassword(alice, "alice", "new-password-1", "guess-" + std::to_string(i))),
              ErrorCode::Forbidden);
  EXPECT_EQ(codeOf(id_->setPassword(alice, "alice", "new-password-1", "alice-password")), ErrorCode::RateLimited);
}

// ------------------------------------------------------------- users

TEST_F(IdentityTest, CreateUserValidatesEveryField) {
  EXPECT_EQ(codeOf(id_->createUser(as("alice"), {"carol", "", "", "", false})), ErrorCode::Forbidden);
  struct Case {
    NewUser u;
    std::string field;
  } cases[] = {
      {{"Carol", "", "", "", false}, "login"},
      {{"9carol", "", "", "", false}, "login"},
      {{std::string(33, 'c'), "", "", "", false}, "login"},
      {{"carol", "", "carol@", "", false}, "email"},
      {{"carol", "Carol\x1b[31m", "", "", false}, "display_name"},
      {{"carol", std::string(101, 'x'), "", "", false}, "display_name"},
      {{"carol", "bad \xff utf8", "", "", false}, "display_name"},
      {{"carol", "", "", "1234567", false}, "password"},
  };
  for (const auto& c : cases) {
    auto r = id_->createUser(root_, c.u);
    ASSERT_EQ(codeOf(r), ErrorCode::InvalidInput) << c.field;
    EXPECT_EQ(r.error().field, c.field);
  }
  auto ok = id_->createUser(root_, {"carol", "Carol Ünicode " + std::string(86, 'x'), "carol@example.org", "", false});
  ASSERT_TRUE(ok.ok()) << ok.error().describe();
  EXPECT_TRUE(ok->passwordHash.empty());
  auto dup = id_->createUser(root_, {"carol", "", "", "", false});
  ASSERT_EQ(codeOf(dup), ErrorCode::AlreadyExists);
  EXPECT_EQ(dup.error().field, "login");
}

TEST_F(IdentityTest, UsersAndGroupsShareOneNamespace) {
  ASSERT_TRUE(id_->createGroup(root_, {"staff", "the staff"}).ok());
  auto u = id_->createUser(root_, {"staff", "", "", "", false});
  ASSERT_EQ(codeOf(u), ErrorCode::AlreadyExists);
  EXPECT_EQ(u.error().field, "login");
  auto g = id_->createGroup(root_, {"alice", ""});
  ASSERT_EQ(codeOf(g), ErrorCode::AlreadyExists);
  EXPECT_EQ(g.error().field, "name");
  EXPECT_EQ(codeOf(id_->createGroup(root_, {"staff", ""})), ErrorCode::AlreadyExists);
  EXPECT_EQ(codeOf(id_->createGroup(root_, {"Bad Name", ""})), ErrorCode::InvalidInput);
}

TEST_F(IdentityTest, UserVisibilityAndAdminActions) {
  auto alice = as("alice");
  auto all = id_->listUsers(root_);
  ASSERT_TRUE(all.ok());
  EXPECT_EQ(all->size(), 2u);
  auto mine = id_->listUsers(alice);
  ASSERT_TRUE(mine.ok());
  ASSERT_EQ(mine->size(), 1u);
  EXPECT_EQ(mine->front().login, "alice");

  EXPECT_TRUE(id_->getUser(alice, "alice").ok());
  EXPECT_EQ(codeOf(id_->getUser(alice, "bob")), ErrorCode::NotFound);
  EXPECT_EQ(codeOf(id_->getUser(root_, "ghost")), ErrorCode::NotFound);

  // Self-service edits; the admin flag is not self-service.
  UserPatch p;
  p.displayName = "Alice A.";
  p.email = "a@example.org";
  auto edited = id_->updateUser(alice, "alice", p, 0);
  ASSERT_TRUE(edited.ok()) << edited.error().describe();
  EXPECT_EQ(edited->displayName, "Alice A.");
  EXPECT_EQ(edited->version, 2);
  UserPatch promote;
  promote.admin = true;
  auto refused = id_->updateUser(alice, "alice", promote, 0);
  ASSERT_EQ(codeOf(refused), ErrorCode::Forbidden);
  EXPECT_EQ(refused.error().field, "admin");
  UserPatch same;
  same.admin = false;
  EXPECT_TRUE(id_->updateUser(alice, "alice", same, 0).ok());  // unchanged is not a change
  EXPECT_EQ(codeOf(id_->updateUser(alice, "bob", p, 0)), ErrorCode::NotFound);
  UserPatch badEmail;
  badEmail.email = "nope";
  EXPECT_EQ(codeOf(id_->updateUser(alice, "alice", badEmail, 0)), ErrorCode::InvalidInput);

  // If-Match: a stale version is refused.
  EXPECT_EQ(codeOf(id_->updateUser(root_, "alice", promote, 1)), ErrorCode::VersionMismatch);
  auto promoted = id_->updateUser(root_, "alice", promote, 3);
  ASSERT_TRUE(promoted.ok()) << promoted.error().describe();
  EXPECT_TRUE(promoted->admin);
  EXPECT_TRUE(as("alice").admin);

  // Deleting: admins only (Forbidden on yourself as a user), never yourself.
  auto bob = as("bob");
  EXPECT_EQ(codeOf(id_->deleteUser(bob, "bob")), ErrorCode::Forbidden);
  EXPECT_EQ(codeOf(id_->deleteUser(bob, "alice")), ErrorCode::NotFound);
  EXPECT_EQ(codeOf(id_->deleteUser(as("alice"), "alice")), ErrorCode::FailedPrecondition);
  EXPECT_TRUE(id_->deleteUser(as("alice"), "bob").ok());
  EXPECT_EQ(codeOf(id_->getUser(root_, "bob")), ErrorCode::NotFound);
}

TEST_F(IdentityTest, DeletedUsersTokensStopWorking) {
  auto t = id_->createToken(as("bob"), {});
  ASSERT_TRUE(t.ok());
  ASSERT_TRUE(id_->fromToken(t->secret).ok());
  ASSERT_TRUE(id_->deleteUser(root_, "bob").ok());
  EXPECT_EQ(codeOf(id_->fromToken(t->secret)), ErrorCode::Unauthenticated);
}

// ------------------------------------------------------------- groups

TEST_F(IdentityTest, GroupVisibilityAndMembership) {
  auto alice = as("alice");
  auto bob = as("bob");
  EXPECT_EQ(codeOf(id_->createGroup(alice, {"devs", ""})), ErrorCode::Forbidden);
  ASSERT_TRUE(id_->createGroup(root_, {"devs", "developers"}).ok());
  ASSERT_TRUE(id_->createGroup(root_, {"ops", ""}).ok());

  auto t = id_->createToken(alice, {});
  ASSERT_TRUE(t.ok());
  ASSERT_TRUE(id_->fromToken(t->secret).ok());  // cached without groups

  EXPECT_EQ(codeOf(id_->addMember(alice, "devs", "alice")), ErrorCode::NotFound);  // not hers to see
  ASSERT_TRUE(id_->addMember(root_, "devs", "alice").ok());
  EXPECT_TRUE(id_->addMember(root_, "devs", "alice").ok());  // twice is fine
  EXPECT_EQ(codeOf(id_->addMember(root_, "devs", "ghost")), ErrorCode::NotFound);
  EXPECT_EQ(codeOf(id_->addMember(root_, "ghosts", "alice")), ErrorCode::NotFound);

  // The membership shows at once, also through a cached token.
  auto p = id_->fromToken(t->secret);
  ASSERT_TRUE(p.ok());
  EXPECT_TRUE(p->inGroup("devs"));
  alice = as("alice");
  EXPECT_TRUE(alice.inGroup("devs"));

  auto groups = id_->listGroups(alice);
  ASSERT_TRUE(groups.ok());
  ASSERT_EQ(groups->size(), 1u);
  EXPECT_EQ(groups->front().name, "devs");
  EXPECT_EQ(groups->front().members, std::vector<std::string>{"alice"});
  EXPECT_EQ(id_->listGroups(root_)->size(), 2u);
  EXPECT_TRUE(id_->listGroups(bob)->empty());

  EXPECT_TRUE(id_->getGroup(alice, "devs").ok());
  EXPECT_EQ(codeOf(id_->getGroup(alice, "ops")), ErrorCode::NotFound);
  EXPECT_EQ(codeOf(id_->getGroup(bob, "devs")), ErrorCode::NotFound);

  // Members see their group but may not manage it.
  EXPECT_EQ(codeOf(id_->addMember(alice, "devs", "bob")), ErrorCode::Forbidden);
  EXPECT_EQ(codeOf(id_->removeMember(alice, "devs", "alice")), ErrorCode::Forbidden);
  EXPECT_EQ(codeOf(id_->deleteGroup(alice, "devs")), ErrorCode::Forbidden);
  EXPECT_EQ(codeOf(id_->deleteGroup(bob, "devs")), ErrorCode::NotFound);

  ASSERT_TRUE(id_->removeMember(root_, "devs", "alice").ok());
  EXPECT_FALSE(id_->fromToken(t->secret)->inGroup("devs"));
  ASSERT_TRUE(id_->deleteGroup(root_, "devs").ok());
  EXPECT_EQ(codeOf(id_->getGroup(root_, "devs")), ErrorCode::NotFound);
}

TEST_F(IdentityTest, CertEmailMapsToTheOneUserWithIt) {
  auto p = id_->fromCertEmail("alice@example.org");
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(p->login, "alice");
  EXPECT_EQ(p->via, "cert");
  EXPECT_EQ(codeOf(id_->fromCertEmail("nobody@example.org")), ErrorCode::Unauthenticated);
  EXPECT_EQ(codeOf(id_->fromCertEmail("")), ErrorCode::Unauthenticated);
  EXPECT_EQ(codeOf(id_->fromLogin("ghost")), ErrorCode::Unauthenticated);
}

TEST(Rfc3339, ParsesAndFormats) {
  auto t = parseRfc3339("2026-03-01T10:00:00Z");
  ASSERT_TRUE(t);
  EXPECT_EQ(formatRfc3339(*t), "2026-03-01T10:00:00Z");
  EXPECT_EQ(formatRfc3339(*parseRfc3339("2026-03-01T10:00:00.123-01:30")), "2026-03-01T11:30:00Z");
  for (const char* bad : {"", "2026-03-01", "2026-03-01T10:00:00", "2026-02-30T00:00:00Z", "2026-03-01T10:00:00Zx",
                          "2026-03-01 10:00:00Z", "2026-03-01T24:00:00Z"})
    EXPECT_FALSE(parseRfc3339(bad)) << bad;
}

}  // namespace
}  // namespace corral::core
