// A stand-in for corrald's console routes, for the console CLI tests: on a
// unix socket, or over TLS on 127.0.0.1 with a self-signed certificate made
// here (pin it with fingerprint()). One thread per connection (several VNC
// viewers at once). POST .../console/token mints "t/<kind>+=" (so that URL
// encoding matters), GET .../log answers a text body, and the WebSockets
// behave by VM name: "web1" sends "history\r\n" then echoes each frame as
// "echo:<frame>" (serial) or as itself after "RFB 003.008\n" (vnc); "brief"
// sends the history and closes with "the guest stopped"; "drop" sends the
// history and drops the connection; "off" refuses the upgrade with 409; a
// wrong token is refused with 401; "gone" is not there (404 on the token).
// Header-only: each test is its own executable.
#pragma once

#include <openssl/evp.h>
#include <openssl/x509.h>
#include <sys/socket.h>

#include <atomic>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/websocket.hpp>
#include <boost/beast/websocket/ssl.hpp>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "cli/fingerprint.h"
#include "cli/http_client.h"
#include "support/temp_dir.h"

namespace corral::cli::testutil {

class ConsoleServer {
 public:
  enum class Transport { Unix, Tls };

  struct Seen {
    std::vector<std::string> targets;  // every request's target
    std::vector<std::string> auth;     // their Authorization headers
    std::vector<std::string> tokenBodies;
    std::string keys;                       // serial frames from clients
    std::vector<std::string> closeReasons;  // from clients' close frames
  };

  explicit ConsoleServer(Transport t = Transport::Unix) : path_((dir_ / "d.sock").string()) {
    if (t == Transport::Unix) {
      local_ = std::make_unique<Local::acceptor>(io_, Local::endpoint(path_));
    } else {
      makeCertificate();
      tcp_ = std::make_unique<Tcp::acceptor>(io_, Tcp::endpoint(boost::asio::ip::make_address("127.0.0.1"), 0));
    }
    thread_ = std::thread([this] { loop(); });
  }
  ~ConsoleServer() {
    stopping_ = true;
    boost::beast::error_code ec;
    if (local_) {
      Local::socket poke(io_);
      poke.connect(Local::endpoint(path_), ec);  // wakes accept()
    } else {
      Tcp::socket poke(io_);
      poke.connect(tcp_->local_endpoint(), ec);
    }
    thread_.join();
    {
      std::lock_guard lock(mu_);
      for (int fd : open_) ::shutdown(fd, SHUT_RDWR);
    }
    for (auto &t : sessions_) t.join();
    X509_free(cert_);
    EVP_PKEY_free(key_);
  }
  ConsoleServer(const ConsoleServer &) = delete;
  ConsoleServer &operator=(const ConsoleServer &) = delete;

  const std::string &socketPath() const { return path_; }
  std::string fingerprint() const { return certificateFingerprint(cert_); }
  // Where a client goes: the socket, or the TLS port pinned, with a token.
  Target target() const {
    if (local_) return Target::unixSocket(path_);
    Target t;
    t.name = "test";
    uint16_t port = tcp_->local_endpoint().port();
    t.url = "https://127.0.0.1:" + std::to_string(port);
    t.host = "127.0.0.1";
    t.port = port;
    t.hostHeader = "127.0.0.1:" + std::to_string(port);
    t.token = "crl_test_token";
    t.fingerprint = fingerprint();
    return t;
  }
  Seen seen() {
    std::lock_guard lock(mu_);
    return seen_;
  }
  // What was seen once `done` holds (a minute at most).
  Seen waitFor(const std::function<bool(const Seen &)> &done) {
    std::unique_lock lock(mu_);
    cv_.wait_for(lock, std::chrono::minutes(1), [&] { return done(seen_); });
    return seen_;
  }

 private:
  using Local = boost::asio::local::stream_protocol;
  using Tcp = boost::asio::ip::tcp;
  using TlsStream = boost::asio::ssl::stream<Tcp::socket>;

  void makeCertificate() {
    key_ = EVP_EC_gen("P-256");
    cert_ = X509_new();
    X509_set_version(cert_, 2);
    ASN1_INTEGER_set(X509_get_serialNumber(cert_), 1);
    X509_gmtime_adj(X509_getm_notBefore(cert_), -60);
    X509_gmtime_adj(X509_getm_notAfter(cert_), 86400);
    X509_set_pubkey(cert_, key_);
    X509_NAME *name = X509_get_subject_name(cert_);
    X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, reinterpret_cast<const unsigned char *>("corral-test"), -1, -1,
                               0);
    X509_set_issuer_name(cert_, name);
    X509_sign(cert_, key_, EVP_sha256());
    SSL_CTX_use_certificate(ctx_.native_handle(), cert_);
    SSL_CTX_use_PrivateKey(ctx_.native_handle(), key_);
  }

  void loop() {
    for (;;) {
      boost::beast::error_code ec;
      if (local_) {
        Local::socket s(io_);
        local_->accept(s, ec);
        if (ec || stopping_) return;
        spawn(std::move(s));
      } else {
        Tcp::socket s(io_);
        tcp_->accept(s, ec);
        if (ec || stopping_) return;
        spawn(std::move(s));
      }
    }
  }

