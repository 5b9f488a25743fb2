#include "host/image_library.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/evp.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <future>
#include <memory>
#include <system_error>
#include <vector>

#include <fmt/format.h>
#include <fmt/std.h>

#include "util/unique_fd.h"

namespace corral::host {
namespace fs = std::filesystem;

namespace {

Result<void> checkSource(const std::string& field, const std::string& path) {
  if (path.empty() || path.front() != '/')
    return Error::invalidInput(field, path, "must be an absolute path on the daemon's host");
  std::error_code ec;
  auto st = fs::status(path, ec);
  if (ec || !fs::exists(st)) return Error::invalidInput(field, path, "no such file");
  if (!fs::is_regular_file(st)) return Error::invalidInput(field, path, "not a regular file");
  return ok();
}

constexpr size_t kChunk = 1 << 20;  // read/hash/copy unit: 1 MiB
constexpr auto kFileMode = fs::perms::owner_read | fs::perms::owner_write | fs::perms::group_read |
                           fs::perms::others_read;  // 0644: the VMs' uids read library files
constexpr auto kDirMode = fs::perms::owner_all | fs::perms::group_exec | fs::perms::others_exec;

Error cancelled() { return Error::unavailable("cancelled"); }

bool isCancelled(const std::atomic<bool>* cancel) { return cancel && cancel->load(); }

// Opens an admin's source for reading (after checkSource); "path" names it in errors.
Result<util::UniqueFd> openSource(const std::string& path) {
  util::UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOCTTY));
  if (!fd) return Error::invalidInput("path", path, fmt::format("cannot read {}: {}", path, std::strerror(errno)));
  return fd;
}

// pread until n bytes or end of file; the bytes read.
Result<std::string> readAt(int fd, off_t offset, size_t n, const std::string& path) {
  std::string buf(n, '\0');
  size_t got = 0;
  while (got < n) {
    ssize_t r = ::pread(fd, buf.data() + got, n - got, offset + static_cast<off_t>(got));
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) return Error::invalidInput("path", path, fmt::format("cannot read {}: {}", path, std::strerror(errno)));
    if (r == 0) break;
    got += static_cast<size_t>(r);
  }
  buf.resize(got);
  return buf;
}

Result<int64_t> fileSize(int fd, const std::string& path) {
  struct stat st {};
  if (::fstat(fd, &st) != 0) return Error::internal(fmt::format("stat {}: {}", path, std::strerror(errno)));
  return static_cast<int64_t>(st.st_size);
}

// Incremental SHA-256 (util/crypto.h hashes only whole strings).
class Sha256 {
 public:
  Sha256() : ctx_(EVP_MD_CTX_new()) {
    if (ctx_ && EVP_DigestInit_ex(ctx_.get(), EVP_sha256(), nullptr) != 1) ctx_.reset();
  }
  bool ok() const { return ctx_ != nullptr; }
  bool update(const char* data, size_t n) { return ctx_ && EVP_DigestUpdate(ctx_.get(), data, n) == 1; }
  std::string hex() {
    std::array<unsigned char, EVP_MAX_MD_SIZE> md{};
    unsigned int len = 0;
    if (!ctx_ || EVP_DigestFinal_ex(ctx_.get(), md.data(), &len) != 1) return {};
    std::string out;
    for (unsigned int i = 0; i < len; ++i) out += fmt::format("{:02x}", md[i]);
    return out;
  }

 private:
  struct Free {
    void operator()(EVP_MD_CTX* c) const { EVP_MD_CTX_free(c); }
  };
  std::unique_ptr<EVP_MD_CTX, Free> ctx_;
};

// Reports (done, total) never going backwards, at most once per value.
class Reporter {
 public:
  Reporter(const ImportProgress& fn, int64_t total) : fn_(fn), total_(total) {}
  void report(int64_t done) {
    done = std::clamp<int64_t>(done, 0, total_);
    if (!fn_ || done <= last_) return;
    last_ = done;
    fn_(done, total_);
  }
  void start() {
    if (fn_) fn_(0, total_);
  }

 private:
  const ImportProgress& fn_;
  int64_t total_;
  int64_t last_ = 0;
};

