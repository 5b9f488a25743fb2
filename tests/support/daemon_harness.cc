#include "support/daemon_harness.h"

#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>

#include <filesystem>
#include <fstream>
#include <thread>

#include <gtest/gtest.h>

namespace corral::testing {
namespace fs = std::filesystem;
using namespace std::chrono_literals;

namespace {

std::string binDir() { return std::string(CORRAL_BINARY_DIR) + "/bin"; }

// The sanitizers' options (tests/CMakeLists.txt sets them for every test under
// ASan: a small quarantine, so that the tests bounding RSS measure corrald, not
// ASan's 256 MiB of freed memory held back) reach corrald too.
void setSanitizerOptions([[maybe_unused]] util::Command& daemon) {
#if defined(__SANITIZE_ADDRESS__)
  daemon.keepEnv({"ASAN_OPTIONS", "UBSAN_OPTIONS"});
#endif
}

}  // namespace

DaemonHarness::DaemonHarness() {
  // QEMUs orphaned by a killed daemon are reparented to us, so that we can reap them.
  ::prctl(PR_SET_CHILD_SUBREAPER, 1);
}

DaemonHarness::~DaemonHarness() {
  auto pids = qemuPids();
  if (daemon_) (void)daemon_->abort(2000ms);
  for (pid_t p : pids) ::kill(p, SIGKILL);
  for (pid_t p : pids) {
    // Our child when orphaned to us; otherwise init reaps it.
    for (int i = 0; i < 100 && ::waitpid(p, nullptr, WNOHANG) == 0; ++i) std::this_thread::sleep_for(20ms);
  }
  reapChildren();
}

void DaemonHarness::reapChildren() {
  while (::waitpid(-1, nullptr, WNOHANG) > 0) {
  }
}

void DaemonHarness::startDaemon(const std::vector<std::string>& extraArgs) {
  // Enterable (not listable) by others, as /var/lib is: dnsmasq, which drops
  // root, rereads its hosts files under the state dir.
  fs::permissions(dir_.path(), fs::perms::owner_all | fs::perms::group_exec | fs::perms::others_exec);
  fs::create_directories(stateDir());
  if (netns_.empty()) {
    daemon_ = std::make_unique<util::Command>(binDir() + "/corrald");
  } else {
    // `ip netns exec` enters the namespace (and mounts its own /sys) and execs
    // corrald in place: the pid stays the daemon's.
    daemon_ = std::make_unique<util::Command>("ip");
    daemon_->args({"netns", "exec", netns_, binDir() + "/corrald"});
  }
  daemon_->args({"--state-dir", stateDir(), "--accel", "tcg", "--log-level", "debug"})
      .args(extraArgs)
      .keepEnv({"PATH"})
      .stderrToFile((dir_ / "corrald.log").string(), true)
      .stdoutToFile((dir_ / "corrald.out").string(), true)
      .allowFailureStatus();  // killDaemon() ends it with SIGKILL on purpose
  setSanitizerOptions(*daemon_);
  auto started = daemon_->start();
  ASSERT_TRUE(started.ok()) << started.error().message;
  bool up = waitFor([&] { return cli({"node", "info"}).exitCode == 0; }, 60s);
  if (!up) FAIL() << "corrald did not answer; its log:\n" << daemonLog() << "\nits stderr:\n" << daemonStderr();
}

std::string DaemonHarness::daemonLog() const {
  std::ifstream in(dir_ / "corrald.out");
  return std::string((std::istreambuf_iterator<char>(in)), {});
}

std::string DaemonHarness::daemonStderr() const {
  std::ifstream in(dir_ / "corrald.log");
  return std::string((std::istreambuf_iterator<char>(in)), {});
}

void DaemonHarness::killDaemon() {
  ASSERT_TRUE(daemon_);
  ::kill(daemon_->pid(), SIGKILL);
  auto st = daemon_->wait(10000ms);
  ASSERT_TRUE(st.ok()) << st.error().message;
  daemon_.reset();
}

pid_t DaemonHarness::daemonPid() const { return daemon_ ? daemon_->pid() : -1; }

CliResult DaemonHarness::cli(const std::vector<std::string>& args) {
  util::Command c(binDir() + "/corral");
  c.args({"--socket", socket()}).args(args).stdoutToBuffer().stderrToBuffer().allowFailureStatus().timeout(200000ms);
  auto r = c.run();
  if (!r.ok()) return {-1, "", r.error().message};
  return {r->status.exitCode, r->out, r->err};
}

nlohmann::json DaemonHarness::cliJson(const std::vector<std::string>& args) {
  auto all = args;
  all.insert(all.end(), {"-o", "json"});
  auto r = cli(all);
  EXPECT_EQ(r.exitCode, 0) << "corral " << fmt::format("{}", fmt::join(all, " ")) << ": " << r.err;
  auto j = nlohmann::json::parse(r.out, nullptr, false);
  return j.is_discarded() ? nlohmann::json::object() : j;
}

void DaemonHarness::importGuest(const std::string& image, const std::string& extraAppend) {
  fs::path g = testGuestDir();
  std::ifstream cmdlineFile(g / "cmdline");
  std::string cmdline;
  std::getline(cmdlineFile, cmdline);
  if (!extraAppend.empty()) cmdline += " " + extraAppend;
  auto r = cli({"image", "import", image, "--kernel", (g / "vmlinuz").string(), "--initrd",
                (g / "initramfs.cpio.gz").string(), "--append", cmdline});
  ASSERT_EQ(r.exitCode, 0) << r.err;
}

bool DaemonHarness::waitFor(const std::function<bool()>& pred, std::chrono::milliseconds deadline) {
  auto end = std::chrono::steady_clock::now() + deadline;
  while (std::chrono::steady_clock::now() < end) {
    if (pred()) return true;
    std::this_thread::sleep_for(100ms);
  }
  return pred();
}

bool DaemonHarness::waitForState(const std::string& name, const std::string& st, std::chrono::milliseconds deadline) {
  return waitFor([&] { return cli({"vm", "info", name, "-o", "json"}).out.find("\"state\": \"" + st + "\"") !=
                              std::string::npos; },
                 deadline);
}

bool DaemonHarness::waitForLog(const std::string& name, const std::string& needle, int occurrences,
                               std::chrono::milliseconds deadline) {
  return waitFor(
      [&] {
        std::string log = cli({"vm", "log", name}).out;
        int n = 0;
        for (size_t pos = log.find(needle); pos != std::string::npos; pos = log.find(needle, pos + 1)) ++n;
        return n >= occurrences;
      },
      deadline);
}

std::vector<pid_t> DaemonHarness::qemuPids() const {
  std::vector<pid_t> out;
  std::error_code ec;
  fs::path run = fs::path(stateDir()) / "run";
  if (!fs::exists(run, ec)) return out;
  for (const auto& d : fs::directory_iterator(run, ec)) {
    std::ifstream pf(d.path() / "qemu.pid");
    pid_t p = 0;
    if (pf >> p && p > 0) {
      // Only a process that really is this test's QEMU (never a reused pid).
      std::ifstream cmd("/proc/" + std::to_string(p) + "/cmdline");
      std::string all((std::istreambuf_iterator<char>(cmd)), {});
      if (all.find(stateDir()) != std::string::npos) out.push_back(p);
    }
  }
  return out;
}

long rssKib(pid_t pid) {
  std::ifstream st("/proc/" + std::to_string(pid) + "/status");
  std::string key;
  long v = 0;
  while (st >> key) {
    if (key == "VmRSS:") {
      st >> v;
      return v;
    }
    st.ignore(4096, '\n');
  }
  return 0;
}

}  // namespace corral::testing
