// Proves the TLS side of the API transport with real sockets and real TLS:
// ensureSelfSignedCertificate writes a P-256 pair (key 0600, cert 0644, the SANs
// and validity promised) and refuses half a pair; certificateFingerprint agrees
// with `openssl x509 -fingerprint -sha256`; a client that verifies against the
// generated certificate (and pins its fingerprint) gets answers with transport
// "tls" and its address, a client trusting something else is refused, TLS 1.1 is
// refused; a verified client certificate's email reaches the request and an
// unverified one's does not; a peer that never finishes its handshake is closed
// after the handshake timeout without holding up others.
#include "api/tls.h"

#include <sys/stat.h>

#include <atomic>

#include <boost/asio/local/stream_protocol.hpp>
#include <boost/asio/write.hpp>
#include <gtest/gtest.h>

#include "api/http_server.h"
#include "http_test_util.h"
#include "support/temp_dir.h"

namespace corral::api {
namespace {

using namespace testutil;

TEST(SelfSignedCertificate, GeneratesAPairWithTheRightModesOnce) {
  corral::testing::TempDir dir;
  std::string cert = (dir / "c.pem").string(), key = (dir / "c.key").string();
  ::umask(0);  // the modes must not depend on the caller's umask
  auto r = ensureSelfSignedCertificate(cert, key, {"corral.example.org", "localhost"});
  ::umask(022);
  ASSERT_TRUE(r.ok()) << r.error().describe();
  struct stat st {};
  ASSERT_EQ(::stat(key.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0600u);
  ASSERT_EQ(::stat(cert.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0644u);
  EXPECT_FALSE(std::filesystem::exists(key + ".tmp." + std::to_string(::getpid())));

  std::string text = openssl({"x509", "-in", cert, "-noout", "-text"});
  EXPECT_NE(text.find("DNS:corral.example.org, DNS:localhost, IP Address:127.0.0.1, IP Address:0:0:0:0:0:0:0:1"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("Version: 3"), std::string::npos);
  EXPECT_NE(text.find("prime256v1"), std::string::npos);
  EXPECT_NE(text.find("CA:FALSE"), std::string::npos);
  EXPECT_NE(text.find("Subject: O = corral, CN = corral.example.org"), std::string::npos) << text;
  // Ten years (3650 days) from now, give or take the test's own runtime.
  EXPECT_NE(openssl({"x509", "-in", cert, "-noout", "-checkend", std::to_string(3649L * 86400)}).find("will not expire"),
            std::string::npos);
  openssl({"pkey", "-in", key, "-noout"});  // a key OpenSSL reads back

  // The fingerprint as `openssl x509 -fingerprint -sha256` prints it.
  auto fp = certificateFingerprint(cert);
  ASSERT_TRUE(fp.ok()) << fp.error().describe();
  EXPECT_EQ(fp->size(), 32u * 3 - 1);
  std::string want = openssl({"x509", "-in", cert, "-noout", "-fingerprint", "-sha256"});
  EXPECT_EQ(want.substr(want.find('=') + 1), *fp + "\n");

  // Both exist: left alone.
  ASSERT_TRUE(ensureSelfSignedCertificate(cert, key, {"other"}).ok());
  EXPECT_EQ(*certificateFingerprint(cert), *fp);

  // Serials are random: a second pair differs.
  std::string cert2 = (dir / "d.pem").string(), key2 = (dir / "d.key").string();
  ASSERT_TRUE(ensureSelfSignedCertificate(cert2, key2, {}).ok());
  EXPECT_NE(openssl({"x509", "-in", cert, "-noout", "-serial"}), openssl({"x509", "-in", cert2, "-noout", "-serial"}));
}

TEST(SelfSignedCertificate, HalfAPairIsAnError) {
  corral::testing::TempDir dir;
  std::string cert = (dir / "c.pem").string(), key = (dir / "c.key").string();
  std::ofstream(key) << "a key";
  auto r = ensureSelfSignedCertificate(cert, key, {"localhost"});
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().field, "tls_cert");
  EXPECT_FALSE(std::filesystem::exists(cert));
  EXPECT_EQ(readFile(key), "a key");  // untouched

  auto bad = ensureSelfSignedCertificate((dir / "x.pem").string(), (dir / "x.key").string(), {"bad name;"});
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.error().field, "tls_name");

  auto missing = certificateFingerprint((dir / "none.pem").string());
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.error().field, "tls_cert");
  auto notPem = certificateFingerprint(key);
  ASSERT_FALSE(notPem.ok());
}

class TlsServerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    certs_ = makeServerCert(dir_);
    router_.add("GET", "/api/v1/who", [](const Request& req) {
      return Response::json(200, {{"transport", req.transport},
                                  {"addr", req.peerAddress},
                                  {"uid", req.peerUid},
                                  {"email", req.clientCertEmail},
                                  {"agent", req.header("x-test-agent")}});
    });
    router_.add("GET", "/api/v1/block", [this](const Request&) {
      entered_ = true;
      while (!release_) std::this_thread::sleep_for(1ms);
      return Response::text(200, "unblocked");
    });
  }

