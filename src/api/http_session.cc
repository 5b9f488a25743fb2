// One connection of the HTTP transport, over the unix socket or over TLS: the
// request loop (Session) and, after an upgrade, the WebSocket (WsConnection).
// Both are templates over the stream so that the unix and TLS paths are the same
// code; see http_server.h for the rules they keep.
//
// Threads: everything that touches a socket runs on that connection's strand. A
// request goes to the handler pool with the session waiting (nothing else is read
// or written meanwhile: no pipelining), and the response is posted back to the
// strand. Nothing ever waits on a peer: every read and write has a deadline, and
// a WebSocket's send queue is bounded instead of blocking its senders.
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509_vfy.h>
#include <strings.h>
#include <sys/socket.h>

#include <atomic>
#include <cctype>
#include <chrono>
#include <deque>
#include <mutex>
#include <optional>
#include <type_traits>

#include <boost/asio/dispatch.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <boost/beast/websocket.hpp>
#include <boost/beast/websocket/ssl.hpp>
#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "api/http_error.h"
#include "api/http_server_impl.h"
#include "api/tls.h"

namespace corral::api::detail {
namespace {

namespace beast = boost::beast;
namespace http = beast::http;
namespace websocket = beast::websocket;
using Clock = std::chrono::steady_clock;
using UnixStream = beast::basic_stream<Local, Strand>;
using TlsStream = beast::ssl_stream<beast::basic_stream<Tcp, Strand>>;

template <class S>
constexpr bool kIsTls = std::is_same_v<S, TlsStream>;

// How much a keep-alive connection reads at once while waiting for the next
// request's first byte.
constexpr size_t kReadChunk = 4096;
// After an error response over TLS, unread request bytes are drained this long
// before closing, so that the kernel does not answer them with a reset that
// destroys the response in flight (a 413 to a large upload).
constexpr auto kLingerTime = std::chrono::seconds(2);

// Who is on the other end, read once per connection.
struct Peer {
  uid_t uid = (uid_t)-1;  // unix
  pid_t pid = 0;          // unix
  std::string address;    // TLS
  std::string certEmail;  // TLS, a verified client certificate's

  std::string describe() const {
    if (!address.empty()) return fmt::format("addr={}", address);
    return fmt::format("uid={}", uid == (uid_t)-1 ? -1L : static_cast<long>(uid));
  }
};

template <class S>
auto& lowest(S& s) {
  return beast::get_lowest_layer(s);
}

// Whether a WebSocket upgrade from this origin may proceed: no Origin (not a
// browser), one listed in allowed, or the Origin's host[:port] equal to the Host
// header (the page came from this server).
bool originAllowed(const Request& req, const std::vector<std::string>& allowed) {
  const std::string& origin = req.header("origin");
  if (origin.empty()) return true;
  for (const auto& a : allowed)
    if (a.size() == origin.size() && ::strcasecmp(a.c_str(), origin.c_str()) == 0) return true;
  size_t scheme = origin.find("://");
  if (scheme == std::string::npos) return false;  // "null" and other opaque origins
  std::string authority = origin.substr(scheme + 3);
  authority = authority.substr(0, authority.find('/'));
  const std::string& host = req.header("host");
  return !host.empty() && host.size() == authority.size() && ::strcasecmp(host.c_str(), authority.c_str()) == 0;
}

// --------------------------------------------------------------------------
// WebSocket

template <class Stream>
class WsConnection : public WebSocket, public Connection, public std::enable_shared_from_this<WsConnection<Stream>> {
 public:
  WsConnection(ConnectionSlot slot, Stream&& stream, Strand strand, Peer peer, std::string requestId, std::string path)
      : srv_(slot.serverPtr()),
        slot_(std::move(slot)),
        strand_(std::move(strand)),
        ws_(std::move(stream)),
        writeTimer_(strand_),
        peer_(std::move(peer)),
        requestId_(std::move(requestId)),
        path_(std::move(path)),
        opened_(Clock::now()) {}

  ~WsConnection() override { srv_->untrack(this); }

