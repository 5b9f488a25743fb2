// Proves the HTTP transport end to end on a real unix socket: a JSON round trip
// with the peer's uid, keep-alive, 413 past the body limit, 431 past the header
// limit, the authenticate hook answering 403/401 and setting the principal,
// lowercased headers, a handler that throws becoming a generic 500, a blocked
// handler not holding up other requests, a stalled half-request neither delaying
// others nor outliving the request deadline, the idle timeout, the connection
// cap (503 past it, room again once a connection closes), the stale/live socket
// rules of start(), and stop() removing the socket. The client is the CLI's own HttpClient (compiled
// here: the `corral` executable is not a library), plus raw Beast for keep-alive.
#include "api/http_server.h"

#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <atomic>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <future>
#include <thread>

#include <gtest/gtest.h>

#include "cli/http_client.h"
#include "http_test_util.h"
#include "support/temp_dir.h"

namespace corral::api {
namespace {

namespace asio = boost::asio;
using cli::HttpClient;
using cli::HttpResponse;

class HttpServerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    router_.add("POST", "/api/v1/echo", [](const Request& req) {
      auto j = req.jsonBody();
      if (!j) return Response::error(j.error());
      nlohmann::json out{{"got", *j}, {"uid", req.peerUid}, {"query", req.query}, {"id", req.requestId}};
      return Response::json(200, out);
    });
    router_.add("GET", "/api/v1/vms/{name}", [](const Request& req) {
      return Response::json(200, {{"name", req.params.at("name")}});
    });
    router_.add("GET", "/api/v1/throw", [](const Request&) -> Response {
      throw std::runtime_error("secret detail /etc/shadow");
    });
    router_.add("GET", "/api/v1/block", [this](const Request&) {
      entered_.set_value();
      release_.get_future().wait();
      return Response::text(200, "unblocked");
    });
  }

  void TearDown() override {
    release();  // never leave a handler blocked, also when a test failed early
    server_.reset();
    guard_.reset();
    io_.stop();
    if (ioThread_.joinable()) ioThread_.join();
  }

  std::string sock() const { return (dir_ / "s").string(); }

  HttpServer& startServer(HttpServerOptions opts = {}) {
    if (opts.socketPath.empty()) opts.socketPath = sock();
    server_ = std::make_unique<HttpServer>(io_, router_, std::move(opts));
    auto r = server_->start();
    EXPECT_TRUE(r.ok()) << (r.ok() ? "" : r.error().describe());
    if (!ioThread_.joinable()) ioThread_ = std::thread([this] { io_.run(); });
    return *server_;
  }

  Result<HttpResponse> call(std::string_view method, std::string_view target, std::string_view body = {}) {
    return HttpClient(sock()).request(method, target, body, std::chrono::seconds(60));
  }

  void release() {
    if (!released_.exchange(true)) release_.set_value();
  }

  testing::TempDir dir_;
  asio::io_context io_;
  asio::executor_work_guard<asio::io_context::executor_type> guard_{io_.get_executor()};
  Router router_;
  std::unique_ptr<HttpServer> server_;
  std::thread ioThread_;
  std::promise<void> entered_;
  std::promise<void> release_;
  std::atomic<bool> released_{false};
};

TEST_F(HttpServerTest, JsonRoundTrip) {
  startServer();
  auto r = call("POST", "/api/v1/echo?x=1&y=a%20b", R"({"memory": 128, "name": "web1"})");
  ASSERT_TRUE(r.ok()) << r.error().describe();
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(r->contentType, "application/json");
  auto j = nlohmann::json::parse(r->body);
  EXPECT_EQ(j["got"]["memory"], 128);
  EXPECT_EQ(j["got"]["name"], "web1");
  EXPECT_EQ(j["uid"], ::getuid());  // SO_PEERCRED
  EXPECT_EQ(j["query"]["y"], "a b");
  EXPECT_EQ(j["id"].get<std::string>().size(), 16u);

  auto p = call("GET", "/api/v1/vms/web1");
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(nlohmann::json::parse(p->body)["name"], "web1");
}

