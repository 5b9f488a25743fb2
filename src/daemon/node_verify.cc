// NodeProbe::verify: the checks behind `corral node verify`. Each looks at the
// host as it is now and says ok or not and why, in words an operator can act on;
// none changes anything. What is a problem and what only a warning:
//
//  - a problem stops corral doing what it is asked (no QEMU, a state dir other
//    users can read, a database behind its schema, a pool nearly full);
//  - a warning is worth knowing but not wrong (TCG instead of KVM, a clock not
//    synchronised, tun/bridge/vhost-net absent while nothing configured needs
//    them: corral's guests use user-mode networking until tap networking lands).
#include <fcntl.h>
#include <fmt/format.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/timex.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <string>

#include "daemon/node.h"
#include "store/migrations.h"
#include "util/command.h"
#include "util/unique_fd.h"

namespace corral::daemon {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

constexpr int64_t kMinFreeBytes = int64_t{1} << 30;  // a pool with less is nearly full
constexpr double kMinFreeFraction = 0.05;

struct Checks {
  json list = json::array();
  int problems = 0;
  int warnings = 0;

  void ok(std::string name, std::string detail) { add(std::move(name), true, false, std::move(detail)); }
  void warn(std::string name, std::string detail) { add(std::move(name), true, true, std::move(detail)); }
  void problem(std::string name, std::string detail) { add(std::move(name), false, false, std::move(detail)); }
  void add(std::string name, bool isOk, bool warning, std::string detail) {
    if (!isOk) ++problems;
    if (warning) ++warnings;
    list.push_back({{"name", std::move(name)}, {"ok", isOk}, {"warning", warning}, {"detail", std::move(detail)}});
  }
};

std::string firstLine(const std::string& s) { return s.substr(0, s.find('\n')); }

// `BINARY --version`'s first line, or why there is none.
Result<std::string> versionOf(const std::string& binary) {
  util::Command c(binary);
  c.arg("--version").stdoutToBuffer().stderrToBuffer().keepEnv({"PATH"}).timeout(std::chrono::seconds(10));
  auto r = CORRAL_TRY(c.run());
  if (!r.status.success())
    return Error::unavailable(fmt::format("{} --version: {}: {}", binary, r.status.describe(), firstLine(r.err)));
  return firstLine(r.out);
}

bool openable(const char* path, int flags) {
  util::UniqueFd fd(::open(path, flags | O_CLOEXEC));
  return fd.get() >= 0;
}

std::string octal(mode_t m) { return fmt::format("{:04o}", m & 07777); }

// A path of the state dir: owned by corrald's uid, and no access for others
// beyond `allowed` (a mask of group/other bits that may be set).
void checkPath(Checks& c, const std::string& name, const fs::path& p, mode_t allowed, bool mustExist) {
  struct stat st {};
  if (::lstat(p.c_str(), &st) != 0) {
    if (mustExist)
      c.problem(name, fmt::format("{}: {}", p.string(), ::strerror(errno)));
    else
      c.ok(name, fmt::format("{}: absent (made when first needed)", p.string()));
    return;
  }
  if (st.st_uid != ::geteuid()) {
    c.problem(name, fmt::format("{} is owned by uid {}, not corrald's uid {}", p.string(), st.st_uid, ::geteuid()));
    return;
  }
  mode_t extra = st.st_mode & 0077 & ~allowed;
  if (extra != 0) {
    c.problem(name,
              fmt::format("{} has mode {}: group/others may {} it; want at most {}", p.string(), octal(st.st_mode),
                          (extra & 0044) ? "read" : "write or enter", octal((st.st_mode & 0700) | allowed)));
    return;
  }
  c.ok(name, fmt::format("{}: mode {}, owner uid {}", p.string(), octal(st.st_mode), st.st_uid));
}

void checkNetworking(Checks& c) {
  // Guests use QEMU's user-mode networking today; tap networking will need these.
  const std::string why = "needed only for tap networking, which no VM uses yet";
  if (openable("/dev/net/tun", O_RDWR))
    c.ok("net.tun", "/dev/net/tun opens");
  else
    c.warn("net.tun", fmt::format("/dev/net/tun does not open ({}); {}", ::strerror(errno), why));
  std::error_code ec;
  std::string release;
  if (struct utsname u{}; ::uname(&u) == 0) release = u.release;
  if (fs::exists("/sys/module/bridge", ec))
    c.ok("net.bridge", "the bridge module is loaded");
  else if (!release.empty() && fs::exists(fmt::format("/lib/modules/{}/kernel/net/bridge", release), ec))
    c.ok("net.bridge", "the bridge module is available (not loaded yet)");
  else
    c.warn("net.bridge",
           fmt::format("no bridge support found (/sys/module/bridge, /lib/modules/{}/kernel/net/bridge); {}", release,
                       why));
  if (openable("/dev/vhost-net", O_RDWR))
    c.ok("net.vhost", "/dev/vhost-net opens");
  else
    c.warn("net.vhost",
           fmt::format("/dev/vhost-net does not open ({}); {} (and then only for speed)", ::strerror(errno), why));
}

void checkClock(Checks& c) {
  // The build is older than now on any sane clock: corrald's own binary's mtime
  // stands for the build's date.
  std::error_code ec;
  auto built = fs::last_write_time("/proc/self/exe", ec);
  auto now = fs::file_time_type::clock::now();
  if (!ec && now < built)
    c.problem("clock.sane", "the clock is before corrald was built: certificates, tokens and expiry all go wrong");
  else
    c.ok("clock.sane", ec ? "now is sane (build date unknown)" : "now is after corrald's build");
  struct timex tx {};
  int state = ::adjtimex(&tx);
  if (state == -1)
    c.warn("clock.sync", fmt::format("adjtimex: {}", ::strerror(errno)));
  else if (state == TIME_ERROR || (tx.status & STA_UNSYNC) != 0)
    c.warn("clock.sync", "the kernel says the clock is not synchronised (no NTP?)");
  else
    c.ok("clock.sync", fmt::format("synchronised, estimated error {} us", tx.esterror));
}

}  // namespace

