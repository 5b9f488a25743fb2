// Proves QmpTransport against a scripted peer (FakeQmpServer): the handshake,
// replies matched by id (also out of order and from many threads), QEMU's refusals
// as Kind::Refused with class and description, events interleaved with replies
// reaching onEvent and waitEvent (skipped events kept for the next waiter), command
// timeouts that survive a late reply, the peer dying mid-command (every pending
// command fails Disconnected), garbage of every kind as Kind::Protocol, and a
// recorded QEMU 7.2 session replayed whole and dribbled one byte per write.
#include "qemu/qmp_transport.h"

#include <atomic>
#include <future>
#include <thread>

#include <boost/asio/executor_work_guard.hpp>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "support/fake_qmp_server.h"
#include "support/temp_dir.h"

namespace corral::qemu {
namespace {

using namespace std::chrono_literals;
using nlohmann::json;
using testing::FakeQmpServer;
using ::testing::HasSubstr;

constexpr auto kLong = std::chrono::milliseconds(10s);

class QmpTransportTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ioThread_ = std::thread([this] { io_.run(); });
  }
  void TearDown() override {
    if (qmp_) qmp_->close();
    qmp_.reset();
    work_.reset();
    ioThread_.join();
  }

  // Replaces the transport (before connecting) with one using other options.
  void useOptions(QmpTransport::Options options) { qmp_ = QmpTransport::create(io_, options); }

  QmpResult<QmpGreeting> connect() {
    server_.start();
    return qmp_->connectSync((dir_ / "q.sock").string(), kLong);
  }

  corral::testing::TempDir dir_;
  boost::asio::io_context io_;
  boost::asio::executor_work_guard<boost::asio::io_context::executor_type> work_ =
      boost::asio::make_work_guard(io_);
  std::thread ioThread_;
  std::shared_ptr<QmpTransport> qmp_ = QmpTransport::create(io_);
  FakeQmpServer server_{dir_ / "q.sock"};
};

TEST_F(QmpTransportTest, HandshakeKeepsGreetingAndNegotiates) {
  server_.handshake();
  auto g = connect();
  ASSERT_TRUE(g.ok()) << g.error().message;
  EXPECT_EQ(g->major, 7);
  EXPECT_EQ(g->minor, 2);
  EXPECT_EQ(g->micro, 22);
  EXPECT_THAT(g->package, HasSubstr("Debian"));
  EXPECT_EQ(g->capabilities, std::vector<std::string>{"oob"});
  ASSERT_TRUE(qmp_->greeting().has_value());
  EXPECT_EQ(qmp_->greeting()->major, 7);
  EXPECT_TRUE(server_.waitFinished());
  auto sent = server_.received();
  ASSERT_EQ(sent.size(), 1u);
  EXPECT_EQ(sent[0]["execute"], "qmp_capabilities");
  EXPECT_FALSE(sent[0].contains("arguments"));
  EXPECT_TRUE(sent[0].contains("id"));
}

TEST_F(QmpTransportTest, CommandGetsItsReturnValue) {
  server_.handshake().expect("block_resize", {{"node-name", "d0"}, {"size", 1024}}).reply(json::object());
  server_.expectAndReply("query-status", {{"status", "running"}, {"running", true}});
  ASSERT_TRUE(connect().ok());
  auto r1 = qmp_->executeSync("block_resize", {{"node-name", "d0"}, {"size", 1024}}, kLong);
  ASSERT_TRUE(r1.ok()) << r1.error().message;
  EXPECT_EQ(*r1, json::object());
  auto r2 = qmp_->executeSync("query-status", nullptr, kLong);
  ASSERT_TRUE(r2.ok()) << r2.error().message;
  EXPECT_EQ((*r2)["status"], "running");
  EXPECT_TRUE(server_.waitFinished());
}

