// Proves the identity routes end to end through the authenticator and the
// Router on hand-built Requests (no network): login sets the session cookie
// with HttpOnly/Secure/SameSite=Strict and returns the CSRF token, mutations by
// cookie without it are 403, logout expires the cookie, 429 carries
// Retry-After, users' ETag/If-Match (412 when stale), groups, members, tokens
// (secret shown once, revocation), 400 naming unknown fields and wrong types,
// SSH keys (add, list, remove, who may), the status of every refusal, and that
// no response ever carries a password hash, a token hash or a session hash.
#include "api/routes_identity.h"

#include <openssl/evp.h>

#include <gtest/gtest.h>

#include "support/ssh_keys.h"

#include "api/auth.h"
#include "support/temp_dir.h"
#include "util/crypto.h"

namespace corral::api {
namespace {

using nlohmann::json;

class RoutesIdentityTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto s = store::openSqliteStore((dir_ / "corral.db").string());
    ASSERT_TRUE(s.ok()) << s.error().describe();
    store_ = std::move(*s);
    core::IdentityOptions opts;
    opts.passwordCost = {1, 64, 1};
    id_ = std::make_unique<core::Identity>(*store_, opts);
    addIdentityRoutes(router_, *id_);
    auth_ = makeAuthenticator(*id_);
    auto root = *id_->fromUnixPeer(0);
    ASSERT_TRUE(id_->createUser(root, {"alice", "Alice", "alice@example.org", "alice-password", false}).ok());
    ASSERT_TRUE(id_->createUser(root, {"bob", "Bob", "bob@example.org", "bob-password", false}).ok());
    auto t = id_->createToken(root, {"alice", "", ""});
    ASSERT_TRUE(t.ok());
    alice_ = t->secret;
    forbidden_.push_back(t->record.secretHash);
    auto b = id_->createToken(root, {"bob", "", ""});
    ASSERT_TRUE(b.ok());
    bob_ = b->secret;
    forbidden_.push_back(b->record.secretHash);
  }

  // "/path?a=b" into path and query, as the transport splits them.
  static void setTarget(Request& r, std::string target) {
    if (auto q = target.find('?'); q != std::string::npos) {
      r.query = parseQuery(target.substr(q + 1));
      target.resize(q);
    }
    r.path = std::move(target);
  }

  // One request through authentication and dispatch, as the server runs it.
  Response call(Request req) {
    req.requestId = "test";
    Response resp;
    if (auto e = auth_(req))
      resp = Response::error(*e);
    else
      resp = router_.dispatch(req);
    // No response carries a hash: argon2 strings, or any hash we know of.
    EXPECT_EQ(resp.body.find("$argon2"), std::string::npos) << resp.body;
    for (const auto& h : forbidden_) EXPECT_EQ(resp.body.find(h), std::string::npos) << resp.body;
    EXPECT_EQ(resp.body.find("password_hash"), std::string::npos);
    EXPECT_EQ(resp.body.find("secret_hash"), std::string::npos);
    return resp;
  }

  Response asRoot(std::string method, std::string path, json body = nullptr,
                  std::map<std::string, std::string> headers = {}) {
    Request r;
    r.method = std::move(method);
    setTarget(r, std::move(path));
    r.transport = "unix";
    r.peerUid = 0;
    r.headers = std::move(headers);
    if (!body.is_null()) {
      r.body = body.dump();
      r.headers.emplace("content-type", "application/json");
    }
    return call(std::move(r));
  }

  Response withToken(const std::string& token, std::string method, std::string path, json body = nullptr,
                     std::map<std::string, std::string> headers = {}) {
    Request r;
    r.method = std::move(method);
    r.transport = "tls";
    r.peerAddress = "192.0.2.1";
    setTarget(r, std::move(path));
    r.headers = std::move(headers);
    r.headers["authorization"] = "Bearer " + token;
    if (!body.is_null()) {
      r.body = body.dump();
      r.headers.emplace("content-type", "application/json");
    }
    return call(std::move(r));
  }

  Response tls(std::string method, std::string path, json body, std::map<std::string, std::string> headers,
               std::string address = "192.0.2.1") {
    Request r;
    r.method = std::move(method);
    r.path = std::move(path);
    r.transport = "tls";
    r.peerAddress = std::move(address);
    r.headers = std::move(headers);
    if (!body.is_null()) {
      r.body = body.dump();
      r.headers.emplace("content-type", "application/json");
    }
    return call(std::move(r));
  }