  void TearDown() override {
    release_ = true;
    server_.reset();
  }

  HttpServer& startServer(HttpServerOptions opts = {}) {
    opts.socketPath = (dir_ / "s").string();
    opts.tcpListen = "127.0.0.1:0";
    if (opts.tlsCertFile.empty()) {
      opts.tlsCertFile = certs_.cert;
      opts.tlsKeyFile = certs_.key;
    }
    server_ = std::make_unique<HttpServer>(io_.io, router_, std::move(opts));
    auto r = server_->start();
    EXPECT_TRUE(r.ok()) << (r.ok() ? "" : r.error().describe());
    EXPECT_NE(server_->tcpPort(), 0);
    return *server_;
  }

  corral::testing::TempDir dir_;
  CertPair certs_;
  IoThreads io_{2};
  Router router_;
  std::unique_ptr<HttpServer> server_;
  std::atomic<bool> entered_{false};
  std::atomic<bool> release_{false};
};

TEST_F(TlsServerTest, RoundTripWithAPinnedCertificate) {
  startServer();
  TlsClient c({.trustFile = certs_.cert});
  auto ec = c.connect(server_->tcpPort());
  ASSERT_FALSE(ec) << ec.message();
  EXPECT_EQ(c.peerFingerprint(), *certificateFingerprint(certs_.cert));
  EXPECT_EQ(SSL_version(c.stream().native_handle()), TLS1_3_VERSION);
  EXPECT_EQ(SSL_get_current_compression(c.stream().native_handle()), nullptr);
  for (int i = 0; i < 3; ++i) {  // kept alive
    auto res = c.request(http::verb::get, "/api/v1/who", {}, {{"X-Test-Agent", "t" + std::to_string(i)}});
    ASSERT_EQ(res.result_int(), 200u) << res.body();
    EXPECT_TRUE(res.keep_alive());
    auto j = nlohmann::json::parse(res.body());
    EXPECT_EQ(j["transport"], "tls");
    EXPECT_EQ(j["addr"], "127.0.0.1");
    EXPECT_EQ(j["uid"], (uid_t)-1);  // no SO_PEERCRED over TCP
    EXPECT_EQ(j["email"], "");       // no client CA configured
    EXPECT_EQ(j["agent"], "t" + std::to_string(i));
  }
}

TEST_F(TlsServerTest, ClientTrustingAnotherCertificateIsRefused) {
  startServer();
  auto other = makeServerCert(dir_, "other");
  TlsClient c({.trustFile = other.cert});
  auto ec = c.connect(server_->tcpPort());
  EXPECT_TRUE(ec);  // certificate verify failed
}