TEST_F(HttpServerTest, ErrorsOverTheWire) {
  startServer();
  auto bad = call("POST", "/api/v1/echo", "{oops");
  ASSERT_TRUE(bad.ok());
  EXPECT_EQ(bad->status, 400);
  EXPECT_EQ(nlohmann::json::parse(bad->body)["error"]["field"], "body");

  auto missing = call("GET", "/api/v1/nothing");
  ASSERT_TRUE(missing.ok());
  EXPECT_EQ(missing->status, 404);

  auto wrong = call("DELETE", "/api/v1/echo");
  ASSERT_TRUE(wrong.ok());
  EXPECT_EQ(wrong->status, 405);
}

TEST_F(HttpServerTest, HandlerExceptionIsGeneric500) {
  startServer();
  auto r = call("GET", "/api/v1/throw");
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->status, 500);
  EXPECT_EQ(r->body.find("shadow"), std::string::npos);
  EXPECT_EQ(nlohmann::json::parse(r->body)["error"]["code"], "internal");
}

TEST_F(HttpServerTest, BodyTooLargeIs413) {
  HttpServerOptions opts;
  opts.maxBodyBytes = 1024;
  startServer(std::move(opts));
  std::string big = R"({"pad": ")" + std::string(4096, 'x') + R"("})";
  auto r = call("POST", "/api/v1/echo", big);
  ASSERT_TRUE(r.ok()) << r.error().describe();
  EXPECT_EQ(r->status, 413);
  auto j = nlohmann::json::parse(r->body);
  EXPECT_EQ(j["error"]["field"], "body");
  EXPECT_EQ(j["error"]["code"], "invalid_input");
  // Far past the limit: the server answers before reading it all and closes;
  // the client still gets the 413 rather than a broken pipe.
  auto huge = call("POST", "/api/v1/echo", std::string(8 << 20, ' '));
  ASSERT_TRUE(huge.ok()) << huge.error().describe();
  EXPECT_EQ(huge->status, 413);
  // The server still serves new connections.
  auto ok = call("POST", "/api/v1/echo", "{}");
  ASSERT_TRUE(ok.ok());
  EXPECT_EQ(ok->status, 200);
}

TEST_F(HttpServerTest, AuthenticateRefusesWith403) {
  std::atomic<int> handled{0};
  router_.add("GET", "/api/v1/secret", [&](const Request&) {
    ++handled;
    return Response::json(200, {});
  });
  HttpServerOptions opts;
  opts.authenticate = [](Request& req) -> std::optional<Error> {
    if (req.path == "/api/v1/secret")
      return Error{ErrorCode::Forbidden, fmt::format("uid {} may not do this", req.peerUid), {}, {}};
    return std::nullopt;
  };
  startServer(std::move(opts));
  auto r = call("GET", "/api/v1/secret");
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->status, 403);
  EXPECT_EQ(nlohmann::json::parse(r->body)["error"]["code"], "forbidden");
  EXPECT_EQ(handled, 0);
  auto allowed = call("GET", "/api/v1/vms/x");
  ASSERT_TRUE(allowed.ok());
  EXPECT_EQ(allowed->status, 200);
}

TEST_F(HttpServerTest, BlockedHandlerDoesNotStallOthers) {
  startServer();
  auto blocked = std::async(std::launch::async, [this] { return call("GET", "/api/v1/block"); });
  entered_.get_future().wait();  // the handler is now blocked on a pool thread
  auto other = call("GET", "/api/v1/vms/web2");
  ASSERT_TRUE(other.ok()) << other.error().describe();
  EXPECT_EQ(other->status, 200);
  release();
  auto b = blocked.get();
  ASSERT_TRUE(b.ok()) << b.error().describe();
  EXPECT_EQ(b->status, 200);
  EXPECT_EQ(b->body, "unblocked");
}

