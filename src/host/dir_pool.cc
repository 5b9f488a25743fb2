// A "dir" storage pool: each volume is a file NAME.qcow2 (or NAME.raw) in the
// pool's directory, mode 0600.
//
// A new volume is built under a hidden temporary name (".tmp-RANDOM-NAME.qcow2")
// and renamed into place without replacing anything (renameat2 RENAME_NOREPLACE),
// so a half-made volume never shows under its name, an existing one is never
// overwritten, and a failure leaves nothing but what it removes itself. A
// temporary that a crash left behind is removed by the next openPool() once it
// has not changed for a day. Linked clones are qcow2 overlays naming the library
// image (absolute path) and its format; renaming an overlay is safe, as nothing
// points at it.
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <filesystem>

#include <spdlog/spdlog.h>

#include "host/storage_pool_internal.h"
#include "util/crypto.h"

namespace corral::host::pool_detail {

namespace fs = std::filesystem;

namespace {

constexpr std::string_view kTmpPrefix = ".tmp-";
constexpr auto kStaleTmp = std::chrono::hours(24);
constexpr const char* kFormats[] = {"qcow2", "raw"};

Error sysError(std::string_view what, const fs::path& p, int err) {
  return Error::internal(fmt::format("{} {}: {}", what, p.string(), std::strerror(err)));
}

// rename(2) that fails with EEXIST instead of replacing to.
int renameNoReplace(const fs::path& from, const fs::path& to) {
  if (::renameat2(AT_FDCWD, from.c_str(), AT_FDCWD, to.c_str(), RENAME_NOREPLACE) == 0) return 0;
  if (errno != EINVAL && errno != ENOSYS) return -1;
  // A file system without RENAME_NOREPLACE: link() never replaces either.
  if (::link(from.c_str(), to.c_str()) != 0) return -1;
  ::unlink(from.c_str());
  return 0;
}

class DirPool final : public StoragePool {
 public:
  DirPool(PoolConfig cfg, QemuImg qemuImg) : cfg_(std::move(cfg)), dir_(cfg_.path), qemuImg_(std::move(qemuImg)) {}

  const PoolConfig& config() const override { return cfg_; }
  bool supportsLinkedClones() const override { return true; }

  Result<Volume> create(const NewVolume& v) override {
    CORRAL_TRY(checkVolumeName("name", v.name));
    const int64_t size = CORRAL_TRY(newVolumeSize(v));
    if (CORRAL_TRY(locate(v.name)))
      return Error::alreadyExists("name", v.name, fmt::format("volume {} already exists in pool {}", v.name, cfg_.name));

    const std::string suffix = util::base64UrlEncode(CORRAL_TRY(util::randomBytes(6)));
    const fs::path tmp = dir_ / fmt::format("{}{}-{}.qcow2", kTmpPrefix, suffix, v.name);
    const fs::path dest = pathOf(v.name, "qcow2");
    auto made = build(v, size, tmp);
    if (made.ok() && ::chmod(tmp.c_str(), 0600) != 0) made = sysError("chmod", tmp, errno);
    if (made.ok() && renameNoReplace(tmp, dest) != 0) {
      made = errno == EEXIST ? Error::alreadyExists("name", v.name, fmt::format("volume {} already exists", v.name))
                             : sysError("rename", tmp, errno);
    }
    if (!made.ok()) {
      ::unlink(tmp.c_str());
      return std::move(made).error().context(fmt::format("pool {}: create {}", cfg_.name, v.name));
    }
    auto vol = describe(v.name, "qcow2");
    if (!vol.ok()) ::unlink(dest.c_str());
    return vol;
  }

  Result<void> resize(const std::string& volume, int64_t newSize, const std::optional<Encryption>& enc) override {
    auto [format, current] = CORRAL_TRY(checkGrowth(volume, newSize));
    if (newSize == current) return ok();
    return qemuImg_.resize(pathOf(volume, format), format, newSize, enc);
  }

