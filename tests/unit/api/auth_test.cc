// Proves the authenticator's rules on Requests built by hand (no network): the
// public login route needs nobody; the unix socket is its peer uid; over TLS a
// Bearer token, else the session cookie with the CSRF check on every method but
// GET/HEAD (403 "CSRF token missing or wrong"), else, only when enabled, a
// client certificate's email or a trusted proxy's header; anything else is 401.
#include "api/auth.h"

#include <gtest/gtest.h>

#include "support/temp_dir.h"

namespace corral::api {
namespace {

class AuthTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto s = store::openSqliteStore((dir_ / "corral.db").string());
    ASSERT_TRUE(s.ok()) << s.error().describe();
    store_ = std::move(*s);
    core::IdentityOptions opts;
    opts.passwordCost = {1, 64, 1};
    id_ = std::make_unique<core::Identity>(*store_, opts);
    root_ = *id_->fromUnixPeer(0);
    ASSERT_TRUE(id_->createUser(root_, {"alice", "", "alice@example.org", "alice-password", false}).ok());
    auto t = id_->createToken(root_, {"alice", "", ""});
    ASSERT_TRUE(t.ok());
    token_ = t->secret;
    auto l = id_->login("alice", "alice-password", "192.0.2.1");
    ASSERT_TRUE(l.ok());
    login_ = *l;
  }

  static Request tls(std::string method, std::string path = "/api/v1/whoami") {
    Request r;
    r.method = std::move(method);
    r.path = std::move(path);
    r.transport = "tls";
    r.peerAddress = "192.0.2.1";
    return r;
  }

  testing::TempDir dir_;
  std::unique_ptr<store::Store> store_;
  std::unique_ptr<core::Identity> id_;
  core::Principal root_;
  std::string token_;
  core::LoginResult login_;
};

TEST_F(AuthTest, LoginRouteIsPublic) {
  auto auth = makeAuthenticator(*id_);
  for (std::string path : {"/api/v1/login", "/api/v1/login/"}) {
    Request r = tls("POST", path);
    EXPECT_FALSE(auth(r)) << path;
    EXPECT_FALSE(r.principal);
  }
  Request get = tls("GET", "/api/v1/login");
  auto e = auth(get);
  ASSERT_TRUE(e);
  EXPECT_EQ(e->code, ErrorCode::Unauthenticated);
  Request other = tls("POST", "/api/v1/logins");
  EXPECT_TRUE(auth(other));
}

TEST_F(AuthTest, UnixSocketUsesThePeerUid) {
  auto auth = makeAuthenticator(*id_);
  Request r;
  r.method = "DELETE";
  r.path = "/api/v1/users/alice";
  r.transport = "unix";
  r.peerUid = 0;
  ASSERT_FALSE(auth(r));
  ASSERT_TRUE(r.principal);
  EXPECT_EQ(r.principal->login, "root");
  EXPECT_TRUE(r.principal->admin);
  // A Bearer header on the socket does not change who the peer is.
  r.peerUid = static_cast<uid_t>(-1);
  r.headers["authorization"] = "Bearer " + token_;
  auto e = auth(r);
  ASSERT_TRUE(e);
  EXPECT_EQ(e->code, ErrorCode::Unauthenticated);
}

TEST_F(AuthTest, BearerTokenOverTls) {
  auto auth = makeAuthenticator(*id_);
  for (std::string scheme : {"Bearer ", "bearer ", "BEARER  "}) {
    Request r = tls("POST", "/api/v1/tokens");
    r.headers["authorization"] = scheme + token_;
    ASSERT_FALSE(auth(r)) << scheme;  // no CSRF needed: a token is not sent by browsers on their own
    EXPECT_EQ(r.principal->login, "alice");
    EXPECT_EQ(r.principal->via, "token");
  }
  for (std::string bad :
       {std::string("Bearer crl_nope"), std::string("Basic YWxpY2U6cHc="), std::string("Bearer"), token_}) {
    Request r = tls("GET");
    r.headers["authorization"] = bad;
    // A session cookie does not rescue a bad Authorization header.
    r.headers["cookie"] = "__Host-corral_session=" + login_.sessionCookie;
    auto e = auth(r);
    ASSERT_TRUE(e) << bad;
    EXPECT_EQ(e->code, ErrorCode::Unauthenticated);
    EXPECT_FALSE(r.principal);
  }
}

TEST_F(AuthTest, SessionCookieNeedsCsrfTokenOnMutations) {
  auto auth = makeAuthenticator(*id_);
  std::string cookie = "theme=dark; __Host-corral_session=" + login_.sessionCookie + "; other=1";
  for (std::string method : {"GET", "HEAD"}) {
    Request r = tls(method);
    r.headers["cookie"] = cookie;
    ASSERT_FALSE(auth(r)) << method;
    EXPECT_EQ(r.principal->via, "session");
  }
  for (std::string method : {"POST", "PUT", "PATCH", "DELETE"}) {
    for (std::string csrf : {std::string(), std::string("wrong"), login_.csrfToken + "x"}) {
      Request r = tls(method, "/api/v1/tokens");
      r.headers["cookie"] = cookie;
      if (!csrf.empty()) r.headers["x-csrf-token"] = csrf;
      auto e = auth(r);
      ASSERT_TRUE(e) << method << " " << csrf;
      EXPECT_EQ(e->code, ErrorCode::Forbidden);
      EXPECT_NE(e->message.find("CSRF token missing or wrong"), std::string::npos);
      EXPECT_FALSE(r.principal);
    }
    Request r = tls(method, "/api/v1/tokens");
    r.headers["cookie"] = cookie;
    r.headers["x-csrf-token"] = login_.csrfToken;
    ASSERT_FALSE(auth(r)) << method;
    EXPECT_EQ(r.principal->login, "alice");
  }
}