TEST_F(HttpServerTest, KeepAliveServesSeveralRequests) {
  namespace beast = boost::beast;
  namespace http = beast::http;
  startServer();
  asio::io_context cio;
  asio::local::stream_protocol::socket s(cio);
  s.connect(asio::local::stream_protocol::endpoint(sock()));
  beast::flat_buffer buf;
  for (std::string name : {"a", "b", "c"}) {
    http::request<http::string_body> req{http::verb::get, "/api/v1/vms/" + name, 11};
    req.keep_alive(true);
    http::write(s, req);
    http::response<http::string_body> res;
    http::read(s, buf, res);
    EXPECT_EQ(res.result_int(), 200u);
    EXPECT_TRUE(res.keep_alive());
    EXPECT_EQ(res["X-Request-Id"].size(), 16u);
    EXPECT_EQ(nlohmann::json::parse(res.body())["name"], name);
  }
}

TEST_F(HttpServerTest, AuthenticateSetsThePrincipalAndAnswers401) {
  router_.add("GET", "/api/v1/me", [](const Request& req) {
    return Response::json(200, {{"login", req.principal ? req.principal->login : ""},
                                {"transport", req.transport},
                                {"token", req.header("authorization")}});
  });
  HttpServerOptions opts;
  opts.authenticate = [](Request& req) -> std::optional<Error> {
    if (req.header("authorization") != "Bearer good") return Error::unauthenticated("a valid API token is needed");
    auto p = std::make_shared<core::Principal>();
    p->login = "alice";
    p->via = "token";
    req.principal = std::move(p);
    return std::nullopt;
  };
  startServer(std::move(opts));
  auto no = call("GET", "/api/v1/me");
  ASSERT_TRUE(no.ok());
  EXPECT_EQ(no->status, 401);
  EXPECT_EQ(nlohmann::json::parse(no->body)["error"]["code"], "unauthenticated");

  namespace beast = boost::beast;
  namespace http = beast::http;
  asio::io_context cio;
  asio::local::stream_protocol::socket s(cio);
  s.connect(asio::local::stream_protocol::endpoint(sock()));
  http::request<http::string_body> req{http::verb::get, "/api/v1/me", 11};
  req.set("AuThOrIzAtIoN", "Bearer good");  // header names arrive lowercased
  http::write(s, req);
  beast::flat_buffer buf;
  http::response<http::string_body> res;
  http::read(s, buf, res);
  ASSERT_EQ(res.result_int(), 200u) << res.body();
  auto j = nlohmann::json::parse(res.body());
  EXPECT_EQ(j["login"], "alice");
  EXPECT_EQ(j["transport"], "unix");
  EXPECT_EQ(j["token"], "Bearer good");
}

TEST_F(HttpServerTest, HeaderTooLargeIs431) {
  namespace beast = boost::beast;
  namespace http = beast::http;
  HttpServerOptions opts;
  opts.maxHeaderBytes = 1024;
  startServer(std::move(opts));
  asio::io_context cio;
  asio::local::stream_protocol::socket s(cio);
  s.connect(asio::local::stream_protocol::endpoint(sock()));
  http::request<http::string_body> req{http::verb::get, "/api/v1/vms/x", 11};
  req.set("X-Padding", std::string(2000, 'p'));
  http::write(s, req);
  beast::flat_buffer buf;
  http::response<http::string_body> res;
  http::read(s, buf, res);
  EXPECT_EQ(res.result_int(), 431u);
  auto j = nlohmann::json::parse(res.body());
  EXPECT_EQ(j["error"]["code"], "invalid_input");
  EXPECT_EQ(j["error"]["field"], "headers");
  EXPECT_FALSE(res.keep_alive());
  // Just under the limit is fine.
  auto ok = call("GET", "/api/v1/vms/x");
  ASSERT_TRUE(ok.ok());
  EXPECT_EQ(ok->status, 200);
}

