// The API's request/response values and the route table that maps (method, path
// pattern) to a handler.
//
// Request and Response are plain values: the transport (http_server.cc) fills a
// Request from the wire and writes a Response back; handlers (api/routes/*) never
// see Beast. The Router matches "/api/v1/vms/{name}" style patterns segment by
// segment, fills Request::params (percent-decoded), and answers 404 for an unknown
// path and 405 (with an Allow header) for a known path with the wrong method. It
// holds no business rules and does no authentication (HttpServerOptions::authenticate
// runs before dispatch).
#pragma once

#include <sys/types.h>

#include <functional>
#include <map>
#include <optional>
#include <set>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "api/websocket.h"
#include "core/principal.h"
#include "util/logging.h"
#include "util/result.h"

namespace corral::api {

struct Request {
  std::string method;                         // "GET", "POST", "DELETE"
  std::string path;                           // "/api/v1/vms/web1", as received, without the query
  std::map<std::string, std::string> query;   // decoded ?a=b
  std::map<std::string, std::string> params;  // from the route pattern {name}, decoded
  // The pattern of the route that matched ("/api/v1/vms/{name}"), set by the
  // Router; "" when none did. Metrics label requests with it, never the path.
  std::string route;
  std::string body;
  // Header names lowercased ("authorization", "cookie", "if-match", "origin",
  // "x-csrf-token"); a repeated header keeps the last value.
  std::map<std::string, std::string> headers;
  std::string transport = "unix";  // "unix" | "tls"
  uid_t peerUid = (uid_t)-1;  // SO_PEERCRED of the unix-socket peer
  pid_t peerPid = 0;
  std::string peerAddress;      // "127.0.0.1" for TLS peers, "" on the unix socket
  // The client as far as corral can tell (set by the authenticator): the TLS
  // peer, or behind a trusted proxy the address that proxy added last to
  // X-Forwarded-For. What login throttles key on. "" on the unix socket.
  std::string clientAddress;
  std::string clientCertEmail;  // a verified TLS client certificate's email, when any
  std::string requestId;  // generated per request, logged with it
  // Upload routes only: the file the body was streamed into, and its size. The
  // transport removes the file after the handler returns unless the handler
  // moved it away (renamed it) to keep it.
  std::string uploadFile;
  uint64_t uploadBytes = 0;
  // Set by HttpServerOptions::authenticate before dispatch; null when the route
  // is public (login) or no authenticator is installed.
  std::shared_ptr<const core::Principal> principal;

  // The header's value, or "" when absent; name in lowercase.
  const std::string& header(const std::string& lowercaseName) const;

  // The body parsed as JSON. An empty (or all-blank) body is {}; malformed JSON is
  // InvalidInput with field "body"; a body whose Content-Type is not
  // application/json (no form can send that cross-site) is InvalidInput with
  // field "content-type".
  Result<nlohmann::json> jsonBody() const;
};

struct Response {
  int status = 200;
  std::string contentType = "application/json";
  std::string body;
  // Extra response headers (e.g. "Allow" on a 405). Content-Type and
  // Content-Length are set by the transport from the fields above.
  std::map<std::string, std::string> headers;

  static Response json(int status, const nlohmann::json& j);
  static Response text(int status, std::string body);
  // The error JSON of http_error.h with its status. An empty requestId takes the
  // id of the request the calling thread is serving (see RequestIdScope), so a
  // handler may simply `return Response::error(e);`. Internal errors are logged
  // here with the real message; the body only carries a report id.
  static Response error(const Error& e, std::string_view requestId = {});
  static Response noContent();  // 204

