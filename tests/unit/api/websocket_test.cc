// Proves the WebSocket side of the API transport with real sockets: echo over
// the unix socket and over TLS (text and binary); a route's Error and the
// authenticator's answer as plain HTTP errors without running the accept; the
// Origin rule (403 for a foreign page, our own host and listed origins allowed);
// a peer that never reads is dropped when its queue passes the limit while a
// fast peer on the same server receives every message; pings after silence;
// close() from the server with a reason; stop() closing open sockets; and
// onClose running exactly once however a socket ends.
#include "api/websocket.h"

#include <atomic>
#include <map>
#include <mutex>

#include <boost/asio/local/stream_protocol.hpp>
#include <boost/beast/websocket.hpp>
#include <boost/beast/websocket/ssl.hpp>
#include <gtest/gtest.h>

#include "api/http_server.h"
#include "http_test_util.h"
#include "support/temp_dir.h"

namespace corral::api {
namespace {

using namespace testutil;
namespace websocket = beast::websocket;
using Local = asio::local::stream_protocol;

// The server's side of one socket a test opened.
struct Feed {
  std::shared_ptr<WebSocket> ws;
  std::atomic<bool> ready{false};
  std::atomic<int> closes{0};
  std::atomic<int> received{0};
};

class WebSocketTest : public ::testing::Test {
 protected:
  void SetUp() override {
    certs_ = makeServerCert(dir_);
    router_.addWebSocket("/api/v1/echo", [this](const Request& req) -> Result<WsAccept> {
      ++handlerRuns_;
      return WsAccept([who = req.transport](std::shared_ptr<WebSocket> ws) {
        std::weak_ptr<WebSocket> w = ws;
        ws->onMessage([w](std::string data, bool binary) {
          if (auto s = w.lock()) s->send(std::move(data), binary);
        });
        ws->send("hello " + who);
      });
    });
    router_.addWebSocket("/api/v1/feeds/{name}", [this](const Request& req) -> Result<WsAccept> {
      auto feed = std::make_shared<Feed>();
      {
        std::lock_guard lock(mu_);
        feeds_[req.params.at("name")] = feed;
      }
      return WsAccept([feed](std::shared_ptr<WebSocket> ws) {
        feed->ws = ws;
        ws->onMessage([feed](std::string, bool) { ++feed->received; });
        ws->onClose([feed] { ++feed->closes; });
        feed->ready = true;
      });
    });
    router_.addWebSocket("/api/v1/hidden", [this](const Request&) -> Result<WsAccept> {
      ++handlerRuns_;
      return Error::notFound("no such thing");
    });
  }

  void TearDown() override {
    {
      std::lock_guard lock(mu_);
      feeds_.clear();
    }
    server_.reset();
  }

  HttpServer& startServer(HttpServerOptions opts = {}) {
    opts.socketPath = (dir_ / "s").string();
    opts.tcpListen = "127.0.0.1:0";
    opts.tlsCertFile = certs_.cert;
    opts.tlsKeyFile = certs_.key;
    server_ = std::make_unique<HttpServer>(io_.io, router_, std::move(opts));
    auto r = server_->start();
    EXPECT_TRUE(r.ok()) << (r.ok() ? "" : r.error().describe());
    return *server_;
  }

  std::shared_ptr<Feed> feed(const std::string& name) {
    EXPECT_TRUE(waitFor([&] {
      std::lock_guard lock(mu_);
      return feeds_.count(name) && feeds_[name]->ready;
    }));
    std::lock_guard lock(mu_);
    return feeds_[name];
  }

  // A WebSocket client over the unix socket; the handshake's response in *res.
  std::unique_ptr<websocket::stream<Local::socket>> unixWs(const std::string& target, beast::error_code& ec,
                                                           websocket::response_type* res = nullptr,
                                                           std::string origin = {}, std::string host = "localhost") {
    auto ws = std::make_unique<websocket::stream<Local::socket>>(cio_);
    ws->next_layer().connect(Local::endpoint((dir_ / "s").string()));
    ws->set_option(websocket::stream_base::decorator([origin](websocket::request_type& req) {
      if (!origin.empty()) req.set(http::field::origin, origin);
    }));
    websocket::response_type ignored;
    ws->handshake(res ? *res : ignored, host, target, ec);
    return ws;
  }

  // A WebSocket upgrade request sent as plain HTTP, for the refusals: Beast
  // 1.74's client handshake does not hand back a declined response.
  http::response<http::string_body> upgrade(const std::string& target, std::string origin = {},
                                            std::string host = "localhost") {
    Local::socket s(cio_);
    s.connect(Local::endpoint((dir_ / "s").string()));
    http::request<http::empty_body> req{http::verb::get, target, 11};
    req.set(http::field::host, host);
    req.set(http::field::upgrade, "websocket");
    req.set(http::field::connection, "Upgrade");
    req.set(http::field::sec_websocket_key, "dGhlIHNhbXBsZSBub25jZQ==");
    req.set(http::field::sec_websocket_version, "13");
    if (!origin.empty()) req.set(http::field::origin, origin);
    http::write(s, req);
    beast::flat_buffer buf;
    http::response<http::string_body> res;
    http::read(s, buf, res);
    return res;
  }

