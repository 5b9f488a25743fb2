// Proves the corral CLI's TLS transport (links corral_cli) against a small
// Beast TLS server inside the test, with a self-signed certificate made here
// through the OpenSSL API: with the right pinned fingerprint a request goes
// through and carries the Bearer token; with a wrong one the connection is
// refused after the handshake and the server never sees a request (so never
// the token); without a pin the self-signed certificate is refused as
// untrusted; probeCertificate reports the fingerprint and that no CA vouches
// for it; and the WebSocket client follows a stream over TLS until the server
// closes it, refusing a wrong pin the same way. An upload (image import to a
// remote) streams its file over the pinned connection with the token.
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/x509.h>

#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <mutex>
#include <thread>
#include <vector>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/websocket.hpp>
#include <boost/beast/websocket/ssl.hpp>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "cli/fingerprint.h"
#include "cli/http_client.h"
#include "cli/ws_client.h"

namespace corral::cli {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace websocket = beast::websocket;
namespace ssl = asio::ssl;
using Tcp = asio::ip::tcp;

// A fresh P-256 key and a self-signed certificate for CN=corral-test, valid a
// day.
struct SelfSigned {
  EVP_PKEY *key = nullptr;
  X509 *cert = nullptr;
  SelfSigned() {
    key = EVP_EC_gen("P-256");
    cert = X509_new();
    X509_set_version(cert, 2);
    ASN1_INTEGER_set(X509_get_serialNumber(cert), 1);
    X509_gmtime_adj(X509_getm_notBefore(cert), -60);
    X509_gmtime_adj(X509_getm_notAfter(cert), 86400);
    X509_set_pubkey(cert, key);
    X509_NAME *name = X509_get_subject_name(cert);
    X509_NAME_add_entry_by_txt(
        name, "CN", MBSTRING_ASC,
        reinterpret_cast<const unsigned char *>("corral-test"), -1, -1, 0);
    X509_set_issuer_name(cert, name);
    X509_sign(cert, key, EVP_sha256());
  }
  ~SelfSigned() {
    X509_free(cert);
    EVP_PKEY_free(key);
  }
  std::string fingerprint() const { return certificateFingerprint(cert); }
};

// Serves one connection at a time on 127.0.0.1:<ephemeral>: an HTTP request
// gets {"login": "alice", "target": ...}; a WebSocket upgrade gets two text
// messages and a close. Counts the requests it read and keeps their
// Authorization headers.
class TlsServer {
public:
  TlsServer()
      : ctx_(ssl::context::tls_server),
        acceptor_(io_, Tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0)) {
    SSL_CTX_use_certificate(ctx_.native_handle(), cert_.cert);
    SSL_CTX_use_PrivateKey(ctx_.native_handle(), cert_.key);
    thread_ = std::thread([this] { loop(); });
  }
  ~TlsServer() {
    stopping_ = true;
    beast::error_code ec;
    Tcp::socket poke(io_);
    poke.connect(acceptor_.local_endpoint(), ec); // wakes accept()
    thread_.join();
  }

  uint16_t port() const { return acceptor_.local_endpoint().port(); }
  std::string fingerprint() const { return cert_.fingerprint(); }
  int requests() {
    std::lock_guard lock(mu_);
    return int(auth_.size());
  }
  std::vector<std::string> authHeaders() {
    std::lock_guard lock(mu_);
    return auth_;
  }

  Target target(std::string fingerprint) const {
    Target t;
    t.name = "test";
    t.url = "https://127.0.0.1:" + std::to_string(port());
    t.host = "127.0.0.1";
    t.port = port();
    t.hostHeader = "127.0.0.1:" + std::to_string(port());
    t.token = "crl_test_token";
    t.fingerprint = std::move(fingerprint);
    return t;
  }

private:
  void loop() {
    for (;;) {
      Tcp::socket s(io_);
      beast::error_code ec;
      acceptor_.accept(s, ec);
      if (ec || stopping_)
        return;
      serve(std::move(s));
    }
  }

  void serve(Tcp::socket s) {
    beast::error_code ec;
    websocket::stream<ssl::stream<Tcp::socket>> ws(std::move(s), ctx_);
    ws.next_layer().handshake(ssl::stream_base::server, ec);
    if (ec)
      return;
    beast::flat_buffer buf;
    http::request<http::string_body> req;
    http::read(ws.next_layer(), buf, req, ec);
    if (ec)
      return; // the client went away without a request: a refused pin
    {
      std::lock_guard lock(mu_);
      auth_.push_back(std::string(req[http::field::authorization]));
    }
    if (websocket::is_upgrade(req)) {
      ws.accept(req, ec);
      if (ec)
        return;
      ws.text(true);
      ws.write(asio::buffer(std::string(
                   R"({"type":"vm.started","vm":"web1","state":"running"})")),
               ec);
      ws.write(asio::buffer(std::string(
                   R"({"type":"vm.stopped","vm":"web1","state":"stopped"})")),
               ec);
      ws.close(websocket::close_code::normal, ec);
      return;
    }
    http::response<http::string_body> res{http::status::ok, 11};
    res.set(http::field::content_type, "application/json");
    res.body() = nlohmann::json{{"login", "alice"},
                                {"target", std::string(req.target())}}
                     .dump();
    res.keep_alive(false);
    res.prepare_payload();
    http::write(ws.next_layer(), res, ec);
    ws.next_layer().shutdown(ec);
  }

  SelfSigned cert_;
  asio::io_context io_;
  ssl::context ctx_;
  Tcp::acceptor acceptor_;
  std::thread thread_;
  std::atomic<bool> stopping_{false};
  std::mutex mu_;
  std::vector<std::string> auth_;
};