// Creates images/NAME/ (refusing an existing one); removed again by the
// returned guard unless it is released.
struct DirGuard {
  fs::path dir;
  bool keep = false;
  DirGuard() = default;
  DirGuard(const DirGuard&) = delete;
  DirGuard& operator=(const DirGuard&) = delete;
  ~DirGuard() {
    if (keep || dir.empty()) return;
    std::error_code ec;
    fs::remove_all(dir, ec);
  }
};

Result<void> makeImageDir(const fs::path& dir, const std::string& name, DirGuard& guard) {
  std::error_code ec;
  if (fs::exists(dir, ec))
    return Error::alreadyExists("name", name, fmt::format("name: image files for {} already exist in {}", name, dir));
  CORRAL_TRY(makeDir(dir, kDirMode));
  guard.dir = dir;
  return ok();
}

// The first bytes of a qcow2 image: "QFI\xfb".
bool hasQcow2Magic(std::string_view head) { return head.size() >= 4 && head.substr(0, 4) == "QFI\xfb"; }

// qcow2 v3 header: incompatible_features (big-endian u64) at byte 72; bit 2 is
// "external data file", a second host path the image would read from.
bool qcow2HasExternalData(std::string_view head) {
  if (head.size() < 80) return false;
  uint32_t version = 0;
  for (int i = 4; i < 8; ++i) version = (version << 8) | static_cast<unsigned char>(head[i]);
  if (version < 3) return false;
  return (static_cast<unsigned char>(head[79]) & 0x04) != 0;
}

// Hashes a file in a thread of its own, so that the hash of an import costs no
// time beside the conversion reading the same bytes.
class BackgroundHash {
 public:
  BackgroundHash(std::string path, const std::atomic<bool>* cancel)
      : path_(std::move(path)), cancel_(cancel), result_(std::async(std::launch::async, [this] { return run(); })) {}
  ~BackgroundHash() { stop(); }
  BackgroundHash(const BackgroundHash&) = delete;
  BackgroundHash& operator=(const BackgroundHash&) = delete;

  int64_t hashed() const { return hashed_.load(); }
  // Waits up to d; true when the hash is done (or failed).
  bool waitFor(std::chrono::milliseconds d) { return result_.wait_for(d) == std::future_status::ready; }
  Result<std::string> take() { return result_.get(); }
  // Makes the thread give up and waits for it.
  void stop() {
    stop_.store(true);
    if (result_.valid()) result_.wait();
  }

 private:
  Result<std::string> run() {
    util::UniqueFd fd = CORRAL_TRY(openSource(path_));
    Sha256 sha;
    if (!sha.ok()) return Error::internal("sha256: cannot initialise the digest");
    std::vector<char> buf(kChunk);
    while (true) {
      if (stop_.load() || isCancelled(cancel_)) return cancelled();
      ssize_t r = ::read(fd.get(), buf.data(), buf.size());
      if (r < 0 && errno == EINTR) continue;
      if (r < 0) return Error::invalidInput("path", path_, fmt::format("cannot read {}: {}", path_, std::strerror(errno)));
      if (r == 0) break;
      if (!sha.update(buf.data(), static_cast<size_t>(r))) return Error::internal("sha256: digest update failed");
      hashed_.fetch_add(r);
    }
    return sha.hex();
  }

  std::string path_;
  const std::atomic<bool>* cancel_;
  std::atomic<bool> stop_{false};
  std::atomic<int64_t> hashed_{0};
  std::future<Result<std::string>> result_;  // last: the thread starts once the rest exists
};

}  // namespace

