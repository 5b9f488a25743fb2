// Proves the operations routes through a Router with real Operations over a
// SQLite store: who sees which operation (admin all; others their own and vm.*
// ones on VMs they may see), 404 for an invisible one exactly as for an unknown
// id, 401 without a principal, the limit and timeout parameters validated and
// named, wait answering the running operation at its timeout and the ended one
// at once; and the events route's handler: it needs a principal, forwards only
// the events of VMs the caller may see, and unsubscribes when the socket closes.
// The events route is proved twice: with a recording stand-in for the
// transport's socket (exact calls), and end to end through a real HttpServer on
// a unix socket with Beast WebSocket clients (two callers, each sees only their
// VMs; 401 without credentials; closing unsubscribes), and waits over the wire
// holding no handler thread.
#include "api/routes_ops.h"

#include <condition_variable>
#include <future>
#include <mutex>
#include <set>
#include <thread>

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/websocket.hpp>
#include <fmt/format.h>
#include <gtest/gtest.h>

#include "api/http_server.h"

#include "support/temp_dir.h"

namespace corral::api {
namespace {

using namespace std::chrono_literals;
using nlohmann::json;

std::shared_ptr<const core::Principal> user(std::string login, std::vector<std::string> groups = {}) {
  auto p = std::make_shared<core::Principal>();
  p->login = std::move(login);
  p->groups = std::move(groups);
  p->via = "token";
  return p;
}

std::shared_ptr<const core::Principal> admin() {
  auto p = std::make_shared<core::Principal>();
  p->login = "root";
  p->admin = true;
  p->via = "unix";
  return p;
}

class Gate {
 public:
  void wait() {
    std::unique_lock lock(mu_);
    cv_.wait(lock, [&] { return open_; });
  }
  void open() {
    {
      std::lock_guard lock(mu_);
      open_ = true;
    }
    cv_.notify_all();
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  bool open_ = false;
};

// What the transport's socket does, minus the wire: records what is sent.
class RecordingSocket : public WebSocket {
 public:
  bool send(std::string data, bool) override {
    std::lock_guard lock(mu_);
    if (closed_) return false;
    sent_.push_back(std::move(data));
    return true;
  }
  void close(std::string) override {
    std::function<void()> cb;
    {
      std::lock_guard lock(mu_);
      if (closed_) return;
      closed_ = true;
      cb = onClose_;
    }
    if (cb) cb();
  }
  bool closed() const override {
    std::lock_guard lock(mu_);
    return closed_;
  }
  void onMessage(std::function<void(std::string, bool)> cb) override { onMessage_ = std::move(cb); }
  void onClose(std::function<void()> cb) override { onClose_ = std::move(cb); }

  std::vector<std::string> sent() const {
    std::lock_guard lock(mu_);
    return sent_;
  }

 private:
  mutable std::mutex mu_;
  bool closed_ = false;
  std::vector<std::string> sent_;
  std::function<void(std::string, bool)> onMessage_;
  std::function<void()> onClose_;
};

class RoutesOpsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto s = store::openSqliteStore((dir_ / "corral.db").string());
    ASSERT_TRUE(s.ok()) << s.error().message;
    store_ = std::move(s).take();
    ops_ = std::make_unique<core::Operations>(*store_, 2);
    // web1 is alice's, db1 is bob's; admins see all (as core::canAccess would).
    addOperationRoutes(
        router_, *ops_, bus_,
        [this](const core::Principal& p, const std::string& vm) {
          std::lock_guard lock(askedMu_);
          asked_.push_back(vm);
          if (p.admin) return true;
          return (vm == "web1" && p.login == "alice") || (vm == "db1" && p.login == "bob");
        },
        [](const core::Principal& p) -> Result<std::vector<std::string>> {
          if (p.login == "alice") return std::vector<std::string>{"web1"};
          if (p.login == "bob") return std::vector<std::string>{"db1"};
          return std::vector<std::string>{};
        });
  }

  void TearDown() override {
    gate_.open();
    ops_.reset();
  }

  std::string start(std::string kind, std::string target, std::string requester, bool block = false) {
    auto op = ops_->start(std::move(kind), std::move(target), std::move(requester),
                          [this, block](const core::Operations::Progress&) -> Result<json> {
                            if (block) gate_.wait();
                            return json{{"ok", true}};
                          });
    EXPECT_TRUE(op.ok());
    if (!block) {
      EXPECT_EQ(ops_->wait(op->id, 20s)->state, "succeeded");
    }
    return op->id;
  }