  static json bodyOf(const Response& r) { return r.body.empty() ? json() : json::parse(r.body); }
  static std::string codeOf(const Response& r) { return bodyOf(r)["error"]["code"].get<std::string>(); }
  static std::string fieldOf(const Response& r) {
    auto f = bodyOf(r)["error"]["field"];
    return f.is_string() ? f.get<std::string>() : "";
  }

  testing::TempDir dir_;
  std::unique_ptr<store::Store> store_;
  std::unique_ptr<core::Identity> id_;
  Router router_;
  Authenticator auth_;
  std::string alice_, bob_;
  std::vector<std::string> forbidden_;
};

TEST_F(RoutesIdentityTest, LoginSessionCsrfLogout) {
  auto login = tls("POST", "/api/v1/login", {{"login", "alice"}, {"password", "alice-password"}}, {});
  ASSERT_EQ(login.status, 200) << login.body;
  json b = bodyOf(login);
  EXPECT_EQ(b["user"]["login"], "alice");
  EXPECT_FALSE(b["user"].contains("password_hash"));
  std::string csrf = b["csrf_token"];
  const std::string& setCookie = login.headers.at("Set-Cookie");
  ASSERT_EQ(setCookie.rfind("__Host-corral_session=", 0), 0u) << setCookie;
  for (const char* attr : {"; HttpOnly", "; Secure", "; SameSite=Strict", "; Path=/", "; Max-Age=43200"})
    EXPECT_NE(setCookie.find(attr), std::string::npos) << attr << " in " << setCookie;
  std::string cookie = setCookie.substr(0, setCookie.find(';'));
  forbidden_.push_back(util::sha256Hex(cookie.substr(cookie.find('=') + 1)));

  auto who = tls("GET", "/api/v1/whoami", nullptr, {{"cookie", cookie}});
  ASSERT_EQ(who.status, 200) << who.body;
  EXPECT_EQ(bodyOf(who), json({{"login", "alice"},
                               {"admin", false},
                               {"groups", json::array()},
                               {"via", "session"},
                               {"csrf_token", csrf}}));

  // A mutation by cookie alone is what a cross-site form would send.
  auto noCsrf = tls("POST", "/api/v1/tokens", json::object(), {{"cookie", cookie}});
  EXPECT_EQ(noCsrf.status, 403);
  EXPECT_NE(bodyOf(noCsrf)["error"]["message"].get<std::string>().find("CSRF token missing or wrong"),
            std::string::npos);
  auto withCsrf = tls("POST", "/api/v1/tokens", json::object(), {{"cookie", cookie}, {"x-csrf-token", csrf}});
  EXPECT_EQ(withCsrf.status, 201) << withCsrf.body;

  EXPECT_EQ(tls("POST", "/api/v1/logout", nullptr, {{"cookie", cookie}}).status, 403);
  auto out = tls("POST", "/api/v1/logout", nullptr, {{"cookie", cookie}, {"x-csrf-token", csrf}});
  ASSERT_EQ(out.status, 204);
  EXPECT_NE(out.headers.at("Set-Cookie").find("__Host-corral_session=;"), std::string::npos);
  EXPECT_NE(out.headers.at("Set-Cookie").find("Max-Age=0"), std::string::npos);
  EXPECT_EQ(tls("GET", "/api/v1/whoami", nullptr, {{"cookie", cookie}}).status, 401);
}

TEST_F(RoutesIdentityTest, LoginFailuresAndRateLimit) {
  auto wrong = tls("POST", "/api/v1/login", {{"login", "alice"}, {"password", "nope-nope"}}, {});
  EXPECT_EQ(wrong.status, 401);
  auto unknown = tls("POST", "/api/v1/login", {{"login", "nobody"}, {"password", "nope-nope"}}, {});
  EXPECT_EQ(unknown.status, 401);
  EXPECT_EQ(bodyOf(wrong)["error"]["message"], bodyOf(unknown)["error"]["message"]);
  for (int i = 0; i < 4; ++i) tls("POST", "/api/v1/login", {{"login", "alice"}, {"password", "nope-nope"}}, {});
  auto limited = tls("POST", "/api/v1/login", {{"login", "alice"}, {"password", "alice-password"}}, {});
  ASSERT_EQ(limited.status, 429) << limited.body;
  EXPECT_EQ(codeOf(limited), "rate_limited");
  int retry = std::stoi(limited.headers.at("Retry-After"));
  EXPECT_GT(retry, 290);
  EXPECT_LE(retry, 300);
  EXPECT_EQ(bodyOf(limited)["error"]["retry_after"], retry);

  auto missing = tls("POST", "/api/v1/login", {{"login", "alice"}}, {});
  EXPECT_EQ(missing.status, 400);
  EXPECT_EQ(fieldOf(missing), "password");
  auto extra = tls("POST", "/api/v1/login", {{"login", "alice"}, {"password", "x"}, {"remember", true}}, {});
  EXPECT_EQ(extra.status, 400);
  EXPECT_EQ(fieldOf(extra), "remember");
  auto badJson = tls("POST", "/api/v1/login", nullptr, {});
  EXPECT_EQ(badJson.status, 400);  // {} lacks login
  EXPECT_EQ(fieldOf(badJson), "login");
}