TEST(CliTls, PinnedFingerprintIsAcceptedAndCarriesTheToken) {
  TlsServer server;
  auto r = HttpClient(server.target(server.fingerprint()))
               .request("GET", "/api/v1/whoami", {}, std::chrono::seconds(20));
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(r->status, 200);
  auto j = nlohmann::json::parse(r->body);
  EXPECT_EQ(j["target"], "/api/v1/whoami");
  ASSERT_EQ(server.requests(), 1);
  EXPECT_EQ(server.authHeaders()[0], "Bearer crl_test_token");
}

// The streamed upload of `image import` to a remote: the same pin check, the
// token, and the whole body read by a server that never sends "100 Continue".
TEST(CliTls, UploadStreamsOverThePinnedConnection) {
  TlsServer server;
  char tmpl[] = "/tmp/corral-upload-XXXXXX";
  int fd = ::mkstemp(tmpl);
  ASSERT_GE(fd, 0);
  std::string data(300000, 'x');
  ASSERT_EQ(::write(fd, data.data(), data.size()), ssize_t(data.size()));
  ::close(fd);
  UploadOptions opts;
  opts.continueWait = std::chrono::milliseconds(1);
  opts.chunkBytes = 65536;
  uint64_t last = 0;
  auto r = HttpClient(server.target(server.fingerprint()))
               .upload("PUT", "/api/v1/images/x/file?kind=iso", tmpl, {},
                       [&](uint64_t done, uint64_t) { last = done; }, opts);
  ::unlink(tmpl);
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(nlohmann::json::parse(r->body)["target"],
            "/api/v1/images/x/file?kind=iso");
  EXPECT_EQ(last, data.size());
  ASSERT_EQ(server.requests(), 1);
  EXPECT_EQ(server.authHeaders()[0], "Bearer crl_test_token");
}

TEST(CliTls, WrongFingerprintIsRefusedBeforeAnythingIsSent) {
  TlsServer server;
  std::string wrong = server.fingerprint();
  wrong[0] = wrong[0] == 'A' ? 'B' : 'A';
  auto r = HttpClient(server.target(wrong))
               .request("GET", "/api/v1/whoami", {}, std::chrono::seconds(20));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().field, "tls");
  EXPECT_NE(r.error().message.find("does not match the pinned fingerprint"),
            std::string::npos)
      << r.error().message;
  EXPECT_EQ(r.error().value, server.fingerprint());
  // The refusal happened before the request: the server never read one.
  // (A second request proves the server is alive and counting.)
  auto ok = HttpClient(server.target(server.fingerprint()))
                .request("GET", "/x", {}, std::chrono::seconds(20));
  ASSERT_TRUE(ok.ok()) << ok.error().message;
  EXPECT_EQ(server.requests(), 1);
}

TEST(CliTls, UnpinnedSelfSignedIsNotTrusted) {
  TlsServer server;
  auto r = HttpClient(server.target(""))
               .request("GET", "/api/v1/whoami", {}, std::chrono::seconds(20));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().field, "tls");
  EXPECT_NE(r.error().message.find("not trusted"), std::string::npos)
      << r.error().message;
  EXPECT_EQ(server.requests(), 0);
}

TEST(CliTls, ProbeReportsTheCertificate) {
  TlsServer server;
  auto c = HttpClient::probeCertificate("127.0.0.1", server.port(),
                                        std::chrono::seconds(20));
  ASSERT_TRUE(c.ok()) << c.error().message;
  EXPECT_EQ(c->fingerprint, server.fingerprint());
  EXPECT_FALSE(c->trusted);
  EXPECT_FALSE(c->trustError.empty());
  EXPECT_NE(c->subject.find("corral-test"), std::string::npos) << c->subject;
  EXPECT_EQ(server.requests(), 0);
}

TEST(CliTls, NothingListening) {
  uint16_t port = 0;
  {
    TlsServer gone;
    port = gone.port();
  }
  Target t;
  t.host = "127.0.0.1";
  t.port = port;
  t.hostHeader = "127.0.0.1";
  t.url = "https://127.0.0.1";
  t.fingerprint = std::string(95, 'A');
  auto r = HttpClient(t).request("GET", "/", {}, std::chrono::seconds(10));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().field, "connect");
}

TEST(CliTls, WebSocketFollowsUntilTheServerCloses) {
  TlsServer server;
  std::vector<std::string> got;
  auto r =
      followWebSocket(server.target(server.fingerprint()), "/api/v1/events",
                      [&](const std::string &m) { got.push_back(m); });
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(*r, WsEnd::ServerClosed);
  ASSERT_EQ(got.size(), 2u);
  EXPECT_EQ(nlohmann::json::parse(got[1])["type"], "vm.stopped");
  ASSERT_EQ(server.requests(), 1);
  EXPECT_EQ(server.authHeaders()[0], "Bearer crl_test_token");
}

TEST(CliTls, WebSocketRefusesAWrongPin) {
  TlsServer server;
  std::string wrong = server.fingerprint();
  wrong[1] = wrong[1] == '0' ? '1' : '0';
  int messages = 0;
  auto r = followWebSocket(server.target(wrong), "/api/v1/events",
                           [&](const std::string &) { ++messages; });
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().field, "tls");
  EXPECT_EQ(messages, 0);
  // Let the server finish with the refused connection before counting.
  auto ok = HttpClient(server.target(server.fingerprint()))
                .request("GET", "/x", {}, std::chrono::seconds(20));
  ASSERT_TRUE(ok.ok());
  EXPECT_EQ(server.requests(), 1);
}

} // namespace
} // namespace corral::cli