  // On the strand, with the upgrade request the session read.
  void start(http::request<http::string_body> upgradeReq, WsAccept accept) {
    srv_->track(this, this->weak_from_this());
    const auto& o = srv_->opts;
    lowest(ws_).expires_never();  // the WebSocket's own timeouts take over
    websocket::stream_base::timeout t{};
    t.handshake_timeout = o.writeTimeout;  // also bounds the closing handshake
    t.idle_timeout = 2 * o.wsPingInterval;  // a ping after half of it
    t.keep_alive_pings = true;
    ws_.set_option(t);
    ws_.set_option(websocket::stream_base::decorator(
        [](websocket::response_type& res) { res.set(http::field::server, "corrald"); }));
    ws_.read_message_max(o.maxWsMessageBytes);
    ws_.auto_fragment(false);
    upgradeReq_ = std::move(upgradeReq);
    ws_.async_accept(upgradeReq_, [self = this->shared_from_this(), accept = std::move(accept)](
                                      beast::error_code ec) mutable { self->onAccepted(ec, std::move(accept)); });
  }

  bool send(std::string data, bool binary) override {
    bool startWriting = false;
    {
      std::lock_guard lock(mu_);
      if (closed_) return false;
      if (queuedBytes_ + data.size() > srv_->opts.maxWsQueueBytes) {
        closed_ = true;
        spdlog::warn("ws {} {}: peer is not keeping up ({} bytes queued, limit {}); dropping it", path_,
                     peer_.describe(), queuedBytes_ + data.size(), srv_->opts.maxWsQueueBytes);
        asio::post(strand_, [self = this->shared_from_this()] { self->hardClose(); });
        return false;
      }
      queuedBytes_ += data.size();
      queue_.push_back(Message{std::move(data), binary});
      if (!writing_) writing_ = startWriting = true;
    }
    if (startWriting) asio::post(strand_, [self = this->shared_from_this()] { self->writeNext(); });
    return true;
  }

  void close(std::string reason) override {
    bool startWriting = false;
    {
      std::lock_guard lock(mu_);
      if (closed_) return;
      closed_ = true;
      closing_ = true;
      closeReason_ = std::move(reason);
      if (!writing_) writing_ = startWriting = true;
    }
    // Queued messages go first, then the close frame.
    if (startWriting) asio::post(strand_, [self = this->shared_from_this()] { self->writeNext(); });
  }

  bool closed() const override { return closed_; }

  void onMessage(std::function<void(std::string, bool)> cb) override {
    std::lock_guard lock(mu_);
    onMessage_ = std::move(cb);
  }

  void onClose(std::function<void()> cb) override {
    std::lock_guard lock(mu_);
    onClose_ = std::move(cb);
  }

  void shutdown() override {
    asio::post(strand_, [self = this->shared_from_this()] { self->hardClose(); });
  }

 private:
  struct Message {
    std::string data;
    bool binary;
  };

  void onAccepted(beast::error_code ec, WsAccept accept) {
    if (ec) {
      spdlog::debug("ws {} {}: upgrade failed: {}", path_, peer_.describe(), ec.message());
      return finish("upgrade failed");
    }
    spdlog::info("ws {} open {} req={}", path_, peer_.describe(), requestId_);
    std::unique_lock lock(srv_->mu);  // stop() takes it too: no post to a joined pool
    if (srv_->stopped) {
      lock.unlock();
      hardClose();
      return finish("server stopping");
    }
    // The route's accept runs on a handler thread (it may subscribe, look things
    // up); reading starts only once it has set the callbacks.
    asio::post(srv_->pool, [self = this->shared_from_this(), accept = std::move(accept)] {
      RequestIdScope scope(self->requestId_);
      try {
        accept(self);
      } catch (const std::exception& e) {
        spdlog::error("ws {}: accept threw: {} req={}", self->path_, e.what(), self->requestId_);
        self->close("internal error");
      } catch (...) {
        spdlog::error("ws {}: accept threw req={}", self->path_, self->requestId_);
        self->close("internal error");
      }
      asio::post(self->strand_, [self] { self->readNext(); });
    });
  }

  void readNext() {
    ws_.async_read(rbuf_, [self = this->shared_from_this()](beast::error_code ec, size_t) { self->onRead(ec); });
  }