TEST_F(RoutesIdentityTest, WhoamiAndUnauthenticated) {
  auto who = withToken(alice_, "GET", "/api/v1/whoami");
  ASSERT_EQ(who.status, 200);
  EXPECT_EQ(bodyOf(who)["via"], "token");
  EXPECT_FALSE(bodyOf(who).contains("csrf_token"));
  auto root = asRoot("GET", "/api/v1/whoami");
  EXPECT_EQ(bodyOf(root)["login"], "root");
  EXPECT_EQ(bodyOf(root)["admin"], true);
  auto none = tls("GET", "/api/v1/whoami", nullptr, {});
  EXPECT_EQ(none.status, 401);
  EXPECT_EQ(none.headers.count("WWW-Authenticate"), 1u);
}

TEST_F(RoutesIdentityTest, UsersWithEtagAndIfMatch) {
  auto created = asRoot("POST", "/api/v1/users",
                        {{"login", "carol"}, {"display_name", "Carol"}, {"email", "c@example.org"},
                         {"password", "carol-password"}, {"admin", false}});
  ASSERT_EQ(created.status, 201) << created.body;
  EXPECT_EQ(created.headers.at("Location"), "/api/v1/users/carol");
  json c = bodyOf(created);
  EXPECT_EQ(c["display_name"], "Carol");
  EXPECT_EQ(c["has_password"], true);
  EXPECT_EQ(c["version"], 1);
  EXPECT_TRUE(c.contains("created_at"));

  auto got = asRoot("GET", "/api/v1/users/carol");
  ASSERT_EQ(got.status, 200);
  EXPECT_EQ(got.headers.at("ETag"), "\"1\"");

  auto patched = asRoot("PATCH", "/api/v1/users/carol", {{"display_name", "Carol C."}}, {{"if-match", "\"1\""}});
  ASSERT_EQ(patched.status, 200) << patched.body;
  EXPECT_EQ(patched.headers.at("ETag"), "\"2\"");
  auto stale = asRoot("PATCH", "/api/v1/users/carol", {{"display_name", "Lost update"}}, {{"if-match", "\"1\""}});
  EXPECT_EQ(stale.status, 412);
  EXPECT_EQ(codeOf(stale), "version_mismatch");
  auto garbage = asRoot("PATCH", "/api/v1/users/carol", {{"display_name", "x"}}, {{"if-match", "soon"}});
  EXPECT_EQ(garbage.status, 400);
  EXPECT_EQ(fieldOf(garbage), "If-Match");
  EXPECT_EQ(asRoot("PATCH", "/api/v1/users/carol", {{"email", "w@example.org"}}, {{"if-match", "W/\"2\""}}).status,
            200);

  // Lists: admins all, users themselves.
  EXPECT_EQ(bodyOf(asRoot("GET", "/api/v1/users"))["users"].size(), 3u);
  auto mine = bodyOf(withToken(alice_, "GET", "/api/v1/users"))["users"];
  ASSERT_EQ(mine.size(), 1u);
  EXPECT_EQ(mine[0]["login"], "alice");

  // Refusals, each with its status.
  EXPECT_EQ(withToken(alice_, "GET", "/api/v1/users/bob").status, 404);
  EXPECT_EQ(withToken(alice_, "POST", "/api/v1/users", {{"login", "dave"}}).status, 403);
  EXPECT_EQ(withToken(alice_, "PATCH", "/api/v1/users/alice", {{"admin", true}}).status, 403);
  EXPECT_EQ(withToken(alice_, "PATCH", "/api/v1/users/bob", {{"display_name", "x"}}).status, 404);
  EXPECT_EQ(withToken(alice_, "DELETE", "/api/v1/users/alice").status, 403);
  EXPECT_EQ(withToken(alice_, "DELETE", "/api/v1/users/bob").status, 404);
  EXPECT_EQ(asRoot("POST", "/api/v1/users", {{"login", "carol"}}).status, 409);
  auto badType = asRoot("POST", "/api/v1/users", {{"login", "dave"}, {"admin", "yes"}});
  EXPECT_EQ(badType.status, 400);
  EXPECT_EQ(fieldOf(badType), "admin");
  auto unknown = asRoot("PATCH", "/api/v1/users/carol", {{"displayname", "x"}});
  EXPECT_EQ(unknown.status, 400);
  EXPECT_EQ(fieldOf(unknown), "displayname");
  auto notObject = asRoot("POST", "/api/v1/users", json::array({1}));
  EXPECT_EQ(notObject.status, 400);
  auto pwType = asRoot("POST", "/api/v1/users", {{"login", "dave"}, {"password", 12345678}});
  EXPECT_EQ(fieldOf(pwType), "password");
  EXPECT_EQ(bodyOf(pwType)["error"]["value"], "");  // never echo a password

  EXPECT_EQ(asRoot("DELETE", "/api/v1/users/carol").status, 204);
  EXPECT_EQ(asRoot("GET", "/api/v1/users/carol").status, 404);
}

