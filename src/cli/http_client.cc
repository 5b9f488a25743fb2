// HttpClient: one request per connection over the unix socket or TLS; and the
// certificate probe of `corral remote add`. Everything runs on a private
// io_context bounded by run_for(timeout), so that a silent peer can never
// hang the CLI.
#include "cli/http_client.h"

#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <fmt/format.h>

#include <boost/asio/ssl.hpp>

#include "cli/tls_setup.h"

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

// The state of one exchange, shared by the callbacks of its chain.
struct Exchange {
  http::request<http::string_body> req;
  beast::flat_buffer buffer;
  http::response_parser<http::string_body> parser;
  beast::error_code result;
  Error failure; // set by a step that fails without an error_code (pin)
  bool failed = false;
  const char *stage = "connect";
  bool done = false;

  void fail(beast::error_code ec) {
    result = ec;
    done = true;
  }
  void failWith(Error e) {
    failure = std::move(e);
    failed = true;
    done = true;
  }
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
                const std::string &host, uint16_t port, Exchange &x,
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
  auto &msg = x.parser.get();
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

} // namespace

Result<HttpResponse> HttpClient::request(std::string_view method,
                                         std::string_view target,
                                         std::string_view jsonBody,
                                         std::chrono::seconds timeout,
                                         const HttpHeaders &headers) const {
  asio::io_context io;
  Exchange x;
  x.req.method_string(beast::string_view(method.data(), method.size()));
  x.req.target(beast::string_view(target.data(), target.size()));
  x.req.version(11);
  x.req.set(http::field::host,
            target_.isUnix() ? std::string("corrald") : target_.hostHeader);
  x.req.set(http::field::user_agent, "corral-cli");
  x.req.set(http::field::accept, "application/json, text/plain");
  if (!target_.isUnix() && !target_.token.empty())
    x.req.set(http::field::authorization, "Bearer " + target_.token);
  for (const auto &[k, v] : headers)
    x.req.set(k, v);
  x.req.keep_alive(false);
  if (!jsonBody.empty()) {
    x.req.set(http::field::content_type, "application/json");
    x.req.body() = std::string(jsonBody);
  }
  x.req.prepare_payload();
  x.parser.body_limit(kMaxResponseBytes);

  if (target_.isUnix()) {
    Local::socket sock(io);
    sock.async_connect(Local::endpoint(target_.socketPath),
                       [&](beast::error_code ec) {
                         if (ec)
                           return x.fail(ec);
                         writeThenRead(sock, x);
                       });
    io.run_for(timeout);
    return finish(x, x.done, timeout);
  }

  namespace ssl = asio::ssl;
  const bool pinned = !target_.fingerprint.empty();
  auto ctx = tls::makeContext(!pinned);
  ssl::stream<Tcp::socket> stream(io, *ctx);
  if (auto r = tls::configureConnection(stream.native_handle(), target_.host,
                                        !pinned);
      !r)
    return r.error();
  Tcp::resolver resolver(io);
  connectTcp(resolver, stream.next_layer(), target_.host, target_.port, x, [&] {
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
        if (auto r = tls::checkPin(stream.native_handle(), target_.fingerprint);
            !r)
          return x.failWith(r.error());
      }
      writeThenRead(stream, x);
    });
  });
  io.run_for(timeout);
  return finish(x, x.done, timeout);
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
