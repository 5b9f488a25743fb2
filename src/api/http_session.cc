// One connection of the HTTP transport, over the unix socket or over TLS: the
// request loop (Session) and, after an upgrade, the WebSocket (WsConnection, in
// http_ws_connection.h). Both are templates over the stream so that the unix and
// TLS paths are the same code; see http_server.h for the rules they keep.
//
// Threads: everything that touches a socket runs on that connection's strand. A
// request goes to the handler pool with the session waiting (nothing else is read
// or written meanwhile: no pipelining), and the response is posted back to the
// strand. Nothing ever waits on a peer: every read and write has a deadline, and
// a WebSocket's send queue is bounded instead of blocking its senders.
//
// A request is read header first. On an upload route (Router::addUpload) the
// peer is authenticated and admitted on the pool before a body byte is read,
// then the body streams into a file in uploadDir, read by read, each within the
// idle timeout; any other request reads its body into memory within the request
// deadline, as before.
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509_vfy.h>
#include <fcntl.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cctype>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <limits>
#include <optional>
#include <type_traits>
#include <utility>

#include <boost/asio/dispatch.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <boost/beast/websocket.hpp>
#include <boost/beast/websocket/ssl.hpp>
#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "api/http_error.h"
#include "api/http_server_impl.h"
#include "api/http_ws_connection.h"
#include "api/tls.h"
#include "util/crypto.h"
#include "util/unique_fd.h"

namespace corral::api::detail {
namespace {

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

// A new, empty 0600 file with an unguessable name in dir, for an upload's body:
// its path and descriptor.
Result<std::pair<std::string, util::UniqueFd>> createUploadFile(const std::string& dir) {
  for (int attempt = 0; attempt < 8; ++attempt) {
    auto random = util::randomBytes(12);
    if (!random) return random.error();
    std::string path = dir + "/upload-";
    for (unsigned char c : *random) path += fmt::format("{:02x}", c);
    util::UniqueFd fd(::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600));
    if (fd) return std::pair{std::move(path), std::move(fd)};
    if (errno != EEXIST)
      return Error::internal(fmt::format("cannot create an upload file in {}: {}", dir, std::strerror(errno)));
  }
  return Error::internal(fmt::format("cannot create an upload file in {}: every name tried exists", dir));
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

  ~Session() override {
    removeUpload();  // a connection that ended mid-upload
    srv_->untrack(this);
  }

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
    // No body limit while the header is read: the route, known only then,
    // decides it (onHeader compares a Content-Length itself: Beast would only
    // compare it with the limit set when the header completes). Not boost::none:
    // Beast 1.74 compares a Content-Length with it as greater than "none".
    parser_->body_limit(std::numeric_limits<std::uint64_t>::max());
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
    http::async_read_header(stream_, buffer_, *parser_,
                            [self = this->shared_from_this()](beast::error_code ec, size_t) { self->onHeader(ec); });
  }

  // The header is in: an upload route goes its own way (admitUpload); any other
  // request reads its body, still within the request deadline.
  void onHeader(beast::error_code ec) {
    if (ec) return readFailed(ec, false);
    fillRequest(parser_->get());
    if (req_.path.empty() || req_.path.front() != '/')
      return protocolError(400, Error::invalidInput("path", req_.path, "must be an absolute path"), &req_);
    if (const auto* route = srv_->router->matchUpload(req_)) return admitUpload(*route);
    if (auto len = parser_->content_length(); len && *len > opts().maxBodyBytes)
      return bodyTooLarge(opts().maxBodyBytes);
    parser_->body_limit(opts().maxBodyBytes);  // a chunked body is counted as it comes
    if (!parser_->is_done()) {
      sendContinueThen([self = this->shared_from_this()] {
        http::async_read(self->stream_, self->buffer_, *self->parser_,
                         [self](beast::error_code e, size_t) { self->onRead(e); });
      });
      return;
    }
    onRead({});
  }

  void onRead(beast::error_code ec) {
    if (ec) return readFailed(ec, false);
    lowest(stream_).expires_never();  // the handler may take long; the peer waits
    ++served_;
    auto& msg = parser_->get();
    req_.body = std::move(msg.body());
    bool upgrade = websocket::is_upgrade(msg);
    std::lock_guard lock(srv_->mu);  // stop() takes it too: no post to a joined pool
    if (srv_->stopped) return closeNow();
    asio::post(srv_->pool, [self = this->shared_from_this(), upgrade] { self->handle(upgrade); });
  }

