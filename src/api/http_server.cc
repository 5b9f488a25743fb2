// The HTTP transport: unix-socket acceptor, one Session per connection, handlers
// on a thread pool. See http_server.h.
//
// Threads: the acceptor and each Session live on their own strand of the daemon's
// io_context; a request is handed to the pool, and the finished Response is
// posted back to the session's strand, which alone touches the socket. Lifetimes:
// sessions hold a shared_ptr to Impl (options, router pointer, stop flag), so a
// completion arriving after stop() finds a valid object and quietly closes. The
// router and the pool are only used while the HttpServer lives; its destructor
// joins the pool, so no handler outlives it.
#include "api/http_server.h"

#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <mutex>
#include <unordered_map>

#include <boost/asio/dispatch.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/thread_pool.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "api/http_error.h"

namespace corral::api {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using Local = asio::local::stream_protocol;
using Strand = asio::strand<asio::io_context::executor_type>;
using Socket = asio::basic_stream_socket<Local, Strand>;
using Stream = beast::basic_stream<Local, Strand>;
using Clock = std::chrono::steady_clock;

// How long an idle keep-alive connection (or a slow sender) may sit between
// requests, and how long writing one response may take.
constexpr auto kReadTimeout = std::chrono::seconds(120);
constexpr auto kWriteTimeout = std::chrono::seconds(60);

class Session;

}  // namespace

struct detail::HttpServerImpl : std::enable_shared_from_this<detail::HttpServerImpl> {
  HttpServerImpl(asio::io_context& ioc, const Router& r, HttpServerOptions o)
      : io(ioc),
        router(&r),
        opts(std::move(o)),
        pool(std::max<size_t>(1, opts.handlerThreads)),
        acceptorStrand(asio::make_strand(ioc)),
        acceptor(acceptorStrand) {}

  asio::io_context& io;
  const Router* router;
  HttpServerOptions opts;
  asio::thread_pool pool;
  Strand acceptorStrand;
  Local::acceptor acceptor;  // touched only on acceptorStrand (or before io runs)

  std::atomic<bool> stopped{false};
  std::mutex mu;  // guards sessions and socketIdentity
  std::unordered_map<Session*, std::weak_ptr<Session>> sessions;
  bool haveSocketFile = false;
  bool listening = false;
  dev_t socketDev = 0;
  ino_t socketIno = 0;

  void doAccept();
  void stop();
};

namespace {

class Session : public std::enable_shared_from_this<Session> {
 public:
  Session(std::shared_ptr<detail::HttpServerImpl> srv, Socket&& sock, Strand strand)
      : srv_(std::move(srv)), strand_(std::move(strand)), stream_(std::move(sock)) {
    ucred cred{};
    socklen_t len = sizeof(cred);
    if (::getsockopt(stream_.socket().native_handle(), SOL_SOCKET, SO_PEERCRED, &cred, &len) == 0) {
      peerUid_ = cred.uid;
      peerPid_ = cred.pid;
    }
  }

  ~Session() {
    std::lock_guard lock(srv_->mu);
    srv_->sessions.erase(this);
  }

  void start() {
    {
      std::lock_guard lock(srv_->mu);
      srv_->sessions.emplace(this, weak_from_this());
    }
    asio::dispatch(strand_, [self = shared_from_this()] { self->doRead(); });
  }

  // On the strand.
  void closeNow() {
    beast::error_code ec;
    stream_.socket().shutdown(Local::socket::shutdown_both, ec);
    stream_.close();
  }

  const Strand& strand() const { return strand_; }

 private:
  void doRead() {
    if (srv_->stopped) return closeNow();
    parser_.emplace();
    parser_->body_limit(srv_->opts.maxBodyBytes);
    stream_.expires_after(kReadTimeout);
    http::async_read(stream_, buffer_, *parser_,
                     [self = shared_from_this()](beast::error_code ec, size_t) { self->onRead(ec); });
  }