  Response get(const std::string& path, std::shared_ptr<const core::Principal> p,
               std::map<std::string, std::string> query = {}) {
    Request req;
    req.method = "GET";
    req.path = path;
    req.query = std::move(query);
    req.principal = std::move(p);
    req.requestId = "testreq";
    return settle(router_.dispatch(req));
  }

  std::set<std::string> listedIds(std::shared_ptr<const core::Principal> p) {
    auto r = get("/api/v1/operations", std::move(p));
    EXPECT_EQ(r.status, 200) << r.body;
    std::set<std::string> ids;
    auto body = json::parse(r.body);
    for (const auto& op : body["operations"]) ids.insert(op["id"].get<std::string>());
    return ids;
  }

  testing::TempDir dir_;
  std::unique_ptr<store::Store> store_;
  core::EventBus bus_;
  Gate gate_;
  std::unique_ptr<core::Operations> ops_;
  Router router_;
  std::mutex askedMu_;
  std::vector<std::string> asked_;
};

TEST_F(RoutesOpsTest, ListShowsEachCallerWhatTheyMaySee) {
  auto aliceOwn = start("vm.start", "web1", "alice");
  auto bobOnWeb1 = start("vm.stop", "web1", "bob");        // alice sees: her VM
  auto bobOnDb1 = start("vm.start", "db1", "bob");         // alice does not
  auto bobImage = start("image.import", "web1", "bob");    // not a VM operation
  auto aliceImage = start("image.import", "img", "alice");  // her own request

  EXPECT_EQ(listedIds(admin()), (std::set<std::string>{aliceOwn, bobOnWeb1, bobOnDb1, bobImage, aliceImage}));
  EXPECT_EQ(listedIds(user("alice")), (std::set<std::string>{aliceOwn, bobOnWeb1, aliceImage}));
  EXPECT_EQ(listedIds(user("bob")), (std::set<std::string>{bobOnWeb1, bobOnDb1, bobImage}));
  EXPECT_EQ(listedIds(user("carol")), (std::set<std::string>{}));
}

// Proves a user's list is not a window over the newest rows: another user's
// flood of thousands of operations does not push hers out of it.
TEST_F(RoutesOpsTest, AnotherUsersFloodDoesNotHideOnesOwnOperations) {
  auto mine = start("vm.start", "web1", "alice");
  for (int i = 0; i < 5200; ++i) {
    store::OperationRecord op{.id = fmt::format("{:016x}", 0x100000 + i), .kind = "vm.start", .target = "db1",
                              .requester = "bob", .state = "succeeded", .createdAt = store::nowRfc3339(),
                              .updatedAt = store::nowRfc3339()};
    ASSERT_TRUE(store_->insertOperation(op).ok());
  }
  EXPECT_EQ(listedIds(user("alice")), (std::set<std::string>{mine}));
}

// Proves asking for one operation asks canSeeVm once.
TEST_F(RoutesOpsTest, OneOperationAsksCanSeeVmOnce) {
  auto id = start("vm.reboot", "web1", "bob");
  asked_.clear();
  EXPECT_EQ(get("/api/v1/operations/" + id, user("alice")).status, 200);
  EXPECT_EQ(asked_, (std::vector<std::string>{"web1"}));
}

TEST_F(RoutesOpsTest, ListLimitIsValidated) {
  for (int i = 0; i < 3; ++i) start("vm.start", "web1", "alice");
  auto two = get("/api/v1/operations", admin(), {{"limit", "2"}});
  ASSERT_EQ(two.status, 200);
  EXPECT_EQ(json::parse(two.body)["operations"].size(), 2u);
  auto twoAlice = get("/api/v1/operations", user("alice"), {{"limit", "2"}});
  EXPECT_EQ(json::parse(twoAlice.body)["operations"].size(), 2u);
  for (std::string bad : {"0", "-1", "abc", "1001", "", "5x"}) {
    auto r = get("/api/v1/operations", admin(), {{"limit", bad}});
    EXPECT_EQ(r.status, 400) << bad;
    EXPECT_EQ(json::parse(r.body)["error"]["field"], "limit") << bad;
  }
}

TEST_F(RoutesOpsTest, OneOperationHasTheDocumentedShape) {
  auto id = start("vm.start", "web1", "alice");
  auto r = get("/api/v1/operations/" + id, user("alice"));
  ASSERT_EQ(r.status, 200) << r.body;
  auto j = json::parse(r.body);
  EXPECT_EQ(j["id"], id);
  EXPECT_EQ(j["kind"], "vm.start");
  EXPECT_EQ(j["target"], "web1");
  EXPECT_EQ(j["requester"], "alice");
  EXPECT_EQ(j["state"], "succeeded");
  EXPECT_EQ(j["progress"], 100);
  EXPECT_EQ(j["result"], (json{{"ok", true}}));  // parsed, not a string
  EXPECT_TRUE(j["created_at"].is_string());
  EXPECT_TRUE(j["updated_at"].is_string());
  EXPECT_EQ(j["bytes_done"], 0);  // not byte-sized work
  EXPECT_EQ(j["bytes_total"], 0);
  EXPECT_EQ(j.size(), 11u);
}

TEST_F(RoutesOpsTest, ToJsonResultIsNullBeforeTheEnd) {
  store::OperationRecord op{.id = "00000000000000aa", .kind = "vm.start", .state = "running"};
  EXPECT_TRUE(toJson(op)["result"].is_null());
  op.result = "not json";
  EXPECT_EQ(toJson(op)["result"], "not json");
}

// Proves a failed operation's details (QEMU's argv and log) reach admins only:
// its requester reads the first line of the message.
TEST_F(RoutesOpsTest, FailedOperationDetailsAreForAdminsOnly) {
  auto op = ops_->start("vm.start", "web1", "alice", [](const core::Operations::Progress&) -> Result<json> {
    return Error::unavailable("vm=web1: launch failed: qemu exited\nargv: qemu-system-x86_64 -name web1\nqemu.log tail:\nboom");
  });
  ASSERT_TRUE(op.ok());
  auto ended = get("/api/v1/operations/" + op->id + "/wait", user("alice"), {{"timeout", "20"}});
  ASSERT_EQ(ended.status, 200) << ended.body;
  std::string mine = json::parse(ended.body)["result"]["message"];
  EXPECT_EQ(mine.rfind("vm=web1: launch failed: qemu exited", 0), 0u) << mine;
  EXPECT_EQ(mine.find("argv"), std::string::npos) << mine;
  auto listed = json::parse(get("/api/v1/operations", user("alice")).body)["operations"][0]["result"]["message"];
  EXPECT_EQ(listed, mine);
  std::string full = json::parse(get("/api/v1/operations/" + op->id, admin()).body)["result"]["message"];
  EXPECT_NE(full.find("argv: qemu-system-x86_64"), std::string::npos) << full;
  EXPECT_NE(full.find("boom"), std::string::npos) << full;
}

TEST_F(RoutesOpsTest, InvisibleOperationIsNotFoundLikeAnUnknownOne) {
  auto id = start("vm.start", "db1", "bob");
  auto hidden = get("/api/v1/operations/" + id, user("alice"));
  EXPECT_EQ(hidden.status, 404);
  auto unknown = get("/api/v1/operations/ffffffffffffffff", user("alice"));
  EXPECT_EQ(unknown.status, 404);
  auto hiddenErr = json::parse(hidden.body)["error"];
  EXPECT_EQ(hiddenErr["code"], "not_found");
  EXPECT_EQ(hiddenErr["message"], "operation " + id + " not found");
  EXPECT_EQ(get("/api/v1/operations/" + id + "/wait", user("alice"), {{"timeout", "0"}}).status, 404);
  EXPECT_EQ(get("/api/v1/operations/" + id, user("bob")).status, 200);
  EXPECT_EQ(get("/api/v1/operations/" + id, admin()).status, 200);
}

TEST_F(RoutesOpsTest, EveryRouteNeedsAPrincipal) {
  auto id = start("vm.start", "web1", "alice");
  EXPECT_EQ(get("/api/v1/operations", nullptr).status, 401);
  EXPECT_EQ(get("/api/v1/operations/" + id, nullptr).status, 401);
  EXPECT_EQ(get("/api/v1/operations/" + id + "/wait", nullptr).status, 401);
  Request ws;
  ws.method = "GET";
  ws.path = "/api/v1/events";
  const WsHandler* h = router_.matchWebSocket(ws);
  ASSERT_NE(h, nullptr);
  auto refused = (*h)(ws);
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.error().code, ErrorCode::Unauthenticated);
}

