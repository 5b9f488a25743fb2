// corrald's configuration: defaults here, then a JSON file (--config), then
// command-line flags, each overriding the one before. Every effective setting is
// logged at start (secrets masked).
#pragma once

#include <chrono>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/quota.h"
#include "core/networks.h"
#include "core/storage.h"
#include "util/result.h"

namespace corral::daemon {

struct Config {
  std::string configFile;  // "" = none
  std::string stateDir = "/var/lib/corral";
  std::string accel = "auto";  // auto | kvm | tcg
  std::string qemuBinary = "qemu-system-x86_64";
  std::string logLevel = "info";
  std::string logFormat = "text";  // text | keyvalue | json (util/logging.h)
  unsigned stopTimeoutSeconds = 60;
  unsigned maxStopTimeoutSeconds = 300;  // the longest graceful stop a caller may ask for
  // A start or stop holds its handler thread until QEMU answers, so this bounds
  // how many VMs start at once; the threads are idle otherwise.
  unsigned apiThreads = 32;
  unsigned ioThreads = 2;
  unsigned operationThreads = 16;

  // Store: "" = <state>/corral.db (SQLite); "postgres://..." for PostgreSQL.
  std::string db;
  unsigned dbConnections = 8;

  // TLS listener ("ADDR:PORT"; "" = none). Without a certificate, a self-signed
  // one is made on first start under <state>/tls/.
  std::string listen;
  std::string tlsCert;
  std::string tlsKey;
  std::string tlsClientCa;       // "" = client certificates are not asked for
  bool clientCertLogin = false;  // a verified client certificate's email logs its user in
  std::vector<std::string> trustedProxies;  // addresses whose X-Remote-User is believed
  std::string proxyHeader = "x-remote-user";
  std::vector<std::string> allowedOrigins;  // extra browser origins for WebSockets

  core::QuotaLimits quotaDefaults;

  // Storage: pools besides the built-in "default" dir pool under the state dir
  // ("pools": [{"name": "fast", "kind": "lvm", "vg": "vg0"}, {"name": "big",
  // "kind": "dir", "path": "/srv/corral"}]), the pool new disks go to, and qemu-img.
  core::StorageConfig storage;
  uint64_t maxUploadBytes = uint64_t(64) << 30;  // largest image upload over HTTP

  // Consoles: how long a console token is valid, and how much serial history a
  // viewer gets on attach.
  unsigned consoleTokenTtlSeconds = 300;
  size_t consoleHistoryBytes = 64 * 1024;

  // Networking: the admin's hook script run per tap NIC at each start ("" none,
  // an absolute path), whether virtio NICs use vhost-net when it works, and the
  // network a new VM's NIC goes on when its create names none ("" none).
  core::NetworkConfig network;

  // Guru Meditation Reports (SIGUSR1, `corral admin report`, every 500) kept
  // under <state>/reports/; older ones are deleted.
  unsigned reportsKeep = 50;
  // Ended operations are deleted this many days after they ended (0: kept).
  unsigned operationsKeepDays = 30;
};

// Reads the JSON file at path into cfg. Keys are the flags' names with '_' for
// '-' ("state_dir", "listen", "quota_defaults": {"max_vms": 10, ...}); unknown
// keys are an error naming them, so a misspelt setting is never silently ignored.
Result<void> loadConfigFile(const std::string& path, Config& cfg);

// Every effective setting, secrets masked (the database URL's password shown as
// ***; key files named, never read): the configuration section of reports.
nlohmann::json toJson(const Config& cfg);

// The same as "key=value" lines for the start-up log.
std::vector<std::string> describe(const Config& cfg);

}  // namespace corral::daemon
