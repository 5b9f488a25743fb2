// corrald: the per-host daemon. Wires config, the store, the VM manager, the API
// listener and signals together; owns no rules of its own.
//
// It is a child subreaper, so that the QEMUs it daemonizes (grandchildren) are
// reparented to it and their exit statuses are its to read. It never stops a
// guest on its own exit: SIGTERM/SIGINT close the API and leave guests running,
// and the next start reattaches them.
#include <grp.h>
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

#include "api/auth.h"
#include "api/http_server.h"
#include "api/tls.h"
#include "api/routes.h"
#include "core/events.h"
#include "core/identity.h"
#include "core/operations.h"
#include "core/vm_manager.h"
#include "core/vm_state.h"
#include "daemon/config.h"
#include "daemon/diagnostics.h"
#include "daemon/metrics.h"
#include "daemon/node.h"
#include "host/state_dir.h"
#include "host/host_info.h"
#include "store/store.h"
#include "util/build_info.h"
#include "util/logging.h"
#include "util/redact.h"
#include "util/strings.h"

namespace corral::daemon {
namespace {

// The TLS certificate: the configured one, or a self-signed one made on first start.
Result<std::pair<std::string, std::string>> tlsFiles(const Config& cfg, const host::StateDir& dir) {
  if (!cfg.tlsCert.empty() || !cfg.tlsKey.empty()) {
    if (cfg.tlsCert.empty() || cfg.tlsKey.empty())
      return Error::invalidInput("tls-cert", cfg.tlsCert, "--tls-cert and --tls-key go together");
    return std::pair{cfg.tlsCert, cfg.tlsKey};
  }
  std::filesystem::path tls = dir.root() / "tls";
  CORRAL_TRY(host::makeDir(tls, std::filesystem::perms::owner_all));
  std::string cert = (tls / "server.crt").string(), key = (tls / "server.key").string();
  char hostname[256] = {};
  ::gethostname(hostname, sizeof(hostname) - 1);
  CORRAL_TRY(api::ensureSelfSignedCertificate(cert, key, {hostname, "localhost"}));
  return std::pair{cert, key};
}

int run(const Config& cfg) {
  if (::prctl(PR_SET_CHILD_SUBREAPER, 1) != 0) spdlog::warn("cannot become a child subreaper: {}", strerror(errno));
  for (const auto& line : describe(cfg)) spdlog::info("config {}", line);

  host::StateDir dir(cfg.stateDir);
  if (auto r = dir.prepare(); !r.ok()) {
    spdlog::critical("state dir {}: {}", cfg.stateDir, r.error().message);
    return 1;
  }
  bool postgres = cfg.db.rfind("postgres://", 0) == 0 || cfg.db.rfind("postgresql://", 0) == 0;
  auto store = postgres ? store::openPostgresStore(cfg.db, cfg.dbConnections)
                        : store::openSqliteStore(cfg.db.empty() ? dir.database().string() : cfg.db);
  if (!store.ok()) {
    spdlog::critical("{}", store.error().message);
    return 1;
  }
  if (auto n = (*store)->failUnfinishedOperations("corrald stopped before the operation ended"); n.ok() && *n > 0)
    spdlog::warn("{} operations left unfinished by the previous corrald marked failed", *n);

  auto node = NodeProbe::run(cfg, dir);
  if (!node.ok()) {
    spdlog::critical("{}", node.error().message);
    return 1;
  }
  spdlog::info("corrald {} ({}) state_dir={} qemu={} ({}) accel={} ({})", util::build::kVersion,
               util::build::kCommit, cfg.stateDir, node->qemuBinary, node->qemuVersion, node->accelName(),
               node->accelReason);

  api::HttpServerOptions opts;
  opts.socketPath = dir.socket().string();
  // Everyone may connect; SO_PEERCRED says who they are and the authenticator
  // maps that uid to a user (or refuses it).
  opts.socketMode = 0666;
  opts.handlerThreads = cfg.apiThreads;
  opts.allowedOrigins = cfg.allowedOrigins;
  if (!cfg.listen.empty()) {
    auto files = tlsFiles(cfg, dir);
    if (!files.ok()) {
      spdlog::critical("TLS: {}", files.error().message);
      return 1;
    }
    opts.tcpListen = cfg.listen;
    std::tie(opts.tlsCertFile, opts.tlsKeyFile) = *files;
    opts.tlsClientCaFile = cfg.tlsClientCa;
  }

  boost::asio::io_context io;
  auto guard = boost::asio::make_work_guard(io);
  std::vector<std::thread> ioThreads;
  for (unsigned i = 0; i < std::max(1u, cfg.ioThreads); ++i) ioThreads.emplace_back([&io] { io.run(); });
  auto stopIo = [&] {
    guard.reset();
    io.stop();
    for (auto& t : ioThreads) t.join();
  };

  core::ManagerConfig mc;
  mc.qemuBinary = node->qemuBinary;
  mc.accel = node->accel;
  mc.defaultStopTimeout = std::chrono::seconds(cfg.stopTimeoutSeconds);
  mc.maxStopTimeout = std::chrono::seconds(cfg.maxStopTimeoutSeconds);
  mc.quotaDefaults = cfg.quotaDefaults;
  mc.storage = cfg.storage;
  mc.network = cfg.network;
  // No forward may take a port this host's own services listen on.
  for (const std::string* endpoint : {&cfg.listen, &cfg.db})
    if (auto port = util::portOfEndpoint(*endpoint)) mc.network.reservedPorts.insert(*port);
  opts.uploadDir = dir.uploadsDir().string();
  opts.maxUploadBytes = cfg.maxUploadBytes;
  // Uploads a previous corrald was receiving (or importing) when it stopped.
  {
    std::error_code ec;
    for (const auto& f : std::filesystem::directory_iterator(dir.uploadsDir(), ec)) std::filesystem::remove(f.path(), ec);
  }
  int rc = 0;
  {
    // Declared first, so that it outlives every thread that records into it
    // (operations, VM workers, QMP calls).
    util::metrics::Registry metrics;
    core::EventBus events;
    core::Identity identity(**store);
    core::VmManager vms(io, **store, dir, mc, &events);
    if (auto r = vms.openStorage(); !r.ok()) {
      spdlog::critical("storage: {}", r.error().message);
      stopIo();
      return 1;
    }
    core::Operations ops(**store, cfg.operationThreads);
    (void)ops.keepEndedFor(std::chrono::hours(24) * cfg.operationsKeepDays);
    core::Images images(**store, vms.storage(), ops);
    if (auto r = images.dropUnfinished(); !r.ok()) spdlog::error("images: {}", r.error().message);
    // Bridges, dnsmasq and masquerade before any guest starts (reconcile may restart some).
    // The guard rules keep every guest off this host's services: no guest starts without them.
    if (auto r = vms.networks().bringUp(); !r.ok()) {
      spdlog::critical("networks: {}", r.error().describe());
      stopIo();
      return 1;
    }
    if (auto r = vms.reconcile(); !r.ok()) spdlog::error("reconcile: {}", r.error().message);

    auto consoleTokens = core::ConsoleTokens::open(
        {.keyFile = dir.consoleKey(), .ttl = std::chrono::seconds(cfg.consoleTokenTtlSeconds)});
    if (!consoleTokens.ok()) {
      spdlog::critical("consoles: {}", consoleTokens.error().message);
      stopIo();
      return 1;
    }

    // Guru Meditation Reports: SIGUSR1, `corral admin report` and every 500.
    util::Reporter reporter;
    addDaemonSections(reporter, {.cfg = cfg, .node = *node, .vms = vms, .ops = ops, .store = **store});
    util::GuruMeditation guru(reporter, {.reportsDir = (dir.root() / "reports").string(),
                                         .toStderr = true,
                                         .keep = cfg.reportsKeep});
    if (auto r = guru.start(); !r.ok()) spdlog::error("reports: {}", r.error().message);
    api::setInternalErrorReporter(internalErrorReporter(guru));

    // GET /metrics: the API's own counters (opts.metrics) and collectors of
    // VMs, node, process, operations and QMP latency.
    DaemonMetrics daemonMetrics(metrics, vms, ops, events);
    opts.metrics = &metrics;

    api::Router router;
    api::addAllRoutes(router, {.vms = vms,
                               .images = images,
                               .ops = ops,
                               .events = events,
                               .identity = identity,
                               .consoleTokens = **consoleTokens,
                               .nodeFacts = [&](const core::Principal& who) { return node->toJson(vms, who); },
                               .nodeVerify = [&] { return node->verify(cfg, dir, **store, vms); },
                               .console = {.historyBytes = cfg.consoleHistoryBytes},
                               .report = reportTaker(guru),
                               .metrics = &metrics});
    api::AuthOptions auth;
    auth.trustedProxies = cfg.trustedProxies;
    auth.proxyHeader = cfg.proxyHeader;
    auth.clientCertLogin = cfg.clientCertLogin;
    opts.authenticate = api::makeAuthenticator(identity, auth);
    api::HttpServer server(io, router, opts);
    if (auto r = server.start(); !r.ok()) {
      spdlog::critical("{}", r.error().message);
      rc = 1;
    } else {
      boost::asio::signal_set signals(io, SIGINT, SIGTERM);
      std::promise<int> stopped;
      signals.async_wait([&](const boost::system::error_code&, int sig) {
        spdlog::info("signal {}: closing the API; guests keep running", sig);
        stopped.set_value(sig);
      });
      stopped.get_future().wait();
      server.stop();
    }
    api::setInternalErrorReporter({});
  }
  stopIo();
  return rc;
}

}  // namespace
}  // namespace corral::daemon

