// HttpClient: one request per connection over the unix socket or TLS; and the
// certificate probe of `corral remote add`. Everything runs on a private
// io_context bounded by run_for(timeout), so that a silent peer can never
// hang the CLI.
#include "cli/http_client.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <functional>
#include <optional>
#include <vector>

#include <boost/asio/connect.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/write.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <fmt/format.h>

#include <boost/asio/ssl.hpp>

#include "cli/tls_setup.h"
#include "util/unique_fd.h"

namespace corral::cli {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using Local = asio::local::stream_protocol;
using Tcp = asio::ip::tcp;

// Daemon answers (VM logs included) are capped so a runaway body cannot eat the
// client's memory.
constexpr uint64_t kMaxResponseBytes = 64ull << 20;

// How one exchange is going, shared by the callbacks of its chain: the first
// failure (an error_code, or an Error for a step that fails without one, the
// pin) and the stage it happened in.
struct ExchangeStatus {
  beast::error_code result;
  Error failure;
  bool failed = false;
  const char *stage = "connect";
  bool done = false;
  std::function<void()> onEnd; // when set, called as a failure ends it

  void fail(beast::error_code ec) {
    result = ec;
    done = true;
    if (onEnd)
      onEnd();
  }
  void failWith(Error e) {
    failure = std::move(e);
    failed = true;
    done = true;
    if (onEnd)
      onEnd();
  }
};

// One request with its body in memory, and the answer.
struct Exchange : ExchangeStatus {
  http::request<http::string_body> req;
  beast::flat_buffer buffer;
  http::response_parser<http::string_body> parser;
};

// Writes the request and reads the answer on a connected (and, for TLS,
// verified) stream.
template <class Stream> void writeThenRead(Stream &stream, Exchange &x) {
  x.stage = "exchange";
  http::async_write(
      stream, x.req, [&stream, &x](beast::error_code wec, size_t) {
        // The daemon may answer before reading the whole body (413) and close:
        // its answer is still queued on our side, so read it before giving up.
        http::async_read(stream, x.buffer, x.parser,
                         [&x, wec](beast::error_code rec, size_t) {
                           x.fail(rec ? (wec ? wec : rec) : rec);
                         });
      });
}

// Resolves and connects a TCP socket, then calls next().
template <class Next>
void connectTcp(Tcp::resolver &resolver, Tcp::socket &sock,
                const std::string &host, uint16_t port, ExchangeStatus &x,
                Next next) {
  resolver.async_resolve(
      host, std::to_string(port),
      [&sock, &x, next](beast::error_code ec,
                        Tcp::resolver::results_type results) {
        if (ec)
          return x.fail(ec);
        asio::async_connect(
            sock, results,
            [&x, next](beast::error_code cec, const Tcp::endpoint &) {
              if (cec)
                return x.fail(cec);
              next();
            });
      });
}

// Opens a connection to `t` on io (the unix socket; or TCP, then the TLS
// handshake and the pin or CA check) and calls ready(stream) once it may carry
// a request; failures land in x. run(stream) runs io while the stream is alive
// (the stream lives as long as this call), bounding it as the caller wants.
template <class Ready, class Run>
void connectAndRun(const Target &t, asio::io_context &io, ExchangeStatus &x,
                   Ready ready, Run run) {
  if (t.isUnix()) {
    Local::socket sock(io);
    sock.async_connect(Local::endpoint(t.socketPath),
                       [&](beast::error_code ec) {
                         if (ec)
                           return x.fail(ec);
                         ready(sock);
                       });
    run(sock);
    return;
  }
  namespace ssl = asio::ssl;
  const bool pinned = !t.fingerprint.empty();
  auto ctx = tls::makeContext(!pinned);
  ssl::stream<Tcp::socket> stream(io, *ctx);
  if (auto r = tls::configureConnection(stream.native_handle(), t.host, !pinned);
      !r) {
    x.failWith(r.error());
    return;
  }
  Tcp::resolver resolver(io);
  connectTcp(resolver, stream.next_layer(), t.host, t.port, x, [&] {
    x.stage = "tls";
    stream.async_handshake(ssl::stream_base::client, [&](beast::error_code ec) {
      if (ec) {
        return x.failWith(
            Error{ErrorCode::Unavailable,
                  tls::handshakeFailure(stream.native_handle(), ec, !pinned),
                  "tls",
                  {}});
      }
      if (pinned) {
        if (auto r = tls::checkPin(stream.native_handle(), t.fingerprint); !r)
          return x.failWith(r.error());
      }
      ready(stream);
    });
  });
  run(stream);
}

template <class Message> HttpResponse toResponse(Message &msg) {
  HttpResponse out;
  out.status = static_cast<int>(msg.result_int());
  if (auto it = msg.find(http::field::content_type); it != msg.end())
    out.contentType = std::string(it->value());
  if (auto it = msg.find(http::field::etag); it != msg.end())
    out.etag = std::string(it->value());
  if (auto it = msg.find(http::field::location); it != msg.end())
    out.location = std::string(it->value());
  out.body = std::move(msg.body());
  return out;
}

Result<HttpResponse> finish(Exchange &x, bool done,
                            std::chrono::seconds timeout) {
  if (!done)
    return Error{ErrorCode::Unavailable,
                 fmt::format("no answer within {} s", timeout.count()),
                 x.stage,
                 {}};
  if (x.failed)
    return std::move(x.failure);
  if (x.result)
    return Error{ErrorCode::Unavailable, x.result.message(), x.stage, {}};
  return toResponse(x.parser.get());
}

// The headers every request carries.
template <class Request>
void setCommonHeaders(Request &req, const Target &t, std::string_view method,
                      std::string_view target, const HttpHeaders &headers) {
  req.method_string(beast::string_view(method.data(), method.size()));
  req.target(beast::string_view(target.data(), target.size()));
  req.version(11);
  req.set(http::field::host, t.isUnix() ? std::string("corrald") : t.hostHeader);
  req.set(http::field::user_agent, "corral-cli");
  req.set(http::field::accept, "application/json, text/plain");
  if (!t.isUnix() && !t.token.empty())
    req.set(http::field::authorization, "Bearer " + t.token);
  for (const auto &[k, v] : headers)
    req.set(k, v);
  req.keep_alive(false);
}

// ---- upload: a file as the body, streamed in chunks

// One upload: the request head (Content-Length = the file's size, "Expect:
// 100-continue"), the file read a chunk at a time, and the answer. Only one
// chunk is ever in memory.
struct Upload : ExchangeStatus {
  explicit Upload(asio::io_context &io) : idle(io), continueTimer(io) {
    onEnd = [this] {
      idle.cancel();
      continueTimer.cancel();
      if (close)
        close();
    };
  }