// A raw unix-socket connection for tests that misbehave on purpose.
struct RawConn {
  explicit RawConn(const std::string& path) : s(cio) { s.connect(asio::local::stream_protocol::endpoint(path)); }
  void write(std::string_view data) { asio::write(s, asio::buffer(data.data(), data.size())); }
  // Everything until the server closes, or "" + timedOut after limit.
  std::string readToEof(std::chrono::milliseconds limit, bool* timedOut) {
    std::string out;
    auto deadline = std::chrono::steady_clock::now() + limit;
    *timedOut = false;
    while (true) {
      pollfd p{s.native_handle(), POLLIN, 0};
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
      if (left.count() <= 0 || ::poll(&p, 1, static_cast<int>(left.count())) == 0) {
        *timedOut = true;
        return out;
      }
      char buf[4096];
      ssize_t n = ::read(s.native_handle(), buf, sizeof(buf));
      if (n <= 0) return out;
      out.append(buf, static_cast<size_t>(n));
    }
  }
  asio::io_context cio;
  asio::local::stream_protocol::socket s;
};

// Liveness without a stopwatch: the fast request is answered while the stalled
// one still holds its connection (a server blocked on it would only answer
// after closing it at its deadline).
TEST_F(HttpServerTest, StalledHalfRequestDoesNotDelayOthersAndIsClosedAtTheDeadline) {
  HttpServerOptions opts;
  opts.requestTimeout = std::chrono::milliseconds(2000);
  startServer(std::move(opts));
  auto t0 = std::chrono::steady_clock::now();
  RawConn slow(sock());
  slow.write("POST /api/v1/echo HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{\"half\":");
  auto fast = call("GET", "/api/v1/vms/quick");
  ASSERT_TRUE(fast.ok()) << fast.error().describe();
  EXPECT_EQ(fast->status, 200);
  slow.s.non_blocking(true);
  char b;
  boost::system::error_code ec;
  slow.s.read_some(asio::buffer(&b, 1), ec);
  EXPECT_EQ(ec, asio::error::would_block) << "the stalled connection was closed before the other was served";
  slow.s.non_blocking(false);
  // The stalled one is closed, unanswered, once its deadline passes, not before.
  bool timedOut = false;
  std::string got = slow.readToEof(std::chrono::seconds(10), &timedOut);
  EXPECT_FALSE(timedOut);
  EXPECT_EQ(got, "");
  EXPECT_GE(std::chrono::steady_clock::now() - t0, std::chrono::milliseconds(1900));
}