Result<ImportedFiles> ImageLibrary::importDirectBoot(const std::string& name, const std::string& kernel,
                                                     const std::string& initrd) const {
  CORRAL_TRY(checkSource("kernel", kernel));
  if (!initrd.empty()) CORRAL_TRY(checkSource("initrd", initrd));
  fs::path dir = CORRAL_TRY(dir_.imageDir(name));
  std::error_code ec;
  if (fs::exists(dir, ec))
    return Error::alreadyExists("name", name, fmt::format("name: image files for {} already exist in {}", name, dir));
  CORRAL_TRY(makeDir(dir, fs::perms::owner_all | fs::perms::group_exec | fs::perms::others_exec));

  ImportedFiles out;
  auto copy = [&](const std::string& field, const std::string& from, const char* to) -> Result<std::string> {
    fs::path dest = dir / to;
    std::error_code cec;
    fs::copy_file(from, dest, fs::copy_options::none, cec);
    if (cec) return Error::invalidInput(field, from, fmt::format("cannot copy: {}", cec.message()));
    fs::permissions(dest, fs::perms::owner_read | fs::perms::owner_write | fs::perms::group_read |
                              fs::perms::others_read, cec);
    out.sizeBytes += static_cast<int64_t>(fs::file_size(dest, cec));
    return dest.string();
  };
  auto k = copy("kernel", kernel, "vmlinuz");
  if (!k.ok()) {
    fs::remove_all(dir, ec);
    return std::move(k).error();
  }
  out.kernel = std::move(k).take();
  if (!initrd.empty()) {
    auto i = copy("initrd", initrd, "initrd");
    if (!i.ok()) {
      fs::remove_all(dir, ec);
      return std::move(i).error();
    }
    out.initrd = std::move(i).take();
  }
  return out;
}

Result<ImportedImage> ImageLibrary::importDisk(const std::string& name, const std::string& source,
                                               const ImportOptions& opts) const {
  CORRAL_TRY(checkSource("path", source));
  if (!opts.sourceFormat.empty() && opts.sourceFormat != "qcow2" && opts.sourceFormat != "raw")
    return Error::invalidInput("format", opts.sourceFormat, "must be \"qcow2\", \"raw\" or empty (detect)");
  fs::path dir = CORRAL_TRY(dir_.imageDir(name));
  std::string format;
  int64_t total = 0;
  {
    util::UniqueFd fd = CORRAL_TRY(openSource(source));
    total = CORRAL_TRY(fileSize(fd.get(), source));
    std::string head = CORRAL_TRY(readAt(fd.get(), 0, 512, source));
    format = opts.sourceFormat.empty() ? (hasQcow2Magic(head) ? "qcow2" : "raw") : opts.sourceFormat;
    // qcow2 header: crypt_method, a big-endian uint32 at offset 32 (1 = legacy AES).
    if (format == "qcow2" && head.size() >= 36 && head[32] == 0 && head[33] == 0 && head[34] == 0 && head[35] == 1)
      return Error::invalidInput("path", source, host::kLegacyAesRefusal);
    if (format == "qcow2" && qcow2HasExternalData(head))
      return Error::invalidInput("path", source, "a qcow2 image with an external data file cannot be imported");
  }
  auto srcInfo = qemuImg_.info(source, format);
  if (!srcInfo.ok())
    return Error::invalidInput("path", source,
                               fmt::format("not a readable {} image: {}", format, srcInfo.error().message));
  if (!srcInfo->backingFile.empty())
    return Error::invalidInput("path", source,
                               fmt::format("the image has a backing file ({}); import a standalone image "
                                           "(qemu-img convert it first)",
                                           srcInfo->backingFile));
  if (srcInfo->encrypted) return Error::invalidInput("path", source, "an encrypted image cannot be imported");
  if (isCancelled(opts.cancel)) return cancelled();

  DirGuard guard;
  CORRAL_TRY(makeImageDir(dir, name, guard));
  const fs::path tmp = dir / ".disk.qcow2.part";
  const fs::path dest = dir / "disk.qcow2";

  Reporter progress(opts.progress, total);
  progress.start();
  BackgroundHash hash(source, opts.cancel);
  QemuImg::ConvertOptions co;
  co.cancel = opts.cancel;
  // Done is what both the copy and the hash have got through.
  co.progress = [&](double fraction) {
    auto converted = static_cast<int64_t>(fraction * static_cast<double>(total));
    progress.report(std::min(converted, hash.hashed()));
  };
  auto converted = qemuImg_.convert(source, format, tmp.string(), "qcow2", co);
  if (!converted.ok()) {
    hash.stop();
    if (isCancelled(opts.cancel)) return cancelled();
    return std::move(converted).error().context(fmt::format("import {}", source));
  }
  while (!hash.waitFor(std::chrono::milliseconds(200))) progress.report(hash.hashed());
  std::string sha256 = CORRAL_TRY(hash.take());
  if (isCancelled(opts.cancel)) return cancelled();

  auto outInfo = qemuImg_.info(tmp.string(), "qcow2");
  if (!outInfo.ok()) return std::move(outInfo).error().context("check the imported copy");
  std::error_code ec;
  fs::permissions(tmp, kFileMode, ec);
  if (ec) return Error::internal(fmt::format("chmod {}: {}", tmp, ec.message()));
  fs::rename(tmp, dest, ec);
  if (ec) return Error::internal(fmt::format("rename {} to {}: {}", tmp, dest, ec.message()));
  auto onHost = fs::file_size(dest, ec);
  if (ec) return Error::internal(fmt::format("stat {}: {}", dest, ec.message()));
  progress.report(total);

  ImportedImage out;
  out.path = dest.string();
  out.format = "qcow2";
  out.virtualSize = outInfo->virtualSize;
  out.sizeBytes = static_cast<int64_t>(onHost);
  out.sha256 = std::move(sha256);
  out.sourceFormat = format;
  guard.keep = true;
  return out;
}