TEST_F(TlsServerTest, Tls11IsRefused) {
  startServer();
  TlsClient c({.trustFile = certs_.cert, .maxVersion = TLS1_1_VERSION});
  EXPECT_TRUE(c.connect(server_->tcpPort()));
  TlsClient ok({.trustFile = certs_.cert, .maxVersion = TLS1_2_VERSION});
  auto ec = ok.connect(server_->tcpPort());
  ASSERT_FALSE(ec) << ec.message();
  EXPECT_EQ(ok.request(http::verb::get, "/api/v1/who").result_int(), 200u);
}

TEST_F(TlsServerTest, BadListenAndMissingCertificateAreErrors) {
  HttpServerOptions o;
  o.socketPath = (dir_ / "s").string();
  o.tcpListen = "localhost:8443";  // names are not taken
  HttpServer a(io_.io, router_, o);
  auto r = a.start();
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().field, "listen");
  EXPECT_FALSE(std::filesystem::exists(o.socketPath));  // nothing bound

  o.tcpListen = "[::1]:0";
  o.tlsCertFile = (dir_ / "missing.pem").string();
  o.tlsKeyFile = certs_.key;
  HttpServer b(io_.io, router_, o);
  r = b.start();
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().field, "tls_cert");
  EXPECT_FALSE(std::filesystem::exists(o.socketPath));
}

TEST_F(TlsServerTest, Ipv6Listener) {
  HttpServerOptions o;
  o.socketPath = (dir_ / "s").string();
  o.tcpListen = "[::1]:0";
  o.tlsCertFile = certs_.cert;
  o.tlsKeyFile = certs_.key;
  server_ = std::make_unique<HttpServer>(io_.io, router_, o);
  auto r = server_->start();
  if (!r.ok() && r.error().message.find("Address not available") != std::string::npos)
    GTEST_SKIP() << "no IPv6 loopback here";
  ASSERT_TRUE(r.ok()) << r.error().describe();
  asio::io_context cio;
  asio::ssl::context ctx(asio::ssl::context::tls_client);
  ctx.load_verify_file(certs_.cert);
  ctx.set_verify_mode(asio::ssl::verify_peer);
  beast::ssl_stream<beast::tcp_stream> s(cio, ctx);
  beast::get_lowest_layer(s).expires_after(10s);
  beast::get_lowest_layer(s).connect(asio::ip::tcp::endpoint(asio::ip::make_address("::1"), server_->tcpPort()));
  s.handshake(asio::ssl::stream_base::client);
  http::request<http::string_body> req{http::verb::get, "/api/v1/who", 11};
  http::write(s, req);
  beast::flat_buffer buf;
  http::response<http::string_body> res;
  http::read(s, buf, res);
  EXPECT_EQ(nlohmann::json::parse(res.body())["addr"], "::1");
}

// A tiny CA and two client certificates: one it signed (email in the SAN), one
// self-signed with the same email in the subject.
struct ClientPki {
  std::string ca, alice, aliceKey, mallory, malloryKey;
};

ClientPki makeClientPki(const corral::testing::TempDir& dir) {
  ClientPki p;
  auto f = [&](const char* n) { return (dir / n).string(); };
  p.ca = f("ca.pem");
  p.alice = f("alice.pem");
  p.aliceKey = f("alice.key");
  p.mallory = f("mallory.pem");
  p.malloryKey = f("mallory.key");
  std::string caKey = f("ca.key"), csr = f("alice.csr"), ext = f("alice.ext");
  openssl({"req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", caKey, "-out",
           p.ca, "-subj", "/CN=corral test CA", "-days", "1"});
  openssl({"req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", p.aliceKey, "-out", csr,
           "-subj", "/CN=alice"});
  std::ofstream(ext) << "subjectAltName=email:alice@example.org\nextendedKeyUsage=clientAuth\n";
  openssl({"x509", "-req", "-in", csr, "-CA", p.ca, "-CAkey", caKey, "-CAcreateserial", "-out", p.alice, "-days", "1",
           "-extfile", ext});
  openssl({"req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", p.malloryKey,
           "-out", p.mallory, "-subj", "/CN=alice/emailAddress=alice@example.org", "-days", "1"});
  return p;
}

