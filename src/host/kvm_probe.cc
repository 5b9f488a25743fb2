// KVM usability verdict from a real probe guest; see kvm_probe.h.
#include "host/kvm_probe.h"

#include <fcntl.h>
#include <stdlib.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "qemu/probe.h"
#include "util/command.h"

namespace corral::host {

namespace {

using Json = nlohmann::json;
constexpr int kCacheVersion = 1;
constexpr int kProbeExitValue = 0x31;
// isa-debug-exit makes QEMU exit with (value << 1) | 1.
constexpr int kProbeExitStatus = (kProbeExitValue << 1) | 1;
constexpr unsigned kProbeIterations = 0x800000;  // 8 Mi stores: ~10 ms on KVM, ~100 ms on TCG

std::string readSmallFile(const std::string& path) {
  std::ifstream in(path);
  std::string s;
  std::getline(in, s);
  return s;
}

std::string kernelRelease() {
  struct utsname u {};
  if (::uname(&u) != 0) return {};
  return u.release;
}

// Temporary directory removed when the object dies.
class ScratchDir {
 public:
  static Result<ScratchDir> make() {
    char tmpl[] = "/tmp/corral-kvm.XXXXXX";
    if (::mkdtemp(tmpl) == nullptr) return errorf(ErrorCode::Internal, "mkdtemp: {}", std::strerror(errno));
    return ScratchDir(tmpl);
  }
  ScratchDir(ScratchDir&& o) noexcept : path_(std::move(o.path_)) { o.path_.clear(); }
  ScratchDir& operator=(ScratchDir&&) = delete;
  ~ScratchDir() {
    if (path_.empty()) return;
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  const std::string& path() const { return path_; }

 private:
  explicit ScratchDir(std::string p) : path_(std::move(p)) {}
  std::string path_;
};

Json cacheKey(const qemu::BinaryIdentity& binary, const KvmProbeOptions& options) {
  return Json{{"version", kCacheVersion},
              {"binary", binary.path},
              {"size", binary.size},
              {"mtimeNs", binary.mtimeNs},
              {"kernel", kernelRelease()},
              {"bootId", readSmallFile("/proc/sys/kernel/random/boot_id")},
              {"kvmDevice", options.kvmDevice},
              {"deadlineMs", options.deadline.count()}};
}

std::string cachePath(const KvmProbeOptions& options) {
  return (std::filesystem::path(options.cacheDir) / "kvm-verdict.json").string();
}

std::optional<AccelVerdict> readCache(const KvmProbeOptions& options, const Json& key) {
  std::ifstream in(cachePath(options));
  if (!in) return std::nullopt;
  Json j = Json::parse(in, nullptr, /*allow_exceptions=*/false);
  if (!j.is_object() || !j.contains("key") || j["key"] != key || !j.contains("accel") ||
      !j["accel"].is_string() || !j.contains("reason") || !j["reason"].is_string()) {
    return std::nullopt;
  }
  AccelVerdict v;
  v.accel = j["accel"].get<std::string>() == "kvm" ? qemu::Accel::Kvm : qemu::Accel::Tcg;
  v.reason = j["reason"].get<std::string>();
  v.fromCache = true;
  return v;
}

Result<void> writeCache(const KvmProbeOptions& options, const Json& key, const AccelVerdict& v) {
  std::error_code ec;
  std::filesystem::create_directories(options.cacheDir, ec);
  if (ec) return errorf(ErrorCode::Internal, "create {}: {}", options.cacheDir, ec.message());
  Json j{{"key", key}, {"accel", v.accel == qemu::Accel::Kvm ? "kvm" : "tcg"}, {"reason", v.reason}};
  const std::string path = cachePath(options);
  const std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::trunc);
    out << j.dump(2) << '\n';
    if (!out.good()) return errorf(ErrorCode::Internal, "write {}", tmp);
  }
  std::filesystem::rename(tmp, path, ec);  // atomic: readers see the old or the new file
  if (ec) return errorf(ErrorCode::Internal, "rename {}: {}", tmp, ec.message());
  return ok();
}

}  // namespace