  template <class Socket>
  void spawn(Socket s) {
    int fd = s.native_handle();
    {
      std::lock_guard lock(mu_);
      open_.insert(fd);
    }
    sessions_.emplace_back([this, fd, s = std::move(s)]() mutable {
      if constexpr (std::is_same_v<Socket, Tcp::socket>) {
        TlsStream tls(std::move(s), ctx_);
        boost::beast::error_code ec;
        tls.handshake(boost::asio::ssl::stream_base::server, ec);
        if (!ec) serve(tls);
      } else {
        serve(s);
      }
      std::lock_guard lock(mu_);
      open_.erase(fd);  // before the socket closes and its number is reused
    });
  }

  template <class F>
  void record(F f) {
    {
      std::lock_guard lock(mu_);
      f(seen_);
    }
    cv_.notify_all();
  }

  template <class Stream>
  static void answer(Stream &s, int status, const std::string &body, const std::string &type = "application/json") {
    namespace http = boost::beast::http;
    boost::beast::error_code ec;
    http::response<http::string_body> res{http::status(status), 11};
    res.set(http::field::content_type, type);
    res.body() = body;
    res.keep_alive(false);
    res.prepare_payload();
    http::write(s, res, ec);
  }
  static std::string apiError(const std::string &message) {
    return nlohmann::json{{"error", {{"code", "x"}, {"message", message}}}}.dump();
  }

  template <class Stream>
  void serve(Stream &s) {
    namespace http = boost::beast::http;
    namespace websocket = boost::beast::websocket;
    boost::beast::error_code ec;
    boost::beast::flat_buffer buf;
    http::request<http::string_body> req;
    http::read(s, buf, req, ec);
    if (ec) return;
    std::string target(req.target());
    record([&](Seen &v) {
      v.targets.push_back(target);
      v.auth.emplace_back(req[http::field::authorization]);
    });
    // /api/v1/vms/<name><what>?<query>
    size_t q = target.find('?');
    std::string path = target.substr(0, q);
    std::string query = q == std::string::npos ? "" : target.substr(q);
    std::string rest = path.substr(std::string("/api/v1/vms/").size());
    std::string name = rest.substr(0, rest.find('/'));
    std::string what = rest.substr(name.size());

    if (!websocket::is_upgrade(req)) {
      if (req.method() == http::verb::post && what == "/console/token") {
        record([&](Seen &v) { v.tokenBodies.push_back(req.body()); });
        if (name == "gone") return answer(s, 404, apiError("no VM named gone"));
        std::string kind = nlohmann::json::parse(req.body())["kind"];
        return answer(s, 200,
                      nlohmann::json{{"token", "t/" + kind + "+="},
                                     {"kind", kind},
                                     {"expires_at", "2030-01-01T00:00:00Z"},
                                     {"path", "/api/v1/vms/" + name + "/console/" + kind}}
                          .dump());
      }
      if (req.method() == http::verb::get && what == "/log")
        return answer(s, 200, "line one\r\nline two\r\n", "text/plain");
      return answer(s, 404, apiError("no such route"));
    }
    std::string kind = what == "/console/vnc" ? "vnc" : "serial";
    if (query != "?token=t%2F" + kind + "%2B%3D")
      return answer(s, 401, apiError("the console token is missing or forged"));
    if (name == "off") return answer(s, 409, apiError("VM off is not running"));

    websocket::stream<Stream &> ws(s);
    ws.accept(req, ec);
    if (ec) return;
    ws.binary(true);
    ws.write(boost::asio::buffer(std::string(kind == "vnc" ? "RFB 003.008\n" : "history\r\n")), ec);
    if (name == "brief") {
      ws.close(websocket::close_reason(websocket::close_code::normal, "the guest stopped"), ec);
      return;
    }
    if (name == "drop") {
      boost::beast::get_lowest_layer(s).close(ec);
      return;
    }
    for (;;) {
      boost::beast::flat_buffer in;
      ws.read(in, ec);
      if (ec) {
        if (ec == websocket::error::closed) {
          const auto &r = ws.reason().reason;
          record([&](Seen &v) { v.closeReasons.emplace_back(r.data(), r.size()); });
        }
        return;
      }
      std::string data = boost::beast::buffers_to_string(in.data());
      if (kind == "serial") {
        record([&](Seen &v) { v.keys += data; });
        data = "echo:" + data;
      }
      ws.write(boost::asio::buffer(data), ec);
      if (ec) return;
    }
  }

  corral::testing::TempDir dir_;
  std::string path_;
  boost::asio::io_context io_;
  boost::asio::ssl::context ctx_{boost::asio::ssl::context::tls_server};
  EVP_PKEY *key_ = nullptr;
  X509 *cert_ = nullptr;
  std::unique_ptr<Local::acceptor> local_;
  std::unique_ptr<Tcp::acceptor> tcp_;
  std::thread thread_;
  std::vector<std::thread> sessions_;
  std::atomic<bool> stopping_{false};
  std::mutex mu_;
  std::condition_variable cv_;
  std::set<int> open_;
  Seen seen_;
};

}  // namespace corral::cli::testutil