  Result<void> growBacking(const std::string& volume, int64_t newSize) override {
    // A file grows with the image inside it: nothing to do beyond the checks.
    CORRAL_TRY(checkGrowth(volume, newSize));
    return ok();
  }

  Result<Volume> rename(const std::string& from, const std::string& to) override {
    CORRAL_TRY(checkVolumeName("name", from));
    CORRAL_TRY(checkVolumeName("name", to));
    auto format = CORRAL_TRY(locate(from));
    if (!format) return Error::notFound(fmt::format("volume {} not found in pool {}", from, cfg_.name));
    if (CORRAL_TRY(locate(to)))
      return Error::alreadyExists("name", to, fmt::format("volume {} already exists in pool {}", to, cfg_.name));
    if (renameNoReplace(pathOf(from, *format), pathOf(to, *format)) != 0) {
      if (errno == EEXIST) return Error::alreadyExists("name", to, fmt::format("volume {} already exists", to));
      return sysError("rename", pathOf(from, *format), errno);
    }
    return describe(to, *format);
  }

  // crypto changes nothing here: overwriting a file's first blocks in place is
  // not reliable on copy-on-write or journalling file systems, and the wrapped
  // key the caller destroys is what makes the data unreadable.
  Result<void> remove(const std::string& volume, bool /*crypto*/) override {
    CORRAL_TRY(checkVolumeName("name", volume));
    for (const char* f : kFormats) {
      fs::path p = pathOf(volume, f);
      if (::unlink(p.c_str()) != 0 && errno != ENOENT) return sysError("remove", p, errno);
    }
    return ok();
  }

  Result<bool> exists(const std::string& volume) override {
    CORRAL_TRY(checkVolumeName("name", volume));
    return CORRAL_TRY(locate(volume)).has_value();
  }

  Result<std::vector<std::string>> list() override {
    std::vector<std::string> out;
    std::error_code ec;
    for (fs::directory_iterator it(dir_, ec), end; !ec && it != end; it.increment(ec)) {
      const fs::path& p = it->path();
      std::string ext = p.extension().string();
      std::string stem = p.stem().string();
      if ((ext != ".qcow2" && ext != ".raw") || !checkVolumeName("name", stem).ok()) continue;
      std::error_code sec;
      if (!it->is_regular_file(sec)) continue;
      out.push_back(std::move(stem));
    }
    if (ec) return Error::internal(fmt::format("list {}: {}", dir_.string(), ec.message()));
    std::sort(out.begin(), out.end());
    out.erase(std::unique(out.begin(), out.end()), out.end());
    return out;
  }

  Result<int64_t> freeBytes() override {
    struct statvfs st {};
    if (::statvfs(dir_.c_str(), &st) != 0) return sysError("statvfs", dir_, errno);
    return static_cast<int64_t>(st.f_bavail) * static_cast<int64_t>(st.f_frsize);
  }

  // Removes temporaries that a crash left (see the file comment).
  void removeStaleTemporaries() {
    std::error_code ec;
    const auto now = fs::file_time_type::clock::now();
    for (fs::directory_iterator it(dir_, ec), end; !ec && it != end; it.increment(ec)) {
      if (!it->path().filename().string().starts_with(kTmpPrefix)) continue;
      std::error_code tec;
      auto mtime = it->last_write_time(tec);
      if (tec || now - mtime < kStaleTmp) continue;
      spdlog::warn("pool {}: removing {}, left by an interrupted volume creation", cfg_.name, it->path().string());
      fs::remove(it->path(), tec);
    }
  }

 private:
  fs::path pathOf(const std::string& volume, std::string_view format) const {
    return dir_ / fmt::format("{}.{}", volume, format);
  }

  // The format of the volume's file, or nullopt when there is none.
  Result<std::optional<std::string>> locate(const std::string& volume) const {
    for (const char* f : kFormats) {
      struct stat st {};
      fs::path p = pathOf(volume, f);
      if (::lstat(p.c_str(), &st) == 0) {
        if (!S_ISREG(st.st_mode))
          return Error::failedPrecondition(fmt::format("{} is not a regular file", p.string()));
        return std::optional<std::string>(f);
      }
      if (errno != ENOENT) return sysError("stat", p, errno);
    }
    return std::optional<std::string>();
  }