TEST_F(RoutesIdentityTest, PasswordChange) {
  auto noCurrent = withToken(alice_, "PUT", "/api/v1/users/alice/password", {{"password", "brand-new-pw"}});
  EXPECT_EQ(noCurrent.status, 400);
  EXPECT_EQ(fieldOf(noCurrent), "current_password");
  auto wrong = withToken(alice_, "PUT", "/api/v1/users/alice/password",
                         {{"password", "brand-new-pw"}, {"current_password", "not-it"}});
  EXPECT_EQ(wrong.status, 403);
  EXPECT_EQ(withToken(alice_, "PUT", "/api/v1/users/alice/password",
                      {{"password", "brand-new-pw"}, {"current_password", "alice-password"}})
                .status,
            204);
  EXPECT_EQ(tls("POST", "/api/v1/login", {{"login", "alice"}, {"password", "brand-new-pw"}}, {}).status, 200);
  EXPECT_EQ(withToken(alice_, "PUT", "/api/v1/users/bob/password", {{"password", "brand-new-pw"}}).status, 404);
  EXPECT_EQ(asRoot("PUT", "/api/v1/users/bob/password", {{"password", "brand-new-pw"}}).status, 204);
  EXPECT_EQ(asRoot("PUT", "/api/v1/users/bob/password", {{"password", "short"}}).status, 400);
}

TEST_F(RoutesIdentityTest, GroupsAndMembers) {
  auto created = asRoot("POST", "/api/v1/groups", {{"name", "devs"}, {"description", "Developers"}});
  ASSERT_EQ(created.status, 201) << created.body;
  EXPECT_EQ(bodyOf(created)["members"], json::array());
  EXPECT_EQ(asRoot("POST", "/api/v1/groups", {{"name", "alice"}}).status, 409);  // a user's login
  EXPECT_EQ(asRoot("POST", "/api/v1/users", {{"login", "devs"}}).status, 409);   // a group's name
  EXPECT_EQ(withToken(alice_, "POST", "/api/v1/groups", {{"name", "mine"}}).status, 403);
  EXPECT_EQ(asRoot("POST", "/api/v1/groups", {{"name", "devs"}, {"colour", "red"}}).status, 400);

  EXPECT_EQ(withToken(alice_, "GET", "/api/v1/groups/devs").status, 404);
  EXPECT_EQ(withToken(alice_, "PUT", "/api/v1/groups/devs/members/alice").status, 404);
  EXPECT_EQ(asRoot("PUT", "/api/v1/groups/devs/members/alice").status, 204);
  EXPECT_EQ(asRoot("PUT", "/api/v1/groups/devs/members/ghost").status, 404);
  auto g = withToken(alice_, "GET", "/api/v1/groups/devs");
  ASSERT_EQ(g.status, 200);
  EXPECT_EQ(bodyOf(g)["members"], json::array({"alice"}));
  EXPECT_EQ(bodyOf(withToken(alice_, "GET", "/api/v1/whoami"))["groups"], json::array({"devs"}));
  EXPECT_EQ(bodyOf(withToken(alice_, "GET", "/api/v1/groups"))["groups"].size(), 1u);
  EXPECT_EQ(bodyOf(withToken(bob_, "GET", "/api/v1/groups"))["groups"].size(), 0u);
  EXPECT_EQ(withToken(alice_, "PUT", "/api/v1/groups/devs/members/bob").status, 403);
  EXPECT_EQ(withToken(alice_, "DELETE", "/api/v1/groups/devs").status, 403);
  EXPECT_EQ(withToken(bob_, "DELETE", "/api/v1/groups/devs").status, 404);
  EXPECT_EQ(asRoot("DELETE", "/api/v1/groups/devs/members/alice").status, 204);
  EXPECT_EQ(asRoot("DELETE", "/api/v1/groups/devs").status, 204);
  EXPECT_EQ(asRoot("GET", "/api/v1/groups/devs").status, 404);
}

