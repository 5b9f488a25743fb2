// Internal to the HTTP transport (http_server.cc, http_session.cc): the state a
// server shares with its connections. Not for use outside src/api/http_*.cc.
//
// Lifetimes: every connection holds a shared_ptr to HttpServerImpl (options,
// router pointer, TLS context, stop flag), so a completion arriving after stop()
// finds a valid object and quietly closes. The router and the pool are only used
// while the HttpServer lives; its destructor joins the pool, so no handler
// outlives it.
#pragma once

#include <atomic>
#include <chrono>
#include <memory>
#include <mutex>
#include <unordered_map>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/thread_pool.hpp>

#include "api/http_server.h"
#include "util/metrics.h"

namespace corral::api::detail {

namespace asio = boost::asio;
using Local = asio::local::stream_protocol;
using Tcp = asio::ip::tcp;
using Strand = asio::strand<asio::io_context::executor_type>;
using LocalSocket = asio::basic_stream_socket<Local, Strand>;
using TcpSocket = asio::basic_stream_socket<Tcp, Strand>;

// An open connection (HTTP session or WebSocket) as the server sees it.
class Connection {
 public:
  virtual ~Connection() = default;
  // Closes the connection on its own strand; any thread.
  virtual void shutdown() = 0;
};

struct HttpServerImpl;

// One unit of HttpServerOptions::maxConnections, held by whichever object owns
// the socket (a session, then its WebSocket after an upgrade) and given back
// when that object goes.
class ConnectionSlot {
 public:
  // open: the open-connections gauge of the slot's transport (null: none),
  // counted up here and down when the slot goes.
  // peer: the TLS peer's address key (core::addressThrottleKey); "" on the unix socket.
  ConnectionSlot(std::shared_ptr<HttpServerImpl> srv, util::metrics::Gauge* open, bool tcp, std::string peer)
      : srv_(std::move(srv)), open_(open), tcp_(tcp), peer_(std::move(peer)) {
    if (open_ != nullptr) open_->inc();
  }
  ~ConnectionSlot();
  ConnectionSlot(ConnectionSlot&&) = default;
  ConnectionSlot& operator=(ConnectionSlot&&) = delete;
  ConnectionSlot(const ConnectionSlot&) = delete;
  HttpServerImpl& server() const { return *srv_; }
  const std::shared_ptr<HttpServerImpl>& serverPtr() const { return srv_; }

 private:
  std::shared_ptr<HttpServerImpl> srv_;
  util::metrics::Gauge* open_ = nullptr;
  bool tcp_ = false;
  std::string peer_;
};

// The transport's own metrics (HttpServerOptions::metrics).
struct HttpMetrics {
  explicit HttpMetrics(util::metrics::Registry& r);
  // An answered request (101 for a WebSocket upgrade), labelled with the route
  // pattern ("unmatched" when none) and the method (unusual ones as "other").
  void request(const Request& req, int status, std::chrono::steady_clock::duration took);

  util::metrics::Family<util::metrics::Counter>& requests;
  util::metrics::Family<util::metrics::Histogram>& latency;
  util::metrics::Gauge& unixConnections;
  util::metrics::Gauge& tcpConnections;
  util::metrics::Gauge& websockets;
};

struct HttpServerImpl : std::enable_shared_from_this<HttpServerImpl> {
  HttpServerImpl(asio::io_context& ioc, const Router& r, HttpServerOptions o);

  asio::io_context& io;
  const Router* router;
  HttpServerOptions opts;
  asio::thread_pool pool;
  Strand acceptorStrand;
  Local::acceptor acceptor;  // touched only on acceptorStrand (or before io runs)
  Strand tcpStrand;
  Tcp::acceptor tcpAcceptor;  // touched only on tcpStrand (or before io runs)
  std::unique_ptr<asio::ssl::context> tls;  // set by start() when tcpListen is
  std::unique_ptr<HttpMetrics> metrics;     // set when opts.metrics is
  uint16_t tcpPort = 0;

  std::atomic<bool> stopped{false};
  std::atomic<size_t> active{0};  // ConnectionSlots alive
  std::atomic<uint64_t> refused{0};
  std::mutex slotsMu;  // guards the counts below
  size_t tcpSlots = 0, unixSlots = 0;
  std::unordered_map<std::string, size_t> slotsOfPeer;  // TLS slots by peerKey
  std::mutex mu;  // guards conns, the socket identity, and posting to pool
  std::unordered_map<Connection*, std::weak_ptr<Connection>> conns;
  bool haveSocketFile = false;
  bool listening = false;
  dev_t socketDev = 0;
  ino_t socketIno = 0;

  // A slot when the caps allow one more connection (of this transport, from this
  // peer), else nothing (and the refusal counted and logged now and then).
  std::optional<ConnectionSlot> takeSlot(bool tcp, const std::string& peer = {});
  void giveSlot(bool tcp, const std::string& peer);
  void track(Connection* c, std::weak_ptr<Connection> w);
  void untrack(Connection* c);
  void doAccept();
  void doAcceptTcp();
  void stop();
};

// http_session.cc: serve one accepted connection until it closes.
void startUnixSession(ConnectionSlot slot, LocalSocket&& sock);
void startTlsSession(ConnectionSlot slot, TcpSocket&& sock);

// http_session.cc: the TLS context for the options (TLS 1.2+, no compression,
// the certificate and key, the client CA when set).
Result<std::unique_ptr<asio::ssl::context>> makeServerTlsContext(const HttpServerOptions& opts);

}  // namespace corral::api::detail
