// See cloud_init.h.
#include "host/cloud_init.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "util/command.h"
#include "util/crypto.h"
#include "util/unique_fd.h"

namespace corral::host {

namespace fs = std::filesystem;

namespace {

// Bumped whenever the files or the way the ISO is made change, so that seeds
// written by an older corral are rebuilt once.
constexpr std::string_view kSeedFormat = "corral-seed-v1";
constexpr auto kXorrisoTimeout = std::chrono::seconds(60);

// A YAML scalar that is exactly s: a JSON string, all ASCII (\uXXXX escapes;
// invalid UTF-8 becomes U+FFFD) so that no byte of s reaches the YAML reader raw.
std::string q(const std::string& s) {
  return nlohmann::json(s).dump(-1, ' ', true, nlohmann::json::error_handler_t::replace);
}

std::string lower(std::string s) {
  for (char& c : s)
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  return s;
}

// "<indent>key:\n<indent>  - "a"\n..." for a non-empty list.
void appendList(std::string& out, std::string_view indent, std::string_view key,
                const std::vector<std::string>& items) {
  out += fmt::format("{}{}:\n", indent, key);
  for (const auto& item : items) out += fmt::format("{}  - {}\n", indent, q(item));
}

Error sysError(std::string_view what, const std::string& path, int err) {
  return Error::internal(fmt::format("{} {}: {}", what, path, std::strerror(err)));
}

Result<void> writeFile(const std::string& path, std::string_view data) {
  util::UniqueFd fd(::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644));
  if (!fd) return sysError("create", path, errno);
  while (!data.empty()) {
    ssize_t n = ::write(fd.get(), data.data(), data.size());
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return sysError("write", path, errno);
    data.remove_prefix(static_cast<size_t>(n));
  }
  if (::fchmod(fd.get(), 0644) != 0) return sysError("chmod", path, errno);  // whatever the umask
  if (::fsync(fd.get()) != 0) return sysError("fsync", path, errno);
  return ok();
}

std::string readSmallFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::string s(std::istreambuf_iterator<char>(in), {});
  return s.size() > 256 ? std::string() : s;
}

// The private work directory beside the seed, removed with everything in it
// however writeSeedIso ends.
class WorkDir {
 public:
  static Result<WorkDir> create(const std::string& beside) {
    std::string tmpl = beside + ".tmp-XXXXXX";
    if (::mkdtemp(tmpl.data()) == nullptr) return sysError("mkdtemp", tmpl, errno);
    return WorkDir(tmpl);
  }
  WorkDir(WorkDir&& o) noexcept : path_(std::move(o.path_)) { o.path_.clear(); }
  WorkDir& operator=(WorkDir&&) = delete;
  WorkDir(const WorkDir&) = delete;
  ~WorkDir() {
    std::error_code ec;
    if (!path_.empty()) fs::remove_all(path_, ec);
  }
  const std::string& path() const { return path_; }

 private:
  explicit WorkDir(std::string p) : path_(std::move(p)) {}
  std::string path_;
};

Result<void> validate(const SeedConfig& cfg) {
  if (cfg.instanceId.empty()) return Error::invalidInput("instance_id", "", "is required");
  if (cfg.hostname.empty()) return Error::invalidInput("hostname", "", "is required");
  for (size_t i = 0; i < cfg.nics.size(); ++i)
    if (cfg.nics[i].mac.empty()) return Error::invalidInput(fmt::format("nics[{}].mac", i), "", "is required");
  return ok();
}

}  // namespace

std::string renderMetaData(const SeedConfig& cfg) {
  return fmt::format("instance-id: {}\nlocal-hostname: {}\n", q(cfg.instanceId), q(cfg.hostname));
}

std::string renderUserData(const SeedConfig& cfg) {
  std::string out = "#cloud-config\n";
  out += fmt::format("hostname: {}\n", q(cfg.hostname));
  if (!cfg.fqdn.empty()) out += fmt::format("fqdn: {}\n", q(cfg.fqdn));
  out += "manage_etc_hosts: true\n";
  if (cfg.sshKeys.empty())
    out += "ssh_authorized_keys: []\n";
  else
    appendList(out, "", "ssh_authorized_keys", cfg.sshKeys);
  return out;
}

