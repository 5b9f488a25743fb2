// The HTTP transport's listeners: the unix-socket and TLS acceptors, the
// connection cap, stop(). One connection is served by http_session.cc. See
// http_server.h.
//
// Threads: each acceptor lives on its own strand of the daemon's io_context, and
// each accepted connection gets a fresh strand (http_session.cc), so io may be
// run by several threads and a slow peer only ever occupies its own strand.
#include "api/http_server.h"

#include <arpa/inet.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <thread>

#include <boost/asio/dispatch.hpp>
#include <boost/asio/post.hpp>
#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "api/http_error.h"
#include "api/http_server_impl.h"
#include "core/rate_limit.h"

namespace corral::api {
namespace detail {

HttpServerImpl::HttpServerImpl(asio::io_context& ioc, const Router& r, HttpServerOptions o)
    : io(ioc),
      router(&r),
      opts(std::move(o)),
      pool(std::max<size_t>(1, opts.handlerThreads)),
      acceptorStrand(asio::make_strand(ioc)),
      acceptor(acceptorStrand),
      tcpStrand(asio::make_strand(ioc)),
      tcpAcceptor(tcpStrand) {
  if (opts.metrics != nullptr) metrics = std::make_unique<HttpMetrics>(*opts.metrics);
}

ConnectionSlot::~ConnectionSlot() {
  if (!srv_) return;  // moved from
  srv_->giveSlot(tcp_, peer_);
  if (open_ != nullptr) open_->dec();
}

HttpMetrics::HttpMetrics(util::metrics::Registry& r)
    : requests(r.counter("corral_api_requests_total", "API requests answered, by route pattern and status code.",
                         {"method", "route", "code"})),
      latency(r.histogram("corral_api_request_duration_seconds",
                          "Time from a request's first byte to its answer being ready, by route pattern.",
                          {"method", "route"})),
      unixConnections(r.gauge("corral_api_open_connections", "Open API connections (HTTP and WebSocket).",
                              {"transport"})
                          .labels({"unix"})),
      tcpConnections(r.gauge("corral_api_open_connections", "Open API connections (HTTP and WebSocket).",
                             {"transport"})
                         .labels({"tcp"})),
      websockets(r.gauge("corral_api_open_websockets", "Open WebSockets (consoles, events).").labels({})) {}

void HttpMetrics::request(const Request& req, int status, std::chrono::steady_clock::duration took) {
  // A client chooses the method: only the ones the API uses become labels.
  static const std::string_view kMethods[] = {"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"};
  std::string_view method = "other";
  for (auto m : kMethods)
    if (req.method == m) method = m;
  std::string_view route = req.route.empty() ? std::string_view("unmatched") : std::string_view(req.route);
  requests.labels({method, route, std::to_string(status)}).inc();
  latency.labels({method, route}).observe(std::chrono::duration<double>(took).count());
}

std::optional<ConnectionSlot> HttpServerImpl::takeSlot(bool tcp, const std::string& peer) {
  {
    std::lock_guard lock(slotsMu);
    size_t& mine = tcp ? tcpSlots : unixSlots;
    const size_t max = std::max<size_t>(1, tcp ? opts.maxConnections : opts.maxUnixConnections);
    const bool full = mine >= max;
    const bool peerFull = tcp && slotsOfPeer[peer] >= std::max<size_t>(1, opts.maxConnectionsPerAddress);
    if (full || peerFull) {
      if (tcp && slotsOfPeer[peer] == 0) slotsOfPeer.erase(peer);
      uint64_t n = refused.fetch_add(1) + 1;
      if (n == 1 || n % 1000 == 0)
        spdlog::warn("http: refused a new {} connection{}: {} open, the limit ({} refused so far)",
                     tcp ? "TLS" : "unix-socket", peerFull ? fmt::format(" from {}", peer) : "",
                     peerFull ? slotsOfPeer[peer] : mine, n);
      return std::nullopt;
    }
    ++mine;
    if (tcp) ++slotsOfPeer[peer];
  }
  active.fetch_add(1);
  util::metrics::Gauge* open = nullptr;
  if (metrics) open = tcp ? &metrics->tcpConnections : &metrics->unixConnections;
  return ConnectionSlot(shared_from_this(), open, tcp, peer);
}

void HttpServerImpl::giveSlot(bool tcp, const std::string& peer) {
  {
    std::lock_guard lock(slotsMu);
    --(tcp ? tcpSlots : unixSlots);
    if (tcp) {
      auto it = slotsOfPeer.find(peer);
      if (it != slotsOfPeer.end() && --it->second == 0) slotsOfPeer.erase(it);
    }
  }
  active.fetch_sub(1);
}

void HttpServerImpl::track(Connection* c, std::weak_ptr<Connection> w) {
  std::lock_guard lock(mu);
  conns.emplace(c, std::move(w));
}

void HttpServerImpl::untrack(Connection* c) {
  std::lock_guard lock(mu);
  conns.erase(c);
}

namespace {

// Answers a connection past the cap on the unix socket with a 503 if the socket
// takes it right now, then closes. Never waits: a full socket buffer just means
// the peer gets no explanation.
void refuseUnix(LocalSocket& sock) {
  static const std::string kBody =
      errorBody(Error::unavailable("too many connections to corrald; try again shortly"), {}).dump();
  static const std::string kResponse = fmt::format(
      "HTTP/1.1 503 Service Unavailable\r\nServer: corrald\r\nContent-Type: application/json\r\n"
      "Retry-After: 1\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{}",
      kBody.size(), kBody);
  [[maybe_unused]] ssize_t n =
      ::send(sock.native_handle(), kResponse.data(), kResponse.size(), MSG_DONTWAIT | MSG_NOSIGNAL);
  boost::system::error_code ec;
  sock.close(ec);
}

std::string peerKeyOf(const TcpSocket& sock) {
  boost::system::error_code ec;
  auto ep = sock.remote_endpoint(ec);
  return ec ? std::string("?") : core::addressThrottleKey(ep.address().to_string());
}

// Whether something accepts connections on path (another daemon).
bool socketAnswers(const std::string& path) {
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return false;
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
  bool answers = ::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0;
  ::close(fd);
  return answers;
}

// "1.2.3.4:443" or "[::1]:443" -> endpoint; literal addresses only.
Result<Tcp::endpoint> parseListen(const std::string& s) {
  auto bad = [&](std::string_view why) { return Error::invalidInput("listen", s, why); };
  std::string host;
  std::string port;
  if (!s.empty() && s.front() == '[') {
    size_t close = s.find(']');
    if (close == std::string::npos || close + 1 >= s.size() || s[close + 1] != ':')
      return bad("must be ADDR:PORT, with an IPv6 address in brackets ([::]:8443)");
    host = s.substr(1, close - 1);
    port = s.substr(close + 2);
  } else {
    size_t colon = s.rfind(':');
    if (colon == std::string::npos || s.find(':') != colon)
      return bad("must be ADDR:PORT (0.0.0.0:8443, or [::]:8443 for IPv6)");
    host = s.substr(0, colon);
    port = s.substr(colon + 1);
  }
  if (port.empty() || port.size() > 5 || port.find_first_not_of("0123456789") != std::string::npos ||
      std::stoul(port) > 65535)
    return bad("the port must be a number from 0 to 65535");
  boost::system::error_code ec;
  auto addr = asio::ip::make_address(host, ec);
  if (ec) return bad("the address must be a literal IPv4 or IPv6 address");
  return Tcp::endpoint(addr, static_cast<uint16_t>(std::stoul(port)));
}

}  // namespace

void HttpServerImpl::doAccept() {
  acceptor.async_accept(asio::make_strand(io), [self = shared_from_this()](boost::system::error_code ec,
                                                                           LocalSocket sock) {
    if (self->stopped || ec == asio::error::operation_aborted) return;
    if (ec) {
      // EMFILE and friends: log and keep accepting; a busy host should not lose its API.
      spdlog::warn("http: accept on {} failed: {}", self->opts.socketPath, ec.message());
    } else if (auto slot = self->takeSlot(false)) {
      startUnixSession(std::move(*slot), std::move(sock));
    } else {
      refuseUnix(sock);
    }
    self->doAccept();
  });
}

void HttpServerImpl::doAcceptTcp() {
  tcpAcceptor.async_accept(asio::make_strand(io), [self = shared_from_this()](boost::system::error_code ec,
                                                                              TcpSocket sock) {
    if (self->stopped || ec == asio::error::operation_aborted) return;
    if (ec) {
      spdlog::warn("http: accept on {} failed: {}", self->opts.tcpListen, ec.message());
    } else if (auto slot = self->takeSlot(true, peerKeyOf(sock))) {
      startTlsSession(std::move(*slot), std::move(sock));
    } else {
      boost::system::error_code ignored;
      sock.close(ignored);
    }
    self->doAcceptTcp();
  });
}

void HttpServerImpl::stop() {
  std::vector<std::shared_ptr<Connection>> live;
  bool wasListening = false;
  {
    std::lock_guard lock(mu);
    if (stopped.exchange(true)) return;
    for (auto& [_, w] : conns)
      if (auto c = w.lock()) live.push_back(std::move(c));
    // Only unlink the file we bound: another daemon may have replaced it since.
    struct stat st {};
    if (haveSocketFile && ::lstat(opts.socketPath.c_str(), &st) == 0 && st.st_dev == socketDev &&
        st.st_ino == socketIno) {
      ::unlink(opts.socketPath.c_str());
    }
    haveSocketFile = false;
    wasListening = listening;
  }
  asio::post(acceptorStrand, [self = shared_from_this()] {
    boost::system::error_code ec;
    self->acceptor.close(ec);
  });
  asio::post(tcpStrand, [self = shared_from_this()] {
    boost::system::error_code ec;
    self->tcpAcceptor.close(ec);
  });
  for (auto& c : live) c->shutdown();
  if (wasListening) spdlog::info("http: stopped listening on {}", opts.socketPath);
}

}  // namespace detail

namespace asio = boost::asio;
using detail::Tcp;

HttpServer::HttpServer(asio::io_context& io, const Router& router, HttpServerOptions opts)
    : impl_(std::make_shared<detail::HttpServerImpl>(io, router, std::move(opts))) {}

HttpServer::~HttpServer() {
  impl_->stop();
  impl_->pool.join();  // no handler may use the router after this
  // Let the closes posted by stop() run, so that no WebSocket onClose callback
  // (which may refer to objects its route owns) runs after the server is gone.
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(2);
  while (impl_->active.load() > 0 && !impl_->io.stopped() && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
}

const std::string& HttpServer::socketPath() const { return impl_->opts.socketPath; }
uint16_t HttpServer::tcpPort() const { return impl_->tcpPort; }
size_t HttpServer::connectionCount() const { return impl_->active.load(); }

Result<void> HttpServer::start() {
  auto& impl = *impl_;
  const std::string& path = impl.opts.socketPath;
  if (path.empty() || path.size() >= sizeof(sockaddr_un::sun_path))
    return Error::invalidInput("socket", path,
                               fmt::format("must be a path of 1 to {} bytes", sizeof(sockaddr_un::sun_path) - 1));
  if (impl.stopped) return Error::failedPrecondition("http server already stopped");

  // Everything that can fail without binding anything comes first.
  std::optional<Tcp::endpoint> tcpEndpoint;
  if (!impl.opts.tcpListen.empty()) {
    tcpEndpoint = CORRAL_TRY(detail::parseListen(impl.opts.tcpListen));
    impl.tls = CORRAL_TRY(detail::makeServerTlsContext(impl.opts));
  }

  struct stat st {};
  if (::lstat(path.c_str(), &st) == 0) {
    if (!S_ISSOCK(st.st_mode))
      return Error::failedPrecondition(fmt::format("{} exists and is not a socket; refusing to replace it", path));
    if (detail::socketAnswers(path))
      return Error::unavailable(fmt::format("another daemon is already listening on {}", path));
    spdlog::info("http: removing stale socket {}", path);
    if (::unlink(path.c_str()) != 0 && errno != ENOENT)
      return Error::unavailable(fmt::format("cannot remove stale socket {}: {}", path, std::strerror(errno)));
  }

  boost::system::error_code ec;
  auto& acc = impl.acceptor;
  acc.open(detail::Local(), ec);
  if (!ec) acc.bind(detail::Local::endpoint(path), ec);
  if (ec) {
    acc.close(ec);
    return Error::unavailable(fmt::format("cannot bind {}: {}", path, ec.message()));
  }
  auto unbindUnix = [&] {
    boost::system::error_code ignored;
    acc.close(ignored);
    ::unlink(path.c_str());
    std::lock_guard lock(impl.mu);
    impl.haveSocketFile = false;
  };
  // Nobody can connect before listen(), so chmod-after-bind leaves no window.
  if (::chmod(path.c_str(), impl.opts.socketMode) != 0 || ::lstat(path.c_str(), &st) != 0) {
    int err = errno;
    unbindUnix();
    return Error::unavailable(fmt::format("cannot set the mode of {}: {}", path, std::strerror(err)));
  }
  {
    std::lock_guard lock(impl.mu);
    impl.haveSocketFile = true;
    impl.socketDev = st.st_dev;
    impl.socketIno = st.st_ino;
  }
  acc.listen(asio::socket_base::max_listen_connections, ec);
  if (ec) {
    unbindUnix();
    return Error::unavailable(fmt::format("cannot listen on {}: {}", path, ec.message()));
  }

  if (tcpEndpoint) {
    auto& tacc = impl.tcpAcceptor;
    tacc.open(tcpEndpoint->protocol(), ec);
    if (!ec) tacc.set_option(asio::socket_base::reuse_address(true), ec);
    if (!ec) tacc.bind(*tcpEndpoint, ec);
    if (!ec) tacc.listen(asio::socket_base::max_listen_connections, ec);
    if (ec) {
      boost::system::error_code ignored;
      tacc.close(ignored);
      unbindUnix();
      return Error::unavailable(fmt::format("cannot listen on {}: {}", impl.opts.tcpListen, ec.message()));
    }
    impl.tcpPort = tacc.local_endpoint(ec).port();
  }
  {
    std::lock_guard lock(impl.mu);
    impl.listening = true;
  }
  spdlog::info("http: listening on {} (mode {:04o}, at most {} connections){}, {} handler threads", path,
               impl.opts.socketMode, impl.opts.maxUnixConnections,
               tcpEndpoint ? fmt::format(" and TLS on {} (port {}, at most {} connections, {} per address)",
                                         impl.opts.tcpListen, impl.tcpPort, impl.opts.maxConnections,
                                         impl.opts.maxConnectionsPerAddress)
                           : "",
               std::max<size_t>(1, impl.opts.handlerThreads));
  // Through the strands, so that stop() (also posted there) is ordered after it
  // whichever thread calls start().
  asio::post(impl.acceptorStrand, [p = impl_] { p->doAccept(); });
  if (tcpEndpoint) asio::post(impl.tcpStrand, [p = impl_] { p->doAcceptTcp(); });
  return ok();
}

void HttpServer::stop() { impl_->stop(); }

}  // namespace corral::api