  http::request<http::empty_body> req;
  std::optional<http::request_serializer<http::empty_body>> head;
  beast::flat_buffer buffer;
  std::optional<http::response_parser<http::string_body>> parser;
  std::optional<HttpResponse> answer;
  beast::error_code writeError; // a failed body write; the answer may follow
  asio::steady_timer idle;          // no progress for this long: give up
  asio::steady_timer continueTimer; // no "100 Continue" by then: send anyway
  std::function<void()> close;      // closes the connection (set by run)

  int fd = -1;
  std::string path;
  uint64_t total = 0;
  uint64_t sent = 0;
  std::vector<char> chunk;
  bool bodyStarted = false;
  const UploadProgress *progress = nullptr;
  UploadOptions opts;

  // Ends the exchange: nothing pending keeps io.run() going afterwards.
  void end() {
    done = true;
    onEnd();
  }
  void endWith(Error e) {
    if (done)
      return;
    failWith(std::move(e));
    end();
  }
  void endWith(beast::error_code ec) {
    if (done)
      return;
    fail(ec);
    end();
  }
  // (Re)starts the idle clock: called at the start and on every progress.
  void touch() {
    if (done)
      return;
    idle.expires_after(opts.idleTimeout);
    idle.async_wait([this](beast::error_code ec) {
      if (ec || done)
        return; // re-armed or ended
      endWith(Error{ErrorCode::Unavailable,
                    fmt::format("no progress within {} s",
                                opts.idleTimeout.count()),
                    stage,
                    {}});
    });
  }
};

template <class Stream> void uploadNextChunk(Stream &s, Upload &u);

// Reads the next answer: a "100 Continue" starts the body (then the next answer
// is read), any other 1xx is skipped, and a final answer ends the exchange,
// whether or not the body went out whole (a refusal may come at any time).
template <class Stream> void uploadReadAnswer(Stream &s, Upload &u) {
  u.parser.emplace();
  u.parser->body_limit(kMaxResponseBytes);
  http::async_read(s, u.buffer, *u.parser, [&s, &u](beast::error_code ec,
                                                    size_t) {
    if (u.done)
      return;
    if (ec)
      return u.endWith(u.writeError ? u.writeError : ec);
    u.touch();
    auto &msg = u.parser->get();
    if (msg.result_int() / 100 == 1) {
      if (msg.result() == http::status::continue_ && !u.bodyStarted) {
        u.bodyStarted = true;
        u.continueTimer.cancel();
        uploadNextChunk(s, u);
      }
      return uploadReadAnswer(s, u);
    }
    u.answer = toResponse(msg);
    u.end();
  });
}

template <class Stream> void uploadNextChunk(Stream &s, Upload &u) {
  if (u.done || u.sent >= u.total)
    return; // all sent: the pending read brings the answer
  size_t want = size_t(std::min<uint64_t>(u.chunk.size(), u.total - u.sent));
  ssize_t n;
  do {
    n = ::pread(u.fd, u.chunk.data(), want, off_t(u.sent));
  } while (n < 0 && errno == EINTR);
  if (n <= 0) {
    std::string why = n < 0 ? std::strerror(errno)
                            : fmt::format("it shrank to {} bytes while it was "
                                          "sent",
                                          u.sent);
    return u.endWith(Error{ErrorCode::Unavailable,
                           fmt::format("reading {}: {}", u.path, why),
                           "file",
                           u.path});
  }
  asio::async_write(s, asio::buffer(u.chunk.data(), size_t(n)),
                    [&s, &u](beast::error_code ec, size_t written) {
                      if (u.done)
                        return;
                      if (ec) {
                        // The daemon may have refused and closed: its answer
                        // is still to be read; the read ends the exchange.
                        u.writeError = ec;
                        return;
                      }
                      u.sent += written;
                      u.touch();
                      if (u.progress && *u.progress)
                        (*u.progress)(u.sent, u.total);
                      uploadNextChunk(s, u);
                    });
}

// On a connected stream: the head, then the answer is read while the body
// waits for "100 Continue" (or continueWait, for a server that ignores Expect).
template <class Stream> void uploadStart(Stream &s, Upload &u) {
  if (u.done)
    return;
  u.stage = "exchange";
  u.touch();
  u.head.emplace(u.req);
  http::async_write_header(s, *u.head, [&s, &u](beast::error_code ec, size_t) {
    if (u.done)
      return;
    if (ec)
      return u.endWith(ec);
    u.touch();
    uploadReadAnswer(s, u);
    if (u.total == 0) {
      u.bodyStarted = true; // nothing to send; the answer is all there is
      return;
    }
    u.continueTimer.expires_after(u.opts.continueWait);
    u.continueTimer.async_wait([&s, &u](beast::error_code tec) {
      if (tec || u.done || u.bodyStarted)
        return;
      u.bodyStarted = true;
      uploadNextChunk(s, u);
    });
  });
}

} // namespace