TEST_F(RoutesOpsTest, WaitTimeoutIsValidated) {
  auto id = start("vm.start", "web1", "alice");
  for (std::string bad : {"-1", "601", "abc", "1.5", "", "99999999999999999999"}) {
    auto r = get("/api/v1/operations/" + id + "/wait", user("alice"), {{"timeout", bad}});
    EXPECT_EQ(r.status, 400) << bad;
    EXPECT_EQ(json::parse(r.body)["error"]["field"], "timeout") << bad;
  }
  EXPECT_EQ(get("/api/v1/operations/" + id + "/wait", user("alice"), {{"timeout", "600"}}).status, 200);
}

TEST_F(RoutesOpsTest, WaitAnswersAtTheTimeoutAndAtTheEnd) {
  auto id = start("vm.start", "web1", "alice", /*block=*/true);
  auto t0 = std::chrono::steady_clock::now();
  auto r = get("/api/v1/operations/" + id + "/wait", user("alice"), {{"timeout", "1"}});
  EXPECT_GE(std::chrono::steady_clock::now() - t0, 1s);
  ASSERT_EQ(r.status, 200) << r.body;
  auto state = json::parse(r.body)["state"];
  EXPECT_TRUE(state == "running" || state == "pending") << state;
  gate_.open();
  auto done = get("/api/v1/operations/" + id + "/wait", user("alice"));  // default 60 s; ends first
  ASSERT_EQ(done.status, 200);
  EXPECT_EQ(json::parse(done.body)["state"], "succeeded");
}