TEST_F(TlsServerTest, VerifiedClientCertificateEmailReachesTheRequest) {
  ClientPki pki = makeClientPki(dir_);
  HttpServerOptions o;
  o.tlsClientCaFile = pki.ca;
  startServer(std::move(o));

  auto emailOf = [&](TlsClientOptions co) -> std::string {
    co.trustFile = certs_.cert;
    TlsClient c(co);
    auto ec = c.connect(server_->tcpPort());
    EXPECT_FALSE(ec) << ec.message();
    if (ec) return "<no connection>";
    auto res = c.request(http::verb::get, "/api/v1/who");
    EXPECT_EQ(res.result_int(), 200u);
    return nlohmann::json::parse(res.body())["email"];
  };
  EXPECT_EQ(emailOf({.clientCert = pki.alice, .clientKey = pki.aliceKey}), "alice@example.org");
  EXPECT_EQ(emailOf({}), "");  // no certificate: still served, no email
  EXPECT_EQ(emailOf({.clientCert = pki.mallory, .clientKey = pki.malloryKey}), "");  // not from the CA

  // The subject's emailAddress counts when there is no SAN email.
  std::string pem = readFile(pki.mallory);
  BIO* bio = BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size()));
  X509* x = PEM_read_bio_X509(bio, nullptr, nullptr, nullptr);
  EXPECT_EQ(certificateEmail(x), "alice@example.org");
  X509_free(x);
  BIO_free(bio);
}

TEST_F(TlsServerTest, StalledHandshakeIsClosedAndDoesNotBlockOthers) {
  HttpServerOptions o;
  o.tlsHandshakeTimeout = 2000ms;
  startServer(std::move(o));
  // A peer that connects and says nothing.
  asio::io_context cio;
  asio::ip::tcp::socket mute(cio);
  mute.connect(asio::ip::tcp::endpoint(asio::ip::make_address("127.0.0.1"), server_->tcpPort()));
  // Meanwhile a real client is served at once.
  auto t0 = std::chrono::steady_clock::now();
  TlsClient c({.trustFile = certs_.cert});
  ASSERT_FALSE(c.connect(server_->tcpPort()));
  EXPECT_EQ(c.request(http::verb::get, "/api/v1/who").result_int(), 200u);
  // ... while the mute one is still open (no stopwatch: a server stuck on it
  // would have served the other only after closing it).
  char b;
  boost::system::error_code ec;
  mute.non_blocking(true);
  mute.read_some(asio::buffer(&b, 1), ec);
  EXPECT_EQ(ec, asio::error::would_block);
  mute.non_blocking(false);
  // And the mute one is closed after the timeout, not before.
  mute.read_some(asio::buffer(&b, 1), ec);
  EXPECT_EQ(ec, asio::error::eof);
  EXPECT_GE(std::chrono::steady_clock::now() - t0, 1900ms);
}