  void onRead(beast::error_code ec) {
    if (ec == http::error::end_of_stream || ec == asio::error::operation_aborted || ec == beast::error::timeout ||
        ec == asio::error::connection_reset || ec == asio::error::eof) {
      return closeNow();
    }
    if (ec == http::error::body_limit) {
      Error e = Error::invalidInput("body", "",
                                    fmt::format("request body exceeds the limit of {} bytes", srv_->opts.maxBodyBytes));
      Request r;  // the header was read: log what was refused
      if (parser_->is_header_done()) {
        const auto& h = parser_->get();
        r.method = std::string(h.method_string());
        std::string_view t(h.target().data(), h.target().size());
        r.path = std::string(t.substr(0, t.find('?')));
      }
      return protocolError(413, e, &r);
    }
    if (ec) {
      if (ec.category() == http::make_error_code(http::error::bad_target).category())
        return protocolError(400, Error::invalidInput("request", "", fmt::format("malformed HTTP: {}", ec.message())));
      spdlog::debug("http: read failed: {}", ec.message());
      return closeNow();
    }
    stream_.expires_never();  // the handler may take long; the peer waits
    auto& msg = parser_->get();

    auto req = std::make_shared<Request>();
    req->method = std::string(msg.method_string());
    std::string_view target(msg.target().data(), msg.target().size());
    size_t q = target.find('?');
    req->path = std::string(target.substr(0, q));
    if (q != std::string_view::npos) req->query = parseQuery(target.substr(q + 1));
    req->body = std::move(msg.body());
    req->peerUid = peerUid_;
    req->peerPid = peerPid_;
    req->requestId = newRequestId();
    keepAlive_ = msg.keep_alive();
    version_ = msg.version();
    started_ = Clock::now();

    if (req->path.empty() || req->path.front() != '/')
      return protocolError(400, Error::invalidInput("path", req->path, "must be an absolute path"), req.get());

    std::lock_guard lock(srv_->mu);  // stop() takes it too: no post to a joined pool
    if (srv_->stopped) return closeNow();
    asio::post(srv_->pool, [self = shared_from_this(), req] {
      Response resp = self->runHandler(*req);
      asio::post(self->strand_, [self, req, resp = std::move(resp)]() mutable { self->respond(*req, std::move(resp)); });
    });
  }

  // On a pool thread.
  Response runHandler(Request& req) {
    RequestIdScope scope(req.requestId);
    try {
      if (srv_->opts.authorize) {
        if (auto refused = srv_->opts.authorize(req)) return Response::error(*refused, req.requestId);
      }
      return srv_->router->dispatch(req);
    } catch (const std::exception& e) {
      return Response::error(Error::internal(fmt::format("handler threw: {}", e.what())), req.requestId);
    } catch (...) {
      return Response::error(Error::internal("handler threw a non-exception"), req.requestId);
    }
  }

  // An error found before dispatch: answer and close (the stream may be out of sync).
  void protocolError(int status, const Error& e, const Request* req = nullptr) {
    Request r;
    if (req != nullptr) r = *req;
    if (r.requestId.empty()) r.requestId = newRequestId();
    if (r.method.empty()) r.method = "-";
    if (r.path.empty()) r.path = "-";
    started_ = Clock::now();
    keepAlive_ = false;
    version_ = 11;
    respond(r, Response::json(status, errorBody(e, r.requestId)));
  }

  // On the strand.
  void respond(const Request& req, Response resp) {
    double ms = std::chrono::duration<double, std::milli>(Clock::now() - started_).count();
    spdlog::info("http {} {} {} {:.1f}ms uid={} req={}", req.method, req.path, resp.status, ms,
                 peerUid_ == (uid_t)-1 ? -1 : (long)peerUid_, req.requestId);
    if (srv_->stopped) return closeNow();

    auto res = std::make_shared<http::response<http::string_body>>();
    res->version(version_);
    res->result(static_cast<unsigned>(resp.status));
    res->set(http::field::server, "corrald");
    res->set("X-Request-Id", req.requestId);
    if (!resp.contentType.empty()) res->set(http::field::content_type, resp.contentType);
    for (const auto& [k, v] : resp.headers) res->set(k, v);
    res->keep_alive(keepAlive_);
    res->body() = std::move(resp.body);
    res->prepare_payload();

    stream_.expires_after(kWriteTimeout);
    http::async_write(stream_, *res, [self = shared_from_this(), res](beast::error_code ec, size_t) {
      if (ec || !self->keepAlive_) return self->closeNow();
      self->doRead();
    });
  }

  std::shared_ptr<detail::HttpServerImpl> srv_;
  Strand strand_;
  Stream stream_;
  beast::flat_buffer buffer_;
  std::optional<http::request_parser<http::string_body>> parser_;
  uid_t peerUid_ = (uid_t)-1;
  pid_t peerPid_ = 0;
  bool keepAlive_ = true;
  unsigned version_ = 11;
  Clock::time_point started_;
};

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

}  // namespace