  // A failed header or body read (upload: the body's file is removed first).
  void readFailed(beast::error_code ec, bool upload) {
    if (upload) removeUpload();
    if (ec == http::error::header_limit) {
      return protocolError(
          431, Error::invalidInput("headers", "",
                                   fmt::format("request headers exceed the limit of {} bytes", opts().maxHeaderBytes)));
    }
    if (ec == http::error::body_limit) return bodyTooLarge(upload ? opts().maxUploadBytes : opts().maxBodyBytes);
    if (ec == beast::error::timeout) {
      if (upload)
        spdlog::info("http {} {}: {} sent nothing for {} ms; dropping the upload req={}", req_.method, req_.path,
                     peer_.describe(), opts().idleTimeout.count(), req_.requestId);
      else
        spdlog::info("http: {} did not send a whole request within {} ms; closing", peer_.describe(),
                     opts().requestTimeout.count());
      return closeNow();
    }
    if (upload && ec.category() == boost::system::system_category() &&
        (ec.value() == ENOSPC || ec.value() == EDQUOT || ec.value() == EFBIG || ec.value() == EIO)) {
      // Writing the file failed (the socket's errors are not these).
      std::string why = fmt::format("writing the upload into {}: {}", opts().uploadDir, ec.message());
      bool full = ec.value() == ENOSPC || ec.value() == EDQUOT;
      resp_ = Response::error(full ? Error::unavailable(why) : Error::internal(why), req_.requestId);
      return refuse();
    }
    if (ec.category() == http::make_error_code(http::error::bad_target).category() &&
        ec != http::error::end_of_stream && ec != http::error::partial_message)
      return protocolError(400, Error::invalidInput("request", "", fmt::format("malformed HTTP: {}", ec.message())),
                           upload ? &req_ : nullptr);
    spdlog::debug("http: read from {} ended: {}", peer_.describe(), ec.message());
    closeNow();
  }

  void bodyTooLarge(uint64_t limit) {
    auto why = fmt::format("request body exceeds the limit of {} bytes", limit);
    protocolError(413, Error::invalidInput("body", "", why), &req_);
  }

  // req_ from a request's header; the body comes later.
  void fillRequest(const http::request<http::string_body>& msg) {
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
    req_.transport = kIsTls<Stream> ? "tls" : "unix";
    req_.peerUid = peer_.uid;
    req_.peerPid = peer_.pid;
    req_.peerAddress = peer_.address;
    req_.clientCertEmail = peer_.certEmail;
    req_.requestId = newRequestId();
    keepAlive_ = msg.keep_alive();
    version_ = msg.version();
    started_ = Clock::now();
  }

  // On the strand: "100 Continue" first when the client waits for it before
  // sending its body (curl does, for a second, for bodies over 1 MiB), then next.
  // The stream's current deadline bounds the write.
  template <class F>
  void sendContinueThen(F next) {
    if (version_ < 11 || ::strcasecmp(req_.header("expect").c_str(), "100-continue") != 0) return next();
    static constexpr std::string_view kContinue = "HTTP/1.1 100 Continue\r\n\r\n";
    asio::async_write(stream_, asio::buffer(kContinue.data(), kContinue.size()),
                      [self = this->shared_from_this(), next = std::move(next)](beast::error_code ec, size_t) mutable {
                        if (ec) return self->closeNow();
                        next();
                      });
  }

  // ---- upload routes: authenticate and admit with only the header read, then
  // stream the body into a file in uploadDir, then run the handler.

  void admitUpload(const Router::UploadRoute& route) {
    uploadRoute_ = &route;
    lowest(stream_).expires_never();  // the peer waits for the verdict
    std::lock_guard lock(srv_->mu);
    if (srv_->stopped) return closeNow();
    asio::post(srv_->pool, [self = this->shared_from_this()] {
      RequestIdScope scope(self->req_.requestId, self->req_.method + " " + self->req_.path);
      bool admitted = false;
      self->resp_ = self->runHandler([&] {
        if (self->uploadRoute_->admit) {
          if (auto refused = self->uploadRoute_->admit(self->req_)) return std::move(*refused);
        }
        admitted = true;
        return Response{};
      });
      asio::post(self->strand_, [self, admitted] { admitted ? self->startUpload() : self->refuse(); });
    });
  }

  void startUpload() {
    if (srv_->stopped) return closeNow();
    if (opts().uploadDir.empty()) {
      resp_ = Response::error(Error::unavailable("this server takes no uploads (no upload directory is set)"),
                              req_.requestId);
      return refuse();
    }
    if (auto len = parser_->content_length(); len && *len > opts().maxUploadBytes)
      return bodyTooLarge(opts().maxUploadBytes);
    auto created = createUploadFile(opts().uploadDir);
    if (!created) {
      resp_ = Response::error(created.error(), req_.requestId);
      return refuse();
    }
    uploadPath_ = std::move(created->first);
    upload_.emplace(std::move(*parser_));  // the header moves over; the body goes to the file
    parser_.reset();
    upload_->body_limit(opts().maxUploadBytes);
    beast::file file;
    file.native_handle(created->second.release());
    beast::error_code ec;
    upload_->get().body().reset(std::move(file), ec);
    lowest(stream_).expires_after(opts().writeTimeout);
    sendContinueThen([self = this->shared_from_this()] { self->readUpload(); });
  }

  // Read by read, each within the idle timeout: a client may take as long as it
  // keeps sending, one that stalls is dropped.
  void readUpload() {
    if (srv_->stopped) {
      removeUpload();
      return closeNow();
    }
    if (upload_->is_done()) return uploadReceived();
    lowest(stream_).expires_after(opts().idleTimeout);
    http::async_read_some(stream_, buffer_, *upload_, [self = this->shared_from_this()](beast::error_code ec, size_t) {
      if (ec) return self->readFailed(ec, true);
      self->readUpload();
    });
  }

