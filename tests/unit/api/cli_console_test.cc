// Proves the pieces of `corral console` (links corral_cli): the --escape key
// (caret notation, one printable character, none; anything else refused
// naming --escape) and how a chunk of keystrokes splits at it; --listen
// (loopback only, naming --listen otherwise); raw mode on a real pty made with
// openpty, set and restored exactly, also when an exception, exit() or
// std::terminate leaves the scope; the stdin reader (chunks one at a time,
// end of input, stop while blocked); and WsDuplex against a small Beast
// console server (cli_console_server.h) on a unix socket in a TempDir and
// over pinned TLS: round trip, frames queued before the upgrade, paused
// reading, the server's close reason, a refused upgrade with the daemon's
// message and status, a broken connection, nothing listening, abort().
// cli_console_command_test runs the corral binary itself.
#include <gtest/gtest.h>
#include <poll.h>
#include <pty.h>
#include <unistd.h>

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <chrono>
#include <cstring>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "cli/console.h"
#include "cli/terminal.h"
#include "cli/ws_duplex.h"
#include "cli_console_server.h"
#include "support/temp_dir.h"

namespace corral::cli {
namespace {

namespace asio = boost::asio;
using testutil::ConsoleServer;

// ---- --escape and the splitter

TEST(EscapeKey, CaretNotationPrintableAndNone) {
  EXPECT_EQ(**parseEscapeKey("^]"), 0x1d);
  EXPECT_EQ(**parseEscapeKey("^A"), 0x01);
  EXPECT_EQ(**parseEscapeKey("^a"), 0x01);
  EXPECT_EQ(**parseEscapeKey("^@"), 0x00);
  EXPECT_EQ(**parseEscapeKey("^_"), 0x1f);
  EXPECT_EQ(**parseEscapeKey("^?"), 0x7f);
  EXPECT_EQ(**parseEscapeKey("~"), '~');
  EXPECT_EQ(**parseEscapeKey("^"), '^');
  EXPECT_FALSE(parseEscapeKey("none")->has_value());
  EXPECT_EQ(describeEscapeKey(0x1d), "^]");
  EXPECT_EQ(describeEscapeKey(0x7f), "^?");
  EXPECT_EQ(describeEscapeKey('~'), "~");
  EXPECT_EQ(describeEscapeKey(std::nullopt), "none");
}

TEST(EscapeKey, AnythingElseIsRefusedNamingTheOption) {
  for (std::string bad : {"", " ", "^1", "^", "^ ", "ab", "^]]", "\x1d", "\xc3\xa9", "None", "^\x7f"}) {
    if (bad == "^") continue;  // a printable character, accepted above
    auto r = parseEscapeKey(bad);
    ASSERT_FALSE(r.ok()) << bad;
    EXPECT_EQ(r.error().field, "--escape") << bad;
    EXPECT_NE(r.error().message.find("--escape"), std::string::npos);
  }
}

TEST(EscapeSplit, BytesBeforeTheKeyGoAndBytesAfterItAreDropped) {
  const std::optional<unsigned char> key = 0x1d;
  auto s = splitAtEscape(
      "ab\x1d"
      "cd",
      key);
  EXPECT_EQ(s.send, "ab");
  EXPECT_TRUE(s.detach);
  s = splitAtEscape(
      "\x1d"
      "cd",
      key);
  EXPECT_EQ(s.send, "");
  EXPECT_TRUE(s.detach);
  s = splitAtEscape("abc\x1d", key);
  EXPECT_EQ(s.send, "abc");
  EXPECT_TRUE(s.detach);
  s = splitAtEscape("no key here\r", key);
  EXPECT_EQ(s.send, "no key here\r");
  EXPECT_FALSE(s.detach);
  // Without a key every byte goes, the usual escape too.
  s = splitAtEscape(
      "a\x1d"
      "b",
      std::nullopt);
  EXPECT_EQ(s.send,
            "a\x1d"
            "b");
  EXPECT_FALSE(s.detach);
}

// ---- --listen

TEST(ListenAddress, LoopbackAddressesAndPorts) {
  auto a = parseListenAddress("127.0.0.1:5901");
  ASSERT_TRUE(a.ok()) << a.error().message;
  EXPECT_EQ(a->host, "127.0.0.1");
  EXPECT_EQ(a->port, 5901);
  a = parseListenAddress("localhost:0");
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(a->host, "127.0.0.1");
  EXPECT_EQ(a->port, 0);
  a = parseListenAddress("[::1]:65535");
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(a->host, "::1");
  EXPECT_EQ(a->port, 65535);
  EXPECT_TRUE(parseListenAddress("127.9.8.7:1").ok());
  EXPECT_EQ(formatHostPort("::1", 5901), "[::1]:5901");
  EXPECT_EQ(formatHostPort("127.0.0.1", 5901), "127.0.0.1:5901");
}

TEST(ListenAddress, AnythingButLoopbackIsRefusedNamingTheOption) {
  for (std::string bad : {"0.0.0.0:5901", "10.0.0.1:5901", "[::]:5901", "example.org:5901", "127.0.0.1",
                          "127.0.0.1:", "127.0.0.1:65536", "127.0.0.1:x", "::1:5901", "[::1]5901", ":5901", ""}) {
    auto r = parseListenAddress(bad);
    ASSERT_FALSE(r.ok()) << bad;
    EXPECT_EQ(r.error().field, "--listen") << bad;
  }
  auto r = parseListenAddress("0.0.0.0:5901");
  EXPECT_NE(r.error().message.find("loopback"), std::string::npos);
}

// ---- raw mode

struct Pty {
  int master = -1, slave = -1;
  Pty() { EXPECT_EQ(::openpty(&master, &slave, nullptr, nullptr, nullptr), 0); }
  ~Pty() {
    ::close(master);
    ::close(slave);
  }
  termios get() const {
    termios t{};
    EXPECT_EQ(::tcgetattr(slave, &t), 0);
    return t;
  }
};

void expectSame(const termios &a, const termios &b) {
  EXPECT_EQ(a.c_iflag, b.c_iflag);
  EXPECT_EQ(a.c_oflag, b.c_oflag);
  EXPECT_EQ(a.c_cflag, b.c_cflag);
  EXPECT_EQ(a.c_lflag, b.c_lflag);
  EXPECT_EQ(std::memcmp(a.c_cc, b.c_cc, sizeof a.c_cc), 0);
  EXPECT_EQ(::cfgetispeed(&a), ::cfgetispeed(&b));
  EXPECT_EQ(::cfgetospeed(&a), ::cfgetospeed(&b));
}

// Raw while the object lives (no echo, no line editing, no signal keys), the
// exact settings back afterwards.
TEST(RawMode, SetsRawModeAndRestoresTheSettingsExactly) {
  Pty pty;
  termios before = pty.get();
  ASSERT_NE(before.c_lflag & ICANON, 0u);  // a fresh pty is cooked
  {
    RawMode raw;
    auto r = raw.enter(pty.slave);
    ASSERT_TRUE(r.ok()) << r.error().message;
    EXPECT_TRUE(raw.active());
    termios during = pty.get();
    EXPECT_EQ(during.c_lflag & (ICANON | ECHO | ISIG | IEXTEN), 0u);
    EXPECT_EQ(during.c_iflag & (ICRNL | IXON), 0u);
    EXPECT_EQ(during.c_cc[VMIN], 1);
    raw.restore();
    expectSame(pty.get(), before);
    raw.restore();  // idempotent
  }
  expectSame(pty.get(), before);
}

TEST(RawMode, RestoredWhenAnExceptionLeavesTheScope) {
  Pty pty;
  termios before = pty.get();
  try {
    RawMode raw;
    ASSERT_TRUE(raw.enter(pty.slave).ok());
    throw std::runtime_error("boom");
  } catch (const std::runtime_error &) {
  }
  expectSame(pty.get(), before);
}

// The paths that run no destructor: exit() and std::terminate, in a child
// that shares the pty with the test.
TEST(RawModeDeathTest, RestoredOnExitAndOnTerminate) {
  GTEST_FLAG_SET(death_test_style, "fast");
  Pty pty;
  termios before = pty.get();
  EXPECT_EXIT(
      {
        auto *raw = new RawMode;  // never destroyed
        if (!raw->enter(pty.slave).ok()) std::_Exit(9);
        std::exit(7);
      },
      ::testing::ExitedWithCode(7), "");
  expectSame(pty.get(), before);
  EXPECT_EXIT(
      {
        auto *raw = new RawMode;
        if (!raw->enter(pty.slave).ok()) std::_Exit(9);
        std::terminate();
      },
      ::testing::KilledBySignal(SIGABRT), "");
  expectSame(pty.get(), before);
}

TEST(RawMode, NotATerminalIsLeftAloneAndOneAtATime) {
  int p[2];
  ASSERT_EQ(::pipe(p), 0);
  RawMode onPipe;
  EXPECT_TRUE(onPipe.enter(p[0]).ok());
  EXPECT_FALSE(onPipe.active());
  ::close(p[0]);
  ::close(p[1]);

  Pty a, b;
  RawMode first, second;
  ASSERT_TRUE(first.enter(a.slave).ok());
  EXPECT_FALSE(second.enter(b.slave).ok());
  first.restore();
  EXPECT_TRUE(second.enter(b.slave).ok());
}

// ---- stdin reader

TEST(InputReader, HandsChunksOneAtATimeThenAnEmptyOneAtTheEnd) {
  int p[2];
  ASSERT_EQ(::pipe(p), 0);
  ASSERT_EQ(::write(p[1], "abc", 3), 3);
  asio::io_context io;
  auto work = asio::make_work_guard(io);
  std::vector<std::string> got;
  std::optional<InputReader> reader;
  reader.emplace(io, p[0], [&](std::string chunk) {
    got.push_back(chunk);
    if (chunk.empty()) return work.reset();
    // Written only now: the reader waits for next() before reading again.
    if (got.size() == 1) {
      EXPECT_EQ(::write(p[1], "def", 3), 3);
      ::close(p[1]);
    }
    reader->next();
  });
  reader->start();
  io.run();
  EXPECT_EQ(got, (std::vector<std::string>{"abc", "def", ""}));
  reader.reset();
  ::close(p[0]);
}

TEST(InputReader, StopsWhileBlockedOnAnIdleInput) {
  int p[2];
  ASSERT_EQ(::pipe(p), 0);
  asio::io_context io;
  int calls = 0;
  {
    InputReader reader(io, p[0], [&](std::string) { ++calls; });
    reader.start();
  }  // the destructor stops and joins a thread blocked in poll()
  io.run();
  EXPECT_EQ(calls, 0);
  ::close(p[0]);
  ::close(p[1]);
}

// ---- WsDuplex

std::string why(const std::optional<Result<WsEnded>> &end) {
  if (!end) return "the session never ended";
  return end->ok() ? "ended cleanly" : end->error().message;
}

struct Outcome {
  std::vector<std::string> messages;
  std::vector<bool> binary;
  std::optional<Result<WsEnded>> end;
  int ends = 0;
  bool opened = false;
};

std::string serialPath(const std::string &vm, std::string_view token = "t/serial+=") {
  return "/api/v1/vms/" + vm + "/console/serial" + tokenQuery(token);
}

// Runs one session to its end; `onMessage` may act on the session.
Outcome runSession(const Target &target, const std::string &path,
                   const std::function<void(WsDuplex &, Outcome &)> &onOpen,
                   const std::function<void(WsDuplex &, Outcome &)> &onMessage) {
  asio::io_context io;
  Outcome out;
  std::shared_ptr<WsDuplex> ws;
  WsHandlers h;
  h.onOpen = [&] {
    out.opened = true;
    if (onOpen) onOpen(*ws, out);
  };
  h.onMessage = [&](std::string data, bool binary) {
    out.messages.push_back(std::move(data));
    out.binary.push_back(binary);
    if (onMessage) onMessage(*ws, out);
  };
  h.onEnd = [&](Result<WsEnded> r) {
    out.end = std::move(r);
    ++out.ends;
  };
  ws = WsDuplex::start(io, target, path, std::move(h));
  io.run();
  return out;
}

TEST(TokenQuery, PercentEncodesTheToken) {
  EXPECT_EQ(tokenQuery("abc.DEF_-~"), "?token=abc.DEF_-~");
  EXPECT_EQ(tokenQuery("t/serial+="), "?token=t%2Fserial%2B%3D");
}

// Frames both ways in order, binary, over the unix socket without an
// Authorization header; close() sends its reason and ends the session here.
TEST(WsDuplex, RoundTripThenCloseFromTheClient) {
  ConsoleServer server;
  auto out = runSession(
      server.target(), serialPath("web1"),
      [](WsDuplex &ws, Outcome &) {
        ws.send("one");
        ws.send("two");
      },
      [](WsDuplex &ws, Outcome &o) {
        if (o.messages.size() == 3) ws.close("done here");
      });
  ASSERT_TRUE(out.end && out.end->ok()) << why(out.end);
  EXPECT_EQ(out.ends, 1);
  EXPECT_EQ(out.end->value().by, WsEnded::By::Client);
  EXPECT_EQ(out.messages, (std::vector<std::string>{"history\r\n", "echo:one", "echo:two"}));
  EXPECT_EQ(out.binary, (std::vector<bool>{true, true, true}));
  auto seen = server.waitFor([](const ConsoleServer::Seen &v) { return !v.closeReasons.empty(); });
  EXPECT_EQ(seen.keys, "onetwo");
  EXPECT_EQ(seen.closeReasons, std::vector<std::string>{"done here"});
  ASSERT_EQ(seen.targets.size(), 1u);
  EXPECT_EQ(seen.targets[0], "/api/v1/vms/web1/console/serial?token=t%2Fserial%2B%3D");
  EXPECT_EQ(seen.auth[0], "");
}

// The same over TLS with a pinned certificate: the Bearer token goes along
// (harmless: the query token is what a console checks).
TEST(WsDuplex, RoundTripOverPinnedTls) {
  ConsoleServer server(ConsoleServer::Transport::Tls);
  auto out = runSession(
      server.target(), serialPath("web1"), [](WsDuplex &ws, Outcome &) { ws.send("over tls"); },
      [](WsDuplex &ws, Outcome &o) {
        if (o.messages.size() == 2) ws.close("done here");
      });
  ASSERT_TRUE(out.end && out.end->ok()) << why(out.end);
  EXPECT_EQ(out.messages, (std::vector<std::string>{"history\r\n", "echo:over tls"}));
  auto seen = server.waitFor([](const ConsoleServer::Seen &v) { return !v.closeReasons.empty(); });
  EXPECT_EQ(seen.keys, "over tls");
  EXPECT_EQ(seen.closeReasons, std::vector<std::string>{"done here"});
  ASSERT_EQ(seen.auth.size(), 1u);
  EXPECT_EQ(seen.auth[0], "Bearer crl_test_token");

  // A wrong pin: refused before the upgrade (so before the token went out).
  Target wrong = server.target();
  wrong.fingerprint[0] = wrong.fingerprint[0] == 'A' ? 'B' : 'A';
  out = runSession(wrong, serialPath("web1"), nullptr, nullptr);
  ASSERT_TRUE(out.end && !out.end->ok());
  EXPECT_EQ(out.end->error().field, "tls");
  EXPECT_EQ(server.seen().targets.size(), 1u);
}

// Frames queued before the upgrade wait for it; pausing holds messages back
// until resumed, in order.
TEST(WsDuplex, QueuedBeforeOpenAndPausedReading) {
  ConsoleServer server;
  asio::io_context io;
  asio::steady_timer later(io);
  std::vector<std::string> got;
  std::shared_ptr<WsDuplex> ws;
  WsHandlers h;
  h.onMessage = [&](std::string data, bool) {
    got.push_back(data);
    if (got.size() == 1) {
      ws->pauseReading();
      later.expires_after(std::chrono::milliseconds(50));
      later.async_wait([&](const boost::system::error_code &) {
        EXPECT_EQ(got.size(), 1u);  // nothing delivered while paused
        ws->resumeReading();
      });
    }
    if (got.size() == 2) ws->close("bye");
  };
  std::optional<Result<WsEnded>> end;
  h.onEnd = [&](Result<WsEnded> r) { end = std::move(r); };
  ws = WsDuplex::start(io, server.target(), serialPath("web1"), std::move(h));
  ws->send("early");
  io.run();
  ASSERT_TRUE(end && end->ok());
  EXPECT_EQ(got, (std::vector<std::string>{"history\r\n", "echo:early"}));
}

TEST(WsDuplex, TheServersCloseReasonEndsTheSession) {
  ConsoleServer server;
  auto out = runSession(server.target(), serialPath("brief"), nullptr, nullptr);
  ASSERT_TRUE(out.end && out.end->ok()) << why(out.end);
  EXPECT_EQ(out.end->value().by, WsEnded::By::Server);
  EXPECT_EQ(out.end->value().reason, "the guest stopped");
  EXPECT_EQ(out.messages, std::vector<std::string>{"history\r\n"});
}

// A refusal carries the daemon's API message and the HTTP status.
TEST(WsDuplex, ARefusedUpgradeCarriesTheMessageAndStatus) {
  ConsoleServer server;
  auto out = runSession(server.target(), serialPath("off"), nullptr, nullptr);
  ASSERT_TRUE(out.end && !out.end->ok());
  EXPECT_FALSE(out.opened);
  EXPECT_EQ(out.end->error().field, "upgrade");
  EXPECT_EQ(out.end->error().value, "409");
  EXPECT_EQ(out.end->error().message, "corral: VM off is not running");

  out = runSession(server.target(), serialPath("web1", "forged"), nullptr, nullptr);
  ASSERT_TRUE(out.end && !out.end->ok());
  EXPECT_EQ(out.end->error().value, "401");
  EXPECT_NE(out.end->error().message.find("missing or forged"), std::string::npos);
}

TEST(WsDuplex, ABrokenConnectionIsAnExchangeError) {
  ConsoleServer server;
  auto out = runSession(server.target(), serialPath("drop"), nullptr, nullptr);
  ASSERT_TRUE(out.end && !out.end->ok());
  EXPECT_EQ(out.end->error().field, "exchange");
  EXPECT_EQ(out.ends, 1);
}

TEST(WsDuplex, NothingListeningIsAConnectError) {
  corral::testing::TempDir dir;
  auto out = runSession(Target::unixSocket((dir / "none.sock").string()), serialPath("web1"), nullptr, nullptr);
  ASSERT_TRUE(out.end && !out.end->ok());
  EXPECT_EQ(out.end->error().field, "connect");
}

// abort() before the upgrade ends the session here, once.
TEST(WsDuplex, AbortBeforeTheUpgradeEndsOnce) {
  ConsoleServer server;
  asio::io_context io;
  int ends = 0;
  std::optional<Result<WsEnded>> end;
  WsHandlers h;
  h.onEnd = [&](Result<WsEnded> r) {
    ++ends;
    end = std::move(r);
  };
  auto ws = WsDuplex::start(io, server.target(), serialPath("web1"), std::move(h));
  ws->abort();
  ws->abort();
  io.run();
  EXPECT_EQ(ends, 1);
  ASSERT_TRUE(end && end->ok());
  EXPECT_EQ(end->value().by, WsEnded::By::Client);
}

}  // namespace
}  // namespace corral::cli
