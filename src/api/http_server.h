// HTTP/1.1 and WebSocket over a unix socket and, optionally, over TCP with TLS:
// accepts connections on the daemon's io_context, reads requests with
// Boost.Beast, and hands each to the Router on an internal thread pool, because
// handlers may block for seconds (starting or stopping a VM). The io_context
// threads only do I/O and never run a handler.
//
// Each connection reads its peer's identity once (SO_PEERCRED on the unix socket;
// the address and a verified client certificate's email over TLS), keeps alive
// between requests, and is bounded everywhere a peer could hold it up: header
// and body size, a deadline for a whole request, an idle timeout, a TLS
// handshake timeout, a write timeout and a connection cap (see
// HttpServerOptions). Every request gets an id, logged with method, path, status
// and duration. Authentication policy is not decided here:
// HttpServerOptions::authenticate is called before dispatch and before a
// WebSocket upgrade. Beast stays in the .cc files so that this header is cheap
// to include.
#pragma once

#include <sys/stat.h>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "api/router.h"
#include "util/result.h"

namespace boost::asio {
class io_context;
}

namespace corral::util::metrics {
class Registry;
}

namespace corral::api {

namespace detail {
struct HttpServerImpl;  // http_server_impl.h
}

struct HttpServerOptions {
  // ---- listeners
  std::string socketPath;  // required
  mode_t socketMode = 0600;
  // "ADDR:PORT" for the TLS listener, "" for none: "0.0.0.0:8443", "[::]:8443",
  // "127.0.0.1:0" (0: any free port, see HttpServer::tcpPort). Literal addresses
  // only: a listener bound to whatever a name resolves to today is a surprise.
  std::string tcpListen;
  std::string tlsCertFile;  // PEM chain; required with tcpListen (see api/tls.h for a self-signed one)
  std::string tlsKeyFile;   // PEM private key
  // When set, clients are asked for a certificate and it is verified against
  // this CA bundle; a verified one's email fills Request::clientCertEmail. No
  // certificate or a failed verification still connects: the authenticator
  // decides what an anonymous TLS peer may do.
  std::string tlsClientCaFile;

  // ---- limits (each bounds what one peer can cost the others)
  size_t maxHeaderBytes = 8 << 10;  // request line + headers; larger: 431, then close
  size_t maxBodyBytes = 1 << 20;    // larger bodies get 413 and the connection closes
  // Upload routes (Router::addUpload): bodies are streamed into a new 0600 file
  // in uploadDir (must exist; "" refuses every upload with 503), up to
  // maxUploadBytes (413 beyond). Instead of requestTimeout, an upload may take
  // as long as it keeps sending: each read must arrive within idleTimeout.
  std::string uploadDir;
  uint64_t maxUploadBytes = uint64_t(64) << 30;
  // A request must arrive whole (headers and body) within this time of its first
  // byte (of the connection, for the first request), or the connection closes
  // without an answer: a slowloris peer holds a connection slot for no longer.
  std::chrono::milliseconds requestTimeout = std::chrono::seconds(30);
  // A keep-alive connection may wait this long for its next request.
  std::chrono::milliseconds idleTimeout = std::chrono::seconds(60);
  std::chrono::milliseconds tlsHandshakeTimeout = std::chrono::seconds(10);
  // Writing one response (or one WebSocket message) may take this long; a peer
  // that does not read is closed after it.
  std::chrono::milliseconds writeTimeout = std::chrono::seconds(30);
  // Open connections (HTTP and WebSocket) on the TLS listener, in all and from
  // one peer address (IPv6: one /64, which one client usually holds whole); and
  // on the unix socket, a budget of its own that no TLS peer can spend (root's
  // `corral` keeps working while the TLS listener is flooded). Past a cap a new
  // connection is closed at once; on the unix socket after a 503 written without
  // waiting, over TLS without a word (a handshake would cost what the cap saves).
  size_t maxConnections = 1000;
  size_t maxConnectionsPerAddress = 64;
  size_t maxUnixConnections = 256;

  // ---- WebSocket
  // A socket's unsent messages may hold this many bytes; a message past it
  // closes the socket instead of waiting (a slow viewer is dropped, never waited
  // for).
  size_t maxWsQueueBytes = 4 << 20;
  size_t maxWsMessageBytes = 1 << 20;  // larger incoming messages close the socket
  // A ping after this much silence from the peer; closed after twice as much.
  std::chrono::milliseconds wsPingInterval = std::chrono::seconds(30);
  // Origins allowed to open a WebSocket, exactly as browsers send them
  // ("https://corral.example.org"). Always allowed: no Origin header (not a
  // browser) and an Origin whose host[:port] equals the Host header (our own
  // UI). Others get 403 before the upgrade: the cross-site WebSocket hijacking
  // defence, since browsers send cookies with a WebSocket handshake.
  std::vector<std::string> allowedOrigins;

  // ---- policy
  // Called on a handler thread before dispatch and before a WebSocket route's
  // handler; it may set req.principal. An Error refuses the request with that
  // error (Unauthenticated -> 401, Forbidden -> 403, RateLimited -> 429).
  // Empty: every peer is allowed, with no principal.
  std::function<std::optional<Error>(Request&)> authenticate;
  size_t handlerThreads = 4;

  // ---- metrics
  // When set (it must outlive the server): requests by route pattern, method
  // and status with their latency, open connections by transport, open
  // WebSockets (see HttpMetrics in http_server_impl.h for the names).
  util::metrics::Registry* metrics = nullptr;
};

class HttpServer {
 public:
  // io must outlive the server and router must outlive it; the server must be
  // destroyed before io is (posted completions refer to io's executor). io may be
  // run by several threads: each connection keeps to its own strand.
  HttpServer(boost::asio::io_context& io, const Router& router, HttpServerOptions opts);
  // stop(), waits for running handlers, then (while io runs) up to 2 s for the
  // connections to close, so that WebSocket onClose callbacks have run.
  ~HttpServer();
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  // Loads the TLS certificate and key (when tcpListen is set), binds the unix
  // socket (mode socketMode), then the TCP port, listens, and starts accepting on
  // io. A leftover socket file that nothing answers on is removed first; a socket
  // on which something answers (another corrald) is an Unavailable error, and the
  // file is left alone. Any failure leaves nothing bound. Call once, from any
  // thread (io may already be running); accepting begins when io runs.
  Result<void> start();

  // Closes the listeners and every open connection (WebSockets too), removes the
  // socket file. Handlers already running finish; their responses are dropped.
  // Idempotent; any thread.
  void stop();

  const std::string& socketPath() const;
  // The bound TCP port (useful with port 0), 0 without a TCP listener.
  uint16_t tcpPort() const;
  // Open connections now (for tests and the state report).
  size_t connectionCount() const;

 private:
  std::shared_ptr<detail::HttpServerImpl> impl_;
};

}  // namespace corral::api