// Proves the connection budgets: one TLS peer address gets at most
// maxConnectionsPerAddress, all TLS peers together maxConnections, and the unix
// socket keeps its own budget, so root's CLI is answered while TLS is full.
TEST_F(TlsServerTest, PerAddressAndTlsCapsLeaveTheUnixSocketItsOwnBudget) {
  HttpServerOptions o;
  o.maxConnections = 3;
  o.maxConnectionsPerAddress = 2;
  auto& srv = startServer(std::move(o));
  asio::io_context cio;
  auto mute = [&](const char* from) {
    auto s = std::make_unique<asio::ip::tcp::socket>(cio);
    s->open(asio::ip::tcp::v4());
    s->bind(asio::ip::tcp::endpoint(asio::ip::make_address(from), 0));
    s->connect(asio::ip::tcp::endpoint(asio::ip::make_address("127.0.0.1"), server_->tcpPort()));
    return s;
  };
  // Closed by the server at once (eof or reset), rather than left open.
  auto refused = [](asio::ip::tcp::socket& s) {
    char b;
    boost::system::error_code ec;
    s.read_some(asio::buffer(&b, 1), ec);
    return ec == asio::error::eof || ec == asio::error::connection_reset;
  };
  auto a1 = mute("127.0.0.1"), a2 = mute("127.0.0.1");
  ASSERT_TRUE(testutil::waitFor([&] { return srv.connectionCount() == 2; }));
  auto a3 = mute("127.0.0.1");
  EXPECT_TRUE(refused(*a3)) << "a third connection from one address";
  auto b1 = mute("127.0.0.2");
  ASSERT_TRUE(testutil::waitFor([&] { return srv.connectionCount() == 3; })) << "another address is admitted";
  auto c1 = mute("127.0.0.3");
  EXPECT_TRUE(refused(*c1)) << "past the TLS total";

  boost::asio::local::stream_protocol::socket local(cio);
  local.connect(boost::asio::local::stream_protocol::endpoint((dir_ / "s").string()));
  boost::asio::write(local, boost::asio::buffer(std::string("GET /api/v1/who HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")));
  std::string got;
  boost::system::error_code ec;
  char buf[4096];
  while (!ec) got.append(buf, local.read_some(boost::asio::buffer(buf), ec));
  EXPECT_NE(got.find("HTTP/1.1 200"), std::string::npos) << got;
  EXPECT_NE(got.find("\"unix\""), std::string::npos) << got;
}

// Proves a request that fails to authenticate gets its 401 and the connection
// closes: a guesser does not keep a connection to retry on.
TEST_F(TlsServerTest, FailedAuthenticationClosesTheConnection) {
  HttpServerOptions o;
  o.authenticate = [](Request&) -> std::optional<Error> { return Error::unauthenticated("log in first"); };
  startServer(std::move(o));
  TlsClient c({.trustFile = certs_.cert});
  ASSERT_FALSE(c.connect(server_->tcpPort()));
  auto res = c.request(http::verb::get, "/api/v1/who");
  EXPECT_EQ(res.result_int(), 401u);
  EXPECT_FALSE(res.keep_alive());
}

TEST_F(TlsServerTest, RequestDeadlineOverTls) {
  HttpServerOptions o;
  o.requestTimeout = 2000ms;
  startServer(std::move(o));
  TlsClient slow({.trustFile = certs_.cert});
  ASSERT_FALSE(slow.connect(server_->tcpPort()));
  asio::write(slow.stream(), asio::buffer(std::string("GET /api/v1/who HTTP/1.1\r\nHost: x\r\n")));
  TlsClient fast({.trustFile = certs_.cert});
  ASSERT_FALSE(fast.connect(server_->tcpPort()));
  EXPECT_EQ(fast.request(http::verb::get, "/api/v1/who").result_int(), 200u);
  char b;
  beast::error_code ec;
  // Both are still connected: the slow one was not closed (at its deadline)
  // before the fast one was served. (TLS 1.3 session tickets make a raw read
  // of the slow socket useless for telling.)
  EXPECT_EQ(server_->connectionCount(), 2u) << "the slow connection was closed before the other was served";
  beast::get_lowest_layer(slow.stream()).expires_after(5s);
  slow.stream().read_some(asio::buffer(&b, 1), ec);
  EXPECT_TRUE(ec);  // closed without an answer
  EXPECT_NE(ec, beast::error::timeout);
}

TEST_F(TlsServerTest, BodyTooLargeOverTlsStillGets413) {
  HttpServerOptions o;
  o.maxBodyBytes = 1024;
  startServer(std::move(o));
  TlsClient c({.trustFile = certs_.cert});
  ASSERT_FALSE(c.connect(server_->tcpPort()));
  beast::error_code ec;
  auto res = c.request(http::verb::post, "/api/v1/who", std::string(4 << 20, ' '), {}, &ec);
  // The client may fail writing the rest of the upload, but the answer arrives.
  ASSERT_FALSE(ec) << ec.message();
  EXPECT_EQ(res.result_int(), 413u);
}

}  // namespace
}  // namespace corral::api
