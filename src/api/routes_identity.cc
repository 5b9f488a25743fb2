// See routes_identity.h.
#include "api/routes_identity.h"

#include "api/route_util.h"

#include <charconv>
#include <initializer_list>

#include <fmt/format.h>

#include "api/auth.h"
#include "api/json_model.h"

namespace corral::api {

namespace {

using nlohmann::json;

// ---- JSON in: unknown keys and wrong types are refused by name, so that a
// misspelt "display_nmae" is an error rather than silently ignored.

// nullopt when absent or null.
Result<std::optional<std::string>> optString(const json& body, const char* key) {
  auto it = body.find(key);
  if (it == body.end() || it->is_null()) return std::optional<std::string>{};
  if (!it->is_string()) return Error::invalidInput(key, it->dump(), "must be a string");
  return std::optional<std::string>{it->get<std::string>()};
}

Result<std::string> reqString(const json& body, const char* key) {
  auto v = CORRAL_TRY(optString(body, key));
  if (!v) return Error::invalidInput(key, "", "is required");
  return *v;
}

Result<std::optional<bool>> optBool(const json& body, const char* key) {
  auto it = body.find(key);
  if (it == body.end() || it->is_null()) return std::optional<bool>{};
  if (!it->is_boolean()) return Error::invalidInput(key, it->dump(), "must be true or false");
  return std::optional<bool>{it->get<bool>()};
}

// A secret's field must never echo its value in an error.
Result<std::optional<std::string>> optSecret(const json& body, const char* key) {
  auto it = body.find(key);
  if (it == body.end() || it->is_null()) return std::optional<std::string>{};
  if (!it->is_string()) return Error::invalidInput(key, "", "must be a string");
  return std::optional<std::string>{it->get<std::string>()};
}

// ---- JSON out: toJson of users, groups, tokens and keys is json_model's. Hashes
// stay in the store.

template <class T>
Response renderList(const char* key, const Result<std::vector<T>>& r) {
  if (!r.ok()) return Response::error(r.error());
  json out = json::array();
  for (const auto& x : *r) out.push_back(toJson(x));
  return Response::json(200, {{key, out}});
}

Response withEtag(const Result<store::UserRecord>& r, int status = 200) {
  if (!r.ok()) return Response::error(r.error());
  Response resp = Response::json(status, toJson(*r));
  resp.headers["ETag"] = fmt::format("\"{}\"", r->version);
  return resp;
}


// If-Match: "<version>" (or W/"<version>"); absent or "*" checks nothing (0).
Result<int64_t> ifMatchVersion(const Request& req) {
  std::string_view v = req.header("if-match");
  if (v.empty() || v == "*") return int64_t{0};
  std::string_view s = v;
  if (s.starts_with("W/")) s.remove_prefix(2);
  if (s.size() >= 2 && s.front() == '"' && s.back() == '"') s = s.substr(1, s.size() - 2);
  int64_t n = 0;
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), n);
  if (ec != std::errc() || end != s.data() + s.size() || n < 1)
    return Error::invalidInput("If-Match", std::string(v), "must be an ETag from a GET, like \"3\"");
  return n;
}

std::string sessionCookie(const std::string& value, int64_t maxAge) {
  return fmt::format("{}={}; HttpOnly; Secure; SameSite=Strict; Path=/; Max-Age={}", kSessionCookie, value, maxAge);
}

// ---- parsers

struct LoginBody {
  std::string login, password;
};

Result<LoginBody> parseLogin(const json& b) {
  CORRAL_TRY(onlyKeys(b, {"login", "password"}));
  LoginBody out;
  out.login = CORRAL_TRY(reqString(b, "login"));
  auto pw = CORRAL_TRY(optSecret(b, "password"));
  if (!pw) return Error::invalidInput("password", "", "is required");
  out.password = *pw;
  return out;
}

Result<core::NewUser> parseNewUser(const json& b) {
  CORRAL_TRY(onlyKeys(b, {"login", "display_name", "email", "password", "admin"}));
  core::NewUser u;
  u.login = CORRAL_TRY(reqString(b, "login"));
  u.displayName = CORRAL_TRY(optString(b, "display_name")).value_or("");
  u.email = CORRAL_TRY(optString(b, "email")).value_or("");
  u.password = CORRAL_TRY(optSecret(b, "password")).value_or("");
  u.admin = CORRAL_TRY(optBool(b, "admin")).value_or(false);
  return u;
}

Result<core::UserPatch> parseUserPatch(const json& b) {
  CORRAL_TRY(onlyKeys(b, {"display_name", "email", "admin"}));
  core::UserPatch p;
  p.displayName = CORRAL_TRY(optString(b, "display_name"));
  p.email = CORRAL_TRY(optString(b, "email"));
  p.admin = CORRAL_TRY(optBool(b, "admin"));
  return p;
}

struct PasswordBody {
  std::string password, current;
};