TEST_F(QmpTransportTest, RefusalCarriesClassAndDescription) {
  server_.handshake().expect("frobnicate").replyError("CommandNotFound", "The command frobnicate has not been found");
  ASSERT_TRUE(connect().ok());
  auto r = qmp_->executeSync("frobnicate", nullptr, kLong);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().kind, QmpError::Kind::Refused);
  EXPECT_EQ(r.error().errorClass, "CommandNotFound");
  EXPECT_EQ(r.error().description, "The command frobnicate has not been found");
  EXPECT_EQ(r.error().command, "frobnicate");
  EXPECT_EQ(r.error().code, ErrorCode::FailedPrecondition);
  EXPECT_THAT(r.error().message, HasSubstr("refused frobnicate"));

  // And it converts into the project's Result, keeping code and message.
  Result<json> plain = std::move(r);
  ASSERT_FALSE(plain.ok());
  EXPECT_EQ(plain.error().code, ErrorCode::FailedPrecondition);
  EXPECT_THAT(plain.error().message, HasSubstr("CommandNotFound"));
  // The connection is still good after a refusal.
  EXPECT_TRUE(server_.waitFinished());
}

TEST_F(QmpTransportTest, EventsAroundRepliesReachHandlersAndWaiters) {
  server_.handshake().expect("stop");
  server_.send({{"event", "STOP"}, {"timestamp", {{"seconds", 1}, {"microseconds", 0}}}});
  server_.reply(json::object());
  server_.send({{"event", "RTC_CHANGE"}, {"data", {{"offset", 0}}}});
  std::mutex mu;
  std::vector<std::string> seen;
  qmp_->onEvent([&](const json& e) {
    std::lock_guard lock(mu);
    seen.push_back(e["event"]);
  });
  ASSERT_TRUE(connect().ok());
  ASSERT_TRUE(qmp_->executeSync("stop", nullptr, kLong).ok());
  auto rtc = qmp_->waitEventSync("RTC_CHANGE", nullptr, kLong);
  ASSERT_TRUE(rtc.ok()) << rtc.error().message;
  EXPECT_EQ((*rtc)["data"]["offset"], 0);
  auto stop = qmp_->waitEventSync("STOP", nullptr, kLong);  // queued before the reply
  ASSERT_TRUE(stop.ok()) << stop.error().message;
  std::lock_guard lock(mu);
  EXPECT_EQ(seen, (std::vector<std::string>{"STOP", "RTC_CHANGE"}));
}

TEST_F(QmpTransportTest, NestedMatchSkipsEventsAndKeepsThemForTheNextWaiter) {
  server_.handshake().expect("query-status");
  server_.send({{"event", "SHUTDOWN"}, {"data", {{"guest", false}, {"reason", "host-signal"}}}});
  server_.send({{"event", "SHUTDOWN"}, {"data", {{"guest", true}, {"reason", "guest-shutdown"}}}});
  server_.reply({{"status", "shutdown"}, {"running", false}});
  ASSERT_TRUE(connect().ok());
  // The reply comes after both events: both are queued by the time it returns.
  ASSERT_TRUE(qmp_->executeSync("query-status", nullptr, kLong).ok());

  auto guest = qmp_->waitEventSync("SHUTDOWN", {{"data", {{"reason", "guest-shutdown"}}}}, kLong);
  ASSERT_TRUE(guest.ok()) << guest.error().message;
  EXPECT_EQ((*guest)["data"]["guest"], true);
  auto skipped = qmp_->waitEventSync("SHUTDOWN", nullptr, kLong);
  ASSERT_TRUE(skipped.ok()) << skipped.error().message;
  EXPECT_EQ((*skipped)["data"]["reason"], "host-signal");
  auto none = qmp_->waitEventSync("SHUTDOWN", nullptr, 50ms);
  ASSERT_FALSE(none.ok());
  EXPECT_EQ(none.error().kind, QmpError::Kind::Timeout);
}

TEST_F(QmpTransportTest, WaiterRegisteredFirstGetsOnlyItsMatch) {
  server_.handshake().hold();
  server_.send({{"event", "RESET"}, {"data", {{"guest", false}}}});
  server_.send({{"event", "RESET"}, {"data", {{"guest", true}}}});
  ASSERT_TRUE(connect().ok());
  std::promise<QmpResult<json>> got;
  qmp_->waitEvent("RESET", {{"data", {{"guest", true}}}}, kLong,
                  [&](QmpResult<json> r) { got.set_value(std::move(r)); });
  // The waiter is registered before the events exist: a later sync call on the
  // same strand is ordered after it.
  ASSERT_FALSE(qmp_->waitEventSync("NOTHING", nullptr, 1ms).ok());
  server_.release();
  auto r = got.get_future().get();
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ((*r)["data"]["guest"], true);
  auto host = qmp_->waitEventSync("RESET", nullptr, kLong);
  ASSERT_TRUE(host.ok());
  EXPECT_EQ((*host)["data"]["guest"], false);
}