TEST_F(RoutesIdentityTest, TokensCreateListRevoke) {
  auto created = withToken(alice_, "POST", "/api/v1/tokens", {{"name", "ci"}, {"expires", 30}});
  ASSERT_EQ(created.status, 201) << created.body;
  json t = bodyOf(created);
  std::string secret = t["token"];
  forbidden_.push_back(util::sha256Hex(secret));
  EXPECT_EQ(t["user"], "alice");
  EXPECT_EQ(t["name"], "ci");
  EXPECT_TRUE(t["expires_at"].is_string());
  EXPECT_TRUE(t["revoked_at"].is_null());
  int64_t tokenId = t["id"];

  auto listed = withToken(alice_, "GET", "/api/v1/tokens");
  ASSERT_EQ(listed.status, 200);
  EXPECT_EQ(bodyOf(listed)["tokens"].size(), 2u);
  EXPECT_EQ(listed.body.find(secret), std::string::npos);  // shown once, at creation
  json listedBody = bodyOf(listed);  // named: a range-for over a temporary's member dangles
  for (const auto& item : listedBody["tokens"]) EXPECT_FALSE(item.contains("token"));

  EXPECT_EQ(withToken(secret, "GET", "/api/v1/whoami").status, 200);
  EXPECT_EQ(withToken(bob_, "DELETE", "/api/v1/tokens/" + std::to_string(tokenId)).status, 404);
  EXPECT_EQ(withToken(alice_, "DELETE", "/api/v1/tokens/" + std::to_string(tokenId)).status, 204);
  EXPECT_EQ(withToken(secret, "GET", "/api/v1/whoami").status, 401);
  EXPECT_TRUE(bodyOf(withToken(alice_, "GET", "/api/v1/tokens"))["tokens"][1]["revoked_at"].is_string() ||
              bodyOf(withToken(alice_, "GET", "/api/v1/tokens"))["tokens"][0]["revoked_at"].is_string());

  EXPECT_EQ(withToken(alice_, "GET", "/api/v1/tokens?all=true").status, 403);
  EXPECT_EQ(withToken(alice_, "GET", "/api/v1/tokens?user=bob").status, 404);
  EXPECT_EQ(withToken(alice_, "GET", "/api/v1/tokens?all=maybe").status, 400);
  EXPECT_EQ(withToken(alice_, "POST", "/api/v1/tokens", {{"user", "bob"}}).status, 404);
  auto badExpiry = withToken(alice_, "POST", "/api/v1/tokens", {{"expires", true}});
  EXPECT_EQ(badExpiry.status, 400);
  EXPECT_EQ(fieldOf(badExpiry), "expires");
  EXPECT_EQ(fieldOf(withToken(alice_, "POST", "/api/v1/tokens", {{"expires", "2001-01-01T00:00:00Z"}})), "expires");
  EXPECT_EQ(withToken(alice_, "DELETE", "/api/v1/tokens/abc").status, 400);

  EXPECT_EQ(bodyOf(asRoot("GET", "/api/v1/tokens?all=true"))["tokens"].size(), 3u);
  auto bobs = asRoot("GET", "/api/v1/tokens?user=bob");
  ASSERT_EQ(bodyOf(bobs)["tokens"].size(), 1u);
  auto forBob = asRoot("POST", "/api/v1/tokens", {{"user", "bob"}, {"expires", "7d"}});
  ASSERT_EQ(forBob.status, 201) << forBob.body;
  forbidden_.push_back(util::sha256Hex(bodyOf(forBob)["token"].get<std::string>()));
  EXPECT_EQ(bodyOf(forBob)["user"], "bob");
}

std::string edKey(char fill, const std::string& comment = "") { return testing::ed25519KeyLine(fill, comment); }