TEST_F(RoutesOpsTest, PlainGetOfTheEventsRouteAsksForAnUpgrade) {
  EXPECT_EQ(get("/api/v1/events", user("alice")).status, 400);
}

TEST_F(RoutesOpsTest, EventsForwardOnlyVisibleVmsAndUnsubscribeOnClose) {
  Request req;
  req.method = "GET";
  req.path = "/api/v1/events";
  req.principal = user("alice", {"ops"});
  const WsHandler* h = router_.matchWebSocket(req);
  ASSERT_NE(h, nullptr);
  auto accept = (*h)(req);
  ASSERT_TRUE(accept.ok());
  auto sock = std::make_shared<RecordingSocket>();
  (*accept)(sock);
  EXPECT_EQ(bus_.subscribers(), 1u);

  auto ev = [](std::string type, std::string name, std::string ownerKind, std::string owner) {
    core::Event e;
    e.type = std::move(type);
    e.vm.name = std::move(name);
    e.vm.ownerKind = std::move(ownerKind);
    e.vm.owner = std::move(owner);
    e.vm.state = "running";
    e.time = "2026-01-02T03:04:05Z";
    return e;
  };
  bus_.publish(ev("vm.started", "mine", "user", "alice"));
  bus_.publish(ev("vm.started", "bobs", "user", "bob"));
  bus_.publish(ev("vm.started", "team", "group", "ops"));
  auto administered = ev("vm.stopped", "adm", "user", "bob");
  administered.vm.administrator = "alice";
  bus_.publish(administered);

  auto sent = sock->sent();
  ASSERT_EQ(sent.size(), 3u);
  EXPECT_EQ(json::parse(sent[0]), (json{{"type", "vm.started"},
                                        {"vm", "mine"},
                                        {"state", "running"},
                                        {"time", "2026-01-02T03:04:05Z"},
                                        {"reason", ""}}));
  EXPECT_EQ(json::parse(sent[1])["vm"], "team");
  EXPECT_EQ(json::parse(sent[2])["vm"], "adm");

  sock->close("bye");
  EXPECT_EQ(bus_.subscribers(), 0u);
  bus_.publish(ev("vm.stopped", "mine", "user", "alice"));
  EXPECT_EQ(sock->sent().size(), 3u);
}

TEST_F(RoutesOpsTest, RoutesAreInTheTable) {
  auto routes = router_.routes();
  std::set<std::pair<std::string, std::string>> got(routes.begin(), routes.end());
  EXPECT_TRUE(got.count({"GET", "/api/v1/operations"}));
  EXPECT_TRUE(got.count({"GET", "/api/v1/operations/{id}"}));
  EXPECT_TRUE(got.count({"GET", "/api/v1/operations/{id}/wait"}));
  EXPECT_TRUE(got.count({"GET", "/api/v1/events"}));
}

// ---- the events route over a real transport

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace websocket = beast::websocket;
using Local = asio::local::stream_protocol;