TEST_F(QmpTransportTest, TimeoutThenLateReplyIsDroppedAndStreamStaysUsable) {
  server_.handshake().expect("query-status").hold().reply({{"status", "late"}, {"running", false}});
  server_.expectAndReply("query-version", {{"qemu", {{"major", 7}}}});
  ASSERT_TRUE(connect().ok());
  auto r = qmp_->executeSync("query-status", nullptr, 50ms);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().kind, QmpError::Kind::Timeout);
  EXPECT_EQ(r.error().code, ErrorCode::Timeout);
  EXPECT_THAT(r.error().message, HasSubstr("query-status"));
  server_.release();  // the late reply goes out now
  auto v = qmp_->executeSync("query-version", nullptr, kLong);
  ASSERT_TRUE(v.ok()) << v.error().message;
  EXPECT_EQ((*v)["qemu"]["major"], 7);
  EXPECT_TRUE(server_.waitFinished());
}

TEST_F(QmpTransportTest, PeerClosingMidCommandFailsEveryPendingCommand) {
  server_.handshake().expect("query-status").expect("query-version").expect("query-kvm").closeConnection();
  std::promise<QmpError> disconnected;
  qmp_->onDisconnect([&](const QmpError& e) { disconnected.set_value(e); });
  ASSERT_TRUE(connect().ok());
  std::vector<std::promise<QmpResult<json>>> results(3);
  const char* commands[] = {"query-status", "query-version", "query-kvm"};
  for (int i = 0; i < 3; ++i) {
    qmp_->execute(commands[i], nullptr, QmpTransport::kNoTimeout,
                  [&results, i](QmpResult<json> r) { results[i].set_value(std::move(r)); });
  }
  for (int i = 0; i < 3; ++i) {
    auto r = results[i].get_future().get();
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.error().kind, QmpError::Kind::Disconnected);
    EXPECT_EQ(r.error().code, ErrorCode::Unavailable);
    EXPECT_EQ(r.error().command, commands[i]);
  }
  EXPECT_EQ(disconnected.get_future().get().kind, QmpError::Kind::Disconnected);
  auto after = qmp_->executeSync("query-status", nullptr, kLong);
  ASSERT_FALSE(after.ok());
  EXPECT_EQ(after.error().kind, QmpError::Kind::Disconnected);
  auto wait = qmp_->waitEventSync("SHUTDOWN", nullptr, kLong);
  ASSERT_FALSE(wait.ok());
  EXPECT_EQ(wait.error().kind, QmpError::Kind::Disconnected);
}

TEST_F(QmpTransportTest, EventsQueuedBeforeTheEndStayAvailable) {
  server_.handshake().expect("quit");
  server_.send({{"event", "SHUTDOWN"}, {"data", {{"guest", false}, {"reason", "host-qmp-quit"}}}});
  server_.closeConnection();  // QEMU exiting before its reply went out
  ASSERT_TRUE(connect().ok());
  auto q = qmp_->executeSync("quit", nullptr, kLong);
  ASSERT_FALSE(q.ok());
  EXPECT_EQ(q.error().kind, QmpError::Kind::Disconnected);
  auto e = qmp_->waitEventSync("SHUTDOWN", {{"data", {{"reason", "host-qmp-quit"}}}}, kLong);
  ASSERT_TRUE(e.ok()) << e.error().message;
}

TEST_F(QmpTransportTest, CloseFailsPendingCommandsAndWaiters) {
  server_.handshake().expect("query-status");
  ASSERT_TRUE(connect().ok());
  std::promise<QmpResult<json>> cmd;
  std::promise<QmpResult<json>> wait;
  qmp_->execute("query-status", nullptr, kLong, [&](QmpResult<json> r) { cmd.set_value(std::move(r)); });
  qmp_->waitEvent("SHUTDOWN", nullptr, kLong, [&](QmpResult<json> r) { wait.set_value(std::move(r)); });
  ASSERT_TRUE(server_.waitFinished());  // the command is in flight
  qmp_->close();
  auto c = cmd.get_future().get();
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.error().kind, QmpError::Kind::Disconnected);
  auto w = wait.get_future().get();
  ASSERT_FALSE(w.ok());
  EXPECT_EQ(w.error().kind, QmpError::Kind::Disconnected);
}

