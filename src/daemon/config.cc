#include "daemon/config.h"

#include <fstream>
#include <sstream>

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <nlohmann/json.hpp>

#include "util/redact.h"

namespace corral::daemon {
namespace {

using nlohmann::json;

template <class T>
Result<void> read(const json& j, const std::string& key, T& out) {
  try {
    out = j.get<T>();
  } catch (const json::exception&) {
    return Error::invalidInput(key, j.dump(), "has the wrong type");
  }
  return ok();
}

Result<void> readQuota(const json& j, core::QuotaLimits& q) {
  if (!j.is_object()) return Error::invalidInput("quota_defaults", j.dump(), "must be an object");
  for (const auto& [k, v] : j.items()) {
    const core::QuotaKey* it = core::findQuotaKey(k);
    if (!it) return Error::invalidInput("quota_defaults." + k, v.dump(), "unknown setting");
    if (!v.is_number_integer() || v.get<int64_t>() < -1)
      return Error::invalidInput("quota_defaults." + k, v.dump(), "must be an integer, -1 for unlimited");
    q.*(it->limit) = v.get<int64_t>();
  }
  return ok();
}

Result<void> readPools(const json& j, std::vector<host::PoolConfig>& pools) {
  if (!j.is_array()) return Error::invalidInput("pools", j.dump(), "must be a list of {name, kind, path|vg}");
  for (size_t i = 0; i < j.size(); ++i) {
    const json& p = j[i];
    std::string field = fmt::format("pools[{}]", i);
    if (!p.is_object()) return Error::invalidInput(field, p.dump(), "must be an object");
    host::PoolConfig pc;
    for (const auto& [k, v] : p.items()) {
      if (k == "name") CORRAL_TRY(read(v, field + ".name", pc.name));
      else if (k == "kind") CORRAL_TRY(read(v, field + ".kind", pc.kind));
      else if (k == "path") CORRAL_TRY(read(v, field + ".path", pc.path));
      else if (k == "vg") CORRAL_TRY(read(v, field + ".vg", pc.vg));
      else return Error::invalidInput(field + "." + k, v.dump(), "unknown setting");
    }
    pools.push_back(std::move(pc));
  }
  return ok();
}

}  // namespace

Result<void> loadConfigFile(const std::string& path, Config& cfg) {
  std::ifstream in(path);
  if (!in) return Error::invalidInput("config", path, "cannot be read");
  json j = json::parse(in, nullptr, false);
  if (j.is_discarded() || !j.is_object()) return Error::invalidInput("config", path, "is not a JSON object");
  for (const auto& [k, v] : j.items()) {
    if (k == "state_dir") CORRAL_TRY(read(v, k, cfg.stateDir));
    else if (k == "accel") CORRAL_TRY(read(v, k, cfg.accel));
    else if (k == "qemu") CORRAL_TRY(read(v, k, cfg.qemuBinary));
    else if (k == "log_level") CORRAL_TRY(read(v, k, cfg.logLevel));
    else if (k == "log_format") CORRAL_TRY(read(v, k, cfg.logFormat));
    else if (k == "reports_keep") CORRAL_TRY(read(v, k, cfg.reportsKeep));
    else if (k == "operations_keep_days") CORRAL_TRY(read(v, k, cfg.operationsKeepDays));
    else if (k == "stop_timeout") CORRAL_TRY(read(v, k, cfg.stopTimeoutSeconds));
    else if (k == "max_stop_timeout") CORRAL_TRY(read(v, k, cfg.maxStopTimeoutSeconds));
    else if (k == "api_threads") CORRAL_TRY(read(v, k, cfg.apiThreads));
    else if (k == "io_threads") CORRAL_TRY(read(v, k, cfg.ioThreads));
    else if (k == "operation_threads") CORRAL_TRY(read(v, k, cfg.operationThreads));
    else if (k == "db") CORRAL_TRY(read(v, k, cfg.db));
    else if (k == "db_connections") CORRAL_TRY(read(v, k, cfg.dbConnections));
    else if (k == "listen") CORRAL_TRY(read(v, k, cfg.listen));
    else if (k == "tls_cert") CORRAL_TRY(read(v, k, cfg.tlsCert));
    else if (k == "tls_key") CORRAL_TRY(read(v, k, cfg.tlsKey));
    else if (k == "tls_client_ca") CORRAL_TRY(read(v, k, cfg.tlsClientCa));
    else if (k == "client_cert_login") CORRAL_TRY(read(v, k, cfg.clientCertLogin));
    else if (k == "trusted_proxies") CORRAL_TRY(read(v, k, cfg.trustedProxies));
    else if (k == "proxy_header") CORRAL_TRY(read(v, k, cfg.proxyHeader));
    else if (k == "allowed_origins") CORRAL_TRY(read(v, k, cfg.allowedOrigins));
    else if (k == "quota_defaults") CORRAL_TRY(readQuota(v, cfg.quotaDefaults));
    else if (k == "pools") CORRAL_TRY(readPools(v, cfg.storage.pools));
    else if (k == "default_pool") CORRAL_TRY(read(v, k, cfg.storage.defaultPool));
    else if (k == "qemu_img") CORRAL_TRY(read(v, k, cfg.storage.qemuImg));
    else if (k == "max_upload_bytes") CORRAL_TRY(read(v, k, cfg.maxUploadBytes));
    else if (k == "network_hook") CORRAL_TRY(read(v, k, cfg.network.hookScript));
    else if (k == "vhost_net") CORRAL_TRY(read(v, k, cfg.network.vhostNet));
    else if (k == "default_network") CORRAL_TRY(read(v, k, cfg.network.defaultNetwork));
    else if (k == "guest_gid") CORRAL_TRY(read(v, k, cfg.network.guestGid));
    else if (k == "forward_ports") {
      std::string text;
      CORRAL_TRY(read(v, k, text));
      CORRAL_TRY(core::parseForwardPorts(text, cfg.network));
    }
    else if (k == "console_token_ttl") CORRAL_TRY(read(v, k, cfg.consoleTokenTtlSeconds));
    else if (k == "console_history_bytes") CORRAL_TRY(read(v, k, cfg.consoleHistoryBytes));
    else return Error::invalidInput(k, v.dump(), fmt::format("unknown setting in {}", path));
  }
  return ok();
}

nlohmann::json toJson(const Config& c) {
  json pools = json::array({{{"name", "default"}, {"kind", "dir"}, {"path", "<state_dir>/images"}}});
  for (const auto& p : c.storage.pools)
    pools.push_back({{"name", p.name}, {"kind", p.kind}, {p.kind == "lvm" ? "vg" : "path", p.kind == "lvm" ? p.vg : p.path}});
  json quota = json::object();
  for (const auto& k : core::quotaKeys()) quota[std::string(k.key)] = c.quotaDefaults.*(k.limit);
  // Secrets: the database URL's password is masked; key files are named, never read.
  return {
      {"config", c.configFile.empty() ? "-" : c.configFile},
      {"state_dir", c.stateDir},
      {"accel", c.accel},
      {"qemu", c.qemuBinary},
      {"log_level", c.logLevel},
      {"log_format", c.logFormat},
      {"stop_timeout", c.stopTimeoutSeconds},
      {"max_stop_timeout", c.maxStopTimeoutSeconds},
      {"api_threads", c.apiThreads},
      {"io_threads", c.ioThreads},
      {"operation_threads", c.operationThreads},
      {"db", c.db.empty() ? "sqlite:<state_dir>/corral.db" : util::maskUrlPassword(c.db)},
      {"db_connections", c.dbConnections},
      {"listen", c.listen.empty() ? "-" : c.listen},
      {"tls_cert", c.tlsCert.empty() ? "-" : c.tlsCert},
      {"tls_key", c.tlsKey.empty() ? "-" : c.tlsKey},
      {"tls_client_ca", c.tlsClientCa.empty() ? "-" : c.tlsClientCa},
      {"client_cert_login", c.clientCertLogin},
      {"trusted_proxies", c.trustedProxies},
      {"proxy_header", c.proxyHeader},
      {"allowed_origins", c.allowedOrigins},
      {"quota_defaults", quota},
      {"pools", pools},
      {"default_pool", c.storage.defaultPool},
      {"qemu_img", c.storage.qemuImg},
      {"max_upload_bytes", c.maxUploadBytes},
      {"network_hook", c.network.hookScript.empty() ? "-" : c.network.hookScript},
      {"vhost_net", c.network.vhostNet},
      {"default_network", c.network.defaultNetwork.empty() ? "-" : c.network.defaultNetwork},
      {"guest_gid", c.network.guestGid},
      {"forward_ports", fmt::format("{}-{}", c.network.forwardPortMin, c.network.forwardPortMax)},
      {"console_token_ttl", c.consoleTokenTtlSeconds},
      {"console_history_bytes", c.consoleHistoryBytes},
      {"console_token_key", "<state_dir>/keys/console.key"},
      {"reports_keep", c.reportsKeep},
      {"operations_keep_days", c.operationsKeepDays},
  };
}

std::vector<std::string> describe(const Config& c) {
  std::vector<std::string> out;
  const nlohmann::json settings = toJson(c);
  for (const auto& [k, v] : settings.items())
    out.push_back(fmt::format("{}={}", k, v.is_string() ? v.get<std::string>() : v.dump()));
  return out;
}

}  // namespace corral::daemon