TEST_F(HttpServerTest, TrickleDoesNotExtendTheDeadline) {
  HttpServerOptions opts;
  opts.requestTimeout = std::chrono::milliseconds(400);
  startServer(std::move(opts));
  RawConn slow(sock());
  // One header byte every 50 ms: each read succeeds, the whole request never comes.
  std::string req = "GET /api/v1/vms/x HTTP/1.1\r\nHost: x\r\nX-Slow: " + std::string(100, 'a');
  boost::system::error_code ec;
  for (char c : req) {
    asio::write(slow.s, asio::buffer(&c, 1), ec);
    if (ec) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  EXPECT_TRUE(ec);  // the server hung up mid-trickle: the ~7 s request never completed
}

TEST_F(HttpServerTest, IdleKeepAliveConnectionIsClosed) {
  HttpServerOptions opts;
  opts.idleTimeout = std::chrono::milliseconds(200);
  startServer(std::move(opts));
  RawConn c(sock());
  c.write("GET /api/v1/vms/a HTTP/1.1\r\nHost: x\r\n\r\n");
  bool timedOut = false;
  auto t0 = std::chrono::steady_clock::now();
  std::string got = c.readToEof(std::chrono::seconds(5), &timedOut);
  EXPECT_FALSE(timedOut);
  EXPECT_NE(got.find("HTTP/1.1 200 OK"), std::string::npos);
  EXPECT_GE(std::chrono::steady_clock::now() - t0, std::chrono::milliseconds(150));
}

TEST_F(HttpServerTest, ConnectionCap) {
  HttpServerOptions opts;
  opts.maxUnixConnections = 2;
  auto& srv = startServer(std::move(opts));
  auto a = std::make_unique<RawConn>(sock());
  auto b = std::make_unique<RawConn>(sock());
  ASSERT_TRUE(testutil::waitFor([&] { return srv.connectionCount() == 2; }));
  // The third is told why and closed at once.
  RawConn c(sock());
  bool timedOut = false;
  std::string got = c.readToEof(std::chrono::seconds(5), &timedOut);
  EXPECT_FALSE(timedOut);
  EXPECT_NE(got.find("HTTP/1.1 503"), std::string::npos) << got;
  EXPECT_NE(got.find("\"unavailable\""), std::string::npos);
  // The two admitted ones are still served.
  a->write("GET /api/v1/vms/a HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
  EXPECT_NE(a->readToEof(std::chrono::seconds(5), &timedOut).find("\"a\""), std::string::npos);
  // Once they go, there is room again.
  a.reset();
  b.reset();
  ASSERT_TRUE(testutil::waitFor([&] { return srv.connectionCount() == 0; }));
  auto ok = call("GET", "/api/v1/vms/x");
  ASSERT_TRUE(ok.ok()) << ok.error().describe();
  EXPECT_EQ(ok->status, 200);
}

TEST_F(HttpServerTest, StopRemovesSocket) {
  auto& srv = startServer();
  EXPECT_TRUE(std::filesystem::is_socket(sock()));
  EXPECT_EQ(std::filesystem::status(sock()).permissions() & std::filesystem::perms::all,
            std::filesystem::perms::owner_read | std::filesystem::perms::owner_write);
  srv.stop();
  EXPECT_FALSE(std::filesystem::exists(sock()));
  srv.stop();  // idempotent
  auto r = call("GET", "/api/v1/vms/x");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().field, "connect");
}

TEST_F(HttpServerTest, RefusesWhenAnotherServerListens) {
  startServer();
  HttpServerOptions opts;
  opts.socketPath = sock();
  HttpServer second(io_, router_, opts);
  auto r = second.start();
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, ErrorCode::Unavailable);
  EXPECT_NE(r.error().message.find("already listening"), std::string::npos);
  // The first one still answers on its file.
  auto ok = call("GET", "/api/v1/vms/x");
  ASSERT_TRUE(ok.ok());
  EXPECT_EQ(ok->status, 200);
}

TEST_F(HttpServerTest, ReplacesStaleSocket) {
  // A socket file nobody listens on, as a crashed daemon leaves behind.
  int fd = ::socket(AF_UNIX, SOCK_STREAM, 0);
  ASSERT_GE(fd, 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::strcpy(addr.sun_path, sock().c_str());
  ASSERT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  ::close(fd);
  ASSERT_TRUE(std::filesystem::is_socket(sock()));
  startServer();
  auto r = call("GET", "/api/v1/vms/x");
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->status, 200);
}

TEST_F(HttpServerTest, RefusesToReplaceARegularFile) {
  std::ofstream(sock()) << "not a socket";
  HttpServerOptions opts;
  opts.socketPath = sock();
  HttpServer srv(io_, router_, opts);
  auto r = srv.start();
  ASSERT_FALSE(r.ok());
  EXPECT_TRUE(std::filesystem::is_regular_file(sock()));
}

TEST_F(HttpServerTest, RejectsTooLongSocketPath) {
  HttpServerOptions opts;
  opts.socketPath = "/tmp/" + std::string(200, 'x');
  HttpServer srv(io_, router_, opts);
  auto r = srv.start();
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().field, "socket");
}

}  // namespace
}  // namespace corral::api