TEST_F(AuthTest, EndedSessionIsUnauthenticated) {
  auto auth = makeAuthenticator(*id_);
  ASSERT_TRUE(id_->logout(login_.sessionCookie).ok());
  Request r = tls("GET");
  r.headers["cookie"] = "__Host-corral_session=" + login_.sessionCookie;
  auto e = auth(r);
  ASSERT_TRUE(e);
  EXPECT_EQ(e->code, ErrorCode::Unauthenticated);
}

TEST_F(AuthTest, NoCredentialsIsUnauthenticated) {
  auto auth = makeAuthenticator(*id_);
  Request r = tls("GET");
  // The old unprefixed name is not read: a __Host- cookie can only have been set
  // by this origin over TLS (no subdomain, no plain-HTTP page can plant one).
  r.headers["cookie"] = "__Host-corral_sessionx=abc; corral_session=" + login_.sessionCookie;
  r.headers["x-remote-user"] = "alice";   // no proxy is trusted by default
  r.clientCertEmail = "alice@example.org";  // certificate login is off by default
  auto e = auth(r);
  ASSERT_TRUE(e);
  EXPECT_EQ(e->code, ErrorCode::Unauthenticated);
  Request odd = tls("GET");
  odd.transport = "carrier-pigeon";
  EXPECT_TRUE(auth(odd));
}

TEST_F(AuthTest, ClientCertificateEmailWhenEnabled) {
  AuthOptions opts;
  opts.clientCertLogin = true;
  auto auth = makeAuthenticator(*id_, opts);
  Request r = tls("POST", "/api/v1/tokens");
  r.clientCertEmail = "alice@example.org";
  ASSERT_FALSE(auth(r));
  EXPECT_EQ(r.principal->login, "alice");
  EXPECT_EQ(r.principal->via, "cert");
  r.clientCertEmail = "stranger@example.org";
  EXPECT_TRUE(auth(r));
}

// Proves the client address login throttles key on: behind a trusted proxy
// the last X-Forwarded-For entry (the one that proxy added), set also for the
// public login route; from anyone else the peer itself, whatever it claims.
TEST_F(AuthTest, ClientAddressBehindATrustedProxyIsTheOneItAdded) {
  AuthOptions opts;
  opts.trustedProxies = {"10.0.0.5"};
  auto auth = makeAuthenticator(*id_, opts);
  Request r = tls("POST", "/api/v1/login");
  r.headers["x-forwarded-for"] = "203.0.113.5, 2001:db8::7";
  r.peerAddress = "10.0.0.5";
  EXPECT_FALSE(auth(r));
  EXPECT_EQ(r.clientAddress, "2001:db8::7");
  r.peerAddress = "10.0.0.6";
  EXPECT_FALSE(auth(r));
  EXPECT_EQ(r.clientAddress, "10.0.0.6") << "an untrusted peer's header is ignored";
  r.peerAddress = "10.0.0.5";
  r.headers["x-forwarded-for"] = "203.0.113.5, not-an-address";
  EXPECT_FALSE(auth(r));
  EXPECT_EQ(r.clientAddress, "10.0.0.5") << "garbage falls back to the proxy itself";
}

TEST_F(AuthTest, ProxyHeaderOnlyFromTrustedAddresses) {
  AuthOptions opts;
  opts.trustedProxies = {"10.0.0.5"};
  opts.proxyHeader = "X-Forwarded-User";
  auto auth = makeAuthenticator(*id_, opts);
  Request r = tls("POST", "/api/v1/tokens");
  r.headers["x-forwarded-user"] = "alice";
  r.peerAddress = "10.0.0.6";
  EXPECT_TRUE(auth(r));
  EXPECT_FALSE(r.principal);
  r.peerAddress = "10.0.0.5";
  ASSERT_FALSE(auth(r));
  EXPECT_EQ(r.principal->login, "alice");
  EXPECT_EQ(r.principal->via, "proxy");
  r.headers["x-forwarded-user"] = "ghost";
  auto e = auth(r);
  ASSERT_TRUE(e);
  EXPECT_EQ(e->code, ErrorCode::Unauthenticated);
}

TEST(CookieValue, FindsTheNamedCookie) {
  EXPECT_EQ(cookieValue("a=1; corral_session=xyz; b=2", "corral_session"), "xyz");
  EXPECT_EQ(cookieValue("corral_session=\"q\"", "corral_session"), "q");
  EXPECT_EQ(cookieValue("corral_session_old=1;corral_session=2", "corral_session"), "2");
  EXPECT_EQ(cookieValue("x=1", "corral_session"), "");
  EXPECT_EQ(cookieValue("", "corral_session"), "");
  EXPECT_EQ(cookieValue("junk; ;=;corral_session", "corral_session"), "");
}

}  // namespace
}  // namespace corral::api
