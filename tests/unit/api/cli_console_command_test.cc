// Proves `corral console` end to end: the corral binary (the corral target,
// which tests/CMakeLists.txt builds before this test) against the console stand-in of
// cli_console_server.h on a unix socket, stdin a pipe (so no raw mode): it
// mints a serial token, opens the WebSocket with it in the query, detaches at
// the escape with the bytes before it sent and those after it dropped (also
// with --escape ~), detaches at the end of input, prints the server's close
// reason and exits 0, exits 3 when the connection breaks and 1 with the
// daemon's message when the upgrade or the token is refused; `--log` prints
// the history as is; `--vnc` prints its port, forwards two viewers at once
// and stops cleanly on SIGTERM, and a non-loopback --listen is a usage error.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/write.hpp>
#include <chrono>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "cli_console_server.h"
#include "support/temp_dir.h"
#include "util/command.h"

namespace corral::cli {
namespace {

namespace asio = boost::asio;
using Tcp = asio::ip::tcp;
using testutil::ConsoleServer;

std::string corralBinary() { return std::string(CORRAL_BINARY_DIR) + "/bin/corral"; }

#define REQUIRE_BINARY() \
  ASSERT_TRUE(std::filesystem::exists(corralBinary())) << "the corral binary is missing: " << corralBinary()

util::CommandResult runCorral(const ConsoleServer &server, const std::vector<std::string> &args, std::string input) {
  util::Command cmd(corralBinary());
  cmd.args(args).argPair("--socket", server.socketPath());
  cmd.stdinBuffer(std::move(input)).stdoutToBuffer().stderrToBuffer();
  cmd.allowFailureStatus().timeout(std::chrono::seconds(60));
  auto r = cmd.run();
  EXPECT_TRUE(r.ok()) << r.error().message;
  return r.ok() ? std::move(r).take() : util::CommandResult{};
}

// Bytes before the escape reach the guest, the escape and what follows never
// do; the console token was minted with kind serial and went into the query.
TEST(ConsoleCommand, DetachesAtTheEscapeSendingOnlyWhatCameBefore) {
  REQUIRE_BINARY();
  ConsoleServer server;
  auto r = runCorral(server, {"console", "web1"},
                     "ab\x1d"
                     "cd");
  EXPECT_EQ(r.status.exitCode, 0) << r.err;
  EXPECT_NE(r.err.find("Connected to web1 (escape character is ^])\r\n"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("\r\nDetached from web1.\r\n"), std::string::npos) << r.err;
  auto seen = server.waitFor([](const ConsoleServer::Seen &v) { return !v.closeReasons.empty(); });
  EXPECT_EQ(seen.keys, "ab");
  ASSERT_EQ(seen.tokenBodies.size(), 1u);
  EXPECT_EQ(nlohmann::json::parse(seen.tokenBodies[0])["kind"], "serial");
  ASSERT_EQ(seen.targets.size(), 2u);
  EXPECT_EQ(seen.targets[1], "/api/v1/vms/web1/console/serial?token=t%2Fserial%2B%3D");
}

TEST(ConsoleCommand, AnotherEscapeKeyAndTheEndOfInputDetach) {
  REQUIRE_BINARY();
  {
    ConsoleServer server;
    auto r = runCorral(server, {"console", "web1", "--escape", "~"}, "x~y");
    EXPECT_EQ(r.status.exitCode, 0) << r.err;
    EXPECT_NE(r.err.find("(escape character is ~)"), std::string::npos) << r.err;
    auto seen = server.waitFor([](const ConsoleServer::Seen &v) { return !v.closeReasons.empty(); });
    EXPECT_EQ(seen.keys, "x");
  }
  {
    ConsoleServer server;
    auto r = runCorral(server, {"console", "web1"}, "ls\n");
    EXPECT_EQ(r.status.exitCode, 0) << r.err;
    EXPECT_NE(r.err.find("Detached from web1."), std::string::npos) << r.err;
    auto seen = server.waitFor([](const ConsoleServer::Seen &v) { return !v.closeReasons.empty(); });
    EXPECT_EQ(seen.keys, "ls\n");
  }
  ConsoleServer server;
  auto r = runCorral(server, {"console", "web1", "--escape", "^1"}, "");
  EXPECT_EQ(r.status.exitCode, 2);
  EXPECT_NE(r.err.find("--escape"), std::string::npos) << r.err;
  EXPECT_TRUE(server.seen().targets.empty());
}

// With stdin held open: the console ends by the server (its reason printed,
// exit 0) or by a broken connection (exit 3).
TEST(ConsoleCommand, TheServerClosingOrTheConnectionBreaking) {
  REQUIRE_BINARY();
  for (auto [vm, rc] : {std::pair<std::string, int>{"brief", 0}, {"drop", 3}}) {
    ConsoleServer server;
    int in[2];
    ASSERT_EQ(::pipe2(in, O_CLOEXEC), 0);
    util::Command cmd(corralBinary());
    cmd.args({"console", vm, "--socket", server.socketPath()});
    cmd.stdinFd(in[0]).stdoutToBuffer().stderrToBuffer().allowFailureStatus();
    auto started = cmd.start();
    ::close(in[0]);
    ASSERT_TRUE(started.ok()) << started.error().message;
    auto st = cmd.wait(std::chrono::seconds(60));
    ::close(in[1]);
    ASSERT_TRUE(st.ok()) << st.error().message;
    EXPECT_EQ(st->exitCode, rc) << vm << ": " << cmd.err();
    EXPECT_EQ(cmd.out(), "history\r\n") << vm;
    if (vm == "brief")
      EXPECT_NE(cmd.err().find("\r\nConsole closed: the guest stopped\r\n"), std::string::npos) << cmd.err();
    else
      EXPECT_NE(cmd.err().find("lost the console of drop"), std::string::npos) << cmd.err();
  }
}

TEST(ConsoleCommand, RefusalsExitOneWithTheDaemonsMessage) {
  REQUIRE_BINARY();
  ConsoleServer server;
  auto r = runCorral(server, {"console", "off"}, "");
  EXPECT_EQ(r.status.exitCode, 1);
  EXPECT_NE(r.err.find("corral: VM off is not running"), std::string::npos) << r.err;
  EXPECT_EQ(r.err.find("Connected"), std::string::npos) << r.err;
  r = runCorral(server, {"console", "gone"}, "");
  EXPECT_EQ(r.status.exitCode, 1);
  EXPECT_NE(r.err.find("no VM named gone"), std::string::npos) << r.err;
}

TEST(ConsoleCommand, LogPrintsTheHistoryAsIs) {
  REQUIRE_BINARY();
  ConsoleServer server;
  auto r = runCorral(server, {"console", "web1", "--log"}, "");
  EXPECT_EQ(r.status.exitCode, 0) << r.err;
  EXPECT_EQ(r.out, "line one\r\nline two\r\n");
  EXPECT_EQ(server.seen().targets, std::vector<std::string>{"/api/v1/vms/web1/log"});
}

// A blocking read that gives up after 30 s instead of hanging the test.
void readTimeout(Tcp::socket &s) {
  timeval tv{30, 0};
  ::setsockopt(s.native_handle(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
}

// Two viewers at once each get the RFB greeting and their own bytes back;
// SIGTERM stops the forwarding with exit 0. A non-loopback --listen is a
// usage error before anything is asked of the daemon.
TEST(ConsoleCommand, VncForwardsSeveralViewersUntilSigterm) {
  REQUIRE_BINARY();
  ConsoleServer server;
  {
    auto r = runCorral(server, {"console", "web1", "--vnc", "--listen", "0.0.0.0:0"}, "");
    EXPECT_EQ(r.status.exitCode, 2);
    EXPECT_NE(r.err.find("--listen"), std::string::npos) << r.err;
    EXPECT_TRUE(server.seen().targets.empty());
  }
  int out[2];
  ASSERT_EQ(::pipe2(out, O_CLOEXEC), 0);
  corral::testing::TempDir dir;
  util::Command cmd(corralBinary());
  cmd.args({"console", "web1", "--vnc", "--socket", server.socketPath()});
  cmd.stdoutToFd(out[1]).stderrToFile((dir / "err").string()).allowFailureStatus();
  auto started = cmd.start();
  ::close(out[1]);
  ASSERT_TRUE(started.ok()) << started.error().message;

  // The first line names the port.
  std::string line;
  while (line.find('\n') == std::string::npos) {
    pollfd p{out[0], POLLIN, 0};
    ASSERT_EQ(::poll(&p, 1, 30000), 1) << "no line from corral console --vnc";
    char c[256];
    ssize_t n = ::read(out[0], c, sizeof c);
    ASSERT_GT(n, 0);
    line.append(c, size_t(n));
  }
  ::close(out[0]);
  const std::string prefix = "VNC console of web1 at 127.0.0.1:";
  ASSERT_EQ(line.rfind(prefix, 0), 0u) << line;
  EXPECT_NE(line.find(" (Ctrl-C to stop)\n"), std::string::npos) << line;
  auto port = static_cast<uint16_t>(std::stoi(line.substr(prefix.size())));

  asio::io_context io;
  Tcp::endpoint ep(asio::ip::make_address("127.0.0.1"), port);
  Tcp::socket a(io), b(io);
  a.connect(ep);
  b.connect(ep);
  readTimeout(a);
  readTimeout(b);
  for (auto *s : {&a, &b}) {
    std::string greeting(12, '\0');
    asio::read(*s, asio::buffer(greeting));
    EXPECT_EQ(greeting, "RFB 003.008\n");
  }
  asio::write(a, asio::buffer(std::string("from a")));
  asio::write(b, asio::buffer(std::string("from b")));
  std::string gotA(6, '\0'), gotB(6, '\0');
  asio::read(b, asio::buffer(gotB));
  asio::read(a, asio::buffer(gotA));
  EXPECT_EQ(gotA, "from a");
  EXPECT_EQ(gotB, "from b");

  auto st = cmd.abort(std::chrono::seconds(30));  // SIGTERM first
  ASSERT_TRUE(st.ok()) << st.error().message;
  EXPECT_EQ(st->signal, 0);
  EXPECT_EQ(st->exitCode, 0);
  // Both viewers see the end of the stream.
  for (auto *s : {&a, &b}) {
    char c;
    boost::system::error_code ec;
    s->read_some(asio::buffer(&c, 1), ec);
    EXPECT_TRUE(ec) << "a viewer stayed connected";
  }
  // Three vnc tokens: the check before listening and one per viewer.
  EXPECT_EQ(server.seen().tokenBodies.size(), 3u);
}

}  // namespace
}  // namespace corral::cli