template <class Pred>
bool eventually(Pred pred) {
  auto deadline = std::chrono::steady_clock::now() + 10s;
  while (!pred()) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(5ms);
  }
  return true;
}

class EventsOverTheWireTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto s = store::openSqliteStore((dir_ / "corral.db").string());
    ASSERT_TRUE(s.ok()) << s.error().message;
    store_ = std::move(s).take();
    ops_ = std::make_unique<core::Operations>(*store_, 1);
    addOperationRoutes(
        router_, *ops_, bus_, [](const core::Principal&, const std::string&) { return false; },
        [](const core::Principal&) -> Result<std::vector<std::string>> { return std::vector<std::string>{}; });
    io_ = std::thread([this] { io.run(); });
    HttpServerOptions o;
    o.socketPath = (dir_ / "s").string();
    // The test's stand-in for tokens: "Bearer LOGIN".
    o.authenticate = [](Request& req) -> std::optional<Error> {
      const auto& auth = req.header("authorization");
      if (auth.rfind("Bearer ", 0) != 0) return Error::unauthenticated("log in first");
      auto p = std::make_shared<core::Principal>();
      p->login = auth.substr(7);
      p->via = "token";
      req.principal = std::move(p);
      return std::nullopt;
    };
    server_ = std::make_unique<HttpServer>(io, router_, std::move(o));
    auto r = server_->start();
    ASSERT_TRUE(r.ok()) << r.error().describe();
  }

  void TearDown() override {
    server_.reset();
    guard_.reset();
    io.stop();
    if (io_.joinable()) io_.join();
  }

  std::unique_ptr<websocket::stream<Local::socket>> connect(const std::string& login, beast::error_code& ec,
                                                           websocket::response_type& res) {
    auto ws = std::make_unique<websocket::stream<Local::socket>>(cio_);
    ws->next_layer().connect(Local::endpoint((dir_ / "s").string()));
    ws->set_option(websocket::stream_base::decorator([login](websocket::request_type& req) {
      if (!login.empty()) req.set(beast::http::field::authorization, "Bearer " + login);
    }));
    ws->handshake(res, "localhost", "/api/v1/events", ec);
    return ws;
  }

  static core::Event ownedBy(std::string vm, std::string owner, std::string type = "vm.started") {
    core::Event e;
    e.type = std::move(type);
    e.vm.name = std::move(vm);
    e.vm.owner = std::move(owner);
    e.vm.state = "running";
    return e;
  }

  static nlohmann::json next(websocket::stream<Local::socket>& ws) {
    beast::flat_buffer buf;
    ws.read(buf);
    EXPECT_TRUE(ws.got_text());
    return json::parse(beast::buffers_to_string(buf.data()));
  }

  corral::testing::TempDir dir_;
  std::unique_ptr<store::Store> store_;
  core::EventBus bus_;
  std::unique_ptr<core::Operations> ops_;
  Router router_;
  asio::io_context io;
  asio::executor_work_guard<asio::io_context::executor_type> guard_{io.get_executor()};
  std::thread io_;
  asio::io_context cio_;
  std::unique_ptr<HttpServer> server_;
};

TEST_F(EventsOverTheWireTest, EachCallerReceivesOnlyTheirVmsEvents) {
  beast::error_code ec;
  websocket::response_type res;
  auto alice = connect("alice", ec, res);
  ASSERT_FALSE(ec) << ec.message();
  auto bob = connect("bob", ec, res);
  ASSERT_FALSE(ec) << ec.message();
  ASSERT_TRUE(eventually([&] { return bus_.subscribers() == 2; }));

  bus_.publish(ownedBy("a1", "alice"));
  bus_.publish(ownedBy("b1", "bob"));
  bus_.publish(ownedBy("a2", "alice", "vm.stopped"));
  bus_.publish(ownedBy("c1", "carol"));
  bus_.publish(ownedBy("b2", "bob", "vm.deleted"));

  auto a = next(*alice);
  EXPECT_EQ(a["vm"], "a1");
  EXPECT_EQ(a["type"], "vm.started");
  EXPECT_EQ(a["state"], "running");
  EXPECT_FALSE(a["time"].get<std::string>().empty());
  EXPECT_EQ(next(*alice)["vm"], "a2");
  EXPECT_EQ(next(*bob)["vm"], "b1");
  auto b = next(*bob);
  EXPECT_EQ(b["vm"], "b2");
  EXPECT_EQ(b["type"], "vm.deleted");

  // Nothing else was queued for alice: the next thing she gets is this marker.
  bus_.publish(ownedBy("a3", "alice"));
  EXPECT_EQ(next(*alice)["vm"], "a3");

  alice->close(websocket::close_code::normal);
  EXPECT_TRUE(eventually([&] { return bus_.subscribers() == 1; }));
  bob->close(websocket::close_code::normal);
  EXPECT_TRUE(eventually([&] { return bus_.subscribers() == 0; }));
}

