// QEMU capability probe over QMP, with a per-binary JSON cache; see probe.h.
#include "qemu/probe.h"

#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <thread>

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>

#include "qemu/qmp_transport.h"
#include "util/command.h"
#include "util/qemu_escape.h"

namespace corral::qemu {

namespace {

using Json = nlohmann::json;
using Ms = std::chrono::milliseconds;
constexpr int kCacheVersion = 1;

bool contains(const std::vector<std::string>& v, std::string_view s) {
  return std::find(v.begin(), v.end(), s) != v.end();
}

Result<BinaryIdentity> statBinary(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0 || !S_ISREG(st.st_mode) || ::access(path.c_str(), X_OK) != 0) {
    return Error::notFound(fmt::format("{}: not an executable file", path));
  }
  BinaryIdentity id;
  id.path = path;
  id.size = static_cast<uint64_t>(st.st_size);
  id.mtimeNs = static_cast<int64_t>(st.st_mtim.tv_sec) * 1000000000 + st.st_mtim.tv_nsec;
  return id;
}

// A temporary directory for the QMP socket: short, so the path fits sun_path.
class ScratchDir {
 public:
  ScratchDir() {
    char tmpl[] = "/tmp/corral-probe.XXXXXX";
    if (::mkdtemp(tmpl) != nullptr) path_ = tmpl;
  }
  ~ScratchDir() {
    std::error_code ec;
    if (!path_.empty()) std::filesystem::remove_all(path_, ec);
  }
  ScratchDir(const ScratchDir&) = delete;
  ScratchDir& operator=(const ScratchDir&) = delete;
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

// Runs an io_context on its own thread for as long as it lives; the transport's
// synchronous calls need a thread other than theirs running it.
class IoThread {
 public:
  IoThread() : guard_(io_.get_executor()), thread_([this] { io_.run(); }) {}
  ~IoThread() {
    guard_.reset();
    io_.stop();
    thread_.join();
  }
  boost::asio::io_context& io() { return io_; }