Result<ImportedImage> ImageLibrary::importIso(const std::string& name, const std::string& source,
                                              const ImportOptions& opts) const {
  CORRAL_TRY(checkSource("path", source));
  fs::path dir = CORRAL_TRY(dir_.imageDir(name));
  util::UniqueFd in = CORRAL_TRY(openSource(source));
  const int64_t total = CORRAL_TRY(fileSize(in.get(), source));
  // ISO 9660: the first volume descriptor (sector 16) starts with a type byte
  // and the identifier "CD001".
  std::string id = CORRAL_TRY(readAt(in.get(), 16 * 2048 + 1, 5, source));
  if (id != "CD001") return Error::invalidInput("path", source, "not an ISO 9660 image (no CD001 volume descriptor)");
  if (isCancelled(opts.cancel)) return cancelled();

  DirGuard guard;
  CORRAL_TRY(makeImageDir(dir, name, guard));
  const fs::path tmp = dir / ".cd.iso.part";
  const fs::path dest = dir / "cd.iso";
  util::UniqueFd out(::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644));
  if (!out) return Error::internal(fmt::format("create {}: {}", tmp, std::strerror(errno)));
  if (::fchmod(out.get(), 0644) != 0) return Error::internal(fmt::format("chmod {}: {}", tmp, std::strerror(errno)));

  Sha256 sha;
  if (!sha.ok()) return Error::internal("sha256: cannot initialise the digest");
  Reporter progress(opts.progress, total);
  progress.start();
  std::vector<char> buf(kChunk);
  int64_t done = 0;
  while (true) {
    if (isCancelled(opts.cancel)) return cancelled();
    ssize_t r = ::pread(in.get(), buf.data(), buf.size(), static_cast<off_t>(done));
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) return Error::invalidInput("path", source, fmt::format("cannot read {}: {}", source, std::strerror(errno)));
    if (r == 0) break;
    if (!sha.update(buf.data(), static_cast<size_t>(r))) return Error::internal("sha256: digest update failed");
    for (ssize_t off = 0; off < r;) {
      ssize_t w = ::write(out.get(), buf.data() + off, static_cast<size_t>(r - off));
      if (w < 0 && errno == EINTR) continue;
      if (w < 0) return Error::internal(fmt::format("write {}: {}", tmp, std::strerror(errno)));
      off += w;
    }
    done += r;
    progress.report(done);
  }
  if (::fsync(out.get()) != 0) return Error::internal(fmt::format("fsync {}: {}", tmp, std::strerror(errno)));
  out.reset();
  std::error_code ec;
  fs::rename(tmp, dest, ec);
  if (ec) return Error::internal(fmt::format("rename {} to {}: {}", tmp, dest, ec.message()));

  ImportedImage img;
  img.path = dest.string();
  img.format = "raw";
  img.virtualSize = done;
  img.sizeBytes = done;
  img.sha256 = sha.hex();
  guard.keep = true;
  return img;
}

Result<void> ImageLibrary::remove(const std::string& name) const {
  fs::path dir = CORRAL_TRY(dir_.imageDir(name));
  std::error_code ec;
  fs::remove_all(dir, ec);
  if (ec) return Error::internal(fmt::format("remove {}: {}", dir, ec.message()));
  return ok();
}

}  // namespace corral::host