TEST_F(EventsOverTheWireTest, NoCredentialsIs401AndSubscribesNothing) {
  beast::error_code ec;
  websocket::response_type res;
  connect("", ec, res);
  EXPECT_EQ(ec, websocket::error::upgrade_declined);
  // The status, read as plain HTTP (the WebSocket client keeps only the error).
  namespace http = beast::http;
  Local::socket sock(cio_);
  sock.connect(Local::endpoint((dir_ / "s").string()));
  http::request<http::empty_body> req{http::verb::get, "/api/v1/events", 11};
  req.set(http::field::host, "localhost");
  req.set(http::field::connection, "Upgrade");
  req.set(http::field::upgrade, "websocket");
  req.set(http::field::sec_websocket_version, "13");
  req.set(http::field::sec_websocket_key, "dGhlIHNhbXBsZSBub25jZQ==");
  http::write(sock, req);
  beast::flat_buffer buf;
  http::response<http::string_body> out;
  http::read(sock, buf, out);
  EXPECT_EQ(out.result_int(), 401u) << out;
  EXPECT_EQ(json::parse(out.body())["error"]["code"], "unauthenticated");
  EXPECT_EQ(bus_.subscribers(), 0u);
}

TEST_F(EventsOverTheWireTest, ServerStopUnsubscribes) {
  beast::error_code ec;
  websocket::response_type res;
  auto alice = connect("alice", ec, res);
  ASSERT_FALSE(ec) << ec.message();
  ASSERT_TRUE(eventually([&] { return bus_.subscribers() == 1; }));
  server_.reset();  // waits for the sockets' onClose callbacks
  EXPECT_TRUE(eventually([&] { return bus_.subscribers() == 0; }));
}

// Proves a wait holds no handler thread: twice as many waits as the server has
// handler threads are open on a running operation, and another request still
// answers at once; then every wait answers when the operation ends.
TEST_F(EventsOverTheWireTest, WaitsHoldNoHandlerThread) {
  std::promise<void> release;
  std::shared_future<void> released = release.get_future().share();
  auto op = ops_->start("image.import", "big", "alice", [released](const core::Operations::Progress&) -> Result<json> {
    released.wait();
    return json::object();
  });
  ASSERT_TRUE(op.ok());
  auto request = [&](const std::string& target) {
    auto sock = std::make_unique<Local::socket>(cio_);
    sock->connect(Local::endpoint((dir_ / "s").string()));
    beast::http::request<beast::http::empty_body> req{beast::http::verb::get, target, 11};
    req.set(beast::http::field::host, "localhost");
    req.set(beast::http::field::authorization, "Bearer alice");
    beast::http::write(*sock, req);
    return sock;
  };
  auto answer = [](Local::socket& sock) {
    beast::flat_buffer buf;
    beast::http::response<beast::http::string_body> res;
    beast::http::read(sock, buf, res);
    return res;
  };
  const size_t waits = 2 * HttpServerOptions{}.handlerThreads;
  std::vector<std::unique_ptr<Local::socket>> waiting;
  for (size_t i = 0; i < waits; ++i) waiting.push_back(request("/api/v1/operations/" + op->id + "/wait?timeout=60"));

  auto other = std::async(std::launch::async, [&] {
    auto sock = request("/api/v1/operations/" + op->id);
    return answer(*sock);
  });
  bool answered = other.wait_for(20s) == std::future_status::ready;
  release.set_value();  // whatever happened, the waits end now
  ASSERT_TRUE(answered) << "a request queued behind the waits";
  EXPECT_EQ(other.get().result_int(), 200);
  for (auto& sock : waiting) {
    auto res = answer(*sock);
    EXPECT_EQ(res.result_int(), 200) << res.body();
    EXPECT_EQ(json::parse(res.body())["state"], "succeeded") << res.body();
  }
}

}  // namespace
}  // namespace corral::api
