// See auth.h.
#include "api/auth.h"

#include <boost/asio/ip/address.hpp>

#include <algorithm>
#include <cctype>
#include <memory>

#include "util/crypto.h"

namespace corral::api {

namespace {

bool isPublic(const Request& req) {
  std::string_view path = req.path;
  while (path.size() > 1 && path.back() == '/') path.remove_suffix(1);  // the router ignores a trailing slash too
  return req.method == "POST" && path == "/api/v1/login";
}

bool iequals(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return std::tolower(static_cast<unsigned char>(x)) == std::tolower(static_cast<unsigned char>(y));
         });
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

std::optional<Error> setPrincipal(Request& req, Result<core::Principal> p) {
  if (!p.ok()) return std::move(p).error();
  req.principal = std::make_shared<const core::Principal>(std::move(p).take());
  return std::nullopt;
}

}  // namespace

std::string cookieValue(const std::string& cookieHeader, std::string_view name) {
  std::string_view rest = cookieHeader;
  while (!rest.empty()) {
    size_t semi = rest.find(';');
    std::string_view pair = trim(rest.substr(0, semi));
    rest = semi == std::string_view::npos ? std::string_view{} : rest.substr(semi + 1);
    size_t eq = pair.find('=');
    if (eq == std::string_view::npos) continue;
    if (trim(pair.substr(0, eq)) != name) continue;
    std::string_view value = trim(pair.substr(eq + 1));
    if (value.size() >= 2 && value.front() == '"' && value.back() == '"') value = value.substr(1, value.size() - 2);
    return std::string(value);
  }
  return {};
}

Authenticator makeAuthenticator(core::Identity& identity, AuthOptions opts) {
  for (char& c : opts.proxyHeader) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return [&identity, opts = std::move(opts)](Request& req) -> std::optional<Error> {
    req.principal.reset();
    const bool viaProxy =
        std::find(opts.trustedProxies.begin(), opts.trustedProxies.end(), req.peerAddress) != opts.trustedProxies.end();
    req.clientAddress = req.peerAddress;
    if (viaProxy) {
      // The proxy appends the address it received the request from: the last entry.
      const std::string& xff = req.header("x-forwarded-for");
      std::string last(trim(std::string_view(xff).substr(xff.rfind(',') == std::string::npos ? 0 : xff.rfind(',') + 1)));
      boost::system::error_code ec;
      (void)boost::asio::ip::make_address(last, ec);
      if (!last.empty() && !ec) req.clientAddress = last;
    }
    if (isPublic(req)) return std::nullopt;

    if (req.transport == "unix") return setPrincipal(req, identity.fromUnixPeer(req.peerUid));
    if (req.transport != "tls") return Error::unauthenticated("unknown transport");

    if (const std::string& auth = req.header("authorization"); !auth.empty()) {
      std::string_view v = trim(auth);
      if (v.size() < 7 || !iequals(v.substr(0, 7), "bearer "))
        return Error::unauthenticated("Authorization: only \"Bearer <token>\" is accepted");
      return setPrincipal(req, identity.fromToken(std::string(trim(v.substr(7)))));
    }

    if (std::string cookie = cookieValue(req.header("cookie"), kSessionCookie); !cookie.empty()) {
      auto p = identity.fromSession(cookie);
      if (!p.ok()) return std::move(p).error();
      // A cookie rides along with any request the browser makes, including ones
      // another site triggers; only our own pages know the CSRF token.
      if (req.method != "GET" && req.method != "HEAD") {
        const std::string& sent = req.header("x-csrf-token");
        if (sent.empty() || !util::constantTimeEquals(sent, p->csrfToken))
          return Error::forbidden("CSRF token missing or wrong: send the login's csrf_token as X-CSRF-Token");
      }
      return setPrincipal(req, std::move(p));
    }

    if (opts.clientCertLogin && !req.clientCertEmail.empty())
      return setPrincipal(req, identity.fromCertEmail(req.clientCertEmail));

    if (viaProxy) {
      if (const std::string& user = req.header(opts.proxyHeader); !user.empty())
        return setPrincipal(req, identity.fromLogin(std::string(trim(user)), "proxy"));
    }

    return Error::unauthenticated("who are you? send \"Authorization: Bearer <token>\" or log in");
  };
}

}  // namespace corral::api
