// `corral console` as a person uses it, against a real corrald and guest:
//  - attached in a real terminal (a tmux pane running bash): the terminal goes
//    raw while attached (`stty -g` of the pane's tty differs from the shell's),
//    a line typed into the guest's shell gets its answer back, Ctrl-] detaches,
//    and the terminal's settings are the same right after as right before;
//  - `--log` prints the console history and exits;
//  - `--vnc --listen 127.0.0.1:PORT` forwards a desktop viewer's TCP connection
//    to the guest's VNC server: it is greeted with "RFB 003.008".
// Every tmux server is started on its own socket (-L) and killed in teardown.
#include <unistd.h>

#include <filesystem>
#include <thread>

#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/read.hpp>
#include <fmt/format.h>
#include <gtest/gtest.h>

#include "support/api_client.h"
#include "support/daemon_harness.h"
#include "support/files.h"
#include "util/command.h"

namespace corral::testing {
namespace {

using namespace std::chrono_literals;

constexpr auto kBoot = 90s;
constexpr const char* kMarker = "CORRAL-GUEST-READY";

std::string corralBinary() { return std::string(CORRAL_BINARY_DIR) + "/bin/corral"; }

// One tmux server of the test's own, with one 160x40 pane running bash.
class TmuxPane {
 public:
  explicit TmuxPane(const std::string& workDir)
      : server_(fmt::format("corral-console-test-{}", ::getpid())) {
    run({"new-session", "-d", "-s", "console", "-x", "160", "-y", "40", "-c", workDir, "env", "PS1=$ ", "TERM=xterm", "bash",
         "--norc", "--noprofile"});
  }
  ~TmuxPane() { run({"kill-server"}, /*check=*/false); }
  TmuxPane(const TmuxPane&) = delete;
  TmuxPane& operator=(const TmuxPane&) = delete;

  // Types text (literally) and, when enter, presses Enter.
  void type(const std::string& text, bool enter = true) {
    run({"send-keys", "-t", kPane, "-l", text});
    if (enter) run({"send-keys", "-t", kPane, "Enter"});
  }
  void key(const std::string& k) { run({"send-keys", "-t", kPane, k}); }
  std::string screen() { return run({"capture-pane", "-p", "-J", "-t", kPane}); }
  std::string tty() {
    std::string t = run({"display-message", "-p", "-t", kPane, "#{pane_tty}"});
    while (!t.empty() && t.back() == '\n') t.pop_back();
    return t;
  }
  bool waitForScreen(const std::string& needle, std::chrono::milliseconds deadline) {
    return DaemonHarness::waitFor([&] { return screen().find(needle) != std::string::npos; }, deadline);
  }

 private:
  std::string run(std::vector<std::string> args, bool check = true) {
    util::Command cmd("tmux");
    cmd.argPair("-L", server_).args(args).stdoutToBuffer().stderrToBuffer().timeout(10s);
    if (!check) cmd.allowFailureStatus();
    auto r = cmd.run();
    if (check) {
      EXPECT_TRUE(r.ok()) << r.error().message;
    }
    return r.ok() ? r->out : std::string();
  }

  static constexpr const char* kPane = "console:0.0";
  std::string server_;
};

std::string sttyOf(const std::string& tty) {
  util::Command cmd("stty");
  cmd.arg("-g").argPair("-F", tty).stdoutToBuffer().stderrToBuffer().timeout(10s);
  auto r = cmd.run();
  EXPECT_TRUE(r.ok()) << r.error().message;
  return r.ok() ? r->out : std::string();
}

class ConsoleCliTest : public ::testing::Test {
 protected:
  void SetUp() override {
    h_.startDaemon();
    h_.importGuest("guest");
  }

  void startVm(const std::string& name) {
    auto r = h_.cli({"vm", "create", name, "--image", "guest", "--memory", "128", "--start"});
    ASSERT_EQ(r.exitCode, 0) << r.err;
    ASSERT_TRUE(h_.waitForLog(name, kMarker, 1, kBoot)) << h_.cli({"vm", "log", name}).out;
  }

  DaemonHarness h_;
};

TEST_F(ConsoleCliTest, AttachInATerminalTypeReadDetachAndTheTerminalIsRestored) {
  startVm("tm");
  TmuxPane pane(h_.dir().path().string());
  std::string tty = pane.tty();
  ASSERT_FALSE(tty.empty());
  // The shell records its terminal's settings before and after the console,
  // and says when the console command has returned.
  pane.type(fmt::format("stty -g > before; {} --socket {} console tm; stty -g > after; echo BACK-$((2+3))",
                        corralBinary(), h_.socket()));
  ASSERT_TRUE(pane.waitForScreen(kMarker, 30s)) << "the history on attach shows the boot:\n" << pane.screen();
  ASSERT_TRUE(DaemonHarness::waitFor([&] { return std::filesystem::exists(h_.dir() / "before"); }, 10s));
  std::string before = readAll(h_.dir() / "before");
  EXPECT_NE(sttyOf(tty), before) << "attached, the terminal is in raw mode";

  pane.type("echo $((6*7))ZZ");
  EXPECT_TRUE(pane.waitForScreen("42ZZ", 30s)) << "the guest's shell answered:\n" << pane.screen();

  pane.key("C-]");
  ASSERT_TRUE(pane.waitForScreen("BACK-5", 30s)) << "Ctrl-] detached:\n" << pane.screen();
  EXPECT_NE(pane.screen().find("Detached from tm."), std::string::npos) << pane.screen();
  // Read by the shell right after corral returned (at its prompt, bash's
  // readline has the terminal in a mode of its own).
  EXPECT_EQ(readAll(h_.dir() / "after"), before) << "the terminal's settings are restored";
  EXPECT_EQ(h_.state("tm"), "running") << "detaching never touches the guest";
}

TEST_F(ConsoleCliTest, LogPrintsTheHistoryAndExits) {
  startVm("lg");
  auto r = h_.cli({"console", "lg", "--log"});
  ASSERT_EQ(r.exitCode, 0) << r.err;
  EXPECT_NE(r.out.find(kMarker), std::string::npos) << r.out;
}

TEST_F(ConsoleCliTest, VncListenForwardsADesktopViewer) {
  startVm("vl");
  uint16_t port = freeLoopbackPort();
  util::Command fwd(corralBinary());
  fwd.argPair("--socket", h_.socket())
      .args({"console", "vl", "--vnc", "--listen"})
      .arg(fmt::format("127.0.0.1:{}", port))
      .stdoutToNull()
      .stderrToNull()
      .allowFailureStatus();
  ASSERT_TRUE(fwd.start().ok());
  struct Stop {
    util::Command& c;
    ~Stop() { (void)c.abort(std::chrono::milliseconds(2000)); }
  } stop{fwd};

  namespace asio = boost::asio;
  asio::io_context io;
  asio::ip::tcp::socket sock(io);
  auto endpoint = asio::ip::tcp::endpoint(asio::ip::make_address("127.0.0.1"), port);
  ASSERT_TRUE(DaemonHarness::waitFor(
      [&] {
        boost::system::error_code ec;
        sock.close(ec);
        sock.connect(endpoint, ec);
        return !ec;
      },
      20s))
      << "corral console --vnc listens on " << port;
  std::string greeting(12, '\0');
  boost::system::error_code ec;
  asio::read(sock, asio::buffer(greeting), ec);
  ASSERT_FALSE(ec) << ec.message();
  EXPECT_EQ(greeting, "RFB 003.008\n");
}

}  // namespace
}  // namespace corral::testing
