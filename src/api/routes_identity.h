// The identity routes: login/logout/whoami, users, users' SSH keys, groups,
// memberships and API tokens (docs/api.yaml). Handlers parse JSON (refusing
// unknown fields and wrong types by name), hand values to core::Identity and
// render the result; the access rules are Identity's. No response ever carries a password hash, a
// token hash or a session id other than the Set-Cookie of a login.
#pragma once

#include "api/router.h"
#include "core/identity.h"

namespace corral::api {

// identity must outlive router. Every route but POST /api/v1/login expects
// Request::principal set by the authenticator (api/auth.h) and answers 401
// without one.
void addIdentityRoutes(Router& router, core::Identity& identity);

}  // namespace corral::api