  void onRead(beast::error_code ec) {
    if (ec) {
      std::string why = ec == websocket::error::closed ? "closed by peer" : ec.message();
      if (hardClosed_) why = dropped_ ? "dropped" : "closed";
      return finish(why);
    }
    std::string data = beast::buffers_to_string(rbuf_.data());
    rbuf_.consume(rbuf_.size());
    bool binary = ws_.got_binary();
    std::function<void(std::string, bool)> cb;
    {
      std::lock_guard lock(mu_);
      cb = onMessage_;
    }
    if (cb) {
      try {
        cb(std::move(data), binary);
      } catch (const std::exception& e) {
        spdlog::error("ws {}: onMessage threw: {} req={}", path_, e.what(), requestId_);
      }
    }
    readNext();
  }

  // On the strand: the next queued message, or the close frame once the queue is
  // empty after close(), or nothing.
  void writeNext() {
    Message* m = nullptr;
    bool sendClose = false;
    {
      std::lock_guard lock(mu_);
      if (hardClosed_) {
        writing_ = false;
        return;
      }
      if (queue_.empty()) {
        writing_ = false;
        if (closing_ && !closeSent_) sendClose = closeSent_ = true;
      } else {
        m = &queue_.front();  // stays put: deque::push_back keeps references valid
      }
    }
    if (sendClose) {
      armWriteTimer();
      ws_.async_close(websocket::close_reason(websocket::close_code::normal, closeReason_),
                      [self = this->shared_from_this()](beast::error_code ec) {
                        self->writeTimer_.cancel();
                        if (ec) self->hardClose();  // the read then ends, and finish() runs
                      });
      return;
    }
    if (m == nullptr) return;
    ws_.binary(m->binary);
    armWriteTimer();
    ws_.async_write(asio::buffer(m->data), [self = this->shared_from_this()](beast::error_code ec, size_t) {
      self->writeTimer_.cancel();
      if (ec) {
        self->hardClose();
        std::lock_guard lock(self->mu_);
        self->writing_ = false;
        return;
      }
      {
        std::lock_guard lock(self->mu_);
        self->queuedBytes_ -= self->queue_.front().data.size();
        self->queue_.pop_front();
        ++self->sent_;
      }
      self->writeNext();
    });
  }

  void armWriteTimer() {
    writeTimer_.expires_after(srv_->opts.writeTimeout);
    writeTimer_.async_wait([self = this->shared_from_this()](beast::error_code ec) {
      if (ec) return;  // cancelled: the write finished
      spdlog::info("ws {} {}: a write took over {} ms; closing", self->path_, self->peer_.describe(),
                   self->srv_->opts.writeTimeout.count());
      self->hardClose();
    });
  }

  // On the strand: closes the socket now, without a closing handshake. Pending
  // operations fail, and the read's failure runs finish().
  void hardClose() {
    {
      std::lock_guard lock(mu_);
      if (hardClosed_) return;
      hardClosed_ = true;
      dropped_ = closed_ && !closing_;  // send() past the queue limit
      closed_ = true;
    }
    writeTimer_.cancel();
    beast::error_code ec;
    lowest(ws_).socket().shutdown(asio::socket_base::shutdown_both, ec);
    lowest(ws_).close();
  }

  // On the strand, once per connection, however it ends.
  void finish(const std::string& why) {
    std::function<void()> cb;
    {
      std::lock_guard lock(mu_);
      if (finished_) return;
      finished_ = true;
      closed_ = true;
      cb = std::move(onClose_);
      // Routes' callbacks usually hold this socket: dropping them breaks the cycle.
      onClose_ = nullptr;
      onMessage_ = nullptr;
      queue_.clear();
      queuedBytes_ = 0;
    }
    if (!hardClosed_) hardClose();
    slot_.reset();  // the socket is closed: room for another, even while a route still holds this object
    double s = std::chrono::duration<double>(Clock::now() - opened_).count();
    spdlog::info("ws {} closed {} ({}) after {:.1f}s, {} messages sent req={}", path_, peer_.describe(), why, s, sent_,
                 requestId_);
    if (cb) {
      try {
        cb();
      } catch (const std::exception& e) {
        spdlog::error("ws {}: onClose threw: {} req={}", path_, e.what(), requestId_);
      }
    }
  }

  std::shared_ptr<HttpServerImpl> srv_;
  std::optional<ConnectionSlot> slot_;
  Strand strand_;
  websocket::stream<Stream> ws_;
  asio::steady_timer writeTimer_;
  http::request<http::string_body> upgradeReq_;
  beast::flat_buffer rbuf_;
  Peer peer_;
  std::string requestId_;
  std::string path_;
  Clock::time_point opened_;
  uint64_t sent_ = 0;