// SSH keys: a user adds (201 with the key's JSON and Location), lists and
// removes (204) their own; another user's are 404; admins manage anyone's; a
// bad key is 400 naming "key", a duplicate 409, unknown fields 400, a bad id 400.
TEST_F(RoutesIdentityTest, SshKeysAddListRemove) {
  auto added = withToken(alice_, "POST", "/api/v1/users/alice/keys", {{"key", edKey('a', "alice@laptop")}});
  ASSERT_EQ(added.status, 201) << added.body;
  json k = bodyOf(added);
  EXPECT_EQ(k["name"], "alice@laptop");
  EXPECT_EQ(k["type"], "ssh-ed25519");
  EXPECT_EQ(k["key"], edKey('a', "alice@laptop"));
  EXPECT_TRUE(k["fingerprint"].get<std::string>().starts_with("SHA256:"));
  EXPECT_TRUE(k["created_at"].is_string());
  int64_t keyId = k["id"];
  EXPECT_EQ(added.headers["Location"], "/api/v1/users/alice/keys/" + std::to_string(keyId));
  EXPECT_EQ(k.size(), 6u) << k.dump();

  auto named = withToken(alice_, "POST", "/api/v1/users/alice/keys", {{"key", edKey('b', "x")}, {"name", "work"}});
  ASSERT_EQ(named.status, 201) << named.body;
  EXPECT_EQ(bodyOf(named)["name"], "work");

  auto listed = withToken(alice_, "GET", "/api/v1/users/alice/keys");
  ASSERT_EQ(listed.status, 200);
  json keys = bodyOf(listed)["keys"];
  ASSERT_EQ(keys.size(), 2u);
  EXPECT_EQ(keys[0], k);

  // Refusals.
  EXPECT_EQ(withToken(alice_, "POST", "/api/v1/users/alice/keys", {{"key", edKey('a', "again")}}).status, 409);
  auto bad = withToken(alice_, "POST", "/api/v1/users/alice/keys", {{"key", "no-pty " + edKey('c', "")}});
  EXPECT_EQ(bad.status, 400);
  EXPECT_EQ(fieldOf(bad), "key");
  EXPECT_EQ(fieldOf(withToken(alice_, "POST", "/api/v1/users/alice/keys", json::object())), "key");
  EXPECT_EQ(fieldOf(withToken(alice_, "POST", "/api/v1/users/alice/keys", {{"key", edKey('c', "")}, {"opts", 1}})),
            "opts");
  EXPECT_EQ(fieldOf(withToken(alice_, "POST", "/api/v1/users/alice/keys", {{"key", 5}})), "key");
  EXPECT_EQ(withToken(alice_, "DELETE", "/api/v1/users/alice/keys/abc").status, 400);
  EXPECT_EQ(withToken(bob_, "GET", "/api/v1/users/alice/keys").status, 404);
  EXPECT_EQ(withToken(bob_, "POST", "/api/v1/users/alice/keys", {{"key", edKey('d', "")}}).status, 404);
  EXPECT_EQ(withToken(bob_, "DELETE", "/api/v1/users/alice/keys/" + std::to_string(keyId)).status, 404);
  EXPECT_EQ(withToken(bob_, "DELETE", "/api/v1/users/bob/keys/" + std::to_string(keyId)).status, 404);

  EXPECT_EQ(withToken(alice_, "DELETE", "/api/v1/users/alice/keys/" + std::to_string(keyId)).status, 204);
  EXPECT_EQ(withToken(alice_, "DELETE", "/api/v1/users/alice/keys/" + std::to_string(keyId)).status, 404);
  EXPECT_EQ(bodyOf(withToken(alice_, "GET", "/api/v1/users/alice/keys"))["keys"].size(), 1u);

  // An admin manages anyone's.
  auto forBob = asRoot("POST", "/api/v1/users/bob/keys", {{"key", edKey('e', "bob")}});
  ASSERT_EQ(forBob.status, 201) << forBob.body;
  EXPECT_EQ(bodyOf(asRoot("GET", "/api/v1/users/bob/keys"))["keys"].size(), 1u);
  EXPECT_EQ(asRoot("DELETE", "/api/v1/users/bob/keys/" + std::to_string(bodyOf(forBob)["id"].get<int64_t>())).status,
            204);
  EXPECT_EQ(asRoot("GET", "/api/v1/users/nobody/keys").status, 404);
}

}  // namespace
}  // namespace corral::api
