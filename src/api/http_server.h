// HTTP/1.1 over a unix socket: accepts connections on the daemon's io_context,
// reads requests with Boost.Beast, and hands each to the Router on an internal
// thread pool, because handlers may block for seconds (starting or stopping a
// VM). The io_context thread only does I/O and never runs a handler.
//
// Each connection reads SO_PEERCRED once (the caller's identity), keeps alive
// between requests, and answers 413 past maxBodyBytes. Every request gets an id,
// logged with method, path, status and duration. Authentication policy is not
// decided here: HttpServerOptions::authorize is called before dispatch.
// Beast stays in http_server.cc so that this header is cheap to include.
#pragma once

#include <sys/stat.h>

#include <cstddef>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "api/router.h"
#include "util/result.h"

namespace boost::asio {
class io_context;
}

namespace corral::api {

namespace detail {
struct HttpServerImpl;  // http_server.cc
}

struct HttpServerOptions {
  std::string socketPath;
  mode_t socketMode = 0600;
  size_t maxBodyBytes = 1 << 20;  // larger bodies get 413 and the connection closes
  // Called on a handler thread before dispatch; an Error refuses the request with
  // that error (e.g. Forbidden -> 403). Empty: every peer is allowed.
  std::function<std::optional<Error>(const Request&)> authorize;
  size_t handlerThreads = 4;
};

class HttpServer {
 public:
  // io must outlive the server and router must outlive it; the server must be
  // destroyed before io is (posted completions refer to io's executor).
  HttpServer(boost::asio::io_context& io, const Router& router, HttpServerOptions opts);
  ~HttpServer();  // stop(), then waits for running handlers
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  // Binds the socket (mode socketMode), listens, and starts accepting on io.
  // A leftover socket file that nothing answers on is removed first; a socket on
  // which something answers (another corrald) is an Unavailable error, and the
  // file is left alone. Call once, from any thread (io may already be running);
  // accepting begins when io runs.
  Result<void> start();

  // Closes the listener and every open connection, removes the socket file.
  // Handlers already running finish; their responses are dropped. Idempotent;
  // any thread.
  void stop();

  const std::string& socketPath() const;

 private:
  std::shared_ptr<detail::HttpServerImpl> impl_;
};

}  // namespace corral::api