Result<PasswordBody> parsePassword(const json& b) {
  CORRAL_TRY(onlyKeys(b, {"password", "current_password"}));
  PasswordBody out;
  auto pw = CORRAL_TRY(optSecret(b, "password"));
  if (!pw) return Error::invalidInput("password", "", "is required");
  out.password = *pw;
  out.current = CORRAL_TRY(optSecret(b, "current_password")).value_or("");
  return out;
}

Result<core::NewGroup> parseNewGroup(const json& b) {
  CORRAL_TRY(onlyKeys(b, {"name", "description"}));
  core::NewGroup g;
  g.name = CORRAL_TRY(reqString(b, "name"));
  g.description = CORRAL_TRY(optString(b, "description")).value_or("");
  return g;
}

Result<core::NewToken> parseNewToken(const json& b) {
  CORRAL_TRY(onlyKeys(b, {"user", "name", "expires"}));
  core::NewToken t;
  t.user = CORRAL_TRY(optString(b, "user")).value_or("");
  t.name = CORRAL_TRY(optString(b, "name")).value_or("");
  // A number of days, or an RFC 3339 time (or "30d") as a string.
  if (auto it = b.find("expires"); it != b.end() && !it->is_null()) {
    if (it->is_number_integer())
      t.expires = std::to_string(it->get<int64_t>());
    else if (it->is_string())
      t.expires = it->get<std::string>();
    else
      return Error::invalidInput("expires", it->dump(), "must be a number of days or an RFC 3339 time");
  }
  return t;
}

Result<core::TokenFilter> parseTokenFilter(const Request& req) {
  core::TokenFilter f;
  if (auto it = req.query.find("user"); it != req.query.end()) f.user = it->second;
  if (auto it = req.query.find("all"); it != req.query.end()) {
    if (it->second == "true" || it->second == "1")
      f.all = true;
    else if (it->second != "false" && it->second != "0")
      return Error::invalidInput("all", it->second, "must be true or false");
  }
  if (f.all && !f.user.empty()) return Error::invalidInput("all", "true", "give either user or all, not both");
  return f;
}

Result<int64_t> parseId(const std::string& s, std::string_view what) {
  int64_t id = 0;
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), id);
  if (ec != std::errc() || end != s.data() + s.size() || id < 1)
    return Error::invalidInput("id", s, fmt::format("must be {} id (a positive integer)", what));
  return id;
}

Result<int64_t> parseTokenId(const std::string& s) { return parseId(s, "a token"); }

struct SshKeyBody {
  std::string key, name;
};

Result<SshKeyBody> parseSshKey(const json& b) {
  CORRAL_TRY(onlyKeys(b, {"key", "name"}));
  SshKeyBody out;
  out.key = CORRAL_TRY(reqString(b, "key"));
  out.name = CORRAL_TRY(optString(b, "name")).value_or("");
  return out;
}

}  // namespace