json NodeProbe::verify(const Config& cfg, const host::StateDir& dir, store::Store& store, core::VmManager& vms) const {
  Checks c;

  // QEMU and qemu-img.
  if (auto v = versionOf(qemuBinary); v.ok())
    c.ok("qemu", fmt::format("{}: {}", qemuBinary, *v));
  else
    c.problem("qemu", fmt::format("{}: {}", qemuBinary, v.error().message));
  const std::string& qemuImg = cfg.storage.qemuImg;
  if (auto v = versionOf(qemuImg); v.ok())
    c.ok("qemu_img", fmt::format("{}: {}", qemuImg, *v));
  else
    c.problem("qemu_img", fmt::format("{}: {} (needed for disks and image imports)", qemuImg, v.error().message));

  // The accelerator, as decided at start.
  if (accel == qemu::Accel::Kvm)
    c.ok("accelerator", fmt::format("kvm: {}", accelReason));
  else
    c.warn("accelerator", fmt::format("tcg (guests run emulated, several times slower): {}", accelReason));

  checkNetworking(c);

  // The state dir: corrald's own, private (state_dir.h's modes), keys 0600.
  const auto& root = dir.root();
  checkPath(c, "state_dir", root, 0011, true);
  for (const auto& [name, p] : {std::pair{"state_dir.run", dir.runDir()},
                                {"state_dir.keys", dir.keysDir()},
                                {"state_dir.images", dir.imagesDir()},
                                {"state_dir.disks", dir.disksDir()},
                                {"state_dir.cache", dir.cacheDir()},
                                {"state_dir.uploads", dir.uploadsDir()},
                                {"state_dir.tmp", dir.tmpDir()}})
    checkPath(c, name, p, 0, true);
  checkPath(c, "key.master", dir.masterKey(), 0, false);
  checkPath(c, "key.console", dir.consoleKey(), 0, false);
  bool postgres = cfg.db.rfind("postgres://", 0) == 0 || cfg.db.rfind("postgresql://", 0) == 0;
  if (!postgres) {
    // The SQLite file holds password and token hashes; the store makes it 0600.
    checkPath(c, "database.file", cfg.db.empty() ? dir.database() : fs::path(cfg.db), 0, true);
  }

  // The database: reachable, and at the newest migration this corral knows.
  int newest = (postgres ? store::postgresMigrations() : store::migrations()).back().version;
  if (auto v = store.schemaVersion(); !v.ok())
    c.problem("database",
              fmt::format("{} store unreachable: {}", postgres ? "PostgreSQL" : "SQLite", v.error().message));
  else if (*v != newest)
    c.problem("database.schema", fmt::format("schema version {}, this corral's newest is {}", *v, newest));
  else
    c.ok("database", fmt::format("{} reachable, schema version {} (current)", postgres ? "PostgreSQL" : "SQLite", *v));

  // Free space in each pool.
  for (const auto* p : vms.storage().pools()) {
    std::string name = fmt::format("pool.{}", p->name());
    auto pool = vms.storage().pool(p->name(), "pool");
    auto free = pool.ok() ? (*pool)->freeBytes() : Result<int64_t>(pool.error());
    if (!free.ok()) {
      c.problem(name, fmt::format("free space unknown: {}", free.error().message));
      continue;
    }
    double fraction = -1;
    if (struct statvfs sv{}; p->kind() == "dir" && ::statvfs(p->config().path.c_str(), &sv) == 0 && sv.f_blocks > 0)
      fraction = static_cast<double>(sv.f_bavail) / static_cast<double>(sv.f_blocks);
    std::string detail = fmt::format(
        "{} ({}): {:.1f} GiB free{}", p->kind(), p->kind() == "dir" ? p->config().path : p->config().vg,
        static_cast<double>(*free) / (1 << 30), fraction >= 0 ? fmt::format(" ({:.0f}%)", fraction * 100) : "");
    if (*free < kMinFreeBytes || (fraction >= 0 && fraction < kMinFreeFraction))
      c.problem(name,
                detail + fmt::format("; under {} GiB or {:.0f}% free", kMinFreeBytes >> 30, kMinFreeFraction * 100));
    else
      c.ok(name, detail);
  }

  checkClock(c);
  return {{"checks", std::move(c.list)}, {"problems", c.problems}, {"warnings", c.warnings}};
}

}  // namespace corral::daemon
