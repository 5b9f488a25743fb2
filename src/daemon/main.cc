// corrald: the per-host daemon. Wires config, the store, the VM manager, the API
// listener and signals together; owns no rules of its own.
//
// It is a child subreaper, so that the QEMUs it daemonizes (grandchildren) are
// reparented to it and their exit statuses are its to read. It never stops a
// guest on its own exit: SIGTERM/SIGINT close the API and leave guests running,
// and the next start reattaches them.
#include <sys/prctl.h>
#include <unistd.h>

#include <csignal>
#include <filesystem>
#include <future>
#include <thread>

#include <CLI/CLI.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>
#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "api/http_server.h"
#include "api/routes.h"
#include "core/vm_manager.h"
#include "core/vm_state.h"
#include "daemon/config.h"
#include "daemon/node.h"
#include "host/state_dir.h"
#include "store/store.h"
#include "util/build_info.h"

namespace corral::daemon {
namespace {

int run(const Config& cfg) {
  if (::prctl(PR_SET_CHILD_SUBREAPER, 1) != 0) spdlog::warn("cannot become a child subreaper: {}", strerror(errno));

  host::StateDir dir(cfg.stateDir);
  if (auto r = dir.prepare(); !r.ok()) {
    spdlog::critical("state dir {}: {}", cfg.stateDir, r.error().message);
    return 1;
  }
  auto store = store::openSqliteStore(dir.database().string());
  if (!store.ok()) {
    spdlog::critical("{}", store.error().message);
    return 1;
  }

  auto node = NodeProbe::run(cfg, dir);
  if (!node.ok()) {
    spdlog::critical("{}", node.error().message);
    return 1;
  }
  spdlog::info("corrald {} ({}) state_dir={} qemu={} ({}) accel={} ({})", util::build::kVersion,
               util::build::kCommit, cfg.stateDir, node->qemuBinary, node->qemuVersion, node->accelName(),
               node->accelReason);

  boost::asio::io_context io;
  auto guard = boost::asio::make_work_guard(io);
  std::thread ioThread([&io] { io.run(); });

  core::ManagerConfig mc;
  mc.qemuBinary = node->qemuBinary;
  mc.accel = node->accel;
  mc.defaultStopTimeout = std::chrono::seconds(cfg.stopTimeoutSeconds);
  int rc = 0;
  {
    core::VmManager vms(io, **store, dir, mc);
    if (auto r = vms.reconcile(); !r.ok()) spdlog::error("reconcile: {}", r.error().message);

    api::Router router;
    api::addRoutes(router, vms, [&] { return node->toJson(vms); });
    api::HttpServerOptions opts;
    opts.socketPath = dir.socket().string();
    opts.handlerThreads = cfg.apiThreads;
    // Local and root only until the control plane brings users and tokens.
    opts.authorize = [](const api::Request& req) -> std::optional<Error> {
      if (req.peerUid == 0) return std::nullopt;
      return Error{ErrorCode::Forbidden, fmt::format("corrald serves root only (you are uid {})", req.peerUid), {}, {}};
    };
    api::HttpServer server(io, router, opts);
    if (auto r = server.start(); !r.ok()) {
      spdlog::critical("{}", r.error().message);
      rc = 1;
    } else {
      spdlog::info("listening on {}", opts.socketPath);
      boost::asio::signal_set signals(io, SIGINT, SIGTERM);
      std::promise<int> stopped;
      signals.async_wait([&](const boost::system::error_code&, int sig) {
        spdlog::info("signal {}: closing the API; guests keep running", sig);
        stopped.set_value(sig);
      });
      stopped.get_future().wait();
      server.stop();
    }
  }
  guard.reset();
  io.stop();
  ioThread.join();
  return rc;
}

}  // namespace
}  // namespace corral::daemon

int main(int argc, char** argv) {
  corral::daemon::Config cfg;
  CLI::App app{"corrald: the corral daemon, one per host"};
  app.add_option("--state-dir", cfg.stateDir, "state directory (database, socket, images, runtime dirs)")
      ->capture_default_str();
  app.add_option("--accel", cfg.accel, "accelerator: auto probes KVM with a real guest and falls back to TCG")
      ->check(CLI::IsMember({"auto", "kvm", "tcg"}))
      ->capture_default_str();
  app.add_option("--qemu", cfg.qemuBinary, "QEMU system emulator binary")->capture_default_str();
  app.add_option("--log-level", cfg.logLevel, "trace, debug, info, warn, error")
      ->check(CLI::IsMember({"trace", "debug", "info", "warn", "error"}))
      ->capture_default_str();
  app.add_option("--stop-timeout", cfg.stopTimeoutSeconds, "seconds a graceful stop waits before killing")
      ->capture_default_str();
  CLI11_PARSE(app, argc, argv);
  if (cfg.stateDir.empty() || cfg.stateDir.front() != '/') {
    std::error_code ec;
    cfg.stateDir = std::filesystem::absolute(cfg.stateDir, ec).string();
  }
  spdlog::set_level(spdlog::level::from_str(cfg.logLevel));
  spdlog::set_pattern("%Y-%m-%dT%H:%M:%S.%e %^%l%$ %v");
  return corral::daemon::run(cfg);
}