  // A handler that answers later (an operation wait) returns deferred(start):
  // the transport calls start once, on its pool thread, with `answer`, which is
  // then called exactly once, from any thread, with the real response. The
  // handler thread is free meanwhile; the connection reads and writes nothing
  // else until the answer comes.
  using Answer = std::function<void(Response)>;
  std::function<void(Answer)> later;
  static Response deferred(std::function<void(Answer)> start);
};

// For callers without an asynchronous transport (tests): a deferred response's
// answer, waited for; any other response as it is.
Response settle(Response r);

using Handler = std::function<Response(const Request&)>;

class Router {
 public:
  // pattern: absolute path whose segments are literals or "{name}" (one whole,
  // non-empty segment). Not thread-safe: build the table before serving; after
  // that dispatch() may run on many threads at once.
  void add(std::string method, std::string pattern, Handler h);

  // Fills req.params and calls the matching handler. A trailing slash is ignored
  // ("/api/v1/vms/" is "/api/v1/vms"). Literal segments win over parameters when
  // both would match. 404 for an unknown path, 405 with Allow for a known path
  // and the wrong method. Does not catch exceptions: the transport does.
  Response dispatch(Request& req) const;

  // A WebSocket route at pattern (method GET). dispatch() of a plain GET there
  // answers 400 asking for an upgrade.
  // selfAuthenticated: the handler authenticates the request itself (console
  // WebSockets take a signed ?token=), so the transport's authenticator is not
  // run and req.principal stays null.
  void addWebSocket(std::string pattern, WsHandler h, bool selfAuthenticated = false);

  // For an upgrade request: the WebSocket route matching req.path with req.params
  // filled, or null (the transport then answers as dispatch() would);
  // *selfAuthenticated (when given) says how that route was added.
  const WsHandler* matchWebSocket(Request& req, bool* selfAuthenticated = nullptr) const;

  // An upload route: the body is never held in memory but streamed into a file
  // (HttpServerOptions::uploadDir/maxUploadBytes), then h runs with
  // req.uploadFile set. Once the header is read, and before any body byte is
  // accepted, the transport authenticates and calls admit (headers only, params
  // filled): a Response from it refuses the upload (answered, connection closed)
  // so that an unauthorised client never sends gigabytes; an "Expect:
  // 100-continue" client gets its 100 only after admit said yes.
  using Admit = std::function<std::optional<Response>(const Request&)>;
  void addUpload(std::string method, std::string pattern, Admit admit, Handler h);
  // For a request whose header was read: the upload route it matches (params
  // filled), or null.
  struct UploadRoute {
    Admit admit;
    Handler handler;
  };
  const UploadRoute* matchUpload(Request& req) const;

  // (method, pattern) in the order added, WebSocket routes as GET, for the OpenAPI test.
  std::vector<std::pair<std::string, std::string>> routes() const;

 private:
  struct Route {
    std::string method;
    std::string pattern;
    std::vector<std::string> segments;  // "{x}" kept verbatim for parameters
    Handler handler;
    WsHandler wsHandler;  // set for WebSocket routes only
    bool wsSelfAuthenticated = false;
    std::shared_ptr<UploadRoute> upload;  // set for upload routes only
  };
  // The best route for path and method (literal segments win), filling params;
  // null when none, with *allowed the methods that path takes.
  const Route* match(Request& req, std::set<std::string>* allowed) const;
  std::vector<Route> routes_;
};

// A fresh request id: 16 lowercase hex digits, random per process and counted
// per request, short enough to read out loud from a report.
std::string newRequestId();

// The request id of the request the calling thread is serving, or "" outside a
// request. Set by the transport around each handler call (util/logging.h keeps
// it, so that every layer's log lines carry it).
inline std::string_view currentRequestId() { return util::log::requestId(); }
using RequestIdScope = util::log::RequestScope;

// Percent-decoding for one path segment or query component. '+' becomes a space
// only when plusAsSpace (query strings). Malformed escapes are kept verbatim.
std::string percentDecode(std::string_view s, bool plusAsSpace);

// Splits "a=1&b=x%20y" into decoded pairs; a later duplicate key wins.
std::map<std::string, std::string> parseQuery(std::string_view query);

}  // namespace corral::api