void addIdentityRoutes(Router& router, core::Identity& id) {
  // ---- sessions
  router.add("POST", "/api/v1/login", [&id](const Request& req) {
    return withBody(req, parseLogin, [&](const LoginBody& b) {
      // The per-address limit keys on the client (behind a trusted proxy, the one
      // it names), else the TLS peer; on the unix socket, on the uid.
      std::string address = !req.clientAddress.empty() ? req.clientAddress
                            : req.peerAddress.empty()  ? fmt::format("unix:{}", req.peerUid)
                                                       : req.peerAddress;
      auto r = id.login(b.login, b.password, address);
      if (!r.ok()) return Response::error(r.error());
      Response resp = Response::json(200, {{"user", toJson(r->user)}, {"csrf_token", r->csrfToken}});
      resp.headers["Set-Cookie"] = sessionCookie(r->sessionCookie, r->maxAgeSeconds);
      resp.headers["Cache-Control"] = "no-store";
      return resp;
    });
  });
  router.add("POST", "/api/v1/logout", authed([&id](const Request& req, const core::Principal&) {
               std::string cookie = cookieValue(req.header("cookie"), kSessionCookie);
               if (!cookie.empty()) {
                 if (auto r = id.logout(cookie); !r.ok()) return Response::error(r.error());
               }
               Response resp = Response::noContent();
               resp.headers["Set-Cookie"] = sessionCookie("", 0);
               return resp;
             }));
  router.add("GET", "/api/v1/whoami", authed([](const Request&, const core::Principal& p) {
               json out = {{"login", p.login}, {"admin", p.admin}, {"groups", p.groups}, {"via", p.via}};
               // A reloaded web page has lost the login response; the session's
               // own (same-origin) request may read its CSRF token again.
               if (p.via == "session") out["csrf_token"] = p.csrfToken;
               Response resp = Response::json(200, out);
               resp.headers["Cache-Control"] = "no-store";
               return resp;
             }));

  // ---- users
  router.add("GET", "/api/v1/users",
             authed([&id](const Request&, const core::Principal& p) { return renderList("users", id.listUsers(p)); }));
  router.add("POST", "/api/v1/users", authed([&id](const Request& req, const core::Principal& p) {
               return withBody(req, parseNewUser, [&](const core::NewUser& u) {
                 Response resp = withEtag(id.createUser(p, u), 201);
                 if (resp.status == 201) resp.headers["Location"] = "/api/v1/users/" + u.login;
                 return resp;
               });
             }));
  router.add("GET", "/api/v1/users/{login}", authed([&id](const Request& req, const core::Principal& p) {
               return withEtag(id.getUser(p, req.params.at("login")));
             }));
  router.add("PATCH", "/api/v1/users/{login}", authed([&id](const Request& req, const core::Principal& p) {
               auto version = ifMatchVersion(req);
               if (!version.ok()) return Response::error(version.error());
               return withBody(req, parseUserPatch, [&](const core::UserPatch& patch) {
                 return withEtag(id.updateUser(p, req.params.at("login"), patch, *version));
               });
             }));
  router.add("DELETE", "/api/v1/users/{login}", authed([&id](const Request& req, const core::Principal& p) {
               return noContentOr(id.deleteUser(p, req.params.at("login")));
             }));
  router.add("PUT", "/api/v1/users/{login}/password", authed([&id](const Request& req, const core::Principal& p) {
               return withBody(req, parsePassword, [&](const PasswordBody& b) {
                 return noContentOr(id.setPassword(p, req.params.at("login"), b.password, b.current));
               });
             }));

  // ---- a user's SSH public keys
  router.add("GET", "/api/v1/users/{login}/keys", authed([&id](const Request& req, const core::Principal& p) {
               return renderList("keys", id.sshKeys(p, req.params.at("login")));
             }));
  router.add("POST", "/api/v1/users/{login}/keys", authed([&id](const Request& req, const core::Principal& p) {
               return withBody(req, parseSshKey, [&](const SshKeyBody& b) {
                 const std::string& login = req.params.at("login");
                 auto r = id.addSshKey(p, login, b.key, b.name);
                 if (!r.ok()) return Response::error(r.error());
                 Response resp = Response::json(201, toJson(*r));
                 resp.headers["Location"] = fmt::format("/api/v1/users/{}/keys/{}", login, r->id);
                 return resp;
               });
             }));
  router.add("DELETE", "/api/v1/users/{login}/keys/{id}", authed([&id](const Request& req, const core::Principal& p) {
               auto keyId = parseId(req.params.at("id"), "an SSH key");
               if (!keyId.ok()) return Response::error(keyId.error());
               return noContentOr(id.removeSshKey(p, req.params.at("login"), *keyId));
             }));

  // ---- groups and members
  router.add("GET", "/api/v1/groups", authed([&id](const Request&, const core::Principal& p) {
               return renderList("groups", id.listGroups(p));
             }));
  router.add("POST", "/api/v1/groups", authed([&id](const Request& req, const core::Principal& p) {
               return withBody(req, parseNewGroup, [&](const core::NewGroup& g) {
                 auto r = id.createGroup(p, g);
                 if (!r.ok()) return Response::error(r.error());
                 Response resp = Response::json(201, toJson(*r));
                 resp.headers["Location"] = "/api/v1/groups/" + r->name;
                 return resp;
               });
             }));
  router.add("GET", "/api/v1/groups/{name}", authed([&id](const Request& req, const core::Principal& p) {
               auto r = id.getGroup(p, req.params.at("name"));
               return r.ok() ? Response::json(200, toJson(*r)) : Response::error(r.error());
             }));
  router.add("DELETE", "/api/v1/groups/{name}", authed([&id](const Request& req, const core::Principal& p) {
               return noContentOr(id.deleteGroup(p, req.params.at("name")));
             }));
  router.add("PUT", "/api/v1/groups/{name}/members/{login}",
             authed([&id](const Request& req, const core::Principal& p) {
               return noContentOr(id.addMember(p, req.params.at("name"), req.params.at("login")));
             }));
  router.add("DELETE", "/api/v1/groups/{name}/members/{login}",
             authed([&id](const Request& req, const core::Principal& p) {
               return noContentOr(id.removeMember(p, req.params.at("name"), req.params.at("login")));
             }));

  // ---- API tokens
  router.add("GET", "/api/v1/tokens", authed([&id](const Request& req, const core::Principal& p) {
               auto filter = parseTokenFilter(req);
               if (!filter.ok()) return Response::error(filter.error());
               return renderList("tokens", id.listTokens(p, *filter));
             }));
  router.add("POST", "/api/v1/tokens", authed([&id](const Request& req, const core::Principal& p) {
               return withBody(req, parseNewToken, [&](const core::NewToken& t) {
                 auto r = id.createToken(p, t);
                 if (!r.ok()) return Response::error(r.error());
                 json out = toJson(r->record);
                 out["token"] = r->secret;  // the only time the secret is shown
                 Response resp = Response::json(201, out);
                 resp.headers["Cache-Control"] = "no-store";
                 return resp;
               });
             }));
  router.add("DELETE", "/api/v1/tokens/{id}", authed([&id](const Request& req, const core::Principal& p) {
               auto tokenId = parseTokenId(req.params.at("id"));
               if (!tokenId.ok()) return Response::error(tokenId.error());
               return noContentOr(id.revokeToken(p, *tokenId));
             }));
}

}  // namespace corral::api