Result<HttpResponse> HttpClient::request(std::string_view method,
                                         std::string_view target,
                                         std::string_view jsonBody,
                                         std::chrono::seconds timeout,
                                         const HttpHeaders &headers) const {
  asio::io_context io;
  Exchange x;
  setCommonHeaders(x.req, target_, method, target, headers);
  if (!jsonBody.empty()) {
    x.req.set(http::field::content_type, "application/json");
    x.req.body() = std::string(jsonBody);
  }
  x.req.prepare_payload();
  x.parser.body_limit(kMaxResponseBytes);
  connectAndRun(
      target_, io, x, [&x](auto &stream) { writeThenRead(stream, x); },
      [&io, timeout](auto &) { io.run_for(timeout); });
  return finish(x, x.done, timeout);
}

Result<HttpResponse> HttpClient::upload(std::string_view method,
                                        std::string_view target,
                                        const std::string &filePath,
                                        const HttpHeaders &headers,
                                        const UploadProgress &progress,
                                        const UploadOptions &opts) const {
  util::UniqueFd fd(::open(filePath.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd)
    return Error{ErrorCode::InvalidInput,
                 fmt::format("cannot open {}: {}", filePath, std::strerror(errno)),
                 "file",
                 filePath};
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0 || !S_ISREG(st.st_mode))
    return Error{ErrorCode::InvalidInput,
                 fmt::format("{} is not a regular file", filePath), "file",
                 filePath};
  asio::io_context io;
  Upload u(io);
  u.fd = fd.get();
  u.path = filePath;
  u.total = uint64_t(st.st_size);
  u.opts = opts;
  u.progress = &progress;
  u.chunk.resize(std::max<size_t>(opts.chunkBytes, 4096));
  setCommonHeaders(u.req, target_, method, target, headers);
  u.req.set(http::field::content_type, "application/octet-stream");
  u.req.set(http::field::expect, "100-continue");
  // Set by hand: the body is not the message's but the file's, sent after the
  // head.
  u.req.content_length(u.total);
  connectAndRun(
      target_, io, u, [&u](auto &stream) { uploadStart(stream, u); },
      [&io, &u](auto &stream) {
        u.close = [&stream] {
          beast::error_code ec;
          beast::get_lowest_layer(stream).close(ec);
        };
        u.touch(); // bounds the connect and handshake too
        io.run();
        u.close = nullptr;
      });
  if (u.failed)
    return std::move(u.failure);
  if (u.answer)
    return std::move(*u.answer);
  return Error{ErrorCode::Unavailable,
               u.result ? u.result.message()
                        : std::string("the connection ended without an answer"),
               u.stage,
               {}};
}