TEST_F(QmpTransportTest, ConnectToMissingSocketIsDisconnected) {
  auto r = qmp_->connectSync((dir_ / "absent.sock").string(), kLong);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().kind, QmpError::Kind::Disconnected);
  EXPECT_THAT(r.error().message, HasSubstr("absent.sock"));
}

TEST_F(QmpTransportTest, SilentPeerTimesOutTheConnect) {
  server_.hold();  // accepts, never greets
  server_.start();
  auto r = qmp_->connectSync((dir_ / "q.sock").string(), 100ms);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().kind, QmpError::Kind::Timeout) << r.error().message;
  EXPECT_EQ(r.error().command, "connect");
}

TEST_F(QmpTransportTest, GreetingThatIsNotQmpIsProtocol) {
  server_.send(json{{"hello", "world"}});
  auto r = connect();
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().kind, QmpError::Kind::Protocol);
}

TEST_F(QmpTransportTest, OversizedLineIsProtocol) {
  useOptions({.maxLineBytes = 4096, .maxQueuedEvents = 16});
  server_.handshake().expect("query-status").sendRaw(std::string(10000, 'x'));
  ASSERT_TRUE(connect().ok());
  auto r = qmp_->executeSync("query-status", nullptr, kLong);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().kind, QmpError::Kind::Protocol);
  EXPECT_THAT(r.error().message, HasSubstr("longer than 4096"));
}

TEST_F(QmpTransportTest, DefaultLineLimitAcceptsLargeRepliesAndRefusesPast16MiB) {
  std::string big(1 << 20, 'a');
  server_.handshake().expectAndReply("query-big", big);
  server_.expect("query-huge").sendRaw("\"" + std::string(QmpTransport::kDefaultMaxLineBytes, 'b'));
  ASSERT_TRUE(connect().ok());
  auto ok = qmp_->executeSync("query-big", nullptr, kLong);
  ASSERT_TRUE(ok.ok()) << ok.error().message;
  EXPECT_EQ(ok->get_ref<const std::string&>().size(), big.size());
  auto r = qmp_->executeSync("query-huge", nullptr, kLong);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().kind, QmpError::Kind::Protocol);
}

struct GarbageCase {
  const char* name;
  const char* bytes;
  const char* says;
};

class QmpGarbageTest : public QmpTransportTest, public ::testing::WithParamInterface<GarbageCase> {};

TEST_P(QmpGarbageTest, BreaksTheConnectionAsProtocol) {
  server_.handshake().expect("query-status").sendRaw(GetParam().bytes);
  std::promise<QmpError> disconnected;
  qmp_->onDisconnect([&](const QmpError& e) { disconnected.set_value(e); });
  ASSERT_TRUE(connect().ok());
  auto r = qmp_->executeSync("query-status", nullptr, kLong);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().kind, QmpError::Kind::Protocol);
  EXPECT_EQ(r.error().code, ErrorCode::Internal);
  EXPECT_EQ(r.error().command, "query-status");
  EXPECT_THAT(r.error().message, HasSubstr(GetParam().says));
  EXPECT_EQ(disconnected.get_future().get().kind, QmpError::Kind::Protocol);
  // The connection is gone for good.
  EXPECT_EQ(qmp_->executeSync("query-status", nullptr, kLong).error().kind, QmpError::Kind::Disconnected);
}

INSTANTIATE_TEST_SUITE_P(
    Garbage, QmpGarbageTest,
    ::testing::Values(GarbageCase{"NotJson", "this is not json\r\n", "not JSON"},
                      GarbageCase{"TruncatedJson", "{\"return\": {\r\n", "not JSON"},
                      GarbageCase{"Array", "[1, 2, 3]\r\n", "not a JSON object"},
                      GarbageCase{"String", "\"QMP\"\r\n", "not a JSON object"},
                      GarbageCase{"UnknownId", "{\"return\": {}, \"id\": 999}\r\n", "never sent"},
                      GarbageCase{"ForeignId", "{\"return\": {}, \"id\": \"x\"}\r\n", "without our id"},
                      GarbageCase{"NoId", "{\"error\": {\"class\": \"GenericError\", \"desc\": \"JSON parse error\"}}\r\n",
                                  "JSON parse error"},
                      GarbageCase{"NeitherReplyNorEvent", "{\"hello\": 1}\r\n", "neither reply nor event"},
                      GarbageCase{"NamelessEvent", "{\"event\": 7}\r\n", "without a name"},
                      GarbageCase{"SecondGreeting", "{\"QMP\": {}}\r\n", "neither reply nor event"}),
    [](const auto& tpi) { return std::string(tpi.param.name); });