int main(int argc, char** argv) {
  // SIGUSR1 asks for a report; until the reporter is up (and after it is gone)
  // it must not kill the daemon, which is its default action.
  ::signal(SIGUSR1, SIG_IGN);
  corral::daemon::Config cfg;
  // The config file is read first, so that flags given with it override it.
  for (int i = 1; i + 1 < argc; ++i)
    if (std::string_view(argv[i]) == "--config") cfg.configFile = argv[i + 1];
  if (!cfg.configFile.empty()) {
    if (auto r = corral::daemon::loadConfigFile(cfg.configFile, cfg); !r.ok()) {
      fmt::print(stderr, "corrald: {}\n", r.error().message);
      return 2;
    }
  }
  CLI::App app{"corrald: the corral daemon, one per host"};
  app.add_option("--config", cfg.configFile, "JSON configuration file (flags override it)");
  app.add_option("--state-dir", cfg.stateDir, "state directory (database, socket, images, runtime dirs)")
      ->capture_default_str();
  app.add_option("--accel", cfg.accel, "accelerator: auto probes KVM with a real guest and falls back to TCG")
      ->check(CLI::IsMember({"auto", "kvm", "tcg"}))
      ->capture_default_str();
  app.add_option("--qemu", cfg.qemuBinary, "QEMU system emulator binary")->capture_default_str();
  app.add_option("--log-level", cfg.logLevel, "trace, debug, info, warn, error")
      ->check(CLI::IsMember({"trace", "debug", "info", "warn", "error"}))
      ->capture_default_str();
  app.add_option("--log-format", cfg.logFormat, "log lines as text, keyvalue (key=value pairs) or json")
      ->check(CLI::IsMember({"text", "keyvalue", "json"}))
      ->capture_default_str();
  app.add_option("--stop-timeout", cfg.stopTimeoutSeconds, "seconds a graceful stop waits before killing")
      ->capture_default_str();
  app.add_option("--max-stop-timeout", cfg.maxStopTimeoutSeconds,
                 "the longest graceful stop (seconds) a caller may ask for; longer ones are cut to it")
      ->capture_default_str();
  app.add_option("--db", cfg.db, "store: postgres://... for PostgreSQL; default SQLite <state-dir>/corral.db");
  app.add_option("--listen", cfg.listen, "ADDR:PORT of the TLS listener (none by default)");
  app.add_option("--tls-cert", cfg.tlsCert, "PEM certificate chain (default: self-signed, made on first start)");
  app.add_option("--tls-key", cfg.tlsKey, "PEM private key of --tls-cert");
  app.add_option("--tls-client-ca", cfg.tlsClientCa, "CA bundle to verify client certificates against");
  app.add_flag("--client-cert-login", cfg.clientCertLogin, "log in the user whose email a client certificate names");
  app.add_option("--trusted-proxy", cfg.trustedProxies, "address of a reverse proxy whose X-Remote-User is believed");
  app.add_option("--network-hook", cfg.network.hookScript,
                 "script run for each tap NIC at each start (env INSTANCE, MAC, MODE, INTERFACE, ...)");
  app.add_flag("--vhost-net,!--no-vhost-net", cfg.network.vhostNet, "virtio NICs on taps use vhost-net when it works");
  app.add_option("--default-network", cfg.network.defaultNetwork, "network of a new VM's NIC when none is named")
      ->capture_default_str();
  app.add_option("--guest-gid", cfg.network.guestGid,
                 "group every QEMU runs with; the firewall keeps its sockets off this host's own addresses")
      ->capture_default_str();
  app.add_option_function<std::string>(
      "--forward-ports",
      [&cfg](const std::string& text) {
        if (auto r = corral::core::parseForwardPorts(text, cfg.network); !r.ok())
          throw CLI::ValidationError("--forward-ports", r.error().message);
      },
      "LOW-HIGH: the host ports user-mode forwards may take (default 1024-65535)");
  app.add_option("--console-token-ttl", cfg.consoleTokenTtlSeconds, "seconds a console token stays valid")
      ->capture_default_str();
  CLI11_PARSE(app, argc, argv);
  // A command line is readable by every user of the host (ps, /proc/PID/cmdline).
  if (app.count("--db") > 0 && corral::util::maskUrlPassword(cfg.db) != cfg.db) {
    fmt::print(stderr,
               "corrald: --db: a password on the command line is visible to every user of this host (ps); "
               "put the URL in the config file (\"db\") or the password in PGPASSFILE\n");
    return 2;
  }
  if (cfg.stateDir.empty() || cfg.stateDir.front() != '/') {
    std::error_code ec;
    cfg.stateDir = std::filesystem::absolute(cfg.stateDir, ec).string();
  }
  auto format = corral::util::log::parseFormat(cfg.logFormat);
  if (!format.ok()) {
    fmt::print(stderr, "corrald: {}\n", format.error().message);
    return 2;
  }
  // The NIC hook runs at every start of a VM with a tap: a typo must stop the
  // daemon now, not every start later.
  if (const std::string& hook = cfg.network.hookScript;
      !hook.empty() && (hook.front() != '/' || ::access(hook.c_str(), X_OK) != 0)) {
    fmt::print(stderr, "corrald: network_hook {}: must be an absolute path to an executable file\n", hook);
    return 2;
  }
  // The guard firewall refuses every socket of this group the host's services:
  // a real group with it would lose them too, and root's would lock out corrald.
  if (gid_t g = cfg.network.guestGid; g == 0 || ::getgrgid(g) != nullptr) {
    const struct group* gr = ::getgrgid(g);
    fmt::print(stderr, "corrald: guest_gid {}: is group {}'s; choose a gid that no group or account has\n", g,
               gr ? gr->gr_name : "?");
    return 2;
  }
  corral::util::log::setup({.format = *format, .level = cfg.logLevel, .recentProblems = 50});
  return corral::daemon::run(cfg);
}