  void uploadReceived() {
    lowest(stream_).expires_never();  // the handler may take long; the peer waits
    ++served_;
    beast::error_code ec;
    auto& body = upload_->get().body();
    req_.uploadBytes = body.file().size(ec);
    body.close();
    req_.uploadFile = uploadPath_;
    std::lock_guard lock(srv_->mu);
    if (srv_->stopped) {
      removeUpload();
      return closeNow();
    }
    asio::post(srv_->pool, [self = this->shared_from_this()] {
      RequestIdScope scope(self->req_.requestId, self->req_.method + " " + self->req_.path);
      self->resp_ = self->runHandler([&] { return self->uploadRoute_->handler(self->req_); }, false);
      self->removeUpload();  // unless the handler moved it away
      asio::post(self->strand_, [self] { self->respond(); });
    });
  }

  // On the strand, or on the pool while the strand waits for it.
  void removeUpload() {
    upload_.reset();  // closes the file
    if (uploadPath_.empty()) return;
    if (::unlink(uploadPath_.c_str()) != 0 && errno != ENOENT)
      spdlog::warn("http: cannot remove the upload file {}: {}", uploadPath_, std::strerror(errno));
    uploadPath_.clear();
  }

  // resp_ refuses the request: answered, then the connection closes (its body,
  // if any, was never read).
  void refuse() {
    keepAlive_ = false;
    lingerAfterWrite_ = true;
    respond();
  }

  // On a pool thread; the strand is idle meanwhile, so req_ and resp_ are ours.
  void handle(bool upgrade) {
    RequestIdScope scope(req_.requestId, req_.method + " " + req_.path);
    bool selfAuthenticated = false;
    const WsHandler* ws = upgrade ? srv_->router->matchWebSocket(req_, &selfAuthenticated) : nullptr;
    if (ws == nullptr) {
      resp_ = runHandler([&] { return srv_->router->dispatch(req_); });
      if (resp_.later) return startDeferred();
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
      }, !selfAuthenticated);
      if (accept) {
        asio::post(strand_, [self = this->shared_from_this(), accept = std::move(accept)]() mutable {
          self->upgradeTo(std::move(accept));
        });
        return;
      }
    }
    asio::post(strand_, [self = this->shared_from_this()] { self->respond(); });
  }

  // On a pool thread: a deferred response (Response::deferred) is started; its
  // answer, whenever and from whichever thread it comes, is sent on the strand.
  // The pool thread goes back to serving others meanwhile.
  void startDeferred() {
    auto start = std::move(resp_.later);
    resp_.later = nullptr;
    auto answer = [self = this->shared_from_this()](Response r) {
      asio::post(self->strand_, [self, r = std::move(r)]() mutable {
        self->resp_ = std::move(r);
        self->respond();
      });
    };
    try {
      start(std::move(answer));
    } catch (const std::exception& e) {
      // start never called answer when it threw before registering it.
      resp_ = Response::error(Error::internal(fmt::format("handler threw: {}", e.what())), req_.requestId);
      asio::post(strand_, [self = this->shared_from_this()] { self->respond(); });
    }
  }

  // authenticate (unless done already), then f, with exceptions turned into a
  // generic 500.
  template <class F>
  Response runHandler(F&& f, bool authenticate = true) {
    try {
      if (authenticate && opts().authenticate) {
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
    {
      RequestIdScope scope(req_.requestId);
      spdlog::info("http {} {} 101 {:.1f}ms {} req={}", req_.method, req_.path, ms, peer_.describe(), req_.requestId);
    }
    if (srv_->metrics) srv_->metrics->request(req_, 101, Clock::now() - started_);
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
    {
      RequestIdScope scope(req_.requestId);  // structured logs carry it as a field too
      spdlog::info("http {} {} {} {:.1f}ms {} req={}", req_.method, req_.path, resp_.status, ms, peer_.describe(),
                   req_.requestId);
    }
    if (srv_->metrics) srv_->metrics->request(req_, resp_.status, Clock::now() - started_);
    if (srv_->stopped) return closeNow();

    res_.emplace();
    auto& res = *res_;
    res.version(version_);
    res.result(static_cast<unsigned>(resp_.status));
    res.set(http::field::server, "corrald");
    res.set("X-Request-Id", req_.requestId);
    if (!resp_.contentType.empty()) res.set(http::field::content_type, resp_.contentType);
    for (const auto& [k, v] : resp_.headers) res.set(k, v);
    // A peer that failed to authenticate gets its answer and nothing more: it
    // does not keep a connection to retry on.
    if (resp_.status == 401) keepAlive_ = false;
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
  // An upload's body parser (the header moved over from parser_), its file, its route.
  std::optional<http::request_parser<http::file_body>> upload_;
  std::string uploadPath_;
  const Router::UploadRoute* uploadRoute_ = nullptr;
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