// The recorded QEMU 7.2 session, checked through the raw transport.
void checkRecordedSession(QmpTransport& qmp) {
  auto version = qmp.executeSync("query-version", nullptr, kLong);
  ASSERT_TRUE(version.ok()) << version.error().message;
  EXPECT_EQ((*version)["qemu"]["minor"], 2);
  auto status = qmp.executeSync("query-status", nullptr, kLong);
  ASSERT_TRUE(status.ok());
  EXPECT_EQ((*status)["status"], "prelaunch");
  ASSERT_TRUE(qmp.executeSync("cont", nullptr, kLong).ok());
  EXPECT_EQ((*qmp.executeSync("query-status", nullptr, kLong))["running"], true);
  ASSERT_TRUE(qmp.executeSync("stop", nullptr, kLong).ok());
  EXPECT_EQ((*qmp.executeSync("query-kvm", nullptr, kLong))["present"], true);
  for (auto [cmd, args, cls] : {std::tuple{"query-accels", json(), "CommandNotFound"},
                                std::tuple{"balloon", json{{"value", 1048576}}, "DeviceNotActive"},
                                std::tuple{"query-balloon", json(), "DeviceNotActive"},
                                std::tuple{"block_resize", json{{"node-name", "nope"}, {"size", 1048576}}, "GenericError"},
                                std::tuple{"frobnicate", json(), "CommandNotFound"}}) {
    auto r = qmp.executeSync(cmd, args, kLong);
    ASSERT_FALSE(r.ok()) << cmd;
    EXPECT_EQ(r.error().kind, QmpError::Kind::Refused) << cmd;
    EXPECT_EQ(r.error().errorClass, cls) << cmd;
  }
  ASSERT_TRUE(qmp.executeSync("system_reset", nullptr, kLong).ok());
  ASSERT_TRUE(qmp.executeSync("system_powerdown", nullptr, kLong).ok());
  ASSERT_TRUE(qmp.executeSync("quit", nullptr, kLong).ok());
  for (const char* e : {"RESUME", "STOP", "POWERDOWN"}) EXPECT_TRUE(qmp.waitEventSync(e, nullptr, kLong).ok()) << e;
  EXPECT_TRUE(qmp.waitEventSync("RESET", {{"data", {{"reason", "host-qmp-system-reset"}}}}, kLong).ok());
  EXPECT_TRUE(qmp.waitEventSync("SHUTDOWN", {{"data", {{"guest", false}}}}, kLong).ok());
}

TEST_F(QmpTransportTest, ReplaysRecordedQemuSession) {
  server_.loadTranscript("qemu72_session");
  ASSERT_TRUE(connect().ok());
  checkRecordedSession(*qmp_);
  EXPECT_TRUE(server_.waitFinished());
}

TEST_F(QmpTransportTest, ReplaysRecordedSessionDribbledOneBytePerWrite) {
  server_.dribble(true).loadTranscript("qemu72_session");
  auto g = connect();
  ASSERT_TRUE(g.ok()) << g.error().message;
  EXPECT_EQ(g->micro, 22);
  checkRecordedSession(*qmp_);
  EXPECT_TRUE(server_.waitFinished());
}

TEST_F(QmpTransportTest, ManyThreadsGetTheirOwnRepliesOutOfOrder) {
  constexpr int kThreads = 4;
  constexpr int kPerThread = 50;
  server_.handshake();
  // Each round reads one command from every thread, then answers in reverse order.
  for (int i = 0; i < kPerThread; ++i) server_.serveBatch("echo", nullptr, kThreads);
  ASSERT_TRUE(connect().ok());
  std::atomic<int> good{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kPerThread; ++i) {
        json args{{"thread", t}, {"n", i}};
        auto r = qmp_->executeSync("echo", args, kLong);
        if (r.ok() && *r == args) ++good;
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(good.load(), kThreads * kPerThread);
  EXPECT_TRUE(server_.waitFinished());
}

}  // namespace
}  // namespace corral::qemu
