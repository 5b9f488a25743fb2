// Small pieces every route table uses: the authenticated-handler wrapper, body
// parsing, and the usual answers. Internal to api/.
#pragma once

#include <string_view>
#include <utility>

#include <fmt/format.h>

#include "api/json_model.h"
#include "api/router.h"
#include "api/routes_ops.h"

namespace corral::api {

// Handlers behind the authenticator get the caller; without one (no
// authenticator installed, or a bug) they refuse rather than run as nobody.
template <class F>
Handler authed(F f) {
  return [f = std::move(f)](const Request& req) -> Response {
    if (!req.principal) return Response::error(Error::unauthenticated("this route needs credentials"));
    return f(req, *req.principal);
  };
}

// Parses the JSON body with `parse`, then answers with `act(parsed value)`.
template <class Parse, class Act>
Response withBody(const Request& req, Parse parse, Act act) {
  auto body = req.jsonBody();
  if (!body.ok()) return Response::error(body.error());
  auto parsed = parse(*body);
  if (!parsed.ok()) return Response::error(parsed.error());
  return act(std::move(*parsed));
}

template <class T>
Response render(Result<T> r, int status = 200) {
  if (!r.ok()) return Response::error(r.error());
  return Response::json(status, toJson(*r));
}

// A VM answer with its ETag, so that a client can modify it with If-Match.
inline Response renderVm(Result<store::VmRecord> r, int status = 200) {
  if (!r.ok()) return Response::error(r.error());
  Response resp = Response::json(status, toJson(*r));
  resp.headers["ETag"] = etag(r->version);
  return resp;
}

// A VM with its disks (GET one, create), with its ETag.
inline Response renderVmWithDisks(const store::VmRecord& vm, const Result<std::vector<store::DiskRecord>>& disks,
                                  int status = 200) {
  if (!disks.ok()) return Response::error(disks.error());
  Response resp = Response::json(status, toJson(vm, *disks));
  resp.headers["ETag"] = etag(vm.version);
  return resp;
}

inline Response noContentOr(const Result<void>& r) {
  return r.ok() ? Response::noContent() : Response::error(r.error());
}

inline Result<void> adminOnly(const core::Principal& who, std::string_view what) {
  if (who.admin) return ok();
  return Error::forbidden(fmt::format("only admins {}", what));
}

// 202 Accepted with an operation; Location names it.
inline Response acceptedOperation(const store::OperationRecord& op) {
  Response r = Response::json(202, toJson(op));
  r.headers["Location"] = "/api/v1/operations/" + op.id;
  return r;
}

}  // namespace corral::api