  mutable std::mutex mu_;  // guards everything below
  std::deque<Message> queue_;
  size_t queuedBytes_ = 0;
  bool writing_ = false;  // a writeNext chain is posted or in flight
  bool closing_ = false;  // close() was called: the close frame follows the queue
  bool closeSent_ = false;
  bool hardClosed_ = false;
  bool dropped_ = false;
  bool finished_ = false;
  std::atomic<bool> closed_{false};
  std::string closeReason_;
  std::function<void(std::string, bool)> onMessage_;
  std::function<void()> onClose_;
};

// --------------------------------------------------------------------------
// HTTP

template <class Stream>
class Session : public Connection, public std::enable_shared_from_this<Session<Stream>> {
 public:
  Session(ConnectionSlot slot, Stream&& stream, Strand strand, Peer peer)
      : srv_(slot.serverPtr()),
        slot_(std::move(slot)),
        strand_(std::move(strand)),
        stream_(std::move(stream)),
        peer_(std::move(peer)) {}

  ~Session() override { srv_->untrack(this); }

  void start() {
    srv_->track(this, this->weak_from_this());
    asio::dispatch(strand_, [self = this->shared_from_this()] { self->begin(); });
  }

  void shutdown() override {
    asio::post(strand_, [self = this->shared_from_this()] { self->closeNow(); });
  }

 private:
  const HttpServerOptions& opts() const { return srv_->opts; }

  void begin() {
    if (srv_->stopped) return closeNow();
    if constexpr (kIsTls<Stream>) {
      lowest(stream_).expires_after(opts().tlsHandshakeTimeout);
      stream_.async_handshake(asio::ssl::stream_base::server,
                              [self = this->shared_from_this()](beast::error_code ec) { self->onHandshake(ec); });
    } else {
      doRead();
    }
  }

  void onHandshake(beast::error_code ec) {
    if (ec) {
      // Port scanners and impatient clients: not the operator's concern.
      spdlog::debug("http: TLS handshake with {} failed: {}", peer_.describe(), ec.message());
      return closeNow();
    }
    if constexpr (kIsTls<Stream>) {
      if (!opts().tlsClientCaFile.empty()) {
        SSL* ssl = stream_.native_handle();
        X509* cert = SSL_get0_peer_certificate(ssl);
        if (cert != nullptr && SSL_get_verify_result(ssl) == X509_V_OK) peer_.certEmail = certificateEmail(cert);
      }
    }
    doRead();
  }

  void doRead() {
    if (srv_->stopped) return closeNow();
    parser_.emplace();
    parser_->header_limit(static_cast<uint32_t>(std::min<size_t>(opts().maxHeaderBytes, UINT32_MAX)));
    parser_->body_limit(opts().maxBodyBytes);
    if (served_ == 0 || buffer_.size() > 0) return readRequest();
    // Between requests: wait up to the idle timeout for the next one to begin;
    // the request deadline starts with its first byte.
    lowest(stream_).expires_after(opts().idleTimeout);
    stream_.async_read_some(buffer_.prepare(kReadChunk),
                            [self = this->shared_from_this()](beast::error_code ec, size_t n) {
                              if (ec) return self->closeNow();  // idle timeout, or the peer left
                              self->buffer_.commit(n);
                              self->readRequest();
                            });
  }

  void readRequest() {
    lowest(stream_).expires_after(opts().requestTimeout);
    http::async_read(stream_, buffer_, *parser_,
                     [self = this->shared_from_this()](beast::error_code ec, size_t) { self->onRead(ec); });
  }

