#include "qemu/monitor.h"

#include <atomic>
#include <chrono>
#include <utility>

#include <fmt/format.h>

namespace corral::qemu {

using Json = nlohmann::json;

namespace {

QmpError badReply(std::string_view command, std::string_view what) {
  return QmpError::protocol(std::string(command), fmt::format("unexpected reply: {}", what));
}

// A list of objects each with a string "name": the shape of several query commands.
QmpResult<std::vector<std::string>> names(std::string_view command, const Json& reply) {
  if (!reply.is_array()) return badReply(command, "not a list");
  std::vector<std::string> out;
  out.reserve(reply.size());
  for (const auto& item : reply) {
    auto n = item.is_object() ? item.find("name") : item.end();
    if (!item.is_object() || n == item.end() || !n->is_string()) return badReply(command, "an entry without a name");
    out.push_back(n->get<std::string>());
  }
  return out;
}

bool boolField(const Json& obj, const char* key, bool& out) {
  auto it = obj.find(key);
  if (it == obj.end() || !it->is_boolean()) return false;
  out = it->get<bool>();
  return true;
}

}  // namespace

namespace {
// Shared, so a command in flight keeps the observer it loaded alive while the
// daemon replaces or removes it.
std::atomic<std::shared_ptr<const Monitor::CommandObserver>> gObserver;
}  // namespace

void Monitor::setCommandObserver(std::shared_ptr<const CommandObserver> observer) {
  gObserver.store(std::move(observer));
}

void Monitor::observeCommand(std::string_view command, double seconds, const QmpError* error) {
  if (auto observer = gObserver.load()) (*observer)(command, seconds, error);
}

Monitor::Monitor(std::shared_ptr<QmpTransport> transport, Millis timeout)
    : transport_(std::move(transport)), timeout_(timeout) {}

QmpResult<Json> Monitor::run(std::string command, Json arguments) {
  auto observer = gObserver.load();
  if (!observer) return transport_->executeSync(std::move(command), std::move(arguments), timeout_);
  auto started = std::chrono::steady_clock::now();
  auto r = transport_->executeSync(command, std::move(arguments), timeout_);
  std::chrono::duration<double> took = std::chrono::steady_clock::now() - started;
  (*observer)(command, took.count(), r.ok() ? nullptr : &r.error());
  return r;
}

QmpResult<void> Monitor::runVoid(std::string command, Json arguments) {
  auto r = run(std::move(command), std::move(arguments));
  if (!r.ok()) return std::move(r).error();
  return {};
}

QmpResult<QemuStatus> Monitor::queryStatus() {
  auto r = run("query-status");
  if (!r.ok()) return std::move(r).error();
  QemuStatus s;
  auto st = r->is_object() ? r->find("status") : r->end();
  if (!r->is_object() || !boolField(*r, "running", s.running) || st == r->end() || !st->is_string()) {
    return badReply("query-status", "no running/status");
  }
  s.status = st->get<std::string>();
  return s;
}

QmpResult<void> Monitor::cont() { return runVoid("cont"); }
QmpResult<void> Monitor::stop() { return runVoid("stop"); }
QmpResult<void> Monitor::systemPowerdown() { return runVoid("system_powerdown"); }
QmpResult<void> Monitor::systemReset() { return runVoid("system_reset"); }

QmpResult<void> Monitor::quit() {
  auto r = runVoid("quit");
  if (!r.ok() && r.error().kind == QmpError::Kind::Disconnected) return {};
  return r;
}

QmpResult<QemuVersion> Monitor::queryVersion() {
  auto r = run("query-version");
  if (!r.ok()) return std::move(r).error();
  auto q = r->is_object() ? r->find("qemu") : r->end();
  if (!r->is_object() || q == r->end() || !q->is_object()) return badReply("query-version", "no qemu");
  QemuVersion v;
  v.major = q->value("major", 0);
  v.minor = q->value("minor", 0);
  v.micro = q->value("micro", 0);
  v.package = r->value("package", std::string());
  return v;
}

QmpResult<std::vector<MachineType>> Monitor::queryMachines() {
  auto r = run("query-machines");
  if (!r.ok()) return std::move(r).error();
  if (!r->is_array()) return badReply("query-machines", "not a list");
  std::vector<MachineType> out;
  out.reserve(r->size());
  for (const auto& m : *r) {
    if (!m.is_object() || !m.contains("name") || !m["name"].is_string()) {
      return badReply("query-machines", "an entry without a name");
    }
    MachineType t;
    t.name = m["name"].get<std::string>();
    t.alias = m.value("alias", std::string());
    t.isDefault = m.value("is-default", false);
    t.deprecated = m.value("deprecated", false);
    t.cpuMax = m.value("cpu-max", 0);
    out.push_back(std::move(t));
  }
  return out;
}

QmpResult<std::vector<std::string>> Monitor::queryCpuDefinitions() {
  auto r = run("query-cpu-definitions");
  if (!r.ok()) return std::move(r).error();
  return names("query-cpu-definitions", *r);
}

QmpResult<std::vector<std::string>> Monitor::qomListTypes(const std::string& implements) {
  auto r = run("qom-list-types", Json{{"implements", implements}, {"abstract", false}});
  if (!r.ok()) return std::move(r).error();
  return names("qom-list-types", *r);
}

QmpResult<KvmInfo> Monitor::queryKvm() {
  auto r = run("query-kvm");
  if (!r.ok()) return std::move(r).error();
  KvmInfo k;
  if (!r->is_object() || !boolField(*r, "present", k.present) || !boolField(*r, "enabled", k.enabled)) {
    return badReply("query-kvm", "no present/enabled");
  }
  return k;
}

QmpResult<std::vector<std::string>> Monitor::queryAccels() {
  auto types = qomListTypes("accel");
  if (!types.ok()) return std::move(types).error();
  // 7.2 lists the abstract base "accel" itself even with abstract=false; only the
  // "<name>-accel" types are accelerators one can pick.
  constexpr std::string_view kSuffix = "-accel";
  std::vector<std::string> out;
  for (const auto& t : *types) {
    if (t.size() > kSuffix.size() && t.ends_with(kSuffix)) out.push_back(t.substr(0, t.size() - kSuffix.size()));
  }
  return out;
}

QmpResult<void> Monitor::balloon(std::int64_t bytes) { return runVoid("balloon", Json{{"value", bytes}}); }

QmpResult<std::int64_t> Monitor::queryBalloon() {
  auto r = run("query-balloon");
  if (!r.ok()) return std::move(r).error();
  auto a = r->is_object() ? r->find("actual") : r->end();
  if (!r->is_object() || a == r->end() || !a->is_number_integer()) return badReply("query-balloon", "no actual");
  return a->get<std::int64_t>();
}

QmpResult<void> Monitor::blockResize(const std::string& node, std::int64_t bytes) {
  return runVoid("block_resize", Json{{"node-name", node}, {"size", bytes}});
}

QmpResult<void> Monitor::changeMedium(const std::string& device, const std::string& path) {
  // format raw: QEMU must not probe a format from the image's bytes (a guest or
  // a user could write any header there). read-only-mode forces a read-only
  // medium whatever the drive had before.
  return runVoid("blockdev-change-medium", Json{{"id", device},
                                                 {"filename", path},
                                                 {"format", "raw"},
                                                 {"read-only-mode", "read-only"}});
}

QmpResult<void> Monitor::ejectMedium(const std::string& device) {
  return runVoid("eject", Json{{"id", device}, {"force", true}});
}

QmpResult<Json> Monitor::waitEvent(std::string name, Json match, Millis timeout) {
  return transport_->waitEventSync(std::move(name), std::move(match), timeout);
}

void Monitor::attachEvents(std::weak_ptr<MonitorEvents> events) {
  transport_->onEvent([events](const Json& event) {
    if (auto sink = events.lock()) dispatchMonitorEvent(event, *sink);
  });
  transport_->onDisconnect([events](const QmpError&) {
    if (auto sink = events.lock()) sink->onDisconnected();
  });
}

}  // namespace corral::qemu