 private:
  boost::asio::io_context io_;
  boost::asio::executor_work_guard<boost::asio::io_context::executor_type> guard_;
  std::thread thread_;
};

}  // namespace

Result<BinaryIdentity> identifyBinary(const std::string& program) {
  if (program.empty()) return Error::notFound("empty program name");
  if (program.find('/') != std::string::npos) {
    std::error_code ec;
    auto abs = std::filesystem::absolute(program, ec);
    return statBinary(ec ? program : abs.string());
  }
  const char* path = ::getenv("PATH");
  std::string_view dirs = path ? path : "/usr/local/bin:/usr/bin:/bin";
  while (true) {
    auto colon = dirs.find(':');
    std::string dir(dirs.substr(0, colon));
    if (!dir.empty()) {
      auto id = statBinary(dir + "/" + program);
      if (id.ok()) return id;
    }
    if (colon == std::string_view::npos) break;
    dirs.remove_prefix(colon + 1);
  }
  return Error::notFound(fmt::format("{}: not found in PATH", program));
}

bool QemuCaps::hasMachine(std::string_view nameOrAlias) const {
  return std::any_of(machines.begin(), machines.end(),
                     [&](const MachineType& m) { return m.name == nameOrAlias || m.alias == nameOrAlias; });
}
bool QemuCaps::hasCpuModel(std::string_view name) const { return contains(cpuModels, name); }
bool QemuCaps::hasDevice(std::string_view name) const { return contains(devices, name); }
bool QemuCaps::hasAccel(std::string_view name) const { return contains(accels, name); }

Json capsToJson(const QemuCaps& caps) {
  Json machines = Json::array();
  for (const auto& m : caps.machines) {
    machines.push_back({{"name", m.name},
                        {"alias", m.alias},
                        {"default", m.isDefault},
                        {"deprecated", m.deprecated},
                        {"cpuMax", m.cpuMax}});
  }
  return Json{{"version", kCacheVersion},
              {"binary", {{"path", caps.binary.path}, {"size", caps.binary.size}, {"mtimeNs", caps.binary.mtimeNs}}},
              {"qemu",
               {{"major", caps.version.major},
                {"minor", caps.version.minor},
                {"micro", caps.version.micro},
                {"package", caps.version.package}}},
              {"machines", machines},
              {"defaultMachine", caps.defaultMachine},
              {"cpuModels", caps.cpuModels},
              {"devices", caps.devices},
              {"accels", caps.accels}};
}

Result<QemuCaps> capsFromJson(const Json& j) {
  // nlohmann throws on a wrong type; a damaged cache file must be an error value.
  try {
    if (!j.is_object() || j.value("version", 0) != kCacheVersion) {
      return Error::invalidInput("caps", "", "not a capability cache of this version");
    }
    QemuCaps c;
    const Json& b = j.at("binary");
    c.binary.path = b.at("path").get<std::string>();
    c.binary.size = b.at("size").get<uint64_t>();
    c.binary.mtimeNs = b.at("mtimeNs").get<int64_t>();
    const Json& q = j.at("qemu");
    c.version.major = q.at("major").get<int>();
    c.version.minor = q.at("minor").get<int>();
    c.version.micro = q.at("micro").get<int>();
    c.version.package = q.at("package").get<std::string>();
    for (const Json& m : j.at("machines")) {
      c.machines.push_back(MachineType{m.at("name").get<std::string>(), m.at("alias").get<std::string>(),
                                       m.at("default").get<bool>(), m.at("deprecated").get<bool>(),
                                       m.at("cpuMax").get<int>()});
    }
    c.defaultMachine = j.at("defaultMachine").get<std::string>();
    c.cpuModels = j.at("cpuModels").get<std::vector<std::string>>();
    c.devices = j.at("devices").get<std::vector<std::string>>();
    c.accels = j.at("accels").get<std::vector<std::string>>();
    return c;
  } catch (const Json::exception& e) {
    return Error::invalidInput("caps", "", e.what());
  }
}

std::string Probe::cachePath(const BinaryIdentity& binary) const {
  std::string name = binary.path;
  std::replace(name.begin(), name.end(), '/', '_');
  return (std::filesystem::path(options_.cacheDir) / ("qemu-caps" + name + ".json")).string();
}

Result<QemuCaps> Probe::capabilities(const std::string& binaryName) {
  const BinaryIdentity binary = CORRAL_TRY(identifyBinary(binaryName));
  if (!options_.cacheDir.empty()) {
    std::ifstream in(cachePath(binary));
    if (in) {
      Json j = Json::parse(in, nullptr, /*allow_exceptions=*/false);
      auto cached = capsFromJson(j);
      // A changed binary (upgrade, rebuild) is probed again.
      if (cached.ok() && cached->binary == binary) {
        cached->fromCache = true;
        return cached;
      }
    }
  }
  QemuCaps caps = CORRAL_TRY(run(binary));
  if (!options_.cacheDir.empty()) {
    std::error_code ec;
    std::filesystem::create_directories(options_.cacheDir, ec);
    const std::string path = cachePath(binary);
    const std::string tmp = path + ".tmp";
    {
      std::ofstream out(tmp, std::ios::trunc);
      out << capsToJson(caps).dump(1) << '\n';
      if (!out.good()) return errorf(ErrorCode::Internal, "write {}", tmp);
    }
    std::filesystem::rename(tmp, path, ec);
    if (ec) return errorf(ErrorCode::Internal, "rename {}: {}", tmp, ec.message());
  }
  return caps;
}

Result<QemuCaps> Probe::run(const BinaryIdentity& binary) {
  ScratchDir dir;
  if (dir.path().empty()) return errorf(ErrorCode::Internal, "mkdtemp: {}", std::strerror(errno));
  const std::string sock = dir.path() + "/qmp.sock";
  const auto deadline = std::chrono::steady_clock::now() + options_.timeout;

  util::Command cmd(binary.path);
  cmd.args({"-machine", "none", "-S", "-nodefaults", "-no-user-config", "-display", "none", "-sandbox",
            "on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny", "-chardev"})
      .arg("socket,id=qmp,path=" + util::escapeOptionValue(sock) + ",server=on,wait=off")
      .args({"-mon", "chardev=qmp,mode=control"})
      .stderrToBuffer();
  CORRAL_TRY(cmd.start());

  auto fail = [&](const Error& e) -> Error {
    (void)cmd.abort(Ms(1000));
    std::string err = cmd.err();
    if (err.size() > 300) err = err.substr(err.size() - 300);
    return e.context(fmt::format("probe {}{}{}", binary.path, err.empty() ? "" : ": ", err));
  };

  // Wait for the socket, noticing at once if QEMU exits instead.
  while (!std::filesystem::exists(sock)) {
    if (std::chrono::steady_clock::now() >= deadline) return fail(Error::timeout("QMP socket did not appear"));
    auto st = cmd.wait(Ms(10));
    if (st.ok()) return fail(errorf(ErrorCode::Unavailable, "QEMU {} before answering", st->describe()));
    if (st.error().code != ErrorCode::Timeout) return fail(st.error());
  }

  QemuCaps caps;
  caps.binary = binary;
  {
    IoThread io;
    auto left = [&] {
      return std::max(Ms(1), std::chrono::duration_cast<Ms>(deadline - std::chrono::steady_clock::now()));
    };
    // The socket file exists a moment before QEMU listens on it: a refused
    // connect is retried until the deadline, or until QEMU exits.
    std::shared_ptr<QmpTransport> transport;
    for (;;) {
      transport = QmpTransport::create(io.io());
      auto g = transport->connectSync(sock, left());
      if (g.ok()) break;
      if (g.error().kind != QmpError::Kind::Disconnected || std::chrono::steady_clock::now() >= deadline)
        return fail(g.error());
      auto st = cmd.wait(Ms(10));
      if (st.ok()) return fail(errorf(ErrorCode::Unavailable, "QEMU {} before answering", st->describe()));
    }
    Monitor mon(transport, left());
    Result<QemuVersion> version = mon.queryVersion();
    if (!version.ok()) return fail(version.error());
    caps.version = *version;
    Result<std::vector<MachineType>> machines = mon.queryMachines();
    if (!machines.ok()) return fail(machines.error());
    caps.machines = std::move(*machines);
    for (const auto& m : caps.machines)
      if (m.isDefault) caps.defaultMachine = m.name;
    Result<std::vector<std::string>> cpus = mon.queryCpuDefinitions();
    if (!cpus.ok()) return fail(cpus.error());
    caps.cpuModels = std::move(*cpus);
    Result<std::vector<std::string>> devices = mon.qomListTypes("device");
    if (!devices.ok()) return fail(devices.error());
    caps.devices = std::move(*devices);
    Result<std::vector<std::string>> accels = mon.queryAccels();
    if (!accels.ok()) return fail(accels.error());
    caps.accels = std::move(*accels);
    (void)mon.quit();
    transport->close();
  }
  std::sort(caps.cpuModels.begin(), caps.cpuModels.end());
  std::sort(caps.devices.begin(), caps.devices.end());
  std::sort(caps.accels.begin(), caps.accels.end());
  std::sort(caps.machines.begin(), caps.machines.end(),
            [](const MachineType& a, const MachineType& b) { return a.name < b.name; });

  auto st = cmd.wait(Ms(5000));
  if (!st.ok()) (void)cmd.abort(Ms(1000));
  return caps;
}

}  // namespace corral::qemu
