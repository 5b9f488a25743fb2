// The API's authenticator: decides, before dispatch, who a Request comes from
// and sets Request::principal (docs/control-plane.md, Identity). The order is
// fixed: the one public route (POST /api/v1/login) needs nobody; the unix
// socket is its peer's uid; over TLS a Bearer token, else the __Host-corral_session
// cookie (with the CSRF check on every method but GET/HEAD), else, when
// enabled, a verified client certificate's email, else, when enabled, a trusted
// proxy's header. Nothing else gets in.
//
// What a principal may do is core::Identity's and the routes' business; this
// file only establishes who they are.
#pragma once

#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "api/router.h"
#include "core/identity.h"
#include "util/result.h"

namespace corral::api {

struct AuthOptions {
  // Peer addresses (as Request::peerAddress spells them, e.g. "127.0.0.1") whose
  // proxyHeader names the user. Empty: no proxy is trusted.
  std::vector<std::string> trustedProxies;
  std::string proxyHeader = "x-remote-user";  // lowercase, as Request::headers keys are
  // Map a verified TLS client certificate's email to the user with that email.
  bool clientCertLogin = false;
};

using Authenticator = std::function<std::optional<Error>(Request&)>;

// An authenticator for HttpServerOptions; identity must outlive it. nullopt:
// the request may proceed (req.principal is set unless the route is public);
// otherwise the error to answer with (Unauthenticated 401, Forbidden 403 for a
// missing or wrong CSRF token).
Authenticator makeAuthenticator(core::Identity& identity, AuthOptions opts = {});

// The value of cookie `name` in a Cookie header ("a=1; b=2"), or "" when absent.
std::string cookieValue(const std::string& cookieHeader, std::string_view name);

// The session cookie's name.
inline constexpr std::string_view kSessionCookie = "__Host-corral_session";

}  // namespace corral::api