Result<PeerCertificate>
HttpClient::probeCertificate(const std::string &host, uint16_t port,
                             std::chrono::seconds timeout) {
  namespace ssl = asio::ssl;
  asio::io_context io;
  Exchange x;
  auto ctx = tls::makeContext(true);
  ssl::stream<Tcp::socket> stream(io, *ctx);
  if (auto r = tls::configureConnection(stream.native_handle(), host, false);
      !r)
    return r.error();
  Tcp::resolver resolver(io);
  connectTcp(resolver, stream.next_layer(), host, port, x, [&] {
    x.stage = "tls";
    stream.async_handshake(ssl::stream_base::client, [&](beast::error_code ec) {
      if (ec)
        return x.failWith(
            Error{ErrorCode::Unavailable,
                  tls::handshakeFailure(stream.native_handle(), ec, false),
                  "tls",
                  {}});
      x.done = true;
    });
  });
  io.run_for(timeout);
  if (!x.done)
    return Error{ErrorCode::Unavailable,
                 fmt::format("no answer within {} s", timeout.count()),
                 x.stage,
                 {}};
  if (x.failed)
    return std::move(x.failure);
  if (x.result)
    return Error{ErrorCode::Unavailable, x.result.message(), x.stage, {}};

  SSL *s = stream.native_handle();
  X509 *cert = SSL_get1_peer_certificate(s);
  if (cert == nullptr)
    return Error{
        ErrorCode::Unavailable, "the server sent no certificate", "tls", {}};
  PeerCertificate out;
  out.fingerprint = certificateFingerprint(cert);
  auto name = [](X509_NAME *n) {
    char buf[512];
    return n ? std::string(X509_NAME_oneline(n, buf, sizeof buf))
             : std::string("-");
  };
  out.subject = name(X509_get_subject_name(cert));
  out.issuer = name(X509_get_issuer_name(cert));
  if (BIO *bio = BIO_new(BIO_s_mem())) {
    if (ASN1_TIME_print(bio, X509_get0_notAfter(cert)) == 1) {
      char *data = nullptr;
      long n = BIO_get_mem_data(bio, &data);
      out.notAfter.assign(data, size_t(n));
    }
    BIO_free(bio);
  }
  X509_free(cert);
  long v = SSL_get_verify_result(s);
  out.trusted = v == X509_V_OK;
  if (!out.trusted)
    out.trustError = X509_verify_cert_error_string(v);
  return out;
}

} // namespace corral::cli
