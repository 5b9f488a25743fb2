// Runtime record JSON and its atomic file; see runtime_record.h.
#include "qemu/runtime_record.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

namespace corral::qemu {

using nlohmann::json;

nlohmann::json RuntimeRecord::toJson() const {
  return json{
      {"version", kVersion},
      {"argv", argv},
      {"pid", pid},
      {"start_time", startTime},
      {"paths",
       {{"qmp", paths.qmpSocket},
        {"serial", paths.serialSocket},
        {"vnc", paths.vncSocket},
        {"pidfile", paths.pidfile},
        {"console_log", consoleLog},
        {"qemu_log", qemuLog}}},
      {"console_log_max_bytes", consoleLogMaxBytes},
      {"accel", accel},
      {"spec", {{"name", name}, {"uuid", uuid}, {"memory_mib", memoryMib}, {"cpus", cpus}, {"machine", machineType}}},
      {"launch_time", launchTimeUnix},
      {"metadata", metadata},
  };
}

Result<RuntimeRecord> RuntimeRecord::fromJson(const nlohmann::json& j) {
  try {
    RuntimeRecord r;
    if (!j.is_object()) return Error::invalidInput("record", "", "not a JSON object");
    int version = j.value("version", 0);
    if (version < 1) return Error::invalidInput("version", std::to_string(version), "unknown record version");
    r.argv = j.at("argv").get<std::vector<std::string>>();
    r.pid = j.at("pid").get<pid_t>();
    r.startTime = j.at("start_time").get<uint64_t>();
    const auto& p = j.at("paths");
    r.paths.qmpSocket = p.at("qmp").get<std::string>();
    r.paths.serialSocket = p.value("serial", "");
    r.paths.vncSocket = p.value("vnc", "");
    r.paths.pidfile = p.value("pidfile", "");
    r.consoleLog = p.value("console_log", "");
    r.qemuLog = p.value("qemu_log", "");
    r.consoleLogMaxBytes = j.value("console_log_max_bytes", size_t{0});
    r.accel = j.value("accel", "");
    if (j.contains("spec")) {
      const auto& s = j.at("spec");
      r.name = s.value("name", "");
      r.uuid = s.value("uuid", "");
      r.memoryMib = s.value("memory_mib", uint64_t{0});
      r.cpus = s.value("cpus", 0u);
      r.machineType = s.value("machine", "");
    }
    r.launchTimeUnix = j.value("launch_time", int64_t{0});
    if (j.contains("metadata")) r.metadata = j.at("metadata");
    if (r.pid <= 0) return Error::invalidInput("pid", std::to_string(r.pid), "not a process id");
    return r;
  } catch (const json::exception& e) {
    return Error::invalidInput("record", "", e.what());
  }
}

void RuntimeRecord::summarize(const VmSpec& spec) {
  accel = spec.accel == Accel::Kvm ? "kvm" : "tcg";
  name = spec.name;
  uuid = spec.uuid;
  memoryMib = spec.memoryMib;
  cpus = spec.cpus.count;
  machineType = spec.machine;
}

std::string RuntimeRecord::pathIn(const std::string& runtimeDir) { return runtimeDir + "/" + kFileName; }

Result<void> RuntimeRecord::write(const std::string& runtimeDir) const {
  std::string path = pathIn(runtimeDir);
  std::string tmp = path + ".tmp";
  std::string text = toJson().dump(2) + "\n";
  ::unlink(tmp.c_str());  // a leftover from a crash mid-write
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0) return Error::internal(fmt::format("create {}: {}", tmp, std::strerror(errno)));
  size_t off = 0;
  while (off < text.size()) {
    ssize_t n = ::write(fd, text.data() + off, text.size() - off);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      int err = errno;
      ::close(fd);
      ::unlink(tmp.c_str());
      return Error::internal(fmt::format("write {}: {}", tmp, std::strerror(err)));
    }
    off += static_cast<size_t>(n);
  }
  // fsync before rename so that a crash never leaves an empty record behind a good name.
  if (::fsync(fd) != 0 || ::close(fd) != 0) {
    int err = errno;
    ::unlink(tmp.c_str());
    return Error::internal(fmt::format("sync {}: {}", tmp, std::strerror(err)));
  }
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    int err = errno;
    ::unlink(tmp.c_str());
    return Error::internal(fmt::format("rename {}: {}", path, std::strerror(err)));
  }
  return ok();
}

Result<RuntimeRecord> RuntimeRecord::read(const std::string& runtimeDir) {
  std::string path = pathIn(runtimeDir);
  std::ifstream in(path, std::ios::binary);
  if (!in) return Error::notFound(fmt::format("no runtime record at {}", path));
  std::ostringstream ss;
  ss << in.rdbuf();
  json j = json::parse(ss.str(), nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return Error::invalidInput("record", path, "not valid JSON");
  auto r = fromJson(j);
  if (!r.ok()) return std::move(r).error().context(path);
  return r;
}

}  // namespace corral::qemu