  void onRead(beast::error_code ec) {
    if (ec == http::error::header_limit) {
      return protocolError(
          431, Error::invalidInput("headers", "",
                                   fmt::format("request headers exceed the limit of {} bytes", opts().maxHeaderBytes)));
    }
    if (ec == http::error::body_limit) {
      Error e = Error::invalidInput("body", "",
                                    fmt::format("request body exceeds the limit of {} bytes", opts().maxBodyBytes));
      Request r;  // the header was read: log what was refused
      if (parser_->is_header_done()) {
        const auto& h = parser_->get();
        r.method = std::string(h.method_string());
        std::string_view t(h.target().data(), h.target().size());
        r.path = std::string(t.substr(0, t.find('?')));
      }
      return protocolError(413, e, &r);
    }
    if (ec == beast::error::timeout) {
      spdlog::info("http: {} did not send a whole request within {} ms; closing", peer_.describe(),
                   opts().requestTimeout.count());
      return closeNow();
    }
    if (ec) {
      if (ec.category() == http::make_error_code(http::error::bad_target).category() &&
          ec != http::error::end_of_stream && ec != http::error::partial_message)
        return protocolError(400, Error::invalidInput("request", "", fmt::format("malformed HTTP: {}", ec.message())));
      spdlog::debug("http: read from {} ended: {}", peer_.describe(), ec.message());
      return closeNow();
    }
    lowest(stream_).expires_never();  // the handler may take long; the peer waits
    ++served_;
    auto& msg = parser_->get();

    req_ = Request{};
    req_.method = std::string(msg.method_string());
    std::string_view target(msg.target().data(), msg.target().size());
    size_t q = target.find('?');
    req_.path = std::string(target.substr(0, q));
    if (q != std::string_view::npos) req_.query = parseQuery(target.substr(q + 1));
    for (const auto& f : msg) {
      std::string name(f.name_string());
      for (auto& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
      req_.headers[std::move(name)] = std::string(f.value());
    }
    req_.body = std::move(msg.body());
    req_.transport = kIsTls<Stream> ? "tls" : "unix";
    req_.peerUid = peer_.uid;
    req_.peerPid = peer_.pid;
    req_.peerAddress = peer_.address;
    req_.clientCertEmail = peer_.certEmail;
    req_.requestId = newRequestId();
    keepAlive_ = msg.keep_alive();
    version_ = msg.version();
    started_ = Clock::now();

    if (req_.path.empty() || req_.path.front() != '/')
      return protocolError(400, Error::invalidInput("path", req_.path, "must be an absolute path"), &req_);

    bool upgrade = websocket::is_upgrade(msg);
    std::lock_guard lock(srv_->mu);  // stop() takes it too: no post to a joined pool
    if (srv_->stopped) return closeNow();
    asio::post(srv_->pool, [self = this->shared_from_this(), upgrade] { self->handle(upgrade); });
  }

  // On a pool thread; the strand is idle meanwhile, so req_ and resp_ are ours.
  void handle(bool upgrade) {
    RequestIdScope scope(req_.requestId);
    const WsHandler* ws = upgrade ? srv_->router->matchWebSocket(req_) : nullptr;
    if (ws == nullptr) {
      resp_ = runHandler([&] { return srv_->router->dispatch(req_); });
    } else {
      WsAccept accept;
      resp_ = runHandler([&] {
        if (!originAllowed(req_, opts().allowedOrigins))
          return Response::error(
              Error::forbidden(fmt::format("a page from {} may not open a WebSocket here", req_.header("origin"))),
              req_.requestId);
        auto r = (*ws)(req_);
        if (!r.ok()) return Response::error(r.error(), req_.requestId);
        accept = std::move(*r);
        return Response{};
      });
      if (accept) {
        asio::post(strand_, [self = this->shared_from_this(), accept = std::move(accept)]() mutable {
          self->upgradeTo(std::move(accept));
        });
        return;
      }
    }
    asio::post(strand_, [self = this->shared_from_this()] { self->respond(); });
  }

  // authenticate, then f, with exceptions turned into a generic 500.
  template <class F>
  Response runHandler(F&& f) {
    try {
      if (opts().authenticate) {
        if (auto refused = opts().authenticate(req_)) return Response::error(*refused, req_.requestId);
      }
      return f();
    } catch (const std::exception& e) {
      return Response::error(Error::internal(fmt::format("handler threw: {}", e.what())), req_.requestId);
    } catch (...) {
      return Response::error(Error::internal("handler threw a non-exception"), req_.requestId);
    }
  }

  // On the strand: hands the stream to a WebSocket; this session ends.
  void upgradeTo(WsAccept accept) {
    if (srv_->stopped || !lowest(stream_).socket().is_open()) return closeNow();
    double ms = std::chrono::duration<double, std::milli>(Clock::now() - started_).count();
    spdlog::info("http {} {} 101 {:.1f}ms {} req={}", req_.method, req_.path, ms, peer_.describe(), req_.requestId);
    upgraded_ = true;
    auto ws = std::make_shared<WsConnection<Stream>>(std::move(*slot_), std::move(stream_), strand_, peer_,
                                                     req_.requestId, req_.path);
    slot_.reset();
    ws->start(parser_->release(), std::move(accept));
  }

  // An error found before dispatch: answer and close (the stream may be out of sync).
  void protocolError(int status, const Error& e, const Request* req = nullptr) {
    if (req != &req_) req_ = req != nullptr ? *req : Request{};
    if (req_.requestId.empty()) req_.requestId = newRequestId();
    if (req_.method.empty()) req_.method = "-";
    if (req_.path.empty()) req_.path = "-";
    started_ = Clock::now();
    keepAlive_ = false;
    lingerAfterWrite_ = true;
    version_ = 11;
    resp_ = Response::json(status, errorBody(e, req_.requestId));
    respond();
  }

  // On the strand: writes resp_.
  void respond() {
    double ms = std::chrono::duration<double, std::milli>(Clock::now() - started_).count();
    spdlog::info("http {} {} {} {:.1f}ms {} req={}", req_.method, req_.path, resp_.status, ms, peer_.describe(),
                 req_.requestId);
    if (srv_->stopped) return closeNow();

    res_.emplace();
    auto& res = *res_;
    res.version(version_);
    res.result(static_cast<unsigned>(resp_.status));
    res.set(http::field::server, "corrald");
    res.set("X-Request-Id", req_.requestId);
    if (!resp_.contentType.empty()) res.set(http::field::content_type, resp_.contentType);
    for (const auto& [k, v] : resp_.headers) res.set(k, v);
    res.keep_alive(keepAlive_);
    res.body() = std::move(resp_.body);
    res.prepare_payload();

    lowest(stream_).expires_after(opts().writeTimeout);
    http::async_write(stream_, res, [self = this->shared_from_this()](beast::error_code ec, size_t) {
      if (ec) return self->closeNow();
      if (!self->keepAlive_) return self->lingerThenClose();
      self->doRead();
    });
  }

  void lingerThenClose() {
    if constexpr (kIsTls<Stream>) {
      if (lingerAfterWrite_) {
        // Stop sending, then read and discard what the peer still sends (the
        // rest of a refused upload) for a moment, so the response arrives whole.
        beast::error_code ec;
        lowest(stream_).socket().shutdown(asio::socket_base::shutdown_send, ec);
        lowest(stream_).expires_after(kLingerTime);
        return drain();
      }
    }
    closeNow();
  }

  void drain() {
    lowest(stream_).async_read_some(buffer_.prepare(kReadChunk),
                                    [self = this->shared_from_this()](beast::error_code ec, size_t) {
                                      if (ec) return self->closeNow();
                                      self->drain();
                                    });
  }

  // On the strand.
  void closeNow() {
    if (upgraded_) return;  // the WebSocket owns the socket now
    beast::error_code ec;
    lowest(stream_).socket().shutdown(asio::socket_base::shutdown_both, ec);
    lowest(stream_).close();
  }

  std::shared_ptr<HttpServerImpl> srv_;
  std::optional<ConnectionSlot> slot_;
  Strand strand_;
  Stream stream_;
  Peer peer_;
  beast::flat_buffer buffer_;
  std::optional<http::request_parser<http::string_body>> parser_;
  std::optional<http::response<http::string_body>> res_;
  Request req_;
  Response resp_;
  uint64_t served_ = 0;
  bool keepAlive_ = true;
  bool lingerAfterWrite_ = false;
  bool upgraded_ = false;
  unsigned version_ = 11;
  Clock::time_point started_;
};

std::string sslErrorText() {
  unsigned long e = ERR_get_error();
  char buf[256] = "unknown OpenSSL error";
  if (e != 0) ERR_error_string_n(e, buf, sizeof(buf));
  ERR_clear_error();
  return buf;
}

}  // namespace

void startUnixSession(ConnectionSlot slot, LocalSocket&& sock) {
  Peer peer;
  ucred cred{};
  socklen_t len = sizeof(cred);
  if (::getsockopt(sock.native_handle(), SOL_SOCKET, SO_PEERCRED, &cred, &len) == 0) {
    peer.uid = cred.uid;
    peer.pid = cred.pid;
  }
  Strand strand = sock.get_executor();
  std::make_shared<Session<UnixStream>>(std::move(slot), UnixStream(std::move(sock)), std::move(strand),
                                        std::move(peer))
      ->start();
}

void startTlsSession(ConnectionSlot slot, TcpSocket&& sock) {
  Peer peer;
  boost::system::error_code ec;
  auto ep = sock.remote_endpoint(ec);
  if (ec) return;  // already gone
  auto addr = ep.address();
  if (addr.is_v6() && addr.to_v6().is_v4_mapped()) addr = asio::ip::make_address_v4(asio::ip::v4_mapped, addr.to_v6());
  peer.address = addr.to_string();
  sock.set_option(Tcp::no_delay(true), ec);  // small responses, kept-alive: no Nagle delay
  Strand strand = sock.get_executor();
  auto& tls = *slot.server().tls;
  std::make_shared<Session<TlsStream>>(std::move(slot), TlsStream(std::move(sock), tls), std::move(strand),
                                       std::move(peer))
      ->start();
}

Result<std::unique_ptr<asio::ssl::context>> makeServerTlsContext(const HttpServerOptions& opts) {
  if (opts.tlsCertFile.empty()) return Error::invalidInput("tls_cert", "", "a TLS listener needs a certificate file");
  if (opts.tlsKeyFile.empty()) return Error::invalidInput("tls_key", "", "a TLS listener needs a key file");
  auto ctx = std::make_unique<asio::ssl::context>(asio::ssl::context::tls_server);
  SSL_CTX* c = ctx->native_handle();
  ERR_clear_error();
  SSL_CTX_set_min_proto_version(c, TLS1_2_VERSION);
  SSL_CTX_set_options(c, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE);
  // TLS 1.2: forward-secret AEAD suites only (Mozilla's "intermediate"); TLS 1.3
  // suites are all fine and stay OpenSSL's defaults.
  if (SSL_CTX_set_cipher_list(c,
                              "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"
                              "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"
                              "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305") != 1)
    return Error::internal(fmt::format("TLS cipher list: {}", sslErrorText()));
  if (SSL_CTX_use_certificate_chain_file(c, opts.tlsCertFile.c_str()) != 1)
    return Error::invalidInput("tls_cert", opts.tlsCertFile, fmt::format("cannot load: {}", sslErrorText()));
  if (SSL_CTX_use_PrivateKey_file(c, opts.tlsKeyFile.c_str(), SSL_FILETYPE_PEM) != 1)
    return Error::invalidInput("tls_key", opts.tlsKeyFile, fmt::format("cannot load: {}", sslErrorText()));
  if (SSL_CTX_check_private_key(c) != 1)
    return Error::invalidInput("tls_key", opts.tlsKeyFile,
                               fmt::format("does not match the certificate {}", opts.tlsCertFile));
  // Needed for session resumption whenever peers may be verified.
  static const unsigned char kSessionContext[] = "corrald";
  SSL_CTX_set_session_id_context(c, kSessionContext, sizeof(kSessionContext) - 1);
  if (!opts.tlsClientCaFile.empty()) {
    if (SSL_CTX_load_verify_locations(c, opts.tlsClientCaFile.c_str(), nullptr) != 1)
      return Error::invalidInput("tls_client_ca", opts.tlsClientCaFile, fmt::format("cannot load: {}", sslErrorText()));
    STACK_OF(X509_NAME)* names = SSL_load_client_CA_file(opts.tlsClientCaFile.c_str());
    if (names == nullptr)
      return Error::invalidInput("tls_client_ca", opts.tlsClientCaFile,
                                 fmt::format("holds no CA certificate: {}", sslErrorText()));
    SSL_CTX_set_client_CA_list(c, names);  // tells clients which certificate to offer
    // Ask for a certificate but let the handshake finish whatever the result:
    // the session reads the verdict (SSL_get_verify_result) and the
    // authenticator decides what a peer without a verified one may do.
    SSL_CTX_set_verify(c, SSL_VERIFY_PEER, [](int, X509_STORE_CTX*) { return 1; });
  }
  return ctx;
}

}  // namespace corral::api::detail