  corral::testing::TempDir dir_;
  CertPair certs_;
  IoThreads io_{2};
  asio::io_context cio_;
  Router router_;
  std::unique_ptr<HttpServer> server_;
  std::atomic<int> handlerRuns_{0};
  std::mutex mu_;
  std::map<std::string, std::shared_ptr<Feed>> feeds_;
};

TEST_F(WebSocketTest, EchoOverUnix) {
  startServer();
  beast::error_code ec;
  auto ws = unixWs("/api/v1/echo", ec);
  ASSERT_FALSE(ec) << ec.message();
  beast::flat_buffer buf;
  ws->read(buf);
  EXPECT_EQ(beast::buffers_to_string(buf.data()), "hello unix");
  EXPECT_TRUE(ws->got_text());
  for (std::string m : {std::string("one"), std::string("two"), std::string(200000, 'x')}) {
    buf.clear();
    ws->write(asio::buffer(m));
    ws->read(buf);
    EXPECT_EQ(beast::buffers_to_string(buf.data()), m);
  }
  buf.clear();
  ws->binary(true);
  std::string bin("\x00\x01\xff", 3);
  ws->write(asio::buffer(bin));
  ws->read(buf);
  EXPECT_TRUE(ws->got_binary());
  EXPECT_EQ(beast::buffers_to_string(buf.data()), bin);
  ws->close(websocket::close_code::normal);
  EXPECT_TRUE(waitFor([&] { return server_->connectionCount() == 0; }));
}

TEST_F(WebSocketTest, EchoOverTls) {
  startServer();
  asio::ssl::context ctx(asio::ssl::context::tls_client);
  ctx.load_verify_file(certs_.cert);
  ctx.set_verify_mode(asio::ssl::verify_peer);
  websocket::stream<beast::ssl_stream<beast::tcp_stream>> ws(cio_, ctx);
  beast::get_lowest_layer(ws).connect(asio::ip::tcp::endpoint(asio::ip::make_address("127.0.0.1"), server_->tcpPort()));
  ws.next_layer().handshake(asio::ssl::stream_base::client);
  beast::get_lowest_layer(ws).expires_never();
  ws.handshake("127.0.0.1", "/api/v1/echo");
  beast::flat_buffer buf;
  ws.read(buf);
  EXPECT_EQ(beast::buffers_to_string(buf.data()), "hello tls");
  buf.clear();
  ws.write(asio::buffer(std::string("over tls")));
  ws.read(buf);
  EXPECT_EQ(beast::buffers_to_string(buf.data()), "over tls");
  ws.close(websocket::close_code::normal);
}

TEST_F(WebSocketTest, RouteErrorAndAuthenticationAnswerAsHttp) {
  HttpServerOptions o;
  o.authenticate = [](Request& req) -> std::optional<Error> {
    if (req.header("origin") != "trusted") return Error::unauthenticated("log in first");
    return std::nullopt;
  };
  o.allowedOrigins = {"trusted"};
  startServer(std::move(o));
  auto res = upgrade("/api/v1/echo");
  EXPECT_EQ(res.result_int(), 401u);
  EXPECT_EQ(nlohmann::json::parse(res.body())["error"]["code"], "unauthenticated");
  EXPECT_EQ(handlerRuns_, 0);  // refused before the route's handler
  EXPECT_EQ(upgrade("/api/v1/echo", "trusted").result_int(), 101u);
  EXPECT_EQ(handlerRuns_, 1);

  server_.reset();
  startServer();
  res = upgrade("/api/v1/hidden");
  EXPECT_EQ(res.result_int(), 404u);
  EXPECT_EQ(nlohmann::json::parse(res.body())["error"]["code"], "not_found");
  EXPECT_EQ(handlerRuns_, 2);
  // No WebSocket route there: answered as a plain request would be.
  EXPECT_EQ(upgrade("/api/v1/nowhere").result_int(), 404u);
  EXPECT_TRUE(waitFor([&] { return server_->connectionCount() == 0; }));
}

TEST_F(WebSocketTest, ForeignOriginIsRefused) {
  HttpServerOptions o;
  o.allowedOrigins = {"https://ui.example.org"};
  startServer(std::move(o));
  auto res = upgrade("/api/v1/echo", "https://evil.example");
  EXPECT_EQ(res.result_int(), 403u);
  EXPECT_EQ(nlohmann::json::parse(res.body())["error"]["code"], "forbidden");
  EXPECT_EQ(upgrade("/api/v1/echo", "null").result_int(), 403u);
  EXPECT_EQ(upgrade("/api/v1/echo", "https://localhost.evil.example", "localhost").result_int(), 403u);
  EXPECT_EQ(handlerRuns_, 0);
  // A page from this very host, a listed origin, and a non-browser client.
  beast::error_code ec;
  unixWs("/api/v1/echo", ec, nullptr, "https://LOCALHOST:8443", "localhost:8443");
  EXPECT_FALSE(ec) << ec.message();
  unixWs("/api/v1/echo", ec, nullptr, "https://ui.example.org");
  EXPECT_FALSE(ec) << ec.message();
  unixWs("/api/v1/echo", ec);
  EXPECT_FALSE(ec) << ec.message();
  EXPECT_EQ(handlerRuns_, 3);
}

TEST_F(WebSocketTest, PeerThatNeverReadsIsDroppedWhileAFastOneKeepsReceiving) {
  HttpServerOptions o;
  o.maxWsQueueBytes = 1 << 20;
  startServer(std::move(o));
  beast::error_code ec;
  auto slowClient = unixWs("/api/v1/feeds/slow", ec);
  ASSERT_FALSE(ec);
  auto fastClient = unixWs("/api/v1/feeds/fast", ec);
  ASSERT_FALSE(ec);
  auto slow = feed("slow");
  auto fast = feed("fast");

  constexpr int kMessages = 2000;
  std::atomic<int> got{0};
  std::atomic<bool> inOrder{true};
  std::thread reader([&] {
    beast::flat_buffer buf;
    for (int i = 0; i < kMessages; ++i) {
      beast::error_code rec;
      fastClient->read(buf, rec);
      if (rec) return;
      if (beast::buffers_to_string(buf.data()) != std::to_string(i)) inOrder = false;
      buf.clear();
      ++got;
    }
  });
  std::string chunk(64 << 10, 's');
  int slowSent = 0;
  bool slowRefused = false;
  for (int i = 0; i < kMessages; ++i) {
    if (!slowRefused) {
      if (slow->ws->send(chunk))
        ++slowSent;
      else
        slowRefused = true;
    }
    ASSERT_TRUE(fast->ws->send(std::to_string(i))) << "fast peer refused at " << i;
  }
  reader.join();
  EXPECT_TRUE(slowRefused) << "never refused after " << slowSent << " x 64 KiB";
  EXPECT_GE(slowSent, 16);  // the queue limit, not something smaller, stopped it
  EXPECT_TRUE(slow->ws->closed());
  EXPECT_FALSE(slow->ws->send("more"));
  EXPECT_TRUE(waitFor([&] { return slow->closes == 1; }));
  EXPECT_EQ(got, kMessages);
  EXPECT_TRUE(inOrder);
  EXPECT_FALSE(fast->ws->closed());
  EXPECT_EQ(fast->closes, 0);
  // The slow client finds its connection gone once it finally reads.
  beast::flat_buffer buf;
  beast::error_code rec;
  for (int i = 0; i < 1000 && !rec; ++i) slowClient->read(buf, rec), buf.clear();
  EXPECT_TRUE(rec);
  // The fast one still talks both ways.
  fastClient->write(asio::buffer(std::string("hi")));
  EXPECT_TRUE(waitFor([&] { return fast->received == 1; }));
  EXPECT_EQ(slow->closes, 1);  // exactly once
}

TEST_F(WebSocketTest, PingsAfterSilenceAndServerCloseWithReason) {
  HttpServerOptions o;
  o.wsPingInterval = std::chrono::milliseconds(100);
  startServer(std::move(o));
  beast::error_code ec;
  auto client = unixWs("/api/v1/feeds/p", ec);
  ASSERT_FALSE(ec);
  auto f = feed("p");
  std::atomic<int> pings{0};
  client->control_callback([&](websocket::frame_type kind, beast::string_view) {
    if (kind == websocket::frame_type::ping) ++pings;
  });
  beast::error_code readEc;
  std::thread reader([&] {
    beast::flat_buffer buf;
    while (!readEc) client->read(buf, readEc);
  });
  EXPECT_TRUE(waitFor([&] { return pings >= 3; }));  // kept alive by the client's pongs
  EXPECT_FALSE(f->ws->closed());
  f->ws->send("last words");
  f->ws->close("bye");
  EXPECT_TRUE(f->ws->closed());
  reader.join();
  EXPECT_EQ(readEc, websocket::error::closed);
  EXPECT_EQ(client->reason().reason, "bye");
  EXPECT_TRUE(waitFor([&] { return f->closes == 1; }));
}

TEST_F(WebSocketTest, StopClosesOpenSockets) {
  startServer();
  beast::error_code ec;
  auto client = unixWs("/api/v1/feeds/s", ec);
  ASSERT_FALSE(ec);
  auto f = feed("s");
  server_->stop();
  beast::flat_buffer buf;
  client->read(buf, ec);
  EXPECT_TRUE(ec);
  EXPECT_TRUE(waitFor([&] { return f->closes == 1; }));
  EXPECT_TRUE(f->ws->closed());
  EXPECT_FALSE(f->ws->send("late"));
  // The slot is free although the route still holds the socket object.
  EXPECT_TRUE(waitFor([&] { return server_->connectionCount() == 0; }));
  server_.reset();
  EXPECT_EQ(f->closes, 1);
}

}  // namespace
}  // namespace corral::api
