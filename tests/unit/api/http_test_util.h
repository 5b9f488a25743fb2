// Helpers for the transport tests (http_server_test, tls_test, websocket_test):
// an io_context on its own threads, a self-signed server certificate, the
// `openssl` tool through util::Command, and a blocking TLS client built on
// Beast that verifies (pins) the server's certificate. Header-only: each test
// is its own executable.
#pragma once

#include <chrono>
#include <filesystem>
#include <fstream>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <boost/asio/connect.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <gtest/gtest.h>
#include <openssl/ssl.h>

#include "api/tls.h"
#include "support/temp_dir.h"
#include "util/command.h"

namespace corral::api::testutil {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using namespace std::chrono_literals;

// The daemon's shape: one io_context run by n threads.
class IoThreads {
 public:
  explicit IoThreads(int n = 2) {
    for (int i = 0; i < n; ++i) threads_.emplace_back([this] { io.run(); });
  }
  ~IoThreads() { stop(); }
  void stop() {
    guard_.reset();
    io.stop();
    for (auto& t : threads_)
      if (t.joinable()) t.join();
  }
  asio::io_context io;

 private:
  asio::executor_work_guard<asio::io_context::executor_type> guard_{io.get_executor()};
  std::vector<std::thread> threads_;
};

struct CertPair {
  std::string cert;
  std::string key;
};

inline CertPair makeServerCert(const corral::testing::TempDir& dir, const std::string& stem = "server") {
  CertPair p{(dir / (stem + ".pem")).string(), (dir / (stem + ".key")).string()};
  auto r = ensureSelfSignedCertificate(p.cert, p.key, {"localhost"});
  EXPECT_TRUE(r.ok()) << (r.ok() ? "" : r.error().describe());
  return p;
}

// Runs `openssl args...`; fails the test and returns "" when it fails.
inline std::string openssl(const std::vector<std::string>& args) {
  util::Command cmd("openssl");
  cmd.args(args).keepEnv({"PATH"}).stdoutToBuffer().stderrToBuffer();
  auto r = cmd.run();
  EXPECT_TRUE(r.ok()) << (r.ok() ? "" : r.error().describe());
  if (!r.ok()) return {};
  EXPECT_TRUE(r->status.success()) << "openssl " << args.front() << ": " << r->err;
  return r->out;
}

inline std::string readFile(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// What a client offers and trusts.
struct TlsClientOptions {
  std::string trustFile;   // CA/cert the server's certificate must verify against; "" = trust nothing
  std::string clientCert;  // optional client certificate and key
  std::string clientKey;
  int maxVersion = 0;      // e.g. TLS1_1_VERSION to prove old versions are refused
};

// A blocking HTTPS client on its own io_context: connect, handshake (verifying
// the server against trustFile and the name 127.0.0.1), then requests over one
// kept-alive connection.
class TlsClient {
 public:
  using Stream = beast::ssl_stream<beast::tcp_stream>;

  explicit TlsClient(TlsClientOptions o = {}) : ctx_(asio::ssl::context::tls_client) {
    if (!o.trustFile.empty()) ctx_.load_verify_file(o.trustFile);
    ctx_.set_verify_mode(asio::ssl::verify_peer);
    if (!o.clientCert.empty()) {
      ctx_.use_certificate_chain_file(o.clientCert);
      ctx_.use_private_key_file(o.clientKey, asio::ssl::context::pem);
    }
    if (o.maxVersion != 0) {
      SSL_CTX_set_security_level(ctx_.native_handle(), 0);
      SSL_CTX_set_cipher_list(ctx_.native_handle(), "ALL:@SECLEVEL=0");
      SSL_CTX_set_min_proto_version(ctx_.native_handle(), 0);
      SSL_CTX_set_max_proto_version(ctx_.native_handle(), o.maxVersion);
    }
  }

  // Connects and handshakes; the error, if any.
  beast::error_code connect(uint16_t port) {
    stream_.emplace(io_, ctx_);
    stream_->set_verify_callback(asio::ssl::host_name_verification("127.0.0.1"));
    beast::error_code ec;
    beast::get_lowest_layer(*stream_).expires_after(10s);
    beast::get_lowest_layer(*stream_).connect(asio::ip::tcp::endpoint(asio::ip::make_address("127.0.0.1"), port), ec);
    if (ec) return ec;
    stream_->handshake(asio::ssl::stream_base::client, ec);
    return ec;
  }

  // The server certificate's fingerprint, as api::certificateFingerprint prints it.
  std::string peerFingerprint() {
    return certificateFingerprint(SSL_get0_peer_certificate(stream_->native_handle()));
  }

  http::response<http::string_body> request(http::verb method, const std::string& target,
                                            const std::string& body = {},
                                            const std::vector<std::pair<std::string, std::string>>& headers = {},
                                            beast::error_code* ecOut = nullptr) {
    http::request<http::string_body> req{method, target, 11};
    req.set(http::field::host, "127.0.0.1");
    for (const auto& [k, v] : headers) req.set(k, v);
    if (!body.empty()) {
      req.set(http::field::content_type, "application/json");
      req.body() = body;
    }
    req.prepare_payload();
    req.keep_alive(true);
    http::response<http::string_body> res;
    beast::error_code ec;
    beast::get_lowest_layer(*stream_).expires_after(10s);
    http::write(*stream_, req, ec);
    if (!ec) http::read(*stream_, buf_, res, ec);
    if (ecOut != nullptr)
      *ecOut = ec;
    else
      EXPECT_FALSE(ec) << ec.message();
    return res;
  }

  Stream& stream() { return *stream_; }

 private:
  asio::io_context io_;
  asio::ssl::context ctx_;
  std::optional<Stream> stream_;
  beast::flat_buffer buf_;
};

// Polls pred every 5 ms until it holds or timeout passes; whether it held.
template <class Pred>
bool waitFor(Pred pred, std::chrono::milliseconds timeout = 5s) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    if (pred()) return true;
    std::this_thread::sleep_for(5ms);
  }
  return pred();
}

}  // namespace corral::api::testutil