std::string probeFirmwareImage() {
  // Filled with hlt so that a stray jump stops rather than runs garbage.
  std::string image(64 * 1024, '\xf4');
  const unsigned n = kProbeIterations;
  // At F000:0000 (offset 0 of the image, mapped below 1 MiB), 16-bit code:
  const unsigned char code[] = {
      0x66, 0xBA, static_cast<unsigned char>(n), static_cast<unsigned char>(n >> 8),
      static_cast<unsigned char>(n >> 16), static_cast<unsigned char>(n >> 24),  //    mov edx, n
      0x88, 0x16, 0x00, 0x70,                                                     // 1: mov [0x7000], dl
      0x66, 0x4A,                                                                 //    dec edx
      0x75, 0xF8,                                                                 //    jnz 1b
      0xB0, kProbeExitValue,                                                      //    mov al, 0x31
      0xE6, 0xF4,                                                                 //    out 0xf4, al
      0xF4,                                                                       // 2: hlt
      0xEB, 0xFD,                                                                 //    jmp 2b
  };
  image.replace(0, sizeof(code), reinterpret_cast<const char*>(code), sizeof(code));
  // The reset vector (FFFF:0000 = the last 16 bytes): jmp far F000:0000.
  const unsigned char reset[] = {0xEA, 0x00, 0x00, 0x00, 0xF0};
  image.replace(image.size() - 16, sizeof(reset), reinterpret_cast<const char*>(reset), sizeof(reset));
  return image;
}

Result<void> runProbeGuest(const std::string& qemuBinary, qemu::Accel accel, std::chrono::milliseconds deadline,
                           const std::string& workDir) {
  const std::string firmware = (std::filesystem::path(workDir) / "kvm-probe.bin").string();
  {
    std::ofstream out(firmware, std::ios::binary | std::ios::trunc);
    out << probeFirmwareImage();
    if (!out.good()) return errorf(ErrorCode::Internal, "write {}", firmware);
  }
  util::Command cmd(qemuBinary);
  // -bios is taken verbatim by QEMU; the path is ours (mkdtemp) anyway.
  cmd.args({"-accel", accel == qemu::Accel::Kvm ? "kvm" : "tcg", "-machine", "pc", "-m", "16", "-nodefaults",
            "-no-user-config", "-display", "none", "-sandbox",
            "on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny", "-device",
            "isa-debug-exit,iobase=0xf4,iosize=0x01", "-bios"})
      .arg(firmware);
  cmd.stderrToBuffer().allowFailureStatus().timeout(deadline);
  auto r = cmd.run();
  if (!r.ok()) return std::move(r).error();
  if (r->status.signal == 0 && r->status.exitCode == kProbeExitStatus) return ok();
  std::string err = r->err;
  if (err.size() > 300) err = err.substr(err.size() - 300);
  while (!err.empty() && (err.back() == '\n' || err.back() == ' ')) err.pop_back();
  return errorf(ErrorCode::Unavailable, "probe guest {}: {}", r->status.describe(), err);
}

Result<AccelVerdict> probeAccel(const KvmProbeOptions& options) {
  {
    int fd = ::open(options.kvmDevice.c_str(), O_RDWR | O_CLOEXEC);
    if (fd < 0) {
      return AccelVerdict{qemu::Accel::Tcg, fmt::format("cannot open {}: {}", options.kvmDevice, std::strerror(errno))};
    }
    ::close(fd);
  }
  auto binary = qemu::identifyBinary(options.qemuBinary);
  if (!binary.ok()) return AccelVerdict{qemu::Accel::Tcg, binary.error().message};
  const Json key = cacheKey(*binary, options);
  if (!options.cacheDir.empty()) {
    if (auto cached = readCache(options, key)) return *cached;
  }

  auto scratch = CORRAL_TRY(ScratchDir::make());
  AccelVerdict verdict;
  auto run = runProbeGuest(binary->path, qemu::Accel::Kvm, options.deadline, scratch.path());
  if (run.ok()) {
    verdict = {qemu::Accel::Kvm, fmt::format("KVM probe guest finished within {} ms", options.deadline.count())};
  } else if (run.error().code == ErrorCode::Timeout) {
    verdict = {qemu::Accel::Tcg,
               fmt::format("KVM is present but too slow or stuck: the probe guest ({} Mi memory stores) did not "
                           "finish within {} ms",
                           kProbeIterations >> 20, options.deadline.count())};
  } else {
    verdict = {qemu::Accel::Tcg, fmt::format("KVM probe guest failed: {}", run.error().message)};
  }
  if (!options.cacheDir.empty()) CORRAL_TRY(writeCache(options, key, verdict));
  return verdict;
}

}  // namespace corral::host
