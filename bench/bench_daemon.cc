// A benchmark's corrald; see bench_daemon.h.
#include "bench_daemon.h"

#include <fmt/format.h>

#include "support/api_client.h"

namespace corral::bench {

using namespace std::chrono_literals;
using nlohmann::json;
using testing::ApiClient;
using testing::ApiReply;

Daemon::Daemon(std::string prog, Paths paths, fs::path root, std::string keepLog, std::vector<std::string> extraArgs)
    : prog_(std::move(prog)),
      paths_(std::move(paths)),
      root_(std::move(root)),
      state_(root_ / "s"),
      keepLog_(std::move(keepLog)),
      extraArgs_(std::move(extraArgs)) {}

Daemon::~Daemon() {
  if (daemon_) killAndReap(*daemon_);
  Janitor::get().setDaemon(-1);
  std::error_code ec;
  if (!keepLog_.empty()) fs::copy_file(logPath(), keepLog_, fs::copy_options::overwrite_existing, ec);
}

Result<void> Daemon::start() {
  fs::create_directories(state_);
  return retryCorraldStart(prog_.c_str(), [this] { return startOnce(); });
}

Result<std::string> Daemon::cli(const std::vector<std::string>& args) const {
  return runCorral(paths_.bin, socket(), args, 300000ms);
}

Result<json> Daemon::api(std::string_view method, std::string_view target, const json& body) const {
  const ApiClient client = ApiClient::unixSocket(socket());
  ApiReply r = client.request(method, target, body.is_null() ? "" : body.dump());
  if (r.status == 202) {
    json op = r.json();
    if (op.is_discarded() || !op.contains("id"))
      return Error::unavailable(fmt::format("{} {}: 202 without an operation", method, target));
    r = client.get(fmt::format("/api/v1/operations/{}/wait?timeout=300", op["id"].get<std::string>()));
    const json done = r.json();
    if (r.status == 200 && (!done.is_object() || done.value("state", "") != "succeeded")) r.status = 500;
  }
  if (r.status / 100 != 2)
    return Error::unavailable(fmt::format("{} {}: HTTP {}: {}\ncorrald log:\n{}", method, target, r.status,
                                          tail(r.body, 2000), logTail()));
  return r.body.empty() ? json() : r.json();
}

Result<void> Daemon::importGuest(const std::string& name) const {
  CORRAL_TRY(checkGuest(paths_.guest));
  CORRAL_TRY(cli({"image", "import", name, "--kernel", (paths_.guest / "vmlinuz").string(), "--initrd",
                  (paths_.guest / "initramfs.cpio.gz").string(), "--append", guestCmdline(paths_.guest)}));
  return corral::ok();
}

Result<void> Daemon::startOnce() {
  Janitor::get().setDaemon(-1);
  if (daemon_) killAndReap(*daemon_);
  std::vector<std::string> args{"--state-dir", state_.string(), "--accel", "tcg", "--log-level", "info"};
  args.insert(args.end(), extraArgs_.begin(), extraArgs_.end());
  if (netns_.empty()) {
    daemon_ = corraldCommand(paths_.bin, args, logPath());
  } else {
    // corraldCommand's settings, with `ip netns exec NS` in front.
    daemon_ = std::make_unique<util::Command>("ip");
    daemon_->args({"netns", "exec", netns_, (paths_.bin / "corrald").string()})
        .args(args)
        .keepEnv({"PATH"})
        .stdoutToFile(logPath(), true)
        .stderrToStdout()
        .preExec(dieWithUs);
  }
  if (auto r = daemon_->start(); !r.ok()) return r.error().context("start corrald");
  Janitor::get().setDaemon(daemon_->pid());
  const ApiClient client = ApiClient::unixSocket(socket());
  return waitForCorrald(
      *daemon_,
      [&] {
        ApiReply node = client.get("/api/v1/node");
        if (node.status != 200) return false;
        node_ = node.json();
        return true;
      },
      logPath());
}

}  // namespace corral::bench