void detail::HttpServerImpl::doAccept() {
  acceptor.async_accept(asio::make_strand(io), [self = shared_from_this()](beast::error_code ec, Socket sock) {
    if (self->stopped || ec == asio::error::operation_aborted) return;
    if (ec) {
      // EMFILE and friends: log and keep accepting; a busy host should not lose its API.
      spdlog::warn("http: accept on {} failed: {}", self->opts.socketPath, ec.message());
    } else {
      auto strand = Strand(sock.get_executor());
      std::make_shared<Session>(self, std::move(sock), std::move(strand))->start();
    }
    self->doAccept();
  });
}

void detail::HttpServerImpl::stop() {
  std::vector<std::shared_ptr<Session>> live;
  bool wasListening = false;
  {
    std::lock_guard lock(mu);
    if (stopped.exchange(true)) return;
    for (auto& [_, w] : sessions)
      if (auto s = w.lock()) live.push_back(std::move(s));
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
    beast::error_code ec;
    self->acceptor.close(ec);
  });
  for (auto& s : live) asio::post(s->strand(), [s] { s->closeNow(); });
  if (wasListening) spdlog::info("http: stopped listening on {}", opts.socketPath);
}

HttpServer::HttpServer(asio::io_context& io, const Router& router, HttpServerOptions opts)
    : impl_(std::make_shared<detail::HttpServerImpl>(io, router, std::move(opts))) {}

HttpServer::~HttpServer() {
  impl_->stop();
  impl_->pool.join();  // no handler may use the router after this
}

const std::string& HttpServer::socketPath() const { return impl_->opts.socketPath; }

Result<void> HttpServer::start() {
  const std::string& path = impl_->opts.socketPath;
  if (path.empty() || path.size() >= sizeof(sockaddr_un::sun_path))
    return Error::invalidInput("socket", path,
                               fmt::format("must be a path of 1 to {} bytes", sizeof(sockaddr_un::sun_path) - 1));
  if (impl_->stopped) return Error::failedPrecondition("http server already stopped");

  struct stat st {};
  if (::lstat(path.c_str(), &st) == 0) {
    if (!S_ISSOCK(st.st_mode))
      return Error::failedPrecondition(fmt::format("{} exists and is not a socket; refusing to replace it", path));
    if (socketAnswers(path))
      return Error::unavailable(fmt::format("another daemon is already listening on {}", path));
    spdlog::info("http: removing stale socket {}", path);
    if (::unlink(path.c_str()) != 0 && errno != ENOENT)
      return Error::unavailable(fmt::format("cannot remove stale socket {}: {}", path, std::strerror(errno)));
  }

  beast::error_code ec;
  auto& acc = impl_->acceptor;
  acc.open(Local(), ec);
  if (!ec) acc.bind(Local::endpoint(path), ec);
  if (ec) {
    acc.close(ec);
    return Error::unavailable(fmt::format("cannot bind {}: {}", path, ec.message()));
  }
  // Nobody can connect before listen(), so chmod-after-bind leaves no window.
  if (::chmod(path.c_str(), impl_->opts.socketMode) != 0 || ::lstat(path.c_str(), &st) != 0) {
    int err = errno;
    acc.close(ec);
    ::unlink(path.c_str());
    return Error::unavailable(fmt::format("cannot set the mode of {}: {}", path, std::strerror(err)));
  }
  {
    std::lock_guard lock(impl_->mu);
    impl_->haveSocketFile = true;
    impl_->socketDev = st.st_dev;
    impl_->socketIno = st.st_ino;
  }
  acc.listen(asio::socket_base::max_listen_connections, ec);
  if (ec) {
    beast::error_code ignored;
    acc.close(ignored);
    ::unlink(path.c_str());
    return Error::unavailable(fmt::format("cannot listen on {}: {}", path, ec.message()));
  }
  {
    std::lock_guard lock(impl_->mu);
    impl_->listening = true;
  }
  spdlog::info("http: listening on {} (mode {:04o}, {} handler threads)", path, impl_->opts.socketMode,
               std::max<size_t>(1, impl_->opts.handlerThreads));
  // Through the strand, so that stop() (also posted there) is ordered after it
  // whichever thread calls start().
  asio::post(impl_->acceptorStrand, [impl = impl_] { impl->doAccept(); });
  return ok();
}

void HttpServer::stop() { impl_->stop(); }

}  // namespace corral::api