  // Makes the image at tmp.
  Result<void> build(const NewVolume& v, int64_t size, const fs::path& tmp) const {
    if (v.cloneFrom.empty()) {
      CreateOptions o;
      o.encryption = v.encryption;
      return qemuImg_.create(tmp.string(), "qcow2", size, o);
    }
    if (v.linked) {
      CreateOptions o;
      o.backingFile = v.cloneFrom;
      o.backingFormat = v.cloneFromFormat;
      o.encryption = v.encryption;
      return qemuImg_.create(tmp.string(), "qcow2", size, o);
    }
    QemuImg::ConvertOptions co;
    co.dstEncryption = v.encryption;
    co.progress = v.progress;
    CORRAL_TRY(qemuImg_.convert(v.cloneFrom, v.cloneFromFormat, tmp.string(), "qcow2", co));
    // The copy has the image's own size, which may differ from what the caller
    // was told: grow from what is really there.
    ImageInfo info = CORRAL_TRY(qemuImg_.info(tmp.string(), "qcow2"));
    if (size < info.virtualSize)
      return Error::invalidInput("size", std::to_string(size),
                                 fmt::format("smaller than the image ({})", formatSize(info.virtualSize)));
    if (size > info.virtualSize) CORRAL_TRY(qemuImg_.resize(tmp.string(), "qcow2", size, v.encryption));
    return ok();
  }

  Result<Volume> describe(const std::string& volume, const std::string& format) const {
    const fs::path p = pathOf(volume, format);
    ImageInfo info = CORRAL_TRY(qemuImg_.info(p.string(), format));
    return Volume{volume, p.string(), format, info.virtualSize};
  }

  // The volume's format and current size, after refusing a shrink.
  Result<std::pair<std::string, int64_t>> checkGrowth(const std::string& volume, int64_t newSize) const {
    CORRAL_TRY(checkVolumeName("name", volume));
    auto format = CORRAL_TRY(locate(volume));
    if (!format) return Error::notFound(fmt::format("volume {} not found in pool {}", volume, cfg_.name));
    ImageInfo info = CORRAL_TRY(qemuImg_.info(pathOf(volume, *format).string(), *format));
    if (newSize < info.virtualSize)
      return Error::invalidInput("size", std::to_string(newSize),
                                 fmt::format("{} is smaller than the disk ({}); a disk can only grow",
                                             formatSize(newSize), formatSize(info.virtualSize)));
    return std::pair{*format, info.virtualSize};
  }

  PoolConfig cfg_;
  fs::path dir_;
  QemuImg qemuImg_;
};

}  // namespace

Result<std::unique_ptr<StoragePool>> openDirPool(const PoolConfig& cfg, const QemuImg& qemuImg) {
  if (cfg.path.empty() || cfg.path.front() != '/')
    return Error::invalidInput("path", cfg.path, fmt::format("pool {}: path must be an absolute directory", cfg.name));
  std::error_code ec;
  if (!fs::exists(cfg.path, ec)) {
    fs::create_directories(cfg.path, ec);
    if (ec) return Error::internal(fmt::format("pool {}: create {}: {}", cfg.name, cfg.path, ec.message()));
    fs::permissions(cfg.path, fs::perms::owner_all, ec);
    if (ec) return Error::internal(fmt::format("pool {}: chmod {}: {}", cfg.name, cfg.path, ec.message()));
  } else if (!fs::is_directory(cfg.path, ec)) {
    return Error::invalidInput("path", cfg.path, fmt::format("pool {}: not a directory", cfg.name));
  }
  auto pool = std::make_unique<DirPool>(cfg, qemuImg);
  pool->removeStaleTemporaries();
  return std::unique_ptr<StoragePool>(std::move(pool));
}

}  // namespace corral::host::pool_detail