std::string renderNetworkConfig(const SeedConfig& cfg) {
  std::string out = "version: 2\n";
  if (cfg.nics.empty()) return out + "ethernets: {}\n";
  out += "ethernets:\n";
  for (size_t i = 0; i < cfg.nics.size(); ++i) {
    const SeedNic& nic = cfg.nics[i];
    out += fmt::format("  {}:\n", q(nic.name.empty() ? fmt::format("nic{}", i) : nic.name));
    out += fmt::format("    match:\n      macaddress: {}\n", q(lower(nic.mac)));
    if (nic.address.empty()) {
      out += "    dhcp4: true\n";
    } else {
      out += "    dhcp4: false\n";
      appendList(out, "    ", "addresses", {nic.address});
      if (!nic.gateway.empty())
        out += fmt::format("    routes:\n      - to: \"0.0.0.0/0\"\n        via: {}\n", q(nic.gateway));
    }
    if (!nic.dns.empty() || !nic.search.empty()) {
      out += "    nameservers:\n";
      if (!nic.dns.empty()) appendList(out, "      ", "addresses", nic.dns);
      if (!nic.search.empty()) appendList(out, "      ", "search", nic.search);
    }
  }
  return out;
}

Result<bool> writeSeedIso(const SeedConfig& cfg, const std::string& path) {
  CORRAL_TRY(validate(cfg));
  if (path.empty()) return Error::internal("writeSeedIso: no path");
  const std::string meta = renderMetaData(cfg);
  const std::string user = renderUserData(cfg);
  const std::string network = renderNetworkConfig(cfg);

  // Each part length-prefixed, so that no two different seeds hash alike.
  std::string hashed(kSeedFormat);
  for (const std::string* part : {&meta, &user, &network}) hashed += fmt::format("\n{}\n{}", part->size(), *part);
  const std::string digest = util::sha256Hex(hashed) + "\n";
  const std::string digestPath = path + ".digest";

  struct stat st {};
  if (::lstat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode) && readSmallFile(digestPath) == digest) return false;

  WorkDir work = CORRAL_TRY(WorkDir::create(path));
  const std::string files = work.path() + "/files";
  if (::mkdir(files.c_str(), 0755) != 0) return sysError("mkdir", files, errno);
  CORRAL_TRY(writeFile(files + "/meta-data", meta));
  CORRAL_TRY(writeFile(files + "/user-data", user));
  CORRAL_TRY(writeFile(files + "/network-config", network));

  const std::string iso = work.path() + "/seed.iso";
  util::Command cmd("xorriso");
  cmd.args({"-as", "genisoimage", "-quiet", "-output"}).arg(iso);
  cmd.args({"-volid", "cidata", "-joliet", "-rock"}).arg(files);
  cmd.umask(0022).timeout(kXorrisoTimeout).stdoutToBuffer().stderrToBuffer();
  auto made = cmd.run();
  if (!made.ok()) return made.error().context(fmt::format("make the cloud-init seed {}", path));
  {
    util::UniqueFd isoFd(::open(iso.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC));
    if (!isoFd) return sysError("open", iso, errno);
    if (::fchmod(isoFd.get(), 0644) != 0) return sysError("chmod", iso, errno);
    if (::fsync(isoFd.get()) != 0) return sysError("fsync", iso, errno);  // before it replaces the old seed
  }

  const std::string digestTmp = work.path() + "/digest";
  CORRAL_TRY(writeFile(digestTmp, digest));
  // The old digest goes first: were we stopped between the renames, a digest
  // left beside the new ISO must not claim it holds the old content.
  if (::unlink(digestPath.c_str()) != 0 && errno != ENOENT) return sysError("unlink", digestPath, errno);
  if (::rename(iso.c_str(), path.c_str()) != 0) return sysError("rename", path, errno);
  if (::rename(digestTmp.c_str(), digestPath.c_str()) != 0) return sysError("rename", digestPath, errno);
  util::UniqueFd dir(::open(fs::path(path).parent_path().c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (dir) ::fsync(dir.get());
  return true;
}

}  // namespace corral::host
